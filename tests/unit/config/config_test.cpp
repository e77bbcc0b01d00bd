#include "frontdoor/config/config.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <random>

namespace frontdoor::config {
namespace {

namespace fs = std::filesystem;
namespace ip = boost::asio::ip;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Each test gets its own directory under the system temp dir, removed after.
class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<unsigned> counter{0};
    std::random_device rd;
    dir_ = fs::temp_directory_path() /
           ("frontdoor_config_test_" + std::to_string(rd()) + "_" + std::to_string(counter++));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string write(const std::string& yaml, const std::string& name = "x.yaml") {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << yaml;
    return p.string();
  }

  std::shared_ptr<const Config> load(const std::string& yaml) { return load_config(write(yaml)); }

  // The what() of the ConfigError that loading `yaml` throws, or a note that
  // none was thrown.
  std::string error_of(const std::string& yaml) {
    try {
      load_config(write(yaml));
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "(no error)";
  }

  // The expected what(): each suffix ":<line>: <field>: <problem>" prefixed
  // with the file name, joined by newlines.
  std::string expected(std::initializer_list<std::string> suffixes) {
    const std::string file = (dir_ / "x.yaml").string();
    std::string out;
    for (const std::string& s : suffixes) {
      if (!out.empty()) out += '\n';
      out += file + s;
    }
    return out;
  }

  fs::path dir_;
};

constexpr const char* kListener = "listeners: [ { address: 127.0.0.1:0 } ]\n";

// The SPEC §2 example without its TLS parts.
constexpr const char* kSpecExample = R"(listeners:
  - address: 0.0.0.0:8080                 # plain HTTP/1.1
  - address: 0.0.0.0:8443
admin:
  address: 127.0.0.1:9901                 # admin API, /metrics, /healthz, /readyz
threads: 0                                # 0 = one per core
log: { level: info, access: true }        # level: debug|info|warn|error; access: one line per request
routing:
  host_suffix: .api.example.com           # "<endpoint>.api.example.com" selects <endpoint>
  path_prefix: true                       # "/<endpoint>/rest" selects <endpoint>, forwards "/rest"
  trusted_proxies: [ 10.0.0.0/8 ]         # peers whose X-Forwarded-For is kept (default: none)
limits:
  max_header_bytes: 16384
  max_uri_bytes: 8192
  max_body_bytes: 268435456
  header_timeout: 10s                     # whole request head must arrive in this time
  idle_timeout: 75s                       # keep-alive idle client connection
  max_connections: 20000                  # client connections; over it, accept waits
  drain_delay: 0s                         # on SIGTERM keep accepting this long (Connection: close)
  shutdown_grace: 30s
keys:
  store: keys.yaml                        # relative to this file; *.yaml or *.db (SQLite)
  last_used_flush: 10s                    # how often last-used/usage is persisted
  strip_authorization: true               # never forward the platform key to workers
endpoints:
  oc4qjlw7gp8i5f:
    workers: [ "http://127.0.0.1:5000", "http://127.0.0.1:5001" ]
    balance: least_outstanding            # round_robin | least_outstanding | power_of_two
    max_concurrency: 0                    # per worker in flight, 0 = unlimited
    queue: { max: 1024, timeout: 30s }    # wait for a free, healthy worker
    health: { path: /ping, interval: 5s, timeout: 2s, unhealthy_after: 2, healthy_after: 1 }
    timeouts: { connect: 3s, first_byte: 300s, idle: 120s }
    pool: { max_idle: 64, idle_timeout: 4s }   # keep-alive connections kept per worker
    retries: 1                            # see §4 step 7 for when a retry is allowed
)";

TEST_F(ConfigTest, SpecExampleParses) {
  const auto cfg = load(kSpecExample);
  EXPECT_EQ(cfg->path, (dir_ / "x.yaml").string());
  ASSERT_EQ(cfg->listeners.size(), 2u);
  EXPECT_EQ(cfg->listeners[0].address.text, "0.0.0.0:8080");
  EXPECT_EQ(cfg->listeners[0].address.endpoint,
            ip::tcp::endpoint(ip::make_address("0.0.0.0"), 8080));
  EXPECT_FALSE(cfg->listeners[0].tls);
  EXPECT_EQ(cfg->listeners[1].address.endpoint.port(), 8443);
  EXPECT_EQ(cfg->admin.address.endpoint, ip::tcp::endpoint(ip::make_address("127.0.0.1"), 9901));
  EXPECT_EQ(cfg->admin.address.text, "127.0.0.1:9901");
  EXPECT_FALSE(cfg->admin.tls);
  EXPECT_GE(cfg->threads, 1u);
  EXPECT_EQ(cfg->log.level, LogLevel::info);
  EXPECT_TRUE(cfg->log.access);
  EXPECT_EQ(cfg->routing.host_suffix, ".api.example.com");
  EXPECT_TRUE(cfg->routing.path_prefix);
  ASSERT_EQ(cfg->routing.trusted_proxies.size(), 1u);
  EXPECT_EQ(cfg->routing.trusted_proxies[0].network, ip::make_address("10.0.0.0"));
  EXPECT_EQ(cfg->routing.trusted_proxies[0].prefix_len, 8u);
  EXPECT_EQ(cfg->limits.max_header_bytes, 16384u);
  EXPECT_EQ(cfg->limits.max_uri_bytes, 8192u);
  EXPECT_EQ(cfg->limits.max_body_bytes, 268435456u);
  EXPECT_EQ(cfg->limits.header_timeout, seconds(10));
  EXPECT_EQ(cfg->limits.idle_timeout, seconds(75));
  EXPECT_EQ(cfg->limits.max_connections, 20000u);
  EXPECT_EQ(cfg->limits.drain_delay, milliseconds(0));
  EXPECT_EQ(cfg->limits.shutdown_grace, seconds(30));
  EXPECT_EQ(cfg->keys.store, (dir_ / "keys.yaml").string());
  EXPECT_EQ(cfg->keys.last_used_flush, seconds(10));
  EXPECT_TRUE(cfg->keys.strip_authorization);

  ASSERT_EQ(cfg->endpoints.size(), 1u);
  const Endpoint& ep = cfg->endpoints[0];
  EXPECT_EQ(ep.id, "oc4qjlw7gp8i5f");
  ASSERT_EQ(ep.workers.size(), 2u);
  EXPECT_EQ(ep.workers[0].url, "http://127.0.0.1:5000");
  EXPECT_EQ(ep.workers[0].authority, "127.0.0.1:5000");
  EXPECT_EQ(ep.workers[0].address, ip::tcp::endpoint(ip::make_address("127.0.0.1"), 5000));
  EXPECT_EQ(ep.workers[1].url, "http://127.0.0.1:5001");
  EXPECT_EQ(ep.workers[1].address.port(), 5001);
  EXPECT_EQ(ep.balance, Balance::least_outstanding);
  EXPECT_EQ(ep.max_concurrency, 0u);
  EXPECT_EQ(ep.queue.max, 1024u);
  EXPECT_EQ(ep.queue.timeout, seconds(30));
  EXPECT_EQ(ep.health.path, "/ping");
  EXPECT_EQ(ep.health.interval, seconds(5));
  EXPECT_EQ(ep.health.timeout, seconds(2));
  EXPECT_EQ(ep.health.unhealthy_after, 2u);
  EXPECT_EQ(ep.health.healthy_after, 1u);
  EXPECT_EQ(ep.timeouts.connect, seconds(3));
  EXPECT_EQ(ep.timeouts.first_byte, seconds(300));
  EXPECT_EQ(ep.timeouts.idle, seconds(120));
  EXPECT_EQ(ep.pool.max_idle, 64u);
  EXPECT_EQ(ep.pool.idle_timeout, seconds(4));
  EXPECT_EQ(ep.retries, 1u);

  EXPECT_EQ(cfg->find_endpoint("oc4qjlw7gp8i5f"), &cfg->endpoints[0]);
  EXPECT_EQ(cfg->find_endpoint("other"), nullptr);
  EXPECT_EQ(cfg->find_endpoint(""), nullptr);
}

TEST_F(ConfigTest, NonDefaultValues) {
  const auto cfg = load(R"(listeners:
  - address: "[::]:8080"
admin: { address: "[::1]:0" }
threads: 3
log: { level: warn, access: false }
routing: { host_suffix: .API.Example.COM, path_prefix: false, trusted_proxies: [] }
limits: { max_body_bytes: 0, drain_delay: 1.5s, shutdown_grace: 0s, header_timeout: 250ms }
keys: { store: /var/lib/frontdoor/keys.db, last_used_flush: 1m, strip_authorization: false }
endpoints:
  ep-1_b:
    workers: [ "http://127.0.0.1:5000/" ]
    balance: power_of_two
    max_concurrency: 4
    queue: { max: 0, timeout: 100ms }
    health: { path: /v1/models, unhealthy_after: 5, healthy_after: 3 }
    retries: 0
)");
  EXPECT_EQ(cfg->listeners[0].address.endpoint, ip::tcp::endpoint(ip::make_address("::"), 8080));
  EXPECT_EQ(cfg->admin.address.endpoint, ip::tcp::endpoint(ip::make_address("::1"), 0));
  EXPECT_EQ(cfg->threads, 3u);
  EXPECT_EQ(cfg->log.level, LogLevel::warn);
  EXPECT_FALSE(cfg->log.access);
  EXPECT_EQ(cfg->routing.host_suffix, ".api.example.com");
  EXPECT_FALSE(cfg->routing.path_prefix);
  EXPECT_TRUE(cfg->routing.trusted_proxies.empty());
  EXPECT_EQ(cfg->limits.max_body_bytes, 0u);
  EXPECT_EQ(cfg->limits.drain_delay, milliseconds(1500));
  EXPECT_EQ(cfg->limits.shutdown_grace, milliseconds(0));
  EXPECT_EQ(cfg->limits.header_timeout, milliseconds(250));
  EXPECT_EQ(cfg->keys.store, "/var/lib/frontdoor/keys.db");
  EXPECT_EQ(cfg->keys.last_used_flush, seconds(60));
  EXPECT_FALSE(cfg->keys.strip_authorization);
  const Endpoint* ep = cfg->find_endpoint("ep-1_b");
  ASSERT_NE(ep, nullptr);
  EXPECT_EQ(ep->workers[0].url, "http://127.0.0.1:5000/");
  EXPECT_EQ(ep->workers[0].authority, "127.0.0.1:5000");
  EXPECT_EQ(ep->balance, Balance::power_of_two);
  EXPECT_EQ(ep->max_concurrency, 4u);
  EXPECT_EQ(ep->queue.max, 0u);
  EXPECT_EQ(ep->queue.timeout, milliseconds(100));
  EXPECT_EQ(ep->health.path, "/v1/models");
  EXPECT_EQ(ep->health.interval, seconds(5));  // unset fields of a section keep defaults
  EXPECT_EQ(ep->health.unhealthy_after, 5u);
  EXPECT_EQ(ep->health.healthy_after, 3u);
  EXPECT_EQ(ep->retries, 0u);
}

TEST_F(ConfigTest, DefaultsFromMinimalFile) {
  const auto cfg = load(kListener);
  const Config defaults;
  ASSERT_EQ(cfg->listeners.size(), 1u);
  EXPECT_EQ(cfg->admin.address.text, "127.0.0.1:9901");
  EXPECT_EQ(cfg->admin.address.endpoint, ip::tcp::endpoint(ip::make_address("127.0.0.1"), 9901));
  EXPECT_EQ(cfg->threads, std::max(1u, std::thread::hardware_concurrency()));
  EXPECT_EQ(cfg->log.level, LogLevel::info);
  EXPECT_TRUE(cfg->log.access);
  EXPECT_EQ(cfg->routing.host_suffix, "");
  EXPECT_TRUE(cfg->routing.path_prefix);
  EXPECT_TRUE(cfg->routing.trusted_proxies.empty());
  EXPECT_EQ(cfg->limits.max_header_bytes, defaults.limits.max_header_bytes);
  EXPECT_EQ(cfg->limits.max_uri_bytes, defaults.limits.max_uri_bytes);
  EXPECT_EQ(cfg->limits.max_body_bytes, defaults.limits.max_body_bytes);
  EXPECT_EQ(cfg->limits.header_timeout, seconds(10));
  EXPECT_EQ(cfg->limits.idle_timeout, seconds(75));
  EXPECT_EQ(cfg->limits.max_connections, 20000u);
  EXPECT_EQ(cfg->limits.drain_delay, milliseconds(0));
  EXPECT_EQ(cfg->limits.shutdown_grace, seconds(30));
  EXPECT_EQ(cfg->keys.store, (dir_ / "keys.yaml").string());
  EXPECT_EQ(cfg->keys.last_used_flush, seconds(10));
  EXPECT_TRUE(cfg->keys.strip_authorization);
  EXPECT_TRUE(cfg->endpoints.empty());
}

TEST_F(ConfigTest, EndpointDefaults) {
  const auto cfg =
      load(std::string(kListener) + "endpoints:\n  ep1:\n    workers: [\"http://127.0.0.1\"]\n");
  ASSERT_EQ(cfg->endpoints.size(), 1u);
  const Endpoint& ep = cfg->endpoints[0];
  EXPECT_EQ(ep.workers[0].address, ip::tcp::endpoint(ip::make_address("127.0.0.1"), 80));
  EXPECT_EQ(ep.workers[0].authority, "127.0.0.1");  // as written: no port means 80
  EXPECT_EQ(ep.balance, Balance::round_robin);
  EXPECT_EQ(ep.max_concurrency, 0u);
  EXPECT_EQ(ep.queue.max, 1024u);
  EXPECT_EQ(ep.queue.timeout, seconds(30));
  EXPECT_EQ(ep.health.path, "/ping");
  EXPECT_EQ(ep.health.interval, seconds(5));
  EXPECT_EQ(ep.health.timeout, seconds(2));
  EXPECT_EQ(ep.health.unhealthy_after, 2u);
  EXPECT_EQ(ep.health.healthy_after, 1u);
  EXPECT_EQ(ep.timeouts.connect, seconds(3));
  EXPECT_EQ(ep.timeouts.first_byte, seconds(300));
  EXPECT_EQ(ep.timeouts.idle, seconds(120));
  EXPECT_EQ(ep.pool.max_idle, 64u);
  EXPECT_EQ(ep.pool.idle_timeout, seconds(4));
  EXPECT_EQ(ep.retries, 1u);
}

TEST_F(ConfigTest, EndpointsMayBeEmptyOrAbsent) {
  EXPECT_TRUE(load(std::string(kListener) + "endpoints: {}\n")->endpoints.empty());
  EXPECT_TRUE(load(std::string(kListener) + "endpoints:\n")->endpoints.empty());
}

TEST_F(ConfigTest, EndpointsKeepFileOrder) {
  const auto cfg = load(std::string(kListener) + R"(endpoints:
  zeta: { workers: ["http://127.0.0.1:1"] }
  alpha: { workers: ["http://127.0.0.1:2"] }
  mid: { workers: ["http://127.0.0.1:3"] }
)");
  ASSERT_EQ(cfg->endpoints.size(), 3u);
  EXPECT_EQ(cfg->endpoints[0].id, "zeta");
  EXPECT_EQ(cfg->endpoints[1].id, "alpha");
  EXPECT_EQ(cfg->endpoints[2].id, "mid");
  EXPECT_EQ(cfg->find_endpoint("mid"), &cfg->endpoints[2]);
}

TEST_F(ConfigTest, Ipv6Worker) {
  const auto cfg =
      load(std::string(kListener) + "endpoints:\n  ep1: { workers: [\"http://[::1]:5000\"] }\n");
  const Endpoint& ep = cfg->endpoints[0];
  ASSERT_EQ(ep.workers.size(), 1u);
  EXPECT_EQ(ep.workers[0].url, "http://[::1]:5000");
  EXPECT_EQ(ep.workers[0].authority, "[::1]:5000");
  EXPECT_EQ(ep.workers[0].address, ip::tcp::endpoint(ip::make_address("::1"), 5000));
}

TEST_F(ConfigTest, DnsNameWorkerYieldsOneWorkerPerAddress) {
  const auto cfg = load(std::string(kListener) +
                        "endpoints:\n  ep1: { workers: [\"http://localhost:5000\"] }\n");
  const Endpoint& ep = cfg->endpoints[0];
  ASSERT_GE(ep.workers.size(), 1u);
  for (const Worker& w : ep.workers) {
    EXPECT_EQ(w.url, "http://localhost:5000");
    EXPECT_EQ(w.authority, "localhost:5000");
    EXPECT_TRUE(w.address.address().is_loopback()) << w.address;
    EXPECT_EQ(w.address.port(), 5000);
  }
  for (std::size_t i = 1; i < ep.workers.size(); ++i) {
    EXPECT_NE(ep.workers[i].address, ep.workers[0].address) << "an address listed twice";
  }
}

TEST_F(ConfigTest, RelativeStoreResolvesAgainstConfigDirectory) {
  const std::string path =
      write(std::string(kListener) + "keys: { store: data/keys.db }\n", "sub/frontdoor.yaml");
  EXPECT_EQ(load_config(path)->keys.store, (dir_ / "sub" / "data" / "keys.db").string());

  const std::string up =
      write(std::string(kListener) + "keys: { store: ../keys.yaml }\n", "sub/up.yaml");
  EXPECT_EQ(load_config(up)->keys.store, (dir_ / "keys.yaml").string());

  // A relative config path still yields absolute paths.
  const fs::path old_cwd = fs::current_path();
  fs::current_path(dir_);
  std::shared_ptr<const Config> cfg;
  EXPECT_NO_THROW(cfg = load_config("sub/frontdoor.yaml"));
  fs::current_path(old_cwd);
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->path, (dir_ / "sub" / "frontdoor.yaml").string());
  EXPECT_EQ(cfg->keys.store, (dir_ / "sub" / "data" / "keys.db").string());
}

