// SPEC §4 step 6: bodies stream both ways; keep-alive, pipelining, HEAD,
// 204/304, Expect: 100-continue, and a client that goes away mid-stream.
#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

constexpr std::size_t k20MB = 20u * 1024 * 1024;

class StreamingTest : public ProxyTest {
 protected:
  void SetUp() override {
    add_default_endpoint();
    add_default_key();
  }
};

TEST_F(StreamingTest, SseEventsArriveOneByOne) {
  constexpr int kEvents = 5;
  constexpr auto kInterval = 200ms;
  worker_.set_default(Behavior::sse(kEvents, kInterval));
  start();
  TcpClient c(proxy_.proxy_port());
  auto sent_at = Clock::now();
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/generate?stream=true",
                                   auth_headers({{"Accept", "text/event-stream"}}))));
  auto head = c.read_head();
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->header("Content-Type"), "text/event-stream");
  ASSERT_TRUE(head->chunked) << head->raw;  // the proxy re-frames, the stream stays chunked

  std::string expected;
  for (int i = 0; i < kEvents; ++i) expected += "data: {\"n\":" + std::to_string(i) + "}\n\n";
  std::string got;
  std::optional<Clock::time_point> first, last;
  while (got.size() < expected.size()) {
    auto ch = c.read_chunk();
    ASSERT_TRUE(ch) << "stream broke after " << got.size() << " bytes";
    ASSERT_FALSE(ch->data.empty()) << "stream ended early: " << got;
    if (!first) first = ch->at;
    last = ch->at;
    got += ch->data;
  }
  auto end = c.read_chunk();
  ASSERT_TRUE(end);
  EXPECT_TRUE(end->data.empty());
  EXPECT_EQ(got, expected);
  // The worker needs (kEvents - 1) * kInterval = 800 ms: the first event must
  // be seen long before the last one is even written, and the events must
  // spread over about that time (not buffered and flushed at the end).
  EXPECT_LT(*first - sent_at, 500ms);
  EXPECT_GT(*last - *first, 600ms);
}

TEST_F(StreamingTest, Upload20MBWithContentLength) {
  start();
  const std::string body = pattern_bytes(k20MB, 7);
  auto r = proxy_.request("POST", "/ep1/upload",
                          auth_headers({{"Content-Type", "application/octet-stream"}}), body, 30s);
  ASSERT_EQ(r.status, 200) << r.raw.substr(0, 500);
  ASSERT_TRUE(worker_.wait_for_requests(1, kWait));
  auto req = worker_.requests()[0];
  EXPECT_EQ(req.body.size(), body.size());
  EXPECT_EQ(sha256_hex(req.body), sha256_hex(body));
}

TEST_F(StreamingTest, Upload20MBChunked) {
  start();
  const std::string body = pattern_bytes(k20MB, 8);
  auto r = proxy_.request("POST", "/ep1/upload", auth_headers({{"Transfer-Encoding", "chunked"}}),
                          chunk_encode(body, 100000), 30s);
  ASSERT_EQ(r.status, 200) << r.raw.substr(0, 500);
  ASSERT_TRUE(worker_.wait_for_requests(1, kWait));
  auto req = worker_.requests()[0];
  EXPECT_EQ(req.body.size(), body.size());
  EXPECT_EQ(sha256_hex(req.body), sha256_hex(body));
}

TEST_F(StreamingTest, Download20MB) {
  worker_.on("/cl", Behavior::large(k20MB, false));
  worker_.on("/chunked", Behavior::large(k20MB, true));
  start();
  const std::string expected_sha = sha256_hex(pattern_bytes(k20MB));
  for (const char* path : {"/ep1/cl", "/ep1/chunked"}) {
    auto r = proxy_.request("GET", path, auth_headers(), {}, 30s);
    ASSERT_EQ(r.status, 200) << path;
    EXPECT_EQ(r.body.size(), k20MB) << path;
    EXPECT_EQ(sha256_hex(r.body), expected_sha) << path;
  }
}

TEST_F(StreamingTest, HeadRequest) {
  worker_.set_default(Behavior::fixed(200, "hello", {{"Content-Type", "text/plain"}}));
  start();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("HEAD", "/ep1/x", auth_headers())));
  auto r = c.read_response(true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(r->body.empty());
  if (auto cl = r->header("Content-Length")) {
    EXPECT_EQ(*cl, "5");
  }
  // No stray body bytes: the next response on this connection parses.
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/y", auth_headers())));
  auto r2 = c.read_response();
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->status, 200);
  EXPECT_EQ(r2->body, "hello");
  ASSERT_TRUE(worker_.wait_for_requests(2, kWait));
  EXPECT_EQ(worker_.requests()[0].method, "HEAD");
}

