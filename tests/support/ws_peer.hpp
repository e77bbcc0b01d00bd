#pragma once
// Real WebSocket peers for integration tests, built on Beast's websocket
// stream (client and server roles), so that a tunnel through frontdoor is
// exercised by the same protocol code on both ends as a real deployment:
//
//   WsWorker  a fake worker on 127.0.0.1:<ephemeral>: plain HTTP (health
//             probes on /ping, other GETs answered 200, keep-alive) and
//             WebSocket upgrades, accepted by Beast and then run in a mode
//             (echo, sink, bulk send, an endless fragmented message, one big
//             frame), or refused with a non-101 answer. It records every
//             upgrade's request head and how its connection ended.
//   WsClient  a WebSocket client (plain or TLS, certificates not verified)
//             with blocking calls bounded by timeouts.
//   ws_frame / parse_ws_frame / ws_accept_key: raw frames for tests that
//             must put bytes on the wire themselves (e.g. a frame pipelined
//             with the handshake), over a TcpClient.
//
// Both peers run their socket I/O asynchronously on their own threads (one
// io_context per worker connection, one per client), so that a peer reads
// and writes at the same time, answers pings and sees Close frames while the
// test thread waits. Nothing here blocks without a bound; destructors stop
// the I/O and join their threads (bounded).
//
// This header exposes no Boost type: the Beast templates are compiled once,
// in ws_peer.cpp.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/fake_worker.hpp"  // RecordedRequest
#include "support/http_client.hpp"

namespace frontdoor::test {

// How a WebSocket connection ended, as one peer saw it.
enum class WsEndKind {
  open,         // not ended (yet)
  close_frame,  // the closing handshake: the peer's Close frame was read (code/reason below)
  eof,          // TCP FIN without a Close frame (TLS: also a truncated stream)
  reset,        // connection reset / broken pipe
  local,        // this peer dropped the TCP connection itself (vanish, stop)
  error,        // anything else, e.g. a WebSocket protocol error (detail says which)
};
const char* to_string(WsEndKind k) noexcept;
inline void PrintTo(WsEndKind k, std::ostream* os) { *os << to_string(k); }  // for gtest

struct WsEnd {
  WsEndKind kind = WsEndKind::open;
  // The code of the peer's Close frame (0: none read). Also set with another
  // kind when a Close frame was read but the teardown after it failed (e.g.
  // eof: a TLS stream truncated without close_notify after the Close).
  int code = 0;
  std::string reason;  // its reason text
  std::string detail;  // the error's message for other kinds
  Clock::time_point at{};
  bool ended() const noexcept { return kind != WsEndKind::open; }
};
std::string describe(const WsEnd& e);

// A Close frame as it was read (Beast's control callback), possibly before
// the connection ends (the TCP close comes after the closing handshake).
struct WsCloseFrame {
  int code = 0;
  std::string reason;
  Clock::time_point at{};
};

struct WsMessage {
  bool binary = false;
  std::string data;
};

// What one peer has seen and done so far (a snapshot).
struct WsStats {
  std::size_t messages_received = 0;  // complete messages
  std::size_t bytes_received = 0;     // payload bytes, partial messages included
  std::string received_sha256;        // of every payload byte received so far, in order
  std::size_t messages_sent = 0;
  std::size_t bytes_sent = 0;  // payload bytes written
  std::string sent_sha256;     // of every payload byte written so far, in order
  bool sending_done = false;   // the mode's / start_bulk's sending has finished
  int pings_received = 0;
  int pongs_received = 0;
  std::optional<WsCloseFrame> close_frame;  // the peer's Close frame, once read
  WsEnd end;
};

// The behaviour of the worker on a WebSocket upgrade.
struct WsMode {
  enum class Kind {
    echo,        // every message back, same text/binary type
    sink,        // read and hash everything (messages kept up to 1 MiB), send nothing
    bulk,        // send bulk_bytes in binary messages of chunk bytes, while sinking what arrives
    fragments,   // one binary message that never ends in time: a non-final fragment of `chunk`
                 // bytes every `interval`, `count` of them, then the final one
    big_frame,   // one binary message of bulk_bytes, written as one single frame
    reject,      // no upgrade: answer reject_status with reject_body (JSON), keep-alive
  };
  Kind kind = Kind::echo;
  std::size_t bulk_bytes = 0;
  std::size_t chunk = 1u << 20;
  std::uint32_t seed = 1;  // pattern_bytes(chunk_i, seed + i)
  std::size_t count = 0;
  std::chrono::milliseconds interval{0};
  int reject_status = 403;
  std::string reject_body;
  // A text message written right after the 101, corked with it into the same
  // TCP segment (TCP_CORK), before the mode starts.
  std::string hello;
  // A text message written (raw) when the peer half-closes (FIN without a
  // Close frame), before this side closes too.
  std::string farewell;
  // How long the worker waits before it answers the upgrade (a slow 101).
  std::chrono::milliseconds accept_delay{0};
  // Added to the 101 (or to the reject answer), e.g. an X-Frontdoor-* to spoof.
  Headers response_headers;

