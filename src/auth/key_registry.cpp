#include "frontdoor/auth/key_registry.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <queue>
#include <stdexcept>

#include "frontdoor/auth/token.hpp"

namespace frontdoor::auth {

struct KeyRegistry::Impl {
  Impl(std::unique_ptr<KeyStore> s, core::SnapshotCell<KeySet>& c) : store(std::move(s)), cell(c) {}

  std::unique_ptr<KeyStore> store;
  core::SnapshotCell<KeySet>& cell;
  mutable std::mutex mutex;
  std::shared_ptr<const KeySet> current;
  bool loaded = false;  // false until the store has loaded once (a database that was down at start)
  bool must_load = false;  // changes read from the store never reached the snapshot: load it all

  void publish(std::shared_ptr<const KeySet> next) {
    // Fold a grown overlay into a new base: lookups stay one probe, and the
    // cost is paid here, off the request path.
    if (next->overlay_size() > std::max<std::size_t>(1024, next->size() / 32)) next = next->compact();
    current = next;
    cell.publish(std::move(next));
  }

  // A fresh set from a full load keeps each surviving key's runtime state.
  std::shared_ptr<const KeySet> fresh_set(std::vector<Key> keys) const {
    if (current)
      for (auto& k : keys)
        if (const Key* old = current->find_by_id(k.id)) k.adopt_runtime(old->runtime_if_any());
    try {
      return std::make_shared<const KeySet>(std::move(keys));
    } catch (const std::invalid_argument& e) {
      throw StoreError(store->path() + ": " + e.what());
    }
  }

  std::shared_ptr<const KeySet> changed(const std::vector<Key>& upserts, const std::vector<std::string>& removed) {
    try {
      return current->with_changes(upserts, removed);
    } catch (const std::invalid_argument& e) {
      throw StoreError(store->path() + ": " + e.what());
    }
  }

  std::string new_id() const {
    static constexpr char kHex[] = "0123456789abcdef";
    for (;;) {
      unsigned char b[4];
      if (RAND_bytes(b, sizeof b) != 1) throw StoreError("CSPRNG failure (RAND_bytes)");
      std::string id = "key_";
      for (unsigned char c : b) {
        id.push_back(kHex[c >> 4]);
        id.push_back(kHex[c & 15]);
      }
      if (!current->find_by_id(id)) return id;
    }
  }
};

namespace {

// The key as this process sees it: stored usage merged with what it counted.
Key with_usage(const Key& k) {
  Key v = k;
  if (const KeyRuntime* rt = k.runtime_if_any()) {
    auto used = rt->last_used.load(std::memory_order_relaxed);
    if (used && (!v.last_used_at || *v.last_used_at < used)) v.last_used_at = used;
    v.requests_total = std::max(v.requests_total, rt->base_total + rt->requests.load(std::memory_order_relaxed));
  }
  return v;
}

// On a shared store (PostgreSQL) the snapshot's counts are those of its
// last load, and other replicas' usage never feeds the change feed: the
// fleet's flushed totals plus what this process counted since its own last
// flush are the truth. Best effort: without the database the snapshot's
// counts stand. The caller holds the registry's mutex (flushed_requests).
void with_fleet_usage(KeyStore& store, const KeySet& set, std::vector<Key>& keys) {
  if (keys.empty()) return;
  std::vector<std::string> ids;
  ids.reserve(keys.size());
  for (const Key& k : keys) ids.push_back(k.id);
  std::optional<std::unordered_map<std::string, UsageTotal>> totals;
  try {
    totals = store.usage(ids);
  } catch (const StoreError&) {
    return;
  }
  if (!totals) return;  // a file store: the snapshot holds every count
  for (Key& v : keys) {
    auto it = totals->find(v.id);
    if (it == totals->end()) continue;
    std::uint64_t unflushed = 0;
    const Key* k = set.find_by_id(v.id);
    if (const KeyRuntime* rt = k ? k->runtime_if_any() : nullptr)
      unflushed = rt->requests.load(std::memory_order_relaxed) - rt->flushed_requests;
    v.requests_total = it->second.requests_total + unflushed;
    if (it->second.last_used_at && (!v.last_used_at || *v.last_used_at < *it->second.last_used_at))
      v.last_used_at = it->second.last_used_at;
  }
}

}  // namespace

KeyRegistry::KeyRegistry(std::unique_ptr<KeyStore> store, core::SnapshotCell<KeySet>& published)
    : impl_(std::make_unique<Impl>(std::move(store), published)) {
  try {
    impl_->publish(impl_->fresh_set(impl_->store->load()));
    impl_->loaded = true;
  } catch (const StoreUnavailable&) {
    // A database that cannot be reached yet (SPEC §3.1): start with no keys
    // and load at the first reload() that reaches it.
    if (!impl_->store->status().remote) throw;
    impl_->publish(std::make_shared<const KeySet>());
  }
}

bool KeyRegistry::loaded() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->loaded;
}

