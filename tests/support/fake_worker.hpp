#pragma once
// A fake inference worker for integration tests: an HTTP/1.1 server on
// 127.0.0.1:<ephemeral> with keep-alive, one thread per connection, that
// records every request it receives and answers with a programmable
// behaviour (per path, or a default). Health probes on the health path are
// answered but kept out of the request log, so that "the worker received
// nothing" can be asserted while the proxy probes it.
//
// Thread safety: every public member may be called from any thread while the
// worker runs. The destructor stops the server and joins all its threads
// (bounded: blocked reads/writes/delays wake on a stop event).
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/http_client.hpp"

namespace frontdoor::test {

struct RecordedRequest {
  std::string method;
  std::string target;
  unsigned version = 11;  // 10 or 11
  Headers headers;        // in arrival order
  std::string body;       // de-chunked
  bool chunked = false;   // arrived with Transfer-Encoding: chunked
  int connection = 0;     // 1-based ordinal of the connection it came on
  Clock::time_point received_at;

  std::optional<std::string> header(std::string_view name) const;
  std::size_t header_count(std::string_view name) const;
  std::string path() const;  // target without the query
};

struct Behavior {
  enum class Kind {
    fixed,                 // status, body, headers
    echo,                  // 200 JSON: method, target, headers, body_sha256, body_size
    sse,                   // text/event-stream, sse_events chunks sse_interval apart
    large_body,            // large_size pattern bytes, Content-Length or chunked
    close_without_answer,  // read the request, then close
    never_answer,          // read the request, then wait until the peer or the worker stops
    raw_then_close,        // read the request, send `body` as raw bytes, then close
    stall,                 // read the head only, then neither read nor answer until the peer closes
    flood,                 // send `body` raw, then `flood_unit` again and again (see below), close
  };
  Kind kind = Kind::fixed;
  int status = 200;
  std::string body;
  Headers headers;  // added to every response of this behaviour
  std::chrono::milliseconds first_byte_delay{0};
  int sse_events = 0;
  std::chrono::milliseconds sse_interval{0};
  std::size_t large_size = 0;
  bool chunked = false;               // large_body / fixed: send chunked
  bool connection_close = false;      // answer with "Connection: close" and close
  bool close_after_response = false;  // close after answering, without saying so
  // Answer as soon as the request head has arrived, before reading its body
  // (a worker that rejects an upload early, as uvicorn/h11 do with 413/401,
  // or streams while the client still uploads). The request is recorded then,
  // with the part of the body read so far. After the answer: with
  // connection_close, send FIN, wait `linger` without reading, then close (the
  // unread body makes the kernel reset the connection); otherwise read and
  // discard the rest of the body and serve the next request. A
  // first_byte_delay before such an answer reads at most 1 MiB of the body,
  // then stops reading (the sender's writes then block).
  bool answer_before_body = false;
  std::chrono::milliseconds linger{0};
  // Wait for FakeWorker::release() before answering (without reading
  // meanwhile): the test decides when the answer goes out, e.g. once the
  // client's upload is known to be blocked.
  bool held = false;
  // Stray bytes written `after_delay` after the complete answer, on the same
  // connection (a worker whose body is longer than its Content-Length said).
  std::string after_bytes;
  std::chrono::milliseconds after_delay{0};
  // flood: after `body`, `flood_unit` is sent until flood_bytes were sent in
  // all or the peer is gone (e.g. a chunk-size line that never ends).
  std::string flood_unit;
  std::size_t flood_bytes = 0;

  static Behavior fixed(int status, std::string body = {}, Headers headers = {});
  static Behavior echo();
  static Behavior sse(int events, std::chrono::milliseconds interval);
  static Behavior large(std::size_t size, bool chunked);
  static Behavior close_without_answer();
  static Behavior never_answer();
  // E.g. half a response head, to fail an exchange after a response byte.
  static Behavior raw_then_close(std::string bytes);
  // A worker that stops reading an upload (and never answers).
  static Behavior stall();
  // `prefix` raw, then `unit` repeated up to `total` bytes in all.
  static Behavior flood(std::string prefix, std::string unit, std::size_t total);
};

class FakeWorker {
 public:
  // Starts listening at once; check ok() (a bind failure is not thrown).
  FakeWorker();
  ~FakeWorker();
  FakeWorker(const FakeWorker&) = delete;
  FakeWorker& operator=(const FakeWorker&) = delete;

