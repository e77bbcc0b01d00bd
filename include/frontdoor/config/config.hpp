#pragma once
// The configuration (SPEC §2), parsed and validated whole into an immutable
// value. A running server holds it as shared_ptr<const Config> and swaps it
// atomically on reload; nothing here changes after load_config returns.
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "frontdoor/core/log.hpp"

namespace frontdoor::config {

using Duration = std::chrono::milliseconds;

// Thrown by load_config. what() is one or more lines, each of the form
//   "<file>:<line>: <dotted.field.path>: <problem>"
// e.g. "config.yaml:14: endpoints.ep1.timeouts.connect: expected a duration like \"3s\"".
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct TlsFiles {
  std::string cert;  // absolute path
  std::string key;   // absolute path
};

// "HOST:PORT", IPv4 ("0.0.0.0:8080") or bracketed IPv6 ("[::]:8080"); port 0
// asks the kernel for an ephemeral port.
struct ListenAddress {
  boost::asio::ip::tcp::endpoint endpoint;
  std::string text;  // as written in the config
};

struct Listener {
  ListenAddress address;
  std::optional<TlsFiles> tls;
};

struct Admin {
  ListenAddress address;  // default 127.0.0.1:9901
  std::optional<TlsFiles> tls;
};

enum class LogLevel { debug, info, warn, error };

inline core::log::Level to_log_level(LogLevel l) noexcept {
  switch (l) {
    case LogLevel::debug: return core::log::Level::debug;
    case LogLevel::info: return core::log::Level::info;
    case LogLevel::warn: return core::log::Level::warn;
    case LogLevel::error: return core::log::Level::error;
  }
  return core::log::Level::info;
}

struct Log {
  LogLevel level = LogLevel::info;
  bool access = true;
};

// An address range such as 10.0.0.0/8 or fd00::/8 (a bare address is /32 or /128).
struct Cidr {
  boost::asio::ip::address network;
  unsigned prefix_len = 0;
  bool contains(const boost::asio::ip::address& a) const noexcept;
};

struct Routing {
  std::string host_suffix;               // lower-case; empty = host routing off
  bool path_prefix = true;
  std::vector<Cidr> trusted_proxies;     // default: none
  bool is_trusted(const boost::asio::ip::address& peer) const noexcept;
};

struct Limits {
  std::uint64_t max_header_bytes = 16384;
  std::uint64_t max_uri_bytes = 8192;
  std::uint64_t max_body_bytes = 268435456;
  Duration header_timeout = std::chrono::seconds(10);
  Duration idle_timeout = std::chrono::seconds(75);
  std::uint64_t max_connections = 20000;
  Duration drain_delay = Duration::zero();
  Duration shutdown_grace = std::chrono::seconds(30);
};

struct Keys {
  // An absolute path (relative paths resolve against the config file's
  // folder), or a postgresql:// URI as written (it may hold a password:
  // show it with auth::shown_store).
  std::string store;
  bool postgres = false;
  Duration max_stale{0};           // PostgreSQL: fail closed after this long unreachable; 0 = never
  bool fleet_rate_limits = false;  // rate_limit_scope: fleet (each live replica enforces its share)
  Duration last_used_flush = std::chrono::seconds(10);
  bool strip_authorization = true;
};

enum class Balance { round_robin, least_outstanding, power_of_two };

// One worker address. A worker URL whose host resolves to several addresses
// yields one Worker per address, all with the same url and authority.
struct Worker {
  std::string url;                           // "http://host:port" as written
  std::string authority;                     // "host:port" (IPv6 bracketed), sent as Host
  boost::asio::ip::tcp::endpoint address;    // resolved
};

struct Queue {
  std::uint64_t max = 1024;
  Duration timeout = std::chrono::seconds(30);
};

struct Health {
  std::string path = "/ping";
  Duration interval = std::chrono::seconds(5);
  Duration timeout = std::chrono::seconds(2);
  unsigned unhealthy_after = 2;
  unsigned healthy_after = 1;
};

struct Timeouts {
  Duration connect = std::chrono::seconds(3);
  Duration first_byte = std::chrono::seconds(300);
  Duration idle = std::chrono::seconds(120);
};

struct Pool {
  std::uint64_t max_idle = 64;
  Duration idle_timeout = std::chrono::seconds(4);
};

struct Endpoint {
  std::string id;
  std::vector<Worker> workers;  // at least one
  Balance balance = Balance::round_robin;
  std::uint64_t max_concurrency = 0;  // 0 = unlimited
  Queue queue;
  Health health;
  Timeouts timeouts;
  Pool pool;
  unsigned retries = 1;
};

struct Config {
  std::string path;  // absolute path of the file loaded
  std::vector<Listener> listeners;  // at least one
  Admin admin;
  unsigned threads = 0;             // resolved: never 0 after load (0 in YAML = hardware threads)
  Log log;
  Routing routing;
  Limits limits;
  Keys keys;
  std::vector<Endpoint> endpoints;  // in file order
  // What was accepted but is worth a look ("file:line: field: text"), in
  // file order: --check prints them, start and reload log them.
  std::vector<std::string> warnings;

  // nullptr when no endpoint has that id.
  const Endpoint* find_endpoint(std::string_view id) const noexcept;
};

// Reads, validates and resolves (worker DNS names) the file at `path`.
// Throws ConfigError naming file, line and field for every problem found.
std::shared_ptr<const Config> load_config(const std::string& path);

}  // namespace frontdoor::config
