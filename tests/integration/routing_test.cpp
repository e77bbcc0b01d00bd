// SPEC §4 step 3: routing by Host suffix (path unchanged) and by path prefix
// (first segment removed).
#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

class RoutingTest : public ProxyTest {
 protected:
  void SetUp() override {
    proxy_.config().host_suffix = ".api.test";
    add_default_endpoint();
    proxy_.add_endpoint({.id = "ep2", .workers = {worker2_.url()}});
    token_ = proxy_.add_key(
        {.id = key_id_,
         .endpoints = {{"*", "none"}, {"ep1", "read_write"}, {"ep2", "read_write"}}});
    ASSERT_TRUE(worker2_.ok());
    start();
  }

  // The one request a worker received for a request sent with this Host and target.
  RecordedRequest routed(FakeWorker& w, const std::string& host, const std::string& target) {
    std::size_t before = w.request_count();
    auto r = proxy_.request("GET", target, {{"Host", host}, bearer(token_)});
    EXPECT_EQ(r.status, 200) << r.raw;
    EXPECT_TRUE(w.wait_for_requests(before + 1, kWait));
    auto log = w.requests();
    return log.size() > before ? log[before] : RecordedRequest{};
  }

  FakeWorker worker2_;
};

TEST_F(RoutingTest, HostSuffixSelectsEndpointAndKeepsPath) {
  EXPECT_EQ(routed(worker_, "ep1.api.test", "/v1/x?q=1").target, "/v1/x?q=1");
  EXPECT_EQ(routed(worker2_, "ep2.api.test", "/generate").target, "/generate");
  EXPECT_EQ(routed(worker2_, "ep2.api.test", "/").target, "/");
}

TEST_F(RoutingTest, HostSuffixIgnoresPortAndCase) {
  EXPECT_EQ(routed(worker2_, "EP2.API.Test:8080", "/v1/models").target, "/v1/models");
  EXPECT_EQ(routed(worker_, "ep1.api.test:80", "/a/b?c=d").target, "/a/b?c=d");
}

TEST_F(RoutingTest, HostSuffixWinsOverPathPrefix) {
  // The path starts with another endpoint's id: with a matching Host it is
  // forwarded unchanged to the Host's endpoint.
  EXPECT_EQ(routed(worker_, "ep1.api.test", "/ep2/x").target, "/ep2/x");
  EXPECT_EQ(worker2_.request_count(), 0u);
}

TEST_F(RoutingTest, PathPrefixRemovesFirstSegment) {
  EXPECT_EQ(routed(worker_, "client.test", "/ep1").target, "/");
  EXPECT_EQ(routed(worker_, "client.test", "/ep1/v1/x?q").target, "/v1/x?q");
  EXPECT_EQ(routed(worker2_, "127.0.0.1:9999", "/ep2/generate?stream=true").target,
            "/generate?stream=true");
  EXPECT_EQ(routed(worker2_, "other.example", "/ep2/a/b/c").target, "/a/b/c");
}

TEST_F(RoutingTest, EndpointsAreIsolated) {
  for (int i = 0; i < 3; ++i) routed(worker_, "client.test", "/ep1/one");
  routed(worker2_, "client.test", "/ep2/two");
  EXPECT_EQ(worker_.request_count(), 3u);
  EXPECT_EQ(worker2_.request_count(), 1u);
  EXPECT_EQ(worker2_.requests()[0].target, "/two");
}

TEST_F(RoutingTest, PathPrefixDisabled) {
  // A separate proxy with path_prefix off: the first segment no longer selects.
  FakeWorker w;
  ProxyHarness p;
  p.config().host_suffix = ".api.test";
  p.config().path_prefix = false;
  p.add_endpoint({.id = "ep1", .workers = {w.url()}});
  std::string t = p.add_key({.id = "key_a", .endpoints = {{"*", "read"}, {"ep1", "read_write"}}});
  ASSERT_TRUE(p.start()) << p.error();
  auto r = p.request("GET", "/ep1/x", {{"Host", "ep1.api.test"}, bearer(t)});
  EXPECT_EQ(r.status, 200);
  ASSERT_TRUE(w.wait_for_requests(1, kWait));
  EXPECT_EQ(w.requests()[0].target, "/ep1/x");
  // Neither the Host nor (with path_prefix off) the path names an endpoint.
  auto r2 = p.request("GET", "/ep1/x", {{"Host", "client.test"}, bearer(t)});
  EXPECT_NE(r2.status, 200);
  EXPECT_EQ(w.request_count(), 1u);
}

}  // namespace
}  // namespace frontdoor::test
