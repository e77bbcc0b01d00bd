#include "frontdoor/proxy/thread_context.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace frontdoor::proxy {
namespace {

using namespace std::chrono_literals;

struct Counter : Sweepable {
  int calls = 0;
  void on_sweep(Clock::time_point) override { ++calls; }
};

struct ThrowsOnce : Sweepable {
  int calls = 0;
  void on_sweep(Clock::time_point) override {
    if (++calls == 1) throw std::runtime_error("a bug in a handler");
  }
};

// M5: one handler that throws must not stop this thread's sweep (timeouts,
// pool expiry, access-log flushes) for good, nor skip the others' sweep.
TEST(ThreadContextSweep, AThrowingHandlerDoesNotStopTheSweep) {
  Shared shared;
  ThreadContext ctx(shared, 0);
  Counter counter;
  ThrowsOnce thrower;
  ctx.add(&counter);
  ctx.add(&thrower);  // the list head: swept first
  ctx.start_sweep();
  auto deadline = Clock::now() + 5s;
  // Like the server's proxy thread: an exception out of run() is logged and
  // run() is called again.
  while (counter.calls < 5 && Clock::now() < deadline) {
    try {
      ctx.io().run_for(50ms);
    } catch (const std::exception&) {
    }
  }
  EXPECT_GE(counter.calls, 5);
  EXPECT_GE(thrower.calls, 5);
  ctx.remove(&thrower);
  ctx.remove(&counter);
}

}  // namespace
}  // namespace frontdoor::proxy
