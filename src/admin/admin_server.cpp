#include "frontdoor/admin/admin_server.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cstdio>

#include "frontdoor/admin/keys_api.hpp"
#include "frontdoor/auth/bearer.hpp"
#include "frontdoor/auth/decision.hpp"
#include "frontdoor/auth/token.hpp"
#include "frontdoor/core/log.hpp"
#include "frontdoor/core/reason.hpp"
#include "frontdoor/proxy/tls.hpp"
#include "frontdoor/core/time.hpp"
#include "frontdoor/http/message.hpp"

#include <openssl/rand.h>

namespace frontdoor::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

// A request (head and body, at most 1 MiB) must arrive within this time of
// the connection opening or of the previous answer, and an answer must be
// taken within kAdminWriteTimeout; and no more than kMaxAdminConnections are
// open at once (more are closed at once). So a slowloris on an exposed
// admin port holds a bounded number of descriptors for a bounded time, and
// the proxy listeners, which share the process's descriptors, keep theirs (B2).
constexpr auto kAdminReadTimeout = std::chrono::seconds(10);
constexpr auto kAdminWriteTimeout = std::chrono::seconds(30);
constexpr std::size_t kMaxAdminConnections = 256;

using Request = bhttp::request<bhttp::string_body>;
using Response = bhttp::response<bhttp::string_body>;

Response json_response(const Request& req, bhttp::status status, std::string body) {
  Response res{status, req.version()};
  res.set(bhttp::field::content_type, "application/json");
  res.set(bhttp::field::cache_control, "no-store");
  res.body() = std::move(body);
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  return res;
}

// A local error in the same shape as the proxy's (SPEC §4 error responses).
Response error_response(const Request& req, core::Reason reason) {
  const auto& i = core::info(reason);
  // Like the proxy's (SPEC §4): the request id is the client's when valid.
  std::string request_id;
  for (const auto& f : req)
    if (f.name() == bhttp::field::unknown && beast::iequals(f.name_string(), "x-request-id") &&
        http::valid_request_id(std::string_view(f.value().data(), f.value().size())))
      request_id.assign(f.value().data(), f.value().size());
  if (request_id.empty()) {
    static constexpr char kHex[] = "0123456789abcdef";
    unsigned char b[16];
    RAND_bytes(b, sizeof b);
    for (unsigned char c : b) {
      request_id.push_back(kHex[c >> 4]);
      request_id.push_back(kHex[c & 15]);
    }
  }
  boost::json::object err{{"code", i.code}, {"message", i.message}, {"request_id", request_id}};
  auto res = json_response(req, static_cast<bhttp::status>(i.status),
                           boost::json::serialize(boost::json::object{{"error", std::move(err)}}));
  res.set("X-Frontdoor-Error", i.code);
  res.set("X-Request-Id", request_id);
  if (!i.www_authenticate.empty()) res.set(bhttp::field::www_authenticate, i.www_authenticate);
  return res;
}

// Admin access (SPEC §5): the same Bearer keys, by management level;
// `read` may GET, `read_write` may change.
core::Reason authorize_admin(const Request& req, const auth::KeySet* keys) {
  auto bearer = http::bearer_of(req.base());
  if (bearer.reason != core::Reason::none) return bearer.reason;
  const auth::Key* key = keys ? keys->find_by_hash(auth::sha256(bearer.token)) : nullptr;
  if (!key) return core::Reason::invalid_api_key;
  if (!key->enabled) return core::Reason::api_key_disabled;
  if (key->expired_at(core::now_unix())) return core::Reason::api_key_expired;
  bool read_only = auth::is_read_method(std::string_view(req.method_string().data(), req.method_string().size()));
  if (key->management == auth::Access::none) return core::Reason::insufficient_scope;
  if (!read_only && key->management != auth::Access::read_write) return core::Reason::insufficient_scope;
  return core::Reason::none;
}

