#include "frontdoor/config/config.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/url/parse.hpp>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <sstream>
#include <system_error>
#include <thread>
#include <utility>

#include "config/yaml_reader.hpp"

namespace frontdoor::config {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using asio::ip::tcp;
using detail::Item;
using detail::MapReader;
using detail::Problems;
using detail::ZeroDuration;

constexpr std::uint64_t kNoMax = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint64_t kMax32 = std::numeric_limits<std::uint32_t>::max();
constexpr std::string_view kListenExample =
    R"(expected an address like "0.0.0.0:8080" or "[::]:8080")";
constexpr std::string_view kWorkerExample = R"(expected a URL like "http://127.0.0.1:5000")";
constexpr std::string_view kCidrExample =
    R"(expected an address range like "10.0.0.0/8" or "fd00::/8")";

bool is_digits(std::string_view s) noexcept {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A TCP port in decimal, 0..65535, without sign or leading junk.
std::optional<unsigned short> parse_port(std::string_view s) noexcept {
  if (!is_digits(s) || s.size() > 5) return std::nullopt;
  unsigned v = 0;
  for (char c : s) v = v * 10 + static_cast<unsigned>(c - '0');
  if (v > 65535) return std::nullopt;
  return static_cast<unsigned short>(v);
}

// "HOST:PORT" where HOST is an IPv4 literal, a bracketed IPv6 literal or
// "localhost". Listeners never take other DNS names: a name resolved once at
// start would bind an address nobody reviewed, and could change on reload.
std::optional<tcp::endpoint> parse_listen_address(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const std::string host(text.substr(0, colon));
  const auto port = parse_port(text.substr(colon + 1));
  if (!port || host.empty()) return std::nullopt;
  boost::system::error_code ec;
  asio::ip::address addr;
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return std::nullopt;
    addr = asio::ip::make_address_v6(host.substr(1, host.size() - 2), ec);
  } else if (host == "localhost") {
    addr = asio::ip::address_v4::loopback();
  } else {
    addr = asio::ip::make_address_v4(host, ec);
  }
  if (ec) return std::nullopt;
  return tcp::endpoint(addr, *port);
}

// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is how a dual-stack socket
// reports an IPv4 peer; it must compare as the IPv4 address it carries.
asio::ip::address unmap(const asio::ip::address& a) noexcept {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  }
  return a;
}

