// SPEC §4 "Workers are in one of four states": probes at start-up, no
// traffic to a worker that is not ready (503 once the queue times out),
// thresholds (unhealthy_after / healthy_after), cold start (204 =
// initializing) and passive health (failed fresh connects).
#include <boost/json.hpp>

#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

class HealthTest : public ProxyTest {
 protected:
  // A key that may read the admin API (GET /v1/endpoints).
  void add_admin_key() { admin_token_ = proxy_.add_key({.id = "key_admin", .management = "read"}); }

  std::string state_of(const FakeWorker& w) {
    auto ep = endpoint_status(proxy_, admin_token_, "ep1");
    if (!ep) return "<no /v1/endpoints answer>";
    auto ws = worker_status(*ep, w.authority());
    return ws ? json_str(*ws, "state") : "<worker not listed>";
  }

  // Lines of the proxy log with msg `msg` about `worker`, after waiting (a
  // bounded time) for there to be at least `wait_for` of them.
  std::size_t log_count(std::string_view msg, const FakeWorker& w, std::size_t wait_for = 0) {
    if (wait_for > 0)
      proxy_.wait_for_log(
          [&](const boost::json::object& o) {
            return json_str(o, "msg") == msg && json_str(o, "worker") == w.authority();
          },
          wait_for, kWait);
    std::size_t n = 0;
    for (const auto& o : proxy_.log_lines())
      n += json_str(o, "msg") == msg && json_str(o, "worker") == w.authority();
    return n;
  }

  std::string admin_token_;
};

// Probe statuses answered after the last one that was not `status`.
std::size_t trailing(const std::vector<int>& statuses, int status) {
  std::size_t n = 0;
  for (auto it = statuses.rbegin(); it != statuses.rend() && *it == status; ++it) ++n;
  return n;
}

TEST_F(HealthTest, UnhealthyWorkerIs503) {
  add_default_endpoint({.queue_timeout = "500ms"});
  add_default_key();
  worker_.on("/ping", Behavior::fixed(500));  // health probes fail
  start();
  auto r = get("/ep1/x");
  EXPECT_TRUE(IsFrontdoorError(r, 503, "no_worker_ready"));
  auto retry_after = r.header("Retry-After");
  ASSERT_TRUE(retry_after);
  EXPECT_FALSE(retry_after->empty());
  EXPECT_EQ(retry_after->find_first_not_of("0123456789"), std::string::npos) << *retry_after;
  EXPECT_EQ(worker_.heads_received(), 0u);
}

TEST_F(HealthTest, WorkerIsProbedAtStartup) {
  add_default_endpoint();
  add_default_key();
  start();
  EXPECT_TRUE(worker_.wait_for_health_probes(1, kWait)) << "no GET /ping at start-up";
}

TEST_F(HealthTest, InitializingWorkerGetsNoTraffic) {
  add_default_endpoint({.queue_timeout = "500ms"});
  add_default_key();
  worker_.on("/ping", Behavior::fixed(204));  // 204 = initializing
  start();
  ASSERT_TRUE(worker_.wait_for_health_probes(1, kWait));
  auto r = get("/ep1/x");
  EXPECT_TRUE(IsFrontdoorError(r, 503, "no_worker_ready"));
  EXPECT_EQ(worker_.heads_received(), 0u);
}

TEST_F(HealthTest, TrafficGoesToTheReadyWorker) {
  FakeWorker sick;
  sick.on("/ping", Behavior::fixed(503));
  add_default_endpoint({.workers = {worker_.url(), sick.url()}});
  add_default_key();
  start();
  ASSERT_TRUE(sick.wait_for_health_probes(1, kWait));
  ASSERT_TRUE(worker_.wait_for_health_probes(1, kWait));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(get("/ep1/x").status, 200);
  EXPECT_EQ(worker_.request_count(), 6u);
  EXPECT_EQ(sick.heads_received(), 0u);
}

