#pragma once
// One client connection on a proxy listener (SPEC §4), shaped after Envoy's
// ActiveStream / UpstreamRequest and Pingora's proxy_h1:
//   - Session: the client connection (socket, read buffer, keep-alive,
//     drain, graceful close). It owns the current request.
//   - Request: the per-request value, reset whole between requests.
//   - Attempt: one try at a worker (its connection, its read buffer, the
//     response parser and framing). A retry is a new Attempt; handlers of
//     an old one find it is no longer current and do nothing.
//   - Two body pumps: client → worker (pump_request) and worker → client
//     (relay_response), each strictly "read, then write, then read".
//   - A WebSocket tunnel (SPEC §4 step 6) is one more relay on the same
//     attempt, after the worker's 101: bytes both ways (tunnel_up,
//     tunnel_down), each strictly "read, then write, then read", with the
//     frame boundaries followed so that a revoked key or a shutdown can
//     close it with a Close frame of our own (close_tunnel).
//   - end_request(): the one way a request ends early. It turns a local
//     reply into a cut once response bytes have gone, releases the worker
//     and key slots exactly once, and logs and counts exactly once.
// Lives on one thread (its ThreadContext); never touched by others.
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <memory>
#include <optional>
#include <string>

#include "frontdoor/auth/key.hpp"
#include "frontdoor/core/reason.hpp"
#include "frontdoor/http/body_decoder.hpp"
#include "frontdoor/http/websocket.hpp"
#include "frontdoor/http/message.hpp"
#include "frontdoor/http/route.hpp"
#include "frontdoor/proxy/thread_context.hpp"
#include "frontdoor/proxy/tls.hpp"

namespace frontdoor::proxy {

struct ListenerInfo {
  std::shared_ptr<TlsContextSlot> tls;  // nullptr: plain HTTP
};

// The client read buffer. Unlike beast::flat_buffer, consume() never moves
// or resets anything: a read in progress writes into the space that
// prepare() handed out, and whatever is consumed meanwhile (a request head,
// a body, a pipelined request) cannot shift that space under it. Memory is
// moved only by prepare(), which the session calls only to start a read,
// and never while a write to a worker points into the data.
class ReadBuffer {
 public:
  const char* data() const noexcept { return storage_.get() + head_; }
  std::size_t size() const noexcept { return tail_ - head_; }
  std::size_t capacity() const noexcept { return capacity_; }
  std::string_view view() const noexcept { return {data(), size()}; }
  boost::asio::mutable_buffer prepare(std::size_t n);
  void commit(std::size_t n) noexcept { tail_ += n; }
  void consume(std::size_t n) noexcept { head_ += n < size() ? n : size(); }
  // Frees a large buffer when empty; as prepare(), never during a read.
  void shrink() noexcept;

 private:
  std::unique_ptr<char[]> storage_;
  std::size_t capacity_ = 0;
  std::size_t head_ = 0;  // first unconsumed byte
  std::size_t tail_ = 0;  // end of the data
};

// How a body is delimited in one direction.
enum class Framing : std::uint8_t { none, length, chunked, until_eof };

class Session final : public std::enable_shared_from_this<Session>, public Sweepable {
 public:
  Session(ThreadContext& ctx, boost::asio::ip::tcp::socket socket, const ListenerInfo& listener);
  ~Session() override;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start();
  // Entry points that are not completion handlers: each holds the session
  // alive for its whole run (nothing is destroyed inside its own call).
  void on_sweep(Clock::time_point now) override;
  void on_drain() override;
  void on_shutdown() override;

 private:
  using error_code = boost::system::error_code;
  using RequestParser = boost::beast::http::request_parser<boost::beast::http::empty_body>;
  using ResponseParser = boost::beast::http::response_parser<boost::beast::http::empty_body>;

  // What the connection waits for; decides what an expired deadline means.
  enum class Phase : std::uint8_t {
    first_head,    // new connection, head not complete: header_timeout → 408
    idle,          // kept alive between requests: idle_timeout → close
    head,          // head started: header_timeout → 408
    continue_100,  // writing "100 Continue"
    queued,        // waiting for a worker slot: queue.timeout → 503
    connecting,    // connect to a worker: timeouts.connect → retry or 502
    exchange,      // request sent and/or response relayed
    tunnel,        // a WebSocket tunnel: bytes both ways until both sides close
    reply,         // writing a local reply
    linger,        // graceful close: discarding unread input, or TLS close_notify
    closed,
  };

