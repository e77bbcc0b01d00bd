#pragma once
// Runs the real frontdoor binary as a child process against a config and a
// key store written into a fresh temporary directory. Listeners bind port 0;
// the harness learns the ports from the "listening" lines on stderr and
// waits for admin /readyz = 200. stdout (access log) and stderr are captured
// by a reader thread into memory and into files in the temp directory.
//
// Usage:
//   ProxyHarness h;
//   std::string token = h.add_key({.id = "key_a", .endpoints = {{"*", "none"}, {"ep1",
//   "read_write"}}}); h.add_endpoint({.id = "ep1", .workers = {worker.url()}});
//   ASSERT_TRUE(h.start()) << h.error();
//   auto r = h.request("GET", "/ep1/x", {{"Host", "a"}, bearer(token)});
//
// Every wait is bounded. At the end of a test stop_and_check() (called by
// ProxyTest::TearDown, else by the destructor) fails the test when the child
// died on its own (a crash, a sanitizer's abort), exited non-zero after the
// SIGTERM that stops it, or printed a sanitizer report; the directory is then
// removed (kept when FD_KEEP_TMP is set).
//
// The binary is FRONTDOOR_BINARY (this build's), or the one the environment
// variable FD_FRONTDOOR_BINARY names, e.g. a sanitizer build or another commit's.
#include <gtest/gtest.h>

#include <boost/json/object.hpp>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "support/child_process.hpp"
#include "support/http_client.hpp"

namespace frontdoor::test {

struct KeySpec {
  std::string id{};
  std::string token{};  // empty: a fresh valid rpa_ token is made
  std::string name = "test-key";
  // Written in order, e.g. {{"*", "none"}, {"ep1", "read_write"}}; ignored for legacy keys.
  std::vector<std::pair<std::string, std::string>> endpoints = {{"*", "none"}};
  bool enabled = true;
  std::string expires_at{};     // RFC 3339; empty = null
  std::string legacy_access{};  // "read" | "read_write": a legacy key (no endpoints map)
  std::string management = "none";
  // A YAML flow mapping written as the key's rate_limit, e.g.
  // "{ rps: 2, burst: 3, max_concurrent: 0 }"; empty = none.
  std::string rate_limit{};
};

struct EndpointSpec {
  std::string id{};
  std::vector<std::string> workers{};  // "http://127.0.0.1:PORT"
  std::string balance = "round_robin";
  std::string connect = "1s";
  std::string first_byte = "10s";
  std::string idle = "10s";
  std::string queue_timeout = "5s";
  std::string health_path = "/ping";
  std::string health_interval = "1s";
  unsigned retries = 1;
  // Appended after the fields above, so that designated initializers of the
  // older tests stay in declaration order.
  unsigned max_concurrency = 0;  // per worker in flight, 0 = unlimited
  unsigned queue_max = 1024;
  std::string health_timeout = "1s";
  unsigned unhealthy_after = 2;
  unsigned healthy_after = 1;
  unsigned pool_max_idle = 64;
  std::string pool_idle_timeout = "4s";
};

struct HarnessConfig {
  unsigned threads = 2;  // two io threads: cross-thread paths get exercised
  std::string log_level = "info";
  bool access_log = true;
  std::string host_suffix;  // empty: omitted
  bool path_prefix = true;
  std::vector<std::string> trusted_proxies;
  // limits.<name>: <raw value>, e.g. {"header_timeout", "500ms"}.
  std::map<std::string, std::string> limits = {{"header_timeout", "5s"}, {"idle_timeout", "30s"}};
  bool strip_authorization = true;
  // keys.store, relative to the config file. A "*.db" store is SQLite: the
  // test creates it (e.g. `frontdoor keys create|import --store`), start()
  // still writes keys.yaml from add_key() beside it.
  std::string key_store = "keys.yaml";
  std::string last_used_flush = "10s";  // keys.last_used_flush
  // More proxy listeners after the first (127.0.0.1:0), e.g. "127.0.0.1:41234".
  std::vector<std::string> extra_listeners;
  // More lines under `keys:`, e.g. "max_stale: 2s", "rate_limit_scope: fleet".
  std::vector<std::string> keys_extra;
  // start() and restart() wait for /readyz 200; false: only for the
  // listening lines (a store that cannot be reached keeps /readyz at 503).
  bool wait_ready = true;
};

// An "Authorization: Bearer <token>" header.
std::pair<std::string, std::string> bearer(const std::string& token);

class ProxyHarness {
 public:
  ProxyHarness();
  ~ProxyHarness();
  ProxyHarness(const ProxyHarness&) = delete;
  ProxyHarness& operator=(const ProxyHarness&) = delete;

  // --- before start()
  HarnessConfig& config() noexcept { return config_; }
  // Returns the key's token.
  std::string add_key(KeySpec key);
  void add_endpoint(EndpointSpec ep);
  void set_limit(const std::string& name, const std::string& value) {
    config_.limits[name] = value;
  }

