#pragma once
// API tokens (SPEC §3): "rpa_" + 34 CSPRNG base62 characters + 6 base62
// characters of the CRC-32 of everything before them. Only SHA-256 digests of
// tokens are ever stored.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace frontdoor::auth {

using Digest = std::array<std::uint8_t, 32>;

inline constexpr std::string_view kTokenPrefix = "rpa_";
inline constexpr std::size_t kTokenLength = 44;  // "rpa_" + 34 + 6

// A new token from OpenSSL's CSPRNG. Throws std::runtime_error if the CSPRNG fails.
std::string generate_token();

// For a token that starts with "rpa_": true when it has the right length,
// only base62 characters and a matching checksum. Tokens without the prefix
// (legacy keys) are not checked here.
bool rpa_token_well_formed(std::string_view token) noexcept;

// SHA-256 of the whole token.
Digest sha256(std::string_view data) noexcept;

// "sha256:<64 lower-case hex>".
std::string hash_form(const Digest& d);

// Parses "sha256:<64 hex>" (hex in either case); nullopt when malformed.
std::optional<Digest> parse_hash_form(std::string_view s) noexcept;

// Constant-time equality of two digests.
bool digest_equal(const Digest& a, const Digest& b) noexcept;

}  // namespace frontdoor::auth
