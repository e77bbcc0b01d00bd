// SPEC §5 GET /v1/endpoints on the admin listener: authenticated with the
// same Bearer keys by management level; lists every endpoint with its
// balancer, limits, in-flight count, queue length and workers with their
// state and in-flight count.
#include <boost/json.hpp>

#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

class AdminEndpointsTest : public ProxyTest {
 protected:
  void add_keys() {
    add_default_key();  // endpoint access read_write, management none
    read_token_ = proxy_.add_key({.id = "key_mread", .management = "read"});
    rw_token_ = proxy_.add_key({.id = "key_mrw", .management = "read_write"});
  }

  HttpResponse endpoints(const Headers& extra) const {
    Headers h{{"Host", "admin"}};
    for (const auto& e : extra) h.push_back(e);
    return proxy_.admin_request("GET", "/v1/endpoints", h);
  }

  std::string read_token_;
  std::string rw_token_;
};

// The parts of the SPEC §4 error format that the admin API's 401/403 share
// with the proxy's (the request id is checked on its own, below).
::testing::AssertionResult IsAdminError(const HttpResponse& r, int status, std::string_view code) {
  auto fail = [&](const std::string& what) {
    return ::testing::AssertionFailure() << what << "\n--- response:\n" << r.raw.substr(0, 2000);
  };
  if (r.status != status) return fail("status " + std::to_string(r.status));
  auto ct = r.header("Content-Type");
  if (!ct || ct->find("application/json") == std::string::npos) return fail("not JSON");
  if (r.header("X-Frontdoor-Error") != std::string(code)) return fail("X-Frontdoor-Error");
  boost::system::error_code ec;
  auto v = json::parse(r.body, ec);
  if (ec || !v.is_object() || !v.as_object().if_contains("error") ||
      !v.as_object().at("error").is_object())
    return fail("no error object");
  const auto& e = v.as_object().at("error").as_object();
  if (json_str(e, "code") != code) return fail("error.code");
  if (json_str(e, "message").empty()) return fail("error.message");
  auto www = r.header("WWW-Authenticate");
  if (status == 401 || status == 403) {
    if (!www || www->rfind(R"(Bearer realm="frontdoor")", 0) != 0) return fail("WWW-Authenticate");
  }
  return ::testing::AssertionSuccess();
}

TEST_F(AdminEndpointsTest, NoKeyIs401) {
  add_default_endpoint();
  add_keys();
  start();
  EXPECT_TRUE(IsAdminError(endpoints({}), 401, "missing_api_key"));
}

TEST_F(AdminEndpointsTest, InvalidKeyIs401) {
  add_default_endpoint();
  add_keys();
  start();
  EXPECT_TRUE(IsAdminError(endpoints({bearer(fresh_rpa_token())}), 401, "invalid_api_key"));
  EXPECT_TRUE(
      IsAdminError(endpoints({{"Authorization", "Basic dXNlcjpwYXNz"}}), 401, "invalid_api_key"));
}

TEST_F(AdminEndpointsTest, ManagementNoneIs403) {
  add_default_endpoint();
  add_keys();
  start();
  // token_ may use ep1 read_write, but has no management access.
  EXPECT_TRUE(IsAdminError(endpoints({bearer(token_)}), 403, "insufficient_scope"));
}

// SPEC §4: frontdoor's own error replies are {"error":{"code","message",
// "request_id"}}, whichever listener they come from.
//
// DISABLED: server bug -- the admin listener's 401/403 replies
// (src/admin/admin_server.cpp error_response) have no "request_id" in the
// JSON error object (and no X-Request-Id header), unlike the proxy's.
TEST_F(AdminEndpointsTest, AdminErrorsHaveTheFullErrorFormat) {
  add_default_endpoint();
  add_keys();
  start();
  EXPECT_TRUE(IsFrontdoorError(endpoints({}), 401, "missing_api_key"));
  EXPECT_TRUE(IsFrontdoorError(endpoints({bearer(fresh_rpa_token())}), 401, "invalid_api_key"));
  EXPECT_TRUE(IsFrontdoorError(endpoints({bearer(token_)}), 403, "insufficient_scope"));
}

TEST_F(AdminEndpointsTest, ManagementReadOrReadWriteIs200) {
  add_default_endpoint();
  add_keys();
  start();
  for (const auto& token : {read_token_, rw_token_}) {
    auto r = endpoints({bearer(token)});
    ASSERT_EQ(r.status, 200) << r.raw;
    EXPECT_NE(r.header("Content-Type").value_or("").find("application/json"), std::string::npos);
    boost::system::error_code ec;
    auto v = json::parse(r.body, ec);
    ASSERT_FALSE(ec) << r.body;
    ASSERT_TRUE(v.is_object());
    ASSERT_TRUE(v.as_object().if_contains("endpoints"));
    EXPECT_TRUE(v.as_object().at("endpoints").is_array());
  }
}

