#include "frontdoor/lb/balancer.hpp"

namespace frontdoor::lb {

namespace {

bool usable(std::span<const Candidate> c, std::size_t i, std::size_t avoid) noexcept {
  return c[i].eligible && i != avoid;
}

}  // namespace

std::size_t select_worker(config::Balance balance, std::span<const Candidate> c, std::uint64_t rotation,
                          std::uint64_t random, std::size_t avoid) noexcept {
  const std::size_t n = c.size();
  if (n == 0) return kNoWorker;
  std::size_t eligible = 0;
  for (std::size_t i = 0; i < n; ++i) eligible += usable(c, i, avoid) ? 1 : 0;
  if (eligible == 0) {
    // Only the worker that just failed is left: better it than nothing.
    return avoid < n && c[avoid].eligible ? avoid : kNoWorker;
  }
  const std::size_t start = static_cast<std::size_t>(rotation % n);

  switch (balance) {
    case config::Balance::round_robin:
      for (std::size_t k = 0; k < n; ++k) {
        std::size_t i = (start + k) % n;
        if (usable(c, i, avoid)) return i;
      }
      break;
    case config::Balance::least_outstanding: {
      // Fewest in flight; among equals, the first from a rotating start so
      // that idle workers share the load evenly.
      std::size_t best = kNoWorker;
      for (std::size_t k = 0; k < n; ++k) {
        std::size_t i = (start + k) % n;
        if (usable(c, i, avoid) && (best == kNoWorker || c[i].in_flight < c[best].in_flight)) best = i;
      }
      return best;
    }
    case config::Balance::power_of_two: {
      // Two distinct eligible workers at random; the less loaded wins.
      std::size_t a = static_cast<std::size_t>(random % eligible);
      std::size_t b = eligible > 1 ? static_cast<std::size_t>((random >> 32) % (eligible - 1)) : a;
      if (eligible > 1 && b >= a) ++b;
      std::size_t ia = kNoWorker, ib = kNoWorker;
      for (std::size_t i = 0, seen = 0; i < n; ++i) {
        if (!usable(c, i, avoid)) continue;
        if (seen == a) ia = i;
        if (seen == b) ib = i;
        ++seen;
      }
      return c[ib].in_flight < c[ia].in_flight ? ib : ia;
    }
  }
  return kNoWorker;
}

std::string_view to_string(WorkerHealth h) noexcept {
  switch (h) {
    case WorkerHealth::unknown:
    case WorkerHealth::initializing: return "initializing";
    case WorkerHealth::ready: return "ready";
    case WorkerHealth::unhealthy: return "unhealthy";
    case WorkerHealth::draining: return "draining";
  }
  return "unhealthy";
}

ProbeResult classify_probe_status(unsigned status) noexcept {
  if (status == 204) return ProbeResult::initializing;
  if (status >= 200 && status < 300) return ProbeResult::ready;
  return ProbeResult::failed;
}

WorkerHealth next_health(WorkerHealth current, ProbeResult result, HealthCounters& counters,
                         const config::Health& thresholds) noexcept {
  if (current == WorkerHealth::draining) return current;
  switch (result) {
    case ProbeResult::initializing:
      // The worker says so itself: no threshold, and it is not a failure.
      counters = {};
      return WorkerHealth::initializing;
    case ProbeResult::ready:
      counters.failures = 0;
      ++counters.successes;
      if (current == WorkerHealth::ready) return current;
      if (current == WorkerHealth::unknown || counters.successes >= thresholds.healthy_after) {
        counters = {};
        return WorkerHealth::ready;
      }
      return current;
    case ProbeResult::failed:
      counters.successes = 0;
      ++counters.failures;
      if (current == WorkerHealth::unhealthy) return current;
      if (current == WorkerHealth::unknown || counters.failures >= thresholds.unhealthy_after) {
        counters = {};
        return WorkerHealth::unhealthy;
      }
      return current;
  }
  return current;
}

}  // namespace frontdoor::lb