TEST_F(ConfigTest, ListenAddressForms) {
  const auto cfg = load(R"(listeners:
  - address: 0.0.0.0:80
  - address: "[::]:80"
  - address: localhost:8080
  - address: 127.0.0.1:0
  - address: 127.0.0.1:0
  - address: "[fe80::1]:65535"
)");
  ASSERT_EQ(cfg->listeners.size(), 6u);
  EXPECT_EQ(cfg->listeners[2].address.endpoint,
            ip::tcp::endpoint(ip::make_address("127.0.0.1"), 8080));
  EXPECT_EQ(cfg->listeners[2].address.text, "localhost:8080");
  EXPECT_EQ(cfg->listeners[5].address.endpoint.port(), 65535);
}

TEST_F(ConfigTest, BadListenAddresses) {
  EXPECT_EQ(
      error_of(R"(listeners:
  - address: example.com:80
  - address: 0.0.0.0
  - address: 0.0.0.0:65536
  - address: "::1:80"
  - address: "[::1]"
  - address: 10.0.0:80
  - address: 0.0.0.0:-1
  - address: [1, 2]
  - {}
)"),
      expected({
          R"(:2: listeners[0].address: expected an address like "0.0.0.0:8080" or "[::]:8080")",
          R"(:3: listeners[1].address: expected an address like "0.0.0.0:8080" or "[::]:8080")",
          R"(:4: listeners[2].address: expected an address like "0.0.0.0:8080" or "[::]:8080")",
          R"(:5: listeners[3].address: expected an address like "0.0.0.0:8080" or "[::]:8080")",
          R"(:6: listeners[4].address: expected an address like "0.0.0.0:8080" or "[::]:8080")",
          R"(:7: listeners[5].address: expected an address like "0.0.0.0:8080" or "[::]:8080")",
          R"(:8: listeners[6].address: expected an address like "0.0.0.0:8080" or "[::]:8080")",
          ":9: listeners[7].address: expected a string",
          ":10: listeners[8].address: missing",
      }));
}

