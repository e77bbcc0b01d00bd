#pragma once
// One API key as stored (SPEC §3) and the immutable snapshot of all keys
// that the request path reads.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "frontdoor/auth/token.hpp"
#include "frontdoor/core/time.hpp"

namespace frontdoor::auth {

enum class Access : std::uint8_t { none, read, read_write };

std::string_view to_string(Access a) noexcept;
std::optional<Access> parse_access(std::string_view s) noexcept;

struct RateLimit {
  double rps = 0;
  std::uint64_t burst = 0;
  std::uint64_t max_concurrent = 0;  // 0 = unlimited
};

struct Key {
  std::string id;
  std::string name;
  Digest hash{};
  std::string prefix;
  bool enabled = true;
  std::optional<core::UnixSeconds> created_at;
  std::optional<core::UnixSeconds> last_used_at;
  std::optional<core::UnixSeconds> expires_at;
  Access management = Access::none;
  // Legacy keys have one access level for every endpoint and no map.
  std::optional<Access> legacy_access;
  Access default_access = Access::none;                    // the "*" entry
  std::vector<std::pair<std::string, Access>> endpoints;   // without "*", sorted by name
  std::optional<RateLimit> rate_limit;
  std::uint64_t requests_total = 0;

  // Access for an endpoint id: legacy_access if set, else the endpoint's
  // entry, else default_access.
  Access access_for(std::string_view endpoint) const noexcept;
  bool expired_at(core::UnixSeconds now) const noexcept {
    return expires_at && *expires_at <= now;
  }
};

struct DigestHash {
  std::size_t operator()(const Digest& d) const noexcept {
    std::size_t h;
    static_assert(sizeof(h) <= sizeof(Digest));
    __builtin_memcpy(&h, d.data(), sizeof(h));  // already uniform
    return h;
  }
};

// Immutable after construction; shared across threads as shared_ptr<const KeySet>.
class KeySet {
 public:
  KeySet() = default;
  // Throws std::invalid_argument on a duplicate id or a duplicate hash.
  explicit KeySet(std::vector<Key> keys);
  // by_id_ holds views into keys_: a copy rebuilds the index so that it never
  // points into the source; a move keeps the heap buffers and so stays valid.
  KeySet(const KeySet& other);
  KeySet& operator=(const KeySet& other);
  KeySet(KeySet&&) noexcept = default;
  KeySet& operator=(KeySet&&) noexcept = default;

  // O(1); compares digests in constant time. nullptr when unknown.
  const Key* find_by_hash(const Digest& d) const noexcept;
  const Key* find_by_id(std::string_view id) const noexcept;
  const std::vector<Key>& keys() const noexcept { return keys_; }
  std::size_t size() const noexcept { return keys_.size(); }

 private:
  void build_index();

  std::vector<Key> keys_;
  std::unordered_map<Digest, std::uint32_t, DigestHash> by_hash_;
  std::unordered_map<std::string_view, std::uint32_t> by_id_;
};

}  // namespace frontdoor::auth
