#include "support/fake_worker.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json.hpp>
#include <cerrno>
#include <charconv>

namespace frontdoor::test {

namespace http = boost::beast::http;
namespace json = boost::json;

std::optional<std::string> RecordedRequest::header(std::string_view name) const {
  for (const auto& [n, v] : headers)
    if (iequals(n, name)) return v;
  return std::nullopt;
}

std::size_t RecordedRequest::header_count(std::string_view name) const {
  std::size_t n = 0;
  for (const auto& h : headers)
    if (iequals(h.first, name)) ++n;
  return n;
}

std::string RecordedRequest::path() const { return target.substr(0, target.find('?')); }

Behavior Behavior::fixed(int status, std::string body, Headers headers) {
  Behavior b;
  b.kind = Kind::fixed;
  b.status = status;
  b.body = std::move(body);
  b.headers = std::move(headers);
  return b;
}

Behavior Behavior::echo() {
  Behavior b;
  b.kind = Kind::echo;
  return b;
}

Behavior Behavior::sse(int events, std::chrono::milliseconds interval) {
  Behavior b;
  b.kind = Kind::sse;
  b.sse_events = events;
  b.sse_interval = interval;
  return b;
}

Behavior Behavior::large(std::size_t size, bool chunked) {
  Behavior b;
  b.kind = Kind::large_body;
  b.large_size = size;
  b.chunked = chunked;
  return b;
}

Behavior Behavior::close_without_answer() {
  Behavior b;
  b.kind = Kind::close_without_answer;
  return b;
}

Behavior Behavior::never_answer() {
  Behavior b;
  b.kind = Kind::never_answer;
  return b;
}

Behavior Behavior::raw_then_close(std::string bytes) {
  Behavior b;
  b.kind = Kind::raw_then_close;
  b.body = std::move(bytes);
  return b;
}

Behavior Behavior::stall() {
  Behavior b;
  b.kind = Kind::stall;
  b.answer_before_body = true;
  return b;
}

Behavior Behavior::flood(std::string prefix, std::string unit, std::size_t total) {
  Behavior b;
  b.kind = Kind::flood;
  b.body = std::move(prefix);
  b.flood_unit = std::move(unit);
  b.flood_bytes = total;
  return b;
}

namespace {

const char* reason_for(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

enum class Wait { ready, stopped, peer_closed, timeout };

// Blocking I/O on one accepted connection; every wait also wakes on stop.
class Conn {
 public:
  Conn(int fd, int stop_fd) : fd_(fd), stop_fd_(stop_fd) {}

  // Appends received bytes to buf; false on EOF, error or stop.
  bool recv_some(std::string& buf) {
    char tmp[65536];
    for (;;) {
      pollfd p[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      int rc = ::poll(p, 2, -1);
      if (rc < 0 && errno == EINTR) continue;
      if (rc < 0 || (p[1].revents & POLLIN)) return false;
      ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n > 0) {
        buf.append(tmp, static_cast<std::size_t>(n));
        return true;
      }
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      return false;
    }
  }

  bool send_all(std::string_view data) {
    while (!data.empty()) {
      pollfd p[2] = {{fd_, POLLOUT, 0}, {stop_fd_, POLLIN, 0}};
      int rc = ::poll(p, 2, -1);
      if (rc < 0 && errno == EINTR) continue;
      if (rc < 0 || (p[1].revents & POLLIN)) return false;
      if (p[0].revents & (POLLERR | POLLHUP)) return false;
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        data.remove_prefix(static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      return false;
    }
    return true;
  }

  // Waits `d` without reading (the peer's bytes stay unread); false on stop.
  bool sleep(std::chrono::milliseconds d) {
    pollfd p{stop_fd_, POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(d.count()));
    return rc == 0;
  }

  // Waits without reading until the peer closes or resets; false on stop.
  bool wait_peer_gone() {
    for (;;) {
      pollfd p[2] = {{stop_fd_, POLLIN, 0}, {fd_, POLLRDHUP, 0}};
      int rc = ::poll(p, 2, -1);
      if (rc < 0 && errno == EINTR) continue;
      if (rc < 0 || (p[0].revents & POLLIN)) return false;
      if (p[1].revents) return true;
    }
  }

  // Waits `d` (forever when d < 0), waking early on stop or when the peer
  // closes; bytes the peer sends meanwhile (pipelining) are kept in `pending`.
  Wait pause(std::chrono::milliseconds d, std::string& pending) {
    auto deadline = Clock::now() + d;
    bool watch_peer = true;
    for (;;) {
      int ms = -1;
      if (d.count() >= 0) {
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) return Wait::timeout;
        ms = static_cast<int>(left);
      }
      pollfd p[2] = {{stop_fd_, POLLIN, 0}, {fd_, POLLIN, 0}};
      int rc = ::poll(p, watch_peer ? 2 : 1, ms);
      if (rc < 0 && errno == EINTR) continue;
      if (rc < 0 || (p[0].revents & POLLIN)) return Wait::stopped;
      if (rc == 0) return Wait::timeout;
      if (watch_peer && p[1].revents) {
        char tmp[65536];
        ssize_t n = ::recv(fd_, tmp, sizeof tmp, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return Wait::peer_closed;
        if (n > 0) pending.append(tmp, static_cast<std::size_t>(n));
        if (pending.size() > (1u << 20)) watch_peer = false;  // stop reading a flood
      }
    }
  }

 private:
  int fd_;
  int stop_fd_;
};

std::string head_bytes(int status, const Headers& headers) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason_for(status) + "\r\n";
  for (const auto& [n, v] : headers) out += n + ": " + v + "\r\n";
  out += "\r\n";
  return out;
}

std::string one_chunk(std::string_view data) {
  char hex[32];
  auto res = std::to_chars(hex, hex + sizeof hex, data.size(), 16);
  std::string out(hex, res.ptr);
  out += "\r\n";
  out += data;
  out += "\r\n";
  return out;
}

std::string echo_json(const RecordedRequest& r) {
  json::object o;
  o["method"] = r.method;
  o["target"] = r.target;
  json::array hs;
  for (const auto& [n, v] : r.headers) hs.push_back(json::array{json::string(n), json::string(v)});
  o["headers"] = std::move(hs);
  o["body_size"] = r.body.size();
  o["body_sha256"] = sha256_hex(r.body);
  o["connection"] = r.connection;
  return json::serialize(o);
}

}  // namespace

FakeWorker::FakeWorker() {
  default_ = Behavior::echo();
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) return;
  listen_on(0);
}

bool FakeWorker::listen_on(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 128) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return false;
  }
  port_ = ntohs(addr.sin_port);
  listen_fd_ = fd;
  acceptor_ = std::thread([this] { accept_loop(); });
  return true;
}

