// Self-tests of the test support (no proxy): the client against the fake
// worker and the demo worker, the token maker against known values.
#include <gtest/gtest.h>
#include <signal.h>

#include <string>

#include "support/child_process.hpp"
#include "support/demo_worker_process.hpp"
#include "support/fake_worker.hpp"
#include "support/http_client.hpp"
#include "support/tokens.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

TEST(SupportSelfTest, Crc32MatchesZlib) {
  EXPECT_EQ(crc32(""), 0u);
  EXPECT_EQ(crc32("123456789"), 0xCBF43926u);
}

TEST(SupportSelfTest, TokensHaveTheSpecShape) {
  std::string t = make_rpa_token(42);
  ASSERT_EQ(t.size(), 44u);
  EXPECT_EQ(t.substr(0, 4), "rpa_");
  EXPECT_NE(with_bad_checksum(t), t);
  EXPECT_EQ(stored_hash("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_NE(fresh_rpa_token(), fresh_rpa_token());
}

TEST(SupportSelfTest, EchoAndKeepAlive) {
  FakeWorker w;
  ASSERT_TRUE(w.ok());
  TcpClient c(w.port());
  ASSERT_TRUE(c.connected());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.send(build_request("POST", "/x?i=" + std::to_string(i),
                                     {{"Host", "w"}, {"X-A", "1"}}, "hello")));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_NE(r->body.find(sha256_hex("hello")), std::string::npos);
  }
  ASSERT_TRUE(w.wait_for_requests(3, 2s));
  auto reqs = w.requests();
  EXPECT_EQ(reqs[2].target, "/x?i=2");
  EXPECT_EQ(reqs[2].body, "hello");
  EXPECT_EQ(reqs[2].header("x-a"), "1");
  EXPECT_EQ(reqs[0].connection, reqs[2].connection);
  EXPECT_EQ(w.connections_accepted(), 1);
}

TEST(SupportSelfTest, HealthProbesAreNotRecorded) {
  FakeWorker w;
  auto r = do_request(w.port(), "GET", "/ping", {{"Host", "w"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(w.health_probes(), 1u);
  EXPECT_EQ(w.request_count(), 0u);
  EXPECT_EQ(w.heads_received(), 0u);
}

TEST(SupportSelfTest, ChunkedUploadAndPipelining) {
  FakeWorker w;
  TcpClient c(w.port());
  std::string body = pattern_bytes(100000);
  std::string reqs = build_request("POST", "/a", {{"Host", "w"}, {"Transfer-Encoding", "chunked"}},
                                   chunk_encode(body, 4096)) +
                     build_request("GET", "/b", {{"Host", "w"}});
  ASSERT_TRUE(c.send(reqs));
  auto r1 = c.read_response();
  auto r2 = c.read_response();
  ASSERT_TRUE(r1 && r2);
  ASSERT_TRUE(w.wait_for_requests(2, 2s));
  auto log = w.requests();
  EXPECT_TRUE(log[0].chunked);
  EXPECT_EQ(sha256_hex(log[0].body), sha256_hex(body));
  EXPECT_EQ(log[1].target, "/b");
}

TEST(SupportSelfTest, FixedNoBodyAndHead) {
  FakeWorker w;
  w.on("/204", Behavior::fixed(204));
  w.on("/304", Behavior::fixed(304, {}, {{"ETag", "\"v1\""}}));
  w.on("/f", Behavior::fixed(201, "abc", {{"X-Frontdoor-Spoof", "1"}}));
  TcpClient c(w.port());
  ASSERT_TRUE(c.send(build_request("GET", "/204", {{"Host", "w"}})));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 204);
  ASSERT_TRUE(c.send(build_request("GET", "/304", {{"Host", "w"}})));
  r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 304);
  ASSERT_TRUE(c.send(build_request("HEAD", "/f", {{"Host", "w"}})));
  r = c.read_response(true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->header("Content-Length"), "3");
  EXPECT_EQ(r->body, "");
  ASSERT_TRUE(c.send(build_request("GET", "/f", {{"Host", "w"}})));
  r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->body, "abc");
  EXPECT_EQ(r->header("x-frontdoor-spoof"), "1");
}

TEST(SupportSelfTest, LargeBodies) {
  FakeWorker w;
  w.on("/cl", Behavior::large(3'000'000, false));
  w.on("/ch", Behavior::large(3'000'000, true));
  auto a = do_request(w.port(), "GET", "/cl", {{"Host", "w"}});
  auto b = do_request(w.port(), "GET", "/ch", {{"Host", "w"}});
  EXPECT_EQ(a.body, pattern_bytes(3'000'000));
  EXPECT_TRUE(b.chunked);
  EXPECT_EQ(b.body, pattern_bytes(3'000'000));
}