  static WsMode echo();
  static WsMode sink();
  static WsMode bulk(std::size_t bytes, std::size_t chunk, std::uint32_t seed);
  static WsMode fragments(std::size_t count, std::size_t chunk, std::chrono::milliseconds interval);
  static WsMode big_frame(std::size_t bytes, std::uint32_t seed);
  static WsMode reject(int status, std::string json_body);
};

// One upgrade request the worker received, and what became of it.
struct WsUpgrade {
  RecordedRequest request;  // head as received (target, headers, connection ordinal)
  bool accepted = false;    // answered 101 and Beast's handshake succeeded
  std::string accept_error;  // why Beast's accept failed, if it did
  WsStats stats;
  std::vector<WsMessage> messages;  // received messages kept (up to 1 MiB in all)
};

namespace detail {
struct WsPeerState;
class WsWorkerConn;
class WsClientImpl;
}  // namespace detail

class WsWorker {
 public:
  // Starts listening at once; check ok().
  WsWorker();
  ~WsWorker();
  WsWorker(const WsWorker&) = delete;
  WsWorker& operator=(const WsWorker&) = delete;

  bool ok() const noexcept { return listen_fd_ >= 0; }
  std::uint16_t port() const noexcept { return port_; }
  std::string authority() const;  // "127.0.0.1:<port>"
  std::string url() const;        // "http://127.0.0.1:<port>"

  // The mode of upgrades from now on (default: echo).
  void set_mode(WsMode m);

  // Every request head received except health probes (GET /ping), plain
  // requests and upgrades alike, in arrival order.
  std::vector<RecordedRequest> requests() const;
  std::size_t request_count() const;
  std::size_t health_probes() const;
  // Upgrades, in arrival order (snapshots).
  std::vector<WsUpgrade> upgrades() const;
  std::size_t upgrade_count() const;
  std::optional<WsUpgrade> upgrade(std::size_t index) const;

  // Bounded waits; `index` is the upgrade's position in upgrades().
  bool wait_for_upgrades(std::size_t n, std::chrono::milliseconds timeout) const;
  bool wait_accepted(std::size_t index, std::chrono::milliseconds timeout) const;
  bool wait_ended(std::size_t index, std::chrono::milliseconds timeout) const;
  bool wait_close_frame(std::size_t index, std::chrono::milliseconds timeout) const;
  bool wait_messages(std::size_t index, std::size_t n, std::chrono::milliseconds timeout) const;
  bool wait_received_bytes(std::size_t index, std::size_t n,
                           std::chrono::milliseconds timeout) const;
  bool wait_sending_done(std::size_t index, std::chrono::milliseconds timeout) const;
  bool wait_pongs(std::size_t index, int n, std::chrono::milliseconds timeout) const;
  bool wait_for_health_probes(std::size_t n, std::chrono::milliseconds timeout) const;
  // Connections whose handling ended (any reason), and open WebSocket sessions now.
  int connections_closed() const;
  int open_websockets() const;

  // Hooks on every accepted WebSocket still open: a Close frame with `code`
  // (the closing handshake then completes as Beast does it), a ping, or a
  // vanishing (TCP close without Close frame; `reset`: RST via SO_LINGER 0).
  void close_all(int code, std::string reason = {});
  void ping_all(std::string payload = {});
  void vanish_all(bool reset = false);
  // A TCP half-close (FIN, no Close frame) on every open WebSocket; reading goes on.
  void half_close_all();

  // Stops accepting and drops every connection; idempotent.
  void stop();

 private:
  friend class detail::WsWorkerConn;
  void accept_loop();
  void serve(std::shared_ptr<detail::WsWorkerConn> conn);
  template <class Pred>
  bool wait_until(Pred pred, std::chrono::milliseconds timeout) const;
  template <class Pred>
  bool wait_upgrade(std::size_t index, Pred pred, std::chrono::milliseconds timeout) const;

  struct UpgradeRec {
    RecordedRequest request;
    bool accepted = false;
    std::string accept_error;
    std::shared_ptr<detail::WsPeerState> state;  // null until accepted
  };

  int listen_fd_ = -1;
  int stop_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  WsMode mode_ = WsMode::echo();
  std::vector<RecordedRequest> requests_;
  std::vector<UpgradeRec> upgrades_;
  std::size_t probes_ = 0;
  int accepted_conns_ = 0;
  int closed_conns_ = 0;
  int open_ws_ = 0;
  std::vector<std::shared_ptr<detail::WsWorkerConn>> conns_;

