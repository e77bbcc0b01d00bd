#pragma once
// The demo worker binary (src/tools/demo_worker.cpp) on an ephemeral port.
#include <cstdint>
#include <string>

#include "support/child_process.hpp"

namespace frontdoor::test {

class DemoWorkerProcess {
 public:
  // Spawns DEMO_WORKER_BINARY --port 0 and waits (bounded) for its
  // "demo_worker listening on 127.0.0.1:N" line; ok() tells whether it came.
  DemoWorkerProcess();
  bool ok() const noexcept { return port_ != 0; }
  std::uint16_t port() const noexcept { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  ChildProcess& process() noexcept { return child_; }

 private:
  ChildProcess child_;
  std::uint16_t port_ = 0;
};

}  // namespace frontdoor::test
