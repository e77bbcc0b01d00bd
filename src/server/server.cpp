#include "frontdoor/server/server.hpp"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include <csignal>
#include <cstring>
#include <sstream>
#include <future>
#include <thread>

#include "../proxy/session.hpp"
#include "frontdoor/admin/admin_server.hpp"
#include "frontdoor/auth/key_registry.hpp"
#include "frontdoor/auth/store.hpp"
#include "frontdoor/core/time.hpp"
#include "frontdoor/core/log.hpp"
#include "frontdoor/proxy/thread_context.hpp"
#include "frontdoor/proxy/tls.hpp"
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
class Acceptor : public std::enable_shared_from_this<Acceptor> {
 public:
  // `max_connections` is the server's: a reload changes it for every acceptor.
  Acceptor(proxy::ThreadContext& ctx, const tcp::endpoint& at, proxy::ListenerInfo info,
           const std::atomic<std::uint64_t>& max_connections)
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
        ctx_.shared().client_connections.load(std::memory_order_relaxed) <
            max_connections_.load(std::memory_order_relaxed)) {
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
    // The handler owns the acceptor: a reload may drop a listener while an
    // accept is pending, and the cancelled accept still completes later.
    acceptor_.async_accept([this, self = shared_from_this()](boost::system::error_code ec, tcp::socket s) {
      if (closed_) return;
      if (!ec) {
        // Constructed first, counted after: a session that cannot be made
        // (bad_alloc, a TLS stream that fails) leaks no count, and this
        // listener still accepts (M5). Once counted, the session's
        // destructor gives the count back whatever start() does.
        try {
          auto session = std::make_shared<proxy::Session>(ctx_, std::move(s), info_);
          ctx_.shared().client_connections.fetch_add(1, std::memory_order_relaxed);
          session->start();
        } catch (const std::exception& e) {
          core::log::error("accept: connection dropped", {{"error", e.what()}});
        }
      } else if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space) {
        core::log::error("accept failed", {{"error", ec.message()}});
        paused_ = true;  // retry at the next sweep instead of spinning
        return;
      }
      if (ctx_.shared().client_connections.load(std::memory_order_relaxed) >=
          max_connections_.load(std::memory_order_relaxed)) {
        paused_ = true;
        return;
      }
      accept();
    });
  }

  proxy::ThreadContext& ctx_;
  tcp::acceptor acceptor_;
  proxy::ListenerInfo info_;
  const std::atomic<std::uint64_t>& max_connections_;
  bool paused_ = false;
  bool closed_ = false;
};

// The running process. Threads: N proxy threads (io_context each), the
// admin thread (admin listener, signals), the health thread (worker probes)
// and the store thread (usage flushes, the file watch and the change feed,
// reloads, admin key writes: everything that may block on disk, a lock or
// the database), so neither requests, probes, /readyz nor signals ever wait
// for the key store (review M4, SPEC §3.1).
class Server {
 public:
  Server(std::shared_ptr<const config::Config> config, std::unique_ptr<auth::KeyStore> store)
      : config_(std::move(config)), nthreads_(std::max(1u, config_->threads)) {
    max_connections_ = config_->limits.max_connections;
    shared_.thread_count = nthreads_;
    registry_ = std::make_unique<auth::KeyRegistry>(std::move(store), shared_.keys);
    shared_.store_remote = config_->keys.postgres;
    shared_.keys_loaded = registry_->loaded();
    shared_.keys_unavailable = !registry_->loaded();
    replica_.id = replica_id();
    replica_.version = FRONTDOOR_VERSION;
    shared_.runtime.publish(std::make_shared<const lb::Runtime>(config_));
    for (unsigned i = 0; i < nthreads_; ++i) {
      threads_.push_back(std::make_unique<proxy::ThreadContext>(shared_, i));
      shared_.metrics.push_back(&threads_.back()->metrics());
    }
    for (const auto& l : config_->listeners) listeners_.push_back(bind_listener(l));
    admin_server_ = std::make_unique<admin::AdminServer>(
        admin_io_, config_->admin, admin_state_, shared_,
        admin::AdminHooks{registry_.get(), [this] { return reload(); }, store_io_.get_executor(),
                          [this] { return replicas_json(); }});
    core::log::info("listening", {{"listener", "admin"}, {"address", endpoint_text(admin_server_->local_endpoint())}});
  }

