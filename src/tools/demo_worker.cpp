// demo_worker: a tiny stand-in for an AI inference worker (a FastAPI app
// exposing /ping and /generate), to try frontdoor without a GPU.
//
//   demo_worker --port N [--host 127.0.0.1]
//
//   GET  /ping                      200 {"status":"healthy"}
//   POST /generate {"prompt": "…"}  200 {"id":"gen-…","text":"<prompt reversed>"}
//   /generate?stream=true, or Accept: text/event-stream
//                                   SSE: a few "data: {…}" events ~100 ms apart, then "data:
//                                   [DONE]"
//   GET  /ws (WebSocket upgrade)    101, then echoes every message back as it came (text as
//                                   text, binary as binary) until the peer closes; answers
//                                   pings; permessage-deflate when the client offers it;
//                                   messages up to 16 MiB. Anything else is 404 as before.
//
// One thread, one io_context, a coroutine per connection (keep-alive; a WebSocket takes its
// connection over until it closes). SIGTERM / SIGINT stop it.
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
namespace websocket = beast::websocket;
using asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
constexpr int kStreamEvents = 5;
constexpr auto kStreamInterval = 100ms;
constexpr std::size_t kWsMessageMax = 16 * 1024 * 1024;

std::atomic<unsigned long> g_next_id{1};

std::string next_id() { return "gen-" + std::to_string(g_next_id.fetch_add(1)); }

http::response<http::string_body> json_response(const http::request<http::string_body>& req,
                                                http::status st, const json::value& body) {
  http::response<http::string_body> res{st, req.version()};
  res.set(http::field::server, "demo_worker");
  res.set(http::field::content_type, "application/json");
  res.keep_alive(req.keep_alive());
  res.body() = json::serialize(body);
  res.prepare_payload();
  return res;
}

std::string prompt_of(const http::request<http::string_body>& req) {
  boost::system::error_code ec;
  auto v = json::parse(req.body(), ec);
  if (ec || !v.is_object()) return {};
  auto* p = v.as_object().if_contains("prompt");
  if (!p || !p->is_string()) return {};
  return std::string(p->as_string());
}

bool wants_stream(const http::request<http::string_body>& req) {
  std::string_view target = req.target();
  auto q = target.find('?');
  if (q != std::string_view::npos && target.substr(q).find("stream=true") != std::string_view::npos)
    return true;
  return req[http::field::accept].find("text/event-stream") != std::string_view::npos;
}

// Streams the prompt back word by word as server-sent events.
asio::awaitable<bool> stream_generate(tcp::socket& sock,
                                      const http::request<http::string_body>& req) {
  http::response<http::empty_body> res{http::status::ok, req.version()};
  res.set(http::field::server, "demo_worker");
  res.set(http::field::content_type, "text/event-stream");
  res.set(http::field::cache_control, "no-cache");
  res.keep_alive(req.keep_alive());
  res.chunked(true);
  http::response_serializer<http::empty_body> sr{res};
  auto [ec, n] = co_await http::async_write_header(sock, sr, kUseTuple);
  if (ec) co_return false;

  const std::string id = next_id();
  std::string prompt = prompt_of(req);
  if (prompt.empty()) prompt = "hello from demo_worker";
  asio::steady_timer timer(sock.get_executor());
  for (int i = 0; i < kStreamEvents; ++i) {
    if (i > 0) {
      timer.expires_after(kStreamInterval);
      co_await timer.async_wait(kUseTuple);
    }
    json::object ev{{"id", id},
                    {"index", i},
                    {"text", prompt.substr(i * prompt.size() / kStreamEvents,
                                           prompt.size() / kStreamEvents + 1)}};
    std::string data = "data: " + json::serialize(ev) + "\n\n";
    auto [wec, wn] =
        co_await asio::async_write(sock, http::make_chunk(asio::buffer(data)), kUseTuple);
    if (wec) co_return false;
  }
  std::string done = "data: [DONE]\n\n";
  auto [dec, dn] =
      co_await asio::async_write(sock, http::make_chunk(asio::buffer(done)), kUseTuple);
  if (dec) co_return false;
  auto [lec, ln] = co_await asio::async_write(sock, http::make_chunk_last(), kUseTuple);
  co_return !lec && req.keep_alive();
}

