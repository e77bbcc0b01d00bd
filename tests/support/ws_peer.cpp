#include "support/ws_peer.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <cctype>
#include <cerrno>
#include <deque>
#include <functional>
#include <set>
#include <type_traits>

namespace frontdoor::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
using tcp = boost::asio::ip::tcp;
using std::chrono::milliseconds;

const char* to_string(WsEndKind k) noexcept {
  switch (k) {
    case WsEndKind::open:
      return "open";
    case WsEndKind::close_frame:
      return "close_frame";
    case WsEndKind::eof:
      return "eof";
    case WsEndKind::reset:
      return "reset";
    case WsEndKind::local:
      return "local";
    case WsEndKind::error:
      return "error";
  }
  return "?";
}

std::string describe(const WsEnd& e) {
  std::string out = to_string(e.kind);
  if (e.kind == WsEndKind::close_frame)
    out += " code=" + std::to_string(e.code) + " reason=\"" + e.reason + "\"";
  else if (e.code != 0)
    out += " after the peer's Close code=" + std::to_string(e.code) + " reason=\"" + e.reason + "\"";
  if (!e.detail.empty()) out += " (" + e.detail + ")";
  return out;
}

WsMode WsMode::echo() { return WsMode{}; }
WsMode WsMode::sink() {
  WsMode m;
  m.kind = Kind::sink;
  return m;
}
WsMode WsMode::bulk(std::size_t bytes, std::size_t chunk, std::uint32_t seed) {
  WsMode m;
  m.kind = Kind::bulk;
  m.bulk_bytes = bytes;
  m.chunk = chunk;
  m.seed = seed;
  return m;
}
WsMode WsMode::fragments(std::size_t count, std::size_t chunk, std::chrono::milliseconds interval) {
  WsMode m;
  m.kind = Kind::fragments;
  m.count = count;
  m.chunk = chunk;
  m.interval = interval;
  return m;
}
WsMode WsMode::big_frame(std::size_t bytes, std::uint32_t seed) {
  WsMode m;
  m.kind = Kind::big_frame;
  m.bulk_bytes = bytes;
  m.seed = seed;
  return m;
}
WsMode WsMode::reject(int status, std::string json_body) {
  WsMode m;
  m.kind = Kind::reject;
  m.reject_status = status;
  m.reject_body = std::move(json_body);
  return m;
}

namespace {

std::string hex_of(const unsigned char* md, unsigned len) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

// An incremental SHA-256 whose digest so far can be read at any time.
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view d) { EVP_DigestUpdate(ctx_, d.data(), d.size()); }
  std::string hex() const {
    EVP_MD_CTX* c = EVP_MD_CTX_new();
    EVP_MD_CTX_copy_ex(c, ctx_);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_DigestFinal_ex(c, md, &len);
    EVP_MD_CTX_free(c);
    return hex_of(md, len);
  }

 private:
  EVP_MD_CTX* ctx_;
};

// A one-shot result a test thread waits for (bounded).
struct Completion {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<bool> result;
  void set(bool ok) {
    {
      std::lock_guard lk(mu);
      if (!result) result = ok;
    }
    cv.notify_all();
  }
  std::optional<bool> wait(milliseconds timeout) {
    std::unique_lock lk(mu);
    cv.wait_for(lk, timeout, [&] { return result.has_value(); });
    return result;
  }
};

}  // namespace

namespace detail {

// What a peer has seen, shared between its I/O thread and test threads.
struct WsPeerState {
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  bool keep_messages = true;
  std::size_t keep_limit = static_cast<std::size_t>(-1);  // bytes of messages kept
  std::size_t kept_bytes = 0;
  std::deque<WsMessage> inbox;
  Sha256 rx, tx;
  std::size_t messages_received = 0, bytes_received = 0;
  std::size_t messages_sent = 0, bytes_sent = 0;
  bool sending_done = false;
  int pings = 0, pongs = 0;
  std::optional<WsCloseFrame> close_frame;
  WsEnd end;

  template <class F>
  void update(F&& f) {
    {
      std::lock_guard lk(mu);
      f();
    }
    cv.notify_all();
  }
  template <class P>
  bool wait(P pred, milliseconds timeout) const {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, timeout, [&] { return pred(*this); });
  }
  WsStats snapshot_locked() const {
    WsStats s;
    s.messages_received = messages_received;
    s.bytes_received = bytes_received;
    s.received_sha256 = rx.hex();
    s.messages_sent = messages_sent;
    s.bytes_sent = bytes_sent;
    s.sent_sha256 = tx.hex();
    s.sending_done = sending_done;
    s.pings_received = pings;
    s.pongs_received = pongs;
    s.close_frame = close_frame;
    s.end = end;
    return s;
  }
  WsStats snapshot() const {
    std::lock_guard lk(mu);
    return snapshot_locked();
  }
};

// One thing to write: a whole message, or one frame of a fragmented message.
struct Out {
  std::string data;
  bool binary = false;
  bool fragment = false;      // write_some(fin, ...) instead of write(...)
  bool fin = true;            // fragment: the last frame of the message
  bool single_frame = false;  // a whole message in one frame (auto_fragment off)
  milliseconds delay{0};      // wait this long before writing it
  std::function<void(bool)> done;
};
// Yields what to write next; nullopt when it has nothing more.
using Producer = std::function<std::optional<Out>()>;

Producer once(Out o) {
  auto item = std::make_shared<std::optional<Out>>(std::move(o));
  return [item]() -> std::optional<Out> {
    auto r = std::move(*item);
    item->reset();
    return r;
  };
}

