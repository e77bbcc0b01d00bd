#include "frontdoor/auth/token.hpp"

#include <gtest/gtest.h>

#include <set>

namespace frontdoor::auth {
namespace {

// Generated with Python: body + base62(zlib.crc32(body)), 6 digits, most
// significant first (SPEC §3), so that our CRC-32 provably matches zlib's.
constexpr std::string_view kPythonVectors[] = {
    "rpa_000000000000000000000000000000000035UZPo", "rpa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA0sRs8Z",
    "rpa_abcdefghijklmnopqrstuvwxyzABCDEFGH0GV2KA", "rpa_7Q2Fk9ZmXbP3LqR8sT1uV4wY6zA0cDeGhI1iRntS",
    "rpa_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz0GajAo",
};

bool is_base62(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

TEST(Token, ChecksumMatchesZlibVectors) {
  for (std::string_view t : kPythonVectors) {
    EXPECT_EQ(t.size(), kTokenLength);
    EXPECT_TRUE(rpa_token_well_formed(t)) << t;
  }
}

TEST(Token, EveryOneCharMutationFails) {
  for (std::string_view v : kPythonVectors) {
    std::string t(v);
    for (std::size_t i = kTokenPrefix.size(); i < t.size(); ++i) {
      const char orig = t[i];
      t[i] = orig == 'x' ? 'y' : 'x';
      EXPECT_FALSE(rpa_token_well_formed(t)) << t;
      t[i] = orig;
    }
  }
}

TEST(Token, WrongLengthOrCharactersFail) {
  const std::string t(kPythonVectors[2]);
  EXPECT_FALSE(rpa_token_well_formed(t.substr(0, t.size() - 1)));
  EXPECT_FALSE(rpa_token_well_formed(t + "0"));
  EXPECT_FALSE(rpa_token_well_formed("rpa_"));
  std::string bad = t;
  bad[10] = '-';
  EXPECT_FALSE(rpa_token_well_formed(bad));
}

TEST(Token, LegacyTokensAreNotChecked) {
  EXPECT_TRUE(rpa_token_well_formed("legacy-secret-123"));
  EXPECT_TRUE(rpa_token_well_formed("RPA_notoursbecausecase"));
}

TEST(Token, GeneratedTokensAreWellFormedAndDistinct) {
  std::set<std::string> seen;
  std::array<int, 62> counts{};
  for (int i = 0; i < 2000; ++i) {
    const std::string t = generate_token();
    ASSERT_EQ(t.size(), kTokenLength);
    ASSERT_TRUE(t.starts_with("rpa_"));
    for (char c : t.substr(4)) ASSERT_TRUE(is_base62(c)) << t;
    ASSERT_TRUE(rpa_token_well_formed(t)) << t;
    EXPECT_TRUE(seen.insert(t).second);
    for (char c : t.substr(4, 34)) {
      const int idx = c <= '9' ? c - '0' : c <= 'Z' ? c - 'A' + 10 : c - 'a' + 36;
      ++counts[idx];
    }
  }
  // 68,000 draws over 62 symbols: ~1097 each. A biased b % 62 would give
  // 0-7 about 25% more; a loose bound still catches that.
  for (int c : counts) {
    EXPECT_GT(c, 900);
    EXPECT_LT(c, 1300);
  }
}

TEST(Token, Sha256KnownAnswer) {
  EXPECT_EQ(hash_form(sha256("abc")),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hash_form(sha256("")),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Token, HashFormRoundTrip) {
  const Digest d = sha256("rpa_something");
  const auto parsed = parse_hash_form(hash_form(d));
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(digest_equal(*parsed, d));

  std::string upper = hash_form(d);
  for (std::size_t i = 7; i < upper.size(); ++i)
    upper[i] = static_cast<char>(std::toupper(upper[i]));
  ASSERT_TRUE(parse_hash_form(upper));
  EXPECT_TRUE(digest_equal(*parse_hash_form(upper), d));
}

TEST(Token, ParseHashFormRejectsMalformed) {
  const std::string good = hash_form(sha256("x"));
  EXPECT_FALSE(parse_hash_form(""));
  EXPECT_FALSE(parse_hash_form(good.substr(7)));                   // no scheme
  EXPECT_FALSE(parse_hash_form("SHA256:" + good.substr(7)));       // scheme is lower case
  EXPECT_FALSE(parse_hash_form(good.substr(0, good.size() - 1)));  // 63 hex
  EXPECT_FALSE(parse_hash_form(good + "0"));                       // 65 hex
  std::string bad = good;
  bad[20] = 'g';
  EXPECT_FALSE(parse_hash_form(bad));
  EXPECT_FALSE(parse_hash_form("md5:" + good.substr(7)));
}

TEST(Token, DigestEqual) {
  Digest a = sha256("a");
  Digest b = a;
  EXPECT_TRUE(digest_equal(a, b));
  b[31] ^= 1;
  EXPECT_FALSE(digest_equal(a, b));
  b = a;
  b[0] ^= 0x80;
  EXPECT_FALSE(digest_equal(a, b));
}

}  // namespace
}  // namespace frontdoor::auth