boost::json::value endpoints_json(const lb::Runtime& rt) {
  boost::json::array endpoints;
  for (const auto& e : rt.endpoints) {
    const auto& c = e->config();
    boost::json::array workers;
    std::uint64_t in_flight = 0;
    for (const auto& w : e->workers()) {
      auto n = w->in_flight.load(std::memory_order_relaxed);
      in_flight += n;
      workers.push_back(boost::json::object{{"url", w->config.url},
                                            {"address", w->address_text},
                                            {"state", lb::to_string(w->health.load())},
                                            {"in_flight", n}});
    }
    // Workers a reload removed, still finishing their requests (SPEC §4).
    for (const auto& d : e->draining_workers()) {
      in_flight += d.in_flight;
      workers.push_back(boost::json::object{
          {"url", d.url}, {"address", d.address_text}, {"state", "draining"}, {"in_flight", d.in_flight}});
    }
    const char* balance = c.balance == config::Balance::round_robin         ? "round_robin"
                          : c.balance == config::Balance::least_outstanding ? "least_outstanding"
                                                                            : "power_of_two";
    endpoints.push_back(boost::json::object{{"id", c.id},
                                            {"balance", balance},
                                            {"max_concurrency", c.max_concurrency},
                                            {"in_flight", in_flight},
                                            {"queue_length", e->queue_length()},
                                            {"queue_max", c.queue.max},
                                            {"workers", std::move(workers)}});
  }
  return boost::json::object{{"endpoints", std::move(endpoints)}};
}

