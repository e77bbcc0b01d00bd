#include "frontdoor/server/server.hpp"

#include <sys/resource.h>

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <csignal>
#include <sstream>
#include <thread>

#include "../proxy/session.hpp"
#include "frontdoor/admin/admin_server.hpp"
#include "frontdoor/core/log.hpp"
#include "frontdoor/proxy/thread_context.hpp"
#include "frontdoor/server/health_checker.hpp"

namespace frontdoor::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using proxy::Clock;

namespace {

std::string endpoint_text(const tcp::endpoint& e) {
  std::ostringstream s;
  s << e;
  return s.str();
}

// One proxy listener on one thread. All threads bind the same address with
// SO_REUSEPORT and the kernel spreads new connections between them.
class Acceptor {
 public:
  Acceptor(proxy::ThreadContext& ctx, const tcp::endpoint& at, proxy::ListenerInfo info,
           std::uint64_t max_connections)
      : ctx_(ctx), acceptor_(ctx.io()), info_(info), max_connections_(max_connections) {
    acceptor_.open(at.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    int one = 1;
    ::setsockopt(acceptor_.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    acceptor_.bind(at);
    acceptor_.listen(asio::socket_base::max_listen_connections);
  }

  tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

  void start() { accept(); }

  // Over max_connections, accepting pauses; the thread's sweep resumes it.
  void resume_if_paused() {
    if (paused_ && !closed_ &&
        ctx_.shared().client_connections.load(std::memory_order_relaxed) < max_connections_) {
      paused_ = false;
      accept();
    }
  }

  void close() {
    closed_ = true;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  }

 private:
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (closed_) return;
      if (!ec) {
        ctx_.shared().client_connections.fetch_add(1, std::memory_order_relaxed);
        std::make_shared<proxy::Session>(ctx_, std::move(s), info_)->start();
      } else if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space) {
        core::log::error("accept failed", {{"error", ec.message()}});
        paused_ = true;  // retry at the next sweep instead of spinning
        return;
      }
      if (ctx_.shared().client_connections.load(std::memory_order_relaxed) >= max_connections_) {
        paused_ = true;
        return;
      }
      accept();
    });
  }

  proxy::ThreadContext& ctx_;
  tcp::acceptor acceptor_;
  proxy::ListenerInfo info_;
  std::uint64_t max_connections_;
  bool paused_ = false;
  bool closed_ = false;
};

}  // namespace

int run_server(std::shared_ptr<const config::Config> config, std::shared_ptr<const auth::KeySet> keys) {
  proxy::Shared shared;
  shared.runtime.publish(std::make_shared<const lb::Runtime>(config));
  shared.keys.publish(std::move(keys));

  const unsigned nthreads = std::max(1u, config->threads);
  std::vector<std::unique_ptr<proxy::ThreadContext>> threads;
  std::vector<std::vector<std::unique_ptr<Acceptor>>> acceptors(nthreads);
  for (unsigned i = 0; i < nthreads; ++i) threads.push_back(std::make_unique<proxy::ThreadContext>(shared, i));

  // Bind every listener on every thread; with port 0 the first bind picks
  // the port and the others join it.
  for (const auto& l : config->listeners) {
    tcp::endpoint at = l.address.endpoint;
    for (unsigned i = 0; i < nthreads; ++i) {
      acceptors[i].push_back(std::make_unique<Acceptor>(*threads[i], at, proxy::ListenerInfo{},
                                                        config->limits.max_connections));
      if (i == 0) at = acceptors[0].back()->local_endpoint();
    }
    core::log::info("listening", {{"listener", "proxy"}, {"address", endpoint_text(at)}});
  }

  asio::io_context admin_io{1};
  admin::AdminState admin_state;
  admin::AdminServer admin_server(admin_io, config->admin, admin_state, shared);
  core::log::info("listening", {{"listener", "admin"}, {"address", endpoint_text(admin_server.local_endpoint())}});
  admin_server.start();

  for (unsigned i = 0; i < nthreads; ++i) {
    auto* ctx = threads[i].get();
    auto* mine = &acceptors[i];
    ctx->on_each_sweep([mine] {
      for (auto& a : *mine) a->resume_if_paused();
    });
    for (auto& a : *mine) a->start();
    ctx->start_sweep();
  }
  std::vector<std::thread> workers;
  for (auto& t : threads) {
    workers.emplace_back([ctx = t.get()] {
      for (;;) {
        try {
          ctx->io().run();
          return;
        } catch (const std::exception& e) {
          // A bug must not take the whole process down with it.
          core::log::error("proxy thread error", {{"error", e.what()}});
        }
      }
    });
  }

  // Signals: SIGTERM/SIGINT drain (SPEC §6), a second one exits at once;
  // SIGHUP reload arrives with the reload work (issue 4).
  int exit_code = 0;
  bool shutting_down = false;
  Clock::time_point grace_end{};
  asio::steady_timer shutdown_timer(admin_io);
  asio::signal_set signals(admin_io, SIGTERM, SIGINT, SIGHUP);

  std::function<void()> poll_done = [&] {
    std::uint64_t open = shared.client_connections.load();
    if (open == 0 || Clock::now() >= grace_end) {
      if (open) core::log::warn("shutdown grace over, cutting connections", {{"connections", std::to_string(open), true}});
      for (auto& t : threads) t->io().stop();
      admin_io.stop();
      return;
    }
    for (auto& t : threads) asio::post(t->io(), [ctx = t.get()] { ctx->drain_sessions(); });
    shutdown_timer.expires_after(std::chrono::milliseconds(50));
    shutdown_timer.async_wait([&](boost::system::error_code ec) {
      if (!ec) poll_done();
    });
  };

  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](boost::system::error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        core::log::warn("SIGHUP: reload is not implemented yet; configuration unchanged");
        wait_signal();
        return;
      }
      if (shutting_down) {
        core::log::warn("second signal: exiting now");
        std::_Exit(1);
      }
      shutting_down = true;
      core::log::info("draining", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
      admin_state.readiness = admin::Readiness::draining;
      shared.draining = true;
      grace_end = Clock::now() + config->limits.drain_delay + config->limits.shutdown_grace;
      shutdown_timer.expires_after(config->limits.drain_delay);
      shutdown_timer.async_wait([&](boost::system::error_code tec) {
        if (tec) return;
        for (std::size_t i = 0; i < threads.size(); ++i)
          asio::post(threads[i]->io(), [mine = &acceptors[i], ctx = threads[i].get()] {
            for (auto& a : *mine) a->close();
            ctx->drain_sessions();
          });
        poll_done();
      });
      wait_signal();
    });
  };
  wait_signal();

  // Ready once every worker has had its first probe (answered or timed
  // out): traffic before that would only wait in the queue.
  HealthChecker health(admin_io, shared.runtime.load());
  health.start([&] {
    if (admin_state.readiness == admin::Readiness::starting) {
      admin_state.readiness = admin::Readiness::serving;
      core::log::info("ready", {{"threads", std::to_string(nthreads), true}});
    }
  });
  admin_io.run();
  health.stop();

  for (auto& w : workers) w.join();
  for (auto& t : threads) t->flush_access_log();
  core::log::info("stopped");
  // Sessions cut at the end of the grace period are still owned by handlers
  // inside the stopped io_contexts; destroying those would run session
  // destructors against half-destroyed thread contexts. The process exits
  // next, so the contexts are deliberately left to the OS.
  acceptors.clear();
  for (auto& t : threads) (void)t.release();
  return exit_code;
}

}  // namespace frontdoor::server