// Every field, and each worker's state: ready (probe 200), initializing
// (probe 204), unhealthy (probe 500).
TEST_F(AdminEndpointsTest, FieldsAndWorkerStates) {
  FakeWorker starting, sick;
  starting.set_health_status(204);
  sick.set_health_status(500);
  EndpointSpec ep1{.id = "ep1",
                   .workers = {worker_.url(), starting.url(), sick.url()},
                   .balance = "least_outstanding"};
  ep1.max_concurrency = 3;
  ep1.queue_max = 7;
  proxy_.add_endpoint(ep1);
  EndpointSpec ep2{.id = "ep2", .workers = {worker_.url()}, .balance = "power_of_two"};
  proxy_.add_endpoint(ep2);
  add_keys();
  start();

  auto r = endpoints({bearer(read_token_)});
  ASSERT_EQ(r.status, 200) << r.raw;
  auto v = json::parse(r.body);
  const auto& eps = v.as_object().at("endpoints").as_array();
  ASSERT_EQ(eps.size(), 2u) << r.body;

  auto e1 = endpoint_status(proxy_, read_token_, "ep1");
  ASSERT_TRUE(e1) << r.body;
  EXPECT_EQ(json_str(*e1, "balance"), "least_outstanding");
  EXPECT_EQ(json_int(*e1, "max_concurrency"), 3);
  EXPECT_EQ(json_int(*e1, "queue_max"), 7);
  EXPECT_EQ(json_int(*e1, "in_flight"), 0);
  EXPECT_EQ(json_int(*e1, "queue_length"), 0);
  ASSERT_TRUE(e1->at("workers").is_array());
  EXPECT_EQ(e1->at("workers").as_array().size(), 3u);
  struct Want {
    const FakeWorker* w;
    const char* state;
  };
  for (auto [w, state] :
       {Want{&worker_, "ready"}, Want{&starting, "initializing"}, Want{&sick, "unhealthy"}}) {
    auto ws = worker_status(*e1, w->authority());
    ASSERT_TRUE(ws) << w->authority() << " not listed: " << r.body;
    EXPECT_EQ(json_str(*ws, "url"), w->url());
    EXPECT_EQ(json_str(*ws, "state"), state) << w->authority();
    EXPECT_EQ(json_int(*ws, "in_flight"), 0);
  }
  // Only the ready worker gets the request.
  EXPECT_EQ(get("/ep1/x").status, 200);
  EXPECT_EQ(starting.heads_received(), 0u);
  EXPECT_EQ(sick.heads_received(), 0u);

  auto e2 = endpoint_status(proxy_, read_token_, "ep2");
  ASSERT_TRUE(e2);
  EXPECT_EQ(json_str(*e2, "balance"), "power_of_two");
  EXPECT_EQ(json_int(*e2, "max_concurrency"), 0);
  EXPECT_EQ(json_int(*e2, "queue_max"), 1024);
  auto ws = worker_status(*e2, worker_.authority());
  ASSERT_TRUE(ws);
  EXPECT_EQ(json_str(*ws, "state"), "ready");
}

// in_flight of the endpoint and of its worker while a slow request runs,
// back to 0 once it was answered.
TEST_F(AdminEndpointsTest, InFlightWhileASlowRequestRuns) {
  Behavior slow = Behavior::fixed(200, "slow");
  slow.first_byte_delay = 600ms;
  worker_.on("/slow", slow);
  add_default_endpoint({.health_interval = "10s"});
  add_keys();
  start();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/slow", auth_headers())));
  ASSERT_TRUE(worker_.wait_for_in_flight(1, kWait));
  auto ep = endpoint_status(proxy_, read_token_, "ep1");
  ASSERT_TRUE(ep);
  EXPECT_EQ(json_int(*ep, "in_flight"), 1);
  auto ws = worker_status(*ep, worker_.authority());
  ASSERT_TRUE(ws);
  EXPECT_EQ(json_int(*ws, "in_flight"), 1);

  c.set_timeout(kWait);
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "slow");
  EXPECT_TRUE(wait_for_endpoint(
      proxy_, read_token_, "ep1",
      [](const json::object& e) { return json_int(e, "in_flight") == 0; }, kWait));
}

// queue_length counts the requests waiting for a slot.
TEST_F(AdminEndpointsTest, QueueLengthWhileRequestsWait) {
  Behavior slow = Behavior::fixed(200, "slow");
  slow.first_byte_delay = 500ms;
  worker_.on("/slow", slow);
  EndpointSpec spec{.health_interval = "10s"};
  spec.max_concurrency = 1;
  add_default_endpoint(spec);
  add_keys();
  start();
  std::vector<std::unique_ptr<TcpClient>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<TcpClient>(proxy_.proxy_port()));
    ASSERT_TRUE(clients.back()->send(build_request("GET", "/ep1/slow", auth_headers())));
    if (i == 0) {
      ASSERT_TRUE(worker_.wait_for_in_flight(1, kWait));
    }
  }
  ASSERT_TRUE(wait_for_endpoint(
      proxy_, read_token_, "ep1",
      [](const json::object& e) { return json_int(e, "queue_length") == 2; }, kWait))
      << "two requests should be waiting";
  auto ep = endpoint_status(proxy_, read_token_, "ep1");
  ASSERT_TRUE(ep);
  EXPECT_EQ(json_int(*ep, "in_flight"), 1);
  EXPECT_EQ(json_int(*ep, "max_concurrency"), 1);
  for (auto& c : clients) {
    c->set_timeout(kWait);
    auto r = c->read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  EXPECT_TRUE(wait_for_endpoint(
      proxy_, read_token_, "ep1",
      [](const json::object& e) {
        return json_int(e, "queue_length") == 0 && json_int(e, "in_flight") == 0;
      },
      kWait));
}

}  // namespace
}  // namespace frontdoor::test