// Prometheus text exposition format 0.0.4 (SPEC §6).
std::string metrics_text(proxy::Shared& shared) {
  proxy::MetricsSnapshot m;
  for (const auto* t : shared.metrics) t->add_to(m);
  std::string out;
  out.reserve(4096);
  auto label = [](std::string_view v) {  // label values: escape \, " and newline
    std::string e;
    for (char c : v) {
      if (c == '\\' || c == '"') e.push_back('\\');
      if (c == '\n') {
        e.append("\\n");
        continue;
      }
      e.push_back(c);
    }
    return e;
  };
  auto num = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return std::string(buf);
  };
  out += "# HELP frontdoor_build_info Version of the running frontdoor.\n# TYPE frontdoor_build_info gauge\n";
  out += "frontdoor_build_info{version=\"" FRONTDOOR_VERSION "\"} 1\n";

  out += "# HELP frontdoor_requests_total Requests answered, by endpoint (\"-\" when none was addressed) and status.\n";
  out += "# TYPE frontdoor_requests_total counter\n";
  for (const auto& [k, v] : m.requests)
    out += "frontdoor_requests_total{endpoint=\"" + label(k.first) + "\",status=\"" + std::to_string(k.second) +
           "\"} " + std::to_string(v) + "\n";

  out += "# HELP frontdoor_auth_total Authentication and authorization outcomes by code (\"ok\" when the request may proceed).\n";
  out += "# TYPE frontdoor_auth_total counter\n";
  for (auto r : {core::Reason::none, core::Reason::missing_api_key, core::Reason::invalid_api_key,
                 core::Reason::api_key_disabled, core::Reason::api_key_expired, core::Reason::insufficient_scope,
                 core::Reason::endpoint_not_found, core::Reason::rate_limited}) {
    auto code = r == core::Reason::none ? std::string_view("ok") : core::info(r).code;
    out += "frontdoor_auth_total{outcome=\"" + std::string(code) + "\"} " +
           std::to_string(m.outcomes[static_cast<std::size_t>(r)]) + "\n";
  }

  out += "# HELP frontdoor_request_duration_seconds Time from request head to the last byte of the answer.\n";
  out += "# TYPE frontdoor_request_duration_seconds histogram\n";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < proxy::kDurationBuckets.size(); ++i) {
    cumulative += m.duration[i];
    char le[16];
    std::snprintf(le, sizeof le, "%g", proxy::kDurationBuckets[i]);
    out += "frontdoor_request_duration_seconds_bucket{le=\"" + std::string(le) + "\"} " +
           std::to_string(cumulative) + "\n";
  }
  cumulative += m.duration.back();
  out += "frontdoor_request_duration_seconds_bucket{le=\"+Inf\"} " + std::to_string(cumulative) + "\n";
  out += "frontdoor_request_duration_seconds_sum " + num(m.duration_sum) + "\n";
  out += "frontdoor_request_duration_seconds_count " + std::to_string(m.duration_count) + "\n";

  // WebSocket tunnels (SPEC §4 step 6). Closed ones by why they ended, as
  // the access log's `error` says it.
  out += "# HELP frontdoor_websocket_tunnels_open WebSocket tunnels open now.\n";
  out += "# TYPE frontdoor_websocket_tunnels_open gauge\n";
  out += "frontdoor_websocket_tunnels_open " + std::to_string(m.tunnels_open()) + "\n";
  out += "# HELP frontdoor_websocket_tunnels_opened_total WebSocket tunnels opened (101 relayed).\n";
  out += "# TYPE frontdoor_websocket_tunnels_opened_total counter\n";
  out += "frontdoor_websocket_tunnels_opened_total " + std::to_string(m.tunnels_opened) + "\n";
  out += "# HELP frontdoor_websocket_tunnels_closed_total WebSocket tunnels closed, by why they ended.\n";
  out += "# TYPE frontdoor_websocket_tunnels_closed_total counter\n";
  for (auto why : {proxy::End::client_closed, proxy::End::worker_closed, proxy::End::idle_timeout,
                   proxy::End::revoked, proxy::End::shutdown})
    out += "frontdoor_websocket_tunnels_closed_total{reason=\"" + std::string(proxy::to_string(why)) + "\"} " +
           std::to_string(m.tunnels_closed[static_cast<std::size_t>(why)]) + "\n";

  auto rt = shared.runtime.load();
  out += "# HELP frontdoor_worker_state 1 for the worker's current state.\n# TYPE frontdoor_worker_state gauge\n";
  std::string in_flight =
      "# HELP frontdoor_worker_in_flight Requests in flight on the worker.\n# TYPE frontdoor_worker_in_flight gauge\n";
  std::string queue =
      "# HELP frontdoor_queue_length Requests waiting for a worker.\n# TYPE frontdoor_queue_length gauge\n";
  for (const auto& e : rt->endpoints) {
    auto ep = label(e->config().id);
    for (const auto& w : e->workers()) {
      auto state = lb::to_string(w->health.load());
      auto labels = "endpoint=\"" + ep + "\",worker=\"" + label(w->address_text) + "\"";
      for (std::string_view s : {"initializing", "ready", "unhealthy", "draining"})
        out += "frontdoor_worker_state{" + labels + ",state=\"" + std::string(s) + "\"} " + (s == state ? "1" : "0") + "\n";
      in_flight += "frontdoor_worker_in_flight{" + labels + "} " + std::to_string(w->in_flight.load()) + "\n";
    }
    for (const auto& d : e->draining_workers()) {
      auto labels = "endpoint=\"" + ep + "\",worker=\"" + label(d.address_text) + "\"";
      for (std::string_view s : {"initializing", "ready", "unhealthy", "draining"})
        out += "frontdoor_worker_state{" + labels + ",state=\"" + std::string(s) + "\"} " + (s == "draining" ? "1" : "0") + "\n";
      in_flight += "frontdoor_worker_in_flight{" + labels + "} " + std::to_string(d.in_flight) + "\n";
    }
    queue += "frontdoor_queue_length{endpoint=\"" + ep + "\"} " + std::to_string(e->queue_length()) + "\n";
  }
  out += in_flight;
  out += queue;

  auto keys = shared.keys.load();
  out += "# HELP frontdoor_keys Keys in the key store.\n# TYPE frontdoor_keys gauge\n";
  out += "frontdoor_keys " + std::to_string(keys ? keys->size() : 0) + "\n";
  out += "# HELP frontdoor_reloads_total Reloads of configuration and key store by result.\n# TYPE frontdoor_reloads_total counter\n";
  out += "frontdoor_reloads_total{result=\"ok\"} " + std::to_string(shared.reloads_ok.load()) + "\n";
  out += "frontdoor_reloads_total{result=\"failed\"} " + std::to_string(shared.reloads_failed.load()) + "\n";
  // The key store's freshness (SPEC §3.1); file stores are always fresh.
  out += "# HELP frontdoor_key_store_stale_seconds Seconds since the last successful contact with the key store; 0 while fresh.\n"
         "# TYPE frontdoor_key_store_stale_seconds gauge\n";
  out += "frontdoor_key_store_stale_seconds " + num(static_cast<double>(shared.store_stale_ms.load()) / 1000.0) + "\n";
  out += "# HELP frontdoor_key_store_up 1 while the key store is reachable and the snapshot caught up.\n"
         "# TYPE frontdoor_key_store_up gauge\n";
  out += std::string("frontdoor_key_store_up ") + (shared.store_stale_ms.load() == 0 && shared.keys_loaded.load() ? "1" : "0") + "\n";
  out += "# HELP frontdoor_key_store_failing_closed 1 while proxied requests get 503 key_store_unavailable.\n"
         "# TYPE frontdoor_key_store_failing_closed gauge\n";
  out += std::string("frontdoor_key_store_failing_closed ") + (shared.keys_unavailable.load() ? "1" : "0") + "\n";
  out += "# HELP frontdoor_key_store_reconnects_total Connections to the key store database made again after a loss.\n"
         "# TYPE frontdoor_key_store_reconnects_total counter\n";
  out += "frontdoor_key_store_reconnects_total " + std::to_string(shared.store_reconnects.load()) + "\n";
  out += "# HELP frontdoor_key_store_feed_lag_seconds Written (the change row) to read by this replica, of the last change from the change feed.\n"
         "# TYPE frontdoor_key_store_feed_lag_seconds gauge\n";
  out += "frontdoor_key_store_feed_lag_seconds " + num(static_cast<double>(shared.store_feed_lag_us.load()) / 1e6) + "\n";
  if (shared.store_remote.load()) {
    out += "# HELP frontdoor_fleet_replicas Replicas sharing the key store, seen in the last 15 s.\n"
           "# TYPE frontdoor_fleet_replicas gauge\n";
    out += "frontdoor_fleet_replicas " + std::to_string(shared.fleet_replicas.load()) + "\n";
  }
  out += "# HELP frontdoor_client_connections Open client connections on the proxy listeners.\n# TYPE frontdoor_client_connections gauge\n";
  out += "frontdoor_client_connections " + std::to_string(shared.client_connections.load()) + "\n";
  out += "# HELP frontdoor_access_log_dropped_total Access-log lines dropped because stdout did not keep up.\n"
         "# TYPE frontdoor_access_log_dropped_total counter\n";
  out += "frontdoor_access_log_dropped_total " + std::to_string(core::log::access_log_dropped()) + "\n";
  return out;
}