// /readyz turns 200 only once every worker's first probe has a result; a
// worker that answers its probe in time is then already ready (the first
// result decides at once, whatever healthy_after says).
TEST_F(HealthTest, FirstProbeDecidesAtOnce) {
  FakeWorker second;
  EndpointSpec spec{.workers = {worker_.url(), second.url()}, .health_interval = "10s"};
  spec.healthy_after = 3;
  add_default_endpoint(spec);
  add_default_key();
  add_admin_key();
  start();
  EXPECT_EQ(worker_.health_probes(), 1u);
  EXPECT_EQ(second.health_probes(), 1u);
  EXPECT_EQ(state_of(worker_), "ready");
  EXPECT_EQ(state_of(second), "ready");
  for (int i = 0; i < 4; ++i) EXPECT_EQ(get("/ep1/x").status, 200);
  EXPECT_EQ(worker_.request_count(), 2u);
  EXPECT_EQ(second.request_count(), 2u);
}

// Admin /readyz turns 200 only once every worker's first probe has a result:
// an answer (here after 400 ms) or a timeout (health.timeout 500 ms).
TEST_F(HealthTest, ReadyzWaitsForEveryFirstProbe) {
  FakeWorker slow_probe, hanging;
  slow_probe.set_health_delay(400ms);
  hanging.set_health_delay(5s);
  EndpointSpec spec{.workers = {slow_probe.url(), hanging.url()}, .health_interval = "10s"};
  spec.health_timeout = "500ms";
  add_default_endpoint(spec);
  add_default_key();
  add_admin_key();
  const auto t0 = Clock::now();
  start();
  EXPECT_GE(Clock::now() - t0, 450ms) << "/readyz was 200 before the hanging probe timed out";
  EXPECT_EQ(slow_probe.probe_statuses().size(), 1u);
  EXPECT_TRUE(hanging.probe_statuses().empty());
  EXPECT_EQ(state_of(slow_probe), "ready");
  EXPECT_EQ(state_of(hanging), "unhealthy");
  auto r = get("/ep1/x");
  EXPECT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(slow_probe.request_count(), 1u);
  EXPECT_EQ(hanging.heads_received(), 0u);
}

// A worker whose probe turns 500 leaves the rotation after unhealthy_after
// failed probes, and comes back after healthy_after good ones.
TEST_F(HealthTest, UnhealthyWorkerLeavesAndRejoinsAfterThresholds) {
  FakeWorker flaky;
  EndpointSpec spec{.workers = {worker_.url(), flaky.url()}, .health_interval = "150ms"};
  spec.unhealthy_after = 2;
  spec.healthy_after = 2;
  add_default_endpoint(spec);
  add_default_key();
  add_admin_key();
  start();
  for (int i = 0; i < 4; ++i) ASSERT_EQ(get("/ep1/a").status, 200);
  EXPECT_EQ(flaky.request_count(), 2u);
  EXPECT_EQ(worker_.request_count(), 2u);

  flaky.set_health_status(500);
  ASSERT_TRUE(flaky.wait_for_probe_status(500, 1, kWait));
  ASSERT_TRUE(proxy_.wait_for_worker_state(flaky.authority(), "unhealthy", kWait))
      << "never marked unhealthy";
  // The change came with the second failed probe, not the first (the next
  // probe is 150 ms away, so the count cannot have moved on much).
  EXPECT_GE(trailing(flaky.probe_statuses(), 500), 2u);
  EXPECT_EQ(state_of(flaky), "unhealthy");
  auto changes = proxy_.worker_state_changes(flaky.authority());
  ASSERT_FALSE(changes.empty());
  EXPECT_EQ(json_str(changes.back(), "endpoint"), "ep1");
  EXPECT_EQ(json_str(changes.back(), "from"), "ready");
  EXPECT_EQ(json_str(changes.back(), "to"), "unhealthy");
  EXPECT_FALSE(json_str(changes.back(), "probe").empty());

  flaky.clear();
  worker_.clear();
  for (int i = 0; i < 4; ++i) ASSERT_EQ(get("/ep1/b").status, 200);
  EXPECT_EQ(worker_.request_count(), 4u);
  EXPECT_EQ(flaky.heads_received(), 0u) << "an unhealthy worker got traffic";

  flaky.set_health_status(200);
  ASSERT_TRUE(proxy_.wait_for_worker_state(flaky.authority(), "ready", kWait, 2))
      << "never ready again";
  EXPECT_GE(trailing(flaky.probe_statuses(), 200), 2u) << "ready again after one good probe";
  EXPECT_EQ(state_of(flaky), "ready");
  for (int i = 0; i < 4; ++i) ASSERT_EQ(get("/ep1/c").status, 200);
  EXPECT_EQ(flaky.request_count(), 2u) << "the recovered worker gets its share again";
}

