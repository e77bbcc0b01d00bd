#include "support/proxy_harness.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "support/tokens.hpp"

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
  if (auto r = stop_and_check(); !r) ADD_FAILURE() << r.message();
  child_.stop();
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
  for (const auto& l : config_.extra_listeners) y << "  - address: " << l << "\n";
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
  y << "keys:\n  store: " << config_.key_store
    << "\n  last_used_flush: " << config_.last_used_flush << "\n  strip_authorization: "
    << (config_.strip_authorization ? "true" : "false") << "\n";
  for (const auto& line : config_.keys_extra) y << "  " << line << "\n";
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
      y << "    max_concurrency: " << ep.max_concurrency << "\n";
      y << "    queue: { max: " << ep.queue_max << ", timeout: " << ep.queue_timeout << " }\n";
      y << "    health: { path: " << ep.health_path << ", interval: " << ep.health_interval
        << ", timeout: " << ep.health_timeout << ", unhealthy_after: " << ep.unhealthy_after
        << ", healthy_after: " << ep.healthy_after << " }\n";
      y << "    timeouts: { connect: " << ep.connect << ", first_byte: " << ep.first_byte
        << ", idle: " << ep.idle << " }\n";
      y << "    pool: { max_idle: " << ep.pool_max_idle
        << ", idle_timeout: " << ep.pool_idle_timeout << " }\n";
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
    if (!k.rate_limit.empty()) y << "    rate_limit: " << k.rate_limit << "\n";
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
  return launch(deadline);
}

bool ProxyHarness::restart(milliseconds timeout) {
  if (auto r = stop_and_check(); !r) ADD_FAILURE() << "before restart: " << r.message();
  const auto deadline = Clock::now() + timeout;
  child_.reset();
  stop_expected_ = checked_ = false;
  signals_sent_.clear();
  proxy_ports_.clear();
  admin_port_ = 0;
  return launch(deadline);
}

void ProxyHarness::write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".edit";
  std::ofstream(tmp) << text;
  std::filesystem::rename(tmp, path);
}

bool ProxyHarness::remove_endpoint(const std::string& id) {
  return std::erase_if(endpoints_, [&](const EndpointSpec& e) { return e.id == id; }) > 0;
}

bool ProxyHarness::remove_key(const std::string& id) {
  return std::erase_if(keys_, [&](const KeySpec& k) { return k.id == id; }) > 0;
}