// A key-API answer as an HTTP response.
Response api_response(const Request& req, ApiResponse api) {
  if (api.reason != core::Reason::none) return error_response(req, api.reason);
  Response res{static_cast<bhttp::status>(api.status), req.version()};
  res.keep_alive(req.keep_alive());
  res.set(bhttp::field::cache_control, "no-store");
  if (!api.allow.empty()) res.set(bhttp::field::allow, api.allow);
  if (api.status != 204) {
    res.set(bhttp::field::content_type, "application/json");
    res.body() = std::move(api.body);
  }
  res.prepare_payload();
  return res;
}

// A key-API path as it may be logged: the id is left out (a token pasted
// into a path must not reach the log).
std::string_view route_of(std::string_view path) {
  if (path == "/v1/keys" || path == "/v1/reload") return path;
  return path.ends_with("/rotate") ? "/v1/keys/{id}/rotate" : "/v1/keys/{id}";
}

// The admin routes, answered at once on the admin thread; nullopt for an
// authorized key-API request (/v1/keys*, /v1/reload), which may block on
// the key store and is run on the store thread by the session instead.
std::optional<Response> handle(const Request& req, AdminState& state, proxy::Shared& shared,
                               const AdminHooks& hooks) {
  auto target = std::string_view(req.target().data(), req.target().size());
  auto path = target.substr(0, target.find('?'));
  bool get = req.method() == bhttp::verb::get || req.method() == bhttp::verb::head;
  auto not_allowed = [&] {
    return json_response(req, bhttp::status::method_not_allowed,
                         R"({"error":{"code":"method_not_allowed","message":"method not allowed here"}})");
  };
  if (path == "/healthz") {
    if (!get) return not_allowed();
    return json_response(req, bhttp::status::ok, R"({"status":"ok"})");
  }
  if (path == "/metrics") {
    if (!get) return not_allowed();
    Response res{bhttp::status::ok, req.version()};
    res.set(bhttp::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    res.set(bhttp::field::cache_control, "no-store");
    res.body() = metrics_text(shared);
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    return res;
  }
  if (path == "/readyz") {
    if (!get) return not_allowed();
    switch (state.readiness.load()) {
      case Readiness::serving:
        // A store unreachable since the start has no keys yet (SPEC §3.1).
        if (!shared.keys_loaded.load())
          return json_response(req, bhttp::status::service_unavailable, R"({"status":"starting"})");
        return json_response(req, bhttp::status::ok, R"({"status":"ready"})");
      case Readiness::starting:
        return json_response(req, bhttp::status::service_unavailable, R"({"status":"starting"})");
      case Readiness::draining:
        return json_response(req, bhttp::status::service_unavailable, R"({"status":"draining"})");
    }
  }
  if (path.starts_with("/v1/")) {
    auto keys = shared.keys.load();
    if (auto reason = authorize_admin(req, keys.get()); reason != core::Reason::none)
      return error_response(req, reason);
    if (path == "/v1/endpoints") {
      if (!get) return not_allowed();
      auto rt = shared.runtime.load();
      return json_response(req, bhttp::status::ok, boost::json::serialize(endpoints_json(*rt)));
    }
    if (path == "/v1/replicas") {
      if (!get) return not_allowed();
      if (auto body = hooks.replicas ? hooks.replicas() : std::nullopt)
        return json_response(req, bhttp::status::ok, *body);
      return json_response(req, bhttp::status::not_found,
                           R"({"error":{"code":"not_found","message":"replicas are listed with a PostgreSQL key store only"}})");
    }
    if (hooks.registry && is_key_api_path(path)) return std::nullopt;
  }
  return json_response(req, bhttp::status::not_found,
                       R"({"error":{"code":"not_found","message":"no such admin path"}})");
}

// One admin connection; Stream is beast::tcp_stream or, with admin.tls,
// beast::ssl_stream<beast::tcp_stream> (the handshake comes first).
template <class Stream>
class AdminSession : public std::enable_shared_from_this<AdminSession<Stream>> {
 public:
  // `open` counts the listener's open connections (admin thread only);
  // `tls` keeps the context alive as long as the stream that uses it.
  template <class... Args>
  AdminSession(std::shared_ptr<std::size_t> open, std::shared_ptr<asio::ssl::context> tls, AdminState& state,
               proxy::Shared& shared, const AdminHooks& hooks, Args&&... stream_args)
      : open_(std::move(open)), tls_(std::move(tls)), stream_(std::forward<Args>(stream_args)...), state_(state),
        shared_(shared), hooks_(hooks) {
    ++*open_;
  }
  ~AdminSession() { --*open_; }

  void start() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      do_read();
    } else {
      beast::get_lowest_layer(stream_).expires_after(kAdminReadTimeout);
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (ec) return self->close();
                                self->do_read();
                              });
    }
  }

 private:
  void do_read() {
    parser_.emplace();
    parser_->header_limit(16384);
    parser_->body_limit(1 << 20);
    beast::get_lowest_layer(stream_).expires_after(kAdminReadTimeout);
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }
  void on_read(beast::error_code ec) {
    if (ec) {
      if (ec != bhttp::error::end_of_stream && ec != asio::error::operation_aborted &&
          ec != beast::error::timeout && ec != asio::error::connection_reset && ec != asio::ssl::error::stream_truncated) {
        // Malformed request: answer 400 and close.
        Request dummy;
        dummy.version(11);
        dummy.keep_alive(false);
        res_ = json_response(dummy, bhttp::status::bad_request, R"({"error":{"code":"bad_request"}})");
        write_response(true);
        return;
      }
      close();
      return;
    }
    req_ = parser_->release();
    if (auto res = handle(req_, state_, shared_, hooks_)) return answer(std::move(*res));
    call_store();
  }

  void answer(Response res) {
    res_ = std::move(res);
    if (req_.method() == bhttp::verb::head) res_.body().clear();
    write_response(!res_.keep_alive());
  }

  // A key-API request or a reload runs on the store thread and comes back
  // here, through this session's executor, as on_store_answer(); or, after
  // kStoreCallDeadline, on_store_deadline() answers 503 first. Whichever
  // comes second finds store_call_ moved on and does nothing. Both hold
  // the session, so it lives until the later one has run; nothing here
  // runs on the store thread but handle_keys_api.
  void call_store() {
    const std::uint64_t call = ++calls_;
    store_call_ = call;
    store_timer_.expires_after(kStoreCallDeadline);
    store_timer_.async_wait([self = this->shared_from_this(), call](beast::error_code ec) {
      if (ec || self->store_call_ != call) return;
      self->on_store_deadline();
    });
    auto target = std::string_view(req_.target().data(), req_.target().size());
    auto path = target.substr(0, target.find('?'));
    auto query = target.size() > path.size() ? target.substr(path.size() + 1) : std::string_view();
    asio::post(hooks_.store, [self = this->shared_from_this(), call, back = beast::get_lowest_layer(stream_).get_executor(),
                              method = std::string(req_.method_string()), path = std::string(path),
                              query = std::string(query), body = req_.body(),
                              posted = std::chrono::steady_clock::now()]() mutable {
      // On the store thread: hooks_ is const and outlives the store thread.
      // A change that waited behind slow store work too long to end before
      // the 503 at the deadline is not started: a 503 means "not made".
      const bool too_late = method != "GET" && method != "HEAD" &&
                            std::chrono::steady_clock::now() - posted > kLatestChangeStart;
      auto api = too_late ? std::optional(ApiResponse{503, {}, {}, core::Reason::key_store_unavailable})
                          : handle_keys_api(method, path, query, body, *self->hooks_.registry, self->hooks_.reload);
      asio::post(back, [self = std::move(self), call, api = std::move(api)]() mutable {
        self->on_store_answer(call, std::move(api));
      });
    });
  }

  void on_store_answer(std::uint64_t call, std::optional<ApiResponse> api) {
    if (store_call_ != call) {
      // Answered 503 already. A change may still have been made (a key
      // created whose token nobody saw): say so.
      if (api && api->status < 300 && req_method_changes(call))
        core::log::warn("admin: the key store answered after the deadline; the change was made",
                        {{"status", std::to_string(api->status), true}});
      return;
    }
    store_call_ = 0;
    store_timer_.cancel();
    if (!api) {
      return answer(json_response(req_, bhttp::status::not_found,
                                  R"({"error":{"code":"not_found","message":"no such admin path"}})"));
    }
    answer(api_response(req_, std::move(*api)));
  }

  void on_store_deadline() {
    store_call_ = 0;
    late_write_call_ = req_.method() != bhttp::verb::get && req_.method() != bhttp::verb::head ? calls_ : 0;
    auto target = std::string_view(req_.target().data(), req_.target().size());
    core::log::warn("admin: the key store did not answer in time",
                    {{"method", std::string(req_.method_string())},
                     {"route", std::string(route_of(target.substr(0, target.find('?'))))},
                     {"deadline_ms", std::to_string(std::chrono::milliseconds(kStoreCallDeadline).count()), true}});
    answer(error_response(req_, core::Reason::key_store_unavailable));
  }

  bool req_method_changes(std::uint64_t call) const { return call == late_write_call_; }
  void write_response(bool close_after) {
    beast::get_lowest_layer(stream_).expires_after(kAdminWriteTimeout);
    bhttp::async_write(stream_, res_,
                       [self = this->shared_from_this(), close_after](beast::error_code ec, std::size_t) {
                         if (ec || close_after) {
                           self->close();
                           return;
                         }
                         self->do_read();
                       });
  }
  void close() {
    beast::error_code ignored;
    auto& lowest = beast::get_lowest_layer(stream_);
    lowest.socket().shutdown(tcp::socket::shutdown_send, ignored);
    lowest.close();
  }

  std::shared_ptr<std::size_t> open_;
  std::shared_ptr<asio::ssl::context> tls_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  Request req_;  // the request being answered
  Response res_;
  asio::steady_timer store_timer_{beast::get_lowest_layer(stream_).get_executor()};
  std::uint64_t calls_ = 0;           // store calls made on this connection
  std::uint64_t store_call_ = 0;      // the one awaited now; 0: none
  std::uint64_t late_write_call_ = 0;  // a change answered 503 at its deadline
  AdminState& state_;
  proxy::Shared& shared_;
  const AdminHooks& hooks_;
};

}  // namespace