  std::thread acceptor_;
  std::mutex threads_mu_;
  std::vector<std::thread> conn_threads_;
};

struct WsClientOptions {
  bool tls = false;                  // wss: TLS first, certificate not verified
  std::string host = "client.test";  // the Host header of the handshake
  std::chrono::milliseconds timeout = kDefaultTimeout;  // connect + handshake
  bool keep_messages = true;  // false: received messages are only hashed and counted
  // Stop issuing reads once this many payload bytes were received (0: never);
  // resume_reading() goes on. Reads take at most 64 KiB at a time.
  std::size_t pause_after_bytes = 0;
};

class WsClient {
 public:
  WsClient();
  ~WsClient();
  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;

  // Connects to 127.0.0.1:port and performs the WebSocket handshake for
  // `target` with `headers` added to Beast's own (Host, Upgrade, Connection,
  // Sec-WebSocket-Key/Version). True on a 101 whose Sec-WebSocket-Accept
  // Beast verified; response() is the handshake answer either way (status 0
  // when none came) and error() says what failed.
  bool connect(std::uint16_t port, std::string_view target, const Headers& headers,
               WsClientOptions options = {});
  const HttpResponse& response() const noexcept { return response_; }
  // The handshake request as Beast sent it (headers, e.g. the Sec-WebSocket-Key).
  const Headers& request_headers() const noexcept { return request_headers_; }
  const std::string& error() const noexcept { return error_; }
  bool is_open() const;

  // Queued, written in order; true once written within the timeout.
  bool send_text(std::string_view text, std::chrono::milliseconds timeout = kDefaultTimeout);
  bool send_binary(std::string_view data, std::chrono::milliseconds timeout = kDefaultTimeout);
  // One message in several frames (write_some, fin on the last part only).
  bool send_fragmented(const std::vector<std::string>& parts, bool binary,
                       std::chrono::milliseconds timeout = kDefaultTimeout);
  // The next complete message received (keep_messages), nullopt on timeout or end.
  std::optional<WsMessage> read_message(std::chrono::milliseconds timeout = kDefaultTimeout);

  bool ping(std::string payload = {}, std::chrono::milliseconds timeout = kDefaultTimeout);
  bool wait_pongs(int n, std::chrono::milliseconds timeout) const;
  bool wait_pings(int n, std::chrono::milliseconds timeout) const;

  // Starts the closing handshake and waits for it to complete (the peer's
  // Close read, the TCP connection ended); true when it did in time.
  bool close(int code, std::string reason = {}, std::chrono::milliseconds timeout = kDefaultTimeout);
  // The peer's Close frame, once read within the timeout.
  std::optional<WsCloseFrame> wait_close_frame(std::chrono::milliseconds timeout) const;
  // Waits until the connection has ended (returns end(); open on timeout).
  WsEnd wait_end(std::chrono::milliseconds timeout) const;
  WsEnd end() const;
  // Drops the TCP connection without a Close frame (FIN, or RST with `reset`).
  void vanish(bool reset = false);

  // Sends `total` bytes of binary messages of `chunk` bytes
  // (pattern_bytes(chunk_i, seed + i)) in the background; stats() has the hash.
  void start_bulk(std::size_t total, std::size_t chunk, std::uint32_t seed);
  bool wait_sending_done(std::chrono::milliseconds timeout) const;
  bool wait_received_bytes(std::size_t n, std::chrono::milliseconds timeout) const;
  void resume_reading();
  WsStats stats() const;

 private:
  std::unique_ptr<detail::WsClientImpl> impl_;
  std::shared_ptr<detail::WsPeerState> state_;
  HttpResponse response_;
  Headers request_headers_;
  std::string error_;
};

// --- Raw frames (RFC 6455 §5.2), for tests that write the bytes themselves.
enum WsOpcode : int { kWsCont = 0, kWsText = 1, kWsBinary = 2, kWsClose = 8, kWsPing = 9, kWsPong = 10 };
// One frame; `masked` (a client's frames must be) with a fixed masking key.
std::string ws_frame(int opcode, std::string_view payload, bool fin = true, bool masked = true);
struct WsRawFrame {
  int opcode = 0;
  bool fin = false;
  bool masked = false;
  std::string payload;  // unmasked
};
// Takes one complete frame off the front of `buf`; nullopt when incomplete.
std::optional<WsRawFrame> parse_ws_frame(std::string& buf);
// Sec-WebSocket-Accept for a Sec-WebSocket-Key (base64(SHA-1(key + GUID))).
std::string ws_accept_key(std::string_view key);
// The headers of a handshake besides Host/Authorization: Connection, Upgrade,
// Sec-WebSocket-Key (the RFC's sample key unless given), Sec-WebSocket-Version.
Headers ws_upgrade_headers(std::string key = "dGhlIHNhbXBsZSBub25jZQ==");

}  // namespace frontdoor::test
