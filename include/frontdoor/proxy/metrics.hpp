#pragma once
// Request metrics, counted per proxy thread and summed when /metrics is
// scraped (SPEC §6). Labels are bounded: configured endpoint ids (unknown
// ones count as "-"), status codes, and the fixed set of error codes; never
// a token, a key hash or a raw path.
//
// The owning thread is the only writer of its counters: an increment is a
// relaxed load and store (no locked instruction, no lock); the scraping
// thread reads them relaxed. Only adding an endpoint's row takes the lock.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "frontdoor/core/reason.hpp"

namespace frontdoor::proxy {

// Why a request ended without its response completing, or why a WebSocket
// tunnel ended (SPEC §6 `error`).
enum class End : std::uint8_t { complete, client_closed, worker_closed, idle_timeout, shutdown, revoked };
std::string_view to_string(End e) noexcept;

inline constexpr std::array<double, 14> kDurationBuckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                          0.25,  0.5,    1,     2.5,  5,     10,  30};
inline constexpr unsigned kMaxStatus = 600;

struct MetricsSnapshot {
  std::map<std::pair<std::string, unsigned>, std::uint64_t> requests;  // (endpoint, status)
  std::array<std::uint64_t, 32> outcomes{};                            // by core::Reason (none = authorized)
  std::array<std::uint64_t, kDurationBuckets.size() + 1> duration{};   // not cumulative; last = +Inf
  double duration_sum = 0;
  std::uint64_t duration_count = 0;
  std::uint64_t tunnels_opened = 0;
  std::array<std::uint64_t, 8> tunnels_closed{};  // by proxy::End

  std::uint64_t tunnels_open() const noexcept {
    std::uint64_t closed = 0;
    for (auto n : tunnels_closed) closed += n;
    return tunnels_opened > closed ? tunnels_opened - closed : 0;
  }
};

class ThreadMetrics {
 public:
  // timed = false: counted by status only, kept out of the duration
  // histogram (a WebSocket tunnel lasts as long as its users want).
  void record(std::string_view endpoint, unsigned status, std::chrono::nanoseconds duration, bool timed = true);
  void tunnel_opened() noexcept { bump(tunnels_opened_); }
  void tunnel_closed(std::size_t why) noexcept { bump(tunnels_closed_[why & 7]); }
  void record_outcome(core::Reason r) noexcept { bump(outcomes_[static_cast<std::size_t>(r) & 31]); }
  void add_to(MetricsSnapshot& out) const;

 private:
  using Counter = std::atomic<std::uint64_t>;
  static void bump(Counter& c, std::uint64_t by = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  }
  struct Row {
    std::string endpoint;
    std::array<Counter, kMaxStatus> by_status{};
  };

  mutable std::mutex rows_mutex_;  // guards rows_ (the vector, not the counters)
  std::vector<std::unique_ptr<Row>> rows_;
  Row* last_ = nullptr;  // the row hit last: consecutive requests usually share it
  std::array<Counter, 32> outcomes_{};
  std::array<Counter, kDurationBuckets.size() + 1> duration_{};
  Counter duration_ns_{0};
  Counter duration_count_{0};
  Counter tunnels_opened_{0};
  std::array<Counter, 8> tunnels_closed_{};
};

}  // namespace frontdoor::proxy
