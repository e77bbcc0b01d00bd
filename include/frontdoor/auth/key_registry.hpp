#pragma once
// The live key store of a running server: owns the KeyStore on disk,
// publishes immutable KeySet snapshots for the request path, keeps per-key
// usage (last used, request counts) beside them and flushes it, and applies
// admin changes so that they hold from the very next request.
//
// Thread-safety: every member function may be called from any thread; they
// serialize on an internal mutex (admin, reload and flush are rare). The
// request path never calls into the registry: it reads the published
// KeySet and the per-key KeyRuntime (atomics) only.
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "frontdoor/auth/key.hpp"
#include "frontdoor/auth/store.hpp"
#include "frontdoor/core/snapshot.hpp"

namespace frontdoor::auth {

// What an admin (or a test) asks for when creating a key.
struct NewKey {
  std::string name;
  bool enabled = true;
  Access management = Access::none;
  std::optional<Access> legacy_access;
  Access default_access = Access::none;                   // "*"
  std::vector<std::pair<std::string, Access>> endpoints;  // without "*"
  std::optional<core::UnixSeconds> expires_at;
  std::optional<RateLimit> rate_limit;
};

// A key together with its token, shown once (create, rotate).
struct IssuedKey {
  Key key;
  std::string token;
};

class KeyRegistry {
 public:
  // Loads the store and publishes the first snapshot into `published`.
  // Throws StoreError.
  KeyRegistry(std::unique_ptr<KeyStore> store, core::SnapshotCell<KeySet>& published);
  ~KeyRegistry();

  const std::string& store_path() const;
  std::size_t size() const;
  // False while a store that could not be reached at start has not loaded
  // yet (SPEC §3.1: /readyz 503, proxied requests 503 key_store_unavailable).
  bool loaded() const;
  // The store itself, for its status and heartbeat (the store thread only).
  KeyStore& store();

  // Keys ordered by id, after `after` (exclusive), at most `limit`; `next`
  // is the last id returned when more follow. Usage fields show what this
  // process has seen (merged with the store's).
  std::vector<Key> list(std::string_view after, std::size_t limit, std::optional<std::string>& next) const;
  std::optional<Key> get(std::string_view id) const;

  // Each change is written to the store first (durable), then published.
  IssuedKey create(const NewKey& spec);  // throws StoreError
  std::optional<Key> update(const std::string& id, const std::function<void(Key&)>& edit);
  bool remove(const std::string& id);
  std::optional<IssuedKey> rotate(const std::string& id);

  // Re-reads the store (only changed rows where the store can tell) and
  // publishes. Throws StoreError and keeps the running snapshot when the
  // store does not load.
  void reload();
  // Writes the usage seen since the last flush; does nothing when no usage
  // changed. Throws StoreError.
  void flush_usage();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace frontdoor::auth
