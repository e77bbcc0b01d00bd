#include "support/tls_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace frontdoor::test {

namespace {

int remaining_ms(Clock::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 1'000'000));
}

bool wait_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, remaining_ms(deadline));
    if (rc > 0) return true;
    if (rc == 0 || errno != EINTR) return false;
  }
}

std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

const char* to_string(TlsEnd e) noexcept {
  switch (e) {
    case TlsEnd::open:
      return "still open";
    case TlsEnd::close_notify:
      return "close_notify";
    case TlsEnd::unexpected_eof:
      return "EOF without close_notify";
    case TlsEnd::reset:
      return "reset";
    case TlsEnd::error:
      return "TLS error";
  }
  return "?";
}

TlsClient::TlsClient(std::uint16_t port, std::chrono::milliseconds timeout) : timeout_(timeout) {
  const auto deadline = Clock::now() + timeout_;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    error_ = "socket failed";
    return;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (rc != 0 && errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline)) {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    rc = err == 0 ? 0 : -1;
  }
  if (rc != 0) {
    ::close(fd);
    error_ = "connect failed";
    return;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fd_ = fd;

  ctx_ = SSL_CTX_new(TLS_client_method());
  SSL* ssl = ctx_ ? SSL_new(ctx_) : nullptr;
  if (!ssl) {
    error_ = "SSL_new failed: " + openssl_errors();
    return;
  }
  SSL_set_verify(ssl, SSL_VERIFY_NONE, nullptr);
  SSL_set_fd(ssl, fd_);
  static const unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_set_alpn_protos(ssl, kAlpn, sizeof kAlpn);
  for (;;) {
    ERR_clear_error();
    int r = SSL_connect(ssl);
    if (r == 1) break;
    int e = SSL_get_error(ssl, r);
    if ((e == SSL_ERROR_WANT_READ && wait_fd(fd_, POLLIN, deadline)) ||
        (e == SSL_ERROR_WANT_WRITE && wait_fd(fd_, POLLOUT, deadline)))
      continue;
    error_ = "TLS handshake failed: " + openssl_errors();
    SSL_free(ssl);
    return;
  }
  ssl_ = ssl;
}

TlsClient::~TlsClient() {
  if (ssl_) SSL_free(ssl_);
  if (ctx_) SSL_CTX_free(ctx_);
  if (fd_ >= 0) ::close(fd_);
}

bool TlsClient::send(std::string_view bytes) {
  if (!ssl_) return false;
  const auto deadline = Clock::now() + timeout_;
  while (!bytes.empty()) {
    ERR_clear_error();
    int n = SSL_write(ssl_, bytes.data(), static_cast<int>(std::min<std::size_t>(bytes.size(), 1 << 20)));
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    int e = SSL_get_error(ssl_, n);
    if ((e == SSL_ERROR_WANT_READ && wait_fd(fd_, POLLIN, deadline)) ||
        (e == SSL_ERROR_WANT_WRITE && wait_fd(fd_, POLLOUT, deadline)))
      continue;
    return false;
  }
  return true;
}

bool TlsClient::fill(Clock::time_point deadline) {
  if (!ssl_ || end_ != TlsEnd::open) return false;
  char tmp[65536];
  for (;;) {
    ERR_clear_error();
    errno = 0;
    int n = SSL_read(ssl_, tmp, sizeof tmp);
    if (n > 0) {
      buf_.append(tmp, static_cast<std::size_t>(n));
      return true;
    }
    int e = SSL_get_error(ssl_, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      if (!wait_fd(fd_, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) return false;
      continue;
    }
    const int saved_errno = errno;
    end_detail_ = openssl_errors();
    if (e == SSL_ERROR_ZERO_RETURN) {
      end_ = TlsEnd::close_notify;
    } else if (e == SSL_ERROR_SYSCALL) {
      // OpenSSL 1.1 style: EOF (errno 0) without close_notify, or a socket error.
      end_ = saved_errno == 0 ? TlsEnd::unexpected_eof : TlsEnd::reset;
      if (end_detail_.empty()) end_detail_ = saved_errno ? std::strerror(saved_errno) : "EOF";
    } else if (e == SSL_ERROR_SSL &&
               end_detail_.find("unexpected eof") != std::string::npos) {
      end_ = TlsEnd::unexpected_eof;  // OpenSSL 3
    } else {
      end_ = TlsEnd::error;
    }
    return false;
  }
}

std::string TlsClient::read_until_end(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (fill(deadline)) {
  }
  std::string out;
  out.swap(buf_);
  return out;
}

std::optional<HttpResponse> TlsClient::read_response(bool head_request) {
  const auto deadline = Clock::now() + timeout_;
  std::size_t head_end;
  while ((head_end = buf_.find("\r\n\r\n")) == std::string::npos)
    if (!fill(deadline)) return std::nullopt;
  HttpResponse r;
  std::string_view head(buf_.data(), head_end);
  auto line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  if (status_line.size() < 12 || status_line.substr(0, 5) != "HTTP/") return std::nullopt;
  std::from_chars(status_line.data() + 9, status_line.data() + 12, r.status);
  std::size_t pos = line_end == std::string_view::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    auto eol = head.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = head.size();
    auto line = head.substr(pos, eol - pos);
    auto colon = line.find(':');
    if (colon != std::string_view::npos)
      r.headers.emplace_back(std::string(line.substr(0, colon)), trim(line.substr(colon + 1)));
    pos = eol + 2;
  }
  std::size_t body_start = head_end + 4;
  auto take = [&](std::size_t n) {
    r.raw = buf_.substr(0, body_start + n);
    r.body = buf_.substr(body_start, n);
    buf_.erase(0, body_start + n);
  };
  if (head_request || r.status / 100 == 1 || r.status == 204 || r.status == 304) {
    take(0);
    return r;
  }
  if (auto te = r.header("Transfer-Encoding"); te && te->find("chunked") != std::string::npos) {
    r.chunked = true;
    // Raw body up to the last chunk; enough for tests that look at the end of a connection.
    std::size_t end;
    while ((end = buf_.find("0\r\n\r\n", body_start)) == std::string::npos ||
           (end != body_start && buf_.compare(end - 2, 2, "\r\n") != 0))
      if (!fill(deadline)) return std::nullopt;
    take(end + 5 - body_start);
    return r;
  }
  if (auto cl = r.header("Content-Length")) {
    std::size_t n = 0;
    std::from_chars(cl->data(), cl->data() + cl->size(), n);
    while (buf_.size() < body_start + n)
      if (!fill(deadline)) return std::nullopt;
    take(n);
    return r;
  }
  while (fill(deadline)) {
  }
  if (end_ == TlsEnd::open) return std::nullopt;  // timed out
  take(buf_.size() - body_start);
  return r;
}

}  // namespace frontdoor::test