  // Writes config + store, spawns the binary, waits for the listening lines
  // and /readyz 200. On failure returns false and error() says why (with the
  // child's stderr).
  bool start(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
  const std::string& error() const noexcept { return error_; }

  // Stops the server (SIGTERM, waits for its exit) and starts the binary
  // again in the same directory on the files as they are now (config and
  // key store are not rewritten): ports are new, captured output starts over.
  bool restart(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

  // --- changing the files of a running server (it sees them at the next
  // reload: SIGHUP, POST /v1/reload or its file watch)
  // Writes `text` to `path` the way an editor that saves atomically would
  // (temporary file, rename).
  static void write_file_atomic(const std::string& path, const std::string& text);
  // Rewrites the config file / the YAML key store (keys_path()) from the
  // current settings, endpoints and keys.
  void write_config() const { write_file_atomic(config_path(), config_yaml()); }
  void write_keys() const { write_file_atomic(keys_path(), keys_yaml()); }
  // Forgets an endpoint / a key added before (true when it was there).
  bool remove_endpoint(const std::string& id);
  bool remove_key(const std::string& id);

  // --- while running
  std::uint16_t proxy_port(std::size_t index = 0) const;
  std::uint16_t admin_port() const noexcept { return admin_port_; }

  // One request on a fresh connection to the proxy listener (1xx skipped).
  HttpResponse request(std::string_view method, std::string_view target, const Headers& headers,
                       std::string_view body = {},
                       std::chrono::milliseconds timeout = kDefaultTimeout) const;

  // One request on a fresh connection to the admin listener.
  HttpResponse admin_request(std::string_view method, std::string_view target,
                             const Headers& headers,
                             std::chrono::milliseconds timeout = kDefaultTimeout) const;

  std::string stdout_text() const;
  std::string stderr_text() const;
  // stderr lines that parse as JSON objects (the server's own log).
  std::vector<boost::json::object> log_lines() const;
  // Waits until at least `n` log lines (JSON objects on stderr) satisfy `match`.
  // The log reaches the harness through a pipe and a reader thread: a line
  // written before a response was sent may still be on its way when the
  // response arrives, so wait for it rather than read the log at once.
  bool wait_for_log(const std::function<bool(const boost::json::object&)>& match, std::size_t n,
                    std::chrono::milliseconds timeout) const;
  // Log lines {"msg":"worker state", "endpoint", "worker", "from", "to", "probe"}
  // for `worker` ("127.0.0.1:PORT"; empty = any worker).
  std::vector<boost::json::object> worker_state_changes(std::string_view worker = {}) const;
  // Waits until `worker` has changed into state `to` at least `n` times.
  bool wait_for_worker_state(std::string_view worker, std::string_view to,
                             std::chrono::milliseconds timeout, std::size_t n = 1) const;
  // stdout lines that parse as JSON objects (the access log).
  std::vector<boost::json::object> access_log() const;
  bool wait_for_access_log(std::size_t lines, std::chrono::milliseconds timeout) const;
  // Waits until at least `n` access-log lines satisfy `match` (or stdout closes).
  bool wait_for_access_log_line(const std::function<bool(const boost::json::object&)>& match,
                                std::size_t n, std::chrono::milliseconds timeout) const;
  bool wait_for_stderr(std::string_view needle, std::chrono::milliseconds timeout) const;

  // A terminating signal (anything but SIGHUP, SIGUSR1, SIGUSR2, 0) tells
  // stop_and_check() that the test stops the server itself.
  bool send_signal(int sig);
  // Exit status (0..255), or 128 + signal number; nullopt on timeout. An exit
  // seen here is the test's to check (stop_and_check() then only rejects a
  // death by a signal the test did not send, and sanitizer reports).
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  bool running() { return child_.running(); }
  pid_t pid() const noexcept { return child_.pid(); }
  // A memory figure of the server from /proc/<pid>/status, in KiB: "VmRSS"
  // (resident now) or "VmHWM" (the peak resident size so far, which a burst
  // freed since cannot hide); -1 when it cannot be read (not running).
  long memory_kib(std::string_view field = "VmRSS") const;

  // --- end of a test
  // Fails when the server is no longer running although the test did not
  // stop it (crash, abort), or died by a signal the test did not send; else
  // stops it (SIGTERM) and fails unless it exits 0 within `grace` (a server
  // still busy then, e.g. with a stream and a long shutdown_grace, is killed
  // without failing). Fails too when stderr holds a sanitizer report. Checks
  // once; later calls succeed.
  ::testing::AssertionResult stop_and_check(
      std::chrono::milliseconds grace = std::chrono::milliseconds(5000));

  const std::string& dir() const noexcept { return dir_; }
  std::string config_path() const { return dir_ + "/frontdoor.yaml"; }
  std::string keys_path() const { return dir_ + "/keys.yaml"; }
  // The configured key store (keys.store): keys_path() unless key_store was changed.
  std::string store_path() const { return dir_ + "/" + config_.key_store; }
  std::string config_yaml() const;
  std::string keys_yaml() const;

 private:
  bool parse_listening(const std::string& stderr_text, std::string* why);
  bool launch(Clock::time_point deadline);

  HarnessConfig config_;
  std::vector<KeySpec> keys_;
  std::vector<EndpointSpec> endpoints_;
  std::string dir_;
  std::string error_;

  ChildProcess child_;
  bool stop_expected_ = false;  // the test sent a terminating signal or saw the exit
  std::vector<int> signals_sent_;
  bool checked_ = false;  // stop_and_check() ran for this child
  std::vector<std::uint16_t> proxy_ports_;
  std::uint16_t admin_port_ = 0;
};

}  // namespace frontdoor::test
