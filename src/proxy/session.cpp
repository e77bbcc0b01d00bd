// The request pipeline (STYLE "A request is a pipeline of named phases").
// In order:
//   read head → check framing → authenticate → route → authorize →
//   pick worker → rewrite headers → relay both ways → finish (log)
// Each phase either continues or ends in reply(reason): only this session
// writes local replies, and every one is made from a core::Reason.
//
// Threading: a Session lives on one ThreadContext and all its handlers run
// on that thread; nothing here locks. Timeouts are not timers: each phase
// sets deadline_, and the thread's sweep calls on_sweep() about every 100 ms.
// Upstream handlers carry the exchange number they were issued for, so a
// late completion from an abandoned exchange is ignored.
#include "session.hpp"

#include <sys/socket.h>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/read.hpp>

#include <charconv>
#include <cmath>

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
constexpr std::size_t kDrainLimit = 64 * 1024;              // SPEC §4 step 1
constexpr auto kLingerTime = std::chrono::seconds(2);      // bound on a graceful close
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


// Decodes as much of a chunked body as `in` holds into `out` (Beast's
// parser with a buffer_body), consuming what it used. Returns the bytes
// produced; `ec` is set only for a malformed body.
template <class Parser, std::size_t N>
std::size_t decode_body(Parser& parser, beast::flat_buffer& in, std::array<char, N>& out,
                        boost::system::error_code& ec) {
  std::size_t produced = 0;
  ec = {};
  while (in.size() && !parser.is_done() && produced < out.size()) {
    auto& body = parser.get().body();
    body.data = out.data() + produced;
    body.size = out.size() - produced;
    body.more = true;
    boost::system::error_code put_ec;
    auto used = parser.put(in.data(), put_ec);
    in.consume(used);
    produced = out.size() - body.size;
    if (put_ec == bhttp::error::need_buffer || put_ec == bhttp::error::need_more) {
      if (used == 0) break;
      continue;
    }
    if (put_ec) {
      ec = put_ec;
      break;
    }
  }
  return produced;
}

bool retryable_method(bhttp::verb v) noexcept {
  return v == bhttp::verb::get || v == bhttp::verb::head || v == bhttp::verb::options;
}

}  // namespace

// ---------------------------------------------------------------------------
// Connection
// ---------------------------------------------------------------------------

namespace {
ClientStream make_client_stream(asio::ip::tcp::socket socket, const ListenerInfo& listener) {
  if (listener.tls) return ClientStream(std::move(socket), listener.tls->get());
  return ClientStream(std::move(socket));
}
}  // namespace

Session::Session(ThreadContext& ctx, asio::ip::tcp::socket socket, const ListenerInfo& listener)
    : ctx_(ctx), client_(make_client_stream(std::move(socket), listener)) {}

