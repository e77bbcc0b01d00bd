#pragma once
// Per-thread proxy state (README "Threading"): each proxy thread runs one
// io_context with its own acceptors, its own upstream connection pools, its
// own access-log buffer and its own deadline sweep, so the common request
// path takes no lock and never hops threads. Only `Shared` is shared.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "frontdoor/auth/key.hpp"
#include "frontdoor/core/log.hpp"
#include "frontdoor/core/snapshot.hpp"
#include "frontdoor/lb/worker_set.hpp"
#include "frontdoor/proxy/metrics.hpp"

namespace frontdoor::proxy {

using Clock = std::chrono::steady_clock;

// Process-wide state. Snapshots are immutable; the rest is atomic.
struct Shared {
  core::SnapshotCell<lb::Runtime> runtime;
  core::SnapshotCell<auth::KeySet> keys;
  std::atomic<std::uint64_t> client_connections{0};
  std::atomic<bool> draining{false};  // SIGTERM: answer with Connection: close
  std::atomic<bool> grace_over{false};  // shutdown_grace has passed: WebSocket tunnels close (1001)
  std::atomic<std::uint64_t> reloads_ok{0};
  std::atomic<std::uint64_t> reloads_failed{0};
  // The key store (SPEC §3.1), kept up to date by the store thread.
  // keys_unavailable: a store not loaded yet, or stale past keys.max_stale:
  // every proxied request gets 503 key_store_unavailable (fail closed).
  std::atomic<bool> keys_unavailable{false};
  std::atomic<bool> keys_loaded{true};  // false until a store unreachable at start has loaded (/readyz 503)
  std::atomic<std::int64_t> store_stale_ms{0};         // since the last successful contact; 0 while fresh
  std::atomic<std::int64_t> store_feed_lag_us{0};      // change row written to read here, of the last change
  std::atomic<std::uint64_t> store_reconnects{0};
  std::atomic<bool> store_remote{false};
  // keys.rate_limit_scope: fleet: the live replicas sharing each key's
  // limits (a replica enforces 1/n of them, rounded up); 1 otherwise.
  std::atomic<std::uint32_t> fleet_share{1};
  std::atomic<std::uint32_t> fleet_replicas{0};  // live replicas of a PostgreSQL store (metrics)
  // Proxy threads; set before they start (pool.max_idle is shared out by it).
  unsigned thread_count = 1;
  // Every proxy thread's metrics; filled before the threads start.
  std::vector<const ThreadMetrics*> metrics;
};

// Anything with a deadline the per-thread sweep must enforce. Intrusive list
// node so that registering costs no allocation.
class Sweepable {
 public:
  virtual ~Sweepable() = default;
  // Called on the owning thread about every kSweepInterval.
  virtual void on_sweep(Clock::time_point now) = 0;
  // Shutdown began: close now if nothing is in flight.
  virtual void on_drain() {}
  // The thread stopped for good (the end of shutdown_grace): end whatever is
  // in progress now, logging it, and drop every reference that is not a
  // pending handler's (a queued request and its waiter hold each other).
  virtual void on_shutdown() {}

 private:
  friend class ThreadContext;
  Sweepable* prev_ = nullptr;
  Sweepable* next_ = nullptr;
};

// An idle keep-alive connection to a worker, owned by one thread's pool.
struct UpstreamConn {
  explicit UpstreamConn(boost::asio::io_context& io) : socket(io) {}
  boost::asio::ip::tcp::socket socket;
  Clock::time_point idle_since{};
  std::uint64_t exchanges = 0;  // completed exchanges: > 0 means reused
};

// An io_context whose pending handlers can be destroyed, without running
// them, before the rest of its ThreadContext is: execution_context::shutdown()
// is what the destructor would call, only earlier.
class ProxyIoContext : public boost::asio::io_context {
 public:
  using boost::asio::io_context::io_context;
  void destroy_pending() { shutdown(); }
};

class ThreadContext {
 public:
  static constexpr auto kSweepInterval = std::chrono::milliseconds(100);

  ThreadContext(Shared& shared, unsigned index);
  ~ThreadContext();

  boost::asio::io_context& io() noexcept { return io_; }
  Shared& shared() noexcept { return shared_; }
  unsigned index() const noexcept { return index_; }

