#include "frontdoor/admin/admin_server.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "frontdoor/core/log.hpp"

namespace frontdoor::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kAdminTimeout = std::chrono::seconds(30);

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

// The admin routes. Later issues add the key and endpoint API here.
Response handle(const Request& req, AdminState& state) {
  auto target = std::string_view(req.target().data(), req.target().size());
  auto path = target.substr(0, target.find('?'));
  bool get = req.method() == bhttp::verb::get || req.method() == bhttp::verb::head;
  if (path == "/healthz") {
    if (!get) return json_response(req, bhttp::status::method_not_allowed, R"({"error":{"code":"method_not_allowed"}})");
    return json_response(req, bhttp::status::ok, R"({"status":"ok"})");
  }
  if (path == "/readyz") {
    if (!get) return json_response(req, bhttp::status::method_not_allowed, R"({"error":{"code":"method_not_allowed"}})");
    switch (state.readiness.load()) {
      case Readiness::serving:
        return json_response(req, bhttp::status::ok, R"({"status":"ready"})");
      case Readiness::starting:
        return json_response(req, bhttp::status::service_unavailable, R"({"status":"starting"})");
      case Readiness::draining:
        return json_response(req, bhttp::status::service_unavailable, R"({"status":"draining"})");
    }
  }
  return json_response(req, bhttp::status::not_found,
                       R"({"error":{"code":"not_found","message":"no such admin path"}})");
}

class AdminSession : public std::enable_shared_from_this<AdminSession> {
 public:
  AdminSession(tcp::socket s, AdminState& state) : stream_(std::move(s)), state_(state) {}
  void start() { do_read(); }

 private:
  void do_read() {
    parser_.emplace();
    parser_->header_limit(16384);
    parser_->body_limit(1 << 20);
    stream_.expires_after(kAdminTimeout);
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }
  void on_read(beast::error_code ec) {
    if (ec) {
      if (ec != bhttp::error::end_of_stream && ec != asio::error::operation_aborted &&
          ec != beast::error::timeout && ec != asio::error::connection_reset) {
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
    auto req = parser_->release();
    res_ = handle(req, state_);
    if (req.method() == bhttp::verb::head) res_.body().clear();
    write_response(!res_.keep_alive());
  }
  void write_response(bool close_after) {
    stream_.expires_after(kAdminTimeout);
    bhttp::async_write(stream_, res_, [self = shared_from_this(), close_after](beast::error_code ec, std::size_t) {
      if (ec || close_after) {
        self->close();
        return;
      }
      self->do_read();
    });
  }
  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  Response res_;
  AdminState& state_;
};

}  // namespace

struct AdminServer::Impl : std::enable_shared_from_this<AdminServer::Impl> {
  Impl(asio::io_context& io, AdminState& s) : acceptor(io), state(s) {}
  tcp::acceptor acceptor;
  AdminState& state;
  bool stopped = false;

  void accept() {
    acceptor.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket s) {
      if (self->stopped) return;
      if (!ec) std::make_shared<AdminSession>(std::move(s), self->state)->start();
      self->accept();
    });
  }
};

AdminServer::AdminServer(asio::io_context& io, const config::Admin& cfg, AdminState& state)
    : impl_(std::make_shared<Impl>(io, state)) {
  auto& a = impl_->acceptor;
  a.open(cfg.address.endpoint.protocol());
  a.set_option(tcp::acceptor::reuse_address(true));
  a.bind(cfg.address.endpoint);
  a.listen();
}

AdminServer::~AdminServer() { stop(); }

tcp::endpoint AdminServer::local_endpoint() const { return impl_->acceptor.local_endpoint(); }

void AdminServer::start() { impl_->accept(); }

void AdminServer::stop() {
  impl_->stopped = true;
  beast::error_code ignored;
  impl_->acceptor.close(ignored);
}

}  // namespace frontdoor::admin