  bool ok() const noexcept { return listen_fd_ >= 0; }
  std::uint16_t port() const noexcept { return port_; }
  std::string authority() const;  // "127.0.0.1:<port>"
  std::string url() const;        // "http://127.0.0.1:<port>"

  // The default behaviour is Behavior::echo().
  void set_default(Behavior b);
  // For requests whose path (target without query) equals `path` exactly.
  void on(const std::string& path, Behavior b);
  // Health probes: requests to this path answer 200 {"status":"healthy"} and
  // are not recorded (default "/ping"; empty = record everything).
  void set_health_path(std::string path);
  // The status health probes get from now on (200 ready, 204 initializing,
  // 500 unhealthy...); same as on(health_path, Behavior::fixed(status)).
  void set_health_status(int status);
  // Extra wait before answering every recorded request whose behaviour has
  // no first_byte_delay of its own (0 = none), e.g. to make a worker slow.
  void set_delay(std::chrono::milliseconds d);
  // Wait before answering each health probe (0 = none); a probe still waiting
  // when the worker stops gets no answer.
  void set_health_delay(std::chrono::milliseconds d);

  std::vector<RecordedRequest> requests() const;
  std::size_t request_count() const;
  // Request heads parsed (recorded or not yet complete), health probes excluded.
  std::size_t heads_received() const;
  std::size_t health_probes() const;
  // The status of every health probe answered, in order.
  std::vector<int> probe_statuses() const;
  // Requests being handled now: from being recorded until just before the
  // last byte of their answer is written (or their connection ends).
  int in_flight() const;
  // The most requests ever in flight at once (since start or clear()).
  int max_in_flight() const;
  std::size_t parse_errors() const;
  // Bytes sent by flood behaviours so far, and answers followed by after_bytes.
  std::size_t flood_bytes_sent() const;
  std::size_t after_bytes_sent() const;
  bool wait_for_after_bytes(std::size_t n, std::chrono::milliseconds timeout) const;
  // Lets every held answer (Behavior::held) go, now and from now on.
  void release();
  int connections_accepted() const;
  int connections_closed() const;  // connections whose handling ended (any reason)
  // Streams (sse, large, never_answer, delays) ended because the peer closed.
  int peer_aborts() const;

  bool wait_for_requests(std::size_t n, std::chrono::milliseconds timeout) const;
  bool wait_for_heads(std::size_t n, std::chrono::milliseconds timeout) const;
  bool wait_for_health_probes(std::size_t n, std::chrono::milliseconds timeout) const;
  bool wait_for_connections_closed(int n, std::chrono::milliseconds timeout) const;
  bool wait_for_peer_aborts(int n, std::chrono::milliseconds timeout) const;
  bool wait_for_in_flight(int n, std::chrono::milliseconds timeout) const;  // in_flight() >= n
  // Waits until `n` probes were answered with `status` (counted over probe_statuses()).
  bool wait_for_probe_status(int status, std::size_t n, std::chrono::milliseconds timeout) const;
  void clear();

  // Stops accepting and closes every connection; idempotent. The port then
  // refuses connections.
  void stop();
  // After stop(): listens again on the same port (counters and the request
  // log are kept). True when listening (also when it was not stopped).
  bool restart();

 private:
  void accept_loop();
  void serve(int fd, int conn_no);
  Behavior behavior_for(const std::string& path) const;
  template <class Pred>
  bool wait_until(Pred pred, std::chrono::milliseconds timeout) const;

  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd: readable once stop() was called
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> released_{false};

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  Behavior default_;
  std::map<std::string, Behavior> by_path_;
  std::string health_path_ = "/ping";
  std::chrono::milliseconds delay_{0};
  std::chrono::milliseconds health_delay_{0};
  std::vector<int> probe_statuses_;
  int in_flight_ = 0;
  int max_in_flight_ = 0;
  std::vector<RecordedRequest> log_;
  std::size_t heads_ = 0;
  std::size_t probes_ = 0;
  std::size_t parse_errors_ = 0;
  int accepted_ = 0;
  int closed_ = 0;
  int aborts_ = 0;
  std::size_t flood_sent_ = 0;
  std::size_t after_sent_ = 0;

  bool listen_on(std::uint16_t port);

  std::thread acceptor_;
  std::mutex threads_mu_;
  std::vector<std::thread> conn_threads_;
};

}  // namespace frontdoor::test
