// Regression tests for the request path under faults (review of 7771392,
// /work/shared/reviews/request-path-review.md): queued requests that time out
// (C1), workers going away under load, endless chunk lines and trailers (H2),
// early worker answers (H5, M1), stray bytes on pooled connections (L4),
// half-closed and vanishing clients (L6). Every test runs the real binary
// against fake workers; the fixture's TearDown fails a test whose frontdoor
// crashed (a sanitizer's abort included) or does not exit 0 on SIGTERM.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

constexpr std::size_t kMiB = 1024 * 1024;

// SPEC §4 step 7: 503 no_worker_ready with Retry-After in whole seconds.
::testing::AssertionResult IsNoWorkerReady(const HttpResponse& r) {
  auto e = IsFrontdoorError(r, 503, "no_worker_ready");
  if (!e) return e;
  auto ra = r.header("Retry-After");
  if (!ra || ra->empty() || ra->find_first_not_of("0123456789") != std::string::npos)
    return ::testing::AssertionFailure() << "Retry-After missing or not whole seconds\n" << r.raw;
  return ::testing::AssertionSuccess();
}

class RequestFaults : public ProxyTest {
 protected:
  std::string auth_line() const { return "Authorization: Bearer " + token_ + "\r\n"; }

  // A POST with a JSON body, as an inference client sends it.
  std::string json_post(const std::string& target, const std::string& token) const {
    return build_request("POST", target,
                         {{"Host", "client.test"}, bearer(token), {"Content-Type", "application/json"}},
                         R"({"model":"m","prompt":"hello","max_tokens":16})");
  }

  // ep1 on worker_, which only ever answers 204 on its health path
  // (initializing, as vLLM does while it loads a model): requests queue.
  void setup_initializing(std::string queue_timeout = "300ms") {
    worker_.set_health_status(204);
    add_default_endpoint({.queue_timeout = std::move(queue_timeout), .health_interval = "200ms"});
    add_default_key();
    admin_token_ = proxy_.add_key({.id = "key_admin", .management = "read"});
    start();
  }

  bool wait_queue_length(std::int64_t n, std::chrono::milliseconds timeout) {
    return wait_for_endpoint(
        proxy_, admin_token_, "ep1",
        [n](const boost::json::object& ep) { return json_int(ep, "queue_length") == n; }, timeout);
  }

  std::string admin_token_;
};

// --- C1: a queued request with a body (or pipelined bytes) that times out

// Fails on 7771392: use after free in Session::reply from Session::on_sweep
// (frontdoor segfaults, or under ASan reports heap-use-after-free).
TEST_F(RequestFaults, QueuedPostTimesOutWith503) {
  setup_initializing();
  TcpClient c(proxy_.proxy_port(), 3s);
  ASSERT_TRUE(c.send(json_post("/ep1/v1/completions", token_)));
  auto r = c.read_response();
  ASSERT_TRUE(r) << "no answer to a queued POST; frontdoor running: " << proxy_.running();
  EXPECT_TRUE(IsNoWorkerReady(*r));
  EXPECT_EQ(worker_.heads_received(), 0u);
  // Still serving: the same again on a new connection.
  EXPECT_TRUE(IsNoWorkerReady(proxy_.request("POST", "/ep1/v1/completions",
                                             auth_headers({{"Content-Type", "application/json"}}),
                                             R"({"prompt":"again"})", 3s)));
  EXPECT_TRUE(proxy_.running());
}

// While a request waits in the queue, frontdoor reads ahead to notice a
// client that leaves. A 503 that consumes the (complete) body keeps the
// connection; the next request, read by that same pending read, must be
// parsed where it landed. With a buffer that rewinds on a full consume, it
// was read at the old offset and parsed as garbage (400): soak --outage.
TEST_F(RequestFaults, RequestAfterAQueuedPostsTimeoutIsParsedWhole) {
  setup_initializing();
  TcpClient c(proxy_.proxy_port(), 3s);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.send(json_post("/ep1/v1/completions", token_)));
    auto r = c.read_response();
    ASSERT_TRUE(r) << "no answer to queued POST " << i;
    EXPECT_TRUE(IsNoWorkerReady(*r)) << "request " << i << ": " << r->raw;
  }
  EXPECT_EQ(worker_.heads_received(), 0u);
}

