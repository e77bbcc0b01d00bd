// SPEC §6 shutdown: drain_delay keeps accepting with Connection: close, then
// the listeners close; shutdown_grace bounds streams (cut ones are logged);
// a second signal exits at once.
#include <signal.h>

#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

class ShutdownTest : public ProxyTest {
 protected:
  void SetUp() override {
    add_default_endpoint();
    add_default_key();
  }
};

TEST_F(ShutdownTest, DrainDelayAnswersWithConnectionCloseThenRefuses) {
  proxy_.set_limit("drain_delay", "1500ms");
  proxy_.set_limit("shutdown_grace", "5s");
  start();
  TcpClient kept(proxy_.proxy_port());  // an idle kept-alive connection from before
  ASSERT_TRUE(kept.send(build_request("GET", "/ep1/a", auth_headers())));
  auto first = kept.read_response();
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 200);

  ASSERT_TRUE(proxy_.send_signal(SIGTERM));
  ASSERT_TRUE(proxy_.wait_for_stderr("\"draining\"", 5000ms));
  // During drain_delay: new connections are still served, told to close.
  auto during = get("/ep1/b");
  EXPECT_EQ(during.status, 200);
  EXPECT_EQ(during.header("Connection").value_or(""), "close");
  // After it: new connections are refused, and the process exits 0.
  auto exit = proxy_.wait_exit(10s);
  EXPECT_EQ(exit, 0) << proxy_.stderr_text();
  EXPECT_EQ(get("/ep1/c").status, 0);  // no connection
}

TEST_F(ShutdownTest, GraceCutsLongStreamsAndLogsThem) {
  worker_.set_default(Behavior::sse(100, 100ms));  // 10 s: longer than the grace
  proxy_.set_limit("shutdown_grace", "500ms");
  start();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/generate?stream=true", auth_headers())));
  ASSERT_TRUE(c.read_head());
  auto t0 = Clock::now();
  ASSERT_TRUE(proxy_.send_signal(SIGTERM));
  EXPECT_EQ(proxy_.wait_exit(10s), 0);
  EXPECT_LT(Clock::now() - t0, 4s);
  EXPECT_NE(proxy_.stderr_text().find("shutdown grace over"), std::string::npos);
}

TEST_F(ShutdownTest, SecondSignalExitsAtOnce) {
  worker_.set_default(Behavior::sse(100, 100ms));
  proxy_.set_limit("shutdown_grace", "30s");
  start();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/generate?stream=true", auth_headers())));
  ASSERT_TRUE(c.read_head());
  ASSERT_TRUE(proxy_.send_signal(SIGTERM));
  ASSERT_TRUE(proxy_.wait_for_stderr("\"draining\"", 5000ms));
  auto t0 = Clock::now();
  ASSERT_TRUE(proxy_.send_signal(SIGINT));
  auto exit = proxy_.wait_exit(5s);
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(*exit, 1);
  EXPECT_LT(Clock::now() - t0, 2s);
}

}  // namespace
}  // namespace frontdoor::test
