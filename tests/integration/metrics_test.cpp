// SPEC §6: /metrics in the Prometheus text format with bounded labels, and
// no secret in anything the process writes.
#include <regex>
#include <sstream>

#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

// Parses a whole exposition: every line is a comment (# HELP / # TYPE) or
// `name{labels} value`; returns the samples, fails the test on anything else.
std::map<std::string, double> parse_exposition(const std::string& text) {
  static const std::regex kSample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*)?\})? (-?[0-9.eE+-]+|\+Inf|NaN)$)");
  static const std::regex kComment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$)");
  std::map<std::string, double> samples;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      EXPECT_TRUE(std::regex_match(line, kComment)) << line;
      continue;
    }
    std::smatch m;
    if (!std::regex_match(line, m, kSample)) {
      ADD_FAILURE() << "not a sample line: " << line;
      continue;
    }
    auto space = line.rfind(' ');
    samples[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return samples;
}

class MetricsTest : public ProxyTest {
 protected:
  std::map<std::string, double> scrape() {
    auto r = proxy_.admin_request("GET", "/metrics", {{"Host", "admin"}});
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.header("Content-Type").value_or("").find("text/plain"), std::string::npos);
    return parse_exposition(r.body);
  }
};

TEST_F(MetricsTest, ExpositionParsesAndCountersMove) {
  add_default_endpoint();
  add_default_key();
  start();
  auto before = scrape();
  ASSERT_TRUE(before.count("frontdoor_keys"));
  EXPECT_EQ(before["frontdoor_keys"], 1);
  EXPECT_EQ(before["frontdoor_worker_state{endpoint=\"ep1\",worker=\"127.0.0.1:" + std::to_string(worker_.port()) +
                   "\",state=\"ready\"}"],
            1);

  for (int i = 0; i < 3; ++i) EXPECT_EQ(get("/ep1/ok").status, 200);
  EXPECT_EQ(proxy_.request("GET", "/ep1/ok", {{"Host", "client.test"}}).status, 401);
  EXPECT_EQ(proxy_.request("GET", "/ep1/ok", {{"Host", "client.test"}, bearer("rpa_not_a_real_token")}).status, 401);

  auto after = scrape();
  EXPECT_EQ(after["frontdoor_requests_total{endpoint=\"ep1\",status=\"200\"}"] -
                before["frontdoor_requests_total{endpoint=\"ep1\",status=\"200\"}"],
            3);
  EXPECT_EQ(after["frontdoor_auth_total{outcome=\"ok\"}"] - before["frontdoor_auth_total{outcome=\"ok\"}"], 3);
  EXPECT_EQ(after["frontdoor_auth_total{outcome=\"missing_api_key\"}"] -
                before["frontdoor_auth_total{outcome=\"missing_api_key\"}"],
            1);
  EXPECT_EQ(after["frontdoor_auth_total{outcome=\"invalid_api_key\"}"] -
                before["frontdoor_auth_total{outcome=\"invalid_api_key\"}"],
            1);
  EXPECT_EQ(after["frontdoor_request_duration_seconds_count"] - before["frontdoor_request_duration_seconds_count"], 5);
  EXPECT_EQ(after["frontdoor_request_duration_seconds_bucket{le=\"+Inf\"}"],
            after["frontdoor_request_duration_seconds_count"]);
  // Histogram buckets are cumulative.
  EXPECT_GE(after["frontdoor_request_duration_seconds_bucket{le=\"30\"}"],
            after["frontdoor_request_duration_seconds_bucket{le=\"0.001\"}"]);

  // SIGHUP: a reload is counted.
  ASSERT_TRUE(proxy_.send_signal(SIGHUP));
  ASSERT_TRUE(proxy_.wait_for_stderr("\"reloaded\"", 5000ms));
  EXPECT_EQ(scrape()["frontdoor_reloads_total{result=\"ok\"}"], 1);
}

TEST_F(MetricsTest, LabelsStayBounded) {
  add_default_endpoint();
  add_default_key();
  start();
  // Unknown endpoints and raw paths never become label values.
  for (int i = 0; i < 5; ++i) get("/random-" + std::to_string(i) + "/x?secret=" + std::to_string(i));
  auto body = proxy_.admin_request("GET", "/metrics", {{"Host", "admin"}}).body;
  EXPECT_EQ(body.find("random-"), std::string::npos);
  EXPECT_EQ(body.find("secret"), std::string::npos);
  EXPECT_EQ(body.find(token_), std::string::npos);
}

TEST_F(MetricsTest, NoTokenAnywhereInTheProcessOutput) {
  add_default_endpoint();
  add_default_key();
  proxy_.config().log_level = "debug";
  start();
  const std::string wrong = "rpa_" + std::string(34, 'Z') + "AAAAAA";  // bad checksum
  const std::string legacy = "legacy-token-that-must-not-leak";
  EXPECT_EQ(get("/ep1/ok").status, 200);
  EXPECT_EQ(proxy_.request("GET", "/ep1/ok?x=" + token_, {{"Host", "client.test"}, bearer(wrong)}).status, 401);
  EXPECT_EQ(proxy_.request("GET", "/ep1/ok", {{"Host", "client.test"}, bearer(legacy)}).status, 401);
  EXPECT_EQ(proxy_.request("GET", "/ep1/ok", {{"Host", "client.test"}, {"Authorization", "Basic " + token_}}).status,
            401);
  ASSERT_TRUE(proxy_.wait_for_access_log(4, 5000ms));
  ASSERT_TRUE(proxy_.send_signal(SIGTERM));
  ASSERT_TRUE(proxy_.wait_exit(10000ms).has_value());
  const std::string all = proxy_.stdout_text() + proxy_.stderr_text();
  EXPECT_EQ(all.find(token_), std::string::npos);
  EXPECT_EQ(all.find(wrong), std::string::npos);
  EXPECT_EQ(all.find(legacy), std::string::npos);
  // The key id is how a key shows up in logs.
  EXPECT_NE(all.find(key_id_), std::string::npos);
}

}  // namespace
}  // namespace frontdoor::test