struct AdminServer::Impl : std::enable_shared_from_this<AdminServer::Impl> {
  Impl(asio::io_context& io, AdminState& s, proxy::Shared& sh, AdminHooks h)
      : acceptor(io), state(s), shared(sh), hooks(std::move(h)) {}
  tcp::acceptor acceptor;
  AdminState& state;
  proxy::Shared& shared;
  AdminHooks hooks;
  // admin.tls: the current context, nullptr when the listener is plain. A
  // reload may switch it either way; new connections follow it.
  proxy::TlsContextSlot tls{nullptr};
  std::shared_ptr<std::size_t> open = std::make_shared<std::size_t>(0);
  bool stopped = false;

  void accept() {
    acceptor.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket s) {
      if (self->stopped) return;
      if (!ec) {
        try {
          self->serve(std::move(s));
        } catch (const std::exception& e) {
          core::log::error("admin: connection dropped", {{"error", e.what()}});
        }
      } else if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space) {
        // Try again a little later rather than spin on the same error.
        auto timer = std::make_shared<asio::steady_timer>(self->acceptor.get_executor());
        timer->expires_after(std::chrono::milliseconds(100));
        timer->async_wait([self, timer](beast::error_code) {
          if (!self->stopped) self->accept();
        });
        return;
      }
      self->accept();
    });
  }

  void serve(tcp::socket s) {
    if (*open >= kMaxAdminConnections) {
      beast::error_code ignored;
      s.close(ignored);
      return;
    }
    if (auto ctx = tls.get())
      std::make_shared<AdminSession<beast::ssl_stream<beast::tcp_stream>>>(open, ctx, state, shared, hooks,
                                                                          std::move(s), *ctx)
          ->start();
    else
      std::make_shared<AdminSession<beast::tcp_stream>>(open, nullptr, state, shared, hooks, std::move(s))->start();
  }
};