TEST_F(ConfigTest, DuplicateListenAddresses) {
  // 127.0.0.1:9901 is free here because admin moved; port 0 never conflicts;
  // 127.0.0.1:8080 and 0.0.0.0:8080 are different addresses.
  EXPECT_EQ(error_of(R"(listeners:
  - address: 0.0.0.0:8080
  - address: 0.0.0.0:8080
  - address: 127.0.0.1:9901
  - address: 127.0.0.1:8080
  - address: "[::]:0"
  - address: "[::]:0"
admin:
  address: 0.0.0.0:8080
)"),
            expected({
                ":3: listeners[1].address: duplicate listen address, already used by "
                "listeners[0].address",
                ":9: admin.address: duplicate listen address, already used by listeners[0].address",
            }));
}

TEST_F(ConfigTest, ListenerOnDefaultAdminAddress) {
  EXPECT_EQ(error_of("listeners:\n  - address: 127.0.0.1:9901\n"),
            expected({":2: listeners[0].address: duplicate listen address, already used by "
                      "admin.address (default)"}));
}

TEST_F(ConfigTest, MissingFile) {
  const std::string path = (dir_ / "absent.yaml").string();
  try {
    load_config(path);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), path + ": cannot read: No such file or directory");
  }
}

TEST_F(ConfigTest, DirectoryIsNotAFile) {
  try {
    load_config(dir_.string());
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), dir_.string() + ": cannot read: Is a directory");
  }
}

