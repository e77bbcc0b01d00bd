// SPEC §2 `max_concurrency` and `queue`, §4 step 7: a request that finds no
// ready worker with a free slot waits in the endpoint's FIFO queue; a full
// queue or queue.timeout → 503 no_worker_ready with Retry-After; a client
// that goes away leaves the queue at once.
#include <thread>
#include <vector>

#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

class QueueTest : public ProxyTest {
 protected:
  // ep1 on worker_ with max_concurrency 1 (unless `spec` says otherwise).
  void setup(EndpointSpec spec = {}) {
    if (spec.max_concurrency == 0) spec.max_concurrency = 1;
    spec.health_interval = "10s";
    add_default_endpoint(spec);
    add_default_key();
    admin_token_ = proxy_.add_key({.id = "key_admin", .management = "read"});
    start();
  }

  bool wait_queue_length(std::int64_t n, std::chrono::milliseconds timeout = kWait) {
    return wait_for_endpoint(
        proxy_, admin_token_, "ep1",
        [n](const boost::json::object& ep) { return json_int(ep, "queue_length") == n; }, timeout);
  }

  // Sends GET `target` on a new connection without reading the answer.
  std::unique_ptr<TcpClient> send_get(const std::string& target) {
    auto c = std::make_unique<TcpClient>(proxy_.proxy_port());
    EXPECT_TRUE(c->send(build_request("GET", target, auth_headers())));
    c->set_timeout(kWait);
    return c;
  }

  static Behavior held(std::chrono::milliseconds d, std::string body = "held") {
    Behavior b = Behavior::fixed(200, std::move(body));
    b.first_byte_delay = d;
    return b;
  }

  std::string admin_token_;
};

void expect_no_worker_ready(const HttpResponse& r) {
  EXPECT_TRUE(IsFrontdoorError(r, 503, "no_worker_ready"));
  EXPECT_EQ(r.header("Retry-After"), std::optional<std::string>("1"));
}

// max_concurrency 1: the second request waits until the first is answered,
// then goes to the worker; the worker never has two in flight.
TEST_F(QueueTest, SecondRequestWaitsForTheFreeSlot) {
  worker_.on("/first", held(300ms, "first"));
  setup({.queue_timeout = "3s"});
  auto c1 = send_get("/ep1/first");
  ASSERT_TRUE(worker_.wait_for_in_flight(1, kWait));
  auto c2 = send_get("/ep1/second");
  ASSERT_TRUE(wait_queue_length(1)) << "the second request is not queued";
  EXPECT_EQ(worker_.heads_received(), 1u);

  auto r1 = c1->read_response();
  auto r2 = c2->read_response();
  ASSERT_TRUE(r1);
  ASSERT_TRUE(r2);
  EXPECT_EQ(r1->body, "first");
  EXPECT_EQ(r2->status, 200) << r2->raw;
  EXPECT_EQ(worker_.max_in_flight(), 1);
  auto log = worker_.requests();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].target, "/first");
  EXPECT_EQ(log[1].target, "/second");
  EXPECT_GE(log[1].received_at - log[0].received_at, 250ms) << "sent before the slot was free";
  EXPECT_TRUE(wait_queue_length(0));
}

// Many concurrent clients on two workers with max_concurrency 1: everybody
// is served, and no worker ever has more than one request in flight.
TEST_F(QueueTest, MaxConcurrencyHoldsUnderLoad) {
  FakeWorker other;
  worker_.set_delay(40ms);
  other.set_delay(40ms);
  setup({.workers = {worker_.url(), other.url()}, .queue_timeout = "5s"});
  std::vector<std::thread> threads;
  std::vector<int> status(12, 0);
  for (std::size_t i = 0; i < status.size(); ++i)
    threads.emplace_back([&, i] { status[i] = get("/ep1/x" + std::to_string(i)).status; });
  for (auto& t : threads) t.join();
  for (std::size_t i = 0; i < status.size(); ++i) EXPECT_EQ(status[i], 200) << "request " << i;
  EXPECT_EQ(worker_.max_in_flight(), 1);
  EXPECT_EQ(other.max_in_flight(), 1);
  EXPECT_EQ(worker_.request_count() + other.request_count(), status.size());
}

