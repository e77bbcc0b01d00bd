// SPEC §2 limits and §4 steps 1 and 8: 431, 414, 413, 408, idle keep-alive.
#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

class LimitsTest : public ProxyTest {
 protected:
  void SetUp() override {
    proxy_.set_limit("max_header_bytes", "2048");
    proxy_.set_limit("max_uri_bytes", "256");
    proxy_.set_limit("max_body_bytes", "1000");
    proxy_.set_limit("header_timeout", "500ms");
    proxy_.set_limit("idle_timeout", "600ms");
    add_default_endpoint();
    add_default_key();
    start();
  }
};

TEST_F(LimitsTest, HeadTooLargeIs431) {
  auto r = get("/ep1/x", {{"X-Big", std::string(4000, 'a')}});
  EXPECT_TRUE(IsFrontdoorError(r, 431, "request_header_too_large"));
  // Many small headers count too.
  Headers many;
  for (int i = 0; i < 100; ++i) many.emplace_back("X-H" + std::to_string(i), std::string(40, 'b'));
  EXPECT_TRUE(IsFrontdoorError(get("/ep1/x", many), 431, "request_header_too_large"));
  expect_worker_saw_nothing_but_barrier();
}

TEST_F(LimitsTest, UriTooLongIs414) {
  auto r = get("/ep1/" + std::string(400, 'u'));
  EXPECT_TRUE(IsFrontdoorError(r, 414, "uri_too_long"));
  auto ok = get("/ep1/" + std::string(100, 'u'));
  EXPECT_EQ(ok.status, 200);
  ASSERT_TRUE(worker_.wait_for_requests(1, kWait));
  EXPECT_EQ(worker_.heads_received(), 1u);
}

TEST_F(LimitsTest, ContentLengthOverLimitIs413BeforeForwarding) {
  TcpClient c(proxy_.proxy_port());
  // Only the head: the answer must not wait for the body.
  ASSERT_TRUE(
      c.send(build_request("POST", "/ep1/upload", auth_headers({{"Content-Length", "5000"}}))));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_TRUE(IsFrontdoorError(*r, 413, "payload_too_large"));
  expect_worker_saw_nothing_but_barrier();
}

TEST_F(LimitsTest, BodyAtTheLimitIsAccepted) {
  auto r = proxy_.request("POST", "/ep1/upload", auth_headers(), std::string(1000, 'x'));
  EXPECT_EQ(r.status, 200);
}

TEST_F(LimitsTest, ChunkedOverLimitIs413) {
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(
      c.send(build_request("POST", "/ep1/upload", auth_headers({{"Transfer-Encoding", "chunked"}}),
                           chunk_encode(std::string(5000, 'c'), 500))));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_TRUE(IsFrontdoorError(*r, 413, "payload_too_large"));
  // Relaying stopped at the limit: the worker never got a complete request.
  auto barrier = get("/ep1/__barrier");
  EXPECT_EQ(barrier.status, 200);
  ASSERT_TRUE(worker_.wait_for_requests(1, kWait));
  auto log = worker_.requests();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].target, "/__barrier");
  for (const auto& req : log) EXPECT_LE(req.body.size(), 1000u);
}

TEST_F(LimitsTest, HeadNotInTimeIs408) {
  TcpClient c(proxy_.proxy_port());
  auto t0 = Clock::now();
  ASSERT_TRUE(c.send("GET /ep1/x HTTP/1.1\r\nHost: client.test\r\n"));  // never finished
  auto r = c.read_response();
  ASSERT_TRUE(r) << "no 408 within the client timeout";
  EXPECT_TRUE(IsFrontdoorError(*r, 408, "request_timeout"));
  auto elapsed = Clock::now() - t0;
  EXPECT_GE(elapsed, 400ms);
  EXPECT_LT(elapsed, 3s);
  EXPECT_TRUE(c.wait_closed(3s));
  expect_worker_saw_nothing_but_barrier();
}

TEST_F(LimitsTest, SecondHeadNotInTimeIs408) {
  // On a kept-alive connection the next head has header_timeout from its
  // first byte.
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/x", auth_headers())));
  auto first = c.read_response();
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 200);
  ASSERT_TRUE(c.send("GET /ep1/y HTTP/1.1\r\nHost: client.test\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_TRUE(IsFrontdoorError(*r, 408, "request_timeout"));
  EXPECT_TRUE(c.wait_closed(3s));
}

TEST_F(LimitsTest, SilentNewConnectionIsClosed) {
  TcpClient c(proxy_.proxy_port());
  auto t0 = Clock::now();
  EXPECT_TRUE(c.wait_closed(3s));  // header_timeout runs from accept
  EXPECT_GE(Clock::now() - t0, 400ms);
}

TEST_F(LimitsTest, IdleKeepAliveConnectionIsClosed) {
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/x", auth_headers())));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  auto t0 = Clock::now();
  EXPECT_TRUE(c.wait_closed(4s)) << "idle connection still open";
  EXPECT_GE(Clock::now() - t0, 450ms) << "closed before idle_timeout";
}

TEST_F(LimitsTest, ConnectionStaysOpenWithinIdleTimeout) {
  TcpClient c(proxy_.proxy_port());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.send(build_request("GET", "/ep1/x", auth_headers())));
    auto r = c.read_response();
    ASSERT_TRUE(r) << "request " << i;
    EXPECT_EQ(r->status, 200);
    // Silent for less than idle_timeout (600 ms), then the next request.
    EXPECT_FALSE(c.wait_closed(250ms));
  }
}

}  // namespace
}  // namespace frontdoor::test
