// SPEC §4 step 7: worker failures map to 502 / 503 / 504, and a POST never
// runs twice.
#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

class UpstreamTest : public ProxyTest {};

TEST_F(UpstreamTest, RefusedConnectionIs502) {
  // The worker is healthy at start (probes are far apart), then goes away:
  // the next connect is refused.
  add_default_endpoint({.health_interval = "60s", .retries = 0});
  add_default_key();
  start();
  ASSERT_EQ(get("/ep1/warmup").status, 200);
  worker_.stop();
  auto r = get("/ep1/x");
  EXPECT_TRUE(IsFrontdoorError(r, 502, "worker_unavailable"));
}

TEST_F(UpstreamTest, RefusedConnectionIs502WithRetries) {
  add_default_endpoint({.health_interval = "60s", .retries = 1});
  add_default_key();
  start();
  ASSERT_EQ(get("/ep1/warmup").status, 200);
  worker_.stop();
  auto r = proxy_.request("POST", "/ep1/generate", auth_headers(), "{}");
  EXPECT_TRUE(IsFrontdoorError(r, 502, "worker_unavailable"));
}

TEST_F(UpstreamTest, ResetBeforeHeadIs502AndPostRunsOnce) {
  add_default_endpoint({.retries = 1});
  add_default_key();
  worker_.on("/generate", Behavior::close_without_answer());
  start();
  auto r = proxy_.request("POST", "/ep1/generate", auth_headers(), R"({"prompt":"once"})");
  EXPECT_TRUE(IsFrontdoorError(r, 502, "worker_unavailable"));
  // Barrier, then: the POST reached the worker exactly once.
  EXPECT_EQ(get("/ep1/__barrier").status, 200);
  ASSERT_TRUE(worker_.wait_for_requests(2, kWait));
  std::size_t posts = 0;
  for (const auto& req : worker_.requests()) posts += req.target == "/generate";
  EXPECT_EQ(posts, 1u);
}

TEST_F(UpstreamTest, NoHeadWithinFirstByteIs504) {
  add_default_endpoint({.first_byte = "500ms"});
  add_default_key();
  worker_.set_default(Behavior::never_answer());
  start();
  auto t0 = Clock::now();
  auto r = get("/ep1/slow");
  auto elapsed = Clock::now() - t0;
  EXPECT_TRUE(IsFrontdoorError(r, 504, "worker_timeout"));
  EXPECT_GE(elapsed, 400ms);
  EXPECT_LT(elapsed, 3s);
  // The proxy gives up on that worker connection.
  EXPECT_TRUE(worker_.wait_for_peer_aborts(1, 3s));
  // Not retried: the request was written on a fresh connection, which is
  // not one of the retry cases of step 7.
  EXPECT_EQ(worker_.request_count(), 1u);
}

TEST_F(UpstreamTest, SlowFirstByteWithinLimitIsFine) {
  add_default_endpoint({.first_byte = "2s"});
  add_default_key();
  Behavior b = Behavior::fixed(200, "late");
  b.first_byte_delay = 300ms;
  worker_.set_default(b);
  start();
  auto r = get("/ep1/slow");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "late");
}

// The worker closes each connection after answering, without a
// "Connection: close" (as when its keep-alive timeout races a reuse): the
// pooled connection is found closed before anything is written to it, so
// the request goes on a fresh connection (§4 step 7) -- even a POST.
TEST_F(UpstreamTest, PooledConnectionClosedByWorkerIsNotUsed) {
  add_default_endpoint();
  add_default_key();
  Behavior b = Behavior::fixed(200, "ok");
  b.close_after_response = true;
  worker_.set_default(b);
  start();
  for (int i = 0; i < 3; ++i) {
    const int closed_before = worker_.connections_closed();
    auto g = get("/ep1/get");
    EXPECT_EQ(g.status, 200) << g.raw;
    // Wait until the worker has closed that connection, so its FIN is there
    // for the proxy to see before the next request.
    ASSERT_TRUE(worker_.wait_for_connections_closed(closed_before + 1, kWait));
    auto p = proxy_.request("POST", "/ep1/post", auth_headers(), "{}");
    EXPECT_EQ(p.status, 200) << p.raw;
    ASSERT_TRUE(worker_.wait_for_connections_closed(closed_before + 2, kWait));
  }
  std::size_t posts = 0;
  for (const auto& req : worker_.requests()) posts += req.method == "POST";
  EXPECT_EQ(posts, 3u);
}

TEST_F(UpstreamTest, WorkerErrorStatusesPassThrough) {
  add_default_endpoint();
  add_default_key();
  worker_.set_default(
      Behavior::fixed(500, R"({"detail":"boom"})", {{"Content-Type", "application/json"}}));
  start();
  auto r = get("/ep1/x");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body, R"({"detail":"boom"})");
  EXPECT_FALSE(r.has_header("X-Frontdoor-Error")) << "a worker's own error is not frontdoor's";
}

}  // namespace
}  // namespace frontdoor::test
