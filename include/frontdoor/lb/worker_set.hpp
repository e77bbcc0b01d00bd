#pragma once
// Live state of an endpoint's workers, shared by every proxy thread and the
// health checker. The structure is fixed for one configuration; what changes
// is atomic (in-flight counts, health) or guarded by the endpoint's short
// admission lock (the queue, health transitions).
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "frontdoor/config/config.hpp"
#include "frontdoor/lb/balancer.hpp"

namespace frontdoor::lb {

struct WorkerState {
  WorkerState(const config::Worker& w, std::size_t index);
  const config::Worker& config;
  std::size_t index;          // position in the endpoint's worker list
  std::string address_text;   // "127.0.0.1:5000", for logs and the admin API
  // Requests in flight on this worker, from every thread: a request counts
  // from admission until the last byte of its response has been relayed.
  std::atomic<std::uint32_t> in_flight{0};
  std::atomic<WorkerHealth> health{WorkerHealth::unknown};
  HealthCounters counters;    // guarded by the endpoint's mutex
};

// A request waiting for a worker (SPEC §4 step 7, queue). Created by the
// session, granted by whichever thread frees a slot or sees a worker turn
// ready: `on_grant(worker)` is then posted to the session's io_context with
// the worker's slot already counted.
struct Waiter {
  boost::asio::io_context* io = nullptr;
  std::function<void(WorkerState*)> on_grant;
  const WorkerState* avoid = nullptr;
  bool done = false;  // granted or cancelled; guarded by the endpoint's mutex
};

class EndpointState {
 public:
  explicit EndpointState(const config::Endpoint& e);
  const config::Endpoint& config() const noexcept { return *config_; }
  std::span<const std::unique_ptr<WorkerState>> workers() const noexcept { return workers_; }

  enum class Admission { granted, queued, queue_full };
  struct AdmitResult {
    Admission admission;
    WorkerState* worker = nullptr;  // when granted: its slot is counted
  };

  // A worker for a new request, with its slot counted, or nullptr when the
  // request must queue. Lock-free unless the endpoint limits concurrency or
  // requests are already waiting. `random` feeds power_of_two. Thread-safe.
  WorkerState* try_acquire(const WorkerState* avoid, std::uint64_t random);
  // After try_acquire failed: takes a worker if one freed meanwhile, else
  // queues `waiter` (FIFO, bounded by queue.max). Thread-safe.
  AdmitResult admit(const std::shared_ptr<Waiter>& waiter, std::uint64_t random);
  // Removes a waiter that gave up (timeout, client gone). Returns false when
  // it was granted meanwhile: the posted grant is then still to come.
  bool cancel(Waiter& waiter);
  // Ends a request on `w`: frees its slot and hands it to the oldest waiter.
  void release(WorkerState& w);
  // A probe or a failed connect. Returns the new state.
  WorkerHealth record(WorkerState& w, ProbeResult result);

  std::size_t queue_length() const;

 private:
  // Chooses and counts a worker from the atomics; nullptr when none is
  // eligible. Called with mutex_ held whenever a limit or a queue matters.
  WorkerState* pick(const WorkerState* avoid, std::uint64_t random);
  // With mutex_ held: hands free slots to the oldest waiters.
  void dispatch_locked();

  const config::Endpoint* config_;
  std::vector<std::unique_ptr<WorkerState>> workers_;
  std::atomic<std::uint64_t> rotation_{0};
  std::atomic<std::size_t> queued_{0};  // queue_.size(), readable without the lock
  mutable std::mutex mutex_;
  std::deque<std::shared_ptr<Waiter>> queue_;
  std::uint64_t dispatch_random_ = 0x9e3779b97f4a7c15ull;
};

// Everything the request path reads from one configuration: the config and
// the endpoint states built from it. Immutable structure; swapped whole.
struct Runtime {
  explicit Runtime(std::shared_ptr<const config::Config> c);
  std::shared_ptr<const config::Config> config;
  std::vector<std::unique_ptr<EndpointState>> endpoints;  // same order as config->endpoints
  EndpointState* find(std::string_view id) const noexcept;

  // After a reload: workers that exist in `previous` (same endpoint, same
  // address) keep their health, so traffic does not pause for a probe;
  // workers of `previous` that are gone turn `draining` there (their
  // requests in flight finish on the old runtime).
  void inherit(const Runtime& previous);

 private:
  std::unordered_map<std::string_view, EndpointState*> by_id_;
};

}  // namespace frontdoor::lb