template <std::size_t N>
bool same_prefix(const std::array<unsigned char, N>& a, const std::array<unsigned char, N>& b,
                 unsigned bits) noexcept {
  bits = std::min<unsigned>(bits, N * 8);
  const unsigned whole = bits / 8;
  for (unsigned i = 0; i < whole; ++i) {
    if (a[i] != b[i]) return false;
  }
  const unsigned rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<unsigned char>(0xFFu << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

template <std::size_t N>
void clear_host_bits(std::array<unsigned char, N>& a, unsigned bits) noexcept {
  for (std::size_t i = 0; i < N; ++i) {
    const unsigned from = static_cast<unsigned>(i) * 8;
    if (from >= bits) {
      a[i] = 0;
    } else if (bits - from < 8) {
      a[i] &= static_cast<unsigned char>(0xFFu << (8 - (bits - from)));
    }
  }
}

// Parses "10.0.0.0/8", "fd00::/8" or a bare address. On failure returns
// nullopt and sets `problem`.
std::optional<Cidr> parse_cidr(std::string_view text, std::string& problem) {
  problem = std::string(kCidrExample);
  const auto slash = text.find('/');
  const std::string addr_text(text.substr(0, slash));
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(addr_text, ec);
  if (ec) return std::nullopt;
  const unsigned full = addr.is_v4() ? 32 : 128;
  unsigned prefix = full;
  if (slash != std::string_view::npos) {
    const std::string_view p = text.substr(slash + 1);
    if (!is_digits(p) || p.size() > 3) return std::nullopt;
    prefix = static_cast<unsigned>(std::stoul(std::string(p)));
    if (prefix > full) return std::nullopt;
  }
  // "10.1.2.3/8" is most likely a typo for a single host or for 10.0.0.0/8;
  // trusting a range nobody meant is worse than asking.
  std::string masked;
  if (addr.is_v4()) {
    auto bytes = addr.to_v4().to_bytes();
    clear_host_bits(bytes, prefix);
    if (bytes != addr.to_v4().to_bytes()) masked = asio::ip::address_v4(bytes).to_string();
  } else {
    auto bytes = addr.to_v6().to_bytes();
    clear_host_bits(bytes, prefix);
    if (bytes != addr.to_v6().to_bytes()) masked = asio::ip::address_v6(bytes).to_string();
  }
  if (!masked.empty()) {
    problem = "host bits are set, did you mean \"" + masked + "/" + std::to_string(prefix) + "\"?";
    return std::nullopt;
  }
  // Stored in IPv4 form when it is an IPv4-mapped range, so that it matches
  // both plain IPv4 peers and mapped ones.
  if (addr.is_v6() && addr.to_v6().is_v4_mapped() && prefix >= 96) {
    return Cidr{unmap(addr), prefix - 96};
  }
  return Cidr{addr, prefix};
}

// A worker URL split into what resolution and the proxy need.
struct WorkerUrl {
  std::string authority;  // "host:port" as written, sent as Host
  std::string host;       // name or literal without brackets, for the resolver
  unsigned short port = 80;
  std::optional<asio::ip::address> literal;  // set when the host is an IP literal
  std::string identity;  // lower-cased host and port, to spot the same worker written twice
};

// Parses "http://HOST[:PORT][/]". On failure returns nullopt and sets `problem`.
std::optional<WorkerUrl> parse_worker_url(std::string_view text, std::string& problem) {
  problem = std::string(kWorkerExample);
  // Only "scheme://..." reaches Boost.URL: 1.81 asserts (path_segments,
  // nseg == 0) on "http:" followed by '?', '#', a space or a non-ASCII
  // byte (found by fuzz_config_loader), and a worker URL always has "//".
  const auto colon = text.find(':');
  if (colon == 0 || colon == std::string_view::npos || text.substr(colon, 3) != "://") return std::nullopt;
  auto parsed = boost::urls::parse_absolute_uri(text);
  if (!parsed) return std::nullopt;
  const boost::urls::url_view& u = *parsed;
  std::string scheme(u.scheme());
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (scheme == "https") {
    problem = "https workers are not supported yet";
    return std::nullopt;
  }
  if (scheme != "http" || !u.has_authority()) return std::nullopt;
  WorkerUrl w;
  if (u.has_port()) {
    const auto port = parse_port(u.port());
    if (!port || *port == 0) {
      problem = "a worker port must be from 1 to 65535";
      return std::nullopt;
    }
    w.port = *port;
  }
  switch (u.host_type()) {
    case boost::urls::host_type::ipv4:
      w.literal = asio::ip::address_v4(u.host_ipv4_address().to_bytes());
      break;
    case boost::urls::host_type::ipv6:
      w.literal = asio::ip::address_v6(u.host_ipv6_address().to_bytes());
      break;
    case boost::urls::host_type::name: {
      // Percent-escapes and other oddities are legal in a URI reg-name but
      // never in a DNS name; refuse them rather than resolve something surprising.
      const std::string_view name = u.encoded_host();
      const bool ok = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
      });
      if (!ok) return std::nullopt;
      break;
    }
    default:
      return std::nullopt;
  }
  if (u.has_userinfo()) {
    problem = "a worker URL takes no user info";
    return std::nullopt;
  }
  if (!u.encoded_path().empty() && u.encoded_path() != "/") {
    problem = "a worker URL takes no path";
    return std::nullopt;
  }
  if (u.has_query()) {
    problem = "a worker URL takes no query";
    return std::nullopt;
  }

  w.authority = std::string(u.encoded_host_and_port());
  w.host = w.literal ? w.literal->to_string() : std::string(u.encoded_host());
  w.identity = w.literal ? w.literal->to_string() : w.host;
  std::transform(w.identity.begin(), w.identity.end(), w.identity.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  w.identity += ":" + std::to_string(w.port);
  return w;
}

// Lower-case only: an id is also the first label of a host name, which
// routing compares case-insensitively (it lowers the Host); "MyEp" would be
// reachable by path and never by host.
bool is_endpoint_id(std::string_view id) noexcept {
  return !id.empty() && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

bool is_host_suffix(std::string_view s) noexcept {
  if (s.size() < 2 || s.front() != '.' || s.back() == '.' || s.find("..") != s.npos) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
  });
}

