#include "frontdoor/proxy/metrics.hpp"

#include <algorithm>

namespace frontdoor::proxy {

std::string_view to_string(End e) noexcept {
  switch (e) {
    case End::complete: return "";
    case End::client_closed: return "client_closed";
    case End::worker_closed: return "worker_closed";
    case End::idle_timeout: return "idle_timeout";
    case End::shutdown: return "shutdown";
    case End::revoked: return "revoked";
  }
  return "";
}

void ThreadMetrics::record(std::string_view endpoint, unsigned status, std::chrono::nanoseconds d, bool timed) {
  if (endpoint.empty()) endpoint = "-";
  Row* row = last_;
  if (!row || row->endpoint != endpoint) {
    row = nullptr;
    for (auto& r : rows_)  // the owning thread: no lock needed to read its own vector
      if (r->endpoint == endpoint) row = r.get();
    if (!row) {
      auto fresh = std::make_unique<Row>();
      fresh->endpoint.assign(endpoint);
      row = fresh.get();
      std::lock_guard lock(rows_mutex_);
      rows_.push_back(std::move(fresh));
    }
    last_ = row;
  }
  bump(row->by_status[std::min(status, kMaxStatus - 1)]);
  if (!timed) return;
  const double seconds = std::chrono::duration<double>(d).count();
  const auto bucket = static_cast<std::size_t>(
      std::lower_bound(kDurationBuckets.begin(), kDurationBuckets.end(), seconds) - kDurationBuckets.begin());
  bump(duration_[bucket]);
  bump(duration_ns_, static_cast<std::uint64_t>(d.count()));
  bump(duration_count_);
}

void ThreadMetrics::add_to(MetricsSnapshot& out) const {
  {
    std::lock_guard lock(rows_mutex_);
    for (const auto& r : rows_)
      for (unsigned s = 0; s < kMaxStatus; ++s)
        if (auto n = r->by_status[s].load(std::memory_order_relaxed)) out.requests[{r->endpoint, s}] += n;
  }
  for (std::size_t i = 0; i < outcomes_.size(); ++i) out.outcomes[i] += outcomes_[i].load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < duration_.size(); ++i) out.duration[i] += duration_[i].load(std::memory_order_relaxed);
  out.duration_sum += static_cast<double>(duration_ns_.load(std::memory_order_relaxed)) * 1e-9;
  out.duration_count += duration_count_.load(std::memory_order_relaxed);
  out.tunnels_opened += tunnels_opened_.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < tunnels_closed_.size(); ++i)
    out.tunnels_closed[i] += tunnels_closed_[i].load(std::memory_order_relaxed);
}

}  // namespace frontdoor::proxy
