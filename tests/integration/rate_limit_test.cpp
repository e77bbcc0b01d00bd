// SPEC §4 step 5 and §3 rate_limit: per key, a token bucket (rps, burst) and
// at most max_concurrent requests in flight (a stream counts until it ends);
// over the limit 429 rate_limited with Retry-After (whole seconds); answers
// to keys with a rate_limit carry RateLimit-Limit / -Remaining / -Reset.
// Also SPEC §4 step 2: expiry holds at request time, with no reload.
#include <signal.h>

#include <boost/json.hpp>
#include <ctime>
#include <thread>

#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

// The header as a whole non-negative number; -1 when absent or not one.
long long header_number(const HttpResponse& r, std::string_view name) {
  auto v = r.header(name);
  if (!v || v->empty() || v->find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(*v);
}

::testing::AssertionResult HasRateLimitHeaders(const HttpResponse& r, long long limit,
                                               long long remaining) {
  auto fail = [&](const std::string& what) {
    return ::testing::AssertionFailure() << what << "\n--- response:\n" << r.raw.substr(0, 1500);
  };
  if (header_number(r, "RateLimit-Limit") != limit)
    return fail("RateLimit-Limit is not " + std::to_string(limit));
  if (remaining >= 0 && header_number(r, "RateLimit-Remaining") != remaining)
    return fail("RateLimit-Remaining is not " + std::to_string(remaining));
  if (header_number(r, "RateLimit-Remaining") < 0) return fail("no RateLimit-Remaining");
  if (header_number(r, "RateLimit-Reset") < 0) return fail("no RateLimit-Reset");
  for (auto name : {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"})
    if (r.header_count(name) != 1) return fail(std::string(name) + " not exactly once");
  return ::testing::AssertionSuccess();
}

bool has_no_rate_limit_headers(const HttpResponse& r) {
  return !r.has_header("RateLimit-Limit") && !r.has_header("RateLimit-Remaining") &&
         !r.has_header("RateLimit-Reset");
}

std::string rfc3339(std::time_t t) {
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

class RateLimitTest : public ProxyTest {
 protected:
  void SetUp() override {
    add_default_endpoint();
    add_default_key();  // key_rw: no rate_limit
  }

  std::string add_limited_key(const std::string& id, const std::string& rate_limit) {
    return proxy_.add_key({.id = id,
                           .endpoints = {{"*", "none"}, {"ep1", "read_write"}},
                           .rate_limit = rate_limit});
  }

  HttpResponse get_with(const std::string& token, std::string_view target) const {
    return proxy_.request("GET", target, {{"Host", "client.test"}, bearer(token)});
  }

  // The slot of a finished request is given back just after its last byte
  // was written: a request sent at once may still find it taken. Asks again
  // until `status` or the deadline.
  HttpResponse retry_until(const std::string& token, std::string_view target, int status,
                           std::chrono::milliseconds timeout = 1000ms) const {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      auto r = get_with(token, target);
      if (r.status == status || Clock::now() >= deadline) return r;
      std::this_thread::sleep_for(5ms);
    }
  }
};

TEST_F(RateLimitTest, BurstThenRateLimitedWithHeaders) {
  const std::string rl = add_limited_key("key_rl", "{ rps: 0.5, burst: 3, max_concurrent: 0 }");
  start();
  for (int i = 0; i < 3; ++i) {
    auto r = get_with(rl, "/ep1/ok-" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.raw;
    EXPECT_TRUE(HasRateLimitHeaders(r, 3, 2 - i));
    EXPECT_GE(header_number(r, "RateLimit-Reset"), 1);
  }
  auto r = get_with(rl, "/ep1/over");
  EXPECT_TRUE(IsFrontdoorError(r, 429, "rate_limited"));
  const auto retry_after = header_number(r, "Retry-After");
  EXPECT_GE(retry_after, 1) << "Retry-After in whole seconds: " << r.raw;
  EXPECT_LE(retry_after, 2) << "one token comes back in 1/rps = 2 s";
  EXPECT_TRUE(HasRateLimitHeaders(r, 3, 0));
  EXPECT_GE(header_number(r, "RateLimit-Reset"), 1);

  // Other keys have buckets of their own; the refused request reached no worker.
  ASSERT_EQ(get("/ep1/barrier").status, 200);
  ASSERT_TRUE(worker_.wait_for_requests(4, kWait));
  auto log = worker_.requests();
  ASSERT_EQ(log.size(), 4u);
  for (const auto& req : log) EXPECT_NE(req.target, "/over");
}

TEST_F(RateLimitTest, BucketRefillsAtRps) {
  const std::string rl = add_limited_key("key_rl", "{ rps: 2, burst: 1, max_concurrent: 0 }");
  start();
  auto first = get_with(rl, "/ep1/1");
  const auto first_done = Clock::now();
  ASSERT_EQ(first.status, 200) << first.raw;
  auto refused = get_with(rl, "/ep1/2");
  ASSERT_TRUE(IsFrontdoorError(refused, 429, "rate_limited"));
  EXPECT_EQ(header_number(refused, "Retry-After"), 1) << "0.5 s rounds up to 1 s";

  // A token comes back every 1/rps = 500 ms. The token was taken before
  // first_done, so 550 ms after it there is one again.
  std::this_thread::sleep_until(first_done + 550ms);
  auto refilled = get_with(rl, "/ep1/3");
  EXPECT_EQ(refilled.status, 200) << refilled.raw;
  EXPECT_TRUE(HasRateLimitHeaders(refilled, 1, 0));
  // ...and only one.
  EXPECT_TRUE(IsFrontdoorError(get_with(rl, "/ep1/4"), 429, "rate_limited"));
}

TEST_F(RateLimitTest, MaxConcurrentCountsRequestsInFlight) {
  const std::string rl =
      add_limited_key("key_rl", "{ rps: 1000, burst: 1000, max_concurrent: 1 }");
  Behavior slow = Behavior::fixed(200, "slow");
  slow.first_byte_delay = 500ms;
  worker_.on("/slow", slow);
  worker_.on("/stream", Behavior::sse(5, 100ms));
  start();

  // A slow request in flight: a second one is refused.
  TcpClient a(proxy_.proxy_port());
  ASSERT_TRUE(a.send(build_request("GET", "/ep1/slow", {{"Host", "c"}, bearer(rl)})));
  ASSERT_TRUE(worker_.wait_for_in_flight(1, kWait));
  auto b = get_with(rl, "/ep1/second");
  EXPECT_TRUE(IsFrontdoorError(b, 429, "rate_limited"));
  EXPECT_GE(header_number(b, "Retry-After"), 1);
  EXPECT_EQ(get("/ep1/other-key").status, 200) << "the limit is per key";
  auto a_resp = a.read_response();
  ASSERT_TRUE(a_resp);
  EXPECT_EQ(a_resp->status, 200);
  EXPECT_EQ(a_resp->body, "slow");
  // Once it has ended, a new one passes.
  auto c = retry_until(rl, "/ep1/third", 200);
  EXPECT_EQ(c.status, 200) << c.raw;

  // A stream counts until its last byte.
  TcpClient s(proxy_.proxy_port());
  ASSERT_TRUE(s.send(build_request("GET", "/ep1/stream", {{"Host", "c"}, bearer(rl)})));
  auto head = s.read_head();
  ASSERT_TRUE(head && head->status == 200);
  EXPECT_TRUE(IsFrontdoorError(get_with(rl, "/ep1/during-stream"), 429, "rate_limited"));
  for (;;) {
    auto ch = s.read_chunk();
    ASSERT_TRUE(ch) << "stream broke";
    if (ch->data.empty()) break;
  }
  auto after = retry_until(rl, "/ep1/after-stream", 200);
  EXPECT_EQ(after.status, 200) << after.raw;
}

TEST_F(RateLimitTest, AStreamTheClientAbandonsGivesItsSlotBack) {
  const std::string rl =
      add_limited_key("key_rl", "{ rps: 1000, burst: 1000, max_concurrent: 1 }");
  worker_.on("/stream", Behavior::sse(50, 100ms));
  start();
  {
    TcpClient s(proxy_.proxy_port());
    ASSERT_TRUE(s.send(build_request("GET", "/ep1/stream", {{"Host", "c"}, bearer(rl)})));
    auto head = s.read_head();
    ASSERT_TRUE(head && head->status == 200);
    EXPECT_TRUE(IsFrontdoorError(get_with(rl, "/ep1/during"), 429, "rate_limited"));
  }  // the client goes away mid-stream
  ASSERT_TRUE(worker_.wait_for_peer_aborts(1, kWait)) << "the stream to the worker was not cut";
  auto r = retry_until(rl, "/ep1/after", 200, 2000ms);
  EXPECT_EQ(r.status, 200) << "the abandoned stream still holds the key's slot: " << r.raw;
}

TEST_F(RateLimitTest, BucketOutlivesAReload) {
  const std::string rl = add_limited_key("key_rl", "{ rps: 0.2, burst: 2, max_concurrent: 0 }");
  start();
  ASSERT_EQ(get_with(rl, "/ep1/1").status, 200);
  ASSERT_EQ(get_with(rl, "/ep1/2").status, 200);
  ASSERT_TRUE(IsFrontdoorError(get_with(rl, "/ep1/3"), 429, "rate_limited"));
  // A reload of a store edited by hand (another key added) makes a fresh key
  // set; the key's bucket must carry over, not start full again.
  const std::string added = proxy_.add_key({.id = "key_added"});
  proxy_.write_keys();
  std::size_t reloads = 0;
  for (const auto& o : proxy_.log_lines()) reloads += json_str(o, "msg") == "reloaded";
  ASSERT_TRUE(proxy_.send_signal(SIGHUP));
  ASSERT_TRUE(proxy_.wait_for_log(
      [](const json::object& o) { return json_str(o, "msg") == "reloaded"; }, reloads + 1, kWait));
  ASSERT_TRUE(IsFrontdoorError(get_with(added, "/ep1/x"), 403, "insufficient_scope"))
      << "the edited store was loaded";
  EXPECT_TRUE(IsFrontdoorError(get_with(rl, "/ep1/4"), 429, "rate_limited"));
}

TEST_F(RateLimitTest, HeadersOnlyOnAnswersToKeysWithARateLimit) {
  const std::string rl =
      add_limited_key("key_rl", "{ rps: 100, burst: 10, max_concurrent: 4 }");
  // The worker's own RateLimit-* headers are not ours to judge: use a path
  // whose answer carries none.
  start();
  auto limited = get_with(rl, "/ep1/x");
  ASSERT_EQ(limited.status, 200) << limited.raw;
  EXPECT_TRUE(HasRateLimitHeaders(limited, 10, 9));
  EXPECT_EQ(header_number(limited, "RateLimit-Reset"), 1)
      << "one token short of a full bucket at 100 rps: reset within a second";

  auto plain = get("/ep1/x");
  ASSERT_EQ(plain.status, 200) << plain.raw;
  EXPECT_TRUE(has_no_rate_limit_headers(plain)) << plain.raw;
  auto refused = get("/ep2/x");  // key_rw may not reach ep2
  EXPECT_TRUE(IsFrontdoorError(refused, 403, "insufficient_scope"));
  EXPECT_TRUE(has_no_rate_limit_headers(refused)) << refused.raw;
  // One kept-alive connection, two keys: nothing carries over.
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/a", {{"Host", "c"}, bearer(rl)})));
  auto first = c.read_response();
  ASSERT_TRUE(first && first->status == 200);
  EXPECT_TRUE(HasRateLimitHeaders(*first, 10, -1));
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/b", auth_headers())));
  auto second = c.read_response();
  ASSERT_TRUE(second && second->status == 200);
  EXPECT_TRUE(has_no_rate_limit_headers(*second)) << second->raw;

  auto unknown = get_with(fresh_rpa_token(), "/ep1/x");
  EXPECT_TRUE(IsFrontdoorError(unknown, 401, "invalid_api_key"));
  EXPECT_TRUE(has_no_rate_limit_headers(unknown)) << unknown.raw;
}

TEST_F(RateLimitTest, ExpiryHoldsAtRequestTimeWithoutAReload) {
  const std::time_t expires = std::time(nullptr) + 2;
  const std::string t = proxy_.add_key({.id = "key_soon",
                                        .endpoints = {{"*", "none"}, {"ep1", "read_write"}},
                                        .expires_at = rfc3339(expires)});
  start();
  auto before = get_with(t, "/ep1/before");
  ASSERT_EQ(before.status, 200) << before.raw;

  // Expiry is a moment, not an event frontdoor announces: ask until it holds.
  HttpResponse r;
  std::time_t last_ok = std::time(nullptr);
  const auto deadline = Clock::now() + 5s;
  for (;;) {
    const std::time_t sent = std::time(nullptr);
    r = get_with(t, "/ep1/poll");
    if (r.status != 200) break;
    last_ok = sent;
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(IsFrontdoorError(r, 401, "api_key_expired"));
  EXPECT_LE(last_ok, expires) << "still accepted after expires_at";
  EXPECT_GE(std::time(nullptr), expires - 1) << "expired early";
  for (const auto& o : proxy_.log_lines())
    EXPECT_NE(json_str(o, "msg"), "reloaded") << "the test relies on no reload happening";
  EXPECT_EQ(get("/ep1/other").status, 200);
}

}  // namespace
}  // namespace frontdoor::test
