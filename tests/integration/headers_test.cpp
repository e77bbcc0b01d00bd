// SPEC §4 step 6: what the worker sees of a request's headers, and what the
// client sees of a worker's response headers.
#include <algorithm>

#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

std::string without_spaces(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
  return s;
}

class HeadersTest : public ProxyTest {
 protected:
  void SetUp() override {
    add_default_endpoint();
    add_default_key();
  }

  // Sends one request through the proxy and returns what the worker received.
  RecordedRequest forwarded(const Headers& headers, HttpResponse* response = nullptr,
                            std::string_view target = "/ep1/v1/check") {
    std::size_t before = worker_.request_count();
    auto r = proxy_.request("POST", target, headers, "body");
    EXPECT_EQ(r.status, 200) << r.raw;
    if (response) *response = r;
    EXPECT_TRUE(worker_.wait_for_requests(before + 1, kWait));
    auto log = worker_.requests();
    return log.size() > before ? log[before] : RecordedRequest{};
  }
};

TEST_F(HeadersTest, RequestHeadersAreRewritten) {
  start();
  HttpResponse resp;
  auto req = forwarded({{"Host", "client.example:8443"},
                        bearer(token_),
                        {"X-API-Key", "worker-own-key"},
                        {"Connection", "keep-alive, X-Hop"},
                        {"X-Hop", "must-go"},
                        {"Keep-Alive", "timeout=5"},
                        {"Proxy-Connection", "keep-alive"},
                        {"TE", "trailers"},
                        {"Trailer", "X-Checksum"},
                        {"Proxy-Authorization", "Basic Zm9vOmJhcg=="},
                        {"X-Forwarded-For", "203.0.113.7"},
                        {"X-Forwarded-Proto", "https"},
                        {"X-Forwarded-Host", "spoofed.example"},
                        {"X-Request-Id", "req-abc-123"},
                        {"X-Frontdoor-Key-Id", "key_spoofed"},
                        {"X-Frontdoor-Anything", "spoofed"},
                        {"X-Custom", "kept"},
                        {"Content-Type", "text/plain"}},
                       &resp);
  EXPECT_EQ(req.target, "/v1/check");
  EXPECT_EQ(req.body, "body");
  EXPECT_EQ(req.header_count("Authorization"), 0u);
  EXPECT_EQ(req.header("X-API-Key"), "worker-own-key");
  for (const char* h : {"X-Hop", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
                        "Proxy-Authorization", "Upgrade", "X-Frontdoor-Anything"})
    EXPECT_EQ(req.header_count(h), 0u) << h << " was forwarded";
  if (auto c = req.header("Connection")) {
    EXPECT_EQ(c->find("X-Hop"), std::string::npos) << *c;
  }
  EXPECT_EQ(req.header_count("Host"), 1u);
  EXPECT_EQ(req.header("Host"), worker_.authority());
  EXPECT_EQ(req.header_count("X-Forwarded-For"), 1u);
  EXPECT_EQ(req.header("X-Forwarded-For"), "127.0.0.1");
  EXPECT_EQ(req.header_count("X-Forwarded-Proto"), 1u);
  EXPECT_EQ(req.header("X-Forwarded-Proto"), "http");
  EXPECT_EQ(req.header_count("X-Forwarded-Host"), 1u);
  auto xfh = req.header("X-Forwarded-Host").value_or("");
  EXPECT_TRUE(xfh == "client.example:8443" || xfh == "client.example") << xfh;
  EXPECT_EQ(req.header("X-Request-Id"), "req-abc-123");
  EXPECT_EQ(req.header_count("X-Frontdoor-Key-Id"), 1u);
  EXPECT_EQ(req.header("X-Frontdoor-Key-Id"), key_id_);
  EXPECT_EQ(req.header("X-Custom"), "kept");
  EXPECT_EQ(req.header("Content-Type"), "text/plain");
  EXPECT_EQ(resp.header("X-Request-Id"), "req-abc-123");
}

TEST_F(HeadersTest, ForwardedForAppendedForTrustedPeer) {
  proxy_.config().trusted_proxies = {"127.0.0.1/32"};
  start();
  auto req = forwarded(auth_headers({{"X-Forwarded-For", "203.0.113.7, 198.51.100.2"}}));
  EXPECT_EQ(req.header_count("X-Forwarded-For"), 1u);
  EXPECT_EQ(without_spaces(req.header("X-Forwarded-For").value_or("")),
            "203.0.113.7,198.51.100.2,127.0.0.1");
  // Without a client X-Forwarded-For, the peer alone.
  auto req2 = forwarded(auth_headers());
  EXPECT_EQ(req2.header("X-Forwarded-For"), "127.0.0.1");
}

TEST_F(HeadersTest, ForwardedForReplacedForUntrustedPeer) {
  proxy_.config().trusted_proxies = {"10.0.0.0/8"};
  start();
  auto req = forwarded(auth_headers({{"X-Forwarded-For", "203.0.113.7"}}));
  EXPECT_EQ(req.header("X-Forwarded-For"), "127.0.0.1");
}