TEST_F(ConfigTest, YamlSyntaxErrorNamesFileAndLine) {
  EXPECT_EQ(error_of("listeners:\n  - address: 0.0.0.0:80\nlimits: { max_header_bytes: 1\n"),
            expected({":4: invalid YAML: end of map flow not found"}));
  EXPECT_EQ(error_of("listeners:\n  - address: a\n    - b\n"),
            expected({":3: invalid YAML: end of map not found"}));
}

TEST_F(ConfigTest, EmptyFileNeedsListeners) {
  EXPECT_EQ(error_of(""), expected({":1: listeners: missing (at least one listener is required)"}));
  EXPECT_EQ(error_of("# only a comment\n"),
            expected({":1: listeners: missing (at least one listener is required)"}));
}

TEST_F(ConfigTest, TopLevelMustBeAMapping) {
  EXPECT_EQ(error_of("- a\n- b\n"), expected({":1: expected a mapping"}));
}

TEST_F(ConfigTest, MissingOrEmptyListeners) {
  EXPECT_EQ(error_of("threads: 2\nlog: { level: info }\n"),
            expected({":1: listeners: missing (at least one listener is required)"}));
  EXPECT_EQ(error_of("threads: 2\nlisteners: []\n"),
            expected({":2: listeners: expected at least one listener"}));
  EXPECT_EQ(error_of("listeners: 0.0.0.0:8080\n"), expected({":1: listeners: expected a list"}));
  EXPECT_EQ(error_of("listeners:\n  - 0.0.0.0:8080\n"),
            expected({":2: listeners[0]: expected a mapping"}));
}

TEST_F(ConfigTest, UnknownKeysAtEveryLevel) {
  EXPECT_EQ(error_of(R"(listeners:
  - address: 0.0.0.0:8080
    proto: h2
limits:
  max_header_byts: 100
listner: []
endpoints:
  ep1:
    workers: ["http://127.0.0.1:5000"]
    queue: { max: 1, timeot: 1s }
    weight: 3
)"),
            expected({
                ":3: listeners[0].proto: unknown key",
                ":5: limits.max_header_byts: unknown key",
                ":6: listner: unknown key",
                ":10: endpoints.ep1.queue.timeot: unknown key",
                ":11: endpoints.ep1.weight: unknown key",
            }));
}

