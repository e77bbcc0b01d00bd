// SPEC §1 (SIGHUP), §2 ("a reload that fails validation keeps the running
// configuration"), §3 (hand edits take effect at the next reload: SIGHUP or
// the file watch; the keys CLI may write the store of a running server):
// reloads of the configuration and of the key store against the real binary.
// Listeners, endpoints and workers come and go by reload; a bad config or a
// corrupt store keeps what runs; a stream in flight is never cut.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <thread>

#include "support/frontdoor_cli.hpp"
#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

// A port that was free a moment ago on 127.0.0.1 (for a listener added by
// reload: "127.0.0.1:0" is already the first listener's identity).
std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  std::uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

bool msg_is(const json::object& o, std::string_view msg) { return json_str(o, "msg") == msg; }

class ReloadTest : public ProxyTest {
 protected:
  void SetUp() override {
    add_default_endpoint();
    add_default_key();  // key_rw: ep1 read_write, "*" none
    all_token_ = proxy_.add_key({.id = "key_all", .endpoints = {{"*", "read_write"}}});
    admin_token_ = proxy_.add_key({.id = "key_admin", .management = "read_write"});
  }

  std::size_t count_log(std::string_view msg) const {
    std::size_t n = 0;
    for (const auto& o : proxy_.log_lines())
      if (msg_is(o, msg)) ++n;
    return n;
  }

  // SIGHUP, then waits for the log line that the reload it causes ends with
  // (`msg`: "reloaded" or "reload failed: ..."), counting from now.
  ::testing::AssertionResult sighup_and_wait(std::string_view msg = "reloaded") {
    const std::size_t before = count_log(msg);
    if (!proxy_.send_signal(SIGHUP)) return ::testing::AssertionFailure() << "kill(SIGHUP) failed";
    if (!proxy_.wait_for_log([&](const json::object& o) { return msg_is(o, msg); }, before + 1,
                             kWait))
      return ::testing::AssertionFailure() << "no \"" << msg << "\" log line after SIGHUP";
    return ::testing::AssertionSuccess();
  }

  HttpResponse get_with(const std::string& token, std::string_view target,
                        std::uint16_t port = 0) const {
    return do_request(port ? port : proxy_.proxy_port(), "GET", target,
                      {{"Host", "client.test"}, bearer(token)});
  }

  // Polls `target` with `token` until the answer has `status` (a state the
  // file watch reaches within about a second: there is no event to await).
  HttpResponse poll_until_status(const std::string& token, std::string_view target, int status,
                                 std::chrono::milliseconds timeout = kWait) const {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      auto r = get_with(token, target);
      if (r.status == status || Clock::now() >= deadline) return r;
      std::this_thread::sleep_for(25ms);
    }
  }

  std::string all_token_, admin_token_;
};

TEST_F(ReloadTest, SighupLoadsAKeyAddedToTheStoreByHand) {
  start();
  const std::string fresh =
      proxy_.add_key({.id = "key_new", .endpoints = {{"*", "none"}, {"ep1", "read"}}});
  EXPECT_TRUE(IsFrontdoorError(get_with(fresh, "/ep1/x"), 401, "invalid_api_key"));

  proxy_.write_keys();  // the store as an editor would save it
  ASSERT_TRUE(sighup_and_wait());
  auto r = get_with(fresh, "/ep1/x");
  EXPECT_EQ(r.status, 200) << r.raw;
  // The scopes came with it: read only.
  EXPECT_TRUE(IsFrontdoorError(
      proxy_.request("POST", "/ep1/x", {{"Host", "client.test"}, bearer(fresh)}, "{}"), 403,
      "insufficient_scope"));
  EXPECT_EQ(get("/ep1/x").status, 200) << "the keys that were there still work";
}

TEST_F(ReloadTest, CorruptStoreKeepsTheRunningKeys) {
  start();
  TcpClient kept(proxy_.proxy_port());
  ASSERT_TRUE(kept.send(build_request("GET", "/ep1/before", auth_headers())));
  auto before = kept.read_response();
  ASSERT_TRUE(before && before->status == 200);

  // Truncated in the middle of a quoted scalar: not YAML any more.
  ProxyHarness::write_file_atomic(proxy_.keys_path(),
                                  "keys:\n  - id: key_rw\n    name: \"unterminated\n    hash: ");
  ASSERT_TRUE(sighup_and_wait("reload failed: key store kept"));
  EXPECT_NE(proxy_.stderr_text().find("reload failed"), std::string::npos);

  EXPECT_EQ(get("/ep1/x").status, 200) << "old keys keep working";
  EXPECT_EQ(get_with(all_token_, "/ep1/x").status, 200);
  ASSERT_TRUE(kept.send(build_request("GET", "/ep1/after", auth_headers())));
  auto after = kept.read_response();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200) << after->raw;
  EXPECT_EQ(do_request(proxy_.admin_port(), "GET", "/readyz", {{"Host", "a"}}).status, 200);

  // A store that parses but does not validate (a key without a hash) is
  // refused the same way.
  ProxyHarness::write_file_atomic(proxy_.keys_path(), "keys:\n  - id: key_rw\n    name: x\n");
  ASSERT_TRUE(sighup_and_wait("reload failed: key store kept"));
  EXPECT_EQ(get("/ep1/x").status, 200);

  // Repaired: the next reload takes it, without the key removed meanwhile.
  proxy_.remove_key("key_all");
  proxy_.write_keys();
  ASSERT_TRUE(sighup_and_wait());
  EXPECT_EQ(get("/ep1/x").status, 200);
  EXPECT_TRUE(IsFrontdoorError(get_with(all_token_, "/ep1/x"), 401, "invalid_api_key"));
}

