#pragma once
// The admin listener (SPEC §5): /healthz, /readyz, and the admin API as it
// grows. Runs on its own io_context and thread, away from the proxy threads,
// so that a busy proxy never delays a health probe.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "frontdoor/auth/key_registry.hpp"
#include "frontdoor/config/config.hpp"
#include "frontdoor/proxy/thread_context.hpp"

namespace frontdoor::admin {

enum class Readiness { starting, serving, draining };

// What the admin API acts on besides the shared snapshots.
struct AdminHooks {
  auth::KeyRegistry* registry = nullptr;
  std::function<std::string()> reload;  // "" on success, else why nothing changed
};

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
