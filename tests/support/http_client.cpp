#include "support/http_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace frontdoor::test {

namespace {

char lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

int remaining_ms(Clock::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left < 0) return 0;
  return static_cast<int>(std::min<long long>(left, 1'000'000));
}

// Waits for `events` on fd until the deadline; true when ready (or error/hangup).
bool wait_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, remaining_ms(deadline));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return false;
  }
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

bool has_token(std::string_view list, std::string_view token) {
  std::size_t pos = 0;
  while (pos <= list.size()) {
    auto comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    if (iequals(trim(list.substr(pos, comma - pos)), token)) return true;
    pos = comma + 1;
  }
  return false;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  for (const auto& [n, v] : headers)
    if (iequals(n, name)) return v;
  return std::nullopt;
}

std::vector<std::string> HttpResponse::header_all(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [n, v] : headers)
    if (iequals(n, name)) out.push_back(v);
  return out;
}

std::size_t HttpResponse::header_count(std::string_view name) const {
  std::size_t n = 0;
  for (const auto& h : headers)
    if (iequals(h.first, name)) ++n;
  return n;
}

TcpClient::TcpClient(std::uint16_t port, std::chrono::milliseconds timeout) : timeout_(timeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (rc != 0 && errno == EINPROGRESS) {
    if (wait_fd(fd, POLLOUT, Clock::now() + timeout_)) {
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      rc = err == 0 ? 0 : -1;
    }
  }
  if (rc != 0) {
    ::close(fd);
    return;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fd_ = fd;
}

TcpClient::~TcpClient() { close(); }

void TcpClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void TcpClient::shutdown_write() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

bool TcpClient::send(std::string_view bytes) {
  if (fd_ < 0) return false;
  auto deadline = Clock::now() + timeout_;
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_fd(fd_, POLLOUT, deadline)) return false;
      continue;
    }
    return false;
  }
  return true;
}

bool TcpClient::fill(Clock::time_point deadline) {
  if (fd_ < 0 || eof_) return false;
  char tmp[65536];
  for (;;) {
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n > 0) {
      buf_.append(tmp, static_cast<std::size_t>(n));
      return true;
    }
    if (n == 0) {
      eof_ = true;
      return false;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_fd(fd_, POLLIN, deadline)) return false;
      continue;
    }
    eof_ = true;  // reset or other error: the connection is gone
    return false;
  }
}

bool TcpClient::read_line(std::string& line, Clock::time_point deadline, std::string* raw) {
  for (;;) {
    auto pos = buf_.find("\r\n");
    if (pos != std::string::npos) {
      line.assign(buf_, 0, pos);
      if (raw) raw->append(buf_, 0, pos + 2);
      buf_.erase(0, pos + 2);
      return true;
    }
    if (!fill(deadline)) return false;
  }
}

bool TcpClient::read_exact(std::size_t n, std::string& out, Clock::time_point deadline,
                           std::string* raw) {
  while (buf_.size() < n)
    if (!fill(deadline)) return false;
  out.append(buf_, 0, n);
  if (raw) raw->append(buf_, 0, n);
  buf_.erase(0, n);
  return true;
}

std::optional<HttpResponse> TcpClient::parse_head(Clock::time_point deadline) {
  HttpResponse r;
  std::string line;
  if (!read_line(line, deadline, &r.raw)) return std::nullopt;
  // "HTTP/1.1 200 OK"
  if (line.size() < 12 || line.compare(0, 5, "HTTP/") != 0) return std::nullopt;
  auto sp = line.find(' ');
  if (sp == std::string::npos || sp + 4 > line.size()) return std::nullopt;
  auto res = std::from_chars(line.data() + sp + 1, line.data() + sp + 4, r.status);
  if (res.ec != std::errc{}) return std::nullopt;
  if (line.size() > sp + 5) r.reason = line.substr(sp + 5);
  for (;;) {
    if (!read_line(line, deadline, &r.raw)) return std::nullopt;
    if (line.empty()) break;
    auto colon = line.find(':');
    if (colon == std::string::npos) return std::nullopt;
    r.headers.emplace_back(line.substr(0, colon), trim(std::string_view(line).substr(colon + 1)));
  }
  if (auto te = r.header("Transfer-Encoding"); te && has_token(*te, "chunked")) r.chunked = true;
  return r;
}

bool TcpClient::read_chunked_body(HttpResponse& r, Clock::time_point deadline) {
  std::string line;
  for (;;) {
    if (!read_line(line, deadline, &r.raw)) return false;
    std::size_t size = 0;
    auto semi = line.find(';');
    std::string hex = trim(std::string_view(line).substr(0, semi));
    auto res = std::from_chars(hex.data(), hex.data() + hex.size(), size, 16);
    if (hex.empty() || res.ec != std::errc{} || res.ptr != hex.data() + hex.size()) return false;
    if (size == 0) {
      for (;;) {  // trailers up to the empty line
        if (!read_line(line, deadline, &r.raw)) return false;
        if (line.empty()) return true;
      }
    }
    if (!read_exact(size, r.body, deadline, &r.raw)) return false;
    if (!read_line(line, deadline, &r.raw) || !line.empty()) return false;
  }
}

