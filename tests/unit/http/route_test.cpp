#include "frontdoor/http/route.hpp"

#include <gtest/gtest.h>

namespace frontdoor::http {
namespace {

config::Routing routing(std::string suffix, bool prefix) {
  config::Routing r;
  r.host_suffix = std::move(suffix);
  r.path_prefix = prefix;
  return r;
}

std::string forwarded(const Route& r) {
  std::string out;
  append_target(out, r.rest);
  return out;
}

TEST(Route, HostSuffixSelectsEndpointAndKeepsPath) {
  auto r = route("oc4qjlw7gp8i5f.api.example.com", "/v1/x?q=1", routing(".api.example.com", true));
  EXPECT_EQ(r.endpoint, "oc4qjlw7gp8i5f");
  EXPECT_TRUE(r.by_host);
  EXPECT_EQ(forwarded(r), "/v1/x?q=1");
}

TEST(Route, HostIsCaseInsensitiveAndPortIgnored) {
  auto r = route("EP1.API.Example.COM:8443", "/ping", routing(".api.example.com", true));
  EXPECT_EQ(r.endpoint, "ep1");
  EXPECT_EQ(forwarded(r), "/ping");
}

TEST(Route, BareSuffixIsNotAnEndpoint) {
  auto r = route("api.example.com", "/ep1/ping", routing(".api.example.com", true));
  EXPECT_FALSE(r.by_host);
  EXPECT_EQ(r.endpoint, "ep1");
  EXPECT_EQ(forwarded(r), "/ping");
}

TEST(Route, PathPrefixStripsFirstSegment) {
  auto rt = routing("", true);
  EXPECT_EQ(forwarded(route("h", "/ep1", rt)), "/");
  EXPECT_EQ(route("h", "/ep1", rt).endpoint, "ep1");
  EXPECT_EQ(forwarded(route("h", "/ep1/", rt)), "/");
  EXPECT_EQ(forwarded(route("h", "/ep1/v1/x?q", rt)), "/v1/x?q");
  EXPECT_EQ(forwarded(route("h", "/ep1?q=2", rt)), "/?q=2");
  EXPECT_EQ(route("h", "/ep1?q=2", rt).endpoint, "ep1");
}

TEST(Route, RootNamesNoEndpoint) {
  auto r = route("h", "/", routing("", true));
  EXPECT_EQ(r.endpoint, "");
}

TEST(Route, NoPrefixRoutingLeavesEndpointEmpty) {
  auto r = route("other.host", "/ep1/x", routing(".api.example.com", false));
  EXPECT_EQ(r.endpoint, "");
  EXPECT_EQ(forwarded(r), "/ep1/x");
}

TEST(Route, HostWithoutPort) {
  EXPECT_EQ(host_without_port("a.b:80"), "a.b");
  EXPECT_EQ(host_without_port("a.b"), "a.b");
  EXPECT_EQ(host_without_port("[::1]:8080"), "[::1]");
  EXPECT_EQ(host_without_port("[::1]"), "[::1]");
}

}  // namespace
}  // namespace frontdoor::http
