// The request pipeline (STYLE "A request is a pipeline of named phases").
// In order:
//   read head → check framing → authenticate → route → authorize →
//   rate-limit → pick worker → rewrite headers → relay both ways → finish
// Each phase either continues or ends in end_request(reason): only this
// session writes local replies, and every one is made from a core::Reason.
//
// Threading: a Session lives on one ThreadContext and all its handlers run
// on that thread; nothing here locks. Timeouts are not timers: each phase
// sets deadline_, and the thread's sweep calls on_sweep() about every 100 ms.
//
// Ownership: a session is owned by the shared_ptrs its pending handlers
// hold. Every handler captures `self`; on_sweep() and on_drain(), which the
// thread context calls through a raw pointer, take their own reference
// first. Upstream handlers also capture their Attempt and return at once
// when it is no longer the current one.
#include "session.hpp"

#include <sys/socket.h>

#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <utility>

#include "frontdoor/auth/bearer.hpp"
#include "frontdoor/auth/decision.hpp"
#include "frontdoor/auth/token.hpp"
#include "frontdoor/core/log.hpp"
#include "frontdoor/core/time.hpp"
#include "frontdoor/http/route.hpp"

namespace frontdoor::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using core::Reason;

namespace {

constexpr std::size_t kReadSize = 16384;
constexpr std::size_t kUpstreamReadSize = 65536;
constexpr std::size_t kUpstreamHeaderLimit = 65536;
constexpr std::size_t kChunkLineLimit = 4096;          // chunk-size line with extensions
constexpr std::size_t kRelayChunkMax = 65536;          // decoded bytes per re-framed write
constexpr std::size_t kWatchLimit = 65536;             // client bytes read ahead while busy
constexpr std::size_t kDrainLimit = 64 * 1024;         // SPEC §4 step 1
constexpr auto kLingerTime = std::chrono::seconds(2);  // bound on a graceful close
constexpr auto kUncheckedReuse = std::chrono::microseconds(500);  // pooled connections: see start_attempt
// A tunnel being closed (revoked key, shutdown) waits this long for a frame
// boundary in each direction before it cuts the connections (SPEC §4 step 6:
// closed within 1 s of the revocation; the sweep notices it within ~0.1 s).
constexpr auto kTunnelCloseTime = std::chrono::milliseconds(500);
constexpr std::string_view kRevokedReason = "api key revoked";
constexpr std::string_view kShutdownReason = "frontdoor shutting down";
constexpr std::string_view kCrlf = "\r\n";
constexpr std::string_view kLastChunk = "0\r\n\r\n";
constexpr std::string_view kCrlfLastChunk = "\r\n0\r\n\r\n";
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
// 503 no_worker_ready: a worker may free up or turn ready at any moment.
constexpr std::string_view kRetryAfter = "Retry-After: 1\r\n";

std::string_view sv(beast::string_view s) noexcept { return {s.data(), s.size()}; }

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

void append_hex(std::string& out, std::size_t v) {
  char buf[20];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, 16);
  (void)ec;
  out.append(buf, end);
}

bool retryable_method(bhttp::verb v) noexcept {
  return v == bhttp::verb::get || v == bhttp::verb::head || v == bhttp::verb::options;
}

std::string_view data_of(const beast::flat_buffer& b) noexcept {
  return {static_cast<const char*>(b.data().data()), b.size()};
}

// A request line that starts like a HEAD request, for a head the parser
// refused: "HEAD" SP and a target (RFC 9112 §3).
bool looks_like_head(std::string_view head) noexcept {
  return head.size() > 5 && head.substr(0, 5) == "HEAD " && head[5] != ' ' && head[5] != '\t';
}

ClientStream make_client_stream(asio::ip::tcp::socket socket, const ListenerInfo& listener) {
  if (listener.tls) return ClientStream(std::move(socket), listener.tls->get());
  return ClientStream(std::move(socket));
}

// The status logged for a request cut before any response byte (SPEC §6:
// 499 when the client left, as nginx logs it).
unsigned cut_status(End e) noexcept {
  switch (e) {
    case End::client_closed: return 499;
    case End::worker_closed: return 502;
    case End::idle_timeout: return 504;
    case End::shutdown: return 503;
    case End::revoked: return 401;
    case End::complete: break;
  }
  return 0;
}

}  // namespace

// ---------------------------------------------------------------------------
// Connection
// ---------------------------------------------------------------------------

asio::mutable_buffer ReadBuffer::prepare(std::size_t n) {
  if (head_ == tail_) head_ = tail_ = 0;  // empty: start over at the front
  if (capacity_ - tail_ < n) {
    const std::size_t used = size();
    if (capacity_ - used >= n && used <= capacity_ / 2) {
      std::memmove(storage_.get(), data(), used);  // room enough once compacted
    } else {
      std::size_t cap = std::max<std::size_t>(capacity_ * 2, used + n);
      auto bigger = std::make_unique<char[]>(cap);
      if (used) std::memcpy(bigger.get(), data(), used);
      storage_ = std::move(bigger);
      capacity_ = cap;
    }
    head_ = 0;
    tail_ = used;
  }
  return {storage_.get() + tail_, n};
}

void ReadBuffer::shrink() noexcept {
  if (size() == 0) {
    storage_.reset();
    capacity_ = head_ = tail_ = 0;
  }
}

Session::Session(ThreadContext& ctx, asio::ip::tcp::socket socket, const ListenerInfo& listener)
    : ctx_(ctx), client_(make_client_stream(std::move(socket), listener)) {}

Session::~Session() {
  // Normally everything is released by end_request()/close() already; this
  // is the last line of defence, so that no slot ever leaks.
  // (A request still in progress at exit was ended and logged by
  // on_shutdown() before the thread context destroyed its handlers.)
  if (phase_ != Phase::closed) ctx_.remove(this);
  leave_queue();
  drop_attempt(false);
  release_key_slot();
  ctx_.shared().client_connections.fetch_sub(1, std::memory_order_relaxed);
}

void Session::start() {
  ctx_.add(this);
  error_code ec;
  client_.socket().set_option(asio::ip::tcp::no_delay(true), ec);
  auto peer = client_.socket().remote_endpoint(ec);
  if (ec) {
    close();
    return;
  }
  peer_addr_ = peer.address();
  if (peer_addr_.is_v6() && peer_addr_.to_v6().is_v4_mapped())
    peer_addr_ = asio::ip::make_address_v4(asio::ip::v4_mapped, peer_addr_.to_v6());
  peer_ip_ = peer_addr_.to_string();
  fresh_parser();
  phase_ = Phase::first_head;
  set_deadline(ctx_.runtime()->config->limits.header_timeout);  // the TLS handshake counts against it
  if (client_.is_tls()) {
    tls_ = Tls::handshake;
    client_read_pending_ = true;  // the handshake reads
    client_.async_handshake([self = shared_from_this()](error_code hec) { self->on_handshake(hec); });
    return;
  }
  read_client();
}

void Session::on_handshake(error_code ec) {
  client_read_pending_ = false;
  if (phase_ == Phase::closed) return;
  if (ec) {
    core::log::debug("TLS handshake failed", {{"peer", peer_ip_}, {"error", ec.message()}});
    close();
    return;
  }
  tls_ = Tls::established;
  read_client();
}

// A fresh parser per message, with our limits. It parses the head only
// (eager off): bodies go through our own framing code and its limits.
void Session::fresh_parser() {
  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(ctx_.runtime()->config->limits.max_header_bytes));
  parser_->body_limit(boost::none);  // max_body_bytes is ours, with our own error
  parser_->eager(false);
  head_parsed_ = 0;
}

void Session::read_client() {
  if (client_read_pending_ || keep_ == Keep::gone || in_writers_ || phase_ == Phase::closed) return;
  client_read_pending_ = true;
  client_.async_read_some(in_.prepare(kReadSize), [self = shared_from_this()](error_code ec, std::size_t n) {
    self->on_client_read(ec, n);
  });
}

// Asio retries a read at once whenever the previous one returned data, and
// right after we answered, the client cannot have sent its next request
// yet: that read would be an EAGAIN per request. Issued from the back of
// the handler queue instead, it usually finds the next request already
// there (and is otherwise the same read, so no readiness can be missed).
void Session::read_client_soon() {
  if (client_read_pending_ || keep_ == Keep::gone || phase_ == Phase::closed) return;
  client_read_pending_ = true;
  asio::post(ctx_.io(), [self = shared_from_this()] {
    self->client_read_pending_ = false;
    if (self->phase_ == Phase::linger)
      self->linger();  // e.g. a drain came meanwhile: the TLS shutdown reads
    else
      self->read_client();
  });
}

// While the session waits for a worker, it reads ahead (bounded) so that a
// client that goes away is noticed and its request cancelled.
void Session::watch_client() {
  if (in_.size() < kWatchLimit) read_client();
}