Session::~Session() {
  if (phase_ != Phase::closed) ctx_.remove(this);
  if (exchange_active_) abort_exchange();
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
  auto addr = peer.address();
  if (addr.is_v6() && addr.to_v6().is_v4_mapped())
    addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
  peer_ip_ = addr.to_string();
  const auto& config = *ctx_.runtime()->config;
  peer_trusted_ = config.routing.is_trusted(addr);
  fresh_parser(config);
  phase_ = Phase::first_head;
  set_deadline(config.limits.header_timeout);  // the TLS handshake counts against it
  if (client_.is_tls()) {
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
  handshaken_ = true;
  read_client();
}

// A fresh parser per message, with our limits (the body limit is enforced
// here, with our own error).
void Session::fresh_parser(const config::Config& config) {
  req_.emplace();
  req_->header_limit(static_cast<std::uint32_t>(config.limits.max_header_bytes));
  req_->body_limit(boost::none);
  head_parsed_ = 0;
}

// The state of one attempt at a worker: cleared before each attempt (a
// retry is a new one) and before the next request.
void Session::reset_exchange() {
  req_sent_ = req_final_chunk_sent_ = req_aborted_ = false;
  res_started_ = res_done_ = res_head_done_ = res_eof_ = response_waiting_ = false;
  up_write_pending_ = up_read_pending_ = false;
  res_.reset();
}

void Session::read_client() {
  if (client_read_pending_ || phase_ == Phase::closed || client_eof_) return;
  client_read_pending_ = true;
  client_.async_read_some(in_.prepare(kReadSize),
                          [self = shared_from_this()](error_code ec, std::size_t n) {
                            self->on_client_read(ec, n);
                          });
}

// Asio retries a read at once whenever the previous one returned data, and
// right after we answered, the client cannot have sent its next request
// yet: that read would be an EAGAIN per request. Issued from the back of
// the handler queue instead, it usually finds the next request already
// there (and is otherwise the same read, so no readiness can be missed).
void Session::read_client_soon() {
  if (client_read_pending_ || phase_ == Phase::closed || client_eof_) return;
  client_read_pending_ = true;
  asio::post(ctx_.io(), [self = shared_from_this()] {
    self->client_read_pending_ = false;
    self->read_client();
  });
}

void Session::on_client_read(error_code ec, std::size_t n) {
  client_read_pending_ = false;
  if (phase_ == Phase::closed) return;
  if (ec || n == 0) {
    client_eof_ = true;
    switch (phase_) {
      case Phase::reply:
      case Phase::continue_100:
        return;  // the write in progress finishes, then the connection closes
      default:
        // A client that goes away cancels its upstream exchange, if any.
        close();
        return;
    }
  }
  in_.commit(n);
  switch (phase_) {
    case Phase::first_head:
    case Phase::idle:
    case Phase::head:
      on_head_bytes();
      return;
    case Phase::exchange:
      // Either more request body, or (request already sent) pipelined bytes
      // that wait in in_ for the next request.
      if (!req_sent_ && !req_aborted_ && !up_write_pending_) send_request_body();
      return;
    case Phase::drain:
      drain_body();
      return;
    default:
      return;
  }
}

void Session::close() {
  if (phase_ == Phase::closed) return;
  release_key_slot();  // a cut stream ends its key's concurrent request too
  if (exchange_active_) abort_exchange();
  if (waiter_) {
    endpoint_->cancel(*waiter_);  // if granted meanwhile, on_granted() passes the slot on
    waiter_.reset();
  }
  phase_ = Phase::closed;
  ctx_.remove(this);
  error_code ignored;
  client_.socket().close(ignored);
}

void Session::on_sweep(Clock::time_point now) {
  // An exchange that outlives a sweep interval watches its client, so that
  // a disconnect cancels it (a worker may think for minutes). Short
  // requests never pay the extra read. Pipelined bytes make it unneeded.
  if (phase_ == Phase::exchange && req_sent_ && !client_read_pending_ && in_.size() == 0)
    read_client();
  if (now < deadline_) return;
  deadline_ = Clock::time_point::max();
  switch (phase_) {
    case Phase::first_head:
      if (client_.is_tls() && !handshaken_) {  // no TLS yet to answer in
        close();
        return;
      }
      reply(Reason::request_timeout, true);
      return;
    case Phase::head:
      reply(Reason::request_timeout, true);
      return;
    case Phase::queued:
      if (endpoint_->cancel(*waiter_)) {
        waiter_.reset();
        reply(Reason::no_worker_ready, false, kRetryAfter);
      }  // else granted meanwhile: on_granted() is on its way
      return;
    case Phase::connecting:
      // Cancels the connect; on_connected sees the error and applies the
      // retry rule like any other connect failure.
      if (up_) {
        error_code ignored;
        up_->socket.close(ignored);
      }
      return;
    case Phase::exchange:
      if (res_started_) {
        core::log::warn("stream idle timeout", {{"request_id", request_id_}, {"worker", worker_->address_text}});
        close();
      } else if (req_sent_) {
        exchange_failed(Reason::worker_timeout, false, false);
      } else {
        abort_exchange();
        reply(Reason::request_timeout, true);
      }
      return;
    default:  // idle, continue_100, reply, drain
      close();
      return;
  }
}

void Session::on_drain() {
  // Kept-alive connections between requests close at once; a request in
  // progress finishes and its answer carries Connection: close.
  if (phase_ == Phase::idle || (phase_ == Phase::first_head && in_.size() == 0)) close();
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
  auto data = std::string_view(static_cast<const char*>(in_.data().data()), in_.size());
  // A request line longer than the URI limit gets 414 even when it also
  // exceeds the header limit (as nginx does).
  if (data.size() > limits.max_uri_bytes + 32 && data.substr(0, limits.max_uri_bytes + 32).find('\n') ==
                                                     std::string_view::npos) {
    reply(Reason::uri_too_long, true);
    return;
  }
  error_code ec;
  auto consumed = req_->put(asio::buffer(data.data() + head_parsed_, data.size() - head_parsed_), ec);
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
    reply(ec == bhttp::error::header_limit ? Reason::request_header_too_large : Reason::bad_request, true);
    return;
  }
  if (req_->is_header_done()) on_request_head(head_parsed_);
}

void Session::on_request_head(std::size_t head_size) {
  started_ = Clock::now();
  runtime_ = ctx_.runtime();
  config_ = runtime_->config.get();
  auto raw = std::string_view(static_cast<const char*>(in_.data().data()), head_size);
  const auto& head = req_->get();

  // X-Request-Id: the client's if acceptable, else a new one.
  request_id_ = {};
  for (const auto& f : head) {
    if (f.name() == bhttp::field::unknown && iequals(sv(f.name_string()), "x-request-id")) {
      auto v = sv(f.value());
      if (http::valid_request_id(v)) {
        std::memcpy(request_id_buf_, v.data(), v.size());
        request_id_ = {request_id_buf_, v.size()};
      }
      break;
    }
  }
  if (request_id_.empty()) {
    ctx_.make_request_id(request_id_buf_);
    request_id_ = {request_id_buf_, 32};
  }

  head_ = http::check_request_head(head, raw, config_->limits.max_uri_bytes);
  in_.consume(head_size);
  head_parsed_ = 0;
  if (head_.reason != Reason::none) {
    reply(head_.reason, head_.reason != Reason::upgrade_not_supported);
    return;
  }
  req_framing_ = head_.chunked                                     ? Framing::chunked
                 : (head_.content_length && *head_.content_length) ? Framing::length
                                                                   : Framing::none;
  req_remaining_ = head_.content_length.value_or(0);

  auto outcome = authenticate_and_route();
  ctx_.metrics().record_outcome(outcome);
  if (outcome != Reason::none) {
    reply(outcome, false, rate_headers_);
    return;
  }
  if (head_.content_length && *head_.content_length > config_->limits.max_body_bytes) {
    reply(Reason::payload_too_large, true);
    return;
  }
  begin_proxy();
}