TEST_F(ConfigTest, WrongTypes) {
  EXPECT_EQ(
      error_of(R"(listeners: [ { address: 127.0.0.1:0 } ]
threads: "4"
log: { level: verbose, access: yes }
routing: { path_prefix: 1, trusted_proxies: 10.0.0.0/8 }
limits:
  max_header_bytes: -1
  max_uri_bytes: 1.5
  max_body_bytes: lots
  max_connections: 0
keys: { store: [a], strip_authorization: "true" }
endpoints:
  ep1:
    workers: "http://127.0.0.1:5000"
    balance: random
    max_concurrency: ~
    retries: 11
    health: { unhealthy_after: 0, path: ping }
    pool: 4
)"),
      expected({
          ":2: threads: expected an integer from 0 to 4096",
          ":3: log.level: expected one of debug, info, warn, error",
          ":3: log.access: expected true or false",
          ":4: routing.path_prefix: expected true or false",
          ":4: routing.trusted_proxies: expected a list",
          ":6: limits.max_header_bytes: expected an integer from 1 to 4294967295",
          ":7: limits.max_uri_bytes: expected an integer from 1 to 4294967295",
          ":8: limits.max_body_bytes: expected a non-negative integer",
          ":9: limits.max_connections: expected a positive integer",
          ":10: keys.store: expected a string",
          ":10: keys.strip_authorization: expected true or false",
          ":13: endpoints.ep1.workers: expected a list",
          ":14: endpoints.ep1.balance: expected one of round_robin, least_outstanding, "
          "power_of_two",
          ":15: endpoints.ep1.max_concurrency: expected a non-negative integer",
          ":16: endpoints.ep1.retries: expected an integer from 0 to 10",
          ":17: endpoints.ep1.health.path: expected a path starting with \"/\" like \"/ping\"",
          ":17: endpoints.ep1.health.unhealthy_after: expected an integer from 1 to 1000",
          ":18: endpoints.ep1.pool: expected a mapping",
      }));
}

TEST_F(ConfigTest, BadDurationsNameTheirLine) {
  EXPECT_EQ(
      error_of(R"(listeners: [ { address: 127.0.0.1:0 } ]
limits:
  header_timeout: 10
  idle_timeout: 0s
  drain_delay: -1s
  shutdown_grace: 1m30s
keys: { last_used_flush: "" }
endpoints:
  ep1:
    workers: ["http://127.0.0.1:5000"]
    queue: { timeout: 0ms }
    health: { interval: 5 s, timeout: 1.5.2s }
    pool: { idle_timeout: 4sec }
    timeouts:
      connect: 3
      first_byte: 0s
      idle: 2d
)"),
      expected({
          R"(:3: limits.header_timeout: expected a duration like "3s")",
          R"(:4: limits.idle_timeout: expected a duration greater than 0, like "3s")",
          R"(:5: limits.drain_delay: expected a duration like "3s")",
          R"(:6: limits.shutdown_grace: expected a duration like "3s")",
          R"(:7: keys.last_used_flush: expected a duration like "3s")",
          R"(:11: endpoints.ep1.queue.timeout: expected a duration greater than 0, like "3s")",
          R"(:12: endpoints.ep1.health.interval: expected a duration like "3s")",
          R"(:12: endpoints.ep1.health.timeout: expected a duration like "3s")",
          R"(:13: endpoints.ep1.pool.idle_timeout: expected a duration like "3s")",
          R"(:15: endpoints.ep1.timeouts.connect: expected a duration like "3s")",
          R"(:16: endpoints.ep1.timeouts.first_byte: expected a duration greater than 0, like "3s")",
          R"(:17: endpoints.ep1.timeouts.idle: expected a duration like "3s")",
      }));
}

TEST_F(ConfigTest, DuplicateEndpointsAndKeys) {
  EXPECT_EQ(error_of(R"(listeners: [ { address: 127.0.0.1:0 } ]
limits:
  max_uri_bytes: 100
  max_uri_bytes: 200
endpoints:
  ep1:
    workers: ["http://127.0.0.1:5000"]
  ep2:
    workers: ["http://127.0.0.1:5001"]
  ep1:
    workers: ["http://127.0.0.1:5002"]
    retries: 1
    retries: 2
threads: 1
threads: 2
)"),
            expected({
                ":4: limits.max_uri_bytes: duplicate key, first defined at line 3",
                ":10: endpoints.ep1: duplicate endpoint, first defined at line 6",
                ":15: threads: duplicate key, first defined at line 14",
            }));
}

TEST_F(ConfigTest, BadEndpointIds) {
  EXPECT_EQ(
      error_of(R"(listeners: [ { address: 127.0.0.1:0 } ]
endpoints:
  ep.1: { workers: ["http://127.0.0.1:5000"] }
  "ep 2": { workers: ["http://127.0.0.1:5000"] }
  ep3: {}
  ep4:
)"),
      expected({
          R"(:3: endpoints.ep.1: an endpoint id may only contain lower-case letters, digits, "_" and "-")",
          R"(:4: endpoints.ep 2: an endpoint id may only contain lower-case letters, digits, "_" and "-")",
          ":5: endpoints.ep3.workers: missing",
          ":6: endpoints.ep4.workers: missing",
      }));
}

// Host routing lowers the Host before it compares; an id with upper case
// would be reachable by path only (L7).
TEST_F(ConfigTest, EndpointIdsAreLowerCase) {
  EXPECT_EQ(error_of(R"(listeners: [ { address: 127.0.0.1:0 } ]
endpoints:
  MyEp: { workers: ["http://127.0.0.1:5000"] }
  my-ep_2: { workers: ["http://127.0.0.1:5001"] }
)"),
            expected({R"(:3: endpoints.MyEp: an endpoint id may only contain lower-case letters, digits, "_" and "-")"}));
}

