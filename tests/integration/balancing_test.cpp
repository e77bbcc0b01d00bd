// SPEC §2 `balance`: round_robin, least_outstanding, power_of_two; a request
// counts as outstanding on its worker until its response was relayed whole.
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

class BalancingTest : public ProxyTest {
 protected:
  void add_endpoint_on(const std::vector<FakeWorker*>& workers, std::string balance) {
    EndpointSpec spec{.workers = {}, .balance = std::move(balance), .health_interval = "10s"};
    for (auto* w : workers) spec.workers.push_back(w->url());
    add_default_endpoint(spec);
    add_default_key();
    admin_token_ = proxy_.add_key({.id = "key_admin", .management = "read"});
  }

  // The proxy frees a request's slot once it has relayed the last byte, which
  // may be a moment after the client has read it: before a request whose
  // placement is checked, wait until the endpoint has just `n` in flight.
  void wait_endpoint_in_flight(std::int64_t n) {
    ASSERT_TRUE(wait_for_endpoint(
        proxy_, admin_token_, "ep1",
        [n](const boost::json::object& ep) { return json_int(ep, "in_flight") == n; }, kWait))
        << "in_flight never " << n;
  }

  std::string admin_token_;
};

// `clients` threads send requests to `proxy` until `total` were sent in all;
// returns how many did not answer 200.
int run_clients(const ProxyHarness& proxy, const Headers& headers, int clients, int total) {
  std::atomic<int> left{total};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      while (left.fetch_sub(1) > 0)
        if (proxy.request("GET", "/ep1/work", headers).status != 200) ++failures;
    });
  }
  for (auto& t : threads) t.join();
  return failures.load();
}

TEST_F(BalancingTest, RoundRobinSpreadsEvenly) {
  FakeWorker a, b, c;
  add_endpoint_on({&a, &b, &c}, "round_robin");
  start();
  for (int i = 0; i < 30; ++i) ASSERT_EQ(get("/ep1/x").status, 200);
  EXPECT_EQ(a.request_count(), 10u);
  EXPECT_EQ(b.request_count(), 10u);
  EXPECT_EQ(c.request_count(), 10u);
}

TEST_F(BalancingTest, RoundRobinSpreadsEvenlyUnderConcurrency) {
  FakeWorker a, b, c;
  add_endpoint_on({&a, &b, &c}, "round_robin");
  start();
  EXPECT_EQ(run_clients(proxy_, auth_headers(), 6, 60), 0);
  EXPECT_EQ(a.request_count(), 20u);
  EXPECT_EQ(b.request_count(), 20u);
  EXPECT_EQ(c.request_count(), 20u);
}

// Two workers, one answers after 200 ms, the other at once; four clients
// share a budget of requests. round_robin gives the slow worker half of
// them whatever its load; least_outstanding sends new requests to the
// worker with fewer in flight, so the slow one gets far fewer.
TEST_F(BalancingTest, LeastOutstandingSendsLessToASlowWorker) {
  constexpr int kClients = 4;
  constexpr int kTotal = 24;
  auto slow_share = [&](const std::string& balance, std::size_t* fast_count) -> std::size_t {
    FakeWorker fast, slow;
    slow.set_delay(200ms);
    ProxyHarness proxy;
    std::string token =
        proxy.add_key({.id = "key_rw", .endpoints = {{"*", "none"}, {"ep1", "read_write"}}});
    proxy.add_endpoint({.id = "ep1",
                        .workers = {fast.url(), slow.url()},
                        .balance = balance,
                        .health_interval = "10s"});
    if (!proxy.start()) {
      ADD_FAILURE() << proxy.error();
      return 0;
    }
    EXPECT_EQ(run_clients(proxy, {{"Host", "client.test"}, bearer(token)}, kClients, kTotal), 0)
        << balance;
    *fast_count = fast.request_count();
    return slow.request_count();
  };
  std::size_t rr_fast = 0, lo_fast = 0;
  const auto rr_slow = slow_share("round_robin", &rr_fast);
  const auto lo_slow = slow_share("least_outstanding", &lo_fast);
  RecordProperty("round_robin_slow", static_cast<int>(rr_slow));
  RecordProperty("least_outstanding_slow", static_cast<int>(lo_slow));
  EXPECT_EQ(rr_slow + rr_fast, static_cast<std::size_t>(kTotal));
  EXPECT_EQ(lo_slow + lo_fast, static_cast<std::size_t>(kTotal));
  EXPECT_EQ(rr_slow, static_cast<std::size_t>(kTotal / 2)) << "round_robin ignores load";
  EXPECT_LT(lo_slow, rr_slow);
  EXPECT_LE(lo_slow, static_cast<std::size_t>(kTotal / 4))
      << "least_outstanding: slow " << lo_slow << ", fast " << lo_fast;
}