void Session::on_client_read(error_code ec, std::size_t n) {
  client_read_pending_ = false;
  if (phase_ == Phase::closed) return;
  if (phase_ == Phase::linger) {
    if (!ec && n) in_.commit(n);
    else if (ec != asio::error::operation_aborted) keep_ = Keep::gone;  // aborted: see linger()
    linger();
    return;
  }
  if (phase_ == Phase::tunnel) {
    on_tunnel_client_read(ec, n);
    return;
  }
  if (ec || n == 0) {
    keep_ = Keep::gone;
    on_client_gone();
    return;
  }
  in_.commit(n);
  switch (phase_) {
    case Phase::first_head:
    case Phase::idle:
    case Phase::head:
      on_head_bytes();
      return;
    case Phase::exchange:
      if (attempt_ && !req_.body_read()) pump_request();
      return;
    default:  // queued, connecting, continue_100, reply: kept for later
      return;
  }
}

// The client closed its side (or reset). Like nginx (proxy_ignore_client_abort
// off), a request in progress is cancelled: a worker may compute for minutes
// for nobody. A half-closing client (`nc -N`) loses its answer; see README.
void Session::on_client_gone() {
  switch (phase_) {
    case Phase::first_head:
    case Phase::idle:
    case Phase::head:
    case Phase::linger:
      close();  // no request in progress
      return;
    case Phase::reply:
    case Phase::continue_100:
      return;  // the write in progress finishes or fails, then we close
    default:
      end_request(Reason::none, End::client_closed);
      return;
  }
}

// Abortive close: used for cut streams and errors. Over TLS no close_notify
// is sent, so the client can tell a truncated response (RFC 8446 §6.1).
void Session::close() {
  if (phase_ == Phase::closed) return;
  if (req_.in_progress()) {
    end_request(Reason::none, End::client_closed);  // logs, then comes back here
    return;
  }
  leave_queue();
  drop_attempt();
  release_key_slot();
  phase_ = Phase::closed;
  ctx_.remove(this);
  error_code ignored;
  client_.socket().close(ignored);
}

// Graceful close after a complete answer: over TLS a close_notify and a
// bounded wait for the peer's; over TCP a half-close, then discard what the
// client still sends (at most kDrainLimit, for at most kLingerTime) so that
// our answer is not destroyed by a reset, then close.
void Session::linger() {
  if (phase_ == Phase::closed) return;
  if (phase_ != Phase::linger) {
    phase_ = Phase::linger;
    deadline_ = Clock::now() + kLingerTime;
    if (!client_.is_tls()) {
      error_code ignored;
      client_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    }
  }
  drained_ += in_.size();
  in_.consume(in_.size());
  if (client_.is_tls()) {
    // A client that closed cleanly (close_notify) still gets ours; one that
    // reset or sent a bare FIN does not wait for it.
    if (tls_ == Tls::handshake || (keep_ == Keep::gone && !client_.close_notify_received())) {
      close();
      return;
    }
    if (tls_ == Tls::shutdown) return;
    if (client_read_pending_) {
      // One read at a time on a TLS stream, and the shutdown reads: the
      // pending read is cancelled, and its handler comes back here.
      error_code ignored;
      client_.socket().cancel(ignored);
      return;
    }
    tls_ = Tls::shutdown;
    client_.async_shutdown([self = shared_from_this()](error_code) { self->close(); });
    return;
  }
  if (drained_ >= kDrainLimit || keep_ == Keep::gone) {
    close();
    return;
  }
  read_client();
}

void Session::on_sweep(Clock::time_point now) {
  auto keep = shared_from_this();  // C1: the handlers below may drop the last other owner
  // A request that waits for a worker watches its client, so that a
  // disconnect cancels it (a worker may think for minutes). Short requests
  // never pay the extra read.
  if (phase_ == Phase::queued || (phase_ == Phase::exchange && req_.body_read())) watch_client();
  if (phase_ == Phase::tunnel) {
    tunnel_sweep(now);
    return;
  }
  if (now < deadline_) return;
  deadline_ = Clock::time_point::max();
  switch (phase_) {
    case Phase::first_head:
      if (tls_ == Tls::handshake) {  // no TLS yet to answer in
        close();
        return;
      }
      reply(Reason::request_timeout, true);  // SPEC §4: 408, also to a silent connection
      return;
    case Phase::head:
      reply(Reason::request_timeout, true);
      return;
    case Phase::queued:
      // If the waiter was granted meanwhile, on_granted() is on its way.
      if (req_.endpoint->cancel(*req_.waiter)) {
        req_.waiter.reset();
        end_request(Reason::no_worker_ready, End::complete, kRetryAfter);
      }
      return;
    case Phase::connecting:
      // A connect that completed in the same instant is too late all the
      // same: its handler finds the attempt is not current any more.
      on_connected(asio::error::timed_out);
      return;
    case Phase::exchange:
      if (req_.response_started()) {
        core::log::warn("stream idle timeout", {{"request_id", req_.request_id()}});
        end_request(Reason::none, End::idle_timeout);
      } else if (attempt_ && attempt_->upload != Upload::unsent && attempt_->upload != Upload::waiting) {
        // No answer in time, or a worker that stopped reading the body.
        attempt_failed(Reason::worker_timeout);
      } else {
        end_request(Reason::request_timeout, End::complete);  // the client's body stalled
      }
      return;
    case Phase::idle:
      linger();  // a clean end: over TLS with close_notify
      return;
    case Phase::linger:
      close();
      return;
    case Phase::continue_100:
    case Phase::reply:
    case Phase::closed:
    case Phase::tunnel:  // (handled above)
      close();  // a client that does not read its answer
      return;
  }
}

void Session::on_drain() {
  auto keep = shared_from_this();
  // Kept-alive connections between requests close at once; a request in
  // progress finishes and its answer carries Connection: close.
  if (phase_ == Phase::idle || (phase_ == Phase::first_head && in_.size() == 0)) linger();
  // Tunnels get shutdown_grace like streams, then a Close frame (1001).
  if (phase_ == Phase::tunnel && ctx_.shared().grace_over.load(std::memory_order_relaxed))
    close_tunnel(End::shutdown);
}

void Session::on_shutdown() {
  auto keep = shared_from_this();
  if (req_.in_progress())
    end_request(Reason::none, End::shutdown);  // logs, leaves the queue, closes
  else
    close();
}

// ---------------------------------------------------------------------------
// Phase 1: read and check the request head
// ---------------------------------------------------------------------------

void Session::on_head_bytes() {
  const auto& limits = ctx_.runtime()->config->limits;
  if (phase_ == Phase::idle) {
    phase_ = Phase::head;  // the next head has header_timeout from its first byte
    set_deadline(limits.header_timeout);
  }
  auto data = in_.view();
  // A request line longer than the URI limit gets 414 even when it also
  // exceeds the header limit (as nginx does).
  if (data.size() > limits.max_uri_bytes + 32 &&
      data.substr(0, limits.max_uri_bytes + 32).find('\n') == std::string_view::npos) {
    reply(Reason::uri_too_long, true);
    return;
  }
  error_code ec;
  auto consumed = parser_->put(asio::buffer(data.data() + head_parsed_, data.size() - head_parsed_), ec);
  head_parsed_ += consumed;
  if (ec == bhttp::error::need_more) {
    if (in_.size() >= limits.max_header_bytes) {
      reply(Reason::request_header_too_large, true);
      return;
    }
    read_client();
    return;
  }
  if (ec) {
    Reason why = ec == bhttp::error::header_limit ? Reason::request_header_too_large
                 : http::version_above_http11(data)  ? Reason::http_version_not_supported
                                                     : Reason::bad_request;
    reply(why, true);
    return;
  }
  if (parser_->is_header_done()) on_request_head(head_parsed_);
}

void Session::on_request_head(std::size_t head_size) {
  req_.stage = Stage::started;
  req_.started = Clock::now();
  req_.runtime = ctx_.runtime();
  req_.config = req_.runtime->config.get();
  const auto& config = *req_.config;
  auto raw = std::string_view(in_.data(), head_size);
  const auto& head = parser_->get();

  // X-Request-Id: the client's if acceptable, else a new one.
  for (const auto& f : head) {
    if (f.name() == bhttp::field::unknown && iequals(sv(f.name_string()), "x-request-id")) {
      auto v = sv(f.value());
      if (http::valid_request_id(v)) {
        std::memcpy(req_.request_id_buf, v.data(), v.size());
        req_.request_id_size = v.size();
      }
      break;
    }
  }
  if (req_.request_id_size == 0) {
    ctx_.make_request_id(req_.request_id_buf);
    req_.request_id_size = 32;
  }

  req_.head = http::check_request_head(head, raw, config.limits.max_uri_bytes);
  in_.consume(head_size);
  head_parsed_ = 0;
  // The framing is known even for a refused head, so a reply knows whether
  // a body is left unread (review H1).
  if (req_.head.chunked) {
    req_.framing = Framing::chunked;
    req_.chunked = http::ChunkedDecoder({kChunkLineLimit, config.limits.max_header_bytes});
  } else if (req_.head.content_length && *req_.head.content_length) {
    req_.framing = Framing::length;
    req_.remaining = *req_.head.content_length;
  } else {
    req_.framing = Framing::none;
  }
  if (req_.head.reason != Reason::none) {
    reply(req_.head.reason, true);
    return;
  }

  auto outcome = authenticate_and_route();
  ctx_.metrics().record_outcome(outcome);
  if (outcome != Reason::none) {
    reply(outcome, false);
    return;
  }
  if (req_.head.content_length && *req_.head.content_length > config.limits.max_body_bytes) {
    reply(Reason::payload_too_large, true);
    return;
  }
  begin_proxy();
}

