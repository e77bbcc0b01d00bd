#pragma once
// One API key as stored (SPEC §3) and the immutable snapshot of all keys
// that the request path reads.
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
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

// A key id as every store holds it: 1 to 128 characters of A-Z a-z 0-9 _ - .
// Ids go into the access log and the X-Frontdoor-Key-Id header unescaped,
// so an id read from any store is checked with this first.
bool valid_key_id(std::string_view id) noexcept;
// An id read from a store as it may be shown in a log or an error (before
// it was found valid): bytes outside printable ASCII, and the backslash, as
// \xNN; at most 128 of them.
std::string printable_id(std::string_view id);

// The code point of the UTF-8 sequence at s[i], advancing i past it; or
// kInvalidUtf8, advancing i by one byte, when the bytes there are not UTF-8
// (an overlong form, a surrogate, above U+10FFFF, a stray or missing
// continuation byte).
inline constexpr char32_t kInvalidUtf8 = 0xFFFFFFFF;
char32_t next_code_point(std::string_view s, std::size_t& i) noexcept;
// U+FDD0..U+FDEF and the last two code points of every plane.
constexpr bool is_noncharacter(char32_t c) noexcept {
  return (c >= 0xFDD0 && c <= 0xFDEF) || (c & 0xFFFE) == 0xFFFE;
}

// Why `name` cannot be a key name because of its characters, or nullopt
// when it can (length limits are the caller's). A name is valid UTF-8
// (shortest form, no surrogates) without control characters (Cc: C0, DEL,
// C1 including U+0085) and without noncharacters (U+FDD0..U+FDEF,
// U+xxFFFE, U+xxFFFF). Everything else (U+00A0, U+2028, emoji, CJK,
// combining marks, RTL text) is a name and every store keeps it exactly.
std::optional<std::string> key_name_problem(std::string_view name);

struct RateLimit {
  double rps = 0;
  std::uint64_t burst = 0;
  std::uint64_t max_concurrent = 0;  // 0 = unlimited
};

// Mutable per-key state that lives beside the immutable snapshots and
// survives their swaps (STYLE "Immutable snapshots"): usage and rate-limit
// state. Created on a key's first use and never freed while the process
// runs, so the request path may keep a plain pointer.
struct KeyRuntime {
  explicit KeyRuntime(std::string key_id, std::uint64_t stored_total)
      : id(std::move(key_id)), base_total(stored_total) {}
  const std::string id;
  const std::uint64_t base_total;                 // requests_total in the store when first used
  std::atomic<std::int64_t> last_used{0};         // unix seconds; 0 = not used by this process
  std::atomic<std::uint64_t> requests{0};         // counted by this process
  std::atomic<std::uint32_t> in_flight{0};        // for rate_limit.max_concurrent
  // Token bucket (rate_limit.rps, burst): guarded by bucket_mutex, used
  // only by keys that have a rate limit.
  std::mutex bucket_mutex;
  double tokens = -1;                             // < 0: not started (full)
  std::int64_t refilled_ns = 0;
  // Flush bookkeeping (the registry's thread only).
  std::uint64_t flushed_requests = 0;
  std::int64_t flushed_last_used = 0;
  KeyRuntime* next_in_list = nullptr;             // registry's list of all runtimes
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

  Key() = default;
  Key(const Key& o) { *this = o; }
  Key& operator=(const Key& o);
  Key(Key&& o) noexcept { *this = o; }
  Key& operator=(Key&& o) noexcept { return *this = static_cast<const Key&>(o); }

  // Access for an endpoint id: legacy_access if set, else the endpoint's
  // entry, else default_access.
  Access access_for(std::string_view endpoint) const noexcept;
  bool expired_at(core::UnixSeconds now) const noexcept {
    return expires_at && *expires_at <= now;
  }

  // The key's runtime state, created on first use (lock-free; see
  // KeyRuntime). A copy of the key shares it, so an admin change or a
  // reload that keeps the key keeps its usage and rate-limit state.
  KeyRuntime& runtime() const;
  KeyRuntime* runtime_if_any() const noexcept { return runtime_.load(std::memory_order_acquire); }
  void adopt_runtime(KeyRuntime* rt) const noexcept { runtime_.store(rt, std::memory_order_release); }

 private:
  mutable std::atomic<KeyRuntime*> runtime_{nullptr};
};

// Visits every KeyRuntime ever created (for the usage flush).
void for_each_key_runtime(const std::function<void(KeyRuntime&)>& f);

struct DigestHash {
  std::size_t operator()(const Digest& d) const noexcept {
    std::size_t h;
    static_assert(sizeof(h) <= sizeof(Digest));
    __builtin_memcpy(&h, d.data(), sizeof(h));  // already uniform
    return h;
  }
};

// Immutable after construction; shared across threads as
// shared_ptr<const KeySet>. A large base set plus a small overlay of changed
// and deleted keys: an admin change or an incremental reload builds a new
// KeySet that shares the base and copies only the overlay, so a change to a
// million-key store costs microseconds and no request waits for it. The
// registry folds the overlay into a new base when it grows (compact()).
class KeySet {
 public:
  KeySet();
  // Throws std::invalid_argument on a duplicate id or a duplicate hash.
  explicit KeySet(std::vector<Key> keys);

  // A new set with `upserts` (whole keys, by id) and `removed` ids applied.
  // Throws std::invalid_argument when a hash would belong to two keys.
  std::shared_ptr<const KeySet> with_changes(const std::vector<Key>& upserts,
                                             const std::vector<std::string>& removed) const;
  // The same keys in a fresh base, without overlay.
  std::shared_ptr<const KeySet> compact() const;
  std::size_t overlay_size() const noexcept;

  // O(1); compares digests in constant time. nullptr when unknown.
  const Key* find_by_hash(const Digest& d) const noexcept;
  const Key* find_by_id(std::string_view id) const noexcept;
  std::size_t size() const noexcept { return size_; }
  // Every live key, base order first, then the overlay's additions.
  void for_each(const std::function<void(const Key&)>& f) const;
  // Every live key, copied (tests, export).
  std::vector<Key> keys() const;

 private:
  struct Base;
  struct Overlay;
  std::shared_ptr<const Base> base_;
  std::shared_ptr<const Overlay> overlay_;  // nullptr when empty
  std::size_t size_ = 0;
};

}  // namespace frontdoor::auth