// `total` bytes as binary messages of `chunk` bytes (pattern_bytes(chunk_i, seed + i)).
Producer bulk_producer(std::size_t total, std::size_t chunk, std::uint32_t seed,
                       std::function<void(bool)> last_done) {
  struct S {
    std::size_t left;
    std::size_t chunk;
    std::uint32_t seed;
    std::uint32_t i = 0;
    std::function<void(bool)> last_done;
  };
  auto s = std::make_shared<S>(S{total, std::max<std::size_t>(chunk, 1), seed, 0, std::move(last_done)});
  return [s]() -> std::optional<Out> {
    if (s->left == 0) return std::nullopt;
    const std::size_t n = std::min(s->left, s->chunk);
    s->left -= n;
    Out o;
    o.data = pattern_bytes(n, s->seed + s->i++);
    o.binary = true;
    if (s->left == 0) o.done = s->last_done;
    return o;
  };
}

class PeerBase {
 public:
  virtual ~PeerBase() = default;
  virtual void enqueue(Producer p) = 0;
  virtual void ping(std::string payload, std::function<void(bool)> done) = 0;
  virtual void close(int code, std::string reason, std::function<void(bool)> done) = 0;
  virtual void drop(bool reset) = 0;
  virtual void resume_reading() = 0;
  virtual void start_reading() = 0;
};

template <class WS>
class Peer final : public PeerBase {
 public:
  template <class... Args>
  Peer(std::shared_ptr<WsPeerState> st, asio::io_context& ioc, Args&&... args)
      : ws_(std::forward<Args>(args)...), timer_(ioc), st_(std::move(st)) {
    ws_.read_message_max(std::size_t{1} << 30);
    ws_.write_buffer_bytes(64 * 1024);
    ws_.control_callback([this](websocket::frame_type kind, beast::string_view) {
      st_->update([&] {
        if (kind == websocket::frame_type::ping) ++st_->pings;
        if (kind == websocket::frame_type::pong) ++st_->pongs;
        if (kind == websocket::frame_type::close && !st_->close_frame) {
          const auto& r = ws_.reason();
          st_->close_frame =
              WsCloseFrame{static_cast<int>(r.code), std::string(r.reason.data(), r.reason.size()),
                           Clock::now()};
        }
      });
    });
  }

  WS& ws() noexcept { return ws_; }
  std::function<void(WsMessage&&)> on_message;  // complete messages (e.g. to echo them)
  std::function<void()> on_end;
  std::size_t pause_after = 0;
  // Written raw (one unmasked text frame) when the peer's FIN arrives
  // without a Close frame, before this side closes: the peer half-closed.
  std::string farewell;

