#include "support/proxy_harness.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "support/tokens.hpp"

extern char** environ;

namespace frontdoor::test {

namespace json = boost::json;
using std::chrono::milliseconds;

namespace {

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::optional<json::object> parse_object(std::string_view line) {
  boost::system::error_code ec;
  auto v = json::parse(line, ec);
  if (ec || !v.is_object()) return std::nullopt;
  return v.as_object();
}

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    if (nl == std::string_view::npos) break;  // an incomplete last line is not a line yet
    out.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

std::string str_field(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_string()) return {};
  return std::string(it->value().as_string());
}

}  // namespace

std::pair<std::string, std::string> bearer(const std::string& token) {
  return {"Authorization", "Bearer " + token};
}

ProxyHarness::ProxyHarness() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "frontdoor-it-XXXXXX").string();
  if (char* d = ::mkdtemp(tmpl.data())) dir_ = d;
}

ProxyHarness::~ProxyHarness() {
  stop_child();
  if (reader_.joinable()) reader_.join();
  if (pidfd_ >= 0) ::close(pidfd_);
  if (!dir_.empty() && !std::getenv("FD_KEEP_TMP")) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string ProxyHarness::add_key(KeySpec key) {
  if (key.token.empty()) key.token = fresh_rpa_token();
  if (key.id.empty()) key.id = "key_" + std::to_string(keys_.size() + 1);
  keys_.push_back(key);
  return key.token;
}

void ProxyHarness::add_endpoint(EndpointSpec ep) { endpoints_.push_back(std::move(ep)); }

std::string ProxyHarness::config_yaml() const {
  std::ostringstream y;
  y << "listeners:\n  - address: 127.0.0.1:0\n";
  y << "admin:\n  address: 127.0.0.1:0\n";
  y << "threads: " << config_.threads << "\n";
  y << "log: { level: " << config_.log_level
    << ", access: " << (config_.access_log ? "true" : "false") << " }\n";
  y << "routing:\n";
  if (!config_.host_suffix.empty()) y << "  host_suffix: " << config_.host_suffix << "\n";
  y << "  path_prefix: " << (config_.path_prefix ? "true" : "false") << "\n";
  if (!config_.trusted_proxies.empty()) {
    y << "  trusted_proxies: [";
    for (std::size_t i = 0; i < config_.trusted_proxies.size(); ++i)
      y << (i ? ", " : " ") << config_.trusted_proxies[i];
    y << " ]\n";
  }
  if (!config_.limits.empty()) {
    y << "limits:\n";
    for (const auto& [k, v] : config_.limits) y << "  " << k << ": " << v << "\n";
  }
  y << "keys:\n  store: keys.yaml\n  last_used_flush: 10s\n  strip_authorization: "
    << (config_.strip_authorization ? "true" : "false") << "\n";
  if (endpoints_.empty()) {
    y << "endpoints: {}\n";
  } else {
    y << "endpoints:\n";
    for (const auto& ep : endpoints_) {
      y << "  " << ep.id << ":\n    workers: [";
      for (std::size_t i = 0; i < ep.workers.size(); ++i)
        y << (i ? ", " : " ") << quoted(ep.workers[i]);
      y << " ]\n";
      y << "    balance: " << ep.balance << "\n";
      y << "    queue: { max: 1024, timeout: " << ep.queue_timeout << " }\n";
      y << "    health: { path: " << ep.health_path << ", interval: " << ep.health_interval
        << ", timeout: 1s, unhealthy_after: 2, healthy_after: 1 }\n";
      y << "    timeouts: { connect: " << ep.connect << ", first_byte: " << ep.first_byte
        << ", idle: " << ep.idle << " }\n";
      y << "    retries: " << ep.retries << "\n";
    }
  }
  return y.str();
}

std::string ProxyHarness::keys_yaml() const {
  std::ostringstream y;
  if (keys_.empty()) return "keys: []\n";
  y << "keys:\n";
  for (const auto& k : keys_) {
    y << "  - id: " << k.id << "\n";
    y << "    name: " << quoted(k.name) << "\n";
    y << "    hash: " << stored_hash(k.token) << "\n";
    y << "    prefix: " << quoted(k.token.substr(0, 8)) << "\n";
    y << "    enabled: " << (k.enabled ? "true" : "false") << "\n";
    y << "    created_at: 2026-01-01T00:00:00Z\n";
    y << "    last_used_at: null\n";
    y << "    expires_at: " << (k.expires_at.empty() ? "null" : k.expires_at) << "\n";
    if (!k.legacy_access.empty()) {
      y << "    legacy_access: " << k.legacy_access << "\n";
    } else {
      y << "    management: " << k.management << "\n";
      y << "    endpoints:\n";
      for (const auto& [ep, access] : k.endpoints)
        y << "      " << quoted(ep) << ": " << access << "\n";
    }
  }
  return y.str();
}

bool ProxyHarness::start(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  if (dir_.empty()) {
    error_ = "mkdtemp failed";
    return false;
  }
  {
    std::ofstream(config_path()) << config_yaml();
    std::ofstream(keys_path()) << keys_yaml();
  }
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    error_ = "pipe failed";
    return false;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  std::string bin = FRONTDOOR_BINARY;
  std::string cfg = config_path();
  std::string flag = "--config";
  char* argv[] = {bin.data(), flag.data(), cfg.data(), nullptr};
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (rc != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    error_ = "posix_spawn " + bin + ": " + std::strerror(rc);
    return false;
  }
  pid_ = pid;
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  reader_ = std::thread([this, o = out_pipe[0], e = err_pipe[0]] { reader_loop(o, e); });

  // 1. The listening lines: one per proxy listener, one for admin.
  std::string why;
  {
    std::unique_lock lk(mu_);
    cv_.wait_until(lk, deadline, [&] {
      lk.unlock();
      bool done = parse_listening(nullptr);
      lk.lock();
      return done || streams_closed_;
    });
  }
  if (!parse_listening(&why)) {
    error_ = "no listening lines (" + why + "); stderr:\n" + stderr_text();
    return false;
  }
  // 2. /readyz 200. Readiness is a state to observe, not an event we can be
  // told about, so poll it with a short pause between attempts.
  for (;;) {
    auto r =
        do_request(admin_port_, "GET", "/readyz", {{"Host", "127.0.0.1"}}, {}, milliseconds(1000));
    if (r.status == 200) return true;
    if (Clock::now() >= deadline || !running() || wait_exit(milliseconds(0))) {
      error_ = "/readyz never answered 200 (last status " + std::to_string(r.status) +
               "); stderr:\n" + stderr_text();
      return false;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
}

bool ProxyHarness::parse_listening(std::string* why) {
  std::vector<std::uint16_t> proxies;
  std::uint16_t admin = 0;
  std::string text = stderr_text();
  for (auto line : lines_of(text)) {
    auto o = parse_object(line);
    if (!o || str_field(*o, "msg") != "listening") continue;
    std::string addr = str_field(*o, "address");
    auto colon = addr.rfind(':');
    if (colon == std::string::npos) continue;
    int port = std::atoi(addr.c_str() + colon + 1);
    if (port <= 0 || port > 65535) continue;
    std::string which = str_field(*o, "listener");
    if (which == "admin")
      admin = static_cast<std::uint16_t>(port);
    else if (which == "proxy")
      proxies.push_back(static_cast<std::uint16_t>(port));
  }
  if (admin == 0 || proxies.empty()) {
    if (why) *why = admin == 0 ? "no admin listener" : "no proxy listener";
    return false;
  }
  admin_port_ = admin;
  proxy_ports_ = proxies;
  return true;
}

void ProxyHarness::reader_loop(int out_fd, int err_fd) {
  std::ofstream out_file(dir_ + "/stdout.log"), err_file(dir_ + "/stderr.log");
  pollfd p[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  int open_count = 2;
  char buf[65536];
  while (open_count > 0) {
    int rc = ::poll(p, 2, -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (p[i].fd < 0 || !p[i].revents) continue;
      ssize_t n = ::read(p[i].fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(p[i].fd);
        p[i].fd = -1;  // poll ignores negative fds
        --open_count;
        continue;
      }
      std::string_view chunk(buf, static_cast<std::size_t>(n));
      (i == 0 ? out_file : err_file)
          .write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      (i == 0 ? out_file : err_file).flush();
      {
        std::lock_guard lk(mu_);
        (i == 0 ? out_ : err_).append(chunk);
      }
      cv_.notify_all();
    }
  }
  {
    std::lock_guard lk(mu_);
    streams_closed_ = true;
  }
  cv_.notify_all();
}

std::uint16_t ProxyHarness::proxy_port(std::size_t index) const {
  return index < proxy_ports_.size() ? proxy_ports_[index] : 0;
}

HttpResponse ProxyHarness::request(std::string_view method, std::string_view target,
                                   const Headers& headers, std::string_view body,
                                   milliseconds timeout) const {
  return do_request(proxy_port(), method, target, headers, body, timeout);
}

std::string ProxyHarness::stdout_text() const {
  std::lock_guard lk(mu_);
  return out_;
}

std::string ProxyHarness::stderr_text() const {
  std::lock_guard lk(mu_);
  return err_;
}

std::vector<json::object> ProxyHarness::access_log() const {
  std::vector<json::object> out;
  std::string text = stdout_text();
  for (auto line : lines_of(text))
    if (auto o = parse_object(line)) out.push_back(std::move(*o));
  return out;
}

bool ProxyHarness::wait_for_access_log(std::size_t n, milliseconds timeout) const {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, timeout, [&] {
    std::size_t count = 0;
    for (auto line : lines_of(out_))
      if (!line.empty() && line.front() == '{') ++count;
    return count >= n;
  });
}

bool ProxyHarness::wait_for_stderr(std::string_view needle, milliseconds timeout) const {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, timeout, [&] { return err_.find(needle) != std::string::npos; });
}

bool ProxyHarness::send_signal(int sig) const {
  return pid_ > 0 && !exit_status_ && ::kill(pid_, sig) == 0;
}

std::optional<int> ProxyHarness::wait_exit(milliseconds timeout) {
  if (exit_status_) return exit_status_;
  if (pid_ <= 0) return std::nullopt;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_status_;
    }
    if (r < 0 && errno != EINTR) return std::nullopt;
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return std::nullopt;
    if (pidfd_ >= 0) {
      pollfd p{pidfd_, POLLIN, 0};  // readable when the child exits
      ::poll(&p, 1, static_cast<int>(left));
    } else {
      std::this_thread::sleep_for(milliseconds(std::min<long long>(left, 10)));
    }
  }
}

void ProxyHarness::stop_child() {
  if (pid_ <= 0 || exit_status_) return;
  if (send_signal(SIGTERM) && wait_exit(milliseconds(5000))) return;
  ::kill(pid_, SIGKILL);
  wait_exit(milliseconds(5000));
}

}  // namespace frontdoor::test