// Waiting requests are served in arrival order.
TEST_F(QueueTest, QueueIsFirstInFirstOut) {
  worker_.set_delay(100ms);
  setup({.queue_timeout = "5s"});
  std::vector<std::unique_ptr<TcpClient>> clients;
  clients.push_back(send_get("/ep1/q0"));
  ASSERT_TRUE(worker_.wait_for_in_flight(1, kWait));
  for (int i = 1; i <= 3; ++i) {
    clients.push_back(send_get("/ep1/q" + std::to_string(i)));
    ASSERT_TRUE(wait_queue_length(i)) << "request " << i << " is not queued";
  }
  for (auto& c : clients) {
    auto r = c->read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  auto log = worker_.requests();
  ASSERT_EQ(log.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(log[i].target, "/q" + std::to_string(i));
  EXPECT_EQ(worker_.max_in_flight(), 1);
}

TEST_F(QueueTest, QueueTimeoutIs503WithRetryAfter) {
  worker_.on("/hold", held(1200ms));
  setup({.queue_timeout = "300ms"});
  auto c1 = send_get("/ep1/hold");
  ASSERT_TRUE(worker_.wait_for_in_flight(1, kWait));
  auto t0 = Clock::now();
  auto r = get("/ep1/late");
  auto elapsed = Clock::now() - t0;
  expect_no_worker_ready(r);
  EXPECT_GE(elapsed, 250ms) << "answered before queue.timeout";
  EXPECT_LT(elapsed, 1000ms) << "answered long after queue.timeout";
  EXPECT_TRUE(wait_queue_length(0));
  auto r1 = c1->read_response();
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->body, "held");
  EXPECT_EQ(worker_.heads_received(), 1u) << "the timed-out request reached the worker";
}

TEST_F(QueueTest, FullQueueIs503AtOnce) {
  worker_.on("/hold", held(800ms));
  setup({.queue_timeout = "3s", .queue_max = 1});
  auto c1 = send_get("/ep1/hold");
  ASSERT_TRUE(worker_.wait_for_in_flight(1, kWait));
  auto c2 = send_get("/ep1/queued");
  ASSERT_TRUE(wait_queue_length(1));
  auto t0 = Clock::now();
  auto r = get("/ep1/overflow");
  EXPECT_LT(Clock::now() - t0, 500ms) << "a full queue must answer at once";
  expect_no_worker_ready(r);
  // The queued request is still served once the slot frees.
  auto r1 = c1->read_response();
  auto r2 = c2->read_response();
  ASSERT_TRUE(r1);
  ASSERT_TRUE(r2);
  EXPECT_EQ(r1->status, 200);
  EXPECT_EQ(r2->status, 200);
  auto log = worker_.requests();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].target, "/hold");
  EXPECT_EQ(log[1].target, "/queued");
}

// A client that disconnects while queued leaves the queue at once, and its
// request never reaches a worker.
TEST_F(QueueTest, ClientThatDisconnectsLeavesTheQueue) {
  worker_.on("/hold", held(1000ms));
  setup({.queue_timeout = "3s"});
  auto c1 = send_get("/ep1/hold");
  ASSERT_TRUE(worker_.wait_for_in_flight(1, kWait));
  auto c2 = send_get("/ep1/gone");
  ASSERT_TRUE(wait_queue_length(1));
  auto closed_at = Clock::now();
  c2->close();
  ASSERT_TRUE(wait_queue_length(0, 2s));
  EXPECT_LT(Clock::now() - closed_at, 500ms) << "the queue forgot the client only late";
  EXPECT_EQ(worker_.in_flight(), 1) << "the held request should still be running";

  auto r1 = c1->read_response();
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->body, "held");
  // The slot the held request frees goes to nobody gone: a new request is
  // served at once, and the worker never saw /gone.
  auto r = get("/ep1/after");
  EXPECT_EQ(r.status, 200);
  auto log = worker_.requests();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].target, "/hold");
  EXPECT_EQ(log[1].target, "/after");
  EXPECT_EQ(worker_.heads_received(), 2u);
}

// Without a concurrency limit a request still waits while no worker is
// ready, and a worker that turns ready takes it (see also HealthTest's cold
// start); here the only worker is unhealthy, then recovers.
TEST_F(QueueTest, WaitingRequestGoesToAWorkerThatRecovers) {
  worker_.set_health_status(500);
  add_default_endpoint({.queue_timeout = "3s", .health_interval = "100ms"});
  add_default_key();
  admin_token_ = proxy_.add_key({.id = "key_admin", .management = "read"});
  start();
  auto c = send_get("/ep1/waiting");
  ASSERT_TRUE(wait_queue_length(1));
  worker_.set_health_status(200);
  auto r = c->read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->raw;
  EXPECT_EQ(worker_.request_count(), 1u);
}

}  // namespace
}  // namespace frontdoor::test

namespace frontdoor::test {
namespace {

// Issue 8 (c): a worker that serves one request at a time (max_concurrency
// 1) saw two at once: a health probe beside a request. A probe now takes
// the slot like a request, or is skipped while the worker is busy. This
// worker records its probes as requests, so max_in_flight counts them.
TEST_F(QueueTest, AProbeNeverRunsBesideARequestOnAOneAtATimeWorker) {
  worker_.set_health_path("");  // probes are recorded and counted in flight
  worker_.on("/slow", held(300ms, "slow"));
  add_default_endpoint({.health_interval = "50ms", .max_concurrency = 1});
  add_default_key();
  start();
  for (int i = 0; i < 4; ++i) {
    auto r = proxy_.request("GET", "/ep1/slow", auth_headers(), "", kWait);
    EXPECT_EQ(r.status, 200) << r.raw;
    // Let a probe in between (it waits for the slot), then go again.
    ASSERT_TRUE(worker_.wait_for_requests(worker_.request_count() + 1, kWait));
  }
  std::size_t probes = 0;
  for (const auto& req : worker_.requests()) probes += req.target == "/ping";
  EXPECT_GE(probes, 4u) << "premise: probes ran between the requests";
  EXPECT_EQ(worker_.max_in_flight(), 1);
}

}  // namespace
}  // namespace frontdoor::test