// A long stream weighs on its worker for as long as it lasts (SPEC §4): with
// a stream in flight on one worker, least_outstanding sends every new request
// to the other one.
TEST_F(BalancingTest, LeastOutstandingCountsAStreamUntilItEnds) {
  FakeWorker a, b;
  a.on("/stream", Behavior::sse(8, 100ms));
  b.on("/stream", Behavior::sse(8, 100ms));
  add_endpoint_on({&a, &b}, "least_outstanding");
  start();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/stream", auth_headers())));
  auto head = c.read_head();
  ASSERT_TRUE(head);
  ASSERT_EQ(head->status, 200);
  FakeWorker* streaming = a.request_count() == 1 ? &a : &b;
  FakeWorker* other = streaming == &a ? &b : &a;
  ASSERT_EQ(streaming->request_count(), 1u);
  for (int i = 0; i < 6; ++i) {
    wait_endpoint_in_flight(1);  // the stream only
    ASSERT_EQ(get("/ep1/x").status, 200);
  }
  EXPECT_EQ(streaming->request_count(), 1u) << "a worker with a stream in flight got more";
  EXPECT_EQ(other->request_count(), 6u);
  for (;;) {
    auto ch = c.read_chunk();
    ASSERT_TRUE(ch);
    if (ch->data.empty()) break;
  }
  // The stream is over: both workers share again.
  wait_endpoint_in_flight(0);
  streaming->clear();
  other->clear();
  for (int i = 0; i < 6; ++i) ASSERT_EQ(get("/ep1/y").status, 200);
  EXPECT_GT(streaming->request_count(), 0u);
  EXPECT_GT(other->request_count(), 0u);
}

// power_of_two: with idle workers every worker gets requests.
TEST_F(BalancingTest, PowerOfTwoUsesEveryWorker) {
  FakeWorker a, b, c;
  add_endpoint_on({&a, &b, &c}, "power_of_two");
  start();
  for (int i = 0; i < 45; ++i) ASSERT_EQ(get("/ep1/x").status, 200);
  EXPECT_GT(a.request_count(), 0u);
  EXPECT_GT(b.request_count(), 0u);
  EXPECT_GT(c.request_count(), 0u);
  EXPECT_EQ(a.request_count() + b.request_count() + c.request_count(), 45u);
}

// power_of_two: of two workers drawn, the less loaded wins, so a worker with
// a request in flight never gets a new one while the two others are idle.
TEST_F(BalancingTest, PowerOfTwoAvoidsALoadedWorker) {
  FakeWorker a, b, c;
  std::vector<FakeWorker*> all{&a, &b, &c};
  Behavior hold = Behavior::fixed(200, "held");
  hold.first_byte_delay = 1000ms;
  for (auto* w : all) w->on("/hold", hold);
  add_endpoint_on(all, "power_of_two");
  start();
  TcpClient held(proxy_.proxy_port());
  ASSERT_TRUE(held.send(build_request("GET", "/ep1/hold", auth_headers())));
  FakeWorker* loaded = nullptr;
  ASSERT_TRUE(wait_for_endpoint(
      proxy_, admin_token_, "ep1",
      [&](const boost::json::object& ep) {
        for (auto* w : all)
          if (auto ws = worker_status(ep, w->authority()); ws && json_int(*ws, "in_flight") == 1)
            loaded = w;
        return loaded != nullptr;
      },
      kWait))
      << "the held request is on no worker";
  ASSERT_TRUE(loaded->wait_for_in_flight(1, kWait));
  for (int i = 0; i < 20; ++i) {
    wait_endpoint_in_flight(1);  // the held request only
    ASSERT_EQ(get("/ep1/x").status, 200);
  }
  EXPECT_EQ(loaded->request_count(), 1u) << "the loaded worker got new requests";
  for (auto* w : all)
    if (w != loaded) {
      EXPECT_GT(w->request_count(), 0u) << "an idle worker was never chosen";
    }
  held.set_timeout(kWait);
  auto r = held.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "held");
}

}  // namespace
}  // namespace frontdoor::test