bool FakeWorker::restart() {
  if (!stopping_.load()) return ok();
  if (stop_fd_ < 0 || port_ == 0) return false;
  std::uint64_t v;
  [[maybe_unused]] auto n = ::read(stop_fd_, &v, sizeof v);  // reset the stop event
  stopping_.store(false);
  return listen_on(port_);
}

FakeWorker::~FakeWorker() {
  stop();
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

void FakeWorker::stop() {
  if (stopping_.exchange(true)) return;
  if (stop_fd_ >= 0) {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(stop_fd_, &one, sizeof one);
  }
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard lk(threads_mu_);
    threads.swap(conn_threads_);
  }
  for (auto& t : threads) t.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
}

std::string FakeWorker::authority() const { return "127.0.0.1:" + std::to_string(port_); }
std::string FakeWorker::url() const { return "http://" + authority(); }

void FakeWorker::set_default(Behavior b) {
  std::lock_guard lk(mu_);
  default_ = std::move(b);
}

void FakeWorker::on(const std::string& path, Behavior b) {
  std::lock_guard lk(mu_);
  by_path_[path] = std::move(b);
}

void FakeWorker::set_health_path(std::string path) {
  std::lock_guard lk(mu_);
  health_path_ = std::move(path);
}

void FakeWorker::set_health_status(int status) {
  std::lock_guard lk(mu_);
  by_path_[health_path_] = Behavior::fixed(status);
}

void FakeWorker::set_delay(std::chrono::milliseconds d) {
  std::lock_guard lk(mu_);
  delay_ = d;
}

void FakeWorker::set_health_delay(std::chrono::milliseconds d) {
  std::lock_guard lk(mu_);
  health_delay_ = d;
}

Behavior FakeWorker::behavior_for(const std::string& path) const {
  std::lock_guard lk(mu_);
  auto it = by_path_.find(path);
  return it == by_path_.end() ? default_ : it->second;
}

