#pragma once
// Request metrics, counted per proxy thread and summed when /metrics is
// scraped (SPEC §6). Labels are bounded: configured endpoint ids (unknown
// ones count as "-"), status codes, and the fixed set of error codes; never
// a token, a key hash or a raw path.
#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "frontdoor/core/reason.hpp"

namespace frontdoor::proxy {

inline constexpr std::array<double, 14> kDurationBuckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                          0.25,  0.5,    1,     2.5,  5,     10,  30};

struct MetricsSnapshot {
  std::unordered_map<std::string, std::uint64_t> requests;  // "endpoint\tstatus"
  std::array<std::uint64_t, 32> outcomes{};                 // by core::Reason (none = authorized)
  std::array<std::uint64_t, kDurationBuckets.size() + 1> duration{};  // not cumulative; last = +Inf
  double duration_sum = 0;
  std::uint64_t duration_count = 0;
  void add(const MetricsSnapshot& o);
};

// One per proxy thread. The owning thread records; the admin thread reads.
// The lock is the thread's own and uncontended but for a scrape.
class ThreadMetrics {
 public:
  void record(std::string_view endpoint, unsigned status, std::chrono::nanoseconds duration);
  void record_outcome(core::Reason r);
  void add_to(MetricsSnapshot& out) const;

 private:
  mutable std::mutex mutex_;
  MetricsSnapshot data_;
  std::string key_;  // reused buffer
};

}  // namespace frontdoor::proxy
