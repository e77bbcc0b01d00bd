#pragma once
// Live state of an endpoint's workers, shared by every proxy thread. The
// structure is fixed for one configuration; only the atomics change.
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "frontdoor/config/config.hpp"

namespace frontdoor::lb {

struct WorkerState {
  explicit WorkerState(const config::Worker& w, std::size_t index);
  const config::Worker& config;
  std::size_t index;          // position in the endpoint's worker list
  std::string address_text;   // "127.0.0.1:5000", for logs
  // Requests in flight on this worker, from every thread: a request counts
  // until the last byte of its response has been relayed.
  std::atomic<std::uint32_t> in_flight{0};
};

// Pure selection: index of the worker to use next in round-robin order,
// skipping `avoid` (a worker that just failed) when another exists.
std::size_t select_round_robin(std::uint64_t counter, std::size_t n, std::size_t avoid) noexcept;

class EndpointState {
 public:
  explicit EndpointState(const config::Endpoint& e);
  const config::Endpoint& config() const noexcept { return *config_; }
  std::span<const std::unique_ptr<WorkerState>> workers() const noexcept { return workers_; }

  // The worker for the next request; `avoid` may be nullptr.
  WorkerState& pick(const WorkerState* avoid) noexcept;

 private:
  const config::Endpoint* config_;
  std::vector<std::unique_ptr<WorkerState>> workers_;
  std::atomic<std::uint64_t> next_{0};
};

// Everything the request path reads from one configuration: the config and
// the endpoint states built from it. Immutable structure; swapped whole.
struct Runtime {
  explicit Runtime(std::shared_ptr<const config::Config> c);
  std::shared_ptr<const config::Config> config;
  std::vector<std::unique_ptr<EndpointState>> endpoints;  // same order as config->endpoints
  EndpointState* find(std::string_view id) const noexcept;

 private:
  std::unordered_map<std::string_view, EndpointState*> by_id_;
};

}  // namespace frontdoor::lb
