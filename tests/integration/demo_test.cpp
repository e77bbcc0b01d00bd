// End to end with the demo worker behind frontdoor, as in the README demo.
#include "support/demo_worker_process.hpp"
#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

TEST(DemoTest, GenerateAndStreamThroughTheProxy) {
  DemoWorkerProcess demo;
  ASSERT_TRUE(demo.ok()) << demo.process().error() << demo.process().stderr_text();
  ProxyHarness proxy;
  proxy.add_endpoint({.id = "demo", .workers = {demo.url()}});
  std::string token =
      proxy.add_key({.id = "key_demo", .endpoints = {{"*", "none"}, {"demo", "read_write"}}});
  ASSERT_TRUE(proxy.start()) << proxy.error();

  Headers h{{"Host", "localhost"}, bearer(token), {"Content-Type", "application/json"}};
  auto r = proxy.request("POST", "/demo/generate", h, R"({"prompt":"frontdoor"})");
  EXPECT_EQ(r.status, 200) << r.raw;
  EXPECT_NE(r.body.find(R"("text":"roodtnorf")"), std::string::npos) << r.body;

  auto s = proxy.request("POST", "/demo/generate?stream=true", h, R"({"prompt":"hello there"})");
  EXPECT_EQ(s.status, 200);
  EXPECT_EQ(s.header("Content-Type"), "text/event-stream");
  EXPECT_NE(s.body.find("data: [DONE]\n\n"), std::string::npos) << s.body;

  auto denied = proxy.request("POST", "/demo/generate", {{"Host", "localhost"}}, "{}");
  EXPECT_TRUE(IsFrontdoorError(denied, 401, "missing_api_key"));
}

}  // namespace
}  // namespace frontdoor::test
