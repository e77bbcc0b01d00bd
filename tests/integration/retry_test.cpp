// SPEC §4 step 7, `retries`: any request is retried when no byte of it was
// written to a worker (connect failure); a GET/HEAD/OPTIONS also when a
// reused pooled connection fails before any response byte; a retry goes to
// another ready worker if there is one; a POST never runs twice.
#include <boost/json.hpp>

#include <thread>

#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

class RetryTest : public ProxyTest {
 protected:
  // Waits until the log has `n` "worker connect failed" lines about `w`
  // (see ProxyHarness::wait_for_log), then returns how many it has.
  std::size_t connect_failures(const FakeWorker& w, std::size_t n) {
    proxy_.wait_for_log(
        [&](const boost::json::object& o) {
          return json_str(o, "msg") == "worker connect failed" &&
                 json_str(o, "worker") == w.authority();
        },
        n, kWait);
    return connect_failures(w);
  }
  std::size_t connect_failures(const FakeWorker& w) {
    std::size_t n = 0;
    for (const auto& o : proxy_.log_lines())
      n += json_str(o, "msg") == "worker connect failed" && json_str(o, "worker") == w.authority();
    return n;
  }
  static std::size_t count_method(const FakeWorker& w, std::string_view method) {
    std::size_t n = 0;
    for (const auto& r : w.requests()) n += r.method == method;
    return n;
  }
};

// A worker that was ready and went away (probes far apart, so the proxy only
// learns it by connecting): the refused connect is retried on the other
// worker and every request succeeds.
TEST_F(RetryTest, ConnectFailureIsRetriedOnTheLiveWorker) {
  FakeWorker dead;
  EndpointSpec spec{.workers = {dead.url(), worker_.url()}, .health_interval = "10s", .retries = 1};
  spec.unhealthy_after = 100;  // keep the dead worker in rotation
  add_default_endpoint(spec);
  add_default_key();
  start();
  dead.stop();
  for (int i = 0; i < 4; ++i) {
    auto r = get("/ep1/get");
    EXPECT_EQ(r.status, 200) << r.raw;
  }
  // A POST too: nothing of it was written to the dead worker.
  for (int i = 0; i < 2; ++i) {
    auto r = proxy_.request("POST", "/ep1/post", auth_headers(), R"({"n":1})");
    EXPECT_EQ(r.status, 200) << r.raw;
  }
  EXPECT_GE(connect_failures(dead, 1), 1u) << "the dead worker was never tried";
  EXPECT_EQ(worker_.request_count(), 6u);
  EXPECT_EQ(count_method(worker_, "POST"), 2u);
}

// retries: 0: the refused connect is the client's 502.
TEST_F(RetryTest, NoRetriesGives502) {
  FakeWorker dead;
  EndpointSpec spec{.workers = {dead.url(), worker_.url()}, .health_interval = "10s", .retries = 0};
  spec.unhealthy_after = 100;
  add_default_endpoint(spec);
  add_default_key();
  start();
  dead.stop();
  int ok = 0, bad = 0;
  for (int i = 0; i < 4; ++i) {
    auto r = get("/ep1/x");
    if (r.status == 200) {
      ++ok;
    } else {
      ++bad;
      EXPECT_TRUE(IsFrontdoorError(r, 502, "worker_unavailable"));
    }
  }
  // round_robin alternates between the two workers.
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(bad, 2);
  EXPECT_EQ(connect_failures(dead, 2), 2u);
  EXPECT_EQ(worker_.request_count(), 2u);
}

// Retries are bounded: with both workers gone and retries: 1, a request is
// tried twice and then answered 502.
TEST_F(RetryTest, RetriesAreBounded) {
  FakeWorker dead1, dead2;
  EndpointSpec spec{.workers = {dead1.url(), dead2.url()}, .health_interval = "10s", .retries = 1};
  spec.unhealthy_after = 100;
  add_default_endpoint(spec);
  add_default_key();
  start();
  dead1.stop();
  dead2.stop();
  auto r = get("/ep1/x");
  EXPECT_TRUE(IsFrontdoorError(r, 502, "worker_unavailable"));
  EXPECT_EQ(connect_failures(dead1, 1), 1u) << "the retry should go to the other worker";
  EXPECT_EQ(connect_failures(dead2, 1), 1u) << "the retry should go to the other worker";
}