TEST_F(ConfigTest, RoutingMustLeaveAWayToAnEndpoint) {
  EXPECT_EQ(error_of(std::string(kListener) + "routing:\n  path_prefix: false\n"),
            expected({":3: routing.path_prefix: false with no host_suffix leaves no way to address an endpoint"}));
  EXPECT_EQ(error_of(std::string(kListener) + "routing: { host_suffix: \"\", path_prefix: false }\n"),
            expected({":2: routing.path_prefix: false with no host_suffix leaves no way to address an endpoint"}));
  auto cfg = load(std::string(kListener) + "routing: { host_suffix: .x.test, path_prefix: false }\n");
  EXPECT_FALSE(cfg->routing.path_prefix);
}

TEST_F(ConfigTest, UriLimitAboveHeadLimit) {
  // Written: a mistake (414 could never win over 431).
  EXPECT_EQ(error_of(std::string(kListener) + "limits:\n  max_header_bytes: 4096\n  max_uri_bytes: 8192\n"),
            expected({":4: limits.max_uri_bytes: larger than limits.max_header_bytes (4096): a URI that long is "
                      "refused by the head limit first (431, never 414)"}));
  // Left at its default: it follows the head limit.
  auto cfg = load(std::string(kListener) + "limits: { max_header_bytes: 2048 }\n");
  EXPECT_EQ(cfg->limits.max_uri_bytes, 2048u);
  cfg = load(std::string(kListener) + "limits: { max_header_bytes: 4096, max_uri_bytes: 4096 }\n");
  EXPECT_EQ(cfg->limits.max_uri_bytes, 4096u);
}

// Accepted with a warning (nginx and Envoy accept it; two container names
// may be mapped to one host): the address is one worker, listed once.
TEST_F(ConfigTest, TwoUrlsForOneAddressAreOneWorker) {
  auto cfg = load(R"(listeners: [ { address: 127.0.0.1:0 } ]
endpoints:
  ep1:
    workers: [ "http://127.0.0.1:5000", "http://localhost:5001", "http://localhost:5000" ]
  ep2:
    workers: [ "http://127.0.0.1:5000" ]
)");
  ASSERT_EQ(cfg->endpoints.size(), 2u);
  const auto& workers = cfg->endpoints[0].workers;
  ASSERT_EQ(workers.size(), 2u);
  EXPECT_EQ(workers[0].url, "http://127.0.0.1:5000");
  EXPECT_EQ(workers[1].url, "http://localhost:5001");
  EXPECT_EQ(cfg->endpoints[1].workers.size(), 1u);
  ASSERT_EQ(cfg->warnings.size(), 1u);
  const std::string want =
      ":4: endpoints.ep1.workers[2]: resolves to 127.0.0.1:5000, as endpoints.ep1.workers[0] does: "
      "that address is one worker";
  EXPECT_TRUE(cfg->warnings[0].ends_with(want)) << cfg->warnings[0];
  EXPECT_TRUE(load(std::string(kListener))->warnings.empty());
}

// SPEC §1/§3.1: a part not built yet is refused, never read as something else.
TEST_F(ConfigTest, PostgresqlStoreIsKeptAsWrittenWithItsFleetSettings) {
  for (const char* uri : {"postgresql://fd@db/frontdoor?sslmode=require", "postgres://db/x"}) {
    auto cfg = load(std::string(kListener) + "keys:\n  store: \"" + uri +
                    "\"\n  max_stale: 30s\n  rate_limit_scope: fleet\n");
    EXPECT_EQ(cfg->keys.store, uri) << "a URI is not a file name to make absolute";
    EXPECT_TRUE(cfg->keys.postgres);
    EXPECT_EQ(cfg->keys.max_stale, seconds(30));
    EXPECT_TRUE(cfg->keys.fleet_rate_limits);
  }
  auto defaults = load(std::string(kListener) + "keys:\n  store: postgresql://db/x\n");
  EXPECT_EQ(defaults->keys.max_stale, seconds(0)) << "0 = never fail closed";
  EXPECT_FALSE(defaults->keys.fleet_rate_limits) << "rate_limit_scope defaults to replica";
}

TEST_F(ConfigTest, FleetSettingsAreRefusedOnAFileStore) {
  EXPECT_EQ(error_of(std::string(kListener) + "keys:\n  store: keys.db\n  max_stale: 5s\n"),
            expected({":4: keys.max_stale: only a PostgreSQL key store (postgresql://) can be stale"}));
  EXPECT_EQ(error_of(std::string(kListener) + "keys:\n  rate_limit_scope: fleet\n"),
            expected({":3: keys.rate_limit_scope: fleet needs a PostgreSQL key store (postgresql://)"}));
  EXPECT_EQ(error_of(std::string(kListener) + "keys:\n  store: postgresql://db/x\n  rate_limit_scope: region\n"),
            expected({":4: keys.rate_limit_scope: expected replica or fleet"}));
}