std::vector<RecordedRequest> FakeWorker::requests() const {
  std::lock_guard lk(mu_);
  return log_;
}
std::size_t FakeWorker::request_count() const {
  std::lock_guard lk(mu_);
  return log_.size();
}
std::size_t FakeWorker::heads_received() const {
  std::lock_guard lk(mu_);
  return heads_;
}
std::size_t FakeWorker::health_probes() const {
  std::lock_guard lk(mu_);
  return probes_;
}
std::vector<int> FakeWorker::probe_statuses() const {
  std::lock_guard lk(mu_);
  return probe_statuses_;
}
int FakeWorker::in_flight() const {
  std::lock_guard lk(mu_);
  return in_flight_;
}
int FakeWorker::max_in_flight() const {
  std::lock_guard lk(mu_);
  return max_in_flight_;
}
std::size_t FakeWorker::parse_errors() const {
  std::lock_guard lk(mu_);
  return parse_errors_;
}
std::size_t FakeWorker::flood_bytes_sent() const {
  std::lock_guard lk(mu_);
  return flood_sent_;
}
std::size_t FakeWorker::after_bytes_sent() const {
  std::lock_guard lk(mu_);
  return after_sent_;
}
void FakeWorker::release() { released_.store(true); }

bool FakeWorker::wait_for_after_bytes(std::size_t n, std::chrono::milliseconds timeout) const {
  return wait_until([&] { return after_sent_ >= n; }, timeout);
}
int FakeWorker::connections_accepted() const {
  std::lock_guard lk(mu_);
  return accepted_;
}
int FakeWorker::connections_closed() const {
  std::lock_guard lk(mu_);
  return closed_;
}
int FakeWorker::peer_aborts() const {
  std::lock_guard lk(mu_);
  return aborts_;
}

void FakeWorker::clear() {
  std::lock_guard lk(mu_);
  log_.clear();
  heads_ = 0;
  parse_errors_ = 0;
  max_in_flight_ = in_flight_;
}

template <class Pred>
bool FakeWorker::wait_until(Pred pred, std::chrono::milliseconds timeout) const {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, timeout, pred);
}

bool FakeWorker::wait_for_requests(std::size_t n, std::chrono::milliseconds timeout) const {
  return wait_until([&] { return log_.size() >= n; }, timeout);
}
bool FakeWorker::wait_for_heads(std::size_t n, std::chrono::milliseconds timeout) const {
  return wait_until([&] { return heads_ >= n; }, timeout);
}
bool FakeWorker::wait_for_health_probes(std::size_t n, std::chrono::milliseconds timeout) const {
  return wait_until([&] { return probes_ >= n; }, timeout);
}
bool FakeWorker::wait_for_connections_closed(int n, std::chrono::milliseconds timeout) const {
  return wait_until([&] { return closed_ >= n; }, timeout);
}
bool FakeWorker::wait_for_peer_aborts(int n, std::chrono::milliseconds timeout) const {
  return wait_until([&] { return aborts_ >= n; }, timeout);
}
bool FakeWorker::wait_for_in_flight(int n, std::chrono::milliseconds timeout) const {
  return wait_until([&] { return in_flight_ >= n; }, timeout);
}
bool FakeWorker::wait_for_probe_status(int status, std::size_t n,
                                       std::chrono::milliseconds timeout) const {
  return wait_until(
      [&] {
        std::size_t k = 0;
        for (int s : probe_statuses_) k += s == status;
        return k >= n;
      },
      timeout);
}

void FakeWorker::accept_loop() {
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    int rc = ::poll(p, 2, -1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0 || (p[1].revents & POLLIN)) return;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int conn_no = 0;  // 1-based, continued across restart()
    {
      std::lock_guard lk(mu_);
      conn_no = ++accepted_;
    }
    cv_.notify_all();
    std::lock_guard lk(threads_mu_);
    conn_threads_.emplace_back([this, fd, conn_no] { serve(fd, conn_no); });
  }
}