  // The request on one attempt, client → worker (pump_request). Per
  // attempt: a retry sends the whole request again. In a tunnel, the
  // client's bytes (tunnel_up): waiting while it reads the client, writing,
  // and sent once the client's end (or our Close frame) was passed on.
  enum class Upload : std::uint8_t {
    unsent,   // no byte handed to the worker yet: any failure may be retried
    waiting,  // part of it written; waiting for more body from the client
    writing,  // a write is in flight
    sent,     // every byte written
    refused,  // the worker stopped reading (it may have answered early)
  };

  // The response on one attempt, worker → client (relay_response). In a
  // tunnel (tunnel_down): body while it relays, complete once the worker's
  // end (or our Close frame) was passed on.
  enum class Download : std::uint8_t {
    head,      // its head is not complete yet
    body,      // relaying the body
    complete,  // every response byte was read
  };

  // One try at a worker. Handlers capture it: its buffers stay valid for a
  // pending operation even after the session moved on to another attempt.
  struct Attempt {
    lb::WorkerState* worker = nullptr;
    lb::WorkerState* slot = nullptr;  // `worker` while its in-flight slot is held
    std::unique_ptr<UpstreamConn> conn;
    boost::beast::flat_buffer in;  // bytes from the worker
    std::string out;               // request head or chunk framing for the worker
    std::optional<ResponseParser> parser;
    std::uint64_t bytes_read = 0;     // response bytes received
    std::size_t req_consume = 0;  // client bytes (in in_) in the pending write to the worker
    std::size_t res_consume = 0;  // worker bytes (in `in`) in the pending write to the client
    Upload upload = Upload::unsent;
    Download download = Download::head;
    bool read_pending = false;  // a read from the worker is in flight (or posted)
    Framing res_framing = Framing::none;
    Framing client_framing = Framing::none;
    std::uint64_t res_remaining = 0;  // Framing::length
    http::ChunkedDecoder res_chunked;
    // Tunnel: frame boundaries of the bytes relayed each way.
    http::FrameTracker up_frames;    // client → worker
    http::FrameTracker down_frames;  // worker → client

    bool reused() const noexcept { return conn && conn->exchanges > 0; }
  };

  // Where a request is; only forward, and replaced whole by the next one.
  enum class Stage : std::uint8_t {
    none,        // no request yet (a head may be arriving)
    started,     // its head was read, or a reply to a bad one begun: it ends, and is logged, once
    responding,  // response bytes were handed to the client
    responded,   // the whole response was written
    ended,       // logged and counted; nothing more happens to it
  };

  // What becomes of the client connection after the current response.
  enum class Keep : std::uint8_t {
    open,     // may serve another request
    closing,  // closes once this response is written
    gone,     // the client closed its side or reset
  };

  // TLS on the client connection.
  enum class Tls : std::uint8_t { none, handshake, established, shutdown };

  // Everything that belongs to one request on the connection; replaced
  // whole by the next one.
  struct Request {
    Clock::time_point started{};
    Clock::time_point upstream_started{};
    std::shared_ptr<const lb::Runtime> runtime;
    const config::Config* config = nullptr;
    lb::EndpointState* endpoint = nullptr;
    lb::WorkerState* worker = nullptr;  // the last one tried, for the log
    const lb::WorkerState* failed_worker = nullptr;
    http::HeadCheck head;
    http::Route route;
    std::string key_id;
    char request_id_buf[128];
    std::size_t request_id_size = 0;
    std::string rate_headers;  // RateLimit-* (and Retry-After) for keys with a rate_limit
    Stage stage = Stage::none;
    core::Reason error = core::Reason::none;
    End end = End::complete;
    unsigned status = 0;
    std::uint64_t bytes_in = 0;   // request body bytes relayed
    std::uint64_t bytes_out = 0;  // response bytes written to the client
    unsigned attempts = 0;
    std::shared_ptr<lb::Waiter> waiter;  // while queued for a worker
    Clock::time_point queue_deadline{};  // when the current wait for a worker ends (queue.timeout)
    auth::KeyRuntime* key_slot = nullptr;  // rate_limit.max_concurrent, released once
    // A WebSocket upgrade: its key is looked up again whenever the key
    // snapshot changes, so that a tunnel ends when the key is revoked.
    std::shared_ptr<const auth::KeySet> keys;  // the snapshot `key` is from
    const auth::Key* key = nullptr;
    auth::Digest key_hash{};
    // Request body, client → worker.
    Framing framing = Framing::none;
    std::uint64_t remaining = 0;  // Framing::length
    http::ChunkedDecoder chunked;
    bool counted = false;  // in the metrics: as the last byte goes out, or when it ends

