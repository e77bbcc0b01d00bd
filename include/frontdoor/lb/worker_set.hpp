#pragma once
// Live state of an endpoint's workers, shared by every proxy thread and the
// health checker, and by every configuration that has the endpoint.
//
// Two lifetimes (review M3, design note D5): a configuration's view
// (EndpointState, WorkerState: the config references, the worker list, the
// positions) is immutable and lives as long as its Runtime snapshot; the
// live state (requests in flight, health, the admission queue) outlives
// reloads, keyed by endpoint id and worker address, the way Envoy keeps a
// Host across a cluster update. A request admitted under one configuration
// therefore still counts under the next, and a request queued before a
// reload is granted by a slot freed after it.
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "frontdoor/config/config.hpp"
#include "frontdoor/lb/balancer.hpp"

namespace frontdoor::lb {

// What outlives a configuration for one worker (endpoint id + address).
// Held by every WorkerState that names it; a worker that leaves the
// configuration stays alive (draining) while an older Runtime still holds it,
// that is while any request admitted on it may still run.
struct WorkerLive {
  explicit WorkerLive(std::string address) : address_text(std::move(address)) {}
  const std::string address_text;
  std::atomic<std::uint32_t> in_flight{0};
  std::atomic<WorkerHealth> health{WorkerHealth::unknown};
  HealthCounters counters;                           // guarded by the endpoint's mutex
  WorkerHealth before_drain = WorkerHealth::unknown;  // guarded; resumed if it comes back
  std::string url;                                    // guarded; as last configured
};

// One worker as one configuration sees it. Valid while its Runtime lives;
// `in_flight` and `health` are the live state's, shared with every other
// configuration that has this worker.
struct WorkerState {
  WorkerState(const config::Worker& w, std::size_t index, std::shared_ptr<WorkerLive> live);
  const config::Worker& config;  // inside this Runtime's Config
  std::size_t index;             // position in this configuration's worker list
  std::string address_text;      // "127.0.0.1:5000", for logs and the admin API
  std::shared_ptr<WorkerLive> live;
  // Requests in flight on this worker, from every thread and every
  // configuration: a request counts from admission until the last byte of its
  // response has been relayed.
  std::atomic<std::uint32_t>& in_flight;
  std::atomic<WorkerHealth>& health;
};

class EndpointState;

// A request waiting for a worker (SPEC §4 step 7, queue). Created by the
// session, granted by whichever thread frees a slot or sees a worker turn
// ready: `on_grant(worker)` is then posted to the session's io_context with
// the worker's slot already counted. The worker granted is always one of
// the configuration the waiter queued on (`endpoint`), so it stays valid as
// long as the session's Runtime. `on_grant(nullptr)` sends the waiter back
// to admission: it queued on a configuration that a reload replaced, and
// only the newest one has a worker for it (say, one the reload added); the
// session then admits the request again on the newest configuration.
struct Waiter {
  boost::asio::io_context* io = nullptr;
  std::function<void(WorkerState*)> on_grant;
  const WorkerState* avoid = nullptr;
  bool done = false;                 // granted or cancelled; guarded by the endpoint's mutex
  EndpointState* endpoint = nullptr;  // set by admit(); guarded by the endpoint's mutex
};

// The endpoint's part that outlives configurations (queue, settings in force,
// the live state of its workers); defined in worker_set.cpp.
struct EndpointLive;

// A worker that a reload removed but that still has requests in flight.
struct DrainingWorker {
  std::string url;  // as last configured
  std::string address_text;
  std::uint32_t in_flight = 0;
};

class EndpointState {
 public:
  // A new endpoint: fresh live state.
  explicit EndpointState(const config::Endpoint& e);
  // The same endpoint in a new configuration: takes over `live` (counts,
  // health, queue), applies e's settings from now on, and turns the workers
  // that e no longer has `draining`.
  EndpointState(const config::Endpoint& e, std::shared_ptr<EndpointLive> live);
  ~EndpointState();
  EndpointState(const EndpointState&) = delete;
  EndpointState& operator=(const EndpointState&) = delete;

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
  // `w` may belong to an older configuration of this endpoint.
  void release(WorkerState& w);
  // A health probe on a worker of an endpoint with max_concurrency: it takes
  // a slot like a request (a worker that serves one request at a time must
  // never see a probe beside one), or is skipped while the worker is full.
  // no_limit: nothing taken; taken: release() it after the probe.
  enum class ProbeSlot { no_limit, taken, busy };
  ProbeSlot take_probe_slot(WorkerState& w);
  // A probe or a failed connect. Returns the new state.
  WorkerHealth record(WorkerState& w, ProbeResult result);

  // Requests waiting, whichever configuration they queued on.
  std::size_t queue_length() const;
  // Workers no longer configured that still have requests in flight.
  std::vector<DrainingWorker> draining_workers() const;
  // Hands free slots to waiters, as a freed slot does. Called once a new
  // configuration is published, for waiters that it serves. Thread-safe.
  void dispatch();

  const std::shared_ptr<EndpointLive>& live() const noexcept { return live_; }

 private:
  // Chooses and counts one of this configuration's workers from the live
  // atomics; nullptr when none is eligible. Called with the live mutex held
  // whenever a limit or a queue matters.
  WorkerState* pick(const WorkerState* avoid, std::uint64_t random);
  bool any_eligible() const;
  // Requests this configuration could take now: ready workers' free slots.
  std::size_t free_slots() const;
  // With the live mutex held: hands free slots to the oldest waiters that
  // can use them.
  static void dispatch_locked(EndpointLive& live);

  const config::Endpoint* config_;
  std::shared_ptr<EndpointLive> live_;
  std::vector<std::unique_ptr<WorkerState>> workers_;
};

// Everything the request path reads from one configuration: the config and
// the endpoint views built from it, which point at the live state. Immutable
// structure; swapped whole.
struct Runtime {
  explicit Runtime(std::shared_ptr<const config::Config> c);
  std::shared_ptr<const config::Config> config;
  std::vector<std::unique_ptr<EndpointState>> endpoints;  // same order as config->endpoints
  EndpointState* find(std::string_view id) const noexcept;
  // After this runtime was published: lets waiters queued on the previous
  // one through to the workers it added, and sends those of endpoints it
  // removed back to admission (where they find no endpoint: 503).
  void dispatch() const;

  // After a reload, before this runtime is published: endpoints that exist
  // in `previous` (same id) take over its live state, so requests in flight
  // keep counting, queued requests keep waiting (and are served from now on
  // by what this configuration allows), and workers with the same address
  // keep their health. Workers that are gone turn `draining`: their requests
  // finish, nothing new is sent to them. Call it once, on the runtime that is
  // about to replace `previous`: from then on it is the endpoints' view.
  void inherit(const Runtime& previous);

 private:
  std::unordered_map<std::string_view, EndpointState*> by_id_;
  // Live state of endpoints this configuration no longer has, kept while
  // they still have requests in flight or waiting, so that an endpoint that
  // comes back in a later reload finds them.
  std::vector<std::shared_ptr<EndpointLive>> retired_;
};

}  // namespace frontdoor::lb