TEST_F(StreamingTest, NoContentAndNotModified) {
  worker_.on("/204", Behavior::fixed(204));
  worker_.on("/304", Behavior::fixed(304, {}, {{"ETag", "\"v1\""}}));
  start();
  TcpClient c(proxy_.proxy_port());
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE(c.send(build_request("GET", "/ep1/204", auth_headers())));
    auto a = c.read_response();
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, 204);
    EXPECT_FALSE(a->has_header("Transfer-Encoding"));
    ASSERT_TRUE(
        c.send(build_request("GET", "/ep1/304", auth_headers({{"If-None-Match", "\"v1\""}}))));
    auto b = c.read_response();
    ASSERT_TRUE(b);
    EXPECT_EQ(b->status, 304);
    EXPECT_EQ(b->header("ETag"), "\"v1\"");
    EXPECT_FALSE(b->has_header("Transfer-Encoding"));
  }
  // Nothing was left on the connection after those bodiless responses.
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/echo", auth_headers())));
  auto e = c.read_response();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->status, 200);
}

TEST_F(StreamingTest, Expect100Continue) {
  start();
  TcpClient c(proxy_.proxy_port());
  Headers h = auth_headers({{"Expect", "100-continue"}, {"Content-Length", "11"}});
  ASSERT_TRUE(c.send(build_request("POST", "/ep1/generate", h)));
  auto interim = c.read_response();
  ASSERT_TRUE(interim) << "no 100 Continue before the body was sent";
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(c.send("hello world"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  ASSERT_TRUE(worker_.wait_for_requests(1, kWait));
  EXPECT_EQ(worker_.requests()[0].body, "hello world");
}

TEST_F(StreamingTest, HundredRequestsOnOneConnection) {
  start();
  TcpClient c(proxy_.proxy_port());
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(c.send(build_request("GET", "/ep1/n/" + std::to_string(i), auth_headers())));
    auto r = c.read_response();
    ASSERT_TRUE(r) << "request " << i;
    ASSERT_EQ(r->status, 200) << "request " << i;
    ASSERT_NE(r->body.find("\"/n/" + std::to_string(i) + "\""), std::string::npos) << r->body;
  }
  EXPECT_TRUE(worker_.wait_for_requests(100, kWait));
}

TEST_F(StreamingTest, PipelinedRequestsAnsweredInOrder) {
  start();
  TcpClient c(proxy_.proxy_port());
  std::string batch;
  for (const char* p : {"/ep1/first", "/ep1/second", "/ep1/third"})
    batch += build_request("GET", p, auth_headers());
  ASSERT_TRUE(c.send(batch));
  for (const char* want : {"\"/first\"", "\"/second\"", "\"/third\""}) {
    auto r = c.read_response();
    ASSERT_TRUE(r) << want;
    EXPECT_EQ(r->status, 200);
    EXPECT_NE(r->body.find(want), std::string::npos) << want << " vs " << r->body;
  }
}

TEST_F(StreamingTest, ClientDisconnectMidStreamClosesWorkerConnection) {
  worker_.set_default(Behavior::sse(100, 100ms));  // 10 s if nobody stops it
  start();
  {
    TcpClient c(proxy_.proxy_port());
    ASSERT_TRUE(c.send(build_request("GET", "/ep1/generate?stream=true", auth_headers())));
    auto head = c.read_head();
    ASSERT_TRUE(head);
    ASSERT_EQ(head->status, 200);
    ASSERT_TRUE(c.read_chunk());
  }  // the client goes away
  EXPECT_TRUE(worker_.wait_for_peer_aborts(1, 3s)) << "the worker's stream was not cut";
}

TEST_F(StreamingTest, WorkerConnectionCloseIsHandled) {
  Behavior b = Behavior::fixed(200, "bye");
  b.connection_close = true;
  worker_.set_default(b);
  start();
  for (int i = 0; i < 3; ++i) {
    auto r = get("/ep1/x");
    EXPECT_EQ(r.status, 200) << "request " << i << "\n" << r.raw;
    EXPECT_EQ(r.body, "bye");
  }
  EXPECT_TRUE(worker_.wait_for_requests(3, kWait));
  EXPECT_GE(worker_.connections_accepted(), 3);
}

}  // namespace
}  // namespace frontdoor::test
