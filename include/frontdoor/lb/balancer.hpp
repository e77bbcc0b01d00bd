#pragma once
// Worker selection and health state: pure functions over plain values
// (STYLE "Decisions are pure functions"), unit-tested without sockets.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "frontdoor/config/config.hpp"

namespace frontdoor::lb {

inline constexpr std::size_t kNoWorker = static_cast<std::size_t>(-1);

// What a balancer sees of one worker.
struct Candidate {
  std::uint32_t in_flight = 0;
  bool eligible = false;  // ready, and below max_concurrency
};

// Index of the worker for the next request, or kNoWorker when none is
// eligible. `rotation` advances by one per request (round robin, and the
// tie-break of least_outstanding); `random` is a fresh random number
// (power_of_two). `avoid` (a worker that just failed) is chosen only when no
// other worker is eligible.
std::size_t select_worker(config::Balance balance, std::span<const Candidate> candidates,
                          std::uint64_t rotation, std::uint64_t random, std::size_t avoid) noexcept;

// SPEC §4 worker states. `unknown` is the state before the first probe:
// not routed, shown as "initializing".
enum class WorkerHealth : std::uint8_t { unknown, initializing, ready, unhealthy, draining };

std::string_view to_string(WorkerHealth h) noexcept;

enum class ProbeResult : std::uint8_t {
  ready,         // any 2xx but 204
  initializing,  // 204: the worker is up but still loading
  failed,        // anything else, no answer in time, or (passive) a failed fresh connect
};

// Consecutive results since the last change of direction.
struct HealthCounters {
  unsigned successes = 0;
  unsigned failures = 0;
};

// The next state after one result, with the healthy_after / unhealthy_after
// thresholds. The first result after start-up decides at once (nothing was
// known before); `draining` never changes here.
WorkerHealth next_health(WorkerHealth current, ProbeResult result, HealthCounters& counters,
                         const config::Health& thresholds) noexcept;

ProbeResult classify_probe_status(unsigned status) noexcept;

}  // namespace frontdoor::lb
