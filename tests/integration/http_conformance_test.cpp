// HTTP/1.x conformance of frontdoor's own behaviour (SPEC §4 step 1, the
// error table; review findings H1, L5, B1): WebSocket offers with a body,
// HTTP/1.0 clients, versions above 1.1, HEAD on local errors, per-key
// concurrency on one kept-alive connection, transfer-codings from workers,
// and how TLS connections end (close_notify).
#include <cstdio>
#include <cstdlib>

#include "support/proxy_test_base.hpp"
#include "support/tls_client.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

class HttpConformance : public ProxyTest {
 protected:
  void setup(EndpointSpec spec = {}) {
    add_default_endpoint(std::move(spec));
    add_default_key();
    start();
  }
  std::string auth_line() const { return "Authorization: Bearer " + token_ + "\r\n"; }

  // The rest of the connection after a response: nothing more, then a close.
  void expect_closed_with_nothing_more(TcpClient& c, const std::string& what) {
    bool closed = false;
    std::string rest = c.read_until_closed(3s, &closed);
    EXPECT_TRUE(closed) << what << ": connection left open";
    EXPECT_EQ(rest, "") << what << ": bytes after the answer";
  }
};

// --- H1: a WebSocket offer with a body (SPEC §4 step 6: "one with a body → 400")

TEST_F(HttpConformance, WebSocketOfferWithABodyIs400AndClosedAndNothingIsSmuggled) {
  setup();
  const std::string smuggled =
      "GET /ep1/smuggled HTTP/1.1\r\nHost: client.test\r\n" + auth_line() + "\r\n";
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send("GET /ep1/ws HTTP/1.1\r\nHost: client.test\r\n" + auth_line() +
                     "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                     "Content-Length: " +
                     std::to_string(smuggled.size()) + "\r\n\r\n" + smuggled));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_TRUE(IsFrontdoorError(*r, 400, "bad_request"));
  expect_closed_with_nothing_more(c, "WebSocket offer with a body");
  for (const auto& req : worker_.requests()) EXPECT_NE(req.path(), "/smuggled");
  expect_worker_saw_nothing_but_barrier();
}

// An offer without a body goes to the worker; a worker that answers
// anything but 101 is relayed as a normal response, and the connection goes
// on as HTTP (SPEC §4 step 6).
TEST_F(HttpConformance, WebSocketOfferAnsweredWithoutA101IsRelayedAndTheConnectionGoesOn) {
  setup();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send("GET /ep1/ws HTTP/1.1\r\nHost: client.test\r\n" + auth_line() +
                     "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_FALSE(r->header("X-Frontdoor-Error"));
  ASSERT_TRUE(c.send("GET /ep1/after HTTP/1.1\r\nHost: client.test\r\n" + auth_line() + "\r\n"));
  auto next = c.read_response();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
  auto seen = worker_.requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].path(), "/ws");
  EXPECT_EQ(seen[0].header("Upgrade"), "websocket");
  EXPECT_EQ(seen[1].path(), "/after");
  EXPECT_FALSE(seen[1].header("Upgrade"));
}

// --- L5: HTTP/1.0 clients (SPEC §4 step 1)

TEST_F(HttpConformance, Http10WithoutHostIsRoutedByPath) {
  setup();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send("GET /ep1/x HTTP/1.0\r\n" + auth_line() + "\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->raw;
  EXPECT_NE(r->body.find(R"("target":"/x")"), std::string::npos) << r->body;
  // No Host, so no X-Forwarded-Host (never an empty one); the worker's own
  // Host is still sent.
  auto seen = worker_.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].header_count("X-Forwarded-Host"), 0u);
  EXPECT_EQ(seen[0].header("Host"), worker_.authority());
}

