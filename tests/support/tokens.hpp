#pragma once
// Test tokens in the SPEC §3 format, computed here (own CRC-32 and base62)
// so that the harness does not depend on the auth module it tests.
#include <cstdint>
#include <string>
#include <string_view>

namespace frontdoor::test {

// zlib-compatible CRC-32 (polynomial 0xEDB88320, init/final xor 0xFFFFFFFF).
std::uint32_t crc32(std::string_view data) noexcept;

// "rpa_" + 34 base62 characters derived from `seed` + 6 base62 of the CRC-32.
std::string make_rpa_token(std::uint64_t seed);

// The same token with a wrong checksum (last character changed).
std::string with_bad_checksum(std::string token);

// "sha256:<64 hex>" of the token, as stored in the key store.
std::string stored_hash(std::string_view token);

// A token never seen before in this process (seeded from a counter and the pid).
std::string fresh_rpa_token();

}  // namespace frontdoor::test
