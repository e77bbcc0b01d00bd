#pragma once
// Active health checks (SPEC §4 worker states): GET health.path on every
// worker every health.interval, with health.timeout for the whole probe.
// Runs on the admin io_context; results go to EndpointState::record(), which
// applies the thresholds and wakes queued requests when a worker turns ready.
#include <boost/asio/io_context.hpp>

#include <functional>
#include <memory>
#include <vector>

#include "frontdoor/lb/worker_set.hpp"

namespace frontdoor::server {

class HealthChecker {
 public:
  HealthChecker(boost::asio::io_context& io, std::shared_ptr<const lb::Runtime> runtime);
  ~HealthChecker();
  // Probes every worker now, then every interval. `first_round_done` runs
  // (on the io_context) once every worker's first probe has a result.
  void start(std::function<void()> first_round_done);
  void stop();

 private:
  struct Prober;
  boost::asio::io_context& io_;
  std::shared_ptr<const lb::Runtime> runtime_;
  std::vector<std::shared_ptr<Prober>> probers_;
  std::size_t first_round_left_ = 0;
  std::function<void()> first_round_done_;
};

}  // namespace frontdoor::server