// Visible ASCII only: the path goes verbatim into a request line.
bool is_request_path(std::string_view s) noexcept {
  return !s.empty() && s.front() == '/' &&
         std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// Validates one file into a Config. Every check records its problem and
// carries on, so that one run reports everything wrong with the file.
class Loader {
 public:
  Loader(Problems& problems, Problems& warnings, fs::path dir)
      : problems_(problems), warnings_(warnings), dir_(std::move(dir)) {}

  void load(const Item& root, Config& cfg) {
    MapReader top(
        problems_, root,
        {"listeners", "admin", "threads", "log", "routing", "limits", "keys", "endpoints"});
    if (!top.is_mapping()) return;

    if (const Item* it = top.find("listeners")) {
      load_listeners(*it, cfg);
    } else {
      problems_.add(root.line, "listeners", "missing (at least one listener is required)");
    }
    load_admin(top.find("admin"), cfg);
    check_duplicate_addresses();

    top.read("threads", cfg.threads, 0, 4096);
    if (cfg.threads == 0) cfg.threads = std::max(1u, std::thread::hardware_concurrency());

    if (const Item* it = top.find("log")) load_log(*it, cfg.log);
    if (const Item* it = top.find("routing")) load_routing(*it, cfg.routing);
    if (const Item* it = top.find("limits")) load_limits(*it, cfg.limits);
    load_keys(top.find("keys"), cfg.keys);
    if (const Item* it = top.find("endpoints")) load_endpoints(*it, cfg.endpoints);
  }

 private:
  struct Bound {
    tcp::endpoint endpoint;
    std::string path;
    int line;  // 0 for the default admin address, which the file does not show
  };

  std::optional<ListenAddress> read_listen_address(const Item& item) {
    auto text = detail::read_string(problems_, item);
    if (!text) return std::nullopt;
    auto endpoint = parse_listen_address(*text);
    if (!endpoint) {
      problems_.add(item.line, item.path, kListenExample);
      return std::nullopt;
    }
    bound_.push_back(Bound{*endpoint, item.path, item.line});
    return ListenAddress{*endpoint, *text};
  }

  // A listener's `tls`: both files must exist and hold a certificate chain
  // and its private key, so that --check and a reload catch a bad pair
  // before a listener would serve with it.
  std::optional<TlsFiles> read_tls(const Item& item) {
    MapReader tls(problems_, item, {"cert", "key"});
    if (!tls.is_mapping()) return std::nullopt;
    TlsFiles files;
    bool ok = true;
    for (const char* name : {"cert", "key"}) {
      const Item* f = tls.find(name);
      std::string value;
      if (f == nullptr) {
        problems_.add(item.key_line, item.path + "." + name, "missing");
        ok = false;
        continue;
      }
      auto s = detail::read_string(problems_, *f);
      if (!s || s->empty()) {
        if (s) problems_.add(f->line, f->path, "expected a file name");
        ok = false;
        continue;
      }
      value = (dir_ / fs::path(*s)).lexically_normal().string();
      (std::string_view(name) == "cert" ? files.cert : files.key) = value;
    }
    if (!ok) return std::nullopt;
    if (auto why = check_tls_pair(files); !why.empty()) {
      problems_.add(item.key_line, item.path, why);
      return std::nullopt;
    }
    return files;
  }

  // "" when cert and key load and match, else why not.
  static std::string check_tls_pair(const TlsFiles& f) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) return "cannot create a TLS context";
    std::string why;
    auto ssl_error = [] {
      char buf[256];
      ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
      ERR_clear_error();
      return std::string(buf);
    };
    if (SSL_CTX_use_certificate_chain_file(ctx, f.cert.c_str()) != 1)
      why = "cannot load the certificate chain " + f.cert + ": " + ssl_error();
    else if (SSL_CTX_use_PrivateKey_file(ctx, f.key.c_str(), SSL_FILETYPE_PEM) != 1)
      why = "cannot load the private key " + f.key + ": " + ssl_error();
    else if (SSL_CTX_check_private_key(ctx) != 1)
      why = "the private key does not match the certificate";
    SSL_CTX_free(ctx);
    return why;
  }

  void load_listeners(const Item& item, Config& cfg) {
    auto elements = detail::read_sequence(problems_, item);
    if (!elements) return;
    if (elements->empty()) {
      problems_.add(item.line, item.path, "expected at least one listener");
      return;
    }
    for (const Item& element : *elements) {
      MapReader m(problems_, element, {"address", "tls"});
      if (!m.is_mapping()) continue;
      Listener listener;
      if (const Item* a = m.find("address")) {
        if (auto addr = read_listen_address(*a)) listener.address = std::move(*addr);
      } else {
        problems_.add(element.key_line, element.path + ".address", "missing");
      }
      if (const Item* t = m.find("tls")) listener.tls = read_tls(*t);
      cfg.listeners.push_back(std::move(listener));
    }
  }

  void load_admin(const Item* item, Config& cfg) {
    const std::string kDefault = "127.0.0.1:9901";
    cfg.admin.address = ListenAddress{*parse_listen_address(kDefault), kDefault};
    const Item* address = nullptr;
    if (item != nullptr) {
      MapReader m(problems_, *item, {"address", "tls"});
      address = m.find("address");
      if (address != nullptr) {
        if (auto a = read_listen_address(*address)) cfg.admin.address = std::move(*a);
      }
      if (const Item* t = m.find("tls")) cfg.admin.tls = read_tls(*t);
    }
    if (address == nullptr) {
      bound_.push_back(Bound{cfg.admin.address.endpoint, "admin.address", 0});
    }
  }

  // Two sockets on one address would both bind with SO_REUSEPORT and split
  // the traffic between two roles; port 0 is exempt (each gets its own port).
  void check_duplicate_addresses() {
    for (std::size_t i = 0; i < bound_.size(); ++i) {
      for (std::size_t j = 0; j < i; ++j) {
        const Bound& a = bound_[j];
        const Bound& b = bound_[i];
        if (b.endpoint.port() == 0 || a.endpoint != b.endpoint) continue;
        const Bound& later = b.line != 0 ? b : a;
        const Bound& other = b.line != 0 ? a : b;
        problems_.add(later.line, later.path,
                      "duplicate listen address, already used by " + other.path +
                          (other.line == 0 ? " (default)" : ""));
        break;
      }
    }
  }

  void load_log(const Item& item, Log& log) {
    MapReader m(problems_, item, {"level", "access"});
    if (const Item* level = m.find("level")) {
      const std::string s = level->node.IsScalar() ? level->node.Scalar() : "";
      if (s == "debug") {
        log.level = LogLevel::debug;
      } else if (s == "info") {
        log.level = LogLevel::info;
      } else if (s == "warn") {
        log.level = LogLevel::warn;
      } else if (s == "error") {
        log.level = LogLevel::error;
      } else {
        problems_.add(level->line, level->path, "expected one of debug, info, warn, error");
      }
    }
    m.read("access", log.access);
  }

  void load_routing(const Item& item, Routing& routing) {
    MapReader m(problems_, item, {"host_suffix", "path_prefix", "trusted_proxies"});
    if (const Item* it = m.find("host_suffix")) {
      if (auto s = detail::read_string(problems_, *it)) {
        // Host names compare case-insensitively (RFC 9110 §4.2.3); storing
        // the suffix lower-case lets routing compare against a lowered Host.
        std::transform(s->begin(), s->end(), s->begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        if (s->empty() || is_host_suffix(*s)) {
          routing.host_suffix = std::move(*s);
        } else {
          problems_.add(it->line, it->path,
                        R"(expected a domain suffix starting with "." like ".api.example.com")");
        }
      }
    }
    m.read("path_prefix", routing.path_prefix);
    if (!routing.path_prefix && routing.host_suffix.empty()) {
      const Item* p = m.find("path_prefix");
      problems_.add(p ? p->line : item.key_line, p ? p->path : item.path + ".path_prefix",
                    "false with no host_suffix leaves no way to address an endpoint");
    }
    if (const Item* it = m.find("trusted_proxies")) {
      if (auto elements = detail::read_sequence(problems_, *it)) {
        for (const Item& element : *elements) {
          auto text = detail::read_string(problems_, element);
          if (!text) continue;
          std::string problem;
          if (auto cidr = parse_cidr(*text, problem)) {
            routing.trusted_proxies.push_back(*cidr);
          } else {
            problems_.add(element.line, element.path, problem);
          }
        }
      }
    }
  }

  void load_limits(const Item& item, Limits& limits) {
    MapReader m(problems_, item,
                {"max_header_bytes", "max_uri_bytes", "max_body_bytes", "header_timeout",
                 "idle_timeout", "max_connections", "drain_delay", "shutdown_grace"});
    // Beast's parser limits are 32-bit for the head, 64-bit for the body.
    m.read("max_header_bytes", limits.max_header_bytes, 1, kMax32);
    m.read("max_uri_bytes", limits.max_uri_bytes, 1, kMax32);
    m.read("max_body_bytes", limits.max_body_bytes, 0, kNoMax);
    m.read("header_timeout", limits.header_timeout, ZeroDuration::refused);
    m.read("idle_timeout", limits.idle_timeout, ZeroDuration::refused);
    m.read("max_connections", limits.max_connections, 1, kNoMax);
    m.read("drain_delay", limits.drain_delay, ZeroDuration::allowed);
    m.read("shutdown_grace", limits.shutdown_grace, ZeroDuration::allowed);
    // A request line longer than the whole head is cut by the head limit
    // first: 431, never the 414 max_uri_bytes asks for. Written that way it
    // is a mistake; left at its default, the URI limit follows the head's.
    if (limits.max_uri_bytes > limits.max_header_bytes) {
      if (const Item* u = m.find("max_uri_bytes")) {
        problems_.add(u->line, u->path,
                      "larger than limits.max_header_bytes (" + std::to_string(limits.max_header_bytes) +
                          "): a URI that long is refused by the head limit first (431, never 414)");
      } else {
        limits.max_uri_bytes = limits.max_header_bytes;
      }
    }
  }

  void load_keys(const Item* item, Keys& keys) {
    std::string store = "keys.yaml";
    if (item != nullptr) {
      MapReader m(problems_, *item,
                  {"store", "max_stale", "rate_limit_scope", "last_used_flush", "strip_authorization"});
      if (const Item* it = m.find("store")) {
        if (auto s = detail::read_string(problems_, *it)) {
          if (s->empty()) {
            problems_.add(it->line, it->path, "expected a file name or a postgresql:// URI");
          } else {
            store = std::move(*s);
          }
        }
      }
      m.read("max_stale", keys.max_stale, ZeroDuration::allowed);
      const bool postgres = store.starts_with("postgresql://") || store.starts_with("postgres://");
      // Settings of a fleet on a file store would be silently meaningless.
      if (const Item* it = m.find("max_stale"); it && !postgres)
        problems_.add(it->line, it->path, "only a PostgreSQL key store (postgresql://) can be stale");
      if (const Item* it = m.find("rate_limit_scope")) {
        if (auto s = detail::read_string(problems_, *it)) {
          if (*s == "replica") {
            keys.fleet_rate_limits = false;
          } else if (*s == "fleet" && !postgres) {
            problems_.add(it->line, it->path, "fleet needs a PostgreSQL key store (postgresql://)");
          } else if (*s == "fleet") {
            keys.fleet_rate_limits = true;
          } else {
            problems_.add(it->line, it->path, "expected replica or fleet");
          }
        }
      }
      m.read("last_used_flush", keys.last_used_flush, ZeroDuration::refused);
      m.read("strip_authorization", keys.strip_authorization);
    }
    keys.postgres = store.starts_with("postgresql://") || store.starts_with("postgres://");
    if (!keys.postgres) {
      // The format (YAML or SQLite by ".db") is the key store's decision; here
      // the name only becomes absolute, so a later chdir cannot change it.
      keys.store = (dir_ / fs::path(store)).lexically_normal().string();
    } else {
      keys.store = std::move(store);
    }
  }

  void load_endpoints(const Item& item, std::vector<Endpoint>& endpoints) {
    MapReader m(problems_, item, MapReader::AnyKey{"endpoint"});
    for (const auto& [id, body] : m.fields()) {
      if (!is_endpoint_id(id)) {
        problems_.add(body.key_line, body.path,
                      R"(an endpoint id may only contain lower-case letters, digits, "_" and "-")");
      }
      Endpoint ep;
      ep.id = id;
      load_endpoint(body, ep);
      endpoints.push_back(std::move(ep));
    }
  }

  void load_endpoint(const Item& item, Endpoint& ep) {
    MapReader m(problems_, item,
                {"workers", "balance", "max_concurrency", "queue", "health", "timeouts", "pool",
                 "retries"});
    if (!m.is_mapping()) return;
    if (const Item* it = m.find("workers")) {
      load_workers(*it, ep.workers);
    } else {
      problems_.add(item.key_line, item.path + ".workers", "missing");
    }
    if (const Item* it = m.find("balance")) {
      const std::string s = it->node.IsScalar() ? it->node.Scalar() : "";
      if (s == "round_robin") {
        ep.balance = Balance::round_robin;
      } else if (s == "least_outstanding") {
        ep.balance = Balance::least_outstanding;
      } else if (s == "power_of_two") {
        ep.balance = Balance::power_of_two;
      } else {
        problems_.add(it->line, it->path,
                      "expected one of round_robin, least_outstanding, power_of_two");
      }
    }
    m.read("max_concurrency", ep.max_concurrency, 0, kNoMax);
    if (const Item* it = m.find("queue")) {
      MapReader q(problems_, *it, {"max", "timeout"});
      q.read("max", ep.queue.max, 0, kNoMax);
      q.read("timeout", ep.queue.timeout, ZeroDuration::refused);
    }
    if (const Item* it = m.find("health")) {
      MapReader h(problems_, *it,
                  {"path", "interval", "timeout", "unhealthy_after", "healthy_after"});
      if (const Item* p = h.find("path")) {
        if (auto s = detail::read_string(problems_, *p)) {
          if (is_request_path(*s)) {
            ep.health.path = std::move(*s);
          } else {
            problems_.add(p->line, p->path, R"(expected a path starting with "/" like "/ping")");
          }
        }
      }
      h.read("interval", ep.health.interval, ZeroDuration::refused);
      h.read("timeout", ep.health.timeout, ZeroDuration::refused);
      h.read("unhealthy_after", ep.health.unhealthy_after, 1, 1000);
      h.read("healthy_after", ep.health.healthy_after, 1, 1000);
    }
    if (const Item* it = m.find("timeouts")) {
      MapReader t(problems_, *it, {"connect", "first_byte", "idle"});
      t.read("connect", ep.timeouts.connect, ZeroDuration::refused);
      t.read("first_byte", ep.timeouts.first_byte, ZeroDuration::refused);
      t.read("idle", ep.timeouts.idle, ZeroDuration::refused);
    }
    if (const Item* it = m.find("pool")) {
      MapReader p(problems_, *it, {"max_idle", "idle_timeout"});
      p.read("max_idle", ep.pool.max_idle, 0, kNoMax);
      p.read("idle_timeout", ep.pool.idle_timeout, ZeroDuration::refused);
    }
    m.read("retries", ep.retries, 0, 10);
  }

  void load_workers(const Item& item, std::vector<Worker>& workers) {
    auto elements = detail::read_sequence(problems_, item);
    if (!elements) return;
    if (elements->empty()) {
      problems_.add(item.line, item.path, "expected at least one worker");
      return;
    }
    std::vector<std::pair<std::string, std::string>> seen;  // identity, path
    std::vector<std::pair<tcp::endpoint, std::string>> resolved;  // address, path
    for (const Item& element : *elements) {
      auto text = detail::read_string(problems_, element);
      if (!text) continue;
      std::string problem;
      auto url = parse_worker_url(*text, problem);
      if (!url) {
        problems_.add(element.line, element.path, problem);
        continue;
      }
      const auto dup = std::find_if(seen.begin(), seen.end(),
                                    [&](const auto& s) { return s.first == url->identity; });
      if (dup != seen.end()) {
        problems_.add(element.line, element.path, "duplicate worker, same as " + dup->second);
        continue;
      }
      seen.emplace_back(url->identity, element.path);

      std::vector<tcp::endpoint> addresses;
      if (url->literal) {
        addresses.emplace_back(*url->literal, url->port);
      } else if (!resolve(*url, addresses)) {
        problems_.add(element.line, element.path,
                      "cannot resolve \"" + url->host + "\": " + resolve_error_);
        continue;
      }
      // Two names may resolve to one address ("localhost:5000" and
      // "127.0.0.1:5000", or two container names mapped to one host). That
      // address is one worker: listing it twice would double its weight and
      // share one pool between two health states. Not an error, as nginx and
      // Envoy accept it, and DNS may briefly say so during a reload.
      for (const tcp::endpoint& address : addresses) {
        auto same = std::find_if(resolved.begin(), resolved.end(), [&](const auto& r) { return r.first == address; });
        if (same != resolved.end()) {
          std::ostringstream a;
          a << address;
          warnings_.add(element.line, element.path,
                        "resolves to " + a.str() + ", as " + same->second + " does: that address is one worker");
          continue;
        }
        resolved.emplace_back(address, element.path);
        workers.push_back(Worker{*text, url->authority, address});
      }
    }
  }

  // Synchronous: the config is loaded off the request path (start, reload).
  // AI_ADDRCONFIG is deliberately not used: it hides "localhost" on a host
  // whose only interface is loopback, a normal sidecar setup.
  bool resolve(const WorkerUrl& url, std::vector<tcp::endpoint>& out) {
    if (!resolver_) {
      io_.emplace();
      resolver_.emplace(*io_);
    }
    boost::system::error_code ec;
    auto results =
        resolver_->resolve(url.host, std::to_string(url.port), tcp::resolver::numeric_service, ec);
    if (!ec && results.empty()) ec = asio::error::host_not_found;
    if (ec) {
      resolve_error_ = ec.message();
      return false;
    }
    for (const auto& r : results) {
      // getaddrinfo lists an address once per socket type unless told the
      // type; keep each address once either way.
      if (std::find(out.begin(), out.end(), r.endpoint()) == out.end()) out.push_back(r.endpoint());
    }
    return true;
  }

  Problems& problems_;
  Problems& warnings_;  // not errors: Config::warnings
  fs::path dir_;
  std::vector<Bound> bound_;
  // Created on the first DNS name only: most configs use IP literals.
  std::optional<asio::io_context> io_;
  std::optional<tcp::resolver> resolver_;
  std::string resolve_error_;
};