AdminServer::AdminServer(asio::io_context& io, const config::Admin& cfg, AdminState& state,
                         proxy::Shared& shared, AdminHooks hooks)
    : impl_(std::make_shared<Impl>(io, state, shared, std::move(hooks))) {
  if (cfg.tls) impl_->tls.set(proxy::make_server_tls_context(*cfg.tls));
  auto& a = impl_->acceptor;
  a.open(cfg.address.endpoint.protocol());
  a.set_option(tcp::acceptor::reuse_address(true));
  a.bind(cfg.address.endpoint);
  a.listen();
}

AdminServer::~AdminServer() { stop(); }

tcp::endpoint AdminServer::local_endpoint() const { return impl_->acceptor.local_endpoint(); }

void AdminServer::start() { impl_->accept(); }

bool AdminServer::reload_tls(const config::Admin& cfg, std::string& error) {
  const bool was_tls = impl_->tls.get() != nullptr;
  if (!cfg.tls) {
    impl_->tls.set(nullptr);
    if (was_tls) core::log::warn("admin listener: TLS turned off by reload");
    return true;
  }
  try {
    impl_->tls.set(proxy::make_server_tls_context(*cfg.tls));
  } catch (const std::exception& e) {
    error = std::string("admin.tls: ") + e.what();
    return false;
  }
  if (!was_tls) core::log::info("admin listener: TLS turned on by reload");
  return true;
}

void AdminServer::stop() {
  impl_->stopped = true;
  beast::error_code ignored;
  impl_->acceptor.close(ignored);
}

}  // namespace frontdoor::admin