TEST(SupportSelfTest, SseChunksArriveOneByOne) {
  FakeWorker w;
  w.set_default(Behavior::sse(4, 100ms));
  TcpClient c(w.port());
  ASSERT_TRUE(c.send(build_request("GET", "/s", {{"Host", "w"}})));
  auto head = c.read_head();
  ASSERT_TRUE(head);
  EXPECT_EQ(head->header("Content-Type"), "text/event-stream");
  std::vector<TimedChunk> chunks;
  for (;;) {
    auto ch = c.read_chunk();
    ASSERT_TRUE(ch);
    if (ch->data.empty()) break;
    chunks.push_back(*ch);
  }
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(chunks[0].data, "data: {\"n\":0}\n\n");
  EXPECT_GE(chunks.back().at - chunks.front().at, 250ms);
}

TEST(SupportSelfTest, CloseAndNeverAnswerAndAbort) {
  FakeWorker w;
  w.on("/close", Behavior::close_without_answer());
  w.on("/never", Behavior::never_answer());
  w.on("/cc", Behavior::fixed(200, "x", {}));
  {
    TcpClient c(w.port());
    ASSERT_TRUE(c.send(build_request("GET", "/close", {{"Host", "w"}})));
    EXPECT_TRUE(c.wait_closed(2s));
  }
  {
    TcpClient c(w.port(), 300ms);
    ASSERT_TRUE(c.send(build_request("GET", "/never", {{"Host", "w"}})));
    EXPECT_FALSE(c.read_response());
    c.close();
    EXPECT_TRUE(w.wait_for_peer_aborts(1, 2s));
  }
  {
    Behavior b = Behavior::fixed(200, "x");
    b.connection_close = true;
    w.on("/cc", b);
    TcpClient c(w.port());
    ASSERT_TRUE(c.send(build_request("GET", "/cc", {{"Host", "w"}})));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->header("Connection"), "close");
    EXPECT_TRUE(c.wait_closed(2s));
  }
}

TEST(SupportSelfTest, StopIsBoundedWithOpenConnections) {
  auto w = std::make_unique<FakeWorker>();
  w->set_default(Behavior::never_answer());
  TcpClient c(w->port());
  ASSERT_TRUE(c.send(build_request("GET", "/x", {{"Host", "w"}})));
  ASSERT_TRUE(w->wait_for_requests(1, 2s));
  auto t0 = Clock::now();
  w.reset();
  EXPECT_LT(Clock::now() - t0, 1s);
  EXPECT_TRUE(c.wait_closed(2s));
}

// Runs the demo worker on an ephemeral port and talks to it.
TEST(SupportSelfTest, DemoWorker) {
  DemoWorkerProcess demo;
  ASSERT_TRUE(demo.ok()) << demo.process().error() << demo.process().stderr_text();
  const auto port = demo.port();

  auto ping = do_request(port, "GET", "/ping", {{"Host", "w"}});
  EXPECT_EQ(ping.status, 200);
  EXPECT_EQ(ping.body, R"({"status":"healthy"})");
  auto gen =
      do_request(port, "POST", "/generate", {{"Host", "w"}, {"Content-Type", "application/json"}},
                 R"({"prompt":"abc"})");
  EXPECT_EQ(gen.status, 200);
  EXPECT_NE(gen.body.find(R"("text":"cba")"), std::string::npos) << gen.body;
  auto sse = do_request(port, "POST", "/generate?stream=true", {{"Host", "w"}},
                        R"({"prompt":"hello world"})");
  EXPECT_EQ(sse.status, 200);
  EXPECT_TRUE(sse.chunked);
  EXPECT_NE(sse.body.find("data: [DONE]\n\n"), std::string::npos) << sse.body;
  auto sse2 =
      do_request(port, "GET", "/generate", {{"Host", "w"}, {"Accept", "text/event-stream"}});
  EXPECT_EQ(sse2.header("Content-Type"), "text/event-stream");

  ASSERT_TRUE(demo.process().send_signal(SIGTERM));
  EXPECT_EQ(demo.process().wait_exit(5s), 0);
}

TEST(SupportSelfTest, ChildProcessCapturesOutputAndExitStatus) {
  ChildProcess p;
  ASSERT_TRUE(p.spawn({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}));
  EXPECT_EQ(p.wait_exit(5s), 3);
  EXPECT_TRUE(p.wait_for_stderr("err\n", 5s));
  EXPECT_TRUE(
      p.wait_output([](const std::string& o, const std::string&) { return o == "out\n"; }, 5s));
}

}  // namespace
}  // namespace frontdoor::test