TEST_F(ConfigTest, BadWorkerUrls) {
  EXPECT_EQ(
      error_of(R"(listeners: [ { address: 127.0.0.1:0 } ]
endpoints:
  ep1:
    workers:
      - http://127.0.0.1:5000
      - 127.0.0.1:5000
      - ftp://127.0.0.1:21
      - http://127.0.0.1:5000/v1
      - http://127.0.0.1:5000?x=1
      - http://user:pw@127.0.0.1:5000
      - http://127.0.0.1:70000
      - http://127.0.0.1:0
      - http://my%20host:5000
      - http://[v1.x]:5000
      - http://127.0.0.1:5000#frag
      - http:///x
      - https://127.0.0.1:5443
      - http://127.0.0.1:5000/
      - "http:?"
      - "http:#x://a"
  ep2:
    workers: []
)"),
      expected({
          R"(:6: endpoints.ep1.workers[1]: expected a URL like "http://127.0.0.1:5000")",
          R"(:7: endpoints.ep1.workers[2]: expected a URL like "http://127.0.0.1:5000")",
          ":8: endpoints.ep1.workers[3]: a worker URL takes no path",
          ":9: endpoints.ep1.workers[4]: a worker URL takes no query",
          ":10: endpoints.ep1.workers[5]: a worker URL takes no user info",
          ":11: endpoints.ep1.workers[6]: a worker port must be from 1 to 65535",
          ":12: endpoints.ep1.workers[7]: a worker port must be from 1 to 65535",
          R"(:13: endpoints.ep1.workers[8]: expected a URL like "http://127.0.0.1:5000")",
          R"(:14: endpoints.ep1.workers[9]: expected a URL like "http://127.0.0.1:5000")",
          R"(:15: endpoints.ep1.workers[10]: expected a URL like "http://127.0.0.1:5000")",
          R"(:16: endpoints.ep1.workers[11]: expected a URL like "http://127.0.0.1:5000")",
          ":17: endpoints.ep1.workers[12]: https workers are not supported yet",
          ":18: endpoints.ep1.workers[13]: duplicate worker, same as endpoints.ep1.workers[0]",
          R"(:19: endpoints.ep1.workers[14]: expected a URL like "http://127.0.0.1:5000")",
          R"(:20: endpoints.ep1.workers[15]: expected a URL like "http://127.0.0.1:5000")",
          ":22: endpoints.ep2.workers: expected at least one worker",
      }));
}

TEST_F(ConfigTest, DuplicateWorkersCompareNormalised) {
  EXPECT_EQ(error_of(R"(listeners: [ { address: 127.0.0.1:0 } ]
endpoints:
  ep1:
    workers: [ "http://127.0.0.1", "HTTP://127.0.0.1:80/", "http://LOCALHOST:81", "http://localhost:81" ]
)"),
            expected({
                ":4: endpoints.ep1.workers[1]: duplicate worker, same as endpoints.ep1.workers[0]",
                ":4: endpoints.ep1.workers[3]: duplicate worker, same as endpoints.ep1.workers[2]",
            }));
}

TEST_F(ConfigTest, UnresolvableWorkerHost) {
  // .invalid never resolves (RFC 6761 §6.4). The resolver's own reason
  // follows the fixed part of the message and depends on the machine.
  const std::string err = error_of(R"(listeners: [ { address: 127.0.0.1:0 } ]
endpoints:
  ep1:
    workers: [ "http://127.0.0.1:5000", "http://no-such-worker.invalid:5000" ]
)");
  const std::string prefix =
      expected({R"(:4: endpoints.ep1.workers[1]: cannot resolve "no-such-worker.invalid": )"});
  EXPECT_EQ(err.substr(0, prefix.size()), prefix) << err;
  EXPECT_GT(err.size(), prefix.size()) << err;
  EXPECT_EQ(err.find('\n'), std::string::npos) << err;
}

TEST_F(ConfigTest, TlsFilesAreChecked) {
  const std::string err = error_of(R"(listeners:
  - address: 0.0.0.0:8080
  - address: 0.0.0.0:8443
    tls: { cert: /nonexistent/tls.crt, key: /nonexistent/tls.key }
  - address: 0.0.0.0:8444
    tls: { cert: /etc/frontdoor/tls.crt, chain: x }
admin:
  address: 127.0.0.1:9901
  tls:
    cert: a.crt
    key: ""
)");
  // A file that cannot be loaded is named with OpenSSL's reason.
  EXPECT_NE(err.find(":4: listeners[1].tls: cannot load the certificate chain /nonexistent/tls.crt: "),
            std::string::npos)
      << err;
  EXPECT_NE(err.find(":6: listeners[2].tls.chain: unknown key"), std::string::npos) << err;
  EXPECT_NE(err.find(":6: listeners[2].tls.key: missing"), std::string::npos) << err;
  EXPECT_NE(err.find(":11: admin.tls.key: expected a file name"), std::string::npos) << err;
}

TEST_F(ConfigTest, HostSuffix) {
  EXPECT_EQ(load(std::string(kListener) + "routing: { host_suffix: .Api.Example.com }\n")
                ->routing.host_suffix,
            ".api.example.com");
  EXPECT_EQ(load(std::string(kListener) + "routing: { host_suffix: \"\" }\n")->routing.host_suffix,
            "");
  for (const char* bad : {"api.example.com", ".", ".api..example.com", ".api.example.com.",
                          ".api example.com", ".api/x"}) {
    EXPECT_EQ(
        error_of(std::string(kListener) + "routing:\n  host_suffix: \"" + bad + "\"\n"),
        expected(
            {R"(:3: routing.host_suffix: expected a domain suffix starting with "." like ".api.example.com")"}))
        << bad;
  }
}

TEST_F(ConfigTest, TrustedProxies) {
  const auto cfg = load(std::string(kListener) +
                        "routing:\n  trusted_proxies: [ 10.0.0.0/8, 192.168.1.7, \"fd00::/8\", "
                        "\"::1\", \"::ffff:172.16.0.0/108\", 0.0.0.0/0 ]\n");
  const auto& t = cfg->routing.trusted_proxies;
  ASSERT_EQ(t.size(), 6u);
  EXPECT_EQ(t[1].network, ip::make_address("192.168.1.7"));
  EXPECT_EQ(t[1].prefix_len, 32u);
  EXPECT_EQ(t[2].network, ip::make_address("fd00::"));
  EXPECT_EQ(t[2].prefix_len, 8u);
  EXPECT_EQ(t[3].prefix_len, 128u);
  // An IPv4-mapped range is kept in IPv4 form.
  EXPECT_EQ(t[4].network, ip::make_address("172.16.0.0"));
  EXPECT_EQ(t[4].prefix_len, 12u);
  EXPECT_EQ(t[5].prefix_len, 0u);
}

