// KeyStore over the YAML file (SPEC §3). Every mutation takes the file's
// flock, re-reads the file under it (so a hand edit or another writer wins
// for every field but usage), applies the change and rewrites the file
// atomically. changes() cannot name changed keys in a YAML file: it tells
// the registry to reload when the file is no longer the one we last read or
// wrote (inode, size or modification time moved).
#include <algorithm>
#include <unordered_map>

#include "frontdoor/auth/store.hpp"

namespace frontdoor::auth {

namespace {

class YamlStore final : public KeyStore {
 public:
  explicit YamlStore(std::string path) : path_(std::move(path)) {}

  const std::string& path() const noexcept override { return path_; }

  std::vector<Key> load() override {
    auto before = stamp_of(path_);
    auto keys = load_yaml_store(path_);
    // A writer may have replaced the file while we read it; then the next
    // changes() sees a different stamp and the registry reloads again.
    seen_ = before;
    return keys;
  }

  std::optional<StoreChanges> changes() override {
    if (stamp_of(path_) == seen_) return StoreChanges{};
    return std::nullopt;
  }

  void create(const Key& key) override {
    mutate([&](std::vector<Key>& keys) {
      for (const auto& k : keys) {
        if (k.id == key.id) throw DuplicateKeyId(path_ + ": a key with id " + key.id + " exists already");
        if (k.hash == key.hash) throw StoreError(path_ + ": a key with the same token exists already");
      }
      keys.push_back(key);
      return true;
    });
  }

  std::optional<Key> update(const std::string& id, const std::function<void(Key&)>& edit) override {
    std::optional<Key> result;
    mutate([&](std::vector<Key>& keys) {
      auto it = std::find_if(keys.begin(), keys.end(), [&](const Key& k) { return k.id == id; });
      if (it == keys.end()) return false;  // deleted on disk stays deleted
      edit(*it);
      result = *it;
      return true;
    });
    return result;
  }

  bool remove(const std::string& id) override {
    bool removed = false;
    mutate([&](std::vector<Key>& keys) {
      auto it = std::find_if(keys.begin(), keys.end(), [&](const Key& k) { return k.id == id; });
      if (it == keys.end()) return false;
      keys.erase(it);
      removed = true;
      return true;
    });
    return removed;
  }

  void flush_usage(const std::vector<KeyUsage>& usage) override {
    if (usage.empty()) return;
    mutate([&](std::vector<Key>& keys) {
      std::unordered_map<std::string_view, Key*> by_id;
      for (auto& k : keys) by_id.emplace(k.id, &k);
      bool changed = false;
      for (const auto& u : usage) {
        auto it = by_id.find(u.id);
        if (it == by_id.end()) continue;  // deleted meanwhile: stays deleted
        Key& k = *it->second;
        if (u.last_used_at && (!k.last_used_at || *k.last_used_at < *u.last_used_at)) {
          k.last_used_at = u.last_used_at;
          changed = true;
        }
        if (u.requests_total > k.requests_total) {
          k.requests_total = u.requests_total;
          changed = true;
        }
      }
      return changed;
    });
  }

 private:
  // Lock, re-read what is on disk now, apply, write back atomically.
  // `apply` returns false when nothing needs writing.
  template <class F>
  void mutate(F&& apply) {
    StoreLock lock(path_);
    auto keys = load_yaml_store(path_);
    bool changed_on_disk = !(stamp_of(path_) == seen_);
    if (!apply(keys)) return;
    const FileStamp written = write_yaml_store_atomic(path_, keys);
    // Our own write is not a change to reload for, unless someone else's
    // change was merged into it (then the registry must see theirs too).
    // The stamp is the one of the file we wrote, not of whatever the path
    // names now: a CLI write renamed over ours in between must still be
    // seen as a change.
    if (!changed_on_disk) seen_ = written;
  }

  std::string path_;
  FileStamp seen_;
};

}  // namespace

std::unique_ptr<KeyStore> open_yaml_store(const std::string& path) {
  auto store = std::make_unique<YamlStore>(path);
  return store;
}

std::unique_ptr<KeyStore> KeyStore::open(const std::string& path) {
  if (is_postgres_uri(path)) return open_pg_store(path);
  auto dot = path.rfind('.');
  if (dot != std::string::npos && path.substr(dot) == ".db") return open_sqlite_store(path);
  return open_yaml_store(path);
}

}  // namespace frontdoor::auth