// A POST whose worker closes the connection without answering (after the
// request was written) is 502, and no worker sees it twice: on a fresh
// connection, on a reused pooled one, with or without a body.
TEST_F(RetryTest, PostIsNeverRunTwice) {
  FakeWorker other;
  worker_.on("/generate", Behavior::close_without_answer());
  other.on("/generate", Behavior::close_without_answer());
  EndpointSpec spec{
      .workers = {worker_.url(), other.url()}, .health_interval = "10s", .retries = 3};
  add_default_endpoint(spec);
  add_default_key();
  proxy_.config().threads = 1;  // one connection pool: the warm-up connections get reused
  start();

  // Fresh connections.
  auto r = proxy_.request("POST", "/ep1/generate", auth_headers(), R"({"prompt":"once"})");
  EXPECT_TRUE(IsFrontdoorError(r, 502, "worker_unavailable"));
  EXPECT_EQ(count_method(worker_, "POST") + count_method(other, "POST"), 1u);

  auto empty = proxy_.request("POST", "/ep1/generate", auth_headers());
  EXPECT_TRUE(IsFrontdoorError(empty, 502, "worker_unavailable"));
  EXPECT_EQ(count_method(worker_, "POST") + count_method(other, "POST"), 2u);

  // Pooled connections: warm both workers up, then POST on a reused one.
  ASSERT_EQ(get("/ep1/warm").status, 200);
  ASSERT_EQ(get("/ep1/warm").status, 200);
  const int accepted = worker_.connections_accepted() + other.connections_accepted();
  auto pooled = proxy_.request("POST", "/ep1/generate", auth_headers(), R"({"prompt":"pooled"})");
  EXPECT_TRUE(IsFrontdoorError(pooled, 502, "worker_unavailable"));
  EXPECT_EQ(worker_.connections_accepted() + other.connections_accepted(), accepted)
      << "the POST was meant to go on a pooled connection";
  EXPECT_EQ(count_method(worker_, "POST") + count_method(other, "POST"), 3u);

  // And the workers saw each body once.
  std::size_t once = 0, pooled_body = 0;
  for (auto* w : {&worker_, &other})
    for (const auto& req : w->requests()) {
      once += req.body == R"({"prompt":"once"})";
      pooled_body += req.body == R"({"prompt":"pooled"})";
    }
  EXPECT_EQ(once, 1u);
  EXPECT_EQ(pooled_body, 1u);
}