// A worker that stops answering its probes (its port refuses connections)
// is marked unhealthy; once it listens again it is ready again.
TEST_F(HealthTest, WorkerThatGoesAwayAndComesBack) {
  FakeWorker flaky;
  EndpointSpec spec{.workers = {worker_.url(), flaky.url()}, .health_interval = "100ms"};
  spec.health_timeout = "300ms";
  add_default_endpoint(spec);
  add_default_key();
  add_admin_key();
  start();
  flaky.stop();
  ASSERT_TRUE(proxy_.wait_for_worker_state(flaky.authority(), "unhealthy", kWait));
  EXPECT_EQ(state_of(flaky), "unhealthy");
  for (int i = 0; i < 4; ++i) EXPECT_EQ(get("/ep1/x").status, 200);
  EXPECT_EQ(worker_.request_count(), 4u);

  ASSERT_TRUE(flaky.restart());
  ASSERT_TRUE(proxy_.wait_for_worker_state(flaky.authority(), "ready", kWait, 2));
  EXPECT_EQ(state_of(flaky), "ready");
  for (int i = 0; i < 4; ++i) EXPECT_EQ(get("/ep1/y").status, 200);
  EXPECT_EQ(flaky.request_count(), 2u);
}

// A ready worker that answers 204 again (say, reloading its model) is
// initializing: no traffic, but no failure either; a 200 makes it ready.
TEST_F(HealthTest, ReadyWorkerAnswering204IsInitializingAgain) {
  FakeWorker reloading;
  EndpointSpec spec{.workers = {worker_.url(), reloading.url()}, .health_interval = "100ms"};
  spec.unhealthy_after = 1;
  add_default_endpoint(spec);
  add_default_key();
  add_admin_key();
  start();
  reloading.set_health_status(204);
  ASSERT_TRUE(proxy_.wait_for_worker_state(reloading.authority(), "initializing", kWait));
  EXPECT_EQ(state_of(reloading), "initializing");
  const auto probes = reloading.health_probes();
  ASSERT_TRUE(reloading.wait_for_health_probes(probes + 2, kWait));
  EXPECT_EQ(state_of(reloading), "initializing") << "a 204 is not a failed probe";
  for (int i = 0; i < 4; ++i) EXPECT_EQ(get("/ep1/x").status, 200);
  EXPECT_EQ(reloading.heads_received(), 0u);
  EXPECT_EQ(worker_.request_count(), 4u);

  reloading.set_health_status(200);
  ASSERT_TRUE(proxy_.wait_for_worker_state(reloading.authority(), "ready", kWait, 2));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(get("/ep1/y").status, 200);
  EXPECT_EQ(reloading.request_count(), 2u);
}