// RFC 9110 §10.1.1: a server MUST ignore 100-continue in an HTTP/1.0 request
// (a 1.0 client would take the 100 for the final answer).
TEST_F(HttpConformance, Http10ExpectContinueGetsNo100) {
  setup();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send("POST /ep1/upload HTTP/1.0\r\nHost: client.test\r\n" + auth_line() +
                     "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
  // Nothing is due before the body: a bounded look for an early 100.
  bool early = c.readable(500ms);
  ASSERT_TRUE(c.send("hello"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_FALSE(early && r->status == 100) << "a 100 Continue went to an HTTP/1.0 client";
  EXPECT_EQ(r->status, 200) << r->raw;
}

// A 1.0 client that asked for keep-alive and is kept must be told so, on
// frontdoor's own replies too; the connection then serves the next request.
TEST_F(HttpConformance, Http10KeepAliveLocalReplySaysKeepAliveAndStaysUsable) {
  setup();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send("GET /ep1/x HTTP/1.0\r\nHost: client.test\r\nConnection: keep-alive\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_TRUE(IsFrontdoorError(*r, 401, "missing_api_key"));
  EXPECT_TRUE(iequals(r->header("Connection").value_or(""), "keep-alive")) << r->raw;
  ASSERT_TRUE(c.send("GET /ep1/y HTTP/1.0\r\nHost: client.test\r\nConnection: keep-alive\r\n" +
                     auth_line() + "\r\n"));
  auto r2 = c.read_response();
  ASSERT_TRUE(r2) << "the kept-alive 1.0 connection does not serve the next request";
  EXPECT_EQ(r2->status, 200);
  EXPECT_NE(r2->body.find(R"("target":"/y")"), std::string::npos);
}

// RFC 9110 §6.2: answers carry the server's own version, HTTP/1.1, proxied
// and local alike.
TEST_F(HttpConformance, Http10ClientsGetAnHttp11StatusLine) {
  setup();
  {
    TcpClient c(proxy_.proxy_port());
    ASSERT_TRUE(c.send("GET /ep1/x HTTP/1.0\r\nHost: client.test\r\n" + auth_line() + "\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->raw.substr(0, 9), "HTTP/1.1 ") << "proxied answer: " << r->raw.substr(0, 40);
  }
  {
    TcpClient c(proxy_.proxy_port());
    ASSERT_TRUE(c.send("GET /ep1/x HTTP/1.0\r\nHost: client.test\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(r->raw.substr(0, 9), "HTTP/1.1 ") << "local reply: " << r->raw.substr(0, 40);
  }
}

TEST_F(HttpConformance, ChunkedWorkerAnswerToHttp10IsCloseDelimited) {
  worker_.on("/chunked", Behavior::large(100000, true));
  setup();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send("GET /ep1/chunked HTTP/1.0\r\nHost: client.test\r\n" + auth_line() + "\r\n"));
  auto r = c.read_response();  // no length: read until the close
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_FALSE(r->has_header("Transfer-Encoding")) << r->raw.substr(0, 400);
  EXPECT_FALSE(r->has_header("Content-Length"));
  EXPECT_EQ(r->body.size(), 100000u);
  EXPECT_TRUE(r->body == pattern_bytes(100000));
}

// --- 505 (SPEC §4 step 1 and the error table)

TEST_F(HttpConformance, VersionsAboveHttp11Get505AndClose) {
  setup();
  for (std::string version : {"HTTP/2.0", "HTTP/1.2", "HTTP/3.0"}) {
    TcpClient c(proxy_.proxy_port());
    ASSERT_TRUE(c.send("GET /ep1/x " + version + "\r\nHost: client.test\r\n" + auth_line() + "\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r) << version;
    EXPECT_TRUE(IsFrontdoorError(*r, 505, "http_version_not_supported")) << version;
    expect_closed_with_nothing_more(c, version);
  }
  expect_worker_saw_nothing_but_barrier();
}

// --- (a) max_concurrent: 1 and strictly sequential requests on one connection

TEST_F(HttpConformance, MaxConcurrentOneNeverLimitsSequentialRequestsOnOneConnection) {
  add_default_endpoint();
  auto limited = proxy_.add_key({.id = "key_one",
                                 .endpoints = {{"*", "none"}, {"ep1", "read_write"}},
                                 .rate_limit = "{ rps: 100000, burst: 100000, max_concurrent: 1 }"});
  start();
  TcpClient c(proxy_.proxy_port());
  int limited_count = 0, other = 0;
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(c.send(build_request("GET", "/ep1/n" + std::to_string(i),
                                     {{"Host", "client.test"}, bearer(limited)})));
    auto r = c.read_response();
    ASSERT_TRUE(r) << "request " << i;
    if (r->status == 429) ++limited_count;
    else if (r->status != 200) ++other;
  }
  EXPECT_EQ(limited_count, 0) << "429 for a key whose previous request had ended";
  EXPECT_EQ(other, 0);
}

// --- (b) HEAD on frontdoor's own error replies: no body, connection in step

TEST_F(HttpConformance, HeadGetsLocalErrorsWithoutABodyOnAKeptAliveConnection) {
  FakeWorker loading;  // answers 204 on /ping: initializing, requests to ep2 queue
  loading.set_health_status(204);
  ASSERT_TRUE(loading.ok());
  add_default_endpoint();
  proxy_.add_endpoint({.id = "ep2", .workers = {loading.url()}, .queue_timeout = "300ms"});
  auto all = proxy_.add_key({.id = "key_all", .endpoints = {{"*", "read_write"}}});
  auto none = proxy_.add_key({.id = "key_none", .endpoints = {{"*", "none"}}});
  start();

  struct Case {
    std::string target;
    Headers headers;
    int status;
    const char* code;
  };
  const Case cases[] = {
      {"/ep1/x", {{"Host", "client.test"}}, 401, "missing_api_key"},
      {"/ep1/x", {{"Host", "client.test"}, bearer(none)}, 403, "insufficient_scope"},
      {"/nope/x", {{"Host", "client.test"}, bearer(all)}, 404, "endpoint_not_found"},
      {"/ep2/x", {{"Host", "client.test"}, bearer(all)}, 503, "no_worker_ready"},
  };
  TcpClient c(proxy_.proxy_port());
  for (const auto& k : cases) {
    ASSERT_TRUE(c.send(build_request("HEAD", k.target, k.headers)));
    auto r = c.read_response(/*head_request=*/true);
    ASSERT_TRUE(r) << "HEAD " << k.target << ": no answer (or the last one had a body)";
    EXPECT_EQ(r->status, k.status) << r->raw;
    EXPECT_EQ(r->header("X-Frontdoor-Error").value_or(""), k.code);
    EXPECT_FALSE(r->has_header("Connection") && iequals(*r->header("Connection"), "close"))
        << "HEAD " << k.target << " closed the connection";
    // Nothing may follow the head: the next bytes belong to the next answer.
    EXPECT_FALSE(c.readable(200ms)) << "HEAD " << k.target << " got a body: " << c.pending();
  }
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/after", {{"Host", "client.test"}, bearer(all)})));
  auto r = c.read_response();
  ASSERT_TRUE(r) << "the request after the HEADs got no proper answer";
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->body.find(R"("target":"/after")"), std::string::npos) << r->raw.substr(0, 300);
}

// --- B1: a transfer-coding other than chunked from a worker

// `Transfer-Encoding: gzip, chunked`: de-chunking and dropping the header
// would hand the client gzip bytes with nothing saying so. Either the client
// still sees the gzip coding, or frontdoor refuses the answer (502).
TEST_F(HttpConformance, GzipTransferCodingFromAWorkerIsNeverDroppedSilently) {
  const std::string gz = std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10) + "opaque";
  worker_.on("/gz", Behavior::raw_then_close(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n" +
                        chunk_encode(gz, 7)));
  setup();
  auto r = get("/ep1/gz");
  ASSERT_NE(r.status, 0) << "no answer";
  if (r.status == 502) {
    EXPECT_TRUE(IsFrontdoorError(r, 502, "worker_unavailable"));
  } else {
    EXPECT_EQ(r.status, 200);
    auto te = r.header("Transfer-Encoding").value_or("");
    EXPECT_NE(te.find("gzip"), std::string::npos)
        << "the gzip transfer-coding was dropped: the client cannot decode the body\n"
        << r.raw.substr(0, 400);
  }
}

// --- (d) TLS: a clean end sends close_notify; a cut one does not (L5)

bool make_cert(const std::string& dir) {
  return std::system(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
                      "-subj /CN=frontdoor-test -addext subjectAltName=IP:127.0.0.1 -keyout " +
                      dir + "/tls.key -out " + dir + "/tls.crt >/dev/null 2>&1")
                         .c_str()) == 0;
}

class TlsEnds : public HttpConformance {
 protected:
  void SetUp() override {
    ASSERT_TRUE(make_cert(proxy_.dir()));
    proxy_.config().extra_listeners.push_back("127.0.0.1:0\n    tls: { cert: tls.crt, key: tls.key }");
    proxy_.set_limit("idle_timeout", "500ms");
    worker_.on("/chunked", Behavior::large(5000, true));
    worker_.on("/cut", Behavior::raw_then_close(
                           "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nonly the start"));
    setup();
  }
  std::uint16_t tls_port() const { return proxy_.proxy_port(1); }

  void expect_end(TlsClient& c, TlsEnd want, const std::string& what) {
    std::string rest = c.read_until_end(3s);
    EXPECT_EQ(rest, "") << what << ": bytes after the answer";
    EXPECT_EQ(c.end(), want) << what << ": ended with " << to_string(c.end()) << " ("
                             << c.end_detail() << ")";
  }
};

TEST_F(TlsEnds, ProxiedAnswerWithConnectionCloseEndsWithCloseNotify) {
  TlsClient c(tls_port());
  ASSERT_TRUE(c.ok()) << c.error();
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/ok", auth_headers({{"Connection", "close"}}))));
  auto r = c.read_response();
  ASSERT_TRUE(r) << to_string(c.end());
  EXPECT_EQ(r->status, 200);
  expect_end(c, TlsEnd::close_notify, "Connection: close");
}

TEST_F(TlsEnds, LocalErrorThatClosesEndsWithCloseNotify) {
  TlsClient c(tls_port());
  ASSERT_TRUE(c.ok()) << c.error();
  ASSERT_TRUE(c.send("GET /ep1/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n" + auth_line() + "\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r) << to_string(c.end());
  EXPECT_EQ(r->status, 400);
  expect_end(c, TlsEnd::close_notify, "400 bad_request");
}

TEST_F(TlsEnds, KeepAliveIdleTimeoutEndsWithCloseNotify) {
  TlsClient c(tls_port());
  ASSERT_TRUE(c.ok()) << c.error();
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/ok", auth_headers())));
  auto r = c.read_response();
  ASSERT_TRUE(r) << to_string(c.end());
  EXPECT_EQ(r->status, 200);
  expect_end(c, TlsEnd::close_notify, "idle_timeout");  // 500 ms
}

TEST_F(TlsEnds, CloseDelimitedBodyToHttp10EndsWithCloseNotify) {
  TlsClient c(tls_port());
  ASSERT_TRUE(c.ok()) << c.error();
  ASSERT_TRUE(c.send("GET /ep1/chunked HTTP/1.0\r\nHost: client.test\r\n" + auth_line() + "\r\n"));
  auto r = c.read_response();  // read until the end: the end is the framing
  ASSERT_TRUE(r) << to_string(c.end());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body.size(), 5000u);
  EXPECT_EQ(c.end(), TlsEnd::close_notify)
      << "a close-delimited body ended with " << to_string(c.end()) << " (" << c.end_detail()
      << "): the client cannot tell it complete";
}

// A response cut short must not look complete: no close_notify.
TEST_F(TlsEnds, ResponseCutShortEndsWithoutCloseNotify) {
  TlsClient c(tls_port());
  ASSERT_TRUE(c.ok()) << c.error();
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/cut", auth_headers())));
  auto r = c.read_response();
  EXPECT_FALSE(r) << "a cut response was read as complete";
  EXPECT_TRUE(c.end() == TlsEnd::unexpected_eof || c.end() == TlsEnd::reset)
      << "ended with " << to_string(c.end()) << " (" << c.end_detail() << ")";
}

}  // namespace
}  // namespace frontdoor::test
