#include "frontdoor/auth/token.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <array>
#include <stdexcept>

namespace frontdoor::auth {
namespace {

constexpr std::string_view kBase62 =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr std::size_t kRandomChars = 34;
constexpr std::size_t kChecksumChars = 6;
static_assert(kTokenPrefix.size() + kRandomChars + kChecksumChars == kTokenLength);

// The reflected CRC-32 of zlib's crc32(), so that secret scanners can
// verify our tokens with any zlib binding. Slicing-by-4 tables: a Bearer
// token is checked on every request, before any key lookup.
constexpr std::array<std::array<std::uint32_t, 256>, 4> make_crc_tables() {
  std::array<std::array<std::uint32_t, 256>, 4> t{};
  for (std::uint32_t n = 0; n < 256; ++n) {
    std::uint32_t c = n;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[0][n] = c;
  }
  for (std::uint32_t n = 0; n < 256; ++n)
    for (std::size_t k = 1; k < 4; ++k) t[k][n] = t[0][t[k - 1][n] & 0xFFu] ^ (t[k - 1][n] >> 8);
  return t;
}
constexpr auto kCrcTables = make_crc_tables();

constexpr auto kIsBase62 = [] {
  std::array<bool, 256> t{};
  for (char c : kBase62) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

bool is_base62(char c) noexcept { return kIsBase62[static_cast<unsigned char>(c)]; }

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::uint32_t crc32(std::string_view data) noexcept {
  const auto& t = kCrcTables;
  std::uint32_t c = 0xFFFFFFFFu;
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  std::size_t n = data.size();
  for (; n >= 4; n -= 4, p += 4) {
    c ^= static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
    c = t[3][c & 0xFFu] ^ t[2][(c >> 8) & 0xFFu] ^ t[1][(c >> 16) & 0xFFu] ^ t[0][c >> 24];
  }
  for (; n > 0; --n, ++p) c = t[0][(c ^ *p) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::string checksum_chars(std::string_view body) {
  std::uint32_t n = crc32(body);
  std::string tail(kChecksumChars, '0');
  // 62^6 > 2^32, so six digits always hold the whole CRC.
  for (std::size_t i = kChecksumChars; i-- > 0;) {
    tail[i] = kBase62[n % 62];
    n /= 62;
  }
  return tail;
}

}  // namespace

std::string generate_token() {
  std::string token(kTokenPrefix);
  token.reserve(kTokenLength);
  std::array<unsigned char, 64> buf{};
  while (token.size() < kTokenPrefix.size() + kRandomChars) {
    if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1) {
      throw std::runtime_error("CSPRNG failure (RAND_bytes)");
    }
    for (unsigned char b : buf) {
      // 248 = 4 * 62: bytes at or above it are dropped so that every base62
      // character is equally likely (a plain b % 62 would favour 0-7).
      if (b >= 248) continue;
      token.push_back(kBase62[b % 62]);
      if (token.size() == kTokenPrefix.size() + kRandomChars) break;
    }
  }
  token += checksum_chars(token);
  OPENSSL_cleanse(buf.data(), buf.size());
  return token;
}

bool rpa_token_well_formed(std::string_view token) noexcept {
  if (!token.starts_with(kTokenPrefix)) return true;  // legacy: nothing to check
  if (token.size() != kTokenLength) return false;
  for (char c : token.substr(kTokenPrefix.size())) {
    if (!is_base62(c)) return false;
  }
  const std::string_view body = token.substr(0, kTokenLength - kChecksumChars);
  std::uint32_t n = crc32(body);
  for (std::size_t i = kTokenLength; i-- > kTokenLength - kChecksumChars;) {
    if (token[i] != kBase62[n % 62]) return false;
    n /= 62;
  }
  return n == 0;
}

Digest sha256(std::string_view data) noexcept {
  // OpenSSL 3's one-shot SHA256() fetches the algorithm from its provider
  // store on every call (locks included): a quarter of a reject's CPU. The
  // low-level functions, deprecated but present in OpenSSL 3, hash directly.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  Digest d{};
  SHA256_CTX ctx;
  SHA256_Init(&ctx);
  SHA256_Update(&ctx, data.data(), data.size());
  SHA256_Final(d.data(), &ctx);
#pragma GCC diagnostic pop
  return d;
}

std::string hash_form(const Digest& d) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  out.reserve(7 + 64);
  for (std::uint8_t b : d) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xF]);
  }
  return out;
}

std::optional<Digest> parse_hash_form(std::string_view s) noexcept {
  constexpr std::string_view kScheme = "sha256:";
  if (!s.starts_with(kScheme) || s.size() != kScheme.size() + 64) return std::nullopt;
  s.remove_prefix(kScheme.size());
  Digest d{};
  for (std::size_t i = 0; i < d.size(); ++i) {
    const int hi = hex_value(s[2 * i]);
    const int lo = hex_value(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    d[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return d;
}

bool digest_equal(const Digest& a, const Digest& b) noexcept {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace frontdoor::auth
