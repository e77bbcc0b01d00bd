#pragma once
// A key store (SPEC §3), in any of its formats, behind one interface: the
// YAML file (hand-editable, up to ~100,000 keys), an SQLite database
// (millions of keys, frequent changes) or PostgreSQL (a fleet of replicas,
// §3.1). Chosen by name: a postgresql:// URI, a ".db" file, else YAML.
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
#include <string_view>
#include <unordered_map>
#include <vector>

#include "frontdoor/auth/key.hpp"
#include "frontdoor/auth/key_store.hpp"  // StoreError

namespace frontdoor::auth {

struct KeyUsage {
  std::string id;
  std::optional<core::UnixSeconds> last_used_at;
  std::uint64_t requests_total = 0;   // this process's view of the total (file stores merge by maximum)
  std::uint64_t requests_added = 0;   // counted since the last flush that succeeded (PostgreSQL adds it)
};

// A key's usage as the whole fleet has flushed it (PostgreSQL).
struct UsageTotal {
  std::uint64_t requests_total = 0;
  std::optional<core::UnixSeconds> last_used_at;
};

// Another frontdoor process sharing a PostgreSQL store (GET /v1/replicas).
struct Replica {
  std::string id;
  std::string address;
  std::string version;
  core::UnixSeconds last_seen = 0;
  double stale_seconds = 0;
};

// What a remote store (PostgreSQL) says about its connection; file stores
// are always reachable. Read on the store thread.
struct StoreStatus {
  bool remote = false;
  bool reachable = true;              // the last contact succeeded and the snapshot is caught up
  std::int64_t last_contact_ms = 0;   // steady clock (ms) of the last successful catch-up; 0 = never
  std::uint64_t reconnects = 0;       // connections (re)established after the first
  double feed_lag_seconds = 0;        // commit (trigger time) to applied, of the last change seen
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
  // PostgreSQL adds requests_added instead: every replica counts its own.
  virtual void flush_usage(const std::vector<KeyUsage>& usage) = 0;

  // --- remote stores only (PostgreSQL); the defaults fit file stores.
  // Calls `on_change` (from a thread of the store's own) whenever another
  // writer may have changed a key, and after a reconnection: the owner then
  // calls changes() on its thread. The file stores are polled instead.
  virtual void watch(std::function<void()> on_change) { (void)on_change; }
  // Stops the thread watch() started and waits for it; `on_change` is not
  // called any more. Never throws; may be called twice.
  virtual void stop_watch() noexcept {}
  virtual StoreStatus status() const { return {}; }
  // Records this replica as alive and returns the replicas seen in the last
  // 15 s (itself included); nullopt for a file store. Throws StoreError.
  virtual std::optional<std::vector<Replica>> heartbeat(const Replica& self) {
    (void)self;
    return std::nullopt;
  }
  // The fleet's flushed usage of those keys (ids without a row are left
  // out); nullopt for a file store, whose snapshot already holds every
  // count there is. Throws StoreError.
  virtual std::optional<std::unordered_map<std::string, UsageTotal>> usage(const std::vector<std::string>& ids) {
    (void)ids;
    return std::nullopt;
  }
  // Removes this replica's row at a clean exit. Never throws.
  virtual void leave(const std::string& replica_id) noexcept { (void)replica_id; }
};

// SPEC §1: a postgresql:// or postgres:// URI names a PostgreSQL store.
bool is_postgres_uri(std::string_view store) noexcept;
// The store's name as it may be shown: a URI without its password.
std::string shown_store(const std::string& store);

// The YAML implementation (key_store.cpp holds the parser and writer).
std::unique_ptr<KeyStore> open_yaml_store(const std::string& path);
// The SQLite implementation (sqlite_store.cpp).
std::unique_ptr<KeyStore> open_sqlite_store(const std::string& path);
// The PostgreSQL implementation (pg_store.cpp). Connects at once and checks
// the schema: StoreError when it is missing or older than this frontdoor
// needs. A server that cannot be reached is no error here: the store comes
// back unconnected and load() / changes() keep trying (StoreUnavailable).
std::unique_ptr<KeyStore> open_pg_store(const std::string& uri);
// `frontdoor keys migrate`: creates or upgrades the schema; safe to run
// from several processes at once. Returns a line saying what it did.
std::string migrate_pg_store(const std::string& uri);

}  // namespace frontdoor::auth