// Counts the documents of a stream; where the second one starts.
struct DocumentCounter : YAML::EventHandler {
  int documents = 0;
  int second_line = 0;
  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents == 2) second_line = mark.line + 1;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

std::string read_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  const auto fail = [&](int err) {
    // std::error_code's message is strerror's text without its thread-safety problem.
    return ConfigError(path +
                       ": cannot read: " + std::error_code(err, std::generic_category()).message());
  };
  if (f == nullptr) throw fail(errno);
  std::string text;
  char buf[8192];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  const int err = std::ferror(f) ? errno : 0;
  std::fclose(f);
  if (err != 0) throw fail(err);
  return text;
}

}  // namespace

bool Cidr::contains(const boost::asio::ip::address& a) const noexcept {
  const auto peer = unmap(a);
  auto net = network;
  unsigned bits = prefix_len;
  if (net.is_v6() && net.to_v6().is_v4_mapped() && bits >= 96) {
    net = unmap(net);
    bits -= 96;
  }
  if (peer.is_v4() && net.is_v4())
    return same_prefix(peer.to_v4().to_bytes(), net.to_v4().to_bytes(), bits);
  if (peer.is_v6() && net.is_v6())
    return same_prefix(peer.to_v6().to_bytes(), net.to_v6().to_bytes(), bits);
  return false;
}

