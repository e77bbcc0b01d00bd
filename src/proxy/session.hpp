#pragma once
// One client connection on a proxy listener, and the upstream exchange it
// drives. Lives on one thread (its ThreadContext); never touched by others.
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <array>
#include <memory>
#include <optional>
#include <string>

#include "frontdoor/auth/key.hpp"
#include "frontdoor/core/reason.hpp"
#include "frontdoor/http/message.hpp"
#include "frontdoor/http/route.hpp"
#include "frontdoor/proxy/thread_context.hpp"
#include "frontdoor/proxy/tls.hpp"

namespace frontdoor::proxy {

struct ListenerInfo {
  std::shared_ptr<TlsContextSlot> tls;  // nullptr: plain HTTP
};

class Session final : public std::enable_shared_from_this<Session>, public Sweepable {
 public:
  Session(ThreadContext& ctx, boost::asio::ip::tcp::socket socket, const ListenerInfo& listener);
  ~Session() override;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start();
  void on_sweep(Clock::time_point now) override;
  void on_drain() override;

 private:
  using error_code = boost::system::error_code;
  using RequestParser = boost::beast::http::request_parser<boost::beast::http::buffer_body>;
  using ResponseParser = boost::beast::http::response_parser<boost::beast::http::buffer_body>;

  // What the session waits for; decides what an expired deadline means.
  enum class Phase : std::uint8_t {
    first_head,   // new connection, head not complete: header_timeout → 408
    idle,         // kept alive between requests: idle_timeout → close
    head,         // head started: header_timeout → 408
    continue_100, // writing "100 Continue"
    queued,       // waiting for a worker slot: queue.timeout → 503
    connecting,   // connect to a worker: timeouts.connect → retry or 502
    exchange,     // request sent and/or response relayed
    reply,        // writing a local reply
    drain,        // discarding an unread body before closing
    closed,
  };
  // How a body is relayed in one direction.
  enum class Framing : std::uint8_t { none, length, chunked, until_eof };

  // connection
  void read_client();
  void fresh_parser(const config::Config& config);
  void reset_exchange();
  void on_handshake(error_code ec);
  void read_client_soon();
  void on_client_read(error_code ec, std::size_t n);
  void close();
  void set_deadline(Clock::duration d) { deadline_ = Clock::now() + d; }

  // pipeline (session.cpp, in this order)
  void on_head_bytes();
  void on_request_head(std::size_t head_size);
  core::Reason authenticate_and_route();
  core::Reason rate_limit(const auth::Key& key, auth::KeyRuntime& rt);
  void release_key_slot();
  void begin_proxy();

  // local replies
  void reply(core::Reason reason, bool close_after = false, std::string_view extra_headers = {});
  void on_reply_written(error_code ec);
  void drain_body();

  // upstream exchange
  void start_exchange();
  void on_granted(lb::WorkerState* worker);
  void assign_worker(lb::WorkerState* worker);
  void connect_worker();
  void on_connected(error_code ec);
  void send_request_head();
  void send_request_body();
  void on_request_written(error_code ec, std::size_t n);
  void read_upstream();
  void read_upstream_soon();
  void on_upstream_read(error_code ec, std::size_t n);
  void on_response_head();
  void relay_response_body();
  void on_response_written(error_code ec, std::size_t n);
  // A failure of the exchange; `connect_failure` and `nothing_received`
  // decide with the retry rule of SPEC §4 step 7 whether to try again.
  void exchange_failed(core::Reason reason, bool connect_failure, bool nothing_received);
  void abort_exchange();
  void maybe_finish_exchange();
  void release_upstream(bool reusable);

  // end of a request
  void finish_request();
  void log_access();
  void next_request();

  ThreadContext& ctx_;
  ClientStream client_;
  std::string peer_ip_;
  bool peer_trusted_ = false;

  Phase phase_ = Phase::first_head;
  Clock::time_point deadline_{};
  bool client_read_pending_ = false;
  bool client_eof_ = false;
  bool handshaken_ = false;  // TLS listeners: the handshake completed
  bool close_after_response_ = false;

  boost::beast::flat_buffer in_;  // client bytes not yet used
  std::size_t head_parsed_ = 0;    // bytes of in_ the parser has seen (head not complete)
  std::optional<RequestParser> req_;

  // Per request.
  std::shared_ptr<const lb::Runtime> runtime_;
  const config::Config* config_ = nullptr;
  lb::EndpointState* endpoint_ = nullptr;
  lb::WorkerState* worker_ = nullptr;
  lb::WorkerState* failed_worker_ = nullptr;
  http::HeadCheck head_;
  http::Route route_;
  std::string key_id_;
  char request_id_buf_[128];
  std::string_view request_id_;
  core::Reason error_ = core::Reason::none;
  unsigned status_ = 0;
  Clock::time_point started_{};
  Clock::time_point upstream_started_{};
  std::uint64_t bytes_in_ = 0;   // request body bytes relayed
  std::uint64_t bytes_out_ = 0;  // response bytes written to the client
  unsigned attempts_ = 0;
  std::shared_ptr<lb::Waiter> waiter_;  // while queued for a worker
  auth::KeyRuntime* concurrency_held_ = nullptr;  // rate_limit.max_concurrent slot
  std::string rate_headers_;  // RateLimit-* (and Retry-After) lines for keys with a rate_limit

  // Upstream exchange.
  std::unique_ptr<UpstreamConn> up_;
  bool up_reused_ = false;
  boost::beast::flat_buffer up_in_;
  std::optional<ResponseParser> res_;
  Framing req_framing_ = Framing::none;
  Framing res_framing_ = Framing::none;
  Framing client_framing_ = Framing::none;
  std::uint64_t req_remaining_ = 0;  // Framing::length
  std::uint64_t res_remaining_ = 0;  // Framing::length
  std::uint64_t req_total_ = 0;      // decoded body bytes, for the limit
  std::size_t req_pending_consume_ = 0;
  std::size_t res_pending_consume_ = 0;
  bool req_sent_ = false;
  bool req_final_chunk_sent_ = false;
  bool res_started_ = false;   // a response byte went (or is going) to the client
  bool res_done_ = false;
  bool res_head_done_ = false;
  bool up_write_pending_ = false;
  bool up_read_pending_ = false;
  bool client_write_pending_ = false;
  bool exchange_active_ = false;
  bool res_eof_ = false;           // Framing::until_eof: the worker closed
  bool response_waiting_ = false;  // head parsed while the request write was pending
  bool req_aborted_ = false;  // the worker stopped reading the request body
  bool res_complete_after_write_ = false;
  std::uint64_t exchange_id_ = 0;        // handlers of an abandoned exchange compare this
  std::string out_;        // head or framing bytes being written to the worker
  std::string client_out_; // head or framing bytes being written to the client
  std::unique_ptr<std::array<char, 16384>> req_chunk_;  // decoded chunked request data
  std::unique_ptr<std::array<char, 16384>> res_chunk_;  // decoded chunked response data
  std::size_t drained_ = 0;
};

}  // namespace frontdoor::proxy
