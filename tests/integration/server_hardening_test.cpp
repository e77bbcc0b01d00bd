// Process-level hardening (issue 8): a stdout nobody reads, readiness across
// an early reload, the admin connection cap, reloads that must be refused or
// must not bind, and limits.max_connections applied on reload.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <csignal>
#include <cstdlib>
#include <future>
#include <memory>
#include <thread>

#include "support/child_process.hpp"
#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;

// A port that was free a moment ago (bound to 0, then closed).
std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

bool connect_refused(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  bool refused = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0;
  ::close(fd);
  return refused;
}

bool make_cert(const std::string& dir) {
  return std::system(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
                      "-subj /CN=test -addext subjectAltName=IP:127.0.0.1 -keyout " +
                      dir + "/tls.key -out " + dir + "/tls.crt >/dev/null 2>&1")
                         .c_str()) == 0;
}

// Index of the first server log line with msg == `msg`, or -1.
long log_index(const ProxyHarness& h, std::string_view msg) {
  auto lines = h.log_lines();
  for (std::size_t i = 0; i < lines.size(); ++i)
    if (json_str(lines[i], "msg") == msg) return static_cast<long>(i);
  return -1;
}

class ServerHardeningTest : public ProxyTest {};

// M6: the access log goes to a stdout pipe that is full and never read (a
// stuck log driver). Requests must still be answered promptly on every
// thread, and SIGTERM must still end the process. Before the fix the first
// access-log flush blocked a proxy thread in write(2) under a global mutex,
// and every other thread then blocked on that mutex.
TEST_F(ServerHardeningTest, AFullStdoutPipeNeverStallsRequests) {
  add_default_endpoint();
  add_default_key();
  proxy_.config().threads = 2;
  proxy_.write_config();
  proxy_.write_keys();

  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  ::fcntl(p[0], F_SETFD, FD_CLOEXEC);  // the child gets the write end only
  ::fcntl(p[1], F_SETPIPE_SZ, 4096);
  // Fill it now: non-blocking only while we fill, blocking again before the
  // child inherits it, as a real stuck pipe would be.
  int flags = ::fcntl(p[1], F_GETFL);
  ::fcntl(p[1], F_SETFL, flags | O_NONBLOCK);
  std::string junk(4096, 'j');
  while (::write(p[1], junk.data(), junk.size()) > 0) {
  }
  ::fcntl(p[1], F_SETFL, flags);

  ChildProcess child;
  ASSERT_TRUE(child.spawn({"/bin/sh", "-c", "exec \"$0\" --config \"$1\" >&" + std::to_string(p[1]),
                           FRONTDOOR_BINARY, proxy_.config_path()},
                          proxy_.dir()))
      << child.error();
  ::close(p[1]);

  // Ports from the "listening" lines on stderr.
  std::uint16_t proxy_port = 0, admin_port = 0;
  auto parse = [&](const std::string& err) {
    std::size_t start = 0;
    while (start < err.size()) {
      auto end = err.find('\n', start);
      if (end == std::string::npos) break;
      boost::system::error_code ec;
      auto v = boost::json::parse(err.substr(start, end - start), ec);
      start = end + 1;
      if (ec || !v.is_object() || json_str(v.as_object(), "msg") != "listening") continue;
      auto addr = json_str(v.as_object(), "address");
      auto port = static_cast<std::uint16_t>(std::atoi(addr.c_str() + addr.rfind(':') + 1));
      (json_str(v.as_object(), "listener") == "admin" ? admin_port : proxy_port) = port;
    }
    return proxy_port != 0 && admin_port != 0;
  };
  ASSERT_TRUE(child.wait_output([&](const std::string&, const std::string& err) { return parse(err); }, kWait))
      << child.stderr_text();
  auto deadline = Clock::now() + kWait;
  while (do_request(admin_port, "GET", "/readyz", {{"Host", "a"}}, {}, 1000ms).status != 200) {
    ASSERT_LT(Clock::now(), deadline) << child.stderr_text();
    std::this_thread::sleep_for(20ms);
  }

  // Well past one flush per thread (every 100 ms), on fresh connections so
  // that both threads get some.
  auto t0 = Clock::now();
  for (int i = 0; i < 60; ++i) {
    auto r = do_request(proxy_port, "GET", "/ep1/x", auth_headers(), {}, 2000ms);
    ASSERT_EQ(r.status, 200) << "request " << i << "\n" << child.stderr_text();
    if (i % 10 == 9) std::this_thread::sleep_for(120ms);  // let the sweeps flush
  }
  EXPECT_LT(Clock::now() - t0, 20s);
  auto metrics = do_request(admin_port, "GET", "/metrics", {{"Host", "a"}}, {}, 2000ms);
  EXPECT_NE(metrics.body.find("\nfrontdoor_access_log_dropped_total "), std::string::npos);

  // Shutdown is bounded too: the writer gives up on the stuck pipe.
  ASSERT_TRUE(child.send_signal(SIGTERM));
  auto status = child.wait_exit(10s);
  ASSERT_TRUE(status.has_value()) << child.stderr_text();
  EXPECT_EQ(*status, 0);
  ::close(p[0]);
}