// Two GETs sent in one go while the first waits in the queue: no read is
// armed (bytes are pending), the same path as a body.
TEST_F(RequestFaults, PipelinedGetsWhileQueuedEachGet503) {
  setup_initializing();
  TcpClient c(proxy_.proxy_port(), 3s);
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/a", auth_headers()) +
                     build_request("GET", "/ep1/b", auth_headers())));
  auto first = c.read_response();
  ASSERT_TRUE(first) << "no answer to the first pipelined GET; frontdoor running: "
                     << proxy_.running();
  EXPECT_TRUE(IsNoWorkerReady(*first));
  auto second = c.read_response();
  ASSERT_TRUE(second) << "no answer to the second pipelined GET";
  EXPECT_TRUE(IsNoWorkerReady(*second));
  EXPECT_EQ(worker_.heads_received(), 0u);
  EXPECT_TRUE(proxy_.running());
}

// The queued request held its key's only concurrent slot: the timeout must
// give it back, so the next request is queued again (503), never 429.
TEST_F(RequestFaults, QueueTimeoutReleasesTheKeysConcurrencySlot) {
  worker_.set_health_status(204);
  add_default_endpoint({.queue_timeout = "300ms", .health_interval = "200ms"});
  auto limited = proxy_.add_key({.id = "key_limited",
                                 .endpoints = {{"*", "none"}, {"ep1", "read_write"}},
                                 .rate_limit = "{ rps: 1000, burst: 1000, max_concurrent: 1 }"});
  start();
  for (int i = 0; i < 3; ++i) {
    TcpClient c(proxy_.proxy_port(), 3s);
    ASSERT_TRUE(c.send(json_post("/ep1/v1/completions", limited)));
    auto r = c.read_response();
    ASSERT_TRUE(r) << "request " << i << ": no answer; frontdoor running: " << proxy_.running();
    EXPECT_TRUE(IsNoWorkerReady(*r)) << "request " << i;
  }
  EXPECT_TRUE(proxy_.running());
}

// --- workers going away under POST load

// Three workers stop for longer than queue.timeout while 8 clients keep
// POSTing: queued POSTs time out (C1), connects fail, passive health marks
// the workers unhealthy. Every client gets a well-formed 200/502/503, and
// frontdoor is still up (and serving again) once the workers are back.
TEST_F(RequestFaults, WorkerOutageUnderPostLoadKeepsFrontdoorUp) {
  FakeWorker w2, w3;
  ASSERT_TRUE(w2.ok() && w3.ok());
  add_default_endpoint({.workers = {worker_.url(), w2.url(), w3.url()},
                        .connect = "300ms",
                        .queue_timeout = "3s",
                        .health_interval = "200ms",
                        .health_timeout = "200ms",
                        .unhealthy_after = 1});
  add_default_key();
  start();
  FakeWorker* workers[] = {&worker_, &w2, &w3};

  const auto t0 = Clock::now();
  const auto load_end = t0 + 4500ms;
  std::atomic<int> ok{0}, failed{0}, bad{0};
  std::mutex bad_mu;
  std::string bad_example;
  std::vector<std::thread> clients;
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&, i] {
      for (int n = 0; Clock::now() < load_end; ++n) {
        auto r = proxy_.request("POST", "/ep1/v1/completions",
                                auth_headers({{"Content-Type", "application/json"}}),
                                R"({"client":)" + std::to_string(i) + R"(,"n":)" + std::to_string(n) + "}",
                                6s);
        if (r.status == 200) {
          ++ok;
        } else if ((r.status == 502 && IsFrontdoorError(r, 502, "worker_unavailable")) ||
                   (r.status == 503 && IsNoWorkerReady(r))) {
          ++failed;
        } else {
          ++bad;
          std::lock_guard lk(bad_mu);
          if (bad_example.empty())
            bad_example = r.status == 0 ? "no (complete) response" : r.raw.substr(0, 500);
        }
        if (r.status == 0) std::this_thread::sleep_for(20ms);  // do not spin on a dead server
      }
    });
  }
  std::this_thread::sleep_until(t0 + 500ms);
  for (auto* w : workers) w->stop();
  std::this_thread::sleep_until(t0 + 4000ms);  // 3.5 s: longer than queue.timeout
  for (auto* w : workers) EXPECT_TRUE(w->restart());
  for (auto& t : clients) t.join();

  EXPECT_EQ(bad.load(), 0) << "first bad answer: " << bad_example;
  EXPECT_GT(ok.load(), 0);
  EXPECT_GT(failed.load(), 0) << "the outage was not seen at all";
  ASSERT_TRUE(proxy_.running()) << "frontdoor died during the outage";
  // Back to normal once a worker is ready again.
  const auto deadline = Clock::now() + 5s;
  int status = 0;
  while (Clock::now() < deadline && (status = get("/ep1/after").status) != 200)
    std::this_thread::sleep_for(100ms);  // a state to observe: health probes bring them back
  EXPECT_EQ(status, 200);
}