TEST_F(ConfigTest, BadTrustedProxies) {
  EXPECT_EQ(
      error_of(std::string(kListener) + R"(routing:
  trusted_proxies:
    - 10.0.0.0/33
    - 10.1.2.3/8
    - fd00::1/8
    - 10.0.0.0/
    - 10.0.0.0/x
    - example.com/8
    - "[::1]"
    - 10.0.0/8
    - "fd00::/129"
    - { a: 1 }
)"),
      expected({
          R"(:4: routing.trusted_proxies[0]: expected an address range like "10.0.0.0/8" or "fd00::/8")",
          R"(:5: routing.trusted_proxies[1]: host bits are set, did you mean "10.0.0.0/8"?)",
          R"(:6: routing.trusted_proxies[2]: host bits are set, did you mean "fd00::/8"?)",
          R"(:7: routing.trusted_proxies[3]: expected an address range like "10.0.0.0/8" or "fd00::/8")",
          R"(:8: routing.trusted_proxies[4]: expected an address range like "10.0.0.0/8" or "fd00::/8")",
          R"(:9: routing.trusted_proxies[5]: expected an address range like "10.0.0.0/8" or "fd00::/8")",
          R"(:10: routing.trusted_proxies[6]: expected an address range like "10.0.0.0/8" or "fd00::/8")",
          R"(:11: routing.trusted_proxies[7]: expected an address range like "10.0.0.0/8" or "fd00::/8")",
          R"(:12: routing.trusted_proxies[8]: expected an address range like "10.0.0.0/8" or "fd00::/8")",
          ":13: routing.trusted_proxies[9]: expected a string",
      }));
}

TEST_F(ConfigTest, ManyProblemsReportedTogetherInFileOrder) {
  EXPECT_EQ(error_of(R"(threads: many
endpoints:
  ep1:
    workers: ["http://127.0.0.1:5000"]
    timeouts: { connect: soon }
log: { level: loud }
bogus: 1
)"),
            expected({
                ":1: listeners: missing (at least one listener is required)",
                ":1: threads: expected an integer from 0 to 4096",
                R"(:5: endpoints.ep1.timeouts.connect: expected a duration like "3s")",
                ":6: log.level: expected one of debug, info, warn, error",
                ":7: bogus: unknown key",
            }));
}

TEST_F(ConfigTest, SeveralDocumentsAreRefused) {
  EXPECT_EQ(error_of(std::string(kListener) + "---\n" + kListener),
            expected({":2: expected a single YAML document"}));  // the second document's "---"
}

TEST(Cidr, ContainsIpv4) {
  const Cidr c{ip::make_address("10.0.0.0"), 8};
  EXPECT_TRUE(c.contains(ip::make_address("10.0.0.0")));
  EXPECT_TRUE(c.contains(ip::make_address("10.255.255.255")));
  EXPECT_FALSE(c.contains(ip::make_address("11.0.0.1")));
  EXPECT_FALSE(c.contains(ip::make_address("9.255.255.255")));
  EXPECT_FALSE(c.contains(ip::make_address("::1")));

  const Cidr odd{ip::make_address("192.168.1.128"), 25};
  EXPECT_TRUE(odd.contains(ip::make_address("192.168.1.200")));
  EXPECT_FALSE(odd.contains(ip::make_address("192.168.1.127")));

  const Cidr host{ip::make_address("192.168.1.7"), 32};
  EXPECT_TRUE(host.contains(ip::make_address("192.168.1.7")));
  EXPECT_FALSE(host.contains(ip::make_address("192.168.1.8")));

  const Cidr all{ip::make_address("0.0.0.0"), 0};
  EXPECT_TRUE(all.contains(ip::make_address("203.0.113.9")));
  EXPECT_FALSE(all.contains(ip::make_address("2001:db8::1")));
}

TEST(Cidr, ContainsIpv6) {
  const Cidr c{ip::make_address("fd00::"), 8};
  EXPECT_TRUE(c.contains(ip::make_address("fd12:3456::1")));
  EXPECT_FALSE(c.contains(ip::make_address("fe80::1")));
  EXPECT_FALSE(c.contains(ip::make_address("10.0.0.1")));

  const Cidr db8{ip::make_address("2001:db8::"), 33};
  EXPECT_TRUE(db8.contains(ip::make_address("2001:db8:7fff::1")));
  EXPECT_FALSE(db8.contains(ip::make_address("2001:db8:8000::1")));

  const Cidr one{ip::make_address("::1"), 128};
  EXPECT_TRUE(one.contains(ip::make_address("::1")));
  EXPECT_FALSE(one.contains(ip::make_address("::2")));
}

TEST(Cidr, Ipv4MappedPeerMatchesIpv4Range) {
  const Cidr c{ip::make_address("10.0.0.0"), 8};
  EXPECT_TRUE(c.contains(ip::make_address("::ffff:10.1.2.3")));
  EXPECT_FALSE(c.contains(ip::make_address("::ffff:11.1.2.3")));
  // A mapped range built by hand matches plain and mapped IPv4 peers alike.
  const Cidr mapped{ip::make_address("::ffff:10.0.0.0"), 104};
  EXPECT_TRUE(mapped.contains(ip::make_address("10.9.9.9")));
  EXPECT_TRUE(mapped.contains(ip::make_address("::ffff:10.9.9.9")));
  EXPECT_FALSE(mapped.contains(ip::make_address("11.0.0.1")));
}

TEST(Routing, IsTrusted) {
  Routing r;
  EXPECT_FALSE(r.is_trusted(ip::make_address("10.0.0.1")));  // default: nobody
  r.trusted_proxies = {Cidr{ip::make_address("10.0.0.0"), 8}, Cidr{ip::make_address("fd00::"), 8}};
  EXPECT_TRUE(r.is_trusted(ip::make_address("10.0.0.1")));
  EXPECT_TRUE(r.is_trusted(ip::make_address("::ffff:10.0.0.1")));
  EXPECT_TRUE(r.is_trusted(ip::make_address("fd00::5")));
  EXPECT_FALSE(r.is_trusted(ip::make_address("192.168.0.1")));
  EXPECT_FALSE(r.is_trusted(ip::make_address("2001:db8::1")));
}

}  // namespace
}  // namespace frontdoor::config
