#pragma once
// The admin listener (SPEC §5): /healthz, /readyz, /metrics and the admin
// API. Runs on its own io_context and thread, away from the proxy threads,
// and never waits there for the key store: key-API calls and reloads are
// handed to the store thread and answered asynchronously, so /healthz,
// /readyz, /metrics, /v1/endpoints and signals answer while the store is
// stuck (review M4).
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "frontdoor/auth/key_registry.hpp"
#include "frontdoor/config/config.hpp"
#include "frontdoor/proxy/thread_context.hpp"

namespace frontdoor::admin {

enum class Readiness { starting, serving, draining };

// What the admin API acts on besides the shared snapshots.
struct AdminHooks {
  // The key registry and the reload (SIGHUP's: "" on success, else why
  // nothing changed). Both may block on disk, the store's lock or the
  // network: they are called on `store` only, never on the admin thread.
  auth::KeyRegistry* registry = nullptr;
  std::function<std::string()> reload;
  // The store thread's executor: every /v1/keys* request and POST
  // /v1/reload runs there and is answered when it comes back.
  boost::asio::any_io_executor store;
  // GET /v1/replicas: the body, or nullopt for a file store (404). Cheap;
  // called on the admin thread.
  std::function<std::optional<std::string>()> replicas;
};

// How long an admin request waits for the store thread: past it the answer
// is 503 key_store_unavailable, and the late result is dropped (a write may
// still have been made; the log says so).
inline constexpr std::chrono::seconds kStoreCallDeadline{5};
// What a store allows one change at most (a file store's lock, a database's
// connection and transaction): under kStoreCallDeadline, so that a change
// answered 503 is not made afterwards.
inline constexpr std::chrono::milliseconds kStoreWriteBudget{4000};
// The latest a change may start on the store thread after it was asked for:
// its budget, and 500 ms to publish it and answer, still fit the deadline.
inline constexpr std::chrono::milliseconds kLatestChangeStart =
    kStoreCallDeadline - kStoreWriteBudget - std::chrono::milliseconds(500);

// Written by the admin thread (SIGTERM) and the health thread (the first
// health round): atomic, and serving only ever follows starting.
struct AdminState {
  std::atomic<Readiness> readiness{Readiness::starting};
};

class AdminServer {
 public:
  // Binds at once (throws boost::system::system_error when it cannot).
  // `shared` gives the key set (admin requests authenticate with the same
  // Bearer keys, by their management level) and the live worker state.
  AdminServer(boost::asio::io_context& io, const config::Admin& cfg, AdminState& state, proxy::Shared& shared,
              AdminHooks hooks);
  ~AdminServer();
  boost::asio::ip::tcp::endpoint local_endpoint() const;
  void start();
  void stop();
  // SIGHUP: re-reads admin.tls, and turns TLS on or off as configured (new
  // connections follow; open ones keep theirs); false (and why) when the
  // new pair does not load, which keeps the running one.
  bool reload_tls(const config::Admin& cfg, std::string& error);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace frontdoor::admin