// ---------------------------------------------------------------------------
// Phases 2–5: authenticate, route, authorize, rate-limit
// ---------------------------------------------------------------------------

Reason Session::authenticate_and_route() {
  // SPEC §3.1: a store never loaded, or stale past keys.max_stale, fails closed.
  if (ctx_.shared().keys_unavailable.load(std::memory_order_relaxed)) return Reason::key_store_unavailable;
  const auto& head = parser_->get();
  auto bearer = http::bearer_of(head);
  if (bearer.reason != Reason::none) return bearer.reason;

  const auto& keys = ctx_.keys();
  const auto digest = auth::sha256(bearer.token);
  const auth::Key* key = keys ? keys->find_by_hash(digest) : nullptr;
  if (key) req_.key_id = key->id;

  req_.route = http::route(req_.head.host, req_.head.target, req_.config->routing);
  req_.endpoint = req_.runtime->find(req_.route.endpoint);
  const auto now = core::now_unix();
  // A tunnel carries the client's writes: it needs read_write (SPEC §4 step 6).
  auto decision = req_.head.websocket
                      ? auth::decide(key, now, req_.route.endpoint, req_.endpoint != nullptr, auth::Access::read_write)
                      : auth::decide(key, now, req_.route.endpoint, req_.endpoint != nullptr, sv(head.method_string()));
  if (req_.head.websocket) {  // kept to notice a revocation while the tunnel is open
    req_.keys = keys;
    req_.key = key;
    req_.key_hash = digest;
  }
  if (key && decision != Reason::api_key_disabled && decision != Reason::api_key_expired) {
    // Usage: atomics beside the snapshot, flushed by the store thread.
    auto& rt = key->runtime();
    rt.requests.fetch_add(1, std::memory_order_relaxed);
    if (rt.last_used.load(std::memory_order_relaxed) != now) rt.last_used.store(now, std::memory_order_relaxed);
    if (decision == Reason::none && key->rate_limit) return rate_limit(*key, rt);
  }
  return decision;
}

// SPEC §4 step 5: a token bucket of rps with burst, and at most
// max_concurrent requests in flight (a stream counts until it ends). With
// rate_limit_scope: fleet this replica enforces its share: each limit
// divided by the live replicas, rounded up (the RateLimit-* lines say so).
Reason Session::rate_limit(const auth::Key& key, auth::KeyRuntime& rt) {
  const std::uint64_t share = std::max<std::uint32_t>(1, ctx_.shared().fleet_share.load(std::memory_order_relaxed));
  auto part = [share](std::uint64_t v) { return v / share + (v % share != 0); };  // no overflow near 2^64
  auth::RateLimit limit = *key.rate_limit;
  limit.rps /= static_cast<double>(share);
  limit.burst = part(limit.burst);
  limit.max_concurrent = part(limit.max_concurrent);
  const auto now_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
  const double burst = static_cast<double>(std::max<std::uint64_t>(limit.burst, 1));
  bool allowed;
  double tokens;
  {
    std::lock_guard lock(rt.bucket_mutex);
    if (rt.tokens < 0) {
      rt.tokens = burst;  // a new bucket starts full
    } else {
      rt.tokens = std::min(burst, rt.tokens + static_cast<double>(now_ns - rt.refilled_ns) * 1e-9 * limit.rps);
    }
    rt.refilled_ns = now_ns;
    allowed = rt.tokens >= 1.0;
    if (allowed) rt.tokens -= 1.0;
    tokens = rt.tokens;
  }
  auto ceil_seconds = [](double s) { return static_cast<std::uint64_t>(std::max(1.0, std::ceil(s))); };
  const double rps = limit.rps > 0 ? limit.rps : 1e-9;
  auto& h = req_.rate_headers;
  h.clear();
  h.append("RateLimit-Limit: ").append(std::to_string(static_cast<std::uint64_t>(burst)));
  h.append("\r\nRateLimit-Remaining: ")
      .append(std::to_string(static_cast<std::uint64_t>(std::floor(std::max(0.0, tokens)))));
  h.append("\r\nRateLimit-Reset: ")
      .append(std::to_string(tokens >= burst ? 0 : ceil_seconds((burst - tokens) / rps)));
  h.append("\r\n");
  if (!allowed) {
    h.append("Retry-After: ").append(std::to_string(ceil_seconds((1.0 - tokens) / rps))).append("\r\n");
    return Reason::rate_limited;
  }
  if (limit.max_concurrent > 0) {
    if (rt.in_flight.fetch_add(1, std::memory_order_acq_rel) >= limit.max_concurrent) {
      rt.in_flight.fetch_sub(1, std::memory_order_acq_rel);
      h.append("Retry-After: 1\r\n");
      return Reason::rate_limited;
    }
    req_.key_slot = &rt;
  }
  return Reason::none;
}

void Session::begin_proxy() {
  // RFC 9110 §10.1.1: answer the expectation ourselves once the request is
  // accepted (the worker never sees Expect); a 1.0 client's is ignored.
  if (req_.head.expect_continue && !http10() && !req_.body_read() && in_.size() == 0) {
    phase_ = Phase::continue_100;
    set_deadline(req_.config->limits.idle_timeout);
    client_write_pending_ = true;
    asio::async_write(client_, asio::buffer(kContinue.data(), kContinue.size()),
                      [self = shared_from_this()](error_code ec, std::size_t) {
                        self->client_write_pending_ = false;
                        if (self->phase_ == Phase::closed) return;
                        if (ec || self->keep_ == Keep::gone) {
                          self->end_request(Reason::none, End::client_closed);
                          return;
                        }
                        self->acquire_worker();
                      });
    return;
  }
  acquire_worker();
}

// ---------------------------------------------------------------------------
// Phase 6: pick a worker (SPEC §4 step 7 queue), one attempt per try
// ---------------------------------------------------------------------------

void Session::acquire_worker() {
  ++req_.attempts;
  auto* endpoint = req_.endpoint;
  if (auto* w = endpoint->try_acquire(req_.failed_worker, ctx_.random())) {
    start_attempt(w);
    return;
  }
  // No ready worker with a free slot: wait in the endpoint's queue. While
  // queued, the waiter's grant function holds the session (and the session
  // the waiter); on_granted() or leave_queue() ends that.
  auto waiter = std::make_shared<lb::Waiter>();
  waiter->io = &ctx_.io();
  waiter->avoid = req_.failed_worker;
  waiter->on_grant = [self = shared_from_this()](lb::WorkerState* worker) { self->on_granted(worker); };
  auto admitted = endpoint->admit(waiter, ctx_.random());
  switch (admitted.admission) {
    case lb::EndpointState::Admission::granted:  // the local waiter goes with this scope
      start_attempt(admitted.worker);
      return;
    case lb::EndpointState::Admission::queue_full:
      end_request(Reason::no_worker_ready, End::complete, kRetryAfter);
      return;
    case lb::EndpointState::Admission::queued:
      req_.waiter = std::move(waiter);
      phase_ = Phase::queued;
      req_.queue_deadline = Clock::now() + endpoint->config().queue.timeout;
      deadline_ = req_.queue_deadline;
      watch_client();  // a client that goes away leaves the queue at once
      return;
  }
}

// Runs on this session's thread, posted by whichever thread freed the slot;
// the slot is already counted on `worker`. Only the current waiter's grant
// gets here: leave_queue() re-points an abandoned waiter's grant.
void Session::on_granted(lb::WorkerState* worker) {
  auto keep = shared_from_this();
  if (!req_.waiter || phase_ != Phase::queued) {  // defensive: pass the slot on
    if (worker && req_.endpoint) req_.endpoint->release(*worker);
    return;
  }
  // The waiter (and this grant function, which holds the session) lives
  // until the posted grant returns; then nothing refers to it.
  req_.waiter.reset();
  if (!worker) {
    admit_again();
    return;
  }
  start_attempt(worker);
}