// M7: a reload (here the file watch) while the first health round is still
// waiting for a probe answer. Before the fix only the first health checker
// could make the process ready, and the reload had stopped it: /readyz
// stayed 503 "starting" for ever.
TEST_F(ServerHardeningTest, ReadyAfterAReloadBeforeTheFirstHealthRound) {
  add_default_endpoint({.health_interval = "10s", .health_timeout = "5s"});
  add_default_key();
  worker_.set_health_delay(3000ms);  // every probe hangs for 3 s

  auto started = std::async(std::launch::async, [this] { return proxy_.start(15000ms); });
  ASSERT_TRUE(worker_.wait_for_health_probes(1, 10000ms));
  // A new inode: the file watch reloads within a second, while that probe
  // still hangs. (The delay stays: the new checker's probe answers after 3 s
  // too, and changing it now could race with the first probe reading it.)
  proxy_.write_config();
  ASSERT_TRUE(started.get()) << proxy_.error();
  EXPECT_EQ(proxy_.admin_request("GET", "/readyz", {{"Host", "a"}}).status, 200);
  // The reload began before the process became ready (the first probe was
  // still hanging then).
  long reloading = log_index(proxy_, "configuration file changed: reloading");
  long ready = log_index(proxy_, "ready");
  ASSERT_GE(reloading, 0);
  EXPECT_GT(ready, reloading);
  EXPECT_GE(log_index(proxy_, "reloaded"), 0);
}

