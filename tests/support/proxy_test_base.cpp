#include "support/proxy_test_base.hpp"

#include <boost/json.hpp>
#include <iostream>
#include <thread>

namespace frontdoor::test {

namespace json = boost::json;

::testing::AssertionResult IsFrontdoorError(const HttpResponse& r, int status,
                                            std::string_view code) {
  auto fail = [&](const std::string& what) {
    return ::testing::AssertionFailure() << what << "\n--- response:\n" << r.raw.substr(0, 2000);
  };
  if (r.status != status)
    return fail("status " + std::to_string(r.status) + ", expected " + std::to_string(status));
  auto ct = r.header("Content-Type");
  if (!ct || ct->find("application/json") == std::string::npos)
    return fail("Content-Type is not JSON");
  if (r.header("X-Frontdoor-Error") != std::string(code))
    return fail("X-Frontdoor-Error is not " + std::string(code));

  boost::system::error_code ec;
  auto v = json::parse(r.body, ec);
  if (ec || !v.is_object()) return fail("body is not a JSON object");
  auto* err = v.as_object().if_contains("error");
  if (!err || !err->is_object()) return fail("body has no \"error\" object");
  const auto& e = err->as_object();
  auto str = [&](std::string_view k) -> std::string {
    auto* f = e.if_contains(k);
    return f && f->is_string() ? std::string(f->as_string()) : std::string();
  };
  if (str("code") != code) return fail("error.code is not " + std::string(code));
  if (str("message").empty()) return fail("error.message missing or empty");
  if (str("request_id").empty()) return fail("error.request_id missing or empty");

  auto www = r.header("WWW-Authenticate");
  const std::string realm = R"(Bearer realm="frontdoor")";
  if (code == "missing_api_key") {
    if (www != realm) return fail("WWW-Authenticate is not exactly " + realm);
  } else if (code == "invalid_api_key" || code == "api_key_disabled" || code == "api_key_expired" ||
             code == "insufficient_scope") {
    std::string want =
        code == "insufficient_scope" ? R"(error="insufficient_scope")" : R"(error="invalid_token")";
    if (!www || www->rfind(realm, 0) != 0 || www->find(want) == std::string::npos)
      return fail("WWW-Authenticate lacks " + realm + " ... " + want);
  } else if (www) {
    return fail("unexpected WWW-Authenticate");
  }
  return ::testing::AssertionSuccess();
}

std::optional<json::object> endpoint_status(const ProxyHarness& proxy, const std::string& token,
                                            std::string_view id) {
  auto r = proxy.admin_request("GET", "/v1/endpoints", {{"Host", "admin"}, bearer(token)},
                               std::chrono::milliseconds(2000));
  if (r.status != 200) return std::nullopt;
  boost::system::error_code ec;
  auto v = json::parse(r.body, ec);
  if (ec || !v.is_object()) return std::nullopt;
  auto* eps = v.as_object().if_contains("endpoints");
  if (!eps || !eps->is_array()) return std::nullopt;
  for (const auto& e : eps->as_array())
    if (e.is_object() && json_str(e.as_object(), "id") == id) return e.as_object();
  return std::nullopt;
}

std::optional<json::object> worker_status(const json::object& endpoint, std::string_view address) {
  auto* ws = endpoint.if_contains("workers");
  if (!ws || !ws->is_array()) return std::nullopt;
  for (const auto& w : ws->as_array())
    if (w.is_object() && json_str(w.as_object(), "address") == address) return w.as_object();
  return std::nullopt;
}

std::string json_str(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

std::int64_t json_int(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (!v) return -1;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<std::int64_t>(v->as_uint64());
  return -1;
}

bool wait_for_endpoint(const ProxyHarness& proxy, const std::string& token, std::string_view id,
                       const std::function<bool(const json::object&)>& pred,
                       std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (auto ep = endpoint_status(proxy, token, id); ep && pred(*ep)) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void ProxyTest::add_default_endpoint(EndpointSpec spec) {
  if (spec.id.empty()) spec.id = "ep1";
  if (spec.workers.empty()) spec.workers = {worker_.url()};
  proxy_.add_endpoint(std::move(spec));
}

void ProxyTest::add_default_key() {
  token_ = proxy_.add_key({.id = key_id_, .endpoints = {{"*", "none"}, {"ep1", "read_write"}}});
}

void ProxyTest::start() {
  ASSERT_TRUE(worker_.ok());
  ASSERT_TRUE(proxy_.start()) << proxy_.error();
  // Not waiting for a health probe here: a worker that is not ready yet makes
  // requests queue (SPEC §4 step 7), and probing is tested on its own.
}

void ProxyTest::TearDown() {
  // A crash, a sanitizer abort or a non-zero exit of the server fails the
  // test, whatever the test itself checked.
  auto child = proxy_.stop_and_check();
  if (!child) {
    ADD_FAILURE() << child.message();
    return;  // the message carries the tail of stderr
  }
  if (!HasFailure()) return;
  std::string err = proxy_.stderr_text();
  if (err.size() > 4000) err = "..." + err.substr(err.size() - 4000);
  std::cerr << "--- frontdoor stderr (" << proxy_.dir() << "):\n" << err << "\n";
}

Headers ProxyTest::auth_headers(Headers extra, std::string host) const {
  Headers h{{"Host", std::move(host)}, bearer(token_)};
  for (auto& e : extra) h.push_back(std::move(e));
  return h;
}

HttpResponse ProxyTest::get(std::string_view target, Headers extra) const {
  return proxy_.request("GET", target, auth_headers(std::move(extra)));
}

void ProxyTest::expect_worker_saw_nothing_but_barrier() {
  auto r = get("/ep1/__barrier");
  ASSERT_EQ(r.status, 200) << r.raw;
  ASSERT_TRUE(worker_.wait_for_requests(1, kWait));
  auto log = worker_.requests();
  EXPECT_EQ(worker_.heads_received(), 1u);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].target, "/__barrier");
}

}  // namespace frontdoor::test