TEST_F(ReloadTest, BadConfigKeepsTheRunningConfiguration) {
  start();
  // Would remove ep1, but carries an unknown field: refused as a whole.
  proxy_.remove_endpoint("ep1");
  ProxyHarness::write_file_atomic(proxy_.config_path(),
                                  proxy_.config_yaml() + "no_such_field: 1\n");
  ASSERT_TRUE(sighup_and_wait("reload failed: configuration kept"));
  EXPECT_NE(proxy_.stderr_text().find("no_such_field"), std::string::npos)
      << "the failure names the field";

  auto r = get("/ep1/x");
  EXPECT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(do_request(proxy_.admin_port(), "GET", "/readyz", {{"Host", "a"}}).status, 200);
  EXPECT_TRUE(proxy_.running());
}

TEST_F(ReloadTest, ReloadAddsAndRemovesEndpoints) {
  FakeWorker second;
  ASSERT_TRUE(second.ok());
  start();
  EXPECT_TRUE(IsFrontdoorError(get_with(all_token_, "/ep2/x"), 404, "endpoint_not_found"));

  proxy_.add_endpoint({.id = "ep2", .workers = {second.url()}});
  proxy_.write_config();
  ASSERT_TRUE(sighup_and_wait());
  auto r = get_with(all_token_, "/ep2/generate");
  EXPECT_EQ(r.status, 200) << r.raw;
  ASSERT_TRUE(second.wait_for_requests(1, kWait));
  EXPECT_EQ(second.requests()[0].target, "/generate");
  EXPECT_EQ(worker_.request_count(), 0u) << "the new endpoint's traffic went to its own worker";

  proxy_.remove_endpoint("ep1");
  proxy_.write_config();
  ASSERT_TRUE(sighup_and_wait());
  EXPECT_TRUE(IsFrontdoorError(get_with(all_token_, "/ep1/x"), 404, "endpoint_not_found"));
  // key_rw's scopes name ep1: it learns that ep1 is gone. A key without
  // access to ep1 gets 403, as it would if ep1 existed.
  EXPECT_TRUE(IsFrontdoorError(get("/ep1/x"), 404, "endpoint_not_found"));
  EXPECT_TRUE(IsFrontdoorError(get_with(admin_token_, "/ep1/x"), 403, "insufficient_scope"));
  EXPECT_EQ(get_with(all_token_, "/ep2/again").status, 200);
  EXPECT_EQ(worker_.request_count(), 0u);
}