// B2: at most 256 admin connections; more are closed at once (before the
// fix every one was served), and the proxy keeps serving. Once they go, the
// admin listener answers again.
TEST_F(ServerHardeningTest, AdminConnectionsAreCapped) {
  add_default_endpoint();
  add_default_key();
  start();
  // 260 connections, all open at once; each then asks for /healthz. Those
  // over the cap were closed on accept and get no answer.
  std::vector<std::unique_ptr<TcpClient>> conns;
  for (int i = 0; i < 260; ++i) conns.push_back(std::make_unique<TcpClient>(proxy_.admin_port(), 3000ms));
  int answered = 0;
  for (auto& c : conns) {
    if (!c->connected() || !c->send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")) continue;
    auto r = c->read_response();
    if (r && r->status == 200) ++answered;
  }
  EXPECT_LE(answered, 256);
  EXPECT_GE(answered, 250);  // a /readyz poll of start() may not be closed yet
  EXPECT_EQ(get("/ep1/x").status, 200);
  conns.clear();
  auto deadline = Clock::now() + kWait;
  while (proxy_.admin_request("GET", "/healthz", {{"Host", "a"}}, 1000ms).status != 200) {
    ASSERT_LT(Clock::now(), deadline);
    std::this_thread::sleep_for(20ms);
  }
}

// B3: switching `tls` on for a listener on a fixed address is refused by a
// reload (the new socket would share the port with the old one); the plain
// listener keeps serving plain HTTP.
TEST_F(ServerHardeningTest, TurningTlsOnForABoundAddressIsRefused) {
  ASSERT_TRUE(make_cert(proxy_.dir()));
  const auto port = free_port();
  const std::string address = "127.0.0.1:" + std::to_string(port);
  proxy_.config().extra_listeners = {address};
  add_default_endpoint();
  add_default_key();
  start();
  ASSERT_EQ(do_request(port, "GET", "/ep1/x", auth_headers()).status, 200);

  proxy_.config().extra_listeners = {address + "\n    tls: { cert: tls.crt, key: tls.key }"};
  proxy_.write_config();
  ASSERT_TRUE(proxy_.send_signal(SIGHUP));
  ASSERT_TRUE(proxy_.wait_for_stderr("needs a restart", kWait)) << proxy_.stderr_text();
  EXPECT_TRUE(proxy_.wait_for_stderr("reload failed", kWait));
  for (int i = 0; i < 20; ++i) EXPECT_EQ(do_request(port, "GET", "/ep1/x", auth_headers()).status, 200);
}

// L3: a reload after the drain closed the listeners must not bind new ones.
TEST_F(ServerHardeningTest, AReloadWhileDrainingBindsNoListener) {
  worker_.on("/slow", Behavior::never_answer());
  add_default_endpoint();
  add_default_key();
  proxy_.set_limit("shutdown_grace", "20s");
  start();
  // A request in flight keeps the process draining.
  TcpClient slow(proxy_.proxy_port());
  ASSERT_TRUE(slow.send(build_request("GET", "/ep1/slow", auth_headers())));
  ASSERT_TRUE(worker_.wait_for_requests(1, kWait));
  ASSERT_TRUE(proxy_.send_signal(SIGTERM));
  auto deadline = Clock::now() + kWait;
  while (!connect_refused(proxy_.proxy_port())) {  // drain_delay 0: closed at once
    ASSERT_LT(Clock::now(), deadline);
    std::this_thread::sleep_for(20ms);
  }
  const auto port = free_port();
  proxy_.config().extra_listeners = {"127.0.0.1:" + std::to_string(port)};
  proxy_.write_config();
  ASSERT_TRUE(proxy_.send_signal(SIGHUP));
  ASSERT_TRUE(proxy_.wait_for_stderr("\"reloaded\"", kWait)) << proxy_.stderr_text();
  EXPECT_TRUE(connect_refused(port)) << "a listener was bound while draining";
  EXPECT_TRUE(proxy_.wait_for_stderr("reload while draining: listeners are not changed", kWait));
  EXPECT_TRUE(proxy_.running());
  slow.close();
  EXPECT_TRUE(proxy_.wait_exit(kWait).has_value());
}

// L3: limits.max_connections takes effect on reload. With one connection
// open and max_connections 1, a second one waits in the backlog; raising
// the limit by reload lets it through at once (the acceptor resumes at its
// next sweep), not only when the first connection goes.
TEST_F(ServerHardeningTest, MaxConnectionsAppliesOnReload) {
  add_default_endpoint();
  add_default_key();
  proxy_.config().threads = 1;  // one acceptor: the limit is exact
  proxy_.set_limit("max_connections", "1");
  proxy_.set_limit("header_timeout", "20s");
  start();
  TcpClient first(proxy_.proxy_port());
  ASSERT_TRUE(first.connected());
  ASSERT_TRUE(first.send(build_request("GET", "/ep1/x", auth_headers())));
  ASSERT_EQ(first.read_response()->status, 200);  // accepted and counted; kept alive

  TcpClient second(proxy_.proxy_port(), 10000ms);
  ASSERT_TRUE(second.connected());  // the kernel's backlog takes it
  ASSERT_TRUE(second.send(build_request("GET", "/ep1/x", auth_headers())));
  second.set_timeout(500ms);
  EXPECT_FALSE(second.read_response().has_value()) << "max_connections 1 was not enforced";

  proxy_.set_limit("max_connections", "100");
  proxy_.write_config();
  ASSERT_TRUE(proxy_.send_signal(SIGHUP));
  ASSERT_TRUE(proxy_.wait_for_stderr("\"reloaded\"", kWait));
  second.set_timeout(3000ms);
  auto r = second.read_response();
  ASSERT_TRUE(r.has_value()) << "still waiting: the new max_connections was not applied";
  EXPECT_EQ(r->status, 200);
}

}  // namespace
}  // namespace frontdoor::test
