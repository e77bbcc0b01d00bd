#include "frontdoor/auth/bearer.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "frontdoor/auth/token.hpp"

namespace frontdoor::auth {
namespace {

using core::Reason;

constexpr std::string_view kGood = "rpa_abcdefghijklmnopqrstuvwxyzABCDEFGH0GV2KA";

BearerResult parse(std::vector<std::string_view> values) { return parse_bearer(values); }

Reason reason_of(std::string_view value) { return parse({value}).reason; }

TEST(Bearer, NoHeaderIsMissing) { EXPECT_EQ(parse({}).reason, Reason::missing_api_key); }

TEST(Bearer, TwoHeadersAreInvalidEvenIfBothGood) {
  const std::string v = "Bearer " + std::string(kGood);
  EXPECT_EQ(parse({v, v}).reason, Reason::invalid_api_key);
  EXPECT_EQ(parse({v, v, v}).reason, Reason::invalid_api_key);
}

TEST(Bearer, EmptyValueIsInvalid) {
  EXPECT_EQ(reason_of(""), Reason::invalid_api_key);
  EXPECT_EQ(reason_of("   "), Reason::invalid_api_key);
}

TEST(Bearer, OtherSchemesAreInvalid) {
  EXPECT_EQ(reason_of("Basic dXNlcjpwYXNz"), Reason::invalid_api_key);
  EXPECT_EQ(reason_of("Token abc"), Reason::invalid_api_key);
  EXPECT_EQ(reason_of("Bearerx abc"), Reason::invalid_api_key);
  EXPECT_EQ(reason_of(std::string(kGood)), Reason::invalid_api_key);  // no scheme at all
}

TEST(Bearer, SchemeIsCaseInsensitive) {
  for (std::string_view scheme : {"Bearer", "bearer", "BEARER", "bEaReR"}) {
    const std::string v = std::string(scheme) + " " + std::string(kGood);
    const auto r = parse({v});
    EXPECT_EQ(r.reason, Reason::none) << v;
    EXPECT_EQ(r.token, kGood);
  }
}

TEST(Bearer, SchemeWithoutTokenIsInvalid) {
  EXPECT_EQ(reason_of("Bearer"), Reason::invalid_api_key);
  EXPECT_EQ(reason_of("Bearer "), Reason::invalid_api_key);
  EXPECT_EQ(reason_of("Bearer    "), Reason::invalid_api_key);
}

TEST(Bearer, TokenWithSpacesIsInvalid) {
  EXPECT_EQ(reason_of("Bearer abc def"), Reason::invalid_api_key);
  EXPECT_EQ(reason_of("Bearer " + std::string(kGood) + " x"), Reason::invalid_api_key);
  EXPECT_EQ(reason_of("Bearer abc\tdef"), Reason::invalid_api_key);
}

TEST(Bearer, SeveralSpacesAndSurroundingWhitespaceAreTolerated) {
  const auto r = parse({"  Bearer   legacy-token_1  "});
  EXPECT_EQ(r.reason, Reason::none);
  EXPECT_EQ(r.token, "legacy-token_1");
}

TEST(Bearer, Token68CharactersAndPadding) {
  EXPECT_EQ(parse({"Bearer a-b.c_d~e+f/g=="}).token, "a-b.c_d~e+f/g==");
  EXPECT_EQ(reason_of("Bearer ==="), Reason::invalid_api_key);   // padding only
  EXPECT_EQ(reason_of("Bearer ab=c"), Reason::invalid_api_key);  // '=' inside
  EXPECT_EQ(reason_of("Bearer a\"b"), Reason::invalid_api_key);
  EXPECT_EQ(reason_of("Bearer a,b"), Reason::invalid_api_key);
  EXPECT_EQ(reason_of("Bearer \xC3\xA9t\xC3\xA9"), Reason::invalid_api_key);
}

TEST(Bearer, RpaTokenWithBadChecksumIsInvalid) {
  std::string bad(kGood);
  bad.back() = bad.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(reason_of("Bearer " + bad), Reason::invalid_api_key);
  bad = std::string(kGood);
  bad[10] = bad[10] == 'x' ? 'y' : 'x';
  EXPECT_EQ(reason_of("Bearer " + bad), Reason::invalid_api_key);
}

TEST(Bearer, RpaTokenWithWrongLengthIsInvalid) {
  const std::string good(kGood);
  EXPECT_EQ(reason_of("Bearer " + good.substr(0, good.size() - 1)), Reason::invalid_api_key);
  EXPECT_EQ(reason_of("Bearer " + good + "0"), Reason::invalid_api_key);
  EXPECT_EQ(reason_of("Bearer rpa_"), Reason::invalid_api_key);
}

TEST(Bearer, LegacyNonRpaTokenIsAccepted) {
  const auto r = parse({"Bearer sk-legacy-0123456789"});
  EXPECT_EQ(r.reason, Reason::none);
  EXPECT_EQ(r.token, "sk-legacy-0123456789");
}

TEST(Bearer, GeneratedTokenIsAccepted) {
  const std::string t = generate_token();
  const std::string v = "Bearer " + t;
  const auto r = parse({v});
  EXPECT_EQ(r.reason, Reason::none);
  EXPECT_EQ(r.token, t);
}

}  // namespace
}  // namespace frontdoor::auth