// ---------------------------------------------------------------------------
// Phases 2–4: authenticate, route, authorize
// ---------------------------------------------------------------------------

Reason Session::authenticate_and_route() {
  const auto& head = req_->get();
  auto bearer = http::bearer_of(head);
  if (bearer.reason != Reason::none) return bearer.reason;

  const auto& keys = ctx_.keys();
  const auth::Key* key = keys ? keys->find_by_hash(auth::sha256(bearer.token)) : nullptr;
  if (key) key_id_ = key->id;

  route_ = http::route(head_.host, head_.target, config_->routing);
  endpoint_ = runtime_->find(route_.endpoint);
  const auto now = core::now_unix();
  auto decision = auth::decide(key, now, route_.endpoint, endpoint_ != nullptr, sv(head.method_string()));
  if (key && decision != Reason::api_key_disabled && decision != Reason::api_key_expired) {
    // Usage: atomics beside the snapshot, flushed by the store thread.
    auto& rt = key->runtime();
    rt.requests.fetch_add(1, std::memory_order_relaxed);
    if (rt.last_used.load(std::memory_order_relaxed) != now) rt.last_used.store(now, std::memory_order_relaxed);
    if (decision == Reason::none && key->rate_limit) return rate_limit(*key, rt);
  }
  return decision;
}

// Phase 5 (SPEC §4 step 5): a token bucket of rps with burst, and at most
// max_concurrent requests in flight (a stream counts until it ends).
Reason Session::rate_limit(const auth::Key& key, auth::KeyRuntime& rt) {
  const auto& limit = *key.rate_limit;
  const auto now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
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
  rate_headers_.clear();
  rate_headers_.append("RateLimit-Limit: ").append(std::to_string(static_cast<std::uint64_t>(burst)));
  rate_headers_.append("\r\nRateLimit-Remaining: ").append(std::to_string(static_cast<std::uint64_t>(std::floor(std::max(0.0, tokens)))));
  rate_headers_.append("\r\nRateLimit-Reset: ").append(std::to_string(tokens >= burst ? 0 : ceil_seconds((burst - tokens) / rps)));
  rate_headers_.append("\r\n");
  if (!allowed) {
    rate_headers_.append("Retry-After: ").append(std::to_string(ceil_seconds((1.0 - tokens) / rps))).append("\r\n");
    return Reason::rate_limited;
  }
  if (limit.max_concurrent > 0) {
    if (rt.in_flight.fetch_add(1, std::memory_order_acq_rel) >= limit.max_concurrent) {
      rt.in_flight.fetch_sub(1, std::memory_order_acq_rel);
      rate_headers_.append("Retry-After: 1\r\n");
      return Reason::rate_limited;
    }
    concurrency_held_ = &rt;
  }
  return Reason::none;
}

void Session::release_key_slot() {
  if (concurrency_held_) {
    concurrency_held_->in_flight.fetch_sub(1, std::memory_order_acq_rel);
    concurrency_held_ = nullptr;
  }
}

void Session::begin_proxy() {
  if (head_.expect_continue && req_framing_ != Framing::none && in_.size() == 0) {
    // RFC 9110 §10.1.1: answer the expectation ourselves once the request is
    // accepted; the worker never sees Expect.
    phase_ = Phase::continue_100;
    set_deadline(config_->limits.idle_timeout);
    asio::async_write(client_, asio::buffer(kContinue.data(), kContinue.size()),
                      [self = shared_from_this()](error_code ec, std::size_t) {
                        if (self->phase_ == Phase::closed) return;
                        if (ec || self->client_eof_) {
                          self->close();
                          return;
                        }
                        self->start_exchange();
                      });
    return;
  }
  start_exchange();
}

// ---------------------------------------------------------------------------
// Phases 5–6: pick a worker, rewrite, relay
// ---------------------------------------------------------------------------

void Session::start_exchange() {
  ++attempts_;
  if (auto* w = endpoint_->try_acquire(failed_worker_, ctx_.random())) {
    assign_worker(w);
    return;
  }
  // No ready worker with a free slot: wait in the endpoint's queue.
  waiter_ = std::make_shared<lb::Waiter>();
  waiter_->io = &ctx_.io();
  waiter_->avoid = failed_worker_;
  waiter_->on_grant = [self = shared_from_this()](lb::WorkerState* w) { self->on_granted(w); };
  auto admitted = endpoint_->admit(waiter_, ctx_.random());
  switch (admitted.admission) {
    case lb::EndpointState::Admission::granted:
      waiter_.reset();
      assign_worker(admitted.worker);
      return;
    case lb::EndpointState::Admission::queue_full:
      waiter_.reset();
      reply(Reason::no_worker_ready, false, kRetryAfter);
      return;
    case lb::EndpointState::Admission::queued:
      phase_ = Phase::queued;
      set_deadline(endpoint_->config().queue.timeout);
      // A client that goes away leaves the queue at once (SPEC §4 step 7).
      if (in_.size() == 0 && req_framing_ == Framing::none) read_client();
      return;
  }
}