std::optional<HttpResponse> TcpClient::read_response(bool head_request) {
  auto deadline = Clock::now() + timeout_;
  auto r = parse_head(deadline);
  if (!r) return std::nullopt;
  if (head_request || (r->status >= 100 && r->status < 200) || r->status == 204 || r->status == 304)
    return r;
  if (r->chunked) {
    if (!read_chunked_body(*r, deadline)) return std::nullopt;
    return r;
  }
  if (auto cl = r->header("Content-Length")) {
    std::size_t n = 0;
    auto res = std::from_chars(cl->data(), cl->data() + cl->size(), n);
    if (res.ec != std::errc{}) return std::nullopt;
    if (!read_exact(n, r->body, deadline, &r->raw)) return std::nullopt;
    return r;
  }
  // Delimited by close.
  while (fill(deadline)) {
  }
  if (!eof_) return std::nullopt;
  r->body += buf_;
  r->raw += buf_;
  buf_.clear();
  return r;
}

std::string TcpClient::read_until_closed(std::chrono::milliseconds timeout, bool* closed) {
  auto deadline = Clock::now() + timeout;
  while (fill(deadline)) {
  }
  if (closed) *closed = eof_;
  std::string out;
  out.swap(buf_);
  return out;
}

bool TcpClient::wait_closed(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (fill(deadline)) buf_.clear();
  return eof_;
}

bool TcpClient::readable(std::chrono::milliseconds timeout) {
  if (!buf_.empty() || eof_) return true;
  if (fd_ < 0) return false;
  return wait_fd(fd_, POLLIN, Clock::now() + timeout);
}

std::optional<HttpResponse> TcpClient::read_head() { return parse_head(Clock::now() + timeout_); }

std::optional<TimedChunk> TcpClient::read_chunk() {
  auto deadline = Clock::now() + timeout_;
  std::string line;
  if (!read_line(line, deadline, nullptr)) return std::nullopt;
  std::size_t size = 0;
  std::string hex = trim(std::string_view(line).substr(0, line.find(';')));
  auto res = std::from_chars(hex.data(), hex.data() + hex.size(), size, 16);
  if (hex.empty() || res.ec != std::errc{}) return std::nullopt;
  TimedChunk c;
  if (size == 0) {
    for (;;) {
      if (!read_line(line, deadline, nullptr)) return std::nullopt;
      if (line.empty()) break;
    }
    c.at = Clock::now();
    return c;
  }
  if (!read_exact(size, c.data, deadline, nullptr)) return std::nullopt;
  c.at = Clock::now();
  if (!read_line(line, deadline, nullptr) || !line.empty()) return std::nullopt;
  return c;
}

std::string build_request(std::string_view method, std::string_view target, const Headers& headers,
                          std::string_view body) {
  std::string out;
  out.reserve(256 + body.size());
  out.append(method).append(" ").append(target).append(" HTTP/1.1\r\n");
  bool framed = false;
  for (const auto& [n, v] : headers) {
    if (iequals(n, "Content-Length") || iequals(n, "Transfer-Encoding")) framed = true;
    out.append(n).append(": ").append(v).append("\r\n");
  }
  if (!framed && !body.empty())
    out.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  out.append("\r\n");
  out.append(body);
  return out;
}

HttpResponse do_request(std::uint16_t port, std::string_view method, std::string_view target,
                        const Headers& headers, std::string_view body,
                        std::chrono::milliseconds timeout) {
  TcpClient c(port, timeout);
  if (!c.connected() || !c.send(build_request(method, target, headers, body))) return {};
  for (;;) {
    auto r = c.read_response(iequals(method, "HEAD"));
    if (!r) return {};
    if (r->status >= 100 && r->status < 200) continue;
    return std::move(*r);
  }
}

std::string chunk_encode(std::string_view body, std::size_t chunk_size) {
  std::string out;
  out.reserve(body.size() + body.size() / std::max<std::size_t>(chunk_size, 1) * 12 + 16);
  char hex[32];
  while (!body.empty()) {
    std::size_t n = std::min(chunk_size, body.size());
    auto res = std::to_chars(hex, hex + sizeof hex, n, 16);
    out.append(hex, res.ptr).append("\r\n").append(body.substr(0, n)).append("\r\n");
    body.remove_prefix(n);
  }
  out.append("0\r\n\r\n");
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

std::string pattern_bytes(std::size_t n, std::uint32_t seed) {
  std::string out(n, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = static_cast<char>(x & 0xff);
  }
  return out;
}

}  // namespace frontdoor::test
