// SPEC §4 step 1: strict framing (RFC 9112 §6.3, §11). Each malformed head
// gets 400 bad_request, the connection is closed, and nothing (in particular
// no smuggled second request) reaches the worker.
#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

class FramingTest : public ProxyTest {
 protected:
  void SetUp() override {
    add_default_endpoint();
    add_default_key();
    start();
  }

  std::string auth() const { return "Authorization: Bearer " + token_ + "\r\n"; }

  // A complete, valid request that would reach the worker if it were parsed
  // out of the bytes that follow a malformed one.
  std::string smuggled() const {
    return "GET /ep1/smuggled HTTP/1.1\r\nHost: client.test\r\n" + auth() + "\r\n";
  }

  void expect_400_and_close(const std::string& raw) {
    TcpClient c(proxy_.proxy_port());
    ASSERT_TRUE(c.send(raw));
    auto r = c.read_response();
    ASSERT_TRUE(r) << "no response to:\n" << raw;
    EXPECT_TRUE(IsFrontdoorError(*r, 400, "bad_request")) << "request:\n" << raw;
    bool closed = false;
    std::string rest = c.read_until_closed(3s, &closed);
    EXPECT_TRUE(closed) << "connection left open after 400";
    EXPECT_EQ(rest.find("HTTP/1.1"), std::string::npos) << "a second response followed:\n" << rest;
  }

  void expect_nothing_forwarded() {
    for (const auto& req : worker_.requests())
      EXPECT_EQ(req.target.find("smuggled"), std::string::npos);
    expect_worker_saw_nothing_but_barrier();
  }
};

TEST_F(FramingTest, ContentLengthAndTransferEncoding) {
  expect_400_and_close("POST /ep1/a HTTP/1.1\r\nHost: client.test\r\n" + auth() +
                       "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
                       smuggled());
  expect_400_and_close("POST /ep1/a HTTP/1.1\r\nHost: client.test\r\n" + auth() +
                       "Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" +
                       smuggled());
  expect_nothing_forwarded();
}

TEST_F(FramingTest, TwoContentLengths) {
  expect_400_and_close("POST /ep1/a HTTP/1.1\r\nHost: client.test\r\n" + auth() +
                       "Content-Length: 0\r\nContent-Length: 60\r\n\r\n" + smuggled());
  expect_400_and_close("POST /ep1/a HTTP/1.1\r\nHost: client.test\r\n" + auth() +
                       "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc");
  expect_nothing_forwarded();
}

TEST_F(FramingTest, TransferEncodingNotFinalChunked) {
  expect_400_and_close("POST /ep1/a HTTP/1.1\r\nHost: client.test\r\n" + auth() +
                       "Transfer-Encoding: gzip\r\n\r\n" + smuggled());
  expect_400_and_close("POST /ep1/a HTTP/1.1\r\nHost: client.test\r\n" + auth() +
                       "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled());
  expect_400_and_close(
      "POST /ep1/a HTTP/1.1\r\nHost: client.test\r\n" + auth() +
      "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled());
  expect_nothing_forwarded();
}

TEST_F(FramingTest, BadChunkSize) {
  expect_400_and_close("POST /ep1/a HTTP/1.1\r\nHost: client.test\r\n" + auth() +
                       "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n" + smuggled());
  // A body may already be on its way to the worker when the bad chunk is
  // seen; the worker must still never get a complete request out of it.
  for (const auto& req : worker_.requests())
    EXPECT_EQ(req.target.find("smuggled"), std::string::npos);
  auto r = get("/ep1/__barrier");
  EXPECT_EQ(r.status, 200);
  ASSERT_TRUE(worker_.wait_for_requests(1, kWait));
  EXPECT_EQ(worker_.requests()[0].target, "/__barrier");
  EXPECT_EQ(worker_.request_count(), 1u);
}

TEST_F(FramingTest, ObsFold) {
  expect_400_and_close("GET /ep1/a HTTP/1.1\r\nHost: client.test\r\n" + auth() +
                       "X-Folded: first\r\n second\r\n\r\n");
  expect_nothing_forwarded();
}

TEST_F(FramingTest, NulInFieldValue) {
  expect_400_and_close("GET /ep1/a HTTP/1.1\r\nHost: client.test\r\n" + auth() +
                       std::string("X-Nul: a\0b\r\n\r\n", 14));
  expect_nothing_forwarded();
}

TEST_F(FramingTest, BareCrInFieldValue) {
  expect_400_and_close("GET /ep1/a HTTP/1.1\r\nHost: client.test\r\n" + auth() +
                       "X-Cr: a\rb\r\n\r\n");
  expect_nothing_forwarded();
}

TEST_F(FramingTest, WhitespaceBeforeColon) {
  expect_400_and_close("GET /ep1/a HTTP/1.1\r\nHost: client.test\r\n" + auth() +
                       "X-Space : value\r\n\r\n");
  expect_400_and_close("POST /ep1/a HTTP/1.1\r\nHost: client.test\r\n" + auth() +
                       "Transfer-Encoding : chunked\r\nContent-Length: 0\r\n\r\n" + smuggled());
  expect_nothing_forwarded();
}

TEST_F(FramingTest, MissingHost) {
  expect_400_and_close("GET /ep1/a HTTP/1.1\r\n" + auth() + "\r\n");
  expect_nothing_forwarded();
}

TEST_F(FramingTest, TwoHosts) {
  expect_400_and_close("GET /ep1/a HTTP/1.1\r\nHost: client.test\r\nHost: other.test\r\n" + auth() +
                       "\r\n");
  expect_nothing_forwarded();
}

TEST_F(FramingTest, BadHostValue) {
  expect_400_and_close("GET /ep1/a HTTP/1.1\r\nHost: bad host\r\n" + auth() + "\r\n");
  expect_400_and_close("GET /ep1/a HTTP/1.1\r\nHost: a/b@c\r\n" + auth() + "\r\n");
  expect_nothing_forwarded();
}

TEST_F(FramingTest, Connect) {
  expect_400_and_close("CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n" + auth() +
                       "\r\n");
  expect_nothing_forwarded();
}

TEST_F(FramingTest, GarbageRequestLine) {
  expect_400_and_close("THIS IS NOT HTTP\r\n\r\n");
  expect_nothing_forwarded();
}

TEST_F(FramingTest, ValidChunkedRequestStillWorks) {
  // Control: the same shapes, well-formed, are proxied.
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send("POST /ep1/a HTTP/1.1\r\nHost: client.test\r\n" + auth() +
                     "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  ASSERT_TRUE(worker_.wait_for_requests(1, kWait));
  EXPECT_EQ(worker_.requests()[0].body, "hello");
}

}  // namespace
}  // namespace frontdoor::test