TEST_F(HeadersTest, RequestIdGeneratedWhenMissingOrInvalid) {
  start();
  const std::string too_long(129, 'a');
  const std::string max_len(128, 'b');
  struct Case {
    std::optional<std::string> sent;
    bool kept;
  };
  for (const Case& c : {Case{std::nullopt, false}, Case{too_long, false}, Case{"has space", false},
                        Case{max_len, true}, Case{"a.b-c_d:e/f", true}}) {
    HttpResponse resp;
    Headers h = auth_headers();
    if (c.sent) h.emplace_back("X-Request-Id", *c.sent);
    auto req = forwarded(h, &resp);
    auto id = req.header("X-Request-Id");
    ASSERT_TRUE(id) << "no X-Request-Id forwarded for " << c.sent.value_or("(none)");
    EXPECT_EQ(req.header_count("X-Request-Id"), 1u);
    if (c.kept) {
      EXPECT_EQ(*id, *c.sent);
    } else {
      EXPECT_FALSE(id->empty());
      EXPECT_LE(id->size(), 128u);
      if (c.sent) {
        EXPECT_NE(*id, *c.sent);
      }
    }
    EXPECT_EQ(resp.header("X-Request-Id"), id) << "the response must carry the id the worker saw";
  }
}

TEST_F(HeadersTest, AuthorizationForwardedWhenNotStripped) {
  proxy_.config().strip_authorization = false;
  start();
  auto req = forwarded(auth_headers());
  EXPECT_EQ(req.header("Authorization"), "Bearer " + token_);
}

TEST_F(HeadersTest, ResponseHeadersAreFiltered) {
  worker_.set_default(Behavior::fixed(200, "ok",
                                      {{"Connection", "X-Worker-Hop"},
                                       {"X-Worker-Hop", "1"},
                                       {"Keep-Alive", "timeout=5, max=100"},
                                       {"Proxy-Authenticate", "Basic"},
                                       {"X-Frontdoor-Spoof", "1"},
                                       {"X-Frontdoor-Key-Id", "evil"},
                                       {"X-Frontdoor-Error", "fake"},
                                       {"X-Kept", "yes"},
                                       {"Set-Cookie", "a=1"},
                                       {"Set-Cookie", "b=2"}}));
  start();
  auto r = get("/ep1/x");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok");
  for (const char* h : {"X-Worker-Hop", "Keep-Alive", "Proxy-Authenticate", "X-Frontdoor-Spoof",
                        "X-Frontdoor-Key-Id", "X-Frontdoor-Error"})
    EXPECT_EQ(r.header_count(h), 0u) << h << " reached the client";
  if (auto c = r.header("Connection")) {
    EXPECT_EQ(c->find("X-Worker-Hop"), std::string::npos);
  }
  EXPECT_EQ(r.header("X-Kept"), "yes");
  EXPECT_EQ(r.header_count("Set-Cookie"), 2u);
}

TEST_F(HeadersTest, WebSocketUpgradeIsForwardedWithItsHeadersAndWithoutTheKey) {
  start();
  auto r = get("/ep1/ws", {{"Connection", "keep-alive, Upgrade"},
                           {"Upgrade", "websocket"},
                           {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                           {"Sec-WebSocket-Version", "13"},
                           {"Sec-WebSocket-Protocol", "chat"},
                           {"X-Frontdoor-Key-Id", "spoofed"}});
  EXPECT_EQ(r.status, 200);  // the fake worker does not switch: relayed as is
  auto seen = worker_.requests();
  ASSERT_EQ(seen.size(), 1u);
  const auto& q = seen[0];
  EXPECT_EQ(q.header("Upgrade"), "websocket");
  ASSERT_TRUE(q.header("Connection"));
  EXPECT_EQ(*q.header("Connection"), "upgrade");
  EXPECT_EQ(q.header("Sec-WebSocket-Key"), "dGhlIHNhbXBsZSBub25jZQ==");
  EXPECT_EQ(q.header("Sec-WebSocket-Version"), "13");
  EXPECT_EQ(q.header("Sec-WebSocket-Protocol"), "chat");
  EXPECT_EQ(q.header_count("Authorization"), 0u);
  EXPECT_EQ(q.header("X-Frontdoor-Key-Id"), key_id_);
  EXPECT_EQ(q.header_count("X-Frontdoor-Key-Id"), 1u);
  EXPECT_TRUE(q.header("X-Request-Id"));
  EXPECT_EQ(q.header("X-Forwarded-Proto"), "http");
}

TEST_F(HeadersTest, H2cUpgradeOfferIsIgnored) {
  start();
  HttpResponse resp;
  auto req = forwarded(auth_headers({{"Connection", "Upgrade, HTTP2-Settings"},
                                     {"Upgrade", "h2c"},
                                     {"HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"}}),
                       &resp);
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(req.header_count("Upgrade"), 0u);
  EXPECT_EQ(req.header_count("HTTP2-Settings"), 0u);
  if (auto c = req.header("Connection")) {
    EXPECT_EQ(c->find("Upgrade"), std::string::npos) << *c;
  }
  EXPECT_EQ(resp.header_count("Upgrade"), 0u);
}

}  // namespace
}  // namespace frontdoor::test