KeyStore& KeyRegistry::store() { return *impl_->store; }

KeyRegistry::~KeyRegistry() = default;

const std::string& KeyRegistry::store_path() const { return impl_->store->path(); }

std::size_t KeyRegistry::size() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->current->size();
}

std::vector<Key> KeyRegistry::list(std::string_view after, std::size_t limit,
                                   std::optional<std::string>& next) const {
  std::shared_ptr<const KeySet> set;
  {
    std::lock_guard lock(impl_->mutex);
    set = impl_->current;
  }
  // The `limit + 1` smallest ids after `after`, without sorting the store.
  std::priority_queue<std::string> smallest;
  set->for_each([&](const Key& k) {
    if (!after.empty() && k.id <= after) return;
    if (smallest.size() <= limit) {
      smallest.push(k.id);
    } else if (k.id < smallest.top()) {
      smallest.pop();
      smallest.push(k.id);
    }
  });
  std::vector<std::string> ids;
  while (!smallest.empty()) {
    ids.push_back(smallest.top());
    smallest.pop();
  }
  std::reverse(ids.begin(), ids.end());
  next.reset();
  if (ids.size() > limit) ids.pop_back();
  std::vector<Key> out;
  out.reserve(ids.size());
  for (const auto& id : ids) out.push_back(with_usage(*set->find_by_id(id)));
  {
    std::lock_guard lock(impl_->mutex);
    with_fleet_usage(*impl_->store, *set, out);
  }
  if (!out.empty() && ids.size() == limit && limit > 0) {
    // More follow when any id is greater than the last one returned.
    bool more = false;
    const std::string& last = out.back().id;
    set->for_each([&](const Key& k) { more = more || k.id > last; });
    if (more) next = last;
  }
  return out;
}

std::optional<Key> KeyRegistry::get(std::string_view id) const {
  std::lock_guard lock(impl_->mutex);
  const Key* k = impl_->current->find_by_id(id);
  if (!k) return std::nullopt;
  std::vector<Key> one{with_usage(*k)};
  with_fleet_usage(*impl_->store, *impl_->current, one);
  return std::move(one.front());
}