TEST_F(ReloadTest, ReloadAddsAndRemovesAListener) {
  start();
  const std::uint16_t port = free_port();
  ASSERT_NE(port, 0);
  const std::string address = "127.0.0.1:" + std::to_string(port);

  proxy_.config().extra_listeners = {address};
  proxy_.write_config();
  ASSERT_TRUE(sighup_and_wait());
  EXPECT_TRUE(proxy_.wait_for_log(
      [&](const json::object& o) {
        return msg_is(o, "listening") && json_str(o, "listener") == "proxy" &&
               json_str(o, "address") == address;
      },
      1, kWait));
  auto r = get_with(token_, "/ep1/on-new-listener", port);
  EXPECT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(get("/ep1/on-old-listener").status, 200);

  // A connection accepted before the listener goes away is served to its end.
  TcpClient kept(port);
  ASSERT_TRUE(kept.connected());
  ASSERT_TRUE(kept.send(build_request("GET", "/ep1/kept-1", auth_headers())));
  auto first = kept.read_response();
  ASSERT_TRUE(first && first->status == 200);

  proxy_.config().extra_listeners.clear();
  proxy_.write_config();
  ASSERT_TRUE(sighup_and_wait());
  EXPECT_TRUE(proxy_.wait_for_log(
      [&](const json::object& o) {
        return msg_is(o, "listener closed") && json_str(o, "address") == address;
      },
      1, kWait));
  // The acceptors close on their own threads just after the log line.
  bool refused = false;
  for (auto deadline = Clock::now() + kWait; !refused && Clock::now() < deadline;) {
    TcpClient probe(port, 1000ms);
    refused = !probe.connected();
    if (!refused) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(refused) << "the removed listener still accepts connections";
  EXPECT_EQ(get("/ep1/x").status, 200) << "the configured listener stays";

  ASSERT_TRUE(kept.send(build_request("GET", "/ep1/kept-2", auth_headers())));
  auto second = kept.read_response();
  ASSERT_TRUE(second) << "a connection accepted before was cut";
  EXPECT_EQ(second->status, 200) << second->raw;
}

TEST_F(ReloadTest, ConfigFileWatchAppliesAnEditWithoutASignal) {
  FakeWorker second;
  ASSERT_TRUE(second.ok());
  start();
  EXPECT_TRUE(IsFrontdoorError(get_with(all_token_, "/ep2/x"), 404, "endpoint_not_found"));

  proxy_.add_endpoint({.id = "ep2", .workers = {second.url()}});
  proxy_.write_config();  // no SIGHUP: the file watch (1 s) must see it
  auto r = poll_until_status(all_token_, "/ep2/x", 200);
  EXPECT_EQ(r.status, 200) << r.raw;
  EXPECT_TRUE(proxy_.wait_for_log(
      [](const json::object& o) { return msg_is(o, "configuration file changed: reloading"); }, 1,
      kWait));
  EXPECT_TRUE(second.wait_for_requests(1, kWait));
}

TEST_F(ReloadTest, KeyStoreWatchAppliesAHandEditWithoutASignal) {
  start();
  ASSERT_EQ(get_with(all_token_, "/ep1/x").status, 200);
  proxy_.remove_key("key_all");
  proxy_.write_keys();  // no SIGHUP: the store is polled every second
  EXPECT_TRUE(
      IsFrontdoorError(poll_until_status(all_token_, "/ep1/x", 401), 401, "invalid_api_key"));
  EXPECT_EQ(get("/ep1/x").status, 200);
}

TEST_F(ReloadTest, StreamInFlightSurvivesAReloadThatRemovesItsEndpoint) {
  constexpr int kEvents = 12;
  worker_.on("/stream", Behavior::sse(kEvents, 100ms));
  start();

  TcpClient c(proxy_.proxy_port());
  ASSERT_TRUE(c.send(build_request("GET", "/ep1/stream", auth_headers())));
  auto head = c.read_head();
  ASSERT_TRUE(head);
  ASSERT_EQ(head->status, 200) << head->raw;
  ASSERT_TRUE(head->chunked);
  std::string got;
  auto ch = c.read_chunk();
  ASSERT_TRUE(ch && !ch->data.empty());
  got += ch->data;

  proxy_.remove_endpoint("ep1");
  proxy_.write_config();
  ASSERT_TRUE(sighup_and_wait());
  // The new configuration holds for new requests while the stream goes on.
  EXPECT_TRUE(IsFrontdoorError(get_with(all_token_, "/ep1/x"), 404, "endpoint_not_found"));
  EXPECT_GE(worker_.in_flight(), 1) << "the stream should still be running (test too slow?)";

  for (;;) {
    auto next = c.read_chunk();
    ASSERT_TRUE(next) << "stream cut after " << got.size() << " bytes";
    if (next->data.empty()) break;
    got += next->data;
  }
  std::string expected;
  for (int i = 0; i < kEvents; ++i) expected += "data: {\"n\":" + std::to_string(i) + "}\n\n";
  EXPECT_EQ(got, expected);
  EXPECT_EQ(worker_.peer_aborts(), 0);
}

TEST_F(ReloadTest, CliDisableWhileRunningRevokesWithinABoundedWait) {
  start();
  TcpClient kept(proxy_.proxy_port());
  ASSERT_TRUE(kept.send(build_request("GET", "/ep1/before", auth_headers())));
  auto before = kept.read_response();
  ASSERT_TRUE(before && before->status == 200);

  auto cli = run_frontdoor({"keys", "disable", "--store", proxy_.keys_path(), key_id_});
  ASSERT_TRUE(cli.ok()) << cli.err;

  EXPECT_TRUE(IsFrontdoorError(poll_until_status(token_, "/ep1/x", 401), 401, "api_key_disabled"));
  // The connection kept alive from before is refused too.
  ASSERT_TRUE(kept.send(build_request("GET", "/ep1/after", auth_headers())));
  auto after = kept.read_response();
  ASSERT_TRUE(after) << "kept-alive connection closed";
  EXPECT_TRUE(IsFrontdoorError(*after, 401, "api_key_disabled"));
  EXPECT_EQ(get_with(all_token_, "/ep1/x").status, 200) << "other keys unaffected";

  auto enable = run_frontdoor({"keys", "enable", "--store", proxy_.keys_path(), key_id_});
  ASSERT_TRUE(enable.ok()) << enable.err;
  EXPECT_EQ(poll_until_status(token_, "/ep1/x", 200).status, 200);
}

}  // namespace
}  // namespace frontdoor::test