  int run() {
    admin_server_->start();
    for (auto& t : threads_) {
      auto* ctx = t.get();
      ctx->on_each_sweep([this, ctx] {
        for (auto& l : listeners_on(ctx->index())) l->resume_if_paused();
      });
      ctx->start_sweep();
    }
    for (auto& l : listeners_)
      for (unsigned i = 0; i < nthreads_; ++i) asio::post(threads_[i]->io(), [a = l->per_thread[i]] { a->start(); });
    for (auto& t : threads_) {
      workers_.emplace_back([ctx = t.get()] {
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
    if (!listeners_.empty()) replica_.address = advertised(listeners_.front()->bound);
    store_thread_ = std::thread([this] { store_io_.run(); });
    asio::post(store_io_, [this] { start_store_watch(); });
    schedule_flush();
    schedule_watch();
    health_thread_ = std::thread([this] { health_io_.run(); });
    asio::post(health_io_, [this, rt = shared_.runtime.load()] { start_health(rt); });
    wait_signal();
    admin_io_.run();

    for (auto& w : workers_) w.join();
    health_io_.stop();
    health_thread_.join();
    health_.reset();
    // From here on the database may hold the exit up (a poll finishing, the
    // last flush, leaving the replica list: about 10 s at worst): a second
    // signal exits at once, with status 1, as during the drain.
    signals_.clear();
    std::signal(SIGTERM, [](int) { ::_exit(1); });
    std::signal(SIGINT, [](int) { ::_exit(1); });
    std::signal(SIGHUP, SIG_IGN);  // clear() gave it back its default: to die
    // The last usage is written before exit so that it survives a restart
    // (a database that is down costs at most one connect timeout here).
    store_guard_.reset();
    store_io_.stop();
    store_thread_.join();
    // The store's own thread (LISTEN) posts to store_io_: it stops before
    // anything it uses is destroyed.
    registry_->store().stop_watch();
    try {
      registry_->flush_usage();
    } catch (const std::exception& e) {
      core::log::error("usage flush failed", {{"error", e.what()}});
    }
    registry_->store().leave(replica_.id);
    release_threads();
    core::log::info("stopped");
    return 0;
  }

  // Frees what the proxy threads own, in an order where nothing is used
  // after it is freed: sessions cut at the end of the grace period are still
  // owned by handlers inside the stopped io_contexts, and their destructors
  // use their thread's context (session list, buffers, pools) and may post
  // to another thread's. So every context first destroys its pending
  // handlers while all contexts are whole (twice: the second round takes
  // what the first one posted across threads), then the listeners and the
  // contexts go.
  void release_threads() {
    for (int round = 0; round < 2; ++round)
      for (auto& t : threads_) t->shutdown();
    {
      std::lock_guard lock(listeners_mutex_);
      listeners_.clear();
    }
    for (auto& t : threads_) t->flush_access_log();
    threads_.clear();
    // Whatever the threads logged is written (bounded) before "stopped".
    core::log::access_log_writer().drain(std::chrono::seconds(2));
  }

 private:
  // One configured proxy listener, bound on every proxy thread.
  struct Listener {
    std::string text;  // as configured: the identity used across reloads
    tcp::endpoint bound;
    std::optional<config::TlsFiles> tls_files;
    std::shared_ptr<proxy::TlsContextSlot> tls;  // shared by the listener's acceptors
    std::vector<std::shared_ptr<Acceptor>> per_thread;
  };

  std::unique_ptr<Listener> bind_listener(const config::Listener& l) {
    auto out = std::make_unique<Listener>();
    out->text = l.address.text;
    out->tls_files = l.tls;
    if (l.tls) out->tls = std::make_shared<proxy::TlsContextSlot>(proxy::make_server_tls_context(*l.tls));
    tcp::endpoint at = l.address.endpoint;
    for (unsigned i = 0; i < nthreads_; ++i) {
      // With port 0 the first bind picks the port and the others join it.
      out->per_thread.push_back(std::make_shared<Acceptor>(*threads_[i], at, proxy::ListenerInfo{out->tls},
                                                           max_connections_));
      if (i == 0) at = out->per_thread[0]->local_endpoint();
    }
    out->bound = at;
    core::log::info("listening", {{"listener", "proxy"}, {"address", endpoint_text(at)}, {"tls", l.tls ? "true" : "false", true}});
    return out;
  }

  std::vector<Acceptor*> listeners_on(unsigned thread) {
    std::lock_guard lock(listeners_mutex_);
    std::vector<Acceptor*> out;
    for (auto& l : listeners_) out.push_back(l->per_thread[thread].get());
    return out;
  }

  void start_health(std::shared_ptr<const lb::Runtime> runtime) {
    // Runs on the health thread. Any checker's first complete round makes a
    // starting process ready, not only the first checker's: a reload within
    // the first health.timeout replaces that one before it finishes (M7).
    // Draining (set by the admin thread) is never turned back into serving.
    if (health_) health_->stop();
    health_ = std::make_unique<HealthChecker>(health_io_, std::move(runtime));
    health_->start([this] {
      auto expected = admin::Readiness::starting;
      if (admin_state_.readiness.compare_exchange_strong(expected, admin::Readiness::serving))
        core::log::info("ready", {{"threads", std::to_string(nthreads_), true}});
    });
  }

  // SIGHUP, POST /v1/reload and the file watch (SPEC §1, §3): the whole
  // configuration and the key store, validated before anything changes; a
  // failure keeps what runs and says why. Returns "" or the reason.
  std::string reload() {
    std::lock_guard lock(reload_mutex_);
    const auto current = config();
    std::shared_ptr<const config::Config> next;
    try {
      next = config::load_config(current->path);
    } catch (const std::exception& e) {
      core::log::error("reload failed: configuration kept", {{"error", e.what()}});
      shared_.reloads_failed.fetch_add(1);
      return e.what();
    }
    // Compared as written: a new password in the URI needs a restart too
    // (said, not silently ignored).
    if (next->keys.store != current->keys.store) {
      const char* why = "keys.store changed: a new key store needs a restart";
      core::log::error("reload failed: configuration kept", {{"error", why}});
      shared_.reloads_failed.fetch_add(1);
      return why;
    }
    try {
      registry_->reload();
    } catch (const auth::StoreUnavailable& e) {
      // A database that is down keeps its snapshot (SPEC §3.1): the rest of
      // the configuration still applies; the feed catches up later.
      if (!next->keys.postgres) {
        core::log::error("reload failed: key store kept", {{"error", e.what()}});
        shared_.reloads_failed.fetch_add(1);
        return e.what();
      }
      core::log::warn("reload: key store unreachable, keys kept", {{"error", e.what()}});
    } catch (const std::exception& e) {
      core::log::error("reload failed: key store kept", {{"error", e.what()}});
      shared_.reloads_failed.fetch_add(1);
      return e.what();
    }
    publish_store_status();
    // Refused before anything changes: see tls_change_problem.
    if (auto why = tls_change_problem(*next); !why.empty()) {
      core::log::error("reload failed: configuration kept", {{"error", why}});
      shared_.reloads_failed.fetch_add(1);
      return why;
    }
    if (std::string why; !admin_server_->reload_tls(next->admin, why)) {
      core::log::error("reload failed: configuration kept", {{"error", why}});
      shared_.reloads_failed.fetch_add(1);
      return why;
    }
    // While draining, listeners are being closed for good: a reload must not
    // bind or start new ones (the rest of the configuration still applies).
    if (shared_.draining.load()) {
      if (listeners_differ(*current, *next))
        core::log::warn("reload while draining: listeners are not changed");
    } else if (auto why = apply_listeners(*next); !why.empty()) {
      core::log::error("reload failed: configuration kept", {{"error", why}});
      shared_.reloads_failed.fetch_add(1);
      return why;
    }
    if (next->threads != current->threads || next->admin.address.text != current->admin.address.text)
      core::log::warn("reload: threads and admin.address take effect at the next restart");
    max_connections_.store(next->limits.max_connections);
    auto old_runtime = shared_.runtime.load();
    auto runtime = std::make_shared<lb::Runtime>(next);
    runtime->inherit(*old_runtime);  // worker health carries over; removed workers drain
    set_config(next);
    core::log::set_level(config::to_log_level(next->log.level));
    shared_.runtime.publish(runtime);
    runtime->dispatch();  // waiters of the previous runtime, to workers this one added
    asio::post(health_io_, [this, runtime] { start_health(runtime); });
    shared_.reloads_ok.fetch_add(1);
    core::log::info("reloaded", {{"config", next->path}, {"keys", std::to_string(registry_->size()), true}});
    for (const std::string& w : next->warnings) core::log::warn("configuration", {{"warning", w}});
    watched_config_ = file_stamp(next->path);
    return "";
  }

  // The configuration in force. Replaced on the store thread, read on the
  // admin thread too (SIGTERM reads the drain settings): a shared_ptr copy
  // under a lock, never a bare read of a pointer being assigned (L3).
  std::shared_ptr<const config::Config> config() const {
    std::lock_guard lock(config_mutex_);
    return config_;
  }
  void set_config(std::shared_ptr<const config::Config> next) {
    std::lock_guard lock(config_mutex_);
    config_ = std::move(next);
  }

  // A listener on a fixed address whose `tls` is switched on or off cannot
  // be changed in place: the new socket would join the old one on the port
  // (SO_REUSEPORT) and, until the old one closes, the kernel would hand TLS
  // clients to the plain acceptor or the other way round. Such a reload is
  // refused; a restart (or a new address) does it. Port 0 is exempt: it
  // always binds a new port.
  std::string tls_change_problem(const config::Config& next) {
    std::lock_guard lock(listeners_mutex_);
    for (std::size_t n = 0; n < next.listeners.size(); ++n) {
      const auto& l = next.listeners[n];
      if (l.address.endpoint.port() == 0) continue;
      bool same_tls = false, other_tls = false;
      for (const auto& o : listeners_) {
        if (o->text != l.address.text) continue;
        (bool(o->tls) == bool(l.tls) ? same_tls : other_tls) = true;
      }
      if (other_tls && !same_tls)
        return "listeners[" + std::to_string(n) + "]: " + l.address.text + ": turning tls " +
               (l.tls ? "on" : "off") + " on a bound address needs a restart (or another address)";
    }
    return "";
  }

  static bool listeners_differ(const config::Config& a, const config::Config& b) {
    if (a.listeners.size() != b.listeners.size()) return true;
    for (std::size_t i = 0; i < a.listeners.size(); ++i)
      if (a.listeners[i].address.text != b.listeners[i].address.text ||
          bool(a.listeners[i].tls) != bool(b.listeners[i].tls))
        return true;
    return false;
  }

  // Binds listeners that are new, closes those that are gone. A listener
  // is the same across a reload when its address text and its TLS-ness are
  // (matched in order, as port-0 listeners share a text). Nothing changes
  // when a new one cannot be bound or a certificate does not load.
  std::string apply_listeners(const config::Config& next) {
    std::vector<Listener*> kept(next.listeners.size(), nullptr);
    std::vector<bool> matched(listeners_.size(), false);
    for (std::size_t n = 0; n < next.listeners.size(); ++n) {
      const auto& l = next.listeners[n];
      for (std::size_t o = 0; o < listeners_.size(); ++o) {
        if (matched[o] || listeners_[o]->text != l.address.text || bool(listeners_[o]->tls) != bool(l.tls)) continue;
        matched[o] = true;
        kept[n] = listeners_[o].get();
        break;
      }
    }
    std::vector<std::unique_ptr<Listener>> added;
    auto undo = [&] {
      for (auto& l : added)
        for (auto& a : l->per_thread) a->close();
    };
    // Certificates of kept listeners are re-read (SIGHUP after a renewal).
    std::vector<std::pair<proxy::TlsContextSlot*, std::shared_ptr<boost::asio::ssl::context>>> renewed;
    try {
      for (std::size_t n = 0; n < next.listeners.size(); ++n) {
        const auto& l = next.listeners[n];
        if (!kept[n]) {
          added.push_back(bind_listener(l));
        } else if (l.tls) {
          renewed.emplace_back(kept[n]->tls.get(), proxy::make_server_tls_context(*l.tls));
        }
      }
    } catch (const std::exception& e) {
      undo();
      return std::string("listeners: ") + e.what();
    }
    for (auto& [slot, ctx] : renewed) slot->set(std::move(ctx));
    std::lock_guard lock(listeners_mutex_);
    if (shared_.draining.load()) {
      // SIGTERM came meanwhile: the drain closes what is in listeners_ now,
      // so nothing new may join it.
      undo();
      core::log::warn("reload while draining: listeners are not changed");
      return "";
    }
    std::vector<std::unique_ptr<Listener>> still;
    for (std::size_t o = 0; o < listeners_.size(); ++o) {
      if (matched[o]) {
        still.push_back(std::move(listeners_[o]));
        continue;
      }
      core::log::info("listener closed", {{"address", endpoint_text(listeners_[o]->bound)}});
      for (unsigned i = 0; i < nthreads_; ++i) {
        // Closed and destroyed on its own thread; connections already
        // accepted stay until they finish.
        asio::post(threads_[i]->io(), [a = std::move(listeners_[o]->per_thread[i])] { a->close(); });
      }
    }
    for (auto& l : added) {
      for (unsigned i = 0; i < nthreads_; ++i) asio::post(threads_[i]->io(), [a = l->per_thread[i]] { a->start(); });
      still.push_back(std::move(l));
    }
    listeners_ = std::move(still);
    return "";
  }

  void schedule_flush() {
    flush_timer_.expires_after(config()->keys.last_used_flush);
    flush_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      try {
        registry_->flush_usage();
      } catch (const std::exception& e) {
        core::log::error("usage flush failed", {{"error", e.what()}});
      }
      schedule_flush();
    });
  }

  // Hand edits take effect by themselves: the config file and the key
  // store are looked at every second (a stat, or one indexed query).
  void schedule_watch() {
    watched_config_ = file_stamp(config()->path);
    schedule_watch_again();
  }
  void schedule_watch_again() {
    watch_timer_.expires_after(std::chrono::seconds(1));
    watch_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      const auto path = config()->path;
      if (file_stamp(path) != watched_config_) {
        core::log::info("configuration file changed: reloading");
        reload();
        watched_config_ = file_stamp(path);
      } else if (!shared_.store_remote) {
        poll_store();
      }
      schedule_watch_again();
    });
  }

  // --- the key store's freshness (SPEC §3.1)

  // Reads what changed in the store into the snapshot; on the store thread.
  // A file store is read every second; PostgreSQL on every notification
  // (LISTEN) and every kFeedPoll as the catch-up.
  void poll_store() {
    try {
      registry_->reload();
      last_store_error_.clear();
    } catch (const auth::StoreUnavailable& e) {
      last_store_error_ = e.what();  // said once, by publish_store_status
    } catch (const std::exception& e) {
      if (e.what() != last_store_error_) core::log::error("key store reload failed: keys kept", {{"error", e.what()}});
      last_store_error_ = e.what();
    }
    publish_store_status();
  }

  static constexpr std::chrono::milliseconds kFeedPoll{500};
  static constexpr std::chrono::seconds kHeartbeatEvery{2};

  void start_store_watch() {
    if (!shared_.store_remote) return;
    // The store's listener thread only asks; the poll runs here. Requests
    // that come while one is queued join it.
    registry_->store().watch([this] {
      if (!feed_queued_.exchange(true))
        asio::post(store_io_, [this] {
          feed_queued_ = false;
          poll_store();
        });
    });
    schedule_feed_poll();
    heartbeat();
  }

  void schedule_feed_poll() {
    feed_timer_.expires_after(kFeedPoll);
    feed_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      poll_store();
      schedule_feed_poll();
    });
  }

  // Publishes the store's freshness for the request path, /readyz and
  // /metrics, and logs each change of state.
  void publish_store_status() {
    const auto st = registry_->store().status();
    const bool loaded = registry_->loaded();
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
    std::int64_t stale_ms = 0;
    if (!st.reachable) stale_ms = st.last_contact_ms ? now_ms - st.last_contact_ms : now_ms - started_ms_;
    const auto max_stale = std::chrono::duration_cast<std::chrono::milliseconds>(config()->keys.max_stale).count();
    const bool closed = !loaded || (max_stale > 0 && stale_ms > max_stale);
    shared_.store_stale_ms = stale_ms;
    shared_.store_feed_lag_us = static_cast<std::int64_t>(st.feed_lag_seconds * 1e6);
    shared_.store_reconnects = st.reconnects;
    shared_.keys_loaded = loaded;
    const bool was_closed = shared_.keys_unavailable.exchange(closed);
    if (st.reachable != store_reachable_) {
      store_reachable_ = st.reachable;
      if (st.reachable)
        core::log::info("key store reachable again: caught up", {{"store", registry_->store_path()},
                                                                 {"keys", std::to_string(registry_->size()), true}});
      else
        core::log::warn("key store unreachable: serving from the snapshot",
                        {{"store", registry_->store_path()}, {"error", last_store_error_}});
    }
    if (closed != was_closed) {
      if (closed)
        core::log::error("key store stale past keys.max_stale: failing closed",
                         {{"store", registry_->store_path()}, {"stale_ms", std::to_string(stale_ms), true}});
      else
        core::log::info("key store fresh: serving again", {{"store", registry_->store_path()}});
    }
  }

  // Every kHeartbeatEvery: this replica's row, and the live replicas
  // (GET /v1/replicas; keys.rate_limit_scope: fleet shares by their count).
  void heartbeat() {
    replica_.stale_seconds = static_cast<double>(shared_.store_stale_ms.load()) / 1000.0;
    try {
      if (auto live = registry_->store().heartbeat(replica_)) {
        shared_.fleet_replicas = static_cast<std::uint32_t>(live->size());
        if (config()->keys.fleet_rate_limits) {
          const auto n = static_cast<std::uint32_t>(std::max<std::size_t>(1, live->size()));
          if (shared_.fleet_share.exchange(n) != n)
            core::log::info("fleet rate limits: sharing each key's limits", {{"replicas", std::to_string(n), true}});
        } else {
          shared_.fleet_share = 1;
        }
        std::lock_guard lock(replicas_mutex_);
        replicas_ = std::move(*live);
      }
    } catch (const std::exception&) {
      // Unreachable: the list and the share stay as last seen.
    }
    heartbeat_timer_.expires_after(kHeartbeatEvery);
    heartbeat_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) heartbeat();
    });
  }

  // GET /v1/replicas (admin thread); nullopt for a file store.
  std::optional<std::string> replicas_json() {
    if (!shared_.store_remote) return std::nullopt;
    boost::json::array out;
    std::lock_guard lock(replicas_mutex_);
    for (const auto& r : replicas_) {
      boost::json::object o;
      o["id"] = r.id;
      o["address"] = r.address;
      o["version"] = r.version;
      o["last_seen"] = core::format_rfc3339(r.last_seen);
      o["stale_seconds"] = r.stale_seconds;
      out.push_back(std::move(o));
    }
    return boost::json::serialize(boost::json::object{{"replicas", std::move(out)}});
  }

  // host-pid-random: unique across a fleet and across restarts.
  static std::string replica_id() {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "frontdoor");
    unsigned char r[3];
    RAND_bytes(r, sizeof r);
    char hex[7];
    std::snprintf(hex, sizeof hex, "%02x%02x%02x", r[0], r[1], r[2]);
    return std::string(host) + "-" + std::to_string(::getpid()) + "-" + hex;
  }

  // The first listener's address as other machines reach it: the host
  // name in place of an unspecified address.
  static std::string advertised(const tcp::endpoint& e) {
    if (!e.address().is_unspecified()) return endpoint_text(e);
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) return endpoint_text(e);
    return std::string(host) + ":" + std::to_string(e.port());
  }

  static std::string file_stamp(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return {};
    return std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) +
           "." + std::to_string(st.st_mtim.tv_nsec);
  }

  // Signals: SIGTERM/SIGINT drain (SPEC §6), a second one exits at once;
  // SIGHUP reloads (on the store thread: it may read the disk).
  void wait_signal() {
    signals_.async_wait([this](boost::system::error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        core::log::info("SIGHUP: reloading");
        asio::post(store_io_, [this] { reload(); });
        wait_signal();
        return;
      }
      if (shutting_down_) {
        core::log::warn("second signal: exiting now");
        std::_Exit(1);
      }
      shutting_down_ = true;
      // In force before it is said: whoever reads "draining" in the log
      // finds new answers carrying Connection: close.
      admin_state_.readiness = admin::Readiness::draining;
      shared_.draining = true;
      core::log::info("draining", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
      const auto limits = config()->limits;
      grace_end_ = Clock::now() + limits.drain_delay + limits.shutdown_grace;
      shutdown_timer_.expires_after(limits.drain_delay);
      shutdown_timer_.async_wait([this](boost::system::error_code tec) {
        if (tec) return;
        std::lock_guard lock(listeners_mutex_);
        for (unsigned i = 0; i < nthreads_; ++i) {
          std::vector<Acceptor*> mine;
          for (auto& l : listeners_) mine.push_back(l->per_thread[i].get());
          asio::post(threads_[i]->io(), [mine, ctx = threads_[i].get()] {
            for (auto* a : mine) a->close();
            ctx->drain_sessions();
          });
        }
        poll_done();
      });
      wait_signal();
    });
  }

  void poll_done() {
    std::uint64_t open = shared_.client_connections.load();
    if (open && Clock::now() >= grace_end_ && !shared_.grace_over.load() && tunnels_open()) {
      // WebSocket tunnels get a Close frame (1001) at their next frame
      // boundary: a moment more for that (SPEC §4 step 6), then everything
      // still open is cut.
      shared_.grace_over = true;
      grace_end_ = Clock::now() + std::chrono::seconds(1);
    }
    if (open == 0 || Clock::now() >= grace_end_) {
      if (open) core::log::warn("shutdown grace over, cutting connections", {{"connections", std::to_string(open), true}});
      for (auto& t : threads_) t->io().stop();
      admin_io_.stop();
      return;
    }
    for (auto& t : threads_) asio::post(t->io(), [ctx = t.get()] { ctx->drain_sessions(); });
    shutdown_timer_.expires_after(std::chrono::milliseconds(50));
    shutdown_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) poll_done();
    });
  }

  bool tunnels_open() const {
    proxy::MetricsSnapshot m;
    for (const auto* t : shared_.metrics) t->add_to(m);
    return m.tunnels_open() > 0;
  }

  mutable std::mutex config_mutex_;
  std::shared_ptr<const config::Config> config_;  // through config() / set_config() once threads run
  const unsigned nthreads_;
  // limits.max_connections, read by every acceptor; a reload stores the new one.
  std::atomic<std::uint64_t> max_connections_{0};
  proxy::Shared shared_;
  std::unique_ptr<auth::KeyRegistry> registry_;
  std::vector<std::unique_ptr<proxy::ThreadContext>> threads_;
  std::mutex listeners_mutex_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::thread> workers_;

  asio::io_context admin_io_{1};
  admin::AdminState admin_state_;
  std::unique_ptr<admin::AdminServer> admin_server_;
  asio::io_context health_io_{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> health_guard_{health_io_.get_executor()};
  std::thread health_thread_;
  std::unique_ptr<HealthChecker> health_;  // used on the health thread only
  asio::signal_set signals_{admin_io_, SIGTERM, SIGINT, SIGHUP};
  asio::steady_timer shutdown_timer_{admin_io_};
  bool shutting_down_ = false;
  Clock::time_point grace_end_{};

  asio::io_context store_io_{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> store_guard_{store_io_.get_executor()};
  std::thread store_thread_;
  asio::steady_timer flush_timer_{store_io_};
  asio::steady_timer watch_timer_{store_io_};
  std::string watched_config_;
  asio::steady_timer feed_timer_{store_io_};
  asio::steady_timer heartbeat_timer_{store_io_};
  std::atomic<bool> feed_queued_{false};
  std::string last_store_error_;
  bool store_reachable_ = true;
  const std::int64_t started_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::steady_clock::now().time_since_epoch())
                                       .count();
  auth::Replica replica_;
  std::mutex replicas_mutex_;
  std::vector<auth::Replica> replicas_;
  std::mutex reload_mutex_;
};

}  // namespace

int run_server(std::shared_ptr<const config::Config> config, std::unique_ptr<auth::KeyStore> store) {
  Server server(std::move(config), std::move(store));
  return server.run();
}

}  // namespace frontdoor::server