// A worker closes its connections after answering, without saying so (its
// keep-alive timeout racing a reuse). round_robin sends the third GET to
// that worker; every pooled connection is checked before reuse, whatever
// the method (review L4), so the stale one is found closed before anything
// is written, and the GET goes out on a fresh connection to the same worker:
// no error, no retry needed. A closed pooled connection is no passive health
// failure: the worker stays ready.
TEST_F(RetryTest, GetOnStalePooledConnectionIsRetriedTransparently) {
  FakeWorker closer;
  Behavior b = Behavior::fixed(200, "from closer");
  b.close_after_response = true;
  closer.set_default(b);
  worker_.set_default(Behavior::fixed(200, "from worker"));
  EndpointSpec spec{
      .workers = {closer.url(), worker_.url()}, .health_interval = "10s", .retries = 1};
  spec.unhealthy_after = 1;  // one counted failure would turn it unhealthy
  add_default_endpoint(spec);
  add_default_key();
  std::string admin = proxy_.add_key({.id = "key_admin", .management = "read"});
  proxy_.config().threads = 1;  // one connection pool
  start();

  auto r1 = get("/ep1/one");
  ASSERT_EQ(r1.status, 200);
  ASSERT_EQ(r1.body, "from closer");
  // The start-up probe's connection and r1's are closed by the worker.
  ASSERT_TRUE(closer.wait_for_connections_closed(2, kWait));
  auto r2 = get("/ep1/two");
  ASSERT_EQ(r2.body, "from worker");
  // A GET reuses a connection pooled less than 0.5 ms ago unchecked (it is
  // retried if that fails: RetryTest.GetClosedOnAReusedConnection...). This
  // one is older: the check finds it closed.
  std::this_thread::sleep_for(2ms);

  const int accepted = closer.connections_accepted();  // the probe's and r1's
  auto r3 = get("/ep1/three");
  EXPECT_EQ(r3.status, 200) << r3.raw;
  EXPECT_EQ(r3.body, "from closer") << "sent on a fresh connection, not failed";
  EXPECT_EQ(closer.connections_accepted(), accepted + 1);
  ASSERT_EQ(closer.request_count(), 2u);
  EXPECT_EQ(closer.requests()[1].target, "/three");
  EXPECT_EQ(worker_.request_count(), 1u);

  auto ep = endpoint_status(proxy_, admin, "ep1");
  ASSERT_TRUE(ep);
  auto ws = worker_status(*ep, closer.authority());
  ASSERT_TRUE(ws);
  EXPECT_EQ(json_str(*ws, "state"), "ready");
  EXPECT_TRUE(proxy_.worker_state_changes(closer.authority()).size() <= 1u)
      << "only the start-up change expected";
}

// Once a response byte came from the worker, a GET on a reused pooled
// connection is not retried: half a response head, then the worker closes →
// 502, and the other worker never sees the request.
TEST_F(RetryTest, GetIsNotRetriedAfterAResponseByte) {
  FakeWorker other;
  worker_.on("/partial", Behavior::raw_then_close("HTTP/1.1 200 OK\r\nContent-Le"));
  other.on("/partial", Behavior::raw_then_close("HTTP/1.1 200 OK\r\nContent-Le"));
  EndpointSpec spec{
      .workers = {worker_.url(), other.url()}, .health_interval = "10s", .retries = 2};
  add_default_endpoint(spec);
  add_default_key();
  proxy_.config().threads = 1;  // one connection pool
  start();
  ASSERT_EQ(get("/ep1/warm").status, 200);
  ASSERT_EQ(get("/ep1/warm").status, 200);
  const int accepted = worker_.connections_accepted() + other.connections_accepted();
  auto r = get("/ep1/partial");
  EXPECT_TRUE(IsFrontdoorError(r, 502, "worker_unavailable"));
  EXPECT_EQ(worker_.connections_accepted() + other.connections_accepted(), accepted)
      << "the GET was meant to go on a pooled connection, and not to be retried";
  std::size_t partial = 0;
  for (auto* w : {&worker_, &other})
    for (const auto& req : w->requests()) partial += req.target == "/partial";
  EXPECT_EQ(partial, 1u);
}

// A GET on a reused pooled connection that the worker closes after reading
// it, before any response byte, is retried on the other worker (SPEC §4
// step 7), and the retry really sends the request: the first rewrite kept
// "request sent" per request, not per attempt, and the retry wrote nothing
// (a 504 after timeouts.idle).
TEST_F(RetryTest, GetClosedOnAReusedConnectionIsResentOnTheRetry) {
  FakeWorker other;
  worker_.on("/reset", Behavior::close_without_answer());
  other.on("/reset", Behavior::fixed(200, "from other"));
  EndpointSpec spec{.workers = {worker_.url(), other.url()},
                    .idle = "3s",
                    .health_interval = "10s",
                    .retries = 1};
  add_default_endpoint(spec);
  add_default_key();
  proxy_.config().threads = 1;  // one connection pool
  start();
  ASSERT_EQ(get("/ep1/warm").status, 200);  // round_robin: one pooled connection to each
  ASSERT_EQ(get("/ep1/warm").status, 200);
  const int accepted = worker_.connections_accepted() + other.connections_accepted();
  auto r = get("/ep1/reset");
  EXPECT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body, "from other");
  EXPECT_EQ(worker_.connections_accepted() + other.connections_accepted(), accepted)
      << "both tries were meant to go on pooled connections";
  std::size_t resets = 0;
  for (auto* w : {&worker_, &other})
    for (const auto& req : w->requests()) resets += req.target == "/reset";
  EXPECT_EQ(resets, 2u);
}