  // Shuts down the sending side only (FIN); reading goes on.
  void half_close() {
    beast::error_code ec;
    beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  void start_reading() override { do_read(); }

  void resume_reading() override {
    resumed_ = true;
    do_read();
  }

  void enqueue(Producer p) override {
    if (ended_) {
      fail_producer(p);
      return;
    }
    producers_.push_back(std::move(p));
    if (!writing_) write_next();
  }

  void ping(std::string payload, std::function<void(bool)> done) override {
    if (ended_ || ping_pending_) {
      if (done) done(false);
      return;
    }
    ping_pending_ = true;
    websocket::ping_data pd;
    pd.assign(payload.data(), std::min<std::size_t>(payload.size(), 125));
    ws_.async_ping(pd, [this, done](beast::error_code ec) {
      ping_pending_ = false;
      if (done) done(!ec);
    });
  }

  void close(int code, std::string reason, std::function<void(bool)> done) override {
    if (ended_ || close_started_) {
      if (done) done(false);
      return;
    }
    close_started_ = true;
    websocket::close_reason cr;
    cr.code = static_cast<std::uint16_t>(code);
    cr.reason.assign(reason.data(), std::min<std::size_t>(reason.size(), 123));
    ws_.async_close(cr, [this, done](beast::error_code ec) {
      // The close may have read the peer's Close frame itself (Beast's close
      // op does not call the control callback).
      note_close_frame();
      // With no read outstanding, the close itself read the peer's Close
      // frame: that is the end.
      if (!ended_) finish(ec ? ec : beast::error_code(websocket::error::closed));
      if (done) done(!ec);
    });
  }

  void drop(bool reset) override {
    local_drop_ = true;
    auto& sock = beast::get_lowest_layer(ws_).socket();
    beast::error_code ec;
    if (reset) sock.set_option(asio::socket_base::linger(true, 0), ec);
    sock.close(ec);
    if (!read_pending_ && !ended_) finish(asio::error::operation_aborted);
  }

  // Client role: TCP connect, TLS handshake if any, WebSocket handshake.
  void client_handshake(std::uint16_t port, std::string host, std::string target, Headers headers,
                        std::function<void(beast::error_code, const HttpResponse&, const Headers&)> cb) {
    ws_.set_option(websocket::stream_base::decorator([this, headers](websocket::request_type& req) {
      std::set<std::string> seen;
      for (const auto& [n, v] : headers) {
        std::string lower;
        for (char c : n) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (seen.insert(lower).second)
          req.set(n, v);
        else
          req.insert(n, v);
      }
      sent_headers_.clear();
      for (const auto& f : req)
        sent_headers_.emplace_back(std::string(f.name_string()), std::string(f.value()));
    }));
    cb_ = std::move(cb);
    host_ = std::move(host);
    target_ = std::move(target);
    tcp::endpoint ep(asio::ip::make_address_v4("127.0.0.1"), port);
    beast::get_lowest_layer(ws_).async_connect(ep, [this](beast::error_code ec) {
      if (ec) return handshake_done(ec);
      beast::error_code ignored;
      beast::get_lowest_layer(ws_).socket().set_option(tcp::no_delay(true), ignored);
      if constexpr (kTls) {
        ws_.next_layer().async_handshake(asio::ssl::stream_base::client, [this](beast::error_code ec) {
          if (ec) return handshake_done(ec);
          ws_handshake();
        });
      } else {
        ws_handshake();
      }
    });
  }

  // Server role: bytes written right after the 101 share its TCP segment.
  void cork(bool on) {
    int v = on ? 1 : 0;
    ::setsockopt(beast::get_lowest_layer(ws_).socket().native_handle(), IPPROTO_TCP, TCP_CORK, &v,
                 sizeof v);
  }

 private:
  static constexpr bool kTls =
      !std::is_same_v<std::decay_t<decltype(std::declval<WS&>().next_layer())>, beast::tcp_stream>;

  // Records the peer's Close frame from ws_.reason() if the control
  // callback did not see it (read by Beast's close op).
  void note_close_frame() {
    const auto& r = ws_.reason();
    if (r.code == websocket::close_code::none) return;
    st_->update([&] {
      if (!st_->close_frame)
        st_->close_frame =
            WsCloseFrame{static_cast<int>(r.code), std::string(r.reason.data(), r.reason.size()), Clock::now()};
    });
  }

  void ws_handshake() {
    ws_.async_handshake(res_, host_, target_, [this](beast::error_code ec) { handshake_done(ec); });
  }

  void handshake_done(beast::error_code ec) {
    HttpResponse r;
    if (res_.result_int() != 0) {
      r.status = static_cast<int>(res_.result_int());
      r.reason = std::string(res_.reason());
      for (const auto& f : res_) r.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
      r.body = res_.body();
    }
    auto cb = std::move(cb_);
    if (cb) cb(ec, r, sent_headers_);
  }

  void do_read() {
    if (read_pending_ || ended_) return;
    if (pause_after && !resumed_) {
      std::size_t got;
      {
        std::lock_guard lk(st_->mu);
        got = st_->bytes_received;
      }
      if (got >= pause_after) return;
    }
    read_pending_ = true;
    ws_.async_read_some(rbuf_, 64 * 1024, [this](beast::error_code ec, std::size_t) {
      read_pending_ = false;
      if (ec) return finish(ec);
      on_data();
      do_read();
    });
  }

  void on_data() {
    std::string chunk = beast::buffers_to_string(rbuf_.data());
    rbuf_.consume(rbuf_.size());
    const bool done = ws_.is_message_done();
    const bool binary = ws_.got_binary();
    bool keep;
    {
      std::lock_guard lk(st_->mu);
      keep = st_->keep_messages && st_->kept_bytes < st_->keep_limit;
    }
    const bool assemble = keep || static_cast<bool>(on_message);
    if (assemble) msg_ += chunk;
    st_->update([&] {
      st_->rx.update(chunk);
      st_->bytes_received += chunk.size();
      if (done) {
        ++st_->messages_received;
        if (keep && st_->kept_bytes + msg_.size() <= st_->keep_limit) {
          st_->kept_bytes += msg_.size();
          st_->inbox.push_back(WsMessage{binary, msg_});
        }
      }
    });
    if (done) {
      std::string whole;
      whole.swap(msg_);
      if (on_message) on_message(WsMessage{binary, std::move(whole)});
    }
  }

  void finish(beast::error_code ec) {
    if (ended_) return;
    ended_ = true;
    WsEnd e;
    e.at = Clock::now();
    // The peer's Close code, when one was read (also when what came after
    // it, the TCP/TLS teardown, failed).
    e.code = static_cast<int>(ws_.reason().code);
    e.reason = std::string(ws_.reason().reason.data(), ws_.reason().reason.size());
    if (ec == websocket::error::closed) {
      e.kind = WsEndKind::close_frame;
    } else if (local_drop_) {
      e.kind = WsEndKind::local;
      e.detail = ec.message();
    } else if (ec == asio::error::eof || ec == bhttp::error::end_of_stream ||
               ec == asio::ssl::error::stream_truncated) {
      e.kind = WsEndKind::eof;
      e.detail = ec.message();
    } else if (ec == asio::error::connection_reset || ec == asio::error::broken_pipe) {
      e.kind = WsEndKind::reset;
      e.detail = ec.message();
    } else if (ec == asio::error::operation_aborted) {
      e.kind = WsEndKind::local;
      e.detail = ec.message();
    } else {
      e.kind = WsEndKind::error;
      e.detail = ec.message() + " [" + ec.category().name() + ":" + std::to_string(ec.value()) + "]";
    }
    st_->update([&] { st_->end = e; });
    if (e.kind == WsEndKind::eof && !farewell.empty() && !kTls) {
      // Beast refuses to write on a failed stream: the frame goes raw.
      raw_out_ = ws_frame(kWsText, farewell, true, false);
      asio::async_write(beast::get_lowest_layer(ws_).socket(), asio::buffer(raw_out_),
                        [this](beast::error_code ec, std::size_t) {
                          if (!ec)
                            st_->update([&] {
                              st_->tx.update(farewell);
                              st_->bytes_sent += farewell.size();
                              ++st_->messages_sent;
                            });
                          beast::error_code ignored;
                          beast::get_lowest_layer(ws_).socket().close(ignored);
                        });
    } else {
      beast::error_code ignored;
      beast::get_lowest_layer(ws_).socket().close(ignored);
    }
    timer_.cancel();
    auto producers = std::move(producers_);
    producers_.clear();
    for (auto& p : producers) fail_producer(p);
    if (on_end) on_end();
  }

  static void fail_producer(Producer& p) {
    while (auto o = p())
      if (o->done) o->done(false);
  }

  void write_next() {
    if (ended_) {
      writing_ = false;
      return;
    }
    while (!producers_.empty()) {
      auto o = producers_.front()();
      if (!o) {
        producers_.pop_front();
        continue;
      }
      cur_ = std::move(*o);
      writing_ = true;
      if (cur_->delay.count() > 0) {
        timer_.expires_after(cur_->delay);
        timer_.async_wait([this](beast::error_code ec) {
          if (ec || ended_) return written(ec ? ec : beast::error_code(asio::error::operation_aborted));
          do_write();
        });
      } else {
        do_write();
      }
      return;
    }
    writing_ = false;
  }

  void do_write() {
    ws_.binary(cur_->binary);
    ws_.auto_fragment(!cur_->single_frame);
    auto h = [this](beast::error_code ec, std::size_t) { written(ec); };
    if (cur_->fragment)
      ws_.async_write_some(cur_->fin, asio::buffer(cur_->data), h);
    else
      ws_.async_write(asio::buffer(cur_->data), h);
  }

  void written(beast::error_code ec) {
    Out o = std::move(*cur_);
    cur_.reset();
    if (!ec) {
      st_->update([&] {
        st_->tx.update(o.data);
        st_->bytes_sent += o.data.size();
        if (!o.fragment || o.fin) ++st_->messages_sent;
      });
    }
    if (o.done) o.done(!ec);
    if (ec) {
      writing_ = false;
      auto producers = std::move(producers_);
      producers_.clear();
      for (auto& p : producers) fail_producer(p);
      return;  // the read side records how the connection ended
    }
    write_next();
  }

  WS ws_;
  std::string raw_out_;
  asio::steady_timer timer_;
  std::shared_ptr<WsPeerState> st_;
  beast::flat_buffer rbuf_;
  std::string msg_;
  bool read_pending_ = false;
  bool resumed_ = false;
  bool ended_ = false;
  bool local_drop_ = false;
  bool writing_ = false;
  bool ping_pending_ = false;
  bool close_started_ = false;
  std::deque<Producer> producers_;
  std::optional<Out> cur_;
  // client handshake
  websocket::response_type res_;
  std::string host_, target_;
  Headers sent_headers_;
  std::function<void(beast::error_code, const HttpResponse&, const Headers&)> cb_;
};

using PlainWs = websocket::stream<beast::tcp_stream>;
using TlsWs = websocket::stream<beast::ssl_stream<beast::tcp_stream>>;

// --- worker side ----------------------------------------------------------

class WsWorkerConn {
 public:
  WsWorkerConn(WsWorker* owner, int fd, int no) : owner_(owner), no_(no) {
    tcp::socket sock(ioc);
    beast::error_code ec;
    sock.assign(tcp::v4(), fd, ec);
    if (ec) ::close(fd);
    http_.emplace(std::move(sock));
  }

