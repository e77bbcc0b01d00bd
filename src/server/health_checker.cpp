#include "frontdoor/server/health_checker.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/asio/write.hpp>

#include "frontdoor/core/log.hpp"

namespace frontdoor::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

// One worker's probe loop. A probe is a fresh connection with
// "Connection: close", so it never competes with the proxy's pools and a
// worker that stopped accepting connections is seen as down.
// It holds the runtime its endpoint and worker belong to: after a reload
// stopped it, the cancelled probe's handler still gives its slot back to
// them, and the checker (with its runtime) may be gone by then.
struct HealthChecker::Prober : std::enable_shared_from_this<Prober> {
  Prober(asio::io_context& io, std::shared_ptr<const lb::Runtime> r, lb::EndpointState& e, lb::WorkerState& w)
      : runtime(std::move(r)), endpoint(e), worker(w), timer(io), stream(io) {
    const auto& h = e.config().health;
    request = "GET " + h.path + " HTTP/1.1\r\nHost: " + w.config.authority +
              "\r\nUser-Agent: frontdoor-health\r\nAccept: */*\r\nConnection: close\r\n\r\n";
  }

  void probe() {
    if (stopped) return;
    // A worker at its max_concurrency is serving: probing it would be one
    // request too many (issue 8 (c)); its requests are the health signal.
    const auto slot = endpoint.take_probe_slot(worker);
    if (slot == lb::EndpointState::ProbeSlot::busy) return next_round();
    holding_slot = slot == lb::EndpointState::ProbeSlot::taken;
    const auto& h = endpoint.config().health;
    buffer.clear();
    parser.emplace();
    parser->header_limit(16384);
    stream.expires_after(h.timeout);
    stream.async_connect(worker.config.address, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->done(lb::ProbeResult::failed, ec.message());
      asio::async_write(self->stream, asio::buffer(self->request),
                        [self](beast::error_code wec, std::size_t) {
                          if (wec) return self->done(lb::ProbeResult::failed, wec.message());
                          bhttp::async_read_header(self->stream, self->buffer, *self->parser,
                                                   [self](beast::error_code rec, std::size_t) {
                                                     if (rec) return self->done(lb::ProbeResult::failed, rec.message());
                                                     auto status = self->parser->get().result_int();
                                                     self->done(lb::classify_probe_status(status),
                                                                "status " + std::to_string(status));
                                                   });
                        });
    });
  }

  void done(lb::ProbeResult result, const std::string& detail) {
    beast::error_code ignored;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    stream.close();
    if (holding_slot) {
      holding_slot = false;
      endpoint.release(worker);
    }
    if (stopped) return;
    auto before = worker.health.load();
    auto after = endpoint.record(worker, result);
    // unknown → initializing shows as no change: both read "initializing".
    if (lb::to_string(after) != lb::to_string(before)) {
      auto level = after == lb::WorkerHealth::ready ? core::log::Level::info : core::log::Level::warn;
      core::log::write(level, "worker state", {{"endpoint", endpoint.config().id},
                                               {"worker", worker.address_text},
                                               {"from", lb::to_string(before)},
                                               {"to", lb::to_string(after)},
                                               {"probe", detail}});
    }
    next_round();
  }

  void next_round() {
    if (on_first) {  // a busy worker counts as probed: it is serving
      auto f = std::move(on_first);
      on_first = nullptr;
      f();
    }
    timer.expires_after(endpoint.config().health.interval);
    timer.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->probe();
    });
  }

  void stop() {
    stopped = true;
    on_first = nullptr;  // it points into the checker
    timer.cancel();
    stream.cancel();
  }

  const std::shared_ptr<const lb::Runtime> runtime;
  lb::EndpointState& endpoint;
  lb::WorkerState& worker;
  asio::steady_timer timer;
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  std::optional<bhttp::response_parser<bhttp::empty_body>> parser;
  std::string request;
  std::function<void()> on_first;
  bool stopped = false;
  bool holding_slot = false;  // a max_concurrency slot taken for this probe
};

HealthChecker::HealthChecker(asio::io_context& io, std::shared_ptr<const lb::Runtime> runtime)
    : io_(io), runtime_(std::move(runtime)) {}

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::start(std::function<void()> first_round_done) {
  first_round_done_ = std::move(first_round_done);
  for (const auto& e : runtime_->endpoints)
    for (const auto& w : e->workers()) probers_.push_back(std::make_shared<Prober>(io_, runtime_, *e, *w));
  first_round_left_ = probers_.size();
  if (first_round_left_ == 0 && first_round_done_) {
    first_round_done_();
    return;
  }
  for (auto& p : probers_) {
    p->on_first = [this] {
      if (--first_round_left_ == 0 && first_round_done_) first_round_done_();
    };
    p->probe();
  }
}

void HealthChecker::stop() {
  for (auto& p : probers_) p->stop();
  probers_.clear();
}

}  // namespace frontdoor::server