// A GET reset before any response byte on a fresh connection is not one of
// the retry cases either (it was written to a worker, on no reused
// connection): 502, seen by one worker once.
TEST_F(RetryTest, GetResetOnAFreshConnectionIsNotRetried) {
  FakeWorker other;
  worker_.on("/reset", Behavior::close_without_answer());
  other.on("/reset", Behavior::close_without_answer());
  EndpointSpec spec{
      .workers = {worker_.url(), other.url()}, .health_interval = "10s", .retries = 2};
  add_default_endpoint(spec);
  add_default_key();
  start();
  auto r = get("/ep1/reset");
  EXPECT_TRUE(IsFrontdoorError(r, 502, "worker_unavailable"));
  EXPECT_EQ(worker_.request_count() + other.request_count(), 1u);
}

// The same with one worker only: the retry goes to that worker again, on a
// fresh connection.
TEST_F(RetryTest, GetOnStalePooledConnectionSingleWorker) {
  Behavior b = Behavior::fixed(200, "ok");
  b.close_after_response = true;
  worker_.set_default(b);
  add_default_endpoint({.health_interval = "10s", .retries = 1});
  add_default_key();
  proxy_.config().threads = 1;
  start();
  for (int i = 0; i < 3; ++i) {
    auto r = get("/ep1/x" + std::to_string(i));
    EXPECT_EQ(r.status, 200) << r.raw;
    // The start-up probe's connection, then one per request, closed by the
    // worker before the next request goes out.
    ASSERT_TRUE(worker_.wait_for_connections_closed(i + 2, kWait));
  }
  EXPECT_EQ(worker_.request_count(), 3u);
}

// timeouts.idle bounds each wait for progress while relaying, never the
// whole exchange: a stream that keeps moving outlives it...
TEST_F(RetryTest, StreamLongerThanIdleTimeoutIsNotCut) {
  worker_.set_default(Behavior::sse(6, 150ms));  // 750 ms in all, 150 ms between events
  add_default_endpoint({.idle = "400ms", .health_interval = "10s"});
  add_default_key();
  start();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/stream", auth_headers())));
  auto head = c.read_head();
  ASSERT_TRUE(head);
  ASSERT_EQ(head->status, 200);
  int events = 0;
  for (;;) {
    auto ch = c.read_chunk();
    ASSERT_TRUE(ch) << "stream cut after " << events << " events";
    if (ch->data.empty()) break;
    ++events;
  }
  EXPECT_EQ(events, 6);
}

// ...while a stream that stalls longer than timeouts.idle is cut (the
// response has started, so the client connection is closed) and the worker
// connection is given up.
TEST_F(RetryTest, StalledStreamIsCutAfterIdleTimeout) {
  worker_.set_default(Behavior::sse(3, 3000ms));
  add_default_endpoint({.idle = "300ms", .health_interval = "10s"});
  add_default_key();
  start();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/stream", auth_headers())));
  auto head = c.read_head();
  ASSERT_TRUE(head);
  ASSERT_EQ(head->status, 200);
  auto first = c.read_chunk();
  ASSERT_TRUE(first);
  EXPECT_FALSE(first->data.empty());
  const auto t0 = Clock::now();
  EXPECT_TRUE(c.wait_closed(2s)) << "a stalled stream was not cut";
  EXPECT_LT(Clock::now() - t0, 1500ms);
  EXPECT_TRUE(worker_.wait_for_peer_aborts(1, kWait));
  EXPECT_EQ(worker_.request_count(), 1u) << "a started response is never retried";
}

}  // namespace
}  // namespace frontdoor::test