  asio::io_context ioc;  // first: destroyed last

  void start() { read_request(); }

  void post_close(int code, std::string reason) {
    asio::post(ioc, [this, code, reason] {
      if (peer_) peer_->close(code, reason, nullptr);
    });
  }
  void post_ping(std::string payload) {
    asio::post(ioc, [this, payload] {
      if (peer_) peer_->ping(payload, nullptr);
    });
  }
  void post_half_close() {
    asio::post(ioc, [this] {
      if (peer_) peer_->half_close();
    });
  }
  void post_vanish(bool reset) {
    asio::post(ioc, [this, reset] {
      if (peer_) peer_->drop(reset);
    });
  }

 private:
  void read_request() {
    parser_.emplace();
    parser_->header_limit(64 * 1024);
    parser_->body_limit(1u << 20);
    bhttp::async_read(*http_, buf_, *parser_, [this](beast::error_code ec, std::size_t) {
      if (ec) return;  // peer gone: no more work, the thread ends
      on_request();
    });
  }

  void on_request() {
    auto& req = parser_->get();
    std::string target(req.target());
    std::string path = target.substr(0, target.find('?'));
    if (req.method() == bhttp::verb::get && path == "/ping" && !websocket::is_upgrade(req)) {
      {
        std::lock_guard lk(owner_->mu_);
        ++owner_->probes_;
      }
      owner_->cv_.notify_all();
      return respond(200, R"({"status":"healthy"})", "application/json", {}, req.keep_alive());
    }
    RecordedRequest rec;
    rec.method = std::string(req.method_string());
    rec.target = target;
    rec.version = req.version();
    for (const auto& f : req) rec.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    rec.body = req.body();
    rec.connection = no_;
    rec.received_at = Clock::now();
    const bool upgrade = websocket::is_upgrade(req);
    WsMode mode;
    std::size_t index = 0;
    {
      std::lock_guard lk(owner_->mu_);
      owner_->requests_.push_back(rec);
      mode = owner_->mode_;
      if (upgrade) {
        index = owner_->upgrades_.size();
        owner_->upgrades_.push_back(WsWorker::UpgradeRec{rec, false, {}, nullptr});
      }
    }
    owner_->cv_.notify_all();
    if (!upgrade) return respond(200, "plain " + target, "text/plain", {}, req.keep_alive());
    if (mode.kind == WsMode::Kind::reject) {
      {
        std::lock_guard lk(owner_->mu_);
        owner_->upgrades_[index].accept_error = "rejected with " + std::to_string(mode.reject_status);
      }
      owner_->cv_.notify_all();
      return respond(mode.reject_status, mode.reject_body, "application/json", mode.response_headers,
                     req.keep_alive());
    }
    do_upgrade(mode, index);
  }

  void respond(int status, std::string body, std::string content_type, const Headers& extra,
               bool keep_alive) {
    res_.emplace(static_cast<bhttp::status>(status), 11);
    res_->set(bhttp::field::content_type, content_type);
    for (const auto& [n, v] : extra) res_->insert(n, v);
    res_->body() = std::move(body);
    res_->keep_alive(keep_alive);
    res_->prepare_payload();
    bhttp::async_write(*http_, *res_, [this, keep_alive](beast::error_code ec, std::size_t) {
      if (ec) return;
      if (!keep_alive) {
        beast::error_code ignored;
        http_->socket().shutdown(tcp::socket::shutdown_send, ignored);
        http_->close();
        return;
      }
      read_request();
    });
  }

  // The head again, as bytes, for Beast's accept(buffers) (which keeps the
  // bytes that came after the head: a frame pipelined with the handshake).
  static std::string head_bytes(const bhttp::request<bhttp::string_body>& req) {
    std::string out = std::string(req.method_string()) + " " + std::string(req.target()) + " HTTP/1.1\r\n";
    for (const auto& f : req) out += std::string(f.name_string()) + ": " + std::string(f.value()) + "\r\n";
    return out + "\r\n";
  }