// --- H2: endless chunk-size lines and trailer sections

// Sends `head`, then `unit` again and again (up to `total` bytes) while
// watching for an answer; stops at the first answer, a failed send (the
// server closed) or a send that cannot proceed for 2 s. Returns the bytes of
// units sent.
std::size_t flood(TcpClient& c, const std::string& head, const std::string& unit,
                  std::size_t total) {
  c.set_timeout(2s);
  if (!c.send(head)) return 0;
  std::size_t sent = 0;
  while (sent < total) {
    if (c.readable(0ms)) break;
    if (!c.send(unit)) break;
    sent += unit.size();
  }
  c.set_timeout(3s);
  return sent;
}

class RequestFloodTest : public RequestFaults {
 protected:
  void SetUp() override {
    add_default_endpoint();
    add_default_key();
    start();
    // A first exchange, so that the baseline includes the buffers every
    // request uses.
    ASSERT_EQ(get("/ep1/warm").status, 200);
    peak_before_ = proxy_.memory_kib("VmHWM");
    ASSERT_GT(peak_before_, 0);
  }

  void expect_rejected_and_bounded(TcpClient& c, std::size_t sent, const char* what) {
    // The server stopped reading soon after its limit: what got through is
    // what the kernel buffers on both sides hold, far below the 50 MiB.
    EXPECT_LT(sent, 16 * kMiB) << what << ": the server kept reading";
    expect_memory_bounded(what);
    auto r = c.read_response();
    ASSERT_TRUE(r) << what << ": no answer after " << sent / kMiB << " MiB of it";
    EXPECT_TRUE(r->status == 400 || r->status == 413 || r->status == 431) << r->raw;
    EXPECT_TRUE(r->has_header("X-Frontdoor-Error")) << r->raw;
    EXPECT_TRUE(c.wait_closed(3s)) << what << ": connection left open";
  }

  void expect_memory_bounded(const char* what) {
    auto peak = proxy_.memory_kib("VmHWM");
    EXPECT_LT(peak - peak_before_, 8 * 1024)
        << what << ": frontdoor's peak RSS grew from " << peak_before_ << " KiB to " << peak << " KiB";
  }

  // GET /ep1/flood, whose worker sends an endless chunk line or trailer
  // section: seen before the head went out, frontdoor answers 502 itself (the
  // connection may stay open: the request was read whole); seen after, the
  // client's connection ends (its answer cannot be completed). Either way
  // frontdoor stops reading the worker and its memory stays bounded.
  void expect_cut_or_502(const char* what) {
    TcpClient c(proxy_.proxy_port());
    ASSERT_TRUE(c.send(build_request("GET", "/ep1/flood", auth_headers())));
    auto head = c.read_head();
    if (head && head->status == 502) {
      EXPECT_EQ(head->header("X-Frontdoor-Error").value_or(""), "worker_unavailable") << head->raw;
    } else {
      if (head) {
        EXPECT_EQ(head->status, 200) << head->raw;
      }
      EXPECT_TRUE(c.wait_closed(5s)) << what << ": client connection left open";
    }
    // The flood ends because frontdoor closed the worker's connection.
    EXPECT_TRUE(worker_.wait_for_peer_aborts(1, 5s)) << what << ": worker connection kept";
    EXPECT_LT(worker_.flood_bytes_sent(), 40 * kMiB) << what << ": frontdoor kept reading the worker";
    expect_memory_bounded(what);
    EXPECT_TRUE(proxy_.running());
  }

  std::string chunked_head(const std::string& target) const {
    return "POST " + target + " HTTP/1.1\r\nHost: client.test\r\n" + auth_line() +
           "Transfer-Encoding: chunked\r\n\r\n";
  }

