// SPEC §4 steps 2 and 4: authentication and authorization. Every rejected
// request must be answered by frontdoor itself and reach no worker.
#include <boost/json.hpp>

#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

class AuthTest : public ProxyTest {
 protected:
  void SetUp() override {
    add_default_endpoint();
    add_default_key();
    read_token_ = proxy_.add_key({.id = "key_ro", .endpoints = {{"*", "none"}, {"ep1", "read"}}});
    none_token_ = proxy_.add_key({.id = "key_none", .endpoints = {{"*", "none"}, {"ep1", "none"}}});
    other_token_ =
        proxy_.add_key({.id = "key_other", .endpoints = {{"*", "none"}, {"ep2", "read_write"}}});
    all_read_token_ = proxy_.add_key({.id = "key_all_read", .endpoints = {{"*", "read"}}});
    disabled_token_ = proxy_.add_key({.id = "key_disabled",
                                      .endpoints = {{"*", "none"}, {"ep1", "read_write"}},
                                      .enabled = false});
    expired_token_ = proxy_.add_key({.id = "key_expired",
                                     .endpoints = {{"*", "none"}, {"ep1", "read_write"}},
                                     .expires_at = "2020-01-01T00:00:00Z"});
    future_token_ = proxy_.add_key({.id = "key_future",
                                    .endpoints = {{"*", "none"}, {"ep1", "read_write"}},
                                    .expires_at = "2099-01-01T00:00:00Z"});
    legacy_rw_token_ = proxy_.add_key(
        {.id = "key_legacy_rw", .token = "legacy-secret-0001-rw", .legacy_access = "read_write"});
    legacy_ro_token_ = proxy_.add_key(
        {.id = "key_legacy_ro", .token = "legacy-secret-0002-ro", .legacy_access = "read"});
    start();
  }

  HttpResponse send(std::string_view method, std::string_view target, Headers headers,
                    std::string_view body = {}) {
    if (!headers.empty() && headers.front().first != "Host")
      headers.insert(headers.begin(), {"Host", "client.test"});
    return proxy_.request(method, target, headers, body);
  }

  std::string read_token_, none_token_, other_token_, all_read_token_, disabled_token_,
      expired_token_, future_token_, legacy_rw_token_, legacy_ro_token_;
};

TEST_F(AuthTest, ValidKeyIsProxied) {
  auto r = send("POST", "/ep1/generate", {bearer(token_)}, R"({"prompt":"x"})");
  EXPECT_EQ(r.status, 200) << r.raw;
  ASSERT_TRUE(worker_.wait_for_requests(1, kWait));
  EXPECT_EQ(worker_.requests()[0].target, "/generate");
}

TEST_F(AuthTest, MissingAuthorization) {
  auto r = send("POST", "/ep1/generate", {{"Host", "client.test"}}, "{}");
  EXPECT_TRUE(IsFrontdoorError(r, 401, "missing_api_key"));
  expect_worker_saw_nothing_but_barrier();
}

TEST_F(AuthTest, TwoAuthorizationHeaders) {
  auto r = send("GET", "/ep1/x", {bearer(token_), bearer(token_)});
  EXPECT_TRUE(IsFrontdoorError(r, 401, "invalid_api_key"));
  expect_worker_saw_nothing_but_barrier();
}

TEST_F(AuthTest, EmptyAuthorization) {
  auto r = send("GET", "/ep1/x", {{"Authorization", ""}});
  EXPECT_TRUE(IsFrontdoorError(r, 401, "invalid_api_key"));
  auto r2 = send("GET", "/ep1/x", {{"Authorization", "Bearer"}});
  EXPECT_TRUE(IsFrontdoorError(r2, 401, "invalid_api_key"));
  auto r3 = send("GET", "/ep1/x", {{"Authorization", "Bearer "}});
  EXPECT_TRUE(IsFrontdoorError(r3, 401, "invalid_api_key"));
  expect_worker_saw_nothing_but_barrier();
}

TEST_F(AuthTest, BasicScheme) {
  auto r = send("GET", "/ep1/x", {{"Authorization", "Basic dXNlcjpwYXNz"}});
  EXPECT_TRUE(IsFrontdoorError(r, 401, "invalid_api_key"));
  // The token itself under another scheme is not accepted either.
  auto r2 = send("GET", "/ep1/x", {{"Authorization", "Token " + token_}});
  EXPECT_TRUE(IsFrontdoorError(r2, 401, "invalid_api_key"));
  expect_worker_saw_nothing_but_barrier();
}