// Sent back by the queue (lb::Waiter): a reload replaced the configuration
// this request queued on, and only the newest has a worker for it. The
// request is admitted again on the thread's newest runtime, keeping its
// queue deadline. Nothing of the old runtime is kept: it may go now.
void Session::admit_again() {
  const auto queue_deadline = req_.queue_deadline;
  // A retry avoids the worker that failed: the same one (same live state)
  // in the newest configuration.
  const auto failed = req_.failed_worker ? req_.failed_worker->live : nullptr;
  req_.runtime = ctx_.runtime();
  req_.config = req_.runtime->config.get();
  req_.endpoint = req_.runtime->find(req_.route.endpoint);
  req_.worker = nullptr;
  req_.failed_worker = nullptr;
  // The sweep may have found the wait over while this was on its way.
  if (!req_.endpoint || Clock::now() >= queue_deadline) {
    end_request(Reason::no_worker_ready, End::complete, kRetryAfter);
    return;
  }
  for (const auto& w : req_.endpoint->workers())
    if (failed && w->live == failed) req_.failed_worker = w.get();
  --req_.attempts;  // acquire_worker() counts a try; this is not one
  acquire_worker();
  if (phase_ == Phase::queued) req_.queue_deadline = deadline_ = queue_deadline;
}

// Leaves the endpoint's queue, if queued. A waiter granted meanwhile has a
// slot counted that nobody will use: it is released here, once.
void Session::leave_queue() {
  if (!req_.waiter) return;
  auto waiter = std::move(req_.waiter);
  if (!req_.endpoint->cancel(*waiter)) {
    // Granted: the grant is posted to us and will find its waiter is not
    // current any more. Hand it a function that releases the slot instead.
    waiter->on_grant = [endpoint = req_.endpoint, runtime = req_.runtime](lb::WorkerState* w) {
      if (w) endpoint->release(*w);  // nullptr: sent back, no slot taken
    };
    return;
  }
  waiter->on_grant = nullptr;
}