// Runs on this session's thread, posted by whichever thread freed the slot;
// the slot is already counted on `w`.
void Session::on_granted(lb::WorkerState* w) {
  waiter_.reset();  // breaks the session ↔ waiter cycle
  if (phase_ != Phase::queued) {
    endpoint_->release(*w);  // gave up meanwhile (closed): pass the slot on
    return;
  }
  assign_worker(w);
}

void Session::assign_worker(lb::WorkerState* w) {
  worker_ = w;
  ++exchange_id_;
  reset_exchange();
  exchange_active_ = true;
  const auto& ep = endpoint_->config();

  while ((up_ = ctx_.take(worker_, ep.pool.idle_timeout))) {
    // A request that must not be retried after a failure checks first that
    // the pooled connection was not closed by the worker meanwhile (SPEC §4
    // step 7: "a pooled connection found closed before writing").
    if (retryable_method(req_->get().method())) break;
    char probe;
    auto r = ::recv(up_->socket.native_handle(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    error_code ignored;
    up_->socket.close(ignored);  // closed (0), an error, or unexpected bytes
  }
  if (up_) {
    up_reused_ = true;
    up_in_ = ctx_.take_buffer();
    send_request_head();
  } else {
    connect_worker();
  }
}

void Session::connect_worker() {
  up_ = std::make_unique<UpstreamConn>(ctx_.io());
  up_reused_ = false;
  up_in_ = ctx_.take_buffer();
  phase_ = Phase::connecting;
  set_deadline(endpoint_->config().timeouts.connect);
  up_->socket.async_connect(worker_->config.address,
                            [self = shared_from_this(), id = exchange_id_](error_code ec) {
                              if (id != self->exchange_id_ || self->phase_ == Phase::closed) return;
                              self->on_connected(ec);
                            });
}

void Session::on_connected(error_code ec) {
  if (ec) {
    // Passive health: a failed fresh connect counts as a failed probe.
    auto before = worker_->health.load(std::memory_order_relaxed);
    auto after = endpoint_->record(*worker_, lb::ProbeResult::failed);
    if (after != before)
      core::log::warn("worker state", {{"endpoint", endpoint_->config().id},
                                       {"worker", worker_->address_text},
                                       {"from", lb::to_string(before)},
                                       {"to", lb::to_string(after)},
                                       {"probe", "connect failed"}});
    exchange_failed(Reason::worker_unavailable, true, true);
    return;
  }
  up_->socket.set_option(asio::ip::tcp::no_delay(true), ec);
  send_request_head();
}

void Session::send_request_head() {
  phase_ = Phase::exchange;
  upstream_started_ = Clock::now();
  const auto& head = req_->get();
  out_.clear();
  http::UpstreamRequest u;
  u.method = sv(head.method_string());
  u.rest = route_.rest;
  u.worker_authority = worker_->config.authority;
  u.client_host = head_.host;
  u.proto = client_.is_tls() ? "https" : "http";
  u.peer_address = peer_ip_;
  u.peer_trusted = peer_trusted_;
  u.request_id = request_id_;
  u.key_id = key_id_;
  u.strip_authorization = config_->keys.strip_authorization;
  u.chunked = req_framing_ == Framing::chunked;
  if (req_framing_ == Framing::length) u.content_length = req_remaining_;
  else if (head.method() == bhttp::verb::post || head.method() == bhttp::verb::put ||
           head.method() == bhttp::verb::patch)
    u.content_length = 0;  // RFC 9110 §8.6: a body-carrying method states its empty body
  http::build_upstream_request(head, u, out_);
  set_deadline(endpoint_->config().timeouts.idle);
  send_request_body();
  read_upstream_soon();  // a worker may answer before it has read the whole body
}

// Writes the next piece of the request: the head (in out_) if not yet sent,
// then whatever body is available, in one gathered write.
void Session::send_request_body() {
  if (up_write_pending_ || req_sent_ || req_aborted_) return;
  // Passed by value: the write operation keeps its own copy of the buffer
  // list across partial writes (unused entries are empty).
  std::array<asio::const_buffer, 2> bufs{};
  std::size_t count = 0;
  req_pending_consume_ = 0;
  if (req_framing_ == Framing::length) {
    auto k = static_cast<std::size_t>(std::min<std::uint64_t>(req_remaining_, in_.size()));
    if (!out_.empty()) bufs[count++] = asio::buffer(out_);
    if (k) bufs[count++] = asio::buffer(in_.data().data(), k);
    req_pending_consume_ = k;
  } else if (req_framing_ == Framing::chunked) {
    // Decode what has arrived and re-frame it as one chunk.
    if (!req_chunk_) req_chunk_ = std::make_unique<std::array<char, 16384>>();
    error_code ec;
    const std::size_t produced = decode_body(*req_, in_, *req_chunk_, ec);
    if (ec) {
      abort_exchange();
      reply(Reason::bad_request, true);
      return;
    }
    req_total_ += produced;
    bytes_in_ = req_total_;
    if (req_total_ > config_->limits.max_body_bytes) {
      // SPEC §4 step 8: stop relaying, close the worker connection.
      bool started = res_started_;
      abort_exchange();
      if (started)
        close();
      else
        reply(Reason::payload_too_large, true);
      return;
    }
    if (produced) {
      append_hex(out_, produced);
      out_.append(kCrlf);
      out_.append(req_chunk_->data(), produced);
      out_.append(kCrlf);
    }
    if (req_->is_done()) {
      out_.append(kLastChunk);
      req_final_chunk_sent_ = true;
    }
    if (!out_.empty()) bufs[count++] = asio::buffer(out_);
  } else if (!out_.empty()) {
    bufs[count++] = asio::buffer(out_);
  }

  if (count == 0) {
    read_client();  // need more body from the client
    return;
  }
  up_write_pending_ = true;
  asio::async_write(up_->socket, bufs,
                    [self = shared_from_this(), id = exchange_id_](error_code ec, std::size_t n) {
                      if (id != self->exchange_id_ || self->phase_ == Phase::closed) return;
                      self->on_request_written(ec, n);
                    });
}

void Session::on_request_written(error_code ec, std::size_t n) {
  up_write_pending_ = false;
  if (ec) {
    if (res_head_done_) {
      // The worker answered early and stopped reading: relay its answer;
      // the rest of the client's body is discarded and the client closed.
      req_aborted_ = true;
      close_after_response_ = true;
      if (response_waiting_) {
        response_waiting_ = false;
        on_response_head();
      } else {
        maybe_finish_exchange();
      }
      return;
    }
    exchange_failed(Reason::worker_unavailable, false, !res_head_done_ && up_in_.size() == 0);
    return;
  }
  (void)n;
  out_.clear();
  if (req_pending_consume_) {
    bytes_in_ += req_pending_consume_;
    in_.consume(req_pending_consume_);
    req_remaining_ -= req_pending_consume_;
    req_pending_consume_ = 0;
  }
  bool done = req_framing_ == Framing::none || (req_framing_ == Framing::length && req_remaining_ == 0) ||
              (req_framing_ == Framing::chunked && req_final_chunk_sent_);
  if (!done) {
    set_deadline(endpoint_->config().timeouts.idle);
    if (response_waiting_) {
      response_waiting_ = false;
      on_response_head();  // early answer: relayed while the body still flows
    }
    if (phase_ == Phase::exchange && !req_sent_) send_request_body();
    return;
  }
  req_sent_ = true;
  if (!res_head_done_) set_deadline(endpoint_->config().timeouts.first_byte);
  if (response_waiting_) {
    response_waiting_ = false;
    on_response_head();
    return;
  }
  maybe_finish_exchange();
}

// As read_client_soon(): the worker needs a moment to answer.
void Session::read_upstream_soon() {
  if (up_read_pending_ || !up_) return;
  up_read_pending_ = true;
  asio::post(ctx_.io(), [self = shared_from_this(), id = exchange_id_] {
    if (id != self->exchange_id_ || self->phase_ == Phase::closed) return;
    self->up_read_pending_ = false;
    self->read_upstream();
  });
}

void Session::read_upstream() {
  if (up_read_pending_ || !up_) return;
  up_read_pending_ = true;
  up_->socket.async_read_some(up_in_.prepare(kUpstreamReadSize),
                              [self = shared_from_this(), id = exchange_id_](error_code ec, std::size_t n) {
                                if (id != self->exchange_id_ || self->phase_ == Phase::closed) return;
                                self->on_upstream_read(ec, n);
                              });
}

void Session::on_upstream_read(error_code ec, std::size_t n) {
  up_read_pending_ = false;
  if (ec || n == 0) {
    if (!res_head_done_) {
      exchange_failed(Reason::worker_unavailable, false, up_in_.size() == 0 && !res_);
      return;
    }
    if (res_framing_ == Framing::until_eof) {
      res_eof_ = true;
      relay_response_body();
      return;
    }
    // Cut short: the client can only learn it from a closed connection.
    core::log::warn("worker closed mid-response", {{"request_id", request_id_}, {"worker", worker_->address_text}});
    close();
    return;
  }
  up_in_.commit(n);
  if (res_head_done_) {
    set_deadline(endpoint_->config().timeouts.idle);
    relay_response_body();
    return;
  }
  for (;;) {
    if (!res_) {
      res_.emplace();
      res_->header_limit(kUpstreamHeaderLimit);
      res_->body_limit(boost::none);  // streams may be endless
      if (req_->get().method() == bhttp::verb::head) res_->skip(true);
    }
    error_code pec;
    auto used = res_->put(up_in_.data(), pec);
    up_in_.consume(used);
    if (pec == bhttp::error::need_more) {
      read_upstream();
      return;
    }
    if (pec) {
      exchange_failed(Reason::worker_unavailable, false, false);
      return;
    }
    if (!res_->is_header_done()) {
      read_upstream();
      return;
    }
    auto status = res_->get().result_int();
    if (status >= 100 && status < 200) {
      // Interim responses are not relayed (we never forward Expect or
      // Upgrade); 101 would switch protocols we did not ask for.
      if (status == 101) {
        exchange_failed(Reason::worker_unavailable, false, false);
        return;
      }
      res_.reset();
      if (up_in_.size() == 0) {
        read_upstream();
        return;
      }
      continue;
    }
    break;
  }
  if (up_write_pending_) {
    // Usually the request write has completed and only its handler has not
    // run yet: decide keep-alive once the request is known to be sent.
    response_waiting_ = true;
    return;
  }
  on_response_head();
}

void Session::on_response_head() {
  res_head_done_ = true;
  set_deadline(endpoint_->config().timeouts.idle);
  const auto& res = res_->get();
  const auto& req = req_->get();
  status_ = res.result_int();
  bool http10 = req.version() < 11;
  bool no_body = req.method() == bhttp::verb::head || status_ == 204 || status_ == 304;
  if (no_body) {
    res_framing_ = client_framing_ = Framing::none;
  } else if (auto len = res_->content_length()) {
    res_framing_ = client_framing_ = Framing::length;
    res_remaining_ = *len;
  } else {
    res_framing_ = res_->chunked() ? Framing::chunked : Framing::until_eof;
    client_framing_ = http10 ? Framing::until_eof : Framing::chunked;
  }
  // An early answer (request body still flowing) keeps the connection: the
  // body is relayed to its end before the next request is read.
  bool keep_alive = req.keep_alive() && !close_after_response_ && !client_eof_ &&
                    client_framing_ != Framing::until_eof &&
                    !ctx_.shared().draining.load(std::memory_order_relaxed);
  if (!keep_alive) close_after_response_ = true;

  http::DownstreamResponse d;
  d.request_id = request_id_;
  d.head_request = req.method() == bhttp::verb::head;
  d.chunked = client_framing_ == Framing::chunked;
  if (client_framing_ == Framing::length) d.content_length = res_remaining_;
  d.keep_alive = keep_alive;
  d.http10_client = http10;
  d.extra_headers = rate_headers_;
  client_out_.clear();
  http::build_downstream_response(res, d, client_out_);
  res_started_ = true;
  relay_response_body();
}

// One gathered write to the client: the head if not yet sent, then the body
// bytes available, framed as the client expects.
void Session::relay_response_body() {
  if (client_write_pending_) return;
  std::array<asio::const_buffer, 3> bufs{};  // by value into the write, as above
  std::size_t count = 0;
  bool complete = false;
  res_pending_consume_ = 0;
  std::string_view suffix;

  auto add_data = [&](const void* p, std::size_t k) {
    if (client_framing_ == Framing::chunked && k) {
      append_hex(client_out_, k);
      client_out_.append(kCrlf);
    }
    if (!client_out_.empty()) bufs[count++] = asio::buffer(client_out_);
    if (k) bufs[count++] = asio::buffer(p, k);
    if (client_framing_ == Framing::chunked && k) suffix = kCrlf;
  };

  switch (res_framing_) {
    case Framing::none:
      add_data(nullptr, 0);
      complete = true;
      break;
    case Framing::length: {
      auto k = static_cast<std::size_t>(std::min<std::uint64_t>(res_remaining_, up_in_.size()));
      add_data(up_in_.data().data(), k);
      res_pending_consume_ = k;
      complete = res_remaining_ == k;
      break;
    }
    case Framing::until_eof: {
      auto k = up_in_.size();
      add_data(up_in_.data().data(), k);
      res_pending_consume_ = k;
      complete = res_eof_;
      break;
    }
    case Framing::chunked: {
      if (!res_chunk_) res_chunk_ = std::make_unique<std::array<char, 16384>>();
      error_code ec;
      const std::size_t produced = decode_body(*res_, up_in_, *res_chunk_, ec);
      if (ec) {
        core::log::warn("bad chunked response", {{"request_id", request_id_}, {"worker", worker_->address_text}});
        close();
        return;
      }
      add_data(res_chunk_->data(), produced);
      complete = res_->is_done();
      break;
    }
  }
  if (complete && client_framing_ == Framing::chunked)
    suffix = suffix.empty() ? kLastChunk : kCrlfLastChunk;
  if (!suffix.empty()) bufs[count++] = asio::buffer(suffix.data(), suffix.size());
  if (count == 0) {
    if (complete) {  // until_eof: the worker closed and everything was relayed
      res_done_ = true;
      maybe_finish_exchange();
    } else {
      read_upstream();
    }
    return;
  }
  res_complete_after_write_ = complete;
  client_write_pending_ = true;
  asio::async_write(client_, bufs,
                    [self = shared_from_this(), id = exchange_id_](error_code ec, std::size_t n) {
                      self->client_write_pending_ = false;
                      if (id != self->exchange_id_ || self->phase_ == Phase::closed) return;
                      self->on_response_written(ec, n);
                    });
}

void Session::on_response_written(error_code ec, std::size_t n) {
  if (ec) {
    close();  // the client went away: cancels the upstream exchange
    return;
  }
  bytes_out_ += n;
  client_out_.clear();
  if (res_pending_consume_) {
    up_in_.consume(res_pending_consume_);
    if (res_framing_ == Framing::length) res_remaining_ -= res_pending_consume_;
    res_pending_consume_ = 0;
  }
  if (res_complete_after_write_) {
    res_done_ = true;
    maybe_finish_exchange();
    return;
  }
  set_deadline(endpoint_->config().timeouts.idle);
  if (up_in_.size() && (res_framing_ != Framing::chunked || !res_->is_done()))
    relay_response_body();
  else
    read_upstream();
}

// ---------------------------------------------------------------------------
// Phase 7: worker failures and retries (SPEC §4 step 7)
// ---------------------------------------------------------------------------

void Session::exchange_failed(Reason reason, bool connect_failure, bool nothing_received) {
  bool body_touched = bytes_in_ > 0 || req_total_ > 0;
  bool may_retry = attempts_ <= endpoint_->config().retries && !res_started_ && !body_touched &&
                   (connect_failure ||
                    (up_reused_ && nothing_received && retryable_method(req_->get().method())));
  if (connect_failure)
    core::log::warn("worker connect failed", {{"worker", worker_->address_text}, {"endpoint", endpoint_->config().id}});
  bool started = res_started_;
  failed_worker_ = worker_;
  abort_exchange();
  if (may_retry) {
    start_exchange();
    return;
  }
  if (started) {
    close();
    return;
  }
  reply(reason, req_framing_ != Framing::none);
}

void Session::abort_exchange() {
  if (!exchange_active_) return;
  release_upstream(false);
}

void Session::release_upstream(bool reusable) {
  ++exchange_id_;  // late completions of this exchange are ignored
  exchange_active_ = false;
  if (worker_) endpoint_->release(*worker_);
  if (up_) {
    if (reusable) {
      ++up_->exchanges;
      const auto& pool = endpoint_->config().pool;
      ctx_.give_back(worker_, std::move(up_), pool.max_idle, pool.idle_timeout);
    } else {
      error_code ignored;
      up_->socket.close(ignored);
      up_.reset();
    }
  }
  ctx_.return_buffer(std::move(up_in_));
  up_in_ = beast::flat_buffer();
}

void Session::maybe_finish_exchange() {
  if (!res_done_ || client_write_pending_) return;
  if (!req_sent_) {
    if (!req_aborted_) return;  // the body is still being relayed; finish after it
    // The worker stopped reading our body: its connection cannot be reused,
    // and the client's unread body means we close after discarding at most
    // kDrainLimit of it.
    release_upstream(false);
    finish_request();
    drain_body();
    return;
  }
  if (up_write_pending_) return;
  bool reusable = res_framing_ != Framing::until_eof && res_->get().keep_alive() && up_in_.size() == 0 &&
                  !up_read_pending_;
  release_upstream(reusable);
  finish_request();
  next_request();
}

// ---------------------------------------------------------------------------
// Local replies
// ---------------------------------------------------------------------------

void Session::reply(Reason reason, bool close_after, std::string_view extra_headers) {
  if (phase_ == Phase::closed) return;
  const auto& info = core::info(reason);
  error_ = reason;
  status_ = info.status;
  if (request_id_.empty()) {
    ctx_.make_request_id(request_id_buf_);
    request_id_ = {request_id_buf_, 32};
  }
  // A request body we did not read forbids keep-alive (SPEC §4 step 1).
  bool body_unread = req_framing_ != Framing::none && !req_sent_;
  if (body_unread) close_after = true;
  bool keep_alive = !close_after && req_ && req_->is_header_done() && req_->get().keep_alive() &&
                    !ctx_.shared().draining.load(std::memory_order_relaxed);
  if (!keep_alive) close_after_response_ = true;
  client_out_.clear();
  http::build_local_reply(reason, request_id_, keep_alive, client_out_, extra_headers);
  phase_ = Phase::reply;
  set_deadline(ctx_.runtime()->config->limits.idle_timeout);
  client_write_pending_ = true;
  asio::async_write(client_, asio::buffer(client_out_),
                    [self = shared_from_this()](error_code ec, std::size_t n) {
                      self->client_write_pending_ = false;
                      if (self->phase_ == Phase::closed) return;
                      self->bytes_out_ += n;
                      self->on_reply_written(ec);
                    });
}

void Session::on_reply_written(error_code ec) {
  if (ec) {
    close();
    return;
  }
  finish_request();
  if (close_after_response_ || client_eof_)
    drain_body();
  else
    next_request();
}

// Graceful close: stop sending, then read and discard what the client still
// sends (at most kDrainLimit, for at most kLingerTime) so that our reply is
// not destroyed by a TCP reset, then close.
void Session::drain_body() {
  if (phase_ != Phase::drain) {
    phase_ = Phase::drain;
    deadline_ = Clock::now() + kLingerTime;
    error_code ignored;
    client_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  }
  drained_ += in_.size();
  in_.consume(in_.size());
  if (drained_ >= kDrainLimit || client_eof_) {
    close();
    return;
  }
  read_client();
}

// ---------------------------------------------------------------------------
// Finish: access log, then the next request on this connection
// ---------------------------------------------------------------------------

void Session::finish_request() {
  release_key_slot();
  const auto now = Clock::now();
  ctx_.metrics().record(endpoint_ ? std::string_view(route_.endpoint) : std::string_view(), status_,
                        now - (started_ == Clock::time_point{} ? now : started_));
  log_access();
}

void Session::log_access() {
  const auto& config = config_ ? *config_ : *ctx_.runtime()->config;
  if (!config.log.access) return;
  using namespace std::string_view_literals;
  using core::log::write_json_string;
  using core::log::write_raw;
  using core::log::write_uint;
  auto now = Clock::now();
  bool have_head = req_ && req_->is_header_done();
  auto method = have_head ? sv(req_->get().method_string()) : "-"sv;
  // The query string may carry secrets: only the path is logged.
  auto path = have_head ? (head_.target.empty() ? sv(req_->get().target()) : head_.target) : "-"sv;
  path = path.substr(0, path.find('?'));
  std::string_view worker = worker_ ? std::string_view(worker_->address_text) : std::string_view();
  auto error = error_ == Reason::none ? std::string_view() : core::info(error_).code;
  auto ms = [](Clock::duration d) {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
  };

  auto& buf = ctx_.access_log_buffer();
  const std::size_t variable =
      request_id_.size() + key_id_.size() + route_.endpoint.size() + worker.size() + method.size() + path.size() + error.size();
  char* p = buf.reserve(384 + 6 * variable);
  auto string_or_null = [&p](std::string_view s) {
    p = s.empty() ? write_raw(p, "null"sv) : write_json_string(p, s);
  };
  // Strings that cannot hold a character JSON must escape (key ids, worker
  // addresses, method tokens, error codes) skip the escaping loop.
  auto safe_or_null = [&p](std::string_view s) {
    if (s.empty()) {
      p = write_raw(p, "null"sv);
      return;
    }
    *p++ = '"';
    p = write_raw(p, s);
    *p++ = '"';
  };
  p = write_raw(p, "{\"ts\":\""sv);
  p = core::log::write_timestamp(p);
  p = write_raw(p, "\",\"request_id\":"sv);
  p = write_json_string(p, request_id_);  // may be the client's
  p = write_raw(p, ",\"key_id\":"sv);
  safe_or_null(key_id_);
  p = write_raw(p, ",\"endpoint\":"sv);
  string_or_null(route_.endpoint);
  p = write_raw(p, ",\"worker\":"sv);
  safe_or_null(worker);
  p = write_raw(p, ",\"method\":"sv);
  safe_or_null(method);
  p = write_raw(p, ",\"path\":"sv);
  p = write_json_string(p, path);
  p = write_raw(p, ",\"status\":"sv);
  p = write_uint(p, status_);
  p = write_raw(p, ",\"error\":"sv);
  safe_or_null(error);
  p = write_raw(p, ",\"bytes_in\":"sv);
  p = write_uint(p, bytes_in_);
  p = write_raw(p, ",\"bytes_out\":"sv);
  p = write_uint(p, bytes_out_);
  p = write_raw(p, ",\"duration_ms\":"sv);
  p = write_uint(p, ms(now - (started_ == Clock::time_point{} ? now : started_)));
  p = write_raw(p, ",\"upstream_ms\":"sv);
  p = upstream_started_ == Clock::time_point{} ? write_raw(p, "null"sv) : write_uint(p, ms(now - upstream_started_));
  p = write_raw(p, "}\n"sv);
  buf.commit(p);
  ctx_.access_log_appended();
}

void Session::next_request() {
  if (close_after_response_ || client_eof_) {
    drain_body();
    return;
  }
  // Fresh per-request state; a fresh parser per message.
  runtime_.reset();
  endpoint_ = nullptr;
  worker_ = failed_worker_ = nullptr;
  key_id_.clear();
  rate_headers_.clear();
  request_id_ = {};
  route_ = {};
  head_ = {};
  error_ = Reason::none;
  status_ = 0;
  started_ = upstream_started_ = {};
  bytes_in_ = bytes_out_ = 0;
  attempts_ = 0;
  req_framing_ = res_framing_ = client_framing_ = Framing::none;
  req_remaining_ = res_remaining_ = req_total_ = 0;
  reset_exchange();
  const auto& config = *ctx_.runtime()->config;
  config_ = nullptr;
  fresh_parser(config);
  phase_ = Phase::idle;
  set_deadline(config.limits.idle_timeout);
  if (in_.size()) {
    on_head_bytes();  // pipelined request already here
    return;
  }
  if (in_.capacity() > 2 * kReadSize && !client_read_pending_) in_.shrink_to_fit();
  read_client_soon();
}

}  // namespace frontdoor::proxy