  void do_upgrade(const WsMode& mode, std::size_t index) {
    auto& req = parser_->get();
    std::string leftover = beast::buffers_to_string(buf_.data());
    buf_.consume(buf_.size());
    auto st = std::make_shared<WsPeerState>();
    st->keep_messages = true;
    st->keep_limit = std::size_t{1} << 20;
    if (mode.kind == WsMode::Kind::bulk) st->keep_messages = false;  // sink keeps the first 1 MiB
    state_ = st;
    index_ = index;
    peer_ = std::make_unique<Peer<PlainWs>>(st, ioc, std::move(*http_));
    http_.reset();
    std::string proto;
    if (auto p = req[bhttp::field::sec_websocket_protocol]; !p.empty())
      proto = std::string(p.substr(0, p.find(',')));
    while (!proto.empty() && proto.back() == ' ') proto.pop_back();
    Headers extra = mode.response_headers;
    peer_->ws().set_option(websocket::stream_base::decorator([extra, proto](websocket::response_type& res) {
      if (!proto.empty()) res.set(bhttp::field::sec_websocket_protocol, proto);
      for (const auto& [n, v] : extra) res.insert(n, v);
    }));
    {
      std::lock_guard lk(owner_->mu_);
      owner_->upgrades_[index].state = st;
    }
    owner_->cv_.notify_all();
    if (!mode.hello.empty()) peer_->cork(true);
    auto on_accept = [this, mode](beast::error_code ec) {
      {
        std::lock_guard lk(owner_->mu_);
        auto& u = owner_->upgrades_[index_];
        u.accepted = !ec;
        if (ec) u.accept_error = ec.message();
        if (!ec) ++owner_->open_ws_;
      }
      owner_->cv_.notify_all();
      if (ec) {
        state_->update([&] {
          state_->end.kind = WsEndKind::error;
          state_->end.detail = "accept: " + ec.message();
          state_->end.at = Clock::now();
        });
        return;
      }
      run_mode(mode);
    };
    if (!leftover.empty()) raw_head_ = head_bytes(req) + leftover;
    auto accept = [this, on_accept] {
      if (raw_head_.empty())
        peer_->ws().async_accept(parser_->get(), on_accept);
      else
        peer_->ws().async_accept(asio::buffer(raw_head_), on_accept);
    };
    if (mode.accept_delay.count() == 0) {
      accept();
      return;
    }
    delay_.emplace(peer_->ws().get_executor(), mode.accept_delay);
    delay_->async_wait([accept](beast::error_code ec) {
      if (!ec) accept();
    });
  }

  void run_mode(const WsMode& mode) {
    auto st = state_;
    peer_->on_end = [this] {
      {
        std::lock_guard lk(owner_->mu_);
        --owner_->open_ws_;
      }
      owner_->cv_.notify_all();
    };
    peer_->farewell = mode.farewell;
    if (!mode.hello.empty()) {
      Out o;
      o.data = mode.hello;
      o.done = [this](bool) { peer_->cork(false); };
      peer_->enqueue(once(std::move(o)));
    }
    auto sending_done = [st](bool) { st->update([&] { st->sending_done = true; }); };
    switch (mode.kind) {
      case WsMode::Kind::echo:
        peer_->on_message = [this](WsMessage&& m) {
          Out o;
          o.binary = m.binary;
          o.data = std::move(m.data);
          peer_->enqueue(once(std::move(o)));
        };
        break;
      case WsMode::Kind::sink:
      case WsMode::Kind::reject:
        break;
      case WsMode::Kind::bulk:
        peer_->enqueue(bulk_producer(mode.bulk_bytes, mode.chunk, mode.seed, sending_done));
        break;
      case WsMode::Kind::fragments: {
        auto i = std::make_shared<std::size_t>(0);
        const std::size_t count = mode.count, chunk = mode.chunk;
        const auto interval = mode.interval;
        peer_->enqueue([i, count, chunk, interval, sending_done]() -> std::optional<Out> {
          if (*i > count) return std::nullopt;
          Out o;
          o.binary = true;
          o.fragment = true;
          o.fin = *i == count;
          o.data = *i == count ? std::string("end") : pattern_bytes(chunk, static_cast<std::uint32_t>(*i) + 100);
          if (*i > 0) o.delay = interval;
          if (o.fin) o.done = sending_done;
          ++*i;
          return o;
        });
        break;
      }
      case WsMode::Kind::big_frame: {
        Out o;
        o.binary = true;
        o.single_frame = true;
        o.data = pattern_bytes(mode.bulk_bytes, mode.seed);
        o.done = sending_done;
        peer_->enqueue(once(std::move(o)));
        break;
      }
    }
    peer_->start_reading();
  }

  WsWorker* owner_;
  int no_;
  std::optional<beast::tcp_stream> http_;
  beast::flat_buffer buf_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::optional<bhttp::response<bhttp::string_body>> res_;
  std::shared_ptr<WsPeerState> state_;
  std::size_t index_ = 0;
  std::string raw_head_;
  std::unique_ptr<Peer<PlainWs>> peer_;
  std::optional<asio::steady_timer> delay_;  // WsMode::accept_delay
};

// --- client side ----------------------------------------------------------

class WsClientImpl {
 public:
  asio::io_context ioc;  // first: destroyed last
  asio::executor_work_guard<asio::io_context::executor_type> work{ioc.get_executor()};
  std::unique_ptr<asio::ssl::context> ssl;
  std::unique_ptr<PeerBase> peer;
  std::thread thread;

  WsClientImpl() {
    thread = std::thread([this] { ioc.run(); });
  }
  ~WsClientImpl() {
    ioc.stop();
    if (thread.joinable()) thread.join();
    peer.reset();
  }

  template <class F>
  void post(F&& f) {
    asio::post(ioc, std::forward<F>(f));
  }
};

}  // namespace detail

// --- WsWorker ---------------------------------------------------------------

WsWorker::WsWorker() {
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) return;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 128) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return;
  }
  port_ = ntohs(addr.sin_port);
  listen_fd_ = fd;
  acceptor_ = std::thread([this] { accept_loop(); });
}

