#pragma once
// Shared pieces of the integration tests: a fixture with one fake worker and
// one proxy, and an assertion for frontdoor's own error replies (SPEC §4,
// "Error responses").
#include <gtest/gtest.h>

#include <boost/json/object.hpp>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "support/fake_worker.hpp"
#include "support/http_client.hpp"
#include "support/proxy_harness.hpp"
#include "support/tokens.hpp"

namespace frontdoor::test {

// Checks status, Content-Type JSON, X-Frontdoor-Error, the JSON body
// {"error":{"code","message","request_id"}} and WWW-Authenticate as the
// SPEC table gives it for `code` (absent for codes without one).
::testing::AssertionResult IsFrontdoorError(const HttpResponse& r, int status,
                                            std::string_view code);

// Bounded waits used across the integration tests: generous enough for a
// loaded 2-core CI machine, short enough that a hang fails fast.
inline constexpr std::chrono::milliseconds kWait{5000};

// --- Admin GET /v1/endpoints (SPEC §5), read with a key that has management
// read or read_write.

// The object of endpoint `id` in GET /v1/endpoints; nullopt when the answer
// is not a 200 JSON document holding it.
std::optional<boost::json::object> endpoint_status(const ProxyHarness& proxy,
                                                   const std::string& token, std::string_view id);
// The entry of `workers` whose "address" is `address` ("127.0.0.1:PORT").
std::optional<boost::json::object> worker_status(const boost::json::object& endpoint,
                                                 std::string_view address);
// A string / integer field of a JSON object ("" / -1 when absent or of another type).
std::string json_str(const boost::json::object& o, std::string_view key);
std::int64_t json_int(const boost::json::object& o, std::string_view key);
// Polls GET /v1/endpoints until `pred(endpoint object)` holds. Worker states
// and queue lengths are states to observe, not events we can be told about,
// so this asks again after a short pause (bounded by `timeout`).
bool wait_for_endpoint(const ProxyHarness& proxy, const std::string& token, std::string_view id,
                       const std::function<bool(const boost::json::object&)>& pred,
                       std::chrono::milliseconds timeout);

class ProxyTest : public ::testing::Test {
 protected:
  // Adds endpoint "ep1" on `worker` and a read_write key for it (token_),
  // unless the test already added endpoints/keys before calling start().
  void add_default_endpoint(EndpointSpec spec = {});
  void add_default_key();
  // Checks the server did not die during the test and exits 0 when stopped
  // (ProxyHarness::stop_and_check); on failure, shows the tail of its stderr.
  void TearDown() override;
  // Starts the proxy (listening, /readyz 200).
  void start();

  // Host + Bearer token_ headers, plus extra ones.
  Headers auth_headers(Headers extra = {}, std::string host = "client.test") const;
  HttpResponse get(std::string_view target, Headers extra = {}) const;

  // Sends a valid request to /__barrier and checks that it is the only
  // request the worker has received: every request sent before was
  // rejected without reaching the worker (its head included).
  void expect_worker_saw_nothing_but_barrier();

  FakeWorker worker_;
  ProxyHarness proxy_;
  std::string token_;
  std::string key_id_ = "key_rw";
};

}  // namespace frontdoor::test
