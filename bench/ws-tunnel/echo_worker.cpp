// WebSocket echo worker for bench/ws-tunnel (Boost.Beast, C++20, one file).
//
//   echo_worker --port P [--threads 1]
//
// Listens on 127.0.0.1:P. An HTTP/1.1 request that is a WebSocket upgrade is
// accepted (any path) and every message is echoed back as it came (binary or
// text). Any other request is answered on a keep-alive connection:
// GET /ping -> 200 {"status":"healthy"} (frontdoor's health check), anything
// else -> 404. The echo loop reads one message, writes it back, reads the
// next: what a simple real worker does. No permessage-deflate.
//
// On SIGTERM/SIGINT it stops at once. Prints "listening <port>" when ready.
#include <boost/asio.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

class WsSession : public std::enable_shared_from_this<WsSession> {
public:
    explicit WsSession(tcp::socket sock) : ws_(std::move(sock)) {}

    void start(http::request<http::string_body> req) {
        ws_.auto_fragment(false);
        ws_.read_message_max(64u << 20);
        ws_.write_buffer_bytes(64 * 1024);
        ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
            res.set(http::field::server, "ws-tunnel-echo");
        }));
        ws_.async_accept(req, [self = shared_from_this()](beast::error_code ec) {
            if (!ec) self->read();
        });
    }

private:
    void read() {
        ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec) return;  // closed by the peer (close frame, EOF or reset)
            self->ws_.binary(self->ws_.got_binary());
            self->ws_.async_write(self->buf_.data(), [self](beast::error_code ec2, std::size_t) {
                if (ec2) return;
                self->buf_.consume(self->buf_.size());
                self->read();
            });
        });
    }

    websocket::stream<tcp::socket> ws_;
    beast::flat_buffer buf_;
};

class HttpSession : public std::enable_shared_from_this<HttpSession> {
public:
    explicit HttpSession(tcp::socket sock) : sock_(std::move(sock)) {}

    void start() { read(); }

private:
    void read() {
        req_ = {};
        http::async_read(sock_, buf_, req_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec) return;
            self->on_request();
        });
    }

    void on_request() {
        if (websocket::is_upgrade(req_)) {
            // bytes already buffered past the head would be lost here; a
            // client sends nothing before the 101, so the buffer is empty
            std::make_shared<WsSession>(std::move(sock_))->start(std::move(req_));
            return;
        }
        auto res = std::make_shared<http::response<http::string_body>>();
        res->version(11);
        res->set(http::field::server, "ws-tunnel-echo");
        res->set(http::field::content_type, "application/json");
        if (req_.method() == http::verb::get && req_.target() == "/ping") {
            res->result(http::status::ok);
            res->body() = R"({"status":"healthy"})";
        } else {
            res->result(http::status::not_found);
            res->body() = R"({"error":"not found"})";
        }
        res->keep_alive(req_.keep_alive());
        res->prepare_payload();
        http::async_write(sock_, *res, [self = shared_from_this(), res](beast::error_code ec, std::size_t) {
            if (ec || !res->keep_alive()) {
                beast::error_code ignored;
                self->sock_.shutdown(tcp::socket::shutdown_send, ignored);
                return;
            }
            self->read();
        });
    }

    tcp::socket sock_;
    beast::flat_buffer buf_;
    http::request<http::string_body> req_;
};

void do_accept(tcp::acceptor& acc) {
    acc.async_accept([&acc](beast::error_code ec, tcp::socket sock) {
        if (!ec) {
            beast::error_code ignored;
            sock.set_option(tcp::no_delay(true), ignored);
            std::make_shared<HttpSession>(std::move(sock))->start();
        }
        do_accept(acc);
    });
}

}  // namespace

int main(int argc, char** argv) {
    unsigned short port = 0;
    int threads = 1;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--port" && i + 1 < argc) port = static_cast<unsigned short>(std::atoi(argv[++i]));
        else if (a == "--threads" && i + 1 < argc) threads = std::max(1, std::atoi(argv[++i]));
        else {
            std::fprintf(stderr, "usage: echo_worker --port P [--threads N]\n");
            return 2;
        }
    }
    asio::io_context ioc(threads);
    tcp::acceptor acc(ioc);
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
    acc.open(ep.protocol());
    acc.set_option(asio::socket_base::reuse_address(true));
    acc.bind(ep);
    acc.listen(4096);
    asio::signal_set sigs(ioc, SIGINT, SIGTERM);
    sigs.async_wait([&ioc](beast::error_code, int) { ioc.stop(); });
    do_accept(acc);
    std::printf("listening %u\n", static_cast<unsigned>(acc.local_endpoint().port()));
    std::fflush(stdout);
    std::vector<std::thread> pool;
    for (int i = 1; i < threads; ++i) pool.emplace_back([&ioc] { ioc.run(); });
    ioc.run();
    for (auto& t : pool) t.join();
    return 0;
}