  long peak_before_ = 0;
};

// Fails on 7771392: all 50 MiB are read into the input buffer, no answer.
TEST_F(RequestFloodTest, EndlessChunkSizeLineIsRejectedWithBoundedMemory) {
  TcpClient c(proxy_.proxy_port());
  auto sent = flood(c, chunked_head("/ep1/upload") + "1;", std::string(64 * 1024, 'a'), 50 * kMiB);
  expect_rejected_and_bounded(c, sent, "endless chunk extension");
  EXPECT_TRUE(proxy_.running());
}

TEST_F(RequestFloodTest, EndlessTrailerSectionIsRejectedWithBoundedMemory) {
  std::string unit;
  while (unit.size() < 64 * 1024) unit += "X-Trailer-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
  TcpClient c(proxy_.proxy_port());
  auto sent = flood(c, chunked_head("/ep1/upload") + "5\r\nhello\r\n0\r\n", unit, 50 * kMiB);
  expect_rejected_and_bounded(c, sent, "endless trailer section");
  EXPECT_TRUE(proxy_.running());
}

// The same from a worker: the client's connection ends (its response cannot
// be completed), the worker's is closed, memory stays bounded.
TEST_F(RequestFloodTest, EndlessChunkSizeLineFromWorkerIsCutWithBoundedMemory) {
  worker_.on("/flood", Behavior::flood("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;",
                                       std::string(64 * 1024, 'a'), 50 * kMiB));
  expect_cut_or_502("endless chunk line from the worker");
}

TEST_F(RequestFloodTest, EndlessTrailersFromWorkerAreCutWithBoundedMemory) {
  std::string unit;
  while (unit.size() < 64 * 1024) unit += "X-Trailer-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
  worker_.on("/flood", Behavior::flood(
                           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
                           unit, 50 * kMiB));
  expect_cut_or_502("endless trailers from the worker");
}

// --- H5, M1: a worker that answers before the request body is complete

// Sends a request head with Content-Length `size`, then the body, on its own
// thread (the test reads the answer meanwhile). blocked() turns true once the
// upload has stopped moving: every buffer between it and the worker is full,
// so frontdoor's write to the worker is pending.
class Uploader {
 public:
  Uploader(TcpClient& c, std::string head, std::size_t size)
      : thread_([this, &c, head = std::move(head), size] {
          if (!c.send(head)) return;
          std::string block(64 * 1024, 'x');
          for (std::size_t n = 0; n < size && c.send(block); n += block.size())
            sent_ += block.size();
        }) {}
  ~Uploader() { thread_.join(); }

  bool wait_blocked(std::chrono::milliseconds timeout) const {
    const auto deadline = Clock::now() + timeout;
    std::size_t last = sent_.load();
    auto still_since = Clock::now();
    while (Clock::now() < deadline) {
      std::this_thread::sleep_for(20ms);  // a rate to observe, not an event
      const std::size_t now = sent_.load();
      if (now != last) {
        last = now;
        still_since = Clock::now();
      } else if (now >= kMiB && Clock::now() - still_since >= 300ms) {
        return true;
      }
    }
    return false;
  }

 private:
  std::atomic<std::size_t> sent_{0};
  std::thread thread_;
};

// The worker answers 200 with a 32 MiB body as soon as it has the head; the
// client reads the head only (the relay write to it then stays pending) and
// sends a malformed chunk. The client must see the worker's bytes intact,
// then a close: no 400 written on top of (or after) the 200.
TEST_F(RequestFaults, BadChunkAfterAnEarlyAnswerNeverSplicesA400IntoIt) {
  constexpr std::size_t kSize = 32 * kMiB;
  Behavior early = Behavior::large(kSize, false);
  early.answer_before_body = true;
  worker_.on("/upload", early);
  add_default_endpoint();
  add_default_key();
  start();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send("POST /ep1/upload HTTP/1.1\r\nHost: client.test\r\n" + auth_line() +
                     "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"));
  auto head = c.read_head();
  ASSERT_TRUE(head);
  ASSERT_EQ(head->status, 200);
  ASSERT_EQ(head->header("Content-Length"), std::to_string(kSize));
  ASSERT_TRUE(c.send("zz\r\nnot a chunk\r\n"));
  bool closed = false;
  std::string rest = c.read_until_closed(10s, &closed);
  EXPECT_TRUE(closed) << "connection left open after the bad chunk";
  EXPECT_LE(rest.size(), kSize) << "bytes after the end of the 200's body: "
                                << rest.substr(kSize, 300);
  const std::string want = pattern_bytes(kSize);
  auto n = std::min(rest.size(), kSize);
  auto mismatch = std::mismatch(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(n), want.begin());
  if (mismatch.first != rest.begin() + static_cast<std::ptrdiff_t>(n)) {
    auto at = static_cast<std::size_t>(mismatch.first - rest.begin());
    ADD_FAILURE() << "the 200's body is corrupted at byte " << at << " of " << rest.size()
                  << "; there: " << rest.substr(at, 200);
  }
  EXPECT_TRUE(proxy_.running());
}