WsWorker::~WsWorker() {
  stop();
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

void WsWorker::stop() {
  if (stopping_.exchange(true)) return;
  if (stop_fd_ >= 0) {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(stop_fd_, &one, sizeof one);
  }
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::shared_ptr<detail::WsWorkerConn>> conns;
  {
    std::lock_guard lk(mu_);
    conns = conns_;
  }
  for (auto& c : conns) c->ioc.stop();  // run() returns at once; pending work is dropped
  std::vector<std::thread> threads;
  {
    std::lock_guard lk(threads_mu_);
    threads.swap(conn_threads_);
  }
  for (auto& t : threads) t.join();
  {
    std::lock_guard lk(mu_);
    conns_.clear();
  }
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
}

std::string WsWorker::authority() const { return "127.0.0.1:" + std::to_string(port_); }
std::string WsWorker::url() const { return "http://" + authority(); }

void WsWorker::set_mode(WsMode m) {
  std::lock_guard lk(mu_);
  mode_ = std::move(m);
}

void WsWorker::accept_loop() {
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    int rc = ::poll(p, 2, -1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0 || (p[1].revents & POLLIN)) return;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::shared_ptr<detail::WsWorkerConn> conn;
    {
      std::lock_guard lk(mu_);
      conn = std::make_shared<detail::WsWorkerConn>(this, fd, ++accepted_conns_);
      conns_.push_back(conn);
    }
    cv_.notify_all();
    std::lock_guard lk(threads_mu_);
    conn_threads_.emplace_back([this, conn] { serve(conn); });
  }
}

void WsWorker::serve(std::shared_ptr<detail::WsWorkerConn> conn) {
  conn->start();
  conn->ioc.run();
  {
    std::lock_guard lk(mu_);
    ++closed_conns_;
  }
  cv_.notify_all();
}

std::vector<RecordedRequest> WsWorker::requests() const {
  std::lock_guard lk(mu_);
  return requests_;
}
std::size_t WsWorker::request_count() const {
  std::lock_guard lk(mu_);
  return requests_.size();
}
std::size_t WsWorker::health_probes() const {
  std::lock_guard lk(mu_);
  return probes_;
}
std::size_t WsWorker::upgrade_count() const {
  std::lock_guard lk(mu_);
  return upgrades_.size();
}
int WsWorker::connections_closed() const {
  std::lock_guard lk(mu_);
  return closed_conns_;
}
int WsWorker::open_websockets() const {
  std::lock_guard lk(mu_);
  return open_ws_;
}

std::vector<WsUpgrade> WsWorker::upgrades() const {
  std::vector<UpgradeRec> recs;
  {
    std::lock_guard lk(mu_);
    recs = upgrades_;
  }
  std::vector<WsUpgrade> out;
  for (const auto& r : recs) {
    WsUpgrade u;
    u.request = r.request;
    u.accepted = r.accepted;
    u.accept_error = r.accept_error;
    if (r.state) {
      std::lock_guard lk(r.state->mu);
      u.stats = r.state->snapshot_locked();
      u.messages.assign(r.state->inbox.begin(), r.state->inbox.end());
    }
    out.push_back(std::move(u));
  }
  return out;
}

std::optional<WsUpgrade> WsWorker::upgrade(std::size_t index) const {
  auto all = upgrades();
  if (index >= all.size()) return std::nullopt;
  return all[index];
}

template <class Pred>
bool WsWorker::wait_until(Pred pred, milliseconds timeout) const {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, timeout, pred);
}

template <class Pred>
bool WsWorker::wait_upgrade(std::size_t index, Pred pred, milliseconds timeout) const {
  const auto deadline = Clock::now() + timeout;
  std::shared_ptr<detail::WsPeerState> st;
  {
    std::unique_lock lk(mu_);
    if (!cv_.wait_until(lk, deadline, [&] {
          return upgrades_.size() > index &&
                 (upgrades_[index].state || !upgrades_[index].accept_error.empty());
        }))
      return false;
    st = upgrades_[index].state;
  }
  if (!st) return false;
  std::unique_lock lk(st->mu);
  return st->cv.wait_until(lk, deadline, [&] { return pred(*st); });
}

bool WsWorker::wait_for_upgrades(std::size_t n, milliseconds timeout) const {
  return wait_until([&] { return upgrades_.size() >= n; }, timeout);
}
bool WsWorker::wait_for_health_probes(std::size_t n, milliseconds timeout) const {
  return wait_until([&] { return probes_ >= n; }, timeout);
}
bool WsWorker::wait_accepted(std::size_t index, milliseconds timeout) const {
  bool ok = false;
  wait_until(
      [&] {
        if (upgrades_.size() <= index) return false;
        const auto& u = upgrades_[index];
        ok = u.accepted;
        return u.accepted || !u.accept_error.empty();
      },
      timeout);
  return ok;
}
bool WsWorker::wait_ended(std::size_t index, milliseconds timeout) const {
  return wait_upgrade(index, [](const detail::WsPeerState& s) { return s.end.ended(); }, timeout);
}
bool WsWorker::wait_close_frame(std::size_t index, milliseconds timeout) const {
  return wait_upgrade(index, [](const detail::WsPeerState& s) { return s.close_frame.has_value(); },
                      timeout);
}
bool WsWorker::wait_messages(std::size_t index, std::size_t n, milliseconds timeout) const {
  return wait_upgrade(index, [n](const detail::WsPeerState& s) { return s.messages_received >= n; },
                      timeout);
}
bool WsWorker::wait_received_bytes(std::size_t index, std::size_t n, milliseconds timeout) const {
  return wait_upgrade(index, [n](const detail::WsPeerState& s) { return s.bytes_received >= n; },
                      timeout);
}
bool WsWorker::wait_sending_done(std::size_t index, milliseconds timeout) const {
  return wait_upgrade(index, [](const detail::WsPeerState& s) { return s.sending_done; }, timeout);
}
bool WsWorker::wait_pongs(std::size_t index, int n, milliseconds timeout) const {
  return wait_upgrade(index, [n](const detail::WsPeerState& s) { return s.pongs >= n; }, timeout);
}