// Probes go to health.path, each on a fresh connection.
TEST_F(HealthTest, ProbesUseTheHealthPathAndFreshConnections) {
  worker_.set_health_path("/status");
  add_default_endpoint({.health_path = "/status", .health_interval = "100ms"});
  add_default_key();
  start();
  ASSERT_TRUE(worker_.wait_for_health_probes(3, kWait));
  EXPECT_EQ(worker_.heads_received(), 0u) << "something other than /status was asked";
  const auto probes = worker_.health_probes();
  const auto accepted = static_cast<std::size_t>(worker_.connections_accepted());
  EXPECT_GE(accepted, probes);
  EXPECT_LE(accepted, probes + 1) << "probes share connections";
}

// Cold start: a request that arrives while the only worker is still
// initializing (probe 204) waits in the queue and is served as soon as the
// worker turns ready.
TEST_F(HealthTest, ColdStartRequestWaitsUntilTheWorkerIsReady) {
  worker_.set_health_status(204);
  add_default_endpoint({.queue_timeout = "3s", .health_interval = "100ms"});
  add_default_key();
  add_admin_key();
  start();
  EXPECT_EQ(state_of(worker_), "initializing");

  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/cold", auth_headers())));
  ASSERT_TRUE(wait_for_endpoint(
      proxy_, admin_token_, "ep1", [](const auto& ep) { return json_int(ep, "queue_length") == 1; },
      kWait))
      << "the request is not queued";
  // Several more 204 probes: still waiting, nothing reached the worker.
  const auto probes = worker_.health_probes();
  ASSERT_TRUE(worker_.wait_for_health_probes(probes + 2, kWait));
  EXPECT_EQ(worker_.heads_received(), 0u);

  const auto switched = Clock::now();
  worker_.set_health_status(200);
  c.set_timeout(kWait);
  auto r = c.read_response();
  ASSERT_TRUE(r) << "no answer once the worker is ready";
  EXPECT_EQ(r->status, 200) << r->raw;
  EXPECT_LT(Clock::now() - switched, 2s);
  auto log = worker_.requests();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].target, "/cold");
  EXPECT_GE(log[0].received_at, switched);
  EXPECT_TRUE(proxy_.wait_for_worker_state(worker_.authority(), "ready", kWait));
  EXPECT_EQ(state_of(worker_), "ready");
}

// Passive health (SPEC §4): failed fresh connects count as failed probes.
// Probes are far apart here, so only the proxy's own connects can see that
// the worker went away; after unhealthy_after of them it gets no more
// traffic, and every request meanwhile succeeded by a retry.
TEST_F(HealthTest, FailedConnectsMarkAWorkerUnhealthy) {
  FakeWorker dead;
  EndpointSpec spec{.workers = {dead.url(), worker_.url()}, .health_interval = "10s", .retries = 1};
  spec.unhealthy_after = 2;
  add_default_endpoint(spec);
  add_default_key();
  add_admin_key();
  start();
  ASSERT_EQ(state_of(dead), "ready");
  dead.stop();

  for (int i = 0; i < 6; ++i) {
    auto r = get("/ep1/x");
    EXPECT_EQ(r.status, 200) << r.raw;
  }
  ASSERT_TRUE(proxy_.wait_for_worker_state(dead.authority(), "unhealthy", kWait));
  auto changes = proxy_.worker_state_changes(dead.authority());
  ASSERT_FALSE(changes.empty());
  EXPECT_EQ(json_str(changes.back(), "from"), "ready");
  EXPECT_EQ(json_str(changes.back(), "probe"), "connect failed");
  EXPECT_EQ(dead.health_probes(), 1u) << "only the start-up probe: the change was passive";
  EXPECT_EQ(state_of(dead), "unhealthy");
  EXPECT_EQ(log_count("worker connect failed", dead, 2), 2u) << "unhealthy_after is 2";

  // From now on every request goes to the live worker at once.
  for (int i = 0; i < 6; ++i) EXPECT_EQ(get("/ep1/y").status, 200);
  EXPECT_EQ(log_count("worker connect failed", dead), 2u);
  EXPECT_EQ(worker_.request_count(), 12u);
}

}  // namespace
}  // namespace frontdoor::test
