#pragma once
// TLS termination (SPEC §2 `tls` on a listener or the admin listener).
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>

#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "frontdoor/config/config.hpp"

namespace frontdoor::proxy {

// A server context: TLS 1.2 and 1.3 only, forward-secret AEAD ciphers for
// TLS 1.2, ALPN "http/1.1" (we speak nothing else), no session tickets
// across restarts. Throws std::runtime_error naming the file on a bad pair.
std::shared_ptr<boost::asio::ssl::context> make_server_tls_context(const config::TlsFiles& files);

// The current context of one listener. A reload (SIGHUP) swaps it; new
// connections take the new one, established ones keep theirs.
class TlsContextSlot {
 public:
  explicit TlsContextSlot(std::shared_ptr<boost::asio::ssl::context> c) : ctx_(std::move(c)) {}
  std::shared_ptr<boost::asio::ssl::context> get() const {
    std::lock_guard lock(mutex_);
    return ctx_;
  }
  void set(std::shared_ptr<boost::asio::ssl::context> c) {
    std::lock_guard lock(mutex_);
    ctx_ = std::move(c);
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<boost::asio::ssl::context> ctx_;
};

// A client connection, plain or TLS, with the stream operations the session
// uses (an AsyncReadStream / AsyncWriteStream either way).
class ClientStream {
 public:
  using tcp = boost::asio::ip::tcp;
  using executor_type = tcp::socket::executor_type;

  explicit ClientStream(tcp::socket s) : plain_(std::move(s)) {}
  ClientStream(tcp::socket s, std::shared_ptr<boost::asio::ssl::context> ctx)
      : ctx_(std::move(ctx)), tls_(std::make_unique<boost::asio::ssl::stream<tcp::socket>>(std::move(s), *ctx_)) {}

  bool is_tls() const noexcept { return tls_ != nullptr; }
  // TLS only: the peer closed cleanly (its close_notify arrived), so it is
  // owed ours even though it will send nothing more.
  bool close_notify_received() const noexcept {
    return tls_ && (SSL_get_shutdown(tls_->native_handle()) & SSL_RECEIVED_SHUTDOWN) != 0;
  }
  tcp::socket& socket() noexcept { return tls_ ? tls_->next_layer() : *plain_; }
  executor_type get_executor() noexcept { return socket().get_executor(); }

  template <class Buffers, class Handler>
  void async_read_some(const Buffers& buffers, Handler&& handler) {
    if (tls_)
      tls_->async_read_some(buffers, std::forward<Handler>(handler));
    else
      plain_->async_read_some(buffers, std::forward<Handler>(handler));
  }
  template <class Buffers, class Handler>
  void async_write_some(const Buffers& buffers, Handler&& handler) {
    if (tls_)
      tls_->async_write_some(buffers, std::forward<Handler>(handler));
    else
      plain_->async_write_some(buffers, std::forward<Handler>(handler));
  }
  // TLS only: sends close_notify and waits for the peer's (RFC 8446 §6.1).
  // The caller bounds the wait by closing the socket.
  template <class Handler>
  void async_shutdown(Handler&& handler) {
    tls_->async_shutdown(std::forward<Handler>(handler));
  }
  template <class Handler>
  void async_handshake(Handler&& handler) {
    tls_->async_handshake(boost::asio::ssl::stream_base::server, std::forward<Handler>(handler));
  }

 private:
  std::optional<tcp::socket> plain_;
  std::shared_ptr<boost::asio::ssl::context> ctx_;  // outlives the stream that uses it
  std::unique_ptr<boost::asio::ssl::stream<tcp::socket>> tls_;
};

}  // namespace frontdoor::proxy