    std::string_view request_id() const noexcept { return {request_id_buf, request_id_size}; }
    bool in_progress() const noexcept { return stage != Stage::none && stage != Stage::ended; }
    bool response_started() const noexcept { return stage == Stage::responding || stage == Stage::responded; }
    // Every body byte was read from the client.
    bool body_read() const noexcept {
      switch (framing) {
        case Framing::length: return remaining == 0;
        case Framing::chunked: return chunked.done();
        default: return true;
      }
    }
  };

  // connection
  void on_handshake(error_code ec);
  void read_client();
  void read_client_soon();
  void watch_client();
  void on_client_read(error_code ec, std::size_t n);
  void on_client_gone();
  void close();    // hard: no close_notify (a cut stream, an error)
  void linger();   // graceful: close_notify or a bounded discard, then close
  void set_deadline(Clock::duration d) { deadline_ = Clock::now() + d; }
  void fresh_parser();
  void close_when_done() noexcept {
    if (keep_ == Keep::open) keep_ = Keep::closing;
  }
  // Facts of the current request's head (the parser lives as long as it).
  bool head_known() const noexcept { return parser_ && parser_->is_header_done(); }
  bool head_method() const { return parser_->get().method() == boost::beast::http::verb::head; }
  bool http10() const { return parser_->get().version() < 11; }

  // pipeline, in order
  void on_head_bytes();
  void on_request_head(std::size_t head_size);
  core::Reason authenticate_and_route();
  core::Reason rate_limit(const auth::Key& key, auth::KeyRuntime& rt);
  void begin_proxy();

  // worker admission and attempts
  void acquire_worker();
  void on_granted(lb::WorkerState* worker);
  void admit_again();
  void leave_queue();
  void start_attempt(lb::WorkerState* worker);
  void on_connected(error_code ec);
  void send_request_head();
  void attempt_failed(core::Reason reason);
  void drop_attempt(bool recycle = true);
  void release_worker_slot(Attempt& a);
  void settle_connection(Attempt& a);

  // client → worker
  void pump_request();
  void on_request_written(error_code ec, std::size_t n);

  // worker → client
  void read_upstream();
  void read_upstream_soon();
  void on_upstream_read(error_code ec, std::size_t n);
  bool parse_response_head();
  void relay_response();
  void on_response_written(error_code ec, std::size_t n, bool complete);
  void maybe_complete();

  // WebSocket tunnel
  void open_tunnel();
  void tunnel_up();
  void tunnel_down();
  void on_tunnel_client_read(error_code ec, std::size_t n);
  void on_tunnel_upstream_read(error_code ec, std::size_t n);
  void tunnel_sweep(Clock::time_point now);
  bool key_still_valid();
  void close_tunnel(End why);
  void cut_tunnel(End why);
  void tunnel_maybe_finish();
  void tunnel_progress();
  void end_upload(Attempt& a);
  void append_our_close_frame(std::string& out, bool to_worker);
  // A Close frame of ours is on its way (a revoked key, shutdown).
  bool tunnel_closing() const noexcept { return req_.end == End::revoked || req_.end == End::shutdown; }

  // the end of a request
  void release_key_slot();
  void end_request(core::Reason reason, End end, std::string_view extra_headers = {});
  void reply(core::Reason reason, bool close_after, std::string_view extra_headers = {});
  void on_reply_written(error_code ec, std::size_t n);
  void count_request();  // the metrics sample, once
  void log_and_count();
  void log_access();
  void next_request();

  ThreadContext& ctx_;
  ClientStream client_;
  boost::asio::ip::address peer_addr_;
  std::string peer_ip_;

  Phase phase_ = Phase::first_head;
  Keep keep_ = Keep::open;
  Tls tls_ = Tls::none;
  Clock::time_point deadline_{};
  // Operations in flight on the client stream (one read, one write at most).
  bool client_read_pending_ = false;
  bool client_write_pending_ = false;
  // Writes to a worker that point into in_: while any is pending, no read
  // may grow (move) it.
  unsigned in_writers_ = 0;

  ReadBuffer in_;  // client bytes not yet used
  std::size_t head_parsed_ = 0;   // bytes of in_ the parser has seen
  std::optional<RequestParser> parser_;  // a fresh one per message
  std::string client_out_;        // head, framing or reply bytes for the client
  std::size_t drained_ = 0;

  Request req_;
  std::shared_ptr<Attempt> attempt_;
};

}  // namespace frontdoor::proxy
