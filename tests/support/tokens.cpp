#include "support/tokens.hpp"

#include <unistd.h>

#include <array>
#include <atomic>

#include "support/http_client.hpp"

namespace frontdoor::test {

namespace {

constexpr char kBase62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

constexpr std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}

constexpr auto kCrcTable = make_crc_table();

}  // namespace

std::uint32_t crc32(std::string_view data) noexcept {
  std::uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : data) c = kCrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::string make_rpa_token(std::uint64_t seed) {
  std::string t = "rpa_";
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  for (int i = 0; i < 34; ++i) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    t += kBase62[(x * 0x2545F4914F6CDD1Dull >> 33) % 62];
  }
  std::uint32_t crc = crc32(t);
  char digits[6];
  for (int i = 5; i >= 0; --i) {
    digits[i] = kBase62[crc % 62];
    crc /= 62;
  }
  t.append(digits, 6);
  return t;
}

std::string with_bad_checksum(std::string token) {
  char& last = token.back();
  last = last == '0' ? '1' : '0';
  return token;
}

std::string stored_hash(std::string_view token) { return "sha256:" + sha256_hex(token); }

std::string fresh_rpa_token() {
  static std::atomic<std::uint64_t> counter{1};
  return make_rpa_token((static_cast<std::uint64_t>(::getpid()) << 32) + counter.fetch_add(1));
}

}  // namespace frontdoor::test