TEST_F(AuthTest, TokenWithSpaces) {
  auto r = send("GET", "/ep1/x", {{"Authorization", "Bearer " + token_ + " extra"}});
  EXPECT_TRUE(IsFrontdoorError(r, 401, "invalid_api_key"));
  auto r2 = send("GET", "/ep1/x",
                 {{"Authorization", "Bearer " + token_.substr(0, 10) + " " + token_.substr(10)}});
  EXPECT_TRUE(IsFrontdoorError(r2, 401, "invalid_api_key"));
  expect_worker_saw_nothing_but_barrier();
}

TEST_F(AuthTest, BearerSchemeIsCaseInsensitive) {
  EXPECT_EQ(send("GET", "/ep1/a", {{"Authorization", "bearer " + token_}}).status, 200);
  EXPECT_EQ(send("GET", "/ep1/b", {{"Authorization", "BEARER " + token_}}).status, 200);
  EXPECT_TRUE(worker_.wait_for_requests(2, kWait));
}

TEST_F(AuthTest, RpaTokenWithBadChecksum) {
  auto r = send("GET", "/ep1/x", {bearer(with_bad_checksum(token_))});
  EXPECT_TRUE(IsFrontdoorError(r, 401, "invalid_api_key"));
  expect_worker_saw_nothing_but_barrier();
}

TEST_F(AuthTest, RpaTokenWithBadLength) {
  auto r = send("GET", "/ep1/x", {bearer(token_.substr(0, 43))});
  EXPECT_TRUE(IsFrontdoorError(r, 401, "invalid_api_key"));
  auto r2 = send("GET", "/ep1/x", {bearer(token_ + "0")});
  EXPECT_TRUE(IsFrontdoorError(r2, 401, "invalid_api_key"));
  expect_worker_saw_nothing_but_barrier();
}

TEST_F(AuthTest, UnknownTokens) {
  auto r = send("GET", "/ep1/x", {bearer(fresh_rpa_token())});  // well-formed, not in the store
  EXPECT_TRUE(IsFrontdoorError(r, 401, "invalid_api_key"));
  auto r2 = send("GET", "/ep1/x", {bearer("legacy-secret-9999-unknown")});
  EXPECT_TRUE(IsFrontdoorError(r2, 401, "invalid_api_key"));
  expect_worker_saw_nothing_but_barrier();
}

TEST_F(AuthTest, DisabledKey) {
  auto r = send("GET", "/ep1/x", {bearer(disabled_token_)});
  EXPECT_TRUE(IsFrontdoorError(r, 401, "api_key_disabled"));
  expect_worker_saw_nothing_but_barrier();
}

TEST_F(AuthTest, ExpiredKey) {
  auto r = send("GET", "/ep1/x", {bearer(expired_token_)});
  EXPECT_TRUE(IsFrontdoorError(r, 401, "api_key_expired"));
  expect_worker_saw_nothing_but_barrier();
}

TEST_F(AuthTest, KeyExpiringInTheFutureWorks) {
  EXPECT_EQ(send("GET", "/ep1/x", {bearer(future_token_)}).status, 200);
}

TEST_F(AuthTest, NoAccessToEndpoint) {
  auto r = send("GET", "/ep1/x", {bearer(none_token_)});
  EXPECT_TRUE(IsFrontdoorError(r, 403, "insufficient_scope"));
  auto r2 = send("GET", "/ep1/x", {bearer(other_token_)});  // a key for another endpoint only
  EXPECT_TRUE(IsFrontdoorError(r2, 403, "insufficient_scope"));
  expect_worker_saw_nothing_but_barrier();
}

TEST_F(AuthTest, ReadKeyMayOnlyRead) {
  EXPECT_EQ(send("GET", "/ep1/a", {bearer(read_token_)}).status, 200);
  EXPECT_EQ(send("HEAD", "/ep1/b", {bearer(read_token_)}).status, 200);
  EXPECT_EQ(send("OPTIONS", "/ep1/c", {bearer(read_token_)}).status, 200);
  ASSERT_TRUE(worker_.wait_for_requests(3, kWait));
  for (const char* m : {"POST", "PUT", "DELETE", "PATCH"}) {
    auto r = send(m, "/ep1/generate", {bearer(read_token_)}, "{}");
    EXPECT_TRUE(IsFrontdoorError(r, 403, "insufficient_scope")) << m;
  }
  EXPECT_EQ(worker_.request_count(), 3u);
  EXPECT_EQ(worker_.heads_received(), 3u);
}