// M1: the worker rejects a large upload at once (413, Connection: close) and
// closes with the body unread, so frontdoor's pending write fails. The client
// gets the worker's 413, not a 502 of frontdoor's own.
// Full duplex: the worker answers 2 MiB as soon as the head arrives and
// reads the 8 MiB upload meanwhile. Both pumps run at once; each must
// consume only its own bytes (the first rewrite shared one counter: the
// client got more bytes than Content-Length said, the worker a corrupted
// body). The connection then serves the next request.
TEST_F(RequestFaults, UploadAndEarlyStreamedAnswerRunBothWaysIntact) {
  Behavior duplex = Behavior::large(2 * kMiB, false);
  duplex.answer_before_body = true;
  worker_.on("/duplex", duplex);
  add_default_endpoint();
  add_default_key();
  start();
  TcpClient c(proxy_.proxy_port(), 10s);
  const std::size_t size = 8 * kMiB;
  std::optional<HttpResponse> r;
  {
    Uploader up(c, "POST /ep1/duplex HTTP/1.1\r\nHost: client.test\r\n" + auth_line() +
                       "Content-Length: " + std::to_string(size) + "\r\n\r\n",
                size);
    r = c.read_response();
  }
  ASSERT_TRUE(r) << "no answer";
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body.size(), 2 * kMiB);
  EXPECT_TRUE(r->body == pattern_bytes(2 * kMiB)) << "the answer was altered";
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/after", auth_headers())));
  auto next = c.read_response();
  ASSERT_TRUE(next) << "the connection did not survive the exchange";
  EXPECT_EQ(next->status, 200) << next->raw.substr(0, 300);
}

TEST_F(RequestFaults, EarlyRejectionOfAnUploadIsRelayedNot502) {
  Behavior reject = Behavior::fixed(413, R"({"detail":"request too large"})",
                                    {{"Content-Type", "application/json"}});
  reject.answer_before_body = true;
  reject.connection_close = true;
  reject.linger = 300ms;
  reject.held = true;  // answers once frontdoor's write of the body is pending
  worker_.on("/upload", reject);
  add_default_endpoint();
  add_default_key();
  start();
  TcpClient c(proxy_.proxy_port(), 3s);
  const std::size_t size = 256 * kMiB;
  std::optional<HttpResponse> r;
  {
    Uploader up(c, "POST /ep1/upload HTTP/1.1\r\nHost: client.test\r\n" + auth_line() +
                       "Content-Length: " + std::to_string(size) + "\r\n\r\n",
                size);
    EXPECT_TRUE(up.wait_blocked(5s)) << "premise: the upload never blocked";
    worker_.release();
    r = c.read_response();
  }
  ASSERT_TRUE(r) << "no answer";
  EXPECT_EQ(r->status, 413) << r->raw.substr(0, 500);
  EXPECT_EQ(r->body, R"({"detail":"request too large"})");
  EXPECT_FALSE(r->has_header("X-Frontdoor-Error")) << "frontdoor's own error, not the worker's";
  EXPECT_EQ(worker_.heads_received(), 1u);
}