bool Routing::is_trusted(const boost::asio::ip::address& peer) const noexcept {
  return std::any_of(trusted_proxies.begin(), trusted_proxies.end(),
                     [&](const Cidr& c) { return c.contains(peer); });
}

const Endpoint* Config::find_endpoint(std::string_view id) const noexcept {
  for (const Endpoint& ep : endpoints) {
    if (ep.id == id) return &ep;
  }
  return nullptr;
}

std::shared_ptr<const Config> load_config(const std::string& path) {
  const std::string text = read_file(path);

  Problems problems(path);
  YAML::Node root;
  try {
    // Not YAML::LoadAll: yaml-cpp 0.7's never returns on some malformed
    // streams (a stray ",": jbeder/yaml-cpp#1040, fixed in 0.8 by #1319),
    // appending empty documents until memory runs out, which would take a
    // reload down with it. The first document, then at most one more step
    // of the parser to find a second.
    root = YAML::Load(text);
    std::istringstream in(text);
    YAML::Parser parser(in);
    DocumentCounter counter;
    for (int i = 0; i < 2 && parser.HandleNextDocument(counter); ++i) {
    }
    if (counter.documents > 1) problems.add(counter.second_line, "", "expected a single YAML document");
  } catch (const YAML::Exception& e) {
    problems.add(e.mark.is_null() ? 0 : e.mark.line + 1, "", "invalid YAML: " + e.msg);
    throw ConfigError(problems.joined());
  }

  std::error_code ec;
  fs::path absolute = fs::absolute(fs::path(path), ec);
  if (ec) absolute = fs::path(path);
  absolute = absolute.lexically_normal();

  auto cfg = std::make_shared<Config>();
  cfg->path = absolute.string();
  Problems warnings(path);
  try {
    Item top{root, "", std::max(1, detail::line_of(root))};
    Loader(problems, warnings, absolute.parent_path()).load(top, *cfg);
  } catch (const YAML::Exception& e) {
    // The readers check every type before touching a node, so this is a
    // yaml-cpp corner we did not foresee; still report it against the file.
    problems.add(e.mark.is_null() ? 0 : e.mark.line + 1, "", e.msg);
  }
  if (!problems.empty()) throw ConfigError(problems.joined());
  cfg->warnings = warnings.lines();
  return cfg;
}

}  // namespace frontdoor::config
