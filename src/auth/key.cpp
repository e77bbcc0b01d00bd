#include "frontdoor/auth/key.hpp"

#include <algorithm>
#include <stdexcept>

namespace frontdoor::auth {

std::string_view to_string(Access a) noexcept {
  switch (a) {
    case Access::none:
      return "none";
    case Access::read:
      return "read";
    case Access::read_write:
      return "read_write";
  }
  return "none";
}

std::optional<Access> parse_access(std::string_view s) noexcept {
  if (s == "none") return Access::none;
  if (s == "read") return Access::read;
  if (s == "read_write") return Access::read_write;
  return std::nullopt;
}

Access Key::access_for(std::string_view endpoint) const noexcept {
  if (legacy_access) return *legacy_access;
  const auto it = std::lower_bound(endpoints.begin(), endpoints.end(), endpoint,
                                   [](const std::pair<std::string, Access>& e,
                                      std::string_view name) { return e.first < name; });
  if (it != endpoints.end() && it->first == endpoint) return it->second;
  return default_access;
}

Key& Key::operator=(const Key& o) {
  if (this == &o) return *this;
  id = o.id;
  name = o.name;
  hash = o.hash;
  prefix = o.prefix;
  enabled = o.enabled;
  created_at = o.created_at;
  last_used_at = o.last_used_at;
  expires_at = o.expires_at;
  management = o.management;
  legacy_access = o.legacy_access;
  default_access = o.default_access;
  endpoints = o.endpoints;
  rate_limit = o.rate_limit;
  requests_total = o.requests_total;
  runtime_.store(o.runtime_.load(std::memory_order_acquire), std::memory_order_release);
  return *this;
}

namespace {
// Every KeyRuntime ever created, pushed lock-free by the request path.
std::atomic<KeyRuntime*> g_runtimes{nullptr};
}  // namespace

KeyRuntime& Key::runtime() const {
  if (auto* rt = runtime_.load(std::memory_order_acquire)) return *rt;
  // First use of this key by any thread: create, then publish with one CAS.
  // A racing thread's spare is dropped before it is ever shared.
  auto fresh = std::make_unique<KeyRuntime>(id, requests_total);
  KeyRuntime* expected = nullptr;
  if (!runtime_.compare_exchange_strong(expected, fresh.get(), std::memory_order_acq_rel))
    return *expected;
  KeyRuntime* rt = fresh.release();
  rt->next_in_list = g_runtimes.load(std::memory_order_relaxed);
  while (!g_runtimes.compare_exchange_weak(rt->next_in_list, rt, std::memory_order_release,
                                           std::memory_order_relaxed)) {
  }
  return *rt;
}

void for_each_key_runtime(const std::function<void(KeyRuntime&)>& f) {
  for (KeyRuntime* rt = g_runtimes.load(std::memory_order_acquire); rt; rt = rt->next_in_list) f(*rt);
}

// ---------------------------------------------------------------------------
// KeySet: base + overlay
// ---------------------------------------------------------------------------

struct KeySet::Base {
  std::vector<Key> keys;
  std::unordered_map<Digest, std::uint32_t, DigestHash> by_hash;
  std::unordered_map<std::string_view, std::uint32_t> by_id;  // views into keys
};

struct KeySet::Overlay {
  // id -> the key's new version, or nullptr when deleted.
  std::unordered_map<std::string, std::shared_ptr<const Key>> by_id;
  std::unordered_map<Digest, std::shared_ptr<const Key>, DigestHash> by_hash;
};

KeySet::KeySet() : base_(std::make_shared<const Base>()) {}

KeySet::KeySet(std::vector<Key> keys) {
  for (Key& k : keys) {
    std::sort(k.endpoints.begin(), k.endpoints.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
  }
  auto base = std::make_shared<Base>();
  base->keys = std::move(keys);
  base->by_hash.reserve(base->keys.size());
  base->by_id.reserve(base->keys.size());
  for (std::uint32_t i = 0; i < base->keys.size(); ++i) {
    const Key& k = base->keys[i];
    if (!base->by_id.emplace(std::string_view(k.id), i).second)
      throw std::invalid_argument("duplicate key id " + k.id);
    if (!base->by_hash.emplace(k.hash, i).second)
      throw std::invalid_argument("duplicate key hash (key " + k.id + ")");
  }
  size_ = base->keys.size();
  base_ = std::move(base);
}

std::size_t KeySet::overlay_size() const noexcept { return overlay_ ? overlay_->by_id.size() : 0; }

const Key* KeySet::find_by_hash(const Digest& d) const noexcept {
  if (overlay_) {
    auto it = overlay_->by_hash.find(d);
    if (it != overlay_->by_hash.end()) return digest_equal(it->second->hash, d) ? it->second.get() : nullptr;
  }
  const auto it = base_->by_hash.find(d);
  if (it == base_->by_hash.end()) return nullptr;
  const Key& k = base_->keys[it->second];
  // A base key that the overlay changed or deleted is not this hash's key
  // any more (the overlay's version, if it still has this hash, was found above).
  if (overlay_ && overlay_->by_id.count(k.id)) return nullptr;
  // The map's own comparison is not constant time; this one is the one
  // that decides.
  return digest_equal(k.hash, d) ? &k : nullptr;
}

const Key* KeySet::find_by_id(std::string_view id) const noexcept {
  if (overlay_) {
    auto it = overlay_->by_id.find(std::string(id));
    if (it != overlay_->by_id.end()) return it->second.get();
  }
  const auto it = base_->by_id.find(id);
  return it == base_->by_id.end() ? nullptr : &base_->keys[it->second];
}

void KeySet::for_each(const std::function<void(const Key&)>& f) const {
  for (const Key& k : base_->keys) {
    if (overlay_) {
      auto it = overlay_->by_id.find(k.id);
      if (it != overlay_->by_id.end()) {
        if (it->second) f(*it->second);
        continue;
      }
    }
    f(k);
  }
  if (overlay_)
    for (const auto& [id, k] : overlay_->by_id)
      if (k && !base_->by_id.count(std::string_view(id))) f(*k);
}

std::vector<Key> KeySet::keys() const {
  std::vector<Key> out;
  out.reserve(size_);
  for_each([&](const Key& k) { out.push_back(k); });
  return out;
}

std::shared_ptr<const KeySet> KeySet::with_changes(const std::vector<Key>& upserts,
                                                   const std::vector<std::string>& removed) const {
  auto next = std::make_shared<KeySet>(*this);
  auto overlay = overlay_ ? std::make_shared<Overlay>(*overlay_) : std::make_shared<Overlay>();
  std::size_t size = size_;
  auto drop_current = [&](const std::string& id) {
    // Forget the overlay's hash entry of the current version, if any.
    auto it = overlay->by_id.find(id);
    if (it != overlay->by_id.end() && it->second) overlay->by_hash.erase(it->second->hash);
  };
  auto exists = [&](const std::string& id) {
    auto it = overlay->by_id.find(id);
    if (it != overlay->by_id.end()) return it->second != nullptr;
    return base_->by_id.count(std::string_view(id)) > 0;
  };
  for (const auto& id : removed) {
    if (!exists(id)) continue;
    drop_current(id);
    overlay->by_id[id] = nullptr;
    --size;
  }
  for (Key k : upserts) {
    std::sort(k.endpoints.begin(), k.endpoints.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    bool existed = exists(k.id);
    drop_current(k.id);
    // The hash must not belong to another live key.
    if (auto o = overlay->by_hash.find(k.hash); o != overlay->by_hash.end() && o->second->id != k.id)
      throw std::invalid_argument("duplicate key hash (key " + k.id + ")");
    if (auto b = base_->by_hash.find(k.hash); b != base_->by_hash.end()) {
      const Key& owner = base_->keys[b->second];
      if (owner.id != k.id && !overlay->by_id.count(owner.id))
        throw std::invalid_argument("duplicate key hash (key " + k.id + ")");
    }
    // Keep the runtime state (usage, buckets) of the version it replaces.
    if (!k.runtime_if_any())
      if (const Key* old = find_by_id(k.id)) k.adopt_runtime(old->runtime_if_any());
    auto shared = std::make_shared<const Key>(std::move(k));
    overlay->by_hash[shared->hash] = shared;
    overlay->by_id[shared->id] = shared;
    if (!existed) ++size;
  }
  next->overlay_ = std::move(overlay);
  next->size_ = size;
  return next;
}

std::shared_ptr<const KeySet> KeySet::compact() const { return std::make_shared<const KeySet>(keys()); }

}  // namespace frontdoor::auth
