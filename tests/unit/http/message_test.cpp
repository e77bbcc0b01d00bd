#include "frontdoor/http/message.hpp"

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <gtest/gtest.h>

namespace frontdoor::http {
namespace {

namespace bhttp = boost::beast::http;
using core::Reason;

// Parses a raw head with Beast, as the session does, then applies the
// frontdoor checks. Returns bad_request when Beast itself rejects it.
struct Parsed {
  Reason beast_or_check = Reason::none;
  HeadCheck check;  // views into parser
  std::shared_ptr<bhttp::request_parser<bhttp::empty_body>> parser;
};

Parsed check(const std::string& raw, std::uint64_t max_uri = 8192) {
  Parsed r;
  r.parser = std::make_shared<bhttp::request_parser<bhttp::empty_body>>();
  auto& p = *r.parser;
  p.eager(false);
  boost::system::error_code ec;
  auto n = p.put(boost::asio::buffer(raw), ec);
  if (ec && ec != bhttp::error::need_more) {
    r.beast_or_check = Reason::bad_request;
    return r;
  }
  EXPECT_TRUE(p.is_header_done()) << raw;
  r.check = check_request_head(p.get().base(), std::string_view(raw).substr(0, n), max_uri);
  r.beast_or_check = r.check.reason;
  return r;
}

TEST(CheckRequestHead, PlainGetPasses) {
  auto r = check("GET /ep1/x HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(r.beast_or_check, Reason::none);
  EXPECT_EQ(r.check.host, "a");
  EXPECT_EQ(r.check.target, "/ep1/x");
  EXPECT_FALSE(r.check.chunked);
}

TEST(CheckRequestHead, FramingRules) {
  // RFC 9112 §6.3 and §11: every one of these is a 400.
  const char* bad[] = {
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
      "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n",
      "GET / HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: \r\n\r\n",
      "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
      "GET x HTTP/1.1\r\nHost: a\r\n\r\n",
  };
  for (const char* raw : bad) EXPECT_EQ(check(raw).beast_or_check, Reason::bad_request) << raw;
}

TEST(CheckRequestHead, NulAndBareCrInValue) {
  std::string nul = "GET / HTTP/1.1\r\nHost: a\r\nX-A: b";
  nul.push_back('\0');
  nul += "c\r\n\r\n";
  EXPECT_EQ(check(nul).beast_or_check, Reason::bad_request);
  EXPECT_EQ(check("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n").beast_or_check, Reason::bad_request);
}

TEST(CheckRequestHead, ChunkedAndLengthAccepted) {
  auto c = check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
  EXPECT_EQ(c.beast_or_check, Reason::none);
  EXPECT_TRUE(c.check.chunked);
  auto l = check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n");
  EXPECT_EQ(l.beast_or_check, Reason::none);
  ASSERT_TRUE(l.check.content_length);
  EXPECT_EQ(*l.check.content_length, 12u);
}

TEST(CheckRequestHead, UriTooLong) {
  std::string target = "/" + std::string(100, 'a');
  EXPECT_EQ(check("GET " + target + " HTTP/1.1\r\nHost: a\r\n\r\n", 50).beast_or_check, Reason::uri_too_long);
  EXPECT_EQ(check("GET " + target + " HTTP/1.1\r\nHost: a\r\n\r\n", 200).beast_or_check, Reason::none);
}

TEST(CheckRequestHead, WebSocketUpgradeIsAcceptedAndH2cIsIgnored) {
  auto ws = check("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_EQ(ws.beast_or_check, Reason::none);
  EXPECT_TRUE(ws.check.websocket);
  // RFC 6455 §4.1: only a GET may open a WebSocket.
  EXPECT_EQ(check("POST / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").beast_or_check,
            Reason::bad_request);
  // RFC 9110 §7.8: an HTTP/1.0 request's Upgrade is ignored.
  auto old = check("GET / HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_EQ(old.beast_or_check, Reason::none);
  EXPECT_FALSE(old.check.websocket);
  // Upgrade without "upgrade" in Connection is no offer.
  auto half = check("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_EQ(half.beast_or_check, Reason::none);
  EXPECT_FALSE(half.check.websocket);
  auto h2c = check("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                   "HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n");
  EXPECT_EQ(h2c.beast_or_check, Reason::none);
  EXPECT_FALSE(h2c.check.websocket);
}

TEST(CheckRequestHead, AbsoluteFormUsesItsAuthority) {
  auto r = check("GET http://ep1.api.example.com:8080/v1/x?q HTTP/1.1\r\nHost: other\r\n\r\n");
  EXPECT_EQ(r.beast_or_check, Reason::none);
  EXPECT_EQ(r.check.host, "ep1.api.example.com:8080");
  EXPECT_EQ(r.check.target, "/v1/x?q");
}

TEST(CheckRequestHead, ExpectContinue) {
  auto r = check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 100-Continue\r\n\r\n");
  EXPECT_TRUE(r.check.expect_continue);
}

TEST(RequestId, Validation) {
  EXPECT_TRUE(valid_request_id("abc-123"));
  EXPECT_TRUE(valid_request_id(std::string(128, 'x')));
  EXPECT_FALSE(valid_request_id(std::string(129, 'x')));
  EXPECT_FALSE(valid_request_id(""));
  EXPECT_FALSE(valid_request_id("a b"));
  EXPECT_FALSE(valid_request_id("a\x7f"));
}

RequestHead parse_head(const std::string& raw) {
  bhttp::request_parser<bhttp::empty_body> p;
  boost::system::error_code ec;
  p.put(boost::asio::buffer(raw), ec);
  EXPECT_TRUE(p.is_header_done());
  return p.get().base();
}

TEST(BuildUpstreamRequest, RewritesHeaders) {
  auto head = parse_head(
      "POST /ep1/v1/gen?x=1 HTTP/1.1\r\n"
      "Host: client.example\r\n"
      "Authorization: Bearer secret\r\n"
      "X-API-Key: keep-me\r\n"
      "Connection: keep-alive, X-Hop\r\n"
      "X-Hop: drop\r\n"
      "Keep-Alive: timeout=5\r\n"
      "Proxy-Connection: x\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\n"
      "Proxy-Authorization: Basic x\r\n"
      "X-Frontdoor-Key-Id: spoofed\r\n"
      "x-frontdoor-anything: spoofed\r\n"
      "X-Forwarded-For: 1.2.3.4\r\n"
      "X-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\n"
      "X-Request-Id: old\r\n"
      "Expect: 100-continue\r\n"
      "Content-Length: 5\r\n"
      "Accept: */*\r\n\r\n");
  UpstreamRequest u;
  u.method = "POST";
  u.rest = "/v1/gen?x=1";
  u.worker_authority = "127.0.0.1:5000";
  u.client_host = "client.example";
  u.proto = "http";
  u.peer_address = "10.1.1.1";
  u.request_id = "rid";
  u.key_id = "key_1";
  u.content_length = 5;
  std::string out;
  build_upstream_request(head, u, out);
  EXPECT_EQ(out,
            "POST /v1/gen?x=1 HTTP/1.1\r\n"
            "Host: 127.0.0.1:5000\r\n"
            "X-API-Key: keep-me\r\n"
            "Accept: */*\r\n"
            "X-Forwarded-For: 10.1.1.1\r\n"
            "X-Forwarded-Host: client.example\r\n"
            "X-Forwarded-Proto: http\r\n"
            "X-Request-Id: rid\r\n"
            "X-Frontdoor-Key-Id: key_1\r\n"
            "Content-Length: 5\r\n\r\n");
}

TEST(BuildUpstreamRequest, TrustedPeerAppendsForwardedFor) {
  auto head = parse_head("GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\n"
                         "X-Forwarded-For: 3.3.3.3\r\nAuthorization: Bearer t\r\n\r\n");
  UpstreamRequest u;
  u.method = "GET";
  u.rest = "";
  u.worker_authority = "w:1";
  u.client_host = "h";
  u.proto = "https";
  u.peer_address = "10.0.0.9";
  u.peer_trusted = true;
  u.request_id = "r";
  u.key_id = "k";
  u.strip_authorization = false;
  std::string out;
  build_upstream_request(head, u, out);
  EXPECT_NE(out.find("GET / HTTP/1.1\r\n"), std::string::npos);
  EXPECT_NE(out.find("X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Authorization: Bearer t\r\n"), std::string::npos);
  EXPECT_NE(out.find("X-Forwarded-Proto: https\r\n"), std::string::npos);
  EXPECT_EQ(out.find("Content-Length"), std::string::npos);
}

TEST(BuildDownstreamResponse, DropsHopByHopAndSpoofedHeaders) {
  bhttp::response_parser<bhttp::empty_body> p;
  boost::system::error_code ec;
  std::string raw =
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
      "Connection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-Frontdoor-Key-Id: spoof\r\n"
      "X-Request-Id: worker-id\r\nX-Other: kept\r\n\r\n";
  p.put(boost::asio::buffer(raw), ec);
  ASSERT_TRUE(p.is_header_done());
  DownstreamResponse d;
  d.request_id = "rid";
  d.chunked = true;
  std::string out;
  build_downstream_response(p.get().base(), d, out);
  EXPECT_EQ(out,
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Other: kept\r\n"
            "X-Request-Id: rid\r\nTransfer-Encoding: chunked\r\n\r\n");
}

TEST(LocalReply, InvalidKeyMatchesSpec) {
  std::string out;
  build_local_reply(Reason::invalid_api_key, "rid-1", true, out);
  EXPECT_EQ(out,
            "HTTP/1.1 401 Unauthorized\r\n"
            "Content-Type: application/json\r\n"
            "X-Frontdoor-Error: invalid_api_key\r\n"
            "WWW-Authenticate: Bearer realm=\"frontdoor\", error=\"invalid_token\", "
            "error_description=\"API key invalid or missing\"\r\n"
            "Content-Length: 96\r\n"
            "X-Request-Id: rid-1\r\n\r\n"
            "{\"error\":{\"code\":\"invalid_api_key\",\"message\":\"API key invalid or missing\","
            "\"request_id\":\"rid-1\"}}");
}

TEST(LocalReply, RequestIdIsEscapedInTheBody) {
  std::string out;
  build_local_reply(Reason::bad_request, R"(a"b\c)", true, out);
  auto body = out.substr(out.find("\r\n\r\n") + 4);
  EXPECT_EQ(body, R"({"error":{"code":"bad_request","message":"malformed request","request_id":"a\"b\\c"}})");
  EXPECT_NE(out.find("Content-Length: " + std::to_string(body.size()) + "\r\n"), std::string::npos);
}

TEST(LocalReply, EveryReasonHasStatusAndCode) {
  struct Row {
    Reason r;
    unsigned status;
    const char* code;
    bool challenge;
  };
  const Row rows[] = {
      {Reason::missing_api_key, 401, "missing_api_key", true},
      {Reason::invalid_api_key, 401, "invalid_api_key", true},
      {Reason::api_key_disabled, 401, "api_key_disabled", true},
      {Reason::api_key_expired, 401, "api_key_expired", true},
      {Reason::insufficient_scope, 403, "insufficient_scope", true},
      {Reason::endpoint_not_found, 404, "endpoint_not_found", false},
      {Reason::rate_limited, 429, "rate_limited", false},
      {Reason::worker_unavailable, 502, "worker_unavailable", false},
      {Reason::no_worker_ready, 503, "no_worker_ready", false},
      {Reason::worker_timeout, 504, "worker_timeout", false},
      {Reason::bad_request, 400, "bad_request", false},
      {Reason::request_timeout, 408, "request_timeout", false},
      {Reason::payload_too_large, 413, "payload_too_large", false},
      {Reason::uri_too_long, 414, "uri_too_long", false},
      {Reason::request_header_too_large, 431, "request_header_too_large", false},
  };
  for (const auto& row : rows) {
    std::string out;
    build_local_reply(row.r, "x", false, out);
    EXPECT_EQ(out.rfind("HTTP/1.1 " + std::to_string(row.status) + " ", 0), 0u) << row.code;
    EXPECT_NE(out.find(std::string("X-Frontdoor-Error: ") + row.code + "\r\n"), std::string::npos);
    EXPECT_NE(out.find(std::string("{\"error\":{\"code\":\"") + row.code + "\""), std::string::npos);
    EXPECT_EQ(out.find("WWW-Authenticate") != std::string::npos, row.challenge) << row.code;
    EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos);
  }
  std::string scope;
  build_local_reply(Reason::insufficient_scope, "x", true, scope);
  EXPECT_NE(scope.find("WWW-Authenticate: Bearer realm=\"frontdoor\", error=\"insufficient_scope\""),
            std::string::npos);
  std::string missing;
  build_local_reply(Reason::missing_api_key, "x", true, missing);
  EXPECT_NE(missing.find("WWW-Authenticate: Bearer realm=\"frontdoor\"\r\n"), std::string::npos);
}

}  // namespace
}  // namespace frontdoor::http

namespace frontdoor::http {
namespace {

TEST(CheckRequestHead, TargetBytesOutsideVisibleAsciiAre400) {
  // Beast lets obs-text through in a target; a worker would see a
  // malformed request line.
  EXPECT_EQ(check("GET /jso\x80n HTTP/1.1\r\nHost: a\r\n\r\n").beast_or_check, Reason::bad_request);
  EXPECT_EQ(check("GET http://a/x\xff HTTP/1.1\r\nHost: a\r\n\r\n").beast_or_check, Reason::bad_request);
  EXPECT_EQ(check("GET /%80ok?q=%20 HTTP/1.1\r\nHost: a\r\n\r\n").beast_or_check, Reason::none);
}

TEST(CheckRequestHead, Http10MayOmitHostHttp11MayNot) {
  auto r = check("GET /ep1/x HTTP/1.0\r\n\r\n");
  EXPECT_EQ(r.beast_or_check, Reason::none);
  EXPECT_EQ(r.check.host, "");
  EXPECT_EQ(r.check.target, "/ep1/x");
  EXPECT_EQ(check("GET /ep1/x HTTP/1.1\r\n\r\n").beast_or_check, Reason::bad_request);
  // A Host that is there must still be valid, in 1.0 too.
  EXPECT_EQ(check("GET / HTTP/1.0\r\nHost: a b\r\n\r\n").beast_or_check, Reason::bad_request);
}

TEST(CheckRequestHead, UpgradeWithABodyIsRefusedAndItsFramingKnown) {
  auto r = check("GET /ep/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 "Content-Length: 40\r\n\r\n");
  EXPECT_EQ(r.beast_or_check, Reason::bad_request);
  EXPECT_TRUE(r.check.has_body());  // so the reply knows a body is unread (H1)
  auto c = check("GET /ep/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(c.beast_or_check, Reason::bad_request);
  auto u = check("GET /ep/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_EQ(u.beast_or_check, Reason::none);
  EXPECT_TRUE(u.check.websocket);
  EXPECT_FALSE(u.check.has_body());
}

TEST(LocalReply, HeadCarriesNoBodyButItsLength) {
  std::string get, head;
  build_local_reply(Reason::invalid_api_key, "rid", true, get);
  build_local_reply(Reason::invalid_api_key, "rid", true, head, {}, {.head_request = true});
  auto split = get.find("\r\n\r\n") + 4;
  EXPECT_EQ(head, get.substr(0, split));  // same head, Content-Length included
  EXPECT_NE(head.find("Content-Length: " + std::to_string(get.size() - split)), std::string::npos);
}

TEST(LocalReply, Http10KeepAliveIsStated) {
  std::string out;
  build_local_reply(Reason::invalid_api_key, "rid", true, out, {}, {.http10_client = true});
  EXPECT_EQ(out.rfind("HTTP/1.1 401 ", 0), 0u);
  EXPECT_NE(out.find("Connection: keep-alive\r\n"), std::string::npos);
  std::string closed;
  build_local_reply(Reason::invalid_api_key, "rid", false, closed, {}, {.http10_client = true});
  EXPECT_NE(closed.find("Connection: close\r\n"), std::string::npos);
  EXPECT_EQ(closed.find("keep-alive"), std::string::npos);
}

TEST(VersionAboveHttp11, OnlyWellFormedHigherVersions) {
  EXPECT_TRUE(version_above_http11("GET / HTTP/2.0\r\nHost: a\r\n\r\n"));
  EXPECT_TRUE(version_above_http11("GET / HTTP/1.2\r\n"));
  EXPECT_TRUE(version_above_http11("POST /x?y HTTP/3.0\r\n"));
  EXPECT_FALSE(version_above_http11("GET / HTTP/1.1\r\n"));
  EXPECT_FALSE(version_above_http11("GET / HTTP/1.0\r\n"));
  EXPECT_TRUE(version_above_http11("GET / HTTP/2"));    // refused before the line ended
  EXPECT_TRUE(version_above_http11("GET / HTTP/2.0"));
  EXPECT_FALSE(version_above_http11("GET / HTTP/1."));   // not known yet
  EXPECT_FALSE(version_above_http11("GET / HTTP/2x\r\n"));
  EXPECT_FALSE(version_above_http11("GET HTTP/2.0\r\n"));
  EXPECT_FALSE(version_above_http11("GET / XTTP/2.0\r\n"));
}

}  // namespace
}  // namespace frontdoor::http