TEST_F(AuthTest, UnknownEndpointWithWildcardReadIs404) {
  auto r = send("GET", "/nosuch/x", {bearer(all_read_token_)});
  EXPECT_TRUE(IsFrontdoorError(r, 404, "endpoint_not_found"));
  // "whatever the method": a POST the key could not make is still 404.
  auto r2 = send("POST", "/nosuch/x", {bearer(all_read_token_)}, "{}");
  EXPECT_TRUE(IsFrontdoorError(r2, 404, "endpoint_not_found"));
  // The same key reaches ep1 through "*": read.
  EXPECT_EQ(send("GET", "/ep1/x", {bearer(all_read_token_)}).status, 200);
}

TEST_F(AuthTest, UnknownEndpointWithWildcardNoneIs403) {
  auto r = send("GET", "/nosuch/x", {bearer(token_)});
  EXPECT_TRUE(IsFrontdoorError(r, 403, "insufficient_scope"));
  auto r2 = send("POST", "/nosuch/x", {bearer(token_)}, "{}");
  EXPECT_TRUE(IsFrontdoorError(r2, 403, "insufficient_scope"));
  expect_worker_saw_nothing_but_barrier();
}

TEST_F(AuthTest, LegacyKeys) {
  EXPECT_EQ(send("POST", "/ep1/generate", {bearer(legacy_rw_token_)}, "{}").status, 200);
  EXPECT_EQ(send("GET", "/ep1/ping2", {bearer(legacy_ro_token_)}).status, 200);
  auto r = send("POST", "/ep1/generate", {bearer(legacy_ro_token_)}, "{}");
  EXPECT_TRUE(IsFrontdoorError(r, 403, "insufficient_scope"));
  ASSERT_TRUE(worker_.wait_for_requests(2, kWait));
  EXPECT_EQ(worker_.request_count(), 2u);
}

TEST_F(AuthTest, RejectionWithBodyKeepsOrClosesConnectionCleanly) {
  // A 401 with an unread body: either the body is drained and the connection
  // stays usable, or the connection is closed; never is the body parsed as a
  // second request.
  TcpClient c(proxy_.proxy_port());
  std::string smuggled =
      build_request("GET", "/ep1/smuggled", {{"Host", "client.test"}, bearer(token_)});
  ASSERT_TRUE(c.send(build_request("POST", "/ep1/generate", {{"Host", "client.test"}}, smuggled)));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_TRUE(IsFrontdoorError(*r, 401, "missing_api_key"));
  c.read_until_closed(1500ms);
  expect_worker_saw_nothing_but_barrier();
}

TEST_F(AuthTest, AccessLogNamesTheKeyNeverTheToken) {
  EXPECT_EQ(send("GET", "/ep1/x", {bearer(token_)}).status, 200);
  EXPECT_EQ(send("GET", "/ep1/x", {bearer(disabled_token_)}).status, 401);
  ASSERT_TRUE(proxy_.wait_for_access_log(2, kWait)) << proxy_.stdout_text();
  // Lines are written when a request finishes, possibly on another thread:
  // find them by status, not by order.
  const boost::json::object* ok = nullptr;
  const boost::json::object* denied = nullptr;
  auto log = proxy_.access_log();
  for (const auto& line : log) {
    auto* status = line.if_contains("status");
    if (status && *status == 200) ok = &line;
    if (status && *status == 401) denied = &line;
  }
  ASSERT_TRUE(ok && denied) << proxy_.stdout_text();
  EXPECT_EQ(ok->at("key_id"), "key_rw");
  EXPECT_EQ(ok->at("method"), "GET");
  for (const char* field :
       {"ts", "request_id", "key_id", "endpoint", "worker", "method", "path", "status", "error",
        "bytes_in", "bytes_out", "duration_ms", "upstream_ms"})
    EXPECT_TRUE(ok->contains(field))
        << "access log line lacks " << field << ": " << proxy_.stdout_text();
  EXPECT_EQ(denied->at("error"), "api_key_disabled");
  EXPECT_EQ(proxy_.stdout_text().find(token_), std::string::npos);
  EXPECT_EQ(proxy_.stdout_text().find(disabled_token_), std::string::npos);
  EXPECT_EQ(proxy_.stderr_text().find(token_), std::string::npos);
}

}  // namespace
}  // namespace frontdoor::test
