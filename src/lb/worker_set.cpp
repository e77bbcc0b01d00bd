#include "frontdoor/lb/worker_set.hpp"

#include <sstream>

namespace frontdoor::lb {

WorkerState::WorkerState(const config::Worker& w, std::size_t i) : config(w), index(i) {
  std::ostringstream s;
  s << w.address;
  address_text = s.str();
}

std::size_t select_round_robin(std::uint64_t counter, std::size_t n, std::size_t avoid) noexcept {
  if (n == 0) return 0;
  auto i = static_cast<std::size_t>(counter % n);
  if (i == avoid && n > 1) i = (i + 1) % n;
  return i;
}

EndpointState::EndpointState(const config::Endpoint& e) : config_(&e) {
  workers_.reserve(e.workers.size());
  for (std::size_t i = 0; i < e.workers.size(); ++i)
    workers_.push_back(std::make_unique<WorkerState>(e.workers[i], i));
}

WorkerState& EndpointState::pick(const WorkerState* avoid) noexcept {
  auto counter = next_.fetch_add(1, std::memory_order_relaxed);
  auto avoid_index = avoid ? avoid->index : workers_.size();
  return *workers_[select_round_robin(counter, workers_.size(), avoid_index)];
}

Runtime::Runtime(std::shared_ptr<const config::Config> c) : config(std::move(c)) {
  endpoints.reserve(config->endpoints.size());
  for (const auto& e : config->endpoints) {
    endpoints.push_back(std::make_unique<EndpointState>(e));
    by_id_.emplace(e.id, endpoints.back().get());
  }
}

EndpointState* Runtime::find(std::string_view id) const noexcept {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

}  // namespace frontdoor::lb