  // Cached snapshots, refreshed when a reload published a new one.
  const std::shared_ptr<const lb::Runtime>& runtime() { return runtime_.get(); }
  const std::shared_ptr<const auth::KeySet>& keys() { return keys_.get(); }

  void add(Sweepable* s) noexcept;
  void remove(Sweepable* s) noexcept;
  // Starts the periodic sweep (deadlines, pool expiry, access-log flush).
  void start_sweep();
  // Calls on_drain() on every registered session (shutdown).
  void drain_sessions();
  void stop_sweep();
  // After the thread stopped running io(): destroys every pending handler
  // (and so the sessions only they own) and the pooled connections, while
  // the context is whole. Idempotent; the destructor calls it too. Call it
  // on every context before destroying any: a session's destructor may post
  // to another thread's context.
  void shutdown();
  // Extra work run at each sweep (e.g. resuming paused acceptors).
  void on_each_sweep(std::function<void()> f) { sweep_hooks_.push_back(std::move(f)); }

  // Pool of idle connections to a worker. take() returns the most recently
  // used connection that is not older than `max_idle_age`, or nullptr.
  std::unique_ptr<UpstreamConn> take(const lb::WorkerState* w, Clock::duration max_idle_age);
  void give_back(const lb::WorkerState* w, std::unique_ptr<UpstreamConn> c, std::size_t max_idle,
                 Clock::duration max_idle_age);

  // Spare read buffers for upstream exchanges, so that idle client
  // connections hold no large buffer and busy ones reuse warm memory.
  boost::beast::flat_buffer take_buffer();
  void return_buffer(boost::beast::flat_buffer&& b);

  // Buffered access log: lines are written to stdout in batches.
  core::log::LineBuffer& access_log_buffer() noexcept { return access_log_; }
  // Call after appending a line: writes the batch once it is large enough.
  void access_log_appended() {
    if (access_log_.size() >= kAccessLogFlushBytes) flush_access_log();
  }
  void flush_access_log();
  static constexpr std::size_t kAccessLogFlushBytes = 32 * 1024;

  // 32 hex characters, from a per-thread generator seeded by the CSPRNG.
  void make_request_id(char out[32]) noexcept;
  ThreadMetrics& metrics() noexcept { return metrics_; }

  // For request ids and balancing decisions, not secrets: splitmix64, a
  // few instructions per number (seeded from the CSPRNG).
  std::uint64_t random() noexcept {
    std::uint64_t z = (rng_state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

 private:
  void sweep();
  void sweep_failed(const char* what) noexcept;

  Shared& shared_;
  unsigned index_;
  // Every socket of this context is used from its own thread only, so the
  // reactor needs no per-descriptor locking; the scheduler keeps its lock
  // because shutdown posts to it from the admin thread.
  ProxyIoContext io_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  boost::asio::steady_timer sweep_timer_{io_};
  bool sweeping_ = false;
  std::uint64_t sweep_errors_ = 0;  // since the last one logged
  Clock::time_point last_sweep_error_log_{};
  Sweepable* sessions_ = nullptr;
  std::vector<std::function<void()>> sweep_hooks_;
  core::SnapshotReader<lb::Runtime> runtime_;
  core::SnapshotReader<auth::KeySet> keys_;
  struct Pool {
    std::vector<std::unique_ptr<UpstreamConn>> idle;  // most recent last
    Clock::duration max_age{};
  };
  // By worker address, not by WorkerState: a reload replaces the states
  // but a connection to the same address stays good.
  struct EndpointHash {
    std::size_t operator()(const boost::asio::ip::tcp::endpoint& e) const noexcept {
      std::size_t h = std::hash<unsigned short>()(e.port());
      auto a = e.address();
      if (a.is_v4()) return h ^ (std::hash<std::uint32_t>()(a.to_v4().to_uint()) << 1);
      auto b = a.to_v6().to_bytes();
      for (auto c : b) h = h * 131 + c;
      return h;
    }
  };
  std::unordered_map<boost::asio::ip::tcp::endpoint, Pool, EndpointHash> pools_;
  core::log::LineBuffer access_log_;
  std::vector<boost::beast::flat_buffer> spare_buffers_;
  std::uint64_t rng_state_ = 0;
  ThreadMetrics metrics_;
};

}  // namespace frontdoor::proxy
