// The running binary's contract (SPEC §1, §6): listening lines, /readyz and
// /healthz, graceful SIGTERM that lets a stream in flight finish.
#include <signal.h>

#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

class LifecycleTest : public ProxyTest {
 protected:
  void SetUp() override {
    add_default_endpoint();
    add_default_key();
  }
};

TEST_F(LifecycleTest, AdminHealthEndpointsNeedNoKey) {
  start();
  EXPECT_EQ(do_request(proxy_.admin_port(), "GET", "/healthz", {{"Host", "admin"}}).status, 200);
  EXPECT_EQ(do_request(proxy_.admin_port(), "GET", "/readyz", {{"Host", "admin"}}).status, 200);
}

TEST_F(LifecycleTest, SigtermExitsZero) {
  start();
  ASSERT_EQ(get("/ep1/x").status, 200);
  ASSERT_TRUE(proxy_.send_signal(SIGTERM));
  EXPECT_EQ(proxy_.wait_exit(10s), 0) << proxy_.stderr_text();
}

TEST_F(LifecycleTest, SigtermLetsStreamInFlightFinish) {
  worker_.set_default(Behavior::sse(5, 200ms));
  start();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/generate?stream=true", auth_headers())));
  auto head = c.read_head();
  ASSERT_TRUE(head);
  ASSERT_EQ(head->status, 200);
  ASSERT_TRUE(proxy_.send_signal(SIGTERM));
  std::string got;
  for (;;) {
    auto ch = c.read_chunk();
    ASSERT_TRUE(ch) << "stream cut after " << got.size() << " bytes";
    if (ch->data.empty()) break;
    got += ch->data;
  }
  EXPECT_EQ(got.size(), 5 * std::string("data: {\"n\":0}\n\n").size());
  EXPECT_EQ(proxy_.wait_exit(10s), 0) << proxy_.stderr_text();
}

TEST_F(LifecycleTest, ReadyzTurns503OnSigterm) {
  // A long stream keeps the process draining while /readyz is asked.
  worker_.set_default(Behavior::sse(20, 100ms));
  start();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/generate?stream=true", auth_headers())));
  ASSERT_TRUE(c.read_head());
  ASSERT_TRUE(proxy_.send_signal(SIGTERM));
  // "/readyz turns 503 at once": allow the signal to be delivered and handled.
  int status = 0;
  auto deadline = Clock::now() + 2s;
  while (Clock::now() < deadline) {
    status = do_request(proxy_.admin_port(), "GET", "/readyz", {{"Host", "admin"}}, {}, 1s).status;
    if (status == 503) break;
    std::this_thread::sleep_for(20ms);  // polling an observable state
  }
  EXPECT_EQ(status, 503);
  EXPECT_EQ(do_request(proxy_.admin_port(), "GET", "/healthz", {{"Host", "admin"}}).status, 200);
}

}  // namespace
}  // namespace frontdoor::test
