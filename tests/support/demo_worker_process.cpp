#include "support/demo_worker_process.hpp"

#include <cstdlib>

namespace frontdoor::test {

DemoWorkerProcess::DemoWorkerProcess() {
  static const std::string kMarker = "demo_worker listening on 127.0.0.1:";
  if (!child_.spawn({DEMO_WORKER_BINARY, "--port", "0"})) return;
  auto line_done = [](const std::string&, const std::string& err) {
    auto pos = err.find(kMarker);
    return pos != std::string::npos && err.find('\n', pos) != std::string::npos;
  };
  if (!child_.wait_output(line_done, std::chrono::milliseconds(5000))) return;
  std::string err = child_.stderr_text();
  int port = std::atoi(err.c_str() + err.find(kMarker) + kMarker.size());
  if (port > 0 && port < 65536) port_ = static_cast<std::uint16_t>(port);
}

}  // namespace frontdoor::test
