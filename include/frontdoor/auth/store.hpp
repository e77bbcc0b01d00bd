#pragma once
// A key store on disk (SPEC §3), in either format, behind one interface:
// the YAML file (hand-editable, up to ~100,000 keys) or an SQLite database
// (millions of keys, frequent changes). Chosen by file name: ".db" is SQLite.
//
// Every mutation is durable when it returns, atomic, serialized with other
// writers (the `keys` CLI, other processes) by the store's own lock, and
// applied to what is on disk *now* (re-read under the lock), so a hand edit
// or a concurrent writer is never overwritten (SPEC §3 merge rules).
// Not thread-safe: one owner (the key registry) calls it.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "frontdoor/auth/key.hpp"
#include "frontdoor/auth/key_store.hpp"  // StoreError

namespace frontdoor::auth {

struct KeyUsage {
  std::string id;
  std::optional<core::UnixSeconds> last_used_at;
  std::uint64_t requests_total = 0;
};

// What changed on disk since the previous load() or changes().
struct StoreChanges {
  std::vector<Key> upserted;             // new or changed keys, whole
  std::vector<std::string> deleted_ids;
};

class KeyStore {
 public:
  virtual ~KeyStore() = default;

  // Opens (SQLite: creates the schema if the file is new; YAML: the file
  // must exist). Throws StoreError naming the file.
  static std::unique_ptr<KeyStore> open(const std::string& path);

  virtual const std::string& path() const noexcept = 0;

  // Every key. Throws StoreError (with file:line for YAML).
  virtual std::vector<Key> load() = 0;

  // Changes since the last load() or changes(): SQLite reads only changed
  // rows (by change sequence); nullopt means "cannot tell, load() again"
  // (a YAML file that changed on disk). An empty StoreChanges: nothing changed.
  virtual std::optional<StoreChanges> changes() = 0;

  // Adds a key (id and hash must be new: StoreError otherwise).
  virtual void create(const Key& key) = 0;
  // Applies `edit` to the key as it is on disk now; returns the result, or
  // nullopt when no key has that id (deleted on disk stays deleted).
  virtual std::optional<Key> update(const std::string& id, const std::function<void(Key&)>& edit) = 0;
  // False when no key has that id.
  virtual bool remove(const std::string& id) = 0;
  // Merges usage by maximum (last_used_at, requests_total) into the keys
  // that still exist; one write (one transaction) for the whole batch.
  virtual void flush_usage(const std::vector<KeyUsage>& usage) = 0;
};

// The YAML implementation (key_store.cpp holds the parser and writer).
std::unique_ptr<KeyStore> open_yaml_store(const std::string& path);
// The SQLite implementation (sqlite_store.cpp).
std::unique_ptr<KeyStore> open_sqlite_store(const std::string& path);

}  // namespace frontdoor::auth