IssuedKey KeyRegistry::create(const NewKey& spec) {
  std::lock_guard lock(impl_->mutex);
  IssuedKey issued;
  issued.token = generate_token();
  Key& k = issued.key;
  k.id = impl_->new_id();
  k.name = spec.name;
  k.hash = sha256(issued.token);
  k.prefix = issued.token.substr(0, 8);
  k.enabled = spec.enabled;
  k.created_at = core::now_unix();
  k.expires_at = spec.expires_at;
  k.management = spec.management;
  k.legacy_access = spec.legacy_access;
  k.default_access = spec.default_access;
  k.endpoints = spec.endpoints;
  std::sort(k.endpoints.begin(), k.endpoints.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  k.rate_limit = spec.rate_limit;
  // Ids are 32 random bits (SPEC §3's key_<8 hex>) checked against this
  // snapshot only: in a store of millions shared with CLI writers, another
  // writer may hold the id already. The store refuses it; pick another.
  constexpr int kIdAttempts = 8;
  for (int attempt = 1;; ++attempt) {
    try {
      impl_->store->create(k);  // durable first
      break;
    } catch (const DuplicateKeyId&) {
      if (attempt == kIdAttempts) throw;
      k.id = impl_->new_id();
    }
  }
  impl_->publish(impl_->changed({k}, {}));
  return issued;
}

std::optional<Key> KeyRegistry::update(const std::string& id, const std::function<void(Key&)>& edit) {
  std::lock_guard lock(impl_->mutex);
  auto result = impl_->store->update(id, [&](Key& k) {
    edit(k);
    std::sort(k.endpoints.begin(), k.endpoints.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  });
  if (!result) {
    // Deleted on disk meanwhile: it stays deleted here too.
    if (impl_->current->find_by_id(id)) impl_->publish(impl_->changed({}, {id}));
    return std::nullopt;
  }
  impl_->publish(impl_->changed({*result}, {}));
  return with_usage(*impl_->current->find_by_id(id));
}

bool KeyRegistry::remove(const std::string& id) {
  std::lock_guard lock(impl_->mutex);
  bool removed = impl_->store->remove(id);
  if (removed || impl_->current->find_by_id(id)) impl_->publish(impl_->changed({}, {id}));
  return removed;
}

std::optional<IssuedKey> KeyRegistry::rotate(const std::string& id) {
  std::string token = generate_token();
  auto key = update(id, [&](Key& k) {
    k.hash = sha256(token);
    k.prefix = token.substr(0, 8);
  });
  if (!key) return std::nullopt;
  return IssuedKey{std::move(*key), std::move(token)};
}

void KeyRegistry::reload() {
  std::lock_guard lock(impl_->mutex);
  auto full_load = [&] {
    impl_->publish(impl_->fresh_set(impl_->store->load()));
    impl_->loaded = true;
  };
  if (!impl_->loaded || impl_->must_load) {
    full_load();
    impl_->must_load = false;
    return;
  }
  auto changes = impl_->store->changes();
  if (!changes) return full_load();
  if (changes->upserted.empty() && changes->deleted_ids.empty()) return;
  // The store's position has moved past these changes: if they do not
  // reach the snapshot now, only a full load can bring them.
  impl_->must_load = true;
  try {
    impl_->publish(impl_->current->with_changes(changes->upserted, changes->deleted_ids));
  } catch (const std::invalid_argument&) {
    // Changes that clash with the snapshot (a token moved from one key to
    // another between two polls).
    full_load();
  }
  impl_->must_load = false;
}

void KeyRegistry::flush_usage() {
  std::lock_guard lock(impl_->mutex);
  std::vector<KeyUsage> batch;
  std::vector<std::pair<KeyRuntime*, std::pair<std::uint64_t, std::int64_t>>> marks;
  for_each_key_runtime([&](KeyRuntime& rt) {
    auto requests = rt.requests.load(std::memory_order_relaxed);
    auto used = rt.last_used.load(std::memory_order_relaxed);
    if (requests == rt.flushed_requests && used == rt.flushed_last_used) return;
    KeyUsage u;
    u.id = rt.id;
    if (used) u.last_used_at = used;
    u.requests_total = rt.base_total + requests;
    u.requests_added = requests - rt.flushed_requests;
    batch.push_back(std::move(u));
    marks.push_back({&rt, {requests, used}});
  });
  if (batch.empty()) return;  // nothing changed: no write
  impl_->store->flush_usage(batch);
  for (auto& [rt, m] : marks) {
    rt->flushed_requests = m.first;
    rt->flushed_last_used = m.second;
  }
}

}  // namespace frontdoor::auth