void WsWorker::close_all(int code, std::string reason) {
  std::lock_guard lk(mu_);
  for (auto& c : conns_) c->post_close(code, reason);
}
void WsWorker::ping_all(std::string payload) {
  std::lock_guard lk(mu_);
  for (auto& c : conns_) c->post_ping(payload);
}
void WsWorker::half_close_all() {
  std::lock_guard lk(mu_);
  for (auto& c : conns_) c->post_half_close();
}
void WsWorker::vanish_all(bool reset) {
  std::lock_guard lk(mu_);
  for (auto& c : conns_) c->post_vanish(reset);
}

// --- WsClient ---------------------------------------------------------------

WsClient::WsClient() : state_(std::make_shared<detail::WsPeerState>()) {}

WsClient::~WsClient() {
  if (impl_) {
    auto* peer = impl_->peer.get();
    if (peer) {
      auto done = std::make_shared<Completion>();
      impl_->post([peer, done] {
        peer->drop(false);
        done->set(true);
      });
      done->wait(milliseconds(1000));
    }
    impl_.reset();
  }
}

bool WsClient::connect(std::uint16_t port, std::string_view target, const Headers& headers,
                       WsClientOptions options) {
  impl_ = std::make_unique<detail::WsClientImpl>();
  state_ = std::make_shared<detail::WsPeerState>();
  state_->keep_messages = options.keep_messages;
  struct Result {
    beast::error_code ec;
    HttpResponse res;
    Headers sent;
  };
  auto result = std::make_shared<Result>();
  auto done = std::make_shared<Completion>();
  auto cb = [result, done](beast::error_code ec, const HttpResponse& r, const Headers& sent) {
    result->ec = ec;
    result->res = r;
    result->sent = sent;
    done->set(!ec);
  };
  if (options.tls) {
    impl_->ssl = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    impl_->ssl->set_verify_mode(asio::ssl::verify_none);
    auto p = std::make_unique<detail::Peer<detail::TlsWs>>(state_, impl_->ioc, impl_->ioc, *impl_->ssl);
    p->pause_after = options.pause_after_bytes;
    auto* raw = p.get();
    impl_->peer = std::move(p);
    impl_->post([raw, port, host = options.host, t = std::string(target), headers, cb] {
      raw->client_handshake(port, host, t, headers, cb);
    });
  } else {
    auto p = std::make_unique<detail::Peer<detail::PlainWs>>(state_, impl_->ioc, impl_->ioc);
    p->pause_after = options.pause_after_bytes;
    auto* raw = p.get();
    impl_->peer = std::move(p);
    impl_->post([raw, port, host = options.host, t = std::string(target), headers, cb] {
      raw->client_handshake(port, host, t, headers, cb);
    });
  }
  auto ok = done->wait(options.timeout);
  if (!ok) {
    error_ = "handshake timed out";
    auto* peer = impl_->peer.get();
    auto dropped = std::make_shared<Completion>();
    impl_->post([peer, dropped] {
      peer->drop(false);
      dropped->set(true);
    });
    dropped->wait(milliseconds(1000));
    // The handshake callback may still run: wait for it, bounded.
    done->wait(milliseconds(1000));
    return false;
  }
  response_ = result->res;
  request_headers_ = result->sent;
  if (!*ok) {
    error_ = result->ec.message();
    return false;
  }
  error_.clear();
  auto* peer = impl_->peer.get();
  impl_->post([peer] { peer->start_reading(); });
  return true;
}

bool WsClient::is_open() const {
  if (!impl_) return false;
  std::lock_guard lk(state_->mu);
  return !state_->end.ended();
}

namespace {

bool send_out(detail::WsClientImpl* impl, detail::Out o, milliseconds timeout) {
  if (!impl || !impl->peer) return false;
  auto done = std::make_shared<Completion>();
  o.done = [done](bool ok) { done->set(ok); };
  auto* peer = impl->peer.get();
  impl->post([peer, o = std::move(o)]() mutable { peer->enqueue(detail::once(std::move(o))); });
  return done->wait(timeout).value_or(false);
}

}  // namespace

bool WsClient::send_text(std::string_view text, milliseconds timeout) {
  detail::Out o;
  o.data = std::string(text);
  return send_out(impl_.get(), std::move(o), timeout);
}

bool WsClient::send_binary(std::string_view data, milliseconds timeout) {
  detail::Out o;
  o.data = std::string(data);
  o.binary = true;
  return send_out(impl_.get(), std::move(o), timeout);
}

bool WsClient::send_fragmented(const std::vector<std::string>& parts, bool binary,
                               milliseconds timeout) {
  if (!impl_ || parts.empty()) return false;
  auto done = std::make_shared<Completion>();
  auto i = std::make_shared<std::size_t>(0);
  auto ok_all = std::make_shared<bool>(true);
  detail::Producer p = [parts, binary, i, done, ok_all]() -> std::optional<detail::Out> {
    if (*i >= parts.size()) return std::nullopt;
    detail::Out o;
    o.data = parts[*i];
    o.binary = binary;
    o.fragment = true;
    o.fin = *i + 1 == parts.size();
    const bool last = o.fin;
    o.done = [done, ok_all, last](bool ok) {
      if (!ok) {
        *ok_all = false;
        done->set(false);
      } else if (last) {
        done->set(*ok_all);
      }
    };
    ++*i;
    return o;
  };
  auto* peer = impl_->peer.get();
  impl_->post([peer, p = std::move(p)]() mutable { peer->enqueue(std::move(p)); });
  return done->wait(timeout).value_or(false);
}

std::optional<WsMessage> WsClient::read_message(milliseconds timeout) {
  std::unique_lock lk(state_->mu);
  state_->cv.wait_for(lk, timeout, [&] { return !state_->inbox.empty() || state_->end.ended(); });
  if (state_->inbox.empty()) return std::nullopt;
  WsMessage m = std::move(state_->inbox.front());
  state_->inbox.pop_front();
  return m;
}