// M1 / SPEC §4 step 7: a GET is retried on a reused pooled connection only
// "before any response byte". Here the worker answered (a complete head)
// before failing the write of the GET's large body: no second attempt.
TEST_F(RequestFaults, GetWithBodyIsNotRetriedOnceResponseBytesArrived) {
  Behavior early = Behavior::fixed(200, "early answer");
  early.answer_before_body = true;
  early.connection_close = true;
  early.linger = 300ms;
  early.held = true;  // as above: the answer arrives during a pending write
  worker_.on("/early", early);
  proxy_.config().threads = 1;  // one pool: the second request reuses the first's connection
  add_default_endpoint({.retries = 1});
  add_default_key();
  start();
  TcpClient c(proxy_.proxy_port(), 3s);
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/warm", auth_headers())));
  auto warm = c.read_response();
  ASSERT_TRUE(warm);
  ASSERT_EQ(warm->status, 200);

  const std::size_t size = 256 * kMiB;
  std::optional<HttpResponse> r;
  {
    Uploader up(c, "GET /ep1/early HTTP/1.1\r\nHost: client.test\r\n" + auth_line() +
                       "Content-Length: " + std::to_string(size) + "\r\n\r\n",
                size);
    EXPECT_TRUE(up.wait_blocked(5s)) << "premise: the upload never blocked";
    worker_.release();
    r = c.read_response();
  }
  ASSERT_TRUE(r) << "no answer";
  std::size_t attempts = 0;
  int warm_connection = -1, early_connection = -1;
  for (const auto& req : worker_.requests()) {
    if (req.path() == "/warm") warm_connection = req.connection;
    if (req.path() == "/early" && attempts++ == 0) early_connection = req.connection;
  }
  EXPECT_EQ(early_connection, warm_connection) << "premise: the GET did not reuse the pooled connection";
  EXPECT_EQ(attempts, 1u) << "the GET was sent again after the worker had answered";
  EXPECT_EQ(r->status, 200) << r->raw.substr(0, 500);
  EXPECT_EQ(r->body, "early answer");
}

// --- L4: stray bytes after a complete response on a pooled connection

TEST_F(RequestFaults, StrayBytesOnAPooledConnectionNeverAnswerTheNextRequest) {
  Behavior first = Behavior::fixed(200, "first");
  first.after_bytes = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstolen";
  first.after_delay = 50ms;  // after frontdoor has pooled the connection
  worker_.on("/first", first);
  proxy_.config().threads = 1;
  add_default_endpoint();
  add_default_key();
  start();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/first", auth_headers())));
  auto r1 = c.read_response();
  ASSERT_TRUE(r1);
  ASSERT_EQ(r1->body, "first");
  ASSERT_TRUE(worker_.wait_for_after_bytes(1, kWait));

  ASSERT_TRUE(c.send(build_request("GET", "/ep1/second", auth_headers())));
  auto r2 = c.read_response();
  ASSERT_TRUE(r2);
  EXPECT_NE(r2->body, "stolen") << "the stray bytes were taken for the next answer";
  EXPECT_EQ(r2->status, 200);
  EXPECT_NE(r2->body.find(R"("target":"/second")"), std::string::npos) << r2->raw;
}

// --- L6: half-closed clients, stalled uploads, clients leaving the queue

// A worker that stops reading an upload: the client is not to blame, so not
// 408 "request head not received in time": 504 worker_timeout after
// timeouts.idle without progress.
TEST_F(RequestFaults, StalledUploadGets504NotRequestTimeout) {
  worker_.on("/upload", Behavior::stall());
  add_default_endpoint({.idle = "500ms"});
  add_default_key();
  start();
  TcpClient c(proxy_.proxy_port(), 3s);
  const std::size_t size = 32 * kMiB;
  std::thread sender([&] {
    c.send("POST /ep1/upload HTTP/1.1\r\nHost: client.test\r\n" + auth_line() +
           "Content-Length: " + std::to_string(size) + "\r\n\r\n");
    std::string block(256 * 1024, 'x');
    for (std::size_t sent = 0; sent < size && c.send(block); sent += block.size()) {
    }
  });
  c.set_timeout(5s);
  auto r = c.read_response();
  sender.join();
  ASSERT_TRUE(r) << "no answer";
  EXPECT_TRUE(IsFrontdoorError(*r, 504, "worker_timeout"));
}

