#pragma once
// Shared pieces of the integration tests: a fixture with one fake worker and
// one proxy, and an assertion for frontdoor's own error replies (SPEC §4,
// "Error responses").
#include <gtest/gtest.h>

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

class ProxyTest : public ::testing::Test {
 protected:
  // Adds endpoint "ep1" on `worker` and a read_write key for it (token_),
  // unless the test already added endpoints/keys before calling start().
  void add_default_endpoint(EndpointSpec spec = {});
  void add_default_key();
  // On failure, shows the tail of the proxy's stderr (its own log).
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