bool WsClient::ping(std::string payload, milliseconds timeout) {
  if (!impl_) return false;
  auto done = std::make_shared<Completion>();
  auto* peer = impl_->peer.get();
  impl_->post([peer, payload = std::move(payload), done] {
    peer->ping(payload, [done](bool ok) { done->set(ok); });
  });
  return done->wait(timeout).value_or(false);
}

bool WsClient::wait_pongs(int n, milliseconds timeout) const {
  return state_->wait([n](const detail::WsPeerState& s) { return s.pongs >= n; }, timeout);
}
bool WsClient::wait_pings(int n, milliseconds timeout) const {
  return state_->wait([n](const detail::WsPeerState& s) { return s.pings >= n; }, timeout);
}

bool WsClient::close(int code, std::string reason, milliseconds timeout) {
  if (!impl_) return false;
  auto* peer = impl_->peer.get();
  impl_->post([peer, code, reason = std::move(reason)] { peer->close(code, reason, nullptr); });
  auto e = wait_end(timeout);
  return e.kind == WsEndKind::close_frame;
}

std::optional<WsCloseFrame> WsClient::wait_close_frame(milliseconds timeout) const {
  std::unique_lock lk(state_->mu);
  state_->cv.wait_for(lk, timeout, [&] { return state_->close_frame.has_value(); });
  return state_->close_frame;
}

WsEnd WsClient::wait_end(milliseconds timeout) const {
  std::unique_lock lk(state_->mu);
  state_->cv.wait_for(lk, timeout, [&] { return state_->end.ended(); });
  return state_->end;
}

WsEnd WsClient::end() const {
  std::lock_guard lk(state_->mu);
  return state_->end;
}

void WsClient::vanish(bool reset) {
  if (!impl_) return;
  auto* peer = impl_->peer.get();
  auto done = std::make_shared<Completion>();
  impl_->post([peer, reset, done] {
    peer->drop(reset);
    done->set(true);
  });
  done->wait(milliseconds(2000));
}

void WsClient::start_bulk(std::size_t total, std::size_t chunk, std::uint32_t seed) {
  if (!impl_) return;
  auto st = state_;
  auto p = detail::bulk_producer(total, chunk, seed,
                                 [st](bool) { st->update([&] { st->sending_done = true; }); });
  auto* peer = impl_->peer.get();
  impl_->post([peer, p = std::move(p)]() mutable { peer->enqueue(std::move(p)); });
}

bool WsClient::wait_sending_done(milliseconds timeout) const {
  return state_->wait([](const detail::WsPeerState& s) { return s.sending_done || s.end.ended(); },
                      timeout) &&
         stats().sending_done;
}

bool WsClient::wait_received_bytes(std::size_t n, milliseconds timeout) const {
  return state_->wait([n](const detail::WsPeerState& s) { return s.bytes_received >= n; }, timeout);
}

void WsClient::resume_reading() {
  if (!impl_) return;
  auto* peer = impl_->peer.get();
  impl_->post([peer] { peer->resume_reading(); });
}

WsStats WsClient::stats() const { return state_->snapshot(); }

// --- raw frames ---------------------------------------------------------------

std::string ws_frame(int opcode, std::string_view payload, bool fin, bool masked) {
  std::string out;
  out += static_cast<char>((fin ? 0x80 : 0) | (opcode & 0x0f));
  const unsigned char mask_bit = masked ? 0x80 : 0;
  const std::size_t n = payload.size();
  if (n < 126) {
    out += static_cast<char>(mask_bit | n);
  } else if (n <= 0xffff) {
    out += static_cast<char>(mask_bit | 126);
    out += static_cast<char>((n >> 8) & 0xff);
    out += static_cast<char>(n & 0xff);
  } else {
    out += static_cast<char>(mask_bit | 127);
    for (int i = 7; i >= 0; --i) out += static_cast<char>((static_cast<std::uint64_t>(n) >> (8 * i)) & 0xff);
  }
  static constexpr unsigned char kKey[4] = {0x37, 0xfa, 0x21, 0x3d};
  if (masked) out.append(reinterpret_cast<const char*>(kKey), 4);
  for (std::size_t i = 0; i < n; ++i)
    out += masked ? static_cast<char>(payload[i] ^ static_cast<char>(kKey[i % 4])) : payload[i];
  return out;
}

std::optional<WsRawFrame> parse_ws_frame(std::string& buf) {
  if (buf.size() < 2) return std::nullopt;
  const auto* b = reinterpret_cast<const unsigned char*>(buf.data());
  const unsigned len7 = b[1] & 0x7f;
  const bool masked = b[1] & 0x80;
  std::size_t hdr = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
  if (buf.size() < hdr) return std::nullopt;
  std::uint64_t n = len7;
  if (len7 >= 126) {
    n = 0;
    for (std::size_t i = 2; i < hdr; ++i) n = (n << 8) | b[i];
  }
  const std::size_t key_at = hdr;
  if (masked) hdr += 4;
  if (buf.size() < hdr + n) return std::nullopt;
  WsRawFrame f;
  f.fin = b[0] & 0x80;
  f.opcode = b[0] & 0x0f;
  f.masked = masked;
  f.payload = buf.substr(hdr, n);
  if (masked)
    for (std::size_t i = 0; i < f.payload.size(); ++i) f.payload[i] ^= static_cast<char>(b[key_at + i % 4]);
  buf.erase(0, hdr + n);
  return f;
}

std::string ws_accept_key(std::string_view key) {
  std::string in = std::string(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_Digest(in.data(), in.size(), md, &len, EVP_sha1(), nullptr);
  unsigned char out[64];
  int n = EVP_EncodeBlock(out, md, static_cast<int>(len));
  return std::string(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
}

Headers ws_upgrade_headers(std::string key) {
  return {{"Connection", "Upgrade"},
          {"Upgrade", "websocket"},
          {"Sec-WebSocket-Key", std::move(key)},
          {"Sec-WebSocket-Version", "13"}};
}

}  // namespace frontdoor::test