// Takes the connection over for a WebSocket on /ws: accepts the upgrade and echoes every
// message, text as text and binary as binary, until the peer closes (Beast answers the close
// handshake and pings itself) or the connection fails. `leftover` holds what the client sent
// after the handshake head, which a client should not do before the 101, but which must then
// not be lost: the handshake is handed to Beast again as bytes, followed by them (its read
// buffer holds 1536 bytes; more makes the accept fail and the connection close).
asio::awaitable<void> websocket_echo(tcp::socket sock, const http::request<http::string_body>& req,
                                     beast::flat_buffer& leftover) {
  websocket::stream<tcp::socket> ws{std::move(sock)};
  ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  ws.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& res) { res.set(http::field::server, "demo_worker"); }));
  websocket::permessage_deflate pmd;
  pmd.server_enable = true;
  ws.set_option(pmd);
  ws.read_message_max(kWsMessageMax);

  boost::system::error_code ec;
  if (leftover.size() == 0) {
    std::tie(ec) = co_await ws.async_accept(req, kUseTuple);
  } else {
    std::ostringstream head;
    head << req.base();
    std::string raw = head.str();
    raw.append(static_cast<const char*>(leftover.cdata().data()), leftover.size());
    leftover.consume(leftover.size());
    std::tie(ec) = co_await ws.async_accept(asio::buffer(raw), kUseTuple);
  }
  if (ec) co_return;

  beast::flat_buffer msg;
  for (;;) {
    auto [rec, rn] = co_await ws.async_read(msg, kUseTuple);
    if (rec) break;  // websocket::error::closed: the close handshake is done
    ws.text(ws.got_text());
    auto [wec, wn] = co_await ws.async_write(msg.data(), kUseTuple);
    if (wec) break;
    msg.consume(msg.size());
  }
}

asio::awaitable<void> session(tcp::socket sock) {
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(16 * 1024 * 1024);
    auto [ec, n] = co_await http::async_read(sock, buffer, parser, kUseTuple);
    if (ec) break;
    auto req = parser.release();
    std::string_view target = req.target();
    std::string_view path = target.substr(0, target.find('?'));

    if (path == "/ws" && websocket::is_upgrade(req)) {
      co_await websocket_echo(std::move(sock), req, buffer);
      co_return;
    }

    if (path == "/generate" &&
        (req.method() == http::verb::post || req.method() == http::verb::get) &&
        wants_stream(req)) {
      if (!co_await stream_generate(sock, req)) break;
      continue;
    }

    http::response<http::string_body> res;
    if (path == "/ping" && req.method() == http::verb::get) {
      res = json_response(req, http::status::ok, json::object{{"status", "healthy"}});
    } else if (path == "/generate" && req.method() == http::verb::post) {
      std::string prompt = prompt_of(req);
      std::string text(prompt.rbegin(), prompt.rend());
      res = json_response(req, http::status::ok, json::object{{"id", next_id()}, {"text", text}});
    } else if (path == "/ping" || path == "/generate") {
      res = json_response(req, http::status::method_not_allowed,
                          json::object{{"detail", "Method Not Allowed"}});
    } else {
      res = json_response(req, http::status::not_found, json::object{{"detail", "Not Found"}});
    }
    const bool keep = res.keep_alive();
    auto [wec, wn] = co_await http::async_write(sock, res, kUseTuple);
    if (wec || !keep) break;
  }
  boost::system::error_code ignored;
  sock.shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> listen(tcp::acceptor& acceptor) {
  for (;;) {
    auto [ec, sock] = co_await acceptor.async_accept(kUseTuple);
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      continue;
    }
    asio::co_spawn(acceptor.get_executor(), session(std::move(sock)), asio::detached);
  }
}

int usage() {
  std::cerr << "usage: demo_worker --port N [--host 127.0.0.1]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  long port = -1;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--port" && i + 1 < argc) {
      char* end = nullptr;
      port = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || port < 0 || port > 65535) return usage();
    } else if (a == "--host" && i + 1 < argc) {
      host = argv[++i];
    } else {
      return usage();
    }
  }
  if (port < 0) return usage();

  try {
    asio::io_context ioc{1};
    tcp::endpoint ep{asio::ip::make_address(host), static_cast<unsigned short>(port)};
    tcp::acceptor acceptor{ioc, ep};
    std::cerr << "demo_worker listening on " << host << ":" << acceptor.local_endpoint().port()
              << std::endl;

    asio::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code&, int) { ioc.stop(); });
    asio::co_spawn(ioc, listen(acceptor), asio::detached);
    ioc.run();
  } catch (const std::exception& e) {
    std::cerr << "demo_worker: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
