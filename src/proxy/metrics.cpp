#include "frontdoor/proxy/metrics.hpp"

#include <algorithm>

namespace frontdoor::proxy {

void MetricsSnapshot::add(const MetricsSnapshot& o) {
  for (const auto& [k, v] : o.requests) requests[k] += v;
  for (std::size_t i = 0; i < outcomes.size(); ++i) outcomes[i] += o.outcomes[i];
  for (std::size_t i = 0; i < duration.size(); ++i) duration[i] += o.duration[i];
  duration_sum += o.duration_sum;
  duration_count += o.duration_count;
}

void ThreadMetrics::record(std::string_view endpoint, unsigned status, std::chrono::nanoseconds d) {
  const double seconds = std::chrono::duration<double>(d).count();
  const auto bucket = static_cast<std::size_t>(
      std::lower_bound(kDurationBuckets.begin(), kDurationBuckets.end(), seconds) - kDurationBuckets.begin());
  std::lock_guard lock(mutex_);
  key_.assign(endpoint.empty() ? std::string_view("-") : endpoint);
  key_.push_back('\t');
  key_.append(std::to_string(status));
  ++data_.requests[key_];
  ++data_.duration[bucket];
  data_.duration_sum += seconds;
  ++data_.duration_count;
}

void ThreadMetrics::record_outcome(core::Reason r) {
  auto i = static_cast<std::size_t>(r);
  std::lock_guard lock(mutex_);
  if (i < data_.outcomes.size()) ++data_.outcomes[i];
}

void ThreadMetrics::add_to(MetricsSnapshot& out) const {
  std::lock_guard lock(mutex_);
  out.add(data_);
}

}  // namespace frontdoor::proxy