// SPEC §4 step 7: a client that goes away leaves the queue at once, also
// when its request has a body; the worker never gets it.
TEST_F(RequestFaults, QueuedPostLeavesTheQueueWhenItsClientLeaves) {
  setup_initializing("5s");
  {
    TcpClient c(proxy_.proxy_port());
    ASSERT_TRUE(c.send(json_post("/ep1/v1/completions", token_)));
    ASSERT_TRUE(wait_queue_length(1, kWait)) << "the POST is not queued";
  }  // the client leaves
  EXPECT_TRUE(wait_queue_length(0, 1500ms)) << "the POST stayed queued after its client left";
  worker_.set_health_status(200);
  ASSERT_TRUE(proxy_.wait_for_worker_state(worker_.authority(), "ready", kWait));
  expect_worker_saw_nothing_but_barrier();
}

// --- M2 / SPEC §6: every request gets exactly one access-log line, also one
// that ends early; `status` is what the client got (499: nothing yet).

class AccessLogEnds : public RequestFaults {
 protected:
  void SetUp() override {
    proxy_.config().threads = 1;  // one log buffer: a later line means earlier ones are out
    worker_.on("/stream", Behavior::sse(100, 100ms));
    Behavior slow = Behavior::fixed(200, "late");
    slow.first_byte_delay = 3s;
    worker_.on("/slow", slow);
    worker_.on("/cut", Behavior::raw_then_close("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"));
    worker_.on("/pause", Behavior::sse(2, 3s));  // one event, then 3 s of silence
  }

  Headers with_id(const std::string& id) const { return auth_headers({{"X-Request-Id", id}}); }

  // Waits for the line of `id`, then for the line of a request made after
  // it, and returns every line of `id` (so a duplicate would show).
  std::vector<boost::json::object> lines_of(const std::string& id) {
    auto is = [&](const std::string& want) {
      return [want](const boost::json::object& o) { return json_str(o, "request_id") == want; };
    };
    EXPECT_TRUE(proxy_.wait_for_access_log_line(is(id), 1, 3s)) << "no access-log line for " << id;
    if (proxy_.running()) {
      const std::string barrier = id + "-barrier";
      EXPECT_EQ(proxy_.request("GET", "/ep1/barrier", with_id(barrier)).status, 200);
      EXPECT_TRUE(proxy_.wait_for_access_log_line(is(barrier), 1, 3s));
    }
    std::vector<boost::json::object> out;
    for (auto& o : proxy_.access_log())
      if (json_str(o, "request_id") == id) out.push_back(std::move(o));
    return out;
  }

  void expect_one_line(const std::string& id, std::int64_t status, const std::string& error) {
    auto lines = lines_of(id);
    ASSERT_EQ(lines.size(), 1u) << "access-log lines for " << id << ":\n" << proxy_.stdout_text();
    EXPECT_EQ(json_int(lines[0], "status"), status) << boost::json::serialize(lines[0]);
    EXPECT_EQ(json_str(lines[0], "error"), error) << boost::json::serialize(lines[0]);
    EXPECT_EQ(json_str(lines[0], "key_id"), key_id_);
    EXPECT_EQ(json_str(lines[0], "endpoint"), "ep1");
  }
};

TEST_F(AccessLogEnds, ClientLeavingMidStreamIsLoggedAsClientClosed) {
  add_default_endpoint();
  add_default_key();
  start();
  {
    TcpClient c(proxy_.proxy_port());
    ASSERT_TRUE(c.send(build_request("GET", "/ep1/stream", with_id("m2-left-mid-stream"))));
    auto head = c.read_head();
    ASSERT_TRUE(head);
    ASSERT_EQ(head->status, 200);
    ASSERT_TRUE(c.read_chunk());
  }  // leaves
  ASSERT_TRUE(worker_.wait_for_peer_aborts(1, kWait)) << "the stream was not cancelled";
  expect_one_line("m2-left-mid-stream", 200, "client_closed");
}

TEST_F(AccessLogEnds, ClientLeavingBeforeAnyResponseByteIsLogged499) {
  add_default_endpoint();
  add_default_key();
  start();
  {
    TcpClient c(proxy_.proxy_port());
    ASSERT_TRUE(c.send(build_request("GET", "/ep1/slow", with_id("m2-left-early"))));
    ASSERT_TRUE(worker_.wait_for_requests(1, kWait));
  }  // leaves before the worker answers
  ASSERT_TRUE(worker_.wait_for_peer_aborts(1, kWait)) << "the exchange was not cancelled";
  expect_one_line("m2-left-early", 499, "client_closed");
}

