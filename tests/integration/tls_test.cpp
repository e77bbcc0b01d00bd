// SPEC §2 `tls`: termination on a proxy listener with a certificate made at
// test time; curl --cacert must trust it. Certificates renew on SIGHUP; a
// pair that does not load keeps the running one.
#include <cstdio>
#include <fstream>

#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

std::string run(const std::string& command) {
  std::string out;
  if (FILE* p = ::popen((command + " 2>/dev/null").c_str(), "r")) {
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    ::pclose(p);
  }
  return out;
}

bool make_cert(const std::string& dir, const std::string& name, const std::string& cn) {
  return std::system(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=" +
                      cn + " -addext subjectAltName=IP:127.0.0.1 -keyout " + dir + "/" + name + ".key -out " + dir +
                      "/" + name + ".crt >/dev/null 2>&1")
                         .c_str()) == 0;
}

class TlsTest : public ProxyTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(make_cert(proxy_.dir(), "tls", "first"));
    ASSERT_TRUE(make_cert(proxy_.dir(), "other", "second"));
    proxy_.config().extra_listeners.push_back("127.0.0.1:0\n    tls: { cert: tls.crt, key: tls.key }");
    add_default_endpoint();
    add_default_key();
    start();
    url_ = "https://127.0.0.1:" + std::to_string(proxy_.proxy_port(1));
  }
  std::string curl(const std::string& cacert, const std::string& extra = "") {
    return run("curl -s -m 5 --cacert " + proxy_.dir() + "/" + cacert + " " + extra + " -H 'Authorization: Bearer " +
               token_ + "' -w ' %{http_code} %{http_version}' " + url_ + "/ep1/ok");
  }
  std::string url_;
};

TEST_F(TlsTest, CurlWithTheCaCertGetsThroughAndTheWorkerSeesHttps) {
  auto out = curl("tls.crt");
  EXPECT_NE(out.find(" 200 1.1"), std::string::npos) << out;  // ALPN: http/1.1
  ASSERT_TRUE(worker_.wait_for_requests(1, 5000ms));
  auto req = worker_.requests().back();
  bool https = false;
  for (const auto& [k, v] : req.headers) https = https || (k == "X-Forwarded-Proto" && v == "https");
  EXPECT_TRUE(https);
  // Without a key: frontdoor's own 401, over TLS.
  auto no_key = run("curl -s -m 5 --cacert " + proxy_.dir() + "/tls.crt -w ' %{http_code}' " + url_ + "/ep1/ok");
  EXPECT_NE(no_key.find("missing_api_key"), std::string::npos) << no_key;
  // The plain listener still answers plain HTTP.
  EXPECT_EQ(get("/ep1/ok").status, 200);
}

TEST_F(TlsTest, OldProtocolsAreRefused) {
  auto out = curl("tls.crt", "--tls-max 1.1 --tlsv1");
  EXPECT_EQ(out.find(" 200"), std::string::npos) << out;
  EXPECT_NE(curl("tls.crt", "--tlsv1.2 --tls-max 1.2").find(" 200 1.1"), std::string::npos);
}

TEST_F(TlsTest, CertificateRenewsOnSighupAndABadOneIsKeptOut) {
  EXPECT_EQ(curl("other.crt").find(" 200"), std::string::npos);  // not trusted yet
  // Renewal: the new pair replaces the files; SIGHUP; new connections see it.
  ProxyHarness::write_file_atomic(proxy_.dir() + "/tls.crt", run("cat " + proxy_.dir() + "/other.crt"));
  ProxyHarness::write_file_atomic(proxy_.dir() + "/tls.key", run("cat " + proxy_.dir() + "/other.key"));
  ASSERT_TRUE(proxy_.send_signal(SIGHUP));
  ASSERT_TRUE(proxy_.wait_for_stderr("\"reloaded\"", 5000ms));
  EXPECT_NE(curl("other.crt").find(" 200 1.1"), std::string::npos);

  // A broken certificate: the reload fails, says why, and TLS keeps working.
  ProxyHarness::write_file_atomic(proxy_.dir() + "/tls.crt", "-----BEGIN CERTIFICATE-----\nnot a certificate\n");
  ASSERT_TRUE(proxy_.send_signal(SIGHUP));
  ASSERT_TRUE(proxy_.wait_for_stderr("reload failed", 5000ms));
  EXPECT_NE(proxy_.stderr_text().find("tls.crt"), std::string::npos);
  EXPECT_NE(curl("other.crt").find(" 200 1.1"), std::string::npos);
}

}  // namespace
}  // namespace frontdoor::test