void FakeWorker::serve(int fd, int conn_no) {
  Conn conn(fd, stop_fd_);
  std::string buf;
  bool aborted = false;
  bool counted = false;  // the current request counts in in_flight_
  auto end_flight = [&] {
    if (!counted) return;
    counted = false;
    {
      std::lock_guard lk(mu_);
      --in_flight_;
    }
    cv_.notify_all();
  };
  auto finish = [&] {
    end_flight();
    ::close(fd);
    {
      std::lock_guard lk(mu_);
      ++closed_;
      if (aborted) ++aborts_;
    }
    cv_.notify_all();
  };

  for (;;) {
    // --- read one request
    http::request_parser<http::string_body> parser;
    parser.eager(true);
    parser.header_limit(1u << 20);
    parser.body_limit(std::uint64_t{1} << 32);
    bool head_counted = false;
    bool health = false;
    bool early = false;  // answered before the body (Behavior::answer_before_body)
    std::string health_path;
    {
      std::lock_guard lk(mu_);
      health_path = health_path_;
    }
    for (;;) {
      boost::beast::error_code ec;
      if (!buf.empty()) {
        auto n = parser.put(boost::asio::buffer(buf.data(), buf.size()), ec);
        buf.erase(0, n);
        if (ec && ec != http::error::need_more) {
          {
            std::lock_guard lk(mu_);
            ++parse_errors_;
          }
          cv_.notify_all();
          return finish();
        }
        if (parser.is_header_done() && !head_counted) {
          head_counted = true;
          std::string target(parser.get().target());
          health = !health_path.empty() && target.substr(0, target.find('?')) == health_path;
          if (!health) {
            {
              std::lock_guard lk(mu_);
              ++heads_;
            }
            cv_.notify_all();
          }
          if (!health && !parser.is_done() &&
              behavior_for(target.substr(0, target.find('?'))).answer_before_body) {
            early = true;
            break;
          }
          // Like uvicorn: answer "Expect: 100-continue" before reading the body.
          auto expect = parser.get()[http::field::expect];
          if (iequals(expect, "100-continue") && !parser.is_done() && buf.empty() &&
              !conn.send_all("HTTP/1.1 100 Continue\r\n\r\n"))
            return finish();
        }
        if (parser.is_done()) break;
        if (!ec && n > 0 && !buf.empty()) continue;
      }
      if (!conn.recv_some(buf)) {
        if (!buf.empty() || head_counted) {
          std::lock_guard lk(mu_);
          ++parse_errors_;  // the peer closed in the middle of a request
        }
        return finish();
      }
    }

    const auto& msg = parser.get();
    RecordedRequest rec;
    rec.method = std::string(msg.method_string());
    rec.target = std::string(msg.target());
    rec.version = msg.version();
    for (const auto& f : msg)
      rec.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    rec.body = msg.body();
    rec.chunked = parser.is_header_done() && parser.chunked();
    rec.connection = conn_no;
    rec.received_at = Clock::now();
    const bool is_head = rec.method == "HEAD";
    bool client_close = !msg.keep_alive();

    if (health) {
      {
        std::lock_guard lk(mu_);
        ++probes_;
      }
      cv_.notify_all();
      // A behaviour registered for the health path sets the status (to make
      // the worker unhealthy); otherwise probes get 200.
      int status = 200;
      std::chrono::milliseconds health_delay{0};
      {
        std::lock_guard lk(mu_);
        health_delay = health_delay_;
      }
      if (health_delay.count() > 0 && conn.pause(health_delay, buf) != Wait::timeout)
        return finish();
      {
        std::lock_guard lk(mu_);
        if (auto it = by_path_.find(health_path); it != by_path_.end()) status = it->second.status;
        probe_statuses_.push_back(status);
      }
      cv_.notify_all();
      std::string answer;
      if (status == 204) {  // no content: neither a body nor a Content-Length
        answer = head_bytes(status, {});
      } else {
        std::string body =
            status / 100 == 2 ? R"({"status":"healthy"})" : R"({"status":"unhealthy"})";
        answer = head_bytes(status, {{"Content-Type", "application/json"},
                                     {"Content-Length", std::to_string(body.size())}}) +
                 body;
      }
      if (!conn.send_all(answer)) return finish();
      if (client_close) return finish();
      continue;
    }

    Behavior b = behavior_for(rec.path());
    {
      std::lock_guard lk(mu_);
      log_.push_back(rec);
      if (b.first_byte_delay.count() == 0) b.first_byte_delay = delay_;
      ++in_flight_;
      max_in_flight_ = std::max(max_in_flight_, in_flight_);
      counted = true;
    }
    cv_.notify_all();

    // --- answer
    if (b.kind == Behavior::Kind::close_without_answer) return finish();
    if (b.kind == Behavior::Kind::raw_then_close) {
      end_flight();
      conn.send_all(b.body);
      return finish();
    }
    if (b.kind == Behavior::Kind::never_answer) {
      aborted = conn.pause(std::chrono::milliseconds(-1), buf) == Wait::peer_closed;
      return finish();
    }
    while (b.held && !released_.load()) {
      if (!conn.sleep(std::chrono::milliseconds(5))) return finish();  // stopped
    }
    if (b.first_byte_delay.count() > 0) {
      auto w = conn.pause(b.first_byte_delay, buf);
      if (w == Wait::peer_closed) aborted = true;
      if (w != Wait::timeout) return finish();
    }

    Headers headers;
    std::string body;
    bool chunked = b.chunked;
    int status = b.status;
    switch (b.kind) {
      case Behavior::Kind::fixed:
        body = b.body;
        break;
      case Behavior::Kind::echo:
        status = 200;
        body = echo_json(rec);
        headers.emplace_back("Content-Type", "application/json");
        break;
      case Behavior::Kind::large_body:
        body = pattern_bytes(b.large_size);
        headers.emplace_back("Content-Type", "application/octet-stream");
        break;
      case Behavior::Kind::sse:
        chunked = true;
        headers.emplace_back("Content-Type", "text/event-stream");
        headers.emplace_back("Cache-Control", "no-cache");
        break;
      default:
        break;
    }
    if (b.kind == Behavior::Kind::stall) {
      aborted = conn.wait_peer_gone();
      return finish();
    }
    if (b.kind == Behavior::Kind::flood) {
      end_flight();
      std::size_t sent = 0;
      bool ok = conn.send_all(b.body);
      sent += b.body.size();
      while (ok && sent < b.flood_bytes && !b.flood_unit.empty()) {
        ok = conn.send_all(b.flood_unit);
        if (ok) sent += b.flood_unit.size();
        {
          std::lock_guard lk(mu_);
          flood_sent_ += ok ? b.flood_unit.size() : 0;
        }
      }
      aborted = !ok;
      return finish();
    }
    const bool no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    if (!no_body) {
      if (chunked)
        headers.emplace_back("Transfer-Encoding", "chunked");
      else
        headers.emplace_back("Content-Length", std::to_string(body.size()));
    }
    const bool close_after = b.connection_close || b.close_after_response || client_close;
    if (b.connection_close) headers.emplace_back("Connection", "close");
    for (const auto& h : b.headers) headers.push_back(h);

    // A plain answer goes in one write; the request stops counting as in
    // flight just before the last write of its answer, so that a proxy that
    // reacts to the answer never sees it still counted.
    const bool streamed = !is_head && !no_body && (b.kind == Behavior::Kind::sse || chunked);
    if (!streamed) {
      std::string all = head_bytes(status, headers);
      if (!is_head && !no_body) all += body;
      end_flight();
      if (!conn.send_all(all)) {
        aborted = true;
        return finish();
      }
    } else if (!conn.send_all(head_bytes(status, headers))) {
      aborted = true;
      return finish();
    }
    if (streamed) {
      if (b.kind == Behavior::Kind::sse) {
        for (int i = 0; i < b.sse_events; ++i) {
          if (i > 0) {
            auto w = conn.pause(b.sse_interval, buf);
            if (w == Wait::peer_closed) aborted = true;
            if (w != Wait::timeout) return finish();
          }
          std::string ev = "data: {\"n\":" + std::to_string(i) + "}\n\n";
          if (!conn.send_all(one_chunk(ev))) {
            aborted = true;
            return finish();
          }
        }
        end_flight();
        if (!conn.send_all("0\r\n\r\n")) return finish();
      } else if (chunked) {
        constexpr std::size_t kChunk = 65536;
        std::string_view rest = body;
        while (!rest.empty()) {
          auto n = std::min(kChunk, rest.size());
          if (!conn.send_all(one_chunk(rest.substr(0, n)))) {
            aborted = true;
            return finish();
          }
          rest.remove_prefix(n);
        }
        end_flight();
        if (!conn.send_all("0\r\n\r\n")) return finish();
      }
    }
    end_flight();
    if (!b.after_bytes.empty()) {
      auto w = conn.pause(b.after_delay, buf);
      if (w != Wait::timeout) {
        aborted = w == Wait::peer_closed;
        return finish();
      }
      if (!conn.send_all(b.after_bytes)) return finish();
      {
        std::lock_guard lk(mu_);
        ++after_sent_;
      }
      cv_.notify_all();
    }
    if (early && b.connection_close) {
      // Like a server that rejects an upload: FIN, a moment for the answer to
      // be read, then close with the body unread (the kernel resets).
      ::shutdown(fd, SHUT_WR);
      conn.sleep(b.linger);
      return finish();
    }
    if (early) {  // read and discard the rest of the body
      while (!parser.is_done()) {
        if (!buf.empty()) {
          boost::beast::error_code ec;
          auto n = parser.put(boost::asio::buffer(buf.data(), buf.size()), ec);
          buf.erase(0, n);
          if (ec && ec != http::error::need_more) return finish();
          if (parser.is_done() || (n > 0 && !buf.empty())) continue;
        }
        if (!conn.recv_some(buf)) return finish();
      }
    }
    if (close_after) return finish();
  }
}

}  // namespace frontdoor::test