// `worker`'s slot is counted for this request; the attempt holds it.
void Session::start_attempt(lb::WorkerState* worker) {
  auto a = std::make_shared<Attempt>();
  a->worker = a->slot = worker;
  req_.worker = worker;
  attempt_ = a;
  const auto& ep = req_.endpoint->config();
  // A pooled connection is checked before reuse, whatever the method: a
  // worker may have closed it, or written stray bytes after its last answer
  // that must never be read as the next request's response (review L4).
  // A GET, HEAD or OPTIONS skips the check on a connection pooled less than
  // kUncheckedReuse ago: a busy proxy reuses its connections within
  // microseconds, where this syscall is 6% of a small request, while a
  // worker's idle close comes seconds later (and such a request is retried
  // if the connection turns out closed). Stray bytes sent within that
  // instant could be missed; a check a few microseconds after pooling would
  // miss them just the same. Other methods, never retried there, always check.
  const bool may_skip_check = retryable_method(parser_->get().method());
  while ((a->conn = ctx_.take(worker, ep.pool.idle_timeout))) {
    if (may_skip_check && Clock::now() - a->conn->idle_since < kUncheckedReuse) break;
    char probe;
    auto r = ::recv(a->conn->socket.native_handle(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    error_code ignored;
    a->conn->socket.close(ignored);  // closed (0), an error, or unexpected bytes
  }
  a->in = ctx_.take_buffer();
  if (a->conn) {
    send_request_head();
    return;
  }
  a->conn = std::make_unique<UpstreamConn>(ctx_.io());
  phase_ = Phase::connecting;
  set_deadline(ep.timeouts.connect);
  a->conn->socket.async_connect(worker->config.address, [self = shared_from_this(), a](error_code ec) {
    if (a != self->attempt_ || self->phase_ != Phase::connecting) return;
    self->on_connected(ec);
  });
}

// Also called by the sweep with timed_out: the attempt is then dropped,
// which closes its socket, and the pending connect's handler finds it is
// not current any more.
void Session::on_connected(error_code ec) {
  auto a = attempt_;
  if (!a) return;
  if (ec) {
    // Passive health: a failed fresh connect counts as a failed probe.
    auto* worker = a->worker;
    auto before = worker->health.load(std::memory_order_relaxed);
    auto after = req_.endpoint->record(*worker, lb::ProbeResult::failed);
    if (after != before)
      core::log::warn("worker state", {{"endpoint", req_.endpoint->config().id},
                                       {"worker", worker->address_text},
                                       {"from", lb::to_string(before)},
                                       {"to", lb::to_string(after)},
                                       {"probe", "connect failed"}});
    core::log::warn("worker connect failed",
                    {{"worker", worker->address_text}, {"endpoint", req_.endpoint->config().id}});
    attempt_failed(Reason::worker_unavailable);
    return;
  }
  a->conn->socket.set_option(asio::ip::tcp::no_delay(true), ec);
  send_request_head();
}

void Session::send_request_head() {
  auto& a = *attempt_;
  phase_ = Phase::exchange;
  if (req_.upstream_started == Clock::time_point{}) req_.upstream_started = Clock::now();
  const auto& head = parser_->get();
  a.out.clear();
  http::UpstreamRequest u;
  u.method = sv(head.method_string());
  u.rest = req_.route.rest;
  u.worker_authority = a.worker->config.authority;
  u.client_host = req_.head.host;
  u.proto = client_.is_tls() ? "https" : "http";
  u.peer_address = peer_ip_;
  u.peer_trusted = req_.config->routing.is_trusted(peer_addr_);  // per request: reloads apply
  u.request_id = req_.request_id();
  u.key_id = req_.key_id;
  u.strip_authorization = req_.config->keys.strip_authorization;
  u.chunked = req_.framing == Framing::chunked;
  u.websocket = req_.head.websocket;
  if (req_.framing == Framing::length)
    u.content_length = req_.remaining;
  else if (head.method() == bhttp::verb::post || head.method() == bhttp::verb::put ||
           head.method() == bhttp::verb::patch)
    u.content_length = 0;  // RFC 9110 §8.6: a body-carrying method states its empty body
  http::build_upstream_request(head, u, a.out);
  set_deadline(req_.endpoint->config().timeouts.idle);
  pump_request();
  read_upstream_soon();  // a worker may answer before it has read the whole body
}

// SPEC §4 step 7: the one retry rule. Any request is retried when no byte of
// it reached a worker; a GET, HEAD or OPTIONS also when a reused pooled
// connection failed before any response byte. Never once a response byte
// went to the client.
void Session::attempt_failed(Reason reason) {
  auto a = attempt_;
  if (!a) return;
  const bool body_touched = req_.bytes_in > 0;  // body bytes that left in_ for good
  const bool nothing_written = a->upload == Upload::unsent;
  const bool nothing_received = a->bytes_read == 0;
  const bool connect_or_unwritten = nothing_written && reason == Reason::worker_unavailable;
  const bool may_retry =
      req_.attempts <= req_.endpoint->config().retries && !req_.response_started() && !body_touched &&
      (connect_or_unwritten ||
       (a->reused() && nothing_received && reason == Reason::worker_unavailable &&
        retryable_method(parser_->get().method())));
  req_.failed_worker = a->worker;
  drop_attempt();
  if (may_retry) {
    acquire_worker();
    return;
  }
  end_request(reason, req_.response_started() ? End::worker_closed : End::complete);
}

// Abandons the current attempt: its worker slot is released, its
// connection closed. Handlers still pending see it is not current.
void Session::drop_attempt(bool recycle) {
  if (!attempt_) return;
  auto a = std::move(attempt_);
  release_worker_slot(*a);
  if (a->conn) {
    error_code ignored;
    a->conn->socket.close(ignored);
    a->conn.reset();
  }
  // The read buffer goes back to the thread's spares only when no write to
  // the client points into it (review H5); otherwise it dies with the last
  // handler that holds the attempt.
  if (recycle && !client_write_pending_) {
    ctx_.return_buffer(std::move(a->in));
    a->in = beast::flat_buffer();
  }
}

// After the response was read whole and the request sent: the worker
// connection goes back to the pool if the worker keeps it and sent nothing
// beyond its answer (stray bytes would answer the next request: review L4).
void Session::settle_connection(Attempt& a) {
  if (!a.conn || a.download != Download::complete || a.upload != Upload::sent) return;
  if (phase_ == Phase::tunnel) return;  // never pooled after a 101: it speaks WebSocket now
  const bool reusable = a.res_framing != Framing::until_eof && a.parser && a.parser->get().keep_alive() &&
                        a.in.size() == a.res_consume && !a.read_pending;
  if (reusable) {
    ++a.conn->exchanges;
    const auto& pool = req_.endpoint->config().pool;
    ctx_.give_back(a.worker, std::move(a.conn), pool.max_idle, pool.idle_timeout);
  } else {
    error_code ignored;
    a.conn->socket.close(ignored);
    a.conn.reset();
  }
}

void Session::release_worker_slot(Attempt& a) {
  if (auto* worker = std::exchange(a.slot, nullptr)) req_.endpoint->release(*worker);
}

// ---------------------------------------------------------------------------
// Client → worker: the request body pump
// ---------------------------------------------------------------------------

// Writes the next piece of the request: the head (in out) if not yet sent,
// then whatever body has arrived, in one gathered write. Then reads more.
void Session::pump_request() {
  auto a = attempt_;
  if (!a || phase_ != Phase::exchange || (a->upload != Upload::unsent && a->upload != Upload::waiting)) return;
  a->req_consume = 0;
  std::string_view body;  // zero-copy: client bytes still in in_
  switch (req_.framing) {
    case Framing::none:
    case Framing::until_eof:
      break;
    case Framing::length: {
      // Zero-copy: the bytes stay in in_ until the write is done, and the
      // body counts as read only then: a write that fails leaves them
      // unread, and the connection must not be kept alive over them.
      body = in_.view().substr(0, static_cast<std::size_t>(std::min<std::uint64_t>(req_.remaining, in_.size())));
      a->req_consume = body.size();
      break;
    }
    case Framing::chunked: {
      // Decoded and re-framed as chunks of our own: the worker never sees
      // the client's framing, extensions or trailers.
      std::size_t produced = 0;
      while (!req_.chunked.done() && in_.size() && produced < kRelayChunkMax) {
        auto r = req_.chunked.decode(in_.view());
        if (r.status == http::ChunkedDecoder::Status::error) {
          end_request(Reason::bad_request, End::complete);
          return;
        }
        if (r.status == http::ChunkedDecoder::Status::data) {
          append_hex(a->out, r.data.size());
          a->out.append(kCrlf).append(r.data).append(kCrlf);
          produced += r.data.size();
        }
        in_.consume(r.consumed);
        if (r.status == http::ChunkedDecoder::Status::need_more) break;
      }
      // Once per attempt (also on a retry of an empty body): the write
      // that carries it is issued below, and its end sends the upload.
      if (req_.chunked.done()) a->out.append(kLastChunk);
      req_.bytes_in = req_.chunked.body_bytes();
      if (req_.chunked.body_bytes() > req_.config->limits.max_body_bytes) {
        // SPEC §4 step 8: stop relaying, close the worker connection; 413 if
        // no response has started (end_request makes it a cut otherwise).
        end_request(Reason::payload_too_large, End::complete);
        return;
      }
      break;
    }
  }
  std::array<asio::const_buffer, 2> bufs{};  // by value into the write
  std::size_t count = 0;
  if (!a->out.empty()) bufs[count++] = asio::buffer(a->out);
  if (!body.empty()) bufs[count++] = asio::buffer(body.data(), body.size());
  const bool lock_in = !body.empty();
  if (count == 0) {
    if (req_.body_read()) {
      a->upload = Upload::sent;
      maybe_complete();
    } else {
      read_client();  // need more body from the client
    }
    return;
  }
  a->upload = Upload::writing;
  if (lock_in) ++in_writers_;
  asio::async_write(a->conn->socket, bufs, [self = shared_from_this(), a, lock_in](error_code ec, std::size_t n) {
    a->upload = Upload::waiting;  // on_request_written says what follows
    if (lock_in) --self->in_writers_;  // in_ may move again
    if (a != self->attempt_ || self->phase_ == Phase::closed) {
      // Abandoned: the bytes it was writing are of no further use. If they
      // were client bytes, they still sit at the front of in_.
      return;
    }
    self->on_request_written(ec, n);
  });
}

void Session::on_request_written(error_code ec, std::size_t) {
  auto& a = *attempt_;
  if (phase_ == Phase::tunnel) {  // the 101 came before this write's end was known
    if (ec) {
      cut_tunnel(End::worker_closed);
      return;
    }
    a.out.clear();
    tunnel_up();
    return;
  }
  if (ec) {
    // The worker stopped reading: often because it answered early (a 413
    // or 401 of its own) and closed. Its answer, if any, is relayed: the
    // upstream read decides (review M1). The rest of the client's body is
    // left unread, so the client connection is closed after the answer.
    a.req_consume = 0;
    a.upload = Upload::refused;
    if (a.download != Download::head) {
      maybe_complete();
      return;
    }
    read_upstream();  // no-op if already pending; EOF without a head → 502
    return;
  }
  set_deadline(req_.endpoint->config().timeouts.idle);  // progress, either way
  a.out.clear();
  if (a.req_consume) {
    req_.bytes_in += a.req_consume;
    in_.consume(a.req_consume);
    req_.remaining -= a.req_consume;
    a.req_consume = 0;
  }
  if (!req_.body_read()) {
    pump_request();
    return;
  }
  a.upload = Upload::sent;
  if (a.download == Download::head) set_deadline(req_.endpoint->config().timeouts.first_byte);
  maybe_complete();
}

// ---------------------------------------------------------------------------
// Worker → client: the response relay
// ---------------------------------------------------------------------------

// As read_client_soon(): the worker needs a moment to answer.
void Session::read_upstream_soon() {
  auto a = attempt_;
  if (!a || a->read_pending || !a->conn) return;
  a->read_pending = true;
  asio::post(ctx_.io(), [self = shared_from_this(), a] {
    a->read_pending = false;
    if (a != self->attempt_ || self->phase_ == Phase::closed) return;
    self->read_upstream();
  });
}

void Session::read_upstream() {
  auto a = attempt_;
  if (!a || a->read_pending || !a->conn || a->download == Download::complete) return;
  a->read_pending = true;
  a->conn->socket.async_read_some(a->in.prepare(kUpstreamReadSize),
                                  [self = shared_from_this(), a](error_code ec, std::size_t n) {
                                    a->read_pending = false;
                                    if (a != self->attempt_ || self->phase_ == Phase::closed) return;
                                    self->on_upstream_read(ec, n);
                                  });
}

void Session::on_upstream_read(error_code ec, std::size_t n) {
  if (phase_ == Phase::tunnel) {
    on_tunnel_upstream_read(ec, n);
    return;
  }
  auto& a = *attempt_;
  if (ec || n == 0) {
    if (a.download == Download::head) {
      attempt_failed(Reason::worker_unavailable);
      return;
    }
    if (a.res_framing == Framing::until_eof && (!ec || ec == asio::error::eof)) {
      a.download = Download::complete;  // only a clean end ends the body; a reset cuts it
      relay_response();
      return;
    }
    // Cut short: the client can only learn it from a cut connection.
    core::log::warn("worker closed mid-response",
                    {{"request_id", req_.request_id()}, {"worker", a.worker->address_text}});
    end_request(Reason::none, End::worker_closed);
    return;
  }
  a.in.commit(n);
  a.bytes_read += n;
  if (a.download == Download::head) {
    if (!parse_response_head()) return;
  } else {
    set_deadline(req_.endpoint->config().timeouts.idle);
  }
  relay_response();
}

// Parses the response head from the attempt's buffer. Returns true when it
// is complete and the relay may begin; otherwise it has read more, or ended
// the attempt.
bool Session::parse_response_head() {
  auto& a = *attempt_;
  for (;;) {
    if (!a.parser) {
      a.parser.emplace();
      a.parser->header_limit(kUpstreamHeaderLimit);
      a.parser->body_limit(boost::none);  // streams may be endless
      a.parser->eager(false);
      if (head_method()) a.parser->skip(true);
    }
    error_code pec;
    auto used = a.parser->put(a.in.data(), pec);
    a.in.consume(used);
    if (pec == bhttp::error::need_more) {
      read_upstream();
      return false;
    }
    if (pec) {
      core::log::warn("bad response head", {{"request_id", req_.request_id()},
                                            {"worker", a.worker->address_text},
                                            {"error", pec.message()}});
      attempt_failed(Reason::worker_unavailable);
      return false;
    }
    if (!a.parser->is_header_done()) {
      read_upstream();
      return false;
    }
    auto status = a.parser->get().result_int();
    if (status == 101 && req_.head.websocket) {
      open_tunnel();
      return false;
    }
    if (status >= 100 && status < 200) {
      // Interim responses are not relayed (we never forward Expect); 101
      // to anything but a WebSocket upgrade would switch to a protocol we
      // did not ask for.
      if (status == 101) {
        attempt_failed(Reason::worker_unavailable);
        return false;
      }
      a.parser.reset();
      if (a.in.size() == 0) {
        read_upstream();
        return false;
      }
      continue;
    }
    break;
  }
  const auto& res = a.parser->get();
  a.download = Download::body;
  req_.status = res.result_int();
  set_deadline(req_.endpoint->config().timeouts.idle);

  // Framing (RFC 9112 §6.3). A transfer coding other than a lone chunked
  // cannot be re-framed without losing it (review B1): refused as a broken
  // worker rather than relayed with its coding silently dropped.
  bool other_coding = false;
  for (const auto& f : res) {
    if (f.name() == bhttp::field::transfer_encoding && !iequals(sv(f.value()), "chunked")) other_coding = true;
  }
  const bool head_request = head_method();
  const bool http10_client = http10();
  const bool no_body = head_request || req_.status == 204 || req_.status == 304;
  if (no_body) {
    a.res_framing = a.client_framing = Framing::none;
  } else if (other_coding) {
    core::log::warn("unsupported transfer-coding in response",
                    {{"request_id", req_.request_id()}, {"worker", a.worker->address_text}});
    attempt_failed(Reason::worker_unavailable);
    return false;
  } else if (a.parser->chunked()) {
    a.res_framing = Framing::chunked;
    a.res_chunked = http::ChunkedDecoder({kChunkLineLimit, kUpstreamHeaderLimit});
    a.client_framing = http10_client ? Framing::until_eof : Framing::chunked;
  } else if (auto len = a.parser->content_length()) {
    a.res_framing = a.client_framing = Framing::length;
    a.res_remaining = *len;
  } else {
    a.res_framing = Framing::until_eof;
    a.client_framing = http10_client ? Framing::until_eof : Framing::chunked;
  }
  // An early answer (request body still flowing) keeps the connection: the
  // body is relayed to its end before the next request is read.
  const bool keep_alive = parser_->get().keep_alive() && keep_ == Keep::open &&
                          a.client_framing != Framing::until_eof &&
                          !ctx_.shared().draining.load(std::memory_order_relaxed);
  if (!keep_alive) close_when_done();

  http::DownstreamResponse d;
  d.request_id = req_.request_id();
  d.head_request = head_request;
  d.chunked = a.client_framing == Framing::chunked;
  if (a.client_framing == Framing::length) d.content_length = a.res_remaining;
  d.keep_alive = keep_alive;
  d.http10_client = http10_client;
  d.extra_headers = req_.rate_headers;
  client_out_.clear();
  http::build_downstream_response(res, d, client_out_);
  return true;
}

// One gathered write to the client: the head if not yet sent, then the body
// bytes available, framed as the client expects. The next read from the
// worker is issued only once this write is done (back-pressure).
void Session::relay_response() {
  auto a = attempt_;
  if (!a || client_write_pending_) return;
  std::array<asio::const_buffer, 3> bufs{};  // by value into the write
  std::size_t count = 0;
  bool complete = false;
  a->res_consume = 0;
  const bool chunked_out = a->client_framing == Framing::chunked;
  std::string_view data;    // zero-copy: a view into a->in
  std::string_view suffix;  // chunk end and/or last chunk

  switch (a->res_framing) {
    case Framing::none:
      complete = true;
      break;
    case Framing::length: {
      auto k = static_cast<std::size_t>(std::min<std::uint64_t>(a->res_remaining, a->in.size()));
      data = data_of(a->in).substr(0, k);
      complete = a->res_remaining == k;
      break;
    }
    case Framing::until_eof:
      data = data_of(a->in);
      complete = a->download == Download::complete;  // the worker closed cleanly
      break;
    case Framing::chunked: {
      // Decoded and re-framed (copied): chunk boundaries are ours.
      std::size_t produced = 0;
      while (a->in.size() && produced < kRelayChunkMax) {
        auto r = a->res_chunked.decode(data_of(a->in));
        if (r.status == http::ChunkedDecoder::Status::error) {
          core::log::warn("bad chunked response",
                          {{"request_id", req_.request_id()}, {"worker", a->worker->address_text}});
          if (req_.response_started())
            end_request(Reason::none, End::worker_closed);
          else
            attempt_failed(Reason::worker_unavailable);
          return;
        }
        if (r.status == http::ChunkedDecoder::Status::data && !r.data.empty()) {
          if (chunked_out) {
            append_hex(client_out_, r.data.size());
            client_out_.append(kCrlf).append(r.data).append(kCrlf);
          } else {
            client_out_.append(r.data);
          }
          produced += r.data.size();
        }
        a->in.consume(r.consumed);
        if (r.status != http::ChunkedDecoder::Status::data) break;
      }
      complete = a->res_chunked.done();
      if (complete && chunked_out) client_out_.append(kLastChunk);
      break;
    }
  }
  if (!data.empty()) {
    a->res_consume = data.size();
    if (chunked_out) {
      append_hex(client_out_, data.size());
      client_out_.append(kCrlf);
      suffix = complete ? kCrlfLastChunk : kCrlf;
    }
  } else if (complete && chunked_out && a->res_framing != Framing::chunked) {
    suffix = kLastChunk;
  }
  if (!client_out_.empty()) bufs[count++] = asio::buffer(client_out_);
  if (!data.empty()) bufs[count++] = asio::buffer(data.data(), data.size());
  if (!suffix.empty()) bufs[count++] = asio::buffer(suffix.data(), suffix.size());
  if (complete) {
    a->download = Download::complete;
    // The worker is done: its slot and the key's concurrency slot go back
    // now, before the last bytes are handed to the socket, so the client's
    // next request can never find them taken (issue 8 (a), (c)).
    if (a->upload == Upload::sent || a->upload == Upload::refused) {
      release_worker_slot(*a);
      release_key_slot();  // the upload too is over
      count_request();
    }
    settle_connection(*a);
  }
  if (count == 0) {
    if (complete) {
      req_.stage = Stage::responded;
      maybe_complete();
    } else {
      read_upstream();
    }
    return;
  }
  req_.stage = Stage::responding;
  client_write_pending_ = true;
  asio::async_write(client_, bufs, [self = shared_from_this(), a, complete](error_code ec, std::size_t n) {
    self->client_write_pending_ = false;
    if (self->phase_ == Phase::closed) return;
    self->req_.bytes_out += n;
    if (a != self->attempt_) return;
    self->on_response_written(ec, n, complete);
  });
}

void Session::on_response_written(error_code ec, std::size_t, bool complete) {
  auto& a = *attempt_;
  if (ec) {
    end_request(Reason::none, End::client_closed);  // cancels the upstream side
    return;
  }
  client_out_.clear();
  if (a.res_consume) {
    a.in.consume(a.res_consume);
    if (a.res_framing == Framing::length) a.res_remaining -= a.res_consume;
    a.res_consume = 0;
  }
  if (complete) {
    req_.stage = Stage::responded;
    maybe_complete();
    return;
  }
  set_deadline(req_.endpoint->config().timeouts.idle);
  if (a.in.size() || a.download == Download::complete)  // complete: a clean EOF to relay
    relay_response();
  else
    read_upstream();
}

// The exchange is over once the whole response went to the client and the
// request body was sent (or refused by the worker).
void Session::maybe_complete() {
  auto a = attempt_;
  if (!a || req_.stage != Stage::responded || client_write_pending_) return;
  if (a->upload == Upload::refused) {
    // The worker stopped reading our body: its connection cannot be reused,
    // and the client's unread body means we close after discarding at most
    // kDrainLimit of it.
    close_when_done();
  } else if (a->upload != Upload::sent) {
    return;  // the body is still being relayed
  }
  settle_connection(*a);  // pooled if the body finished after the response
  drop_attempt();  // releases the slot if still held; closes a connection not pooled
  release_key_slot();  // if the upload outlasted the response
  log_and_count();
  next_request();
}

// ---------------------------------------------------------------------------
// WebSocket tunnel (SPEC §4 step 6)
// ---------------------------------------------------------------------------
// After the worker's 101 the connection carries bytes both ways. Each
// direction is one more relay on the attempt, strictly "read, then write,
// then read", so a slow reader slows its writer and memory stays at the two
// read buffers. The tunnel holds its worker slot and its key's concurrency
// slot until it ends, and is logged once then (status 101).
//
// It ends when both sides have closed (a half-close is passed on), when
// either side resets, after timeouts.idle without a byte either way, or
// when frontdoor closes it (close_tunnel: a revoked key, the end of
// shutdown_grace) with a Close frame of its own to each side, sent at a
// frame boundary of that direction.

void Session::open_tunnel() {
  auto& a = *attempt_;
  const auto& res = a.parser->get();
  phase_ = Phase::tunnel;
  req_.status = 101;
  a.download = Download::body;
  // The handshake was written (sent), or its write's end is on its way
  // (writing: on_request_written then starts this direction).
  if (a.upload != Upload::writing) a.upload = Upload::waiting;
  close_when_done();  // never HTTP again
  set_deadline(req_.endpoint->config().timeouts.idle);
  ctx_.metrics().tunnel_opened();

  http::DownstreamResponse d;
  d.request_id = req_.request_id();
  d.switching = true;
  d.extra_headers = req_.rate_headers;
  client_out_.clear();
  http::build_downstream_response(res, d, client_out_);
  // Bytes that came with the 101 (a.in) and with the handshake (in_) are
  // the first of each direction.
  tunnel_down();
  tunnel_up();
}

// Client → worker: what the client sent, then the next read.
void Session::tunnel_up() {
  auto a = attempt_;
  if (!a || phase_ != Phase::tunnel || a->upload != Upload::waiting) return;
  if (!tunnel_closing() && a->download == Download::complete && client_.is_tls()) {
    // The worker closed, and TLS has no half-close to pass on: the client
    // gets close_notify, and what it still sends has nowhere to go.
    a->upload = Upload::sent;
    tunnel_maybe_finish();
    return;
  }
  const bool closing = tunnel_closing();
  const auto available = in_.view();
  const std::size_t n = a->up_frames.advance(available, closing);
  if (n == 0 && closing && a->up_frames.at_boundary()) {
    // Our Close frame, masked as a client's must be (RFC 6455 §5.3).
    a->out.clear();
    append_our_close_frame(a->out, true);
    a->upload = Upload::writing;
    asio::async_write(a->conn->socket, asio::buffer(a->out), [self = shared_from_this(), a](error_code ec, std::size_t) {
      a->upload = Upload::sent;
      if (a != self->attempt_ || self->phase_ != Phase::tunnel) return;
      if (ec) {
        self->cut_tunnel(End::worker_closed);
        return;
      }
      self->end_upload(*a);
    });
    return;
  }
  if (n == 0) {
    if (keep_ == Keep::gone) {  // the client has closed its side: everything it sent is written
      end_upload(*a);
      return;
    }
    read_client();
    return;
  }
  a->upload = Upload::writing;
  a->req_consume = n;
  ++in_writers_;  // the write points into in_: no read may move it meanwhile
  asio::async_write(a->conn->socket, asio::buffer(available.data(), n),
                    [self = shared_from_this(), a](error_code ec, std::size_t written) {
                      --self->in_writers_;
                      a->upload = Upload::waiting;
                      if (a != self->attempt_ || self->phase_ != Phase::tunnel) return;
                      if (ec) {
                        self->cut_tunnel(End::worker_closed);
                        return;
                      }
                      self->in_.consume(a->req_consume);
                      self->req_.bytes_in += written;
                      a->req_consume = 0;
                      self->tunnel_progress();
                      self->tunnel_up();
                    });
}

void Session::on_tunnel_client_read(error_code ec, std::size_t n) {
  auto a = attempt_;
  if (!a) return;
  if (ec && ec != asio::error::eof && ec != asio::ssl::error::stream_truncated) {
    keep_ = Keep::gone;
    cut_tunnel(End::client_closed);  // a reset
    return;
  }
  if (ec || n == 0) {  // the client closed its side: so does the tunnel, towards the worker
    keep_ = Keep::gone;
    if (req_.end == End::complete) req_.end = End::client_closed;
    tunnel_up();  // passes the end on once what came before it is written
    tunnel_maybe_finish();
    return;
  }
  in_.commit(n);
  tunnel_progress();
  tunnel_up();
}

// Worker → client: what the worker sent (the 101 head first), then the
// next read.
void Session::tunnel_down() {
  auto a = attempt_;
  if (!a || phase_ != Phase::tunnel || client_write_pending_ || a->download == Download::complete) return;
  const bool closing = tunnel_closing();
  const auto available = data_of(a->in);
  const std::size_t n = a->down_frames.advance(available, closing);
  bool last = false;
  if (n == 0 && closing && a->down_frames.at_boundary() && client_out_.empty()) {
    append_our_close_frame(client_out_, false);
    last = true;
  }
  if (n == 0 && client_out_.empty()) {
    read_upstream();
    return;
  }
  std::array<asio::const_buffer, 2> bufs{asio::buffer(client_out_), asio::buffer(available.data(), n)};
  a->res_consume = n;
  req_.stage = Stage::responding;
  client_write_pending_ = true;
  asio::async_write(client_, bufs, [self = shared_from_this(), a, last](error_code ec, std::size_t written) {
    self->client_write_pending_ = false;
    if (self->phase_ == Phase::closed) return;
    self->req_.bytes_out += written;
    if (a != self->attempt_ || self->phase_ != Phase::tunnel) return;
    if (ec) {
      self->keep_ = Keep::gone;
      if (self->req_.bytes_out == 0) self->req_.stage = Stage::started;  // not even the 101 arrived: 499
      self->cut_tunnel(End::client_closed);
      return;
    }
    self->client_out_.clear();
    a->in.consume(a->res_consume);
    a->res_consume = 0;
    if (last) {
      a->download = Download::complete;
      self->tunnel_maybe_finish();
      return;
    }
    self->tunnel_progress();
    self->tunnel_down();
    self->tunnel_maybe_finish();
  });
}

void Session::on_tunnel_upstream_read(error_code ec, std::size_t n) {
  auto& a = *attempt_;
  if (a.download == Download::complete) return;  // our Close frame went instead
  if (ec && ec != asio::error::eof) {
    cut_tunnel(End::worker_closed);  // a reset
    return;
  }
  if (ec || n == 0) {  // the worker closed its side: so does the tunnel, towards the client
    if (req_.end == End::complete) req_.end = End::worker_closed;
    a.download = Download::complete;
    if (!client_.is_tls() && !client_write_pending_) {  // (a Close frame of ours being written: linger shuts it)
      error_code ignored;
      client_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    }
    tunnel_up();  // over TLS, this ends the client's side too
    tunnel_maybe_finish();
    return;
  }
  a.in.commit(n);
  tunnel_progress();
  tunnel_down();
}

// Bytes moved: the idle deadline starts over, unless our close is under way
// (its own deadline stands).
void Session::tunnel_progress() {
  if (!tunnel_closing()) set_deadline(req_.endpoint->config().timeouts.idle);
}

// Nothing more goes to the worker (the client's end, or our Close frame,
// was the last): its side is shut, and the tunnel may be over.
void Session::end_upload(Attempt& a) {
  error_code ignored;
  a.conn->socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  a.upload = Upload::sent;
  tunnel_maybe_finish();
}

// The Close frame of our own close_tunnel(): 1008 for a revoked key, 1001
// at shutdown; masked towards the worker (RFC 6455 §5.3).
void Session::append_our_close_frame(std::string& out, bool to_worker) {
  const bool revoked = req_.end == End::revoked;
  http::append_close_frame(out, revoked ? http::kClosePolicyViolation : http::kCloseGoingAway,
                           revoked ? kRevokedReason : kShutdownReason, to_worker,
                           to_worker ? static_cast<std::uint32_t>(ctx_.random()) : 0);
}

// Both directions are over: the worker connection is closed, the slots go
// back, the tunnel is logged, and the client connection closes gracefully.
void Session::tunnel_maybe_finish() {
  auto a = attempt_;
  if (!a || phase_ != Phase::tunnel || client_write_pending_) return;
  if (a->upload != Upload::sent || a->download != Download::complete) return;
  drop_attempt();
  release_key_slot();
  req_.stage = Stage::responded;
  log_and_count();
  linger();
}

// Every sweep (~100 ms): the key may have been revoked, shutdown_grace may
// be over, the tunnel may have been idle too long, or its close may be
// taking too long.
void Session::tunnel_sweep(Clock::time_point now) {
  if (!tunnel_closing()) {
    if (!key_still_valid()) {
      close_tunnel(End::revoked);
      return;
    }
    if (ctx_.shared().grace_over.load(std::memory_order_relaxed)) {
      close_tunnel(End::shutdown);
      return;
    }
  }
  if (now < deadline_) return;
  if (tunnel_closing()) {
    cut_tunnel(req_.end);  // no frame boundary in time
    return;
  }
  core::log::info("tunnel idle timeout", {{"request_id", req_.request_id()}});
  cut_tunnel(End::idle_timeout);
}

// The tunnel's key, as this replica knows it now: still there (same hash),
// enabled, not expired, with read_write on the endpoint.
bool Session::key_still_valid() {
  const auto& keys = ctx_.keys();
  if (keys != req_.keys) {
    req_.keys = keys;
    req_.key = keys ? keys->find_by_hash(req_.key_hash) : nullptr;
  }
  return auth::decide(req_.key, core::now_unix(), req_.route.endpoint, true, auth::Access::read_write) ==
         Reason::none;
}

// Closes the tunnel from our side: each direction relays up to its next
// frame boundary, then carries our Close frame; the connections close once
// both went, or after kTunnelCloseTime in any case.
void Session::close_tunnel(End why) {
  if (phase_ != Phase::tunnel || tunnel_closing()) return;
  core::log::info("closing tunnel", {{"request_id", req_.request_id()},
                                     {"key_id", req_.key_id},
                                     {"why", to_string(why)}});
  req_.end = why;
  deadline_ = Clock::now() + kTunnelCloseTime;
  tunnel_up();
  tunnel_down();
}

// Ends the tunnel at once, both connections cut.
void Session::cut_tunnel(End why) {
  end_request(Reason::none, tunnel_closing() ? req_.end : why);
}

// ---------------------------------------------------------------------------
// The end of a request
// ---------------------------------------------------------------------------

void Session::release_key_slot() {
  if (req_.key_slot) {
    req_.key_slot->in_flight.fetch_sub(1, std::memory_order_acq_rel);
    req_.key_slot = nullptr;
  }
}

// The one way a request ends early (D3): the upstream side is stopped, the
// worker and key slots released once; then either a local reply (when no
// response byte has gone) or a cut of the connection, logged once.
void Session::end_request(Reason reason, End end, std::string_view extra_headers) {
  if (phase_ == Phase::closed) return;
  if (!req_.in_progress()) {  // between requests: nothing to end but the connection
    close();
    return;
  }
  leave_queue();
  drop_attempt();
  release_key_slot();
  if (reason != Reason::none && !req_.response_started() && !client_write_pending_ && keep_ != Keep::gone &&
      end == End::complete) {
    reply(reason, false, extra_headers);  // reply() closes if a body is left unread
    return;
  }
  // A reply can no longer be sent: cut the connection (Envoy's local reply
  // after the response started becomes a reset). The log says why: the
  // reply's code, or how it ended.
  req_.error = reason;
  if (end == End::complete && keep_ == Keep::gone) end = End::client_closed;
  if (end == End::complete && reason == Reason::none) end = End::worker_closed;
  req_.end = end;
  if (!req_.response_started()) req_.status = end != End::complete ? cut_status(end) : core::info(reason).status;
  log_and_count();
  close();
}

void Session::reply(Reason reason, bool close_after, std::string_view extra_headers) {
  if (phase_ == Phase::closed) return;
  if (client_write_pending_) {  // cannot happen by construction; never interleave writes
    close();
    return;
  }
  const auto& info = core::info(reason);
  req_.error = reason;
  req_.status = info.status;
  if (req_.request_id_size == 0) {
    ctx_.make_request_id(req_.request_id_buf);
    req_.request_id_size = 32;
  }
  if (req_.framing == Framing::length && req_.remaining && in_writers_ == 0 && in_.size() >= req_.remaining) {
    in_.consume(static_cast<std::size_t>(req_.remaining));  // all here already: the connection can go on
    req_.remaining = 0;
  }
  if (!req_.body_read()) close_after = true;  // SPEC §4 step 1: unread body
  const bool head_is_known = head_known();
  const bool keep_alive = !close_after && keep_ == Keep::open && head_is_known && parser_->get().keep_alive() &&
                          !ctx_.shared().draining.load(std::memory_order_relaxed);
  if (!keep_alive) close_when_done();
  release_key_slot();
  client_out_.clear();
  http::LocalReplyOptions options;
  // A head that could not be parsed may still be a HEAD request: its
  // answer must not carry a body either (RFC 9110 §9.3.2).
  options.head_request = head_is_known ? head_method() : looks_like_head(in_.view());
  options.http10_client = head_is_known && http10();
  // Answers to a key with a rate_limit carry its RateLimit-* lines (SPEC §4
  // step 5), whatever the reply, before the reply's own lines.
  std::string headers;
  if (!req_.rate_headers.empty()) {
    headers.reserve(req_.rate_headers.size() + extra_headers.size());
    headers.append(req_.rate_headers).append(extra_headers);
    extra_headers = headers;
  }
  http::build_local_reply(reason, req_.request_id(), keep_alive, client_out_, extra_headers, options);
  phase_ = Phase::reply;
  set_deadline(ctx_.runtime()->config->limits.idle_timeout);
  client_write_pending_ = true;
  req_.stage = Stage::responding;
  count_request();
  asio::async_write(client_, asio::buffer(client_out_), [self = shared_from_this()](error_code ec, std::size_t n) {
    self->client_write_pending_ = false;
    if (self->phase_ == Phase::closed) return;
    self->on_reply_written(ec, n);
  });
}

void Session::on_reply_written(error_code ec, std::size_t n) {
  req_.bytes_out += n;
  if (ec) {
    req_.end = End::client_closed;
    log_and_count();
    close();
    return;
  }
  log_and_count();
  next_request();
}

// Counted before the last bytes are handed to the socket (a client that
// has its answer and then scrapes /metrics must find it there), or at the
// end for a request that ends otherwise.
void Session::count_request() {
  if (req_.counted) return;
  req_.counted = true;
  const auto now = Clock::now();
  const bool routed = req_.endpoint != nullptr;
  ctx_.metrics().record(routed ? std::string_view(req_.route.endpoint) : std::string_view(), req_.status,
                        now - (req_.started == Clock::time_point{} ? now : req_.started),
                        phase_ != Phase::tunnel);  // a tunnel's length is its users' choice
}

void Session::log_and_count() {
  if (req_.stage == Stage::ended) return;
  req_.stage = Stage::ended;
  count_request();
  if (phase_ == Phase::tunnel) ctx_.metrics().tunnel_closed(static_cast<std::size_t>(req_.end));
  log_access();
}

void Session::log_access() {
  const auto& config = req_.config ? *req_.config : *ctx_.runtime()->config;
  if (!config.log.access) return;
  using namespace std::string_view_literals;
  using core::log::write_json_string;
  using core::log::write_raw;
  using core::log::write_uint;
  auto now = Clock::now();
  const bool have_head = head_known();
  auto method = have_head ? sv(parser_->get().method_string()) : "-"sv;
  // The query string may carry secrets: only the path is logged.
  auto path = have_head ? (req_.head.target.empty() ? sv(parser_->get().target()) : req_.head.target) : "-"sv;
  path = path.substr(0, path.find('?'));
  std::string_view worker = req_.worker ? std::string_view(req_.worker->address_text) : std::string_view();
  auto error = req_.end != End::complete ? to_string(req_.end)
               : req_.error == Reason::none ? std::string_view()
                                            : core::info(req_.error).code;
  auto ms = [](Clock::duration d) {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
  };
  const auto request_id = req_.request_id();

  auto& buf = ctx_.access_log_buffer();
  const std::size_t variable = request_id.size() + req_.key_id.size() + req_.route.endpoint.size() +
                               worker.size() + method.size() + path.size() + error.size();
  char* p = buf.reserve(384 + 6 * variable);
  auto string_or_null = [&p](std::string_view s) { p = s.empty() ? write_raw(p, "null"sv) : write_json_string(p, s); };
  p = write_raw(p, "{\"ts\":\""sv);
  p = core::log::write_timestamp(p);
  p = write_raw(p, "\",\"request_id\":"sv);
  p = write_json_string(p, request_id);  // may be the client's
  p = write_raw(p, ",\"key_id\":"sv);
  string_or_null(req_.key_id);
  p = write_raw(p, ",\"endpoint\":"sv);
  string_or_null(req_.route.endpoint);
  p = write_raw(p, ",\"worker\":"sv);
  string_or_null(worker);
  p = write_raw(p, ",\"method\":"sv);
  string_or_null(method);
  p = write_raw(p, ",\"path\":"sv);
  p = write_json_string(p, path);
  p = write_raw(p, ",\"status\":"sv);
  p = write_uint(p, req_.status);
  p = write_raw(p, ",\"error\":"sv);
  string_or_null(error);
  p = write_raw(p, ",\"bytes_in\":"sv);
  p = write_uint(p, req_.bytes_in);
  p = write_raw(p, ",\"bytes_out\":"sv);
  p = write_uint(p, req_.bytes_out);
  p = write_raw(p, ",\"duration_ms\":"sv);
  p = write_uint(p, ms(now - (req_.started == Clock::time_point{} ? now : req_.started)));
  p = write_raw(p, ",\"upstream_ms\":"sv);
  p = req_.upstream_started == Clock::time_point{} ? write_raw(p, "null"sv)
                                                   : write_uint(p, ms(now - req_.upstream_started));
  p = write_raw(p, "}\n"sv);
  buf.commit(p);
  ctx_.access_log_appended();
}

void Session::next_request() {
  if (keep_ != Keep::open || !req_.body_read()) {
    linger();
    return;
  }
  req_ = Request{};  // fresh per-request state, whole
  fresh_parser();
  if (client_out_.capacity() > 2 * kReadSize) std::string().swap(client_out_);  // idle connections stay small
  phase_ = Phase::idle;
  set_deadline(ctx_.runtime()->config->limits.idle_timeout);
  if (ctx_.shared().draining.load(std::memory_order_relaxed)) {
    linger();
    return;
  }
  if (in_.size()) {
    on_head_bytes();  // a pipelined request is already here
    return;
  }
  if (in_.capacity() > 2 * kReadSize && !client_read_pending_ && in_writers_ == 0) in_.shrink();
  read_client_soon();
}

}  // namespace frontdoor::proxy