// SPEC is silent on a client that half-closes (shutdown(SHUT_WR)) after its
// request. frontdoor does what nginx does (proxy_ignore_client_abort off):
// an end of input while a request is in progress cancels it, because a
// worker may compute for minutes for a client that is gone, and a FIN does
// not say whether the client still reads (HAProxy would answer instead).
// README "Logs" documents it; the line says 499 client_closed.
TEST_F(AccessLogEnds, HalfClosedClientIsCancelledLikeNginx) {
  add_default_endpoint();
  add_default_key();
  start();
  TcpClient c(proxy_.proxy_port(), 3s);
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/slow", with_id("l6-half-close"))));
  ASSERT_TRUE(worker_.wait_for_requests(1, kWait));
  c.shutdown_write();
  ASSERT_TRUE(worker_.wait_for_peer_aborts(1, kWait)) << "the exchange was not cancelled";
  EXPECT_TRUE(c.wait_closed(3s));
  expect_one_line("l6-half-close", 499, "client_closed");
}

TEST_F(AccessLogEnds, WorkerClosingMidResponseIsLoggedAsWorkerClosed) {
  add_default_endpoint();
  add_default_key();
  start();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/cut", with_id("m2-worker-cut"))));
  auto head = c.read_head();
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_TRUE(c.wait_closed(3s));
  expect_one_line("m2-worker-cut", 200, "worker_closed");
}

TEST_F(AccessLogEnds, StreamIdleTimeoutIsLoggedAsIdleTimeout) {
  add_default_endpoint({.idle = "300ms"});
  add_default_key();
  start();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/pause", with_id("m2-idle"))));
  auto head = c.read_head();
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_TRUE(c.wait_closed(3s)) << "the idle stream was not cut";
  expect_one_line("m2-idle", 200, "idle_timeout");
}

// SPEC §6: "streams cut then are logged".
// A request still waiting in the queue when shutdown_grace ends is cut and
// logged too. It and its waiter hold each other, so only the shutdown hook
// ends them (else LeakSanitizer sees the pair at exit, and no line).
TEST_F(AccessLogEnds, QueuedRequestAtTheEndOfShutdownGraceIsLoggedAsShutdown) {
  proxy_.set_limit("shutdown_grace", "500ms");
  setup_initializing("30s");
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/q", with_id("m2-queued"))));
  ASSERT_TRUE(wait_queue_length(1, kWait));
  ASSERT_TRUE(proxy_.send_signal(SIGTERM));
  ASSERT_EQ(proxy_.wait_exit(5s), 0);
  proxy_.wait_for_access_log_line([](const boost::json::object&) { return false; }, 1, 2s);  // stdout closes
  std::vector<boost::json::object> lines;
  for (auto& o : proxy_.access_log())
    if (json_str(o, "request_id") == "m2-queued") lines.push_back(std::move(o));
  ASSERT_EQ(lines.size(), 1u) << proxy_.stdout_text();
  EXPECT_EQ(json_int(lines[0], "status"), 503);
  EXPECT_EQ(json_str(lines[0], "error"), "shutdown");
}

TEST_F(AccessLogEnds, StreamCutAtTheEndOfShutdownGraceIsLoggedAsShutdown) {
  proxy_.set_limit("shutdown_grace", "500ms");
  add_default_endpoint();
  add_default_key();
  start();
  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/stream", with_id("m2-shutdown"))));
  auto head = c.read_head();
  ASSERT_TRUE(head);
  ASSERT_EQ(head->status, 200);
  ASSERT_TRUE(proxy_.send_signal(SIGTERM));
  ASSERT_EQ(proxy_.wait_exit(5s), 0);
  std::vector<boost::json::object> lines;
  proxy_.wait_for_access_log_line([](const boost::json::object&) { return false; }, 1, 2s);  // stdout closes
  for (auto& o : proxy_.access_log())
    if (json_str(o, "request_id") == "m2-shutdown") lines.push_back(std::move(o));
  ASSERT_EQ(lines.size(), 1u) << proxy_.stdout_text();
  EXPECT_EQ(json_int(lines[0], "status"), 200);
  EXPECT_EQ(json_str(lines[0], "error"), "shutdown");
}

}  // namespace
}  // namespace frontdoor::test