bool ProxyHarness::launch(Clock::time_point deadline) {
  const char* binary = std::getenv("FD_FRONTDOOR_BINARY");
  if (!binary || !*binary) binary = FRONTDOOR_BINARY;
  if (!child_.spawn({binary, "--config", config_path()}, dir_)) {
    error_ = child_.error();
    return false;
  }

  // 1. The listening lines: one per proxy listener, one for admin.
  std::string why;
  child_.wait_output(
      [&](const std::string&, const std::string& err) {
        return err.find("\"listening\"") != std::string::npos && parse_listening(err, nullptr);
      },
      std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
  if (!parse_listening(stderr_text(), &why)) {
    error_ = "no listening lines (" + why + "); stderr:\n" + stderr_text();
    if (!running()) stop_expected_ = true;  // start() says so: the test judges it
    return false;
  }
  if (!config_.wait_ready) return true;
  // 2. /readyz 200. Readiness is a state to observe, not an event we can be
  // told about, so poll it with a short pause between attempts.
  for (;;) {
    auto r =
        do_request(admin_port_, "GET", "/readyz", {{"Host", "127.0.0.1"}}, {}, milliseconds(1000));
    if (r.status == 200) return true;
    if (Clock::now() >= deadline || !running()) {
      error_ = "/readyz never answered 200 (last status " + std::to_string(r.status) +
               "); stderr:\n" + stderr_text();
      if (!running()) stop_expected_ = true;
      return false;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
}

bool ProxyHarness::parse_listening(const std::string& text, std::string* why) {
  std::vector<std::uint16_t> proxies;
  std::uint16_t admin = 0;
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

std::uint16_t ProxyHarness::proxy_port(std::size_t index) const {
  return index < proxy_ports_.size() ? proxy_ports_[index] : 0;
}

HttpResponse ProxyHarness::request(std::string_view method, std::string_view target,
                                   const Headers& headers, std::string_view body,
                                   milliseconds timeout) const {
  return do_request(proxy_port(), method, target, headers, body, timeout);
}

HttpResponse ProxyHarness::admin_request(std::string_view method, std::string_view target,
                                         const Headers& headers, milliseconds timeout) const {
  return do_request(admin_port_, method, target, headers, {}, timeout);
}

std::string ProxyHarness::stdout_text() const { return child_.stdout_text(); }

bool ProxyHarness::send_signal(int sig) {
  if (sig != 0 && sig != SIGHUP && sig != SIGUSR1 && sig != SIGUSR2) {
    stop_expected_ = true;
    signals_sent_.push_back(sig);
  }
  return child_.send_signal(sig);
}

std::optional<int> ProxyHarness::wait_exit(milliseconds timeout) {
  auto status = child_.wait_exit(timeout);
  if (status) stop_expected_ = true;
  return status;
}

long ProxyHarness::memory_kib(std::string_view field) const {
  if (child_.pid() <= 0) return -1;
  std::ifstream in("/proc/" + std::to_string(child_.pid()) + "/status");
  const std::string prefix = std::string(field) + ":";
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(prefix, 0) == 0) return std::atol(line.c_str() + prefix.size());
  return -1;
}

namespace {

std::string describe_status(int status) {
  if (status < 128) return "exit status " + std::to_string(status);
  const char* name = ::sigdescr_np(status - 128);
  return "killed by signal " + std::to_string(status - 128) + " (" + (name ? name : "?") + ")";
}

// The lines of a sanitizer report (ASan, LSan, UBSan, TSan) in `err`, if any.
std::string sanitizer_report(const std::string& err) {
  static const char* const kMarkers[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                         "WARNING: ThreadSanitizer", ": runtime error: ",
                                         "SUMMARY: UndefinedBehaviorSanitizer"};
  std::size_t first = std::string::npos;
  for (const char* m : kMarkers) first = std::min(first, err.find(m));
  if (first == std::string::npos) return {};
  auto begin = err.rfind('\n', first);
  begin = begin == std::string::npos ? 0 : begin + 1;
  return err.substr(begin, 6000);
}

}  // namespace

::testing::AssertionResult ProxyHarness::stop_and_check(milliseconds grace) {
  if (checked_ || child_.pid() <= 0) return ::testing::AssertionSuccess();
  checked_ = true;
  std::string problems;
  auto crashed = [&](int status) {
    return status > 128 &&
           std::find(signals_sent_.begin(), signals_sent_.end(), status - 128) == signals_sent_.end();
  };
  auto status = child_.wait_exit(milliseconds(0));
  if (status) {
    if (!stop_expected_)
      problems += "frontdoor died during the test (" + describe_status(*status) +
                  "), which did not stop it\n";
    else if (crashed(*status))
      problems += "frontdoor was " + describe_status(*status) + "\n";
  } else if (stop_expected_) {
    // The test stopped it and judges the exit; a crash on the way out still fails.
    status = child_.wait_exit(grace);
    if (status && crashed(*status)) problems += "frontdoor was " + describe_status(*status) + "\n";
  } else {
    child_.send_signal(SIGTERM);
    signals_sent_.push_back(SIGTERM);
    status = child_.wait_exit(grace);
    if (status && *status != 0)
      problems += "after SIGTERM at the end of the test, frontdoor ended with " +
                  describe_status(*status) + " (want exit status 0)\n";
  }
  if (!status) {
    // Still busy (a stream under a long shutdown_grace): not a failure.
    child_.stop(milliseconds(0));
  }
  child_.wait_streams_closed(milliseconds(2000));
  const std::string err = child_.stderr_text();
  if (auto report = sanitizer_report(err); !report.empty())
    problems += "sanitizer report on frontdoor's stderr:\n" + report + "\n";
  if (problems.empty()) return ::testing::AssertionSuccess();
  std::string tail = err.size() > 3000 ? "..." + err.substr(err.size() - 3000) : err;
  return ::testing::AssertionFailure() << problems << "--- frontdoor stderr (" << dir_ << "):\n"
                                       << tail;
}

std::vector<json::object> ProxyHarness::log_lines() const {
  std::vector<json::object> out;
  std::string text = stderr_text();
  for (auto line : lines_of(text))
    if (auto o = parse_object(line)) out.push_back(std::move(*o));
  return out;
}

namespace {

bool is_state_change(const json::object& o, std::string_view worker) {
  return str_field(o, "msg") == "worker state" &&
         (worker.empty() || str_field(o, "worker") == worker);
}

}  // namespace

std::vector<json::object> ProxyHarness::worker_state_changes(std::string_view worker) const {
  std::vector<json::object> out;
  for (auto& o : log_lines())
    if (is_state_change(o, worker)) out.push_back(std::move(o));
  return out;
}

bool ProxyHarness::wait_for_log(const std::function<bool(const json::object&)>& match,
                                std::size_t n, milliseconds timeout) const {
  return child_.wait_output(
      [&](const std::string&, const std::string& err) {
        std::size_t count = 0;
        for (auto line : lines_of(err))
          if (auto o = parse_object(line); o && match(*o)) ++count;
        return count >= n;
      },
      timeout);
}

bool ProxyHarness::wait_for_worker_state(std::string_view worker, std::string_view to,
                                         milliseconds timeout, std::size_t n) const {
  return child_.wait_output(
      [&](const std::string&, const std::string& err) {
        std::size_t count = 0;
        for (auto line : lines_of(err)) {
          if (line.find("worker state") == std::string_view::npos) continue;
          auto o = parse_object(line);
          if (o && is_state_change(*o, worker) && str_field(*o, "to") == to) ++count;
        }
        return count >= n;
      },
      timeout);
}

std::string ProxyHarness::stderr_text() const { return child_.stderr_text(); }

std::vector<json::object> ProxyHarness::access_log() const {
  std::vector<json::object> out;
  std::string text = stdout_text();
  for (auto line : lines_of(text))
    if (auto o = parse_object(line)) out.push_back(std::move(*o));
  return out;
}

bool ProxyHarness::wait_for_access_log(std::size_t n, milliseconds timeout) const {
  return child_.wait_output(
      [&](const std::string& out, const std::string&) {
        std::size_t count = 0;
        for (auto line : lines_of(out))
          if (!line.empty() && line.front() == '{') ++count;
        return count >= n;
      },
      timeout);
}

bool ProxyHarness::wait_for_access_log_line(const std::function<bool(const json::object&)>& match,
                                            std::size_t n, milliseconds timeout) const {
  return child_.wait_output(
      [&](const std::string& out, const std::string&) {
        std::size_t count = 0;
        for (auto line : lines_of(out))
          if (auto o = parse_object(line); o && match(*o)) ++count;
        return count >= n;
      },
      timeout);
}

bool ProxyHarness::wait_for_stderr(std::string_view needle, milliseconds timeout) const {
  return child_.wait_for_stderr(needle, timeout);
}

}  // namespace frontdoor::test
