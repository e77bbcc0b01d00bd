// Key store hardening against the real binary (review findings H3, H4):
// a `frontdoor keys disable` on an SQLite store always reaches a running
// server, also for a key in continuous use whose usage is flushed all the
// time; and a key with an unusual Unicode name, created through the admin
// API on a YAML store, survives a restart with its name exactly as given.
#include <atomic>
#include <boost/json.hpp>
#include <thread>

#include "support/frontdoor_cli.hpp"
#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

json::object parse_object(const std::string& body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object()) return {};
  return v.as_object();
}

std::string hex_of(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    out += kHex[c >> 4];
    out += kHex[c & 15];
    out += ' ';
  }
  return out;
}

// ---------------------------------------------------------------- H3

// Sends requests with one token on a kept-alive connection until stopped,
// a few hundred per second: the key is "in use" in every usage flush.
class Hammer {
 public:
  Hammer(std::uint16_t port, std::string token) : port_(port), token_(std::move(token)) {
    thread_ = std::thread([this] { run(); });
  }
  ~Hammer() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::size_t ok() const { return ok_.load(); }

 private:
  void run() {
    std::unique_ptr<TcpClient> c;
    const std::string req = build_request(
        "GET", "/ep1/hammer", {{"Host", "client.test"}, {"Authorization", "Bearer " + token_}});
    while (!stop_) {
      if (!c || !c->connected()) c = std::make_unique<TcpClient>(port_, 2000ms);
      auto r = c->send(req) ? c->read_response() : std::nullopt;
      if (!r) {
        c.reset();
      } else if (r->status == 200) {
        ++ok_;
      }
      // Pacing, not synchronisation: enough for every 200 ms flush to see
      // new usage, without taking a shared CPU away from the server.
      std::this_thread::sleep_for(3ms);
    }
  }

  std::uint16_t port_;
  std::string token_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> ok_{0};
  std::thread thread_;
};

class SqliteRevocationTest : public ProxyTest {
 protected:
  void SetUp() override {
    add_default_endpoint();
    proxy_.config().key_store = "keys.db";
    proxy_.config().last_used_flush = "200ms";  // flushes far more often than the 1 s poll
  }

  std::string db() const { return proxy_.store_path(); }

  // Asks with the token until the answer is `status` (and, for a frontdoor
  // error, `code`) or the deadline: the server polls the store every second.
  bool answers_within(const std::string& token, int status, std::string_view code,
                      std::chrono::milliseconds within, HttpResponse* last) const {
    const auto deadline = Clock::now() + within;
    for (;;) {
      *last = proxy_.request("GET", "/ep1/check", {{"Host", "client.test"}, bearer(token)});
      const bool match = last->status == status &&
                         (code.empty() || last->header("X-Frontdoor-Error") == std::string(code));
      if (match) return true;
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(20ms);
    }
  }
};

TEST_F(SqliteRevocationTest, CliDisableOfAKeyInContinuousUseAlwaysLands) {
  std::string why;
  token_ = cli_create_key(db(), "busy", {"ep1=read_write"}, {}, &why);
  ASSERT_FALSE(token_.empty()) << why;
  std::string id;
  for (const auto& row : cli_list_keys(db(), &why))
    if (row.size() == 6 && row[2] == "busy") id = row[0];
  ASSERT_FALSE(id.empty()) << why;
  start();

  Hammer hammer(proxy_.proxy_port(), token_);
  constexpr int kCycles = 10;
  for (int cycle = 1; cycle <= kCycles; ++cycle) {
    // The key is in use right now: its usage is flushed every 200 ms.
    const std::size_t before = hammer.ok();
    const auto used_deadline = Clock::now() + kWait;
    while (hammer.ok() < before + 20 && Clock::now() < used_deadline) std::this_thread::sleep_for(5ms);
    ASSERT_GE(hammer.ok(), before + 20) << "cycle " << cycle << ": the key is not in use";

    auto disable = run_frontdoor({"keys", "disable", "--store", db(), id});
    ASSERT_TRUE(disable.ok()) << disable.err;
    HttpResponse last;
    ASSERT_TRUE(answers_within(token_, 401, "api_key_disabled", 3s, &last))
        << "cycle " << cycle << " of " << kCycles
        << ": the CLI's disable did not reach the server within 3 s (hidden by a usage flush?)\n"
        << last.raw;
    EXPECT_TRUE(IsFrontdoorError(last, 401, "api_key_disabled"));

    auto enable = run_frontdoor({"keys", "enable", "--store", db(), id});
    ASSERT_TRUE(enable.ok()) << enable.err;
    ASSERT_TRUE(answers_within(token_, 200, "", 3s, &last))
        << "cycle " << cycle << ": the CLI's enable did not reach the server within 3 s\n"
        << last.raw;
  }
  hammer.stop();
}

// ---------------------------------------------------------------- H4

class UnicodeNamesTest : public ProxyTest {
 protected:
  void SetUp() override {
    add_default_endpoint();
    add_default_key();
    admin_token_ = proxy_.add_key({.id = "key_admin", .name = "admin", .management = "read_write"});
    start();
  }

  HttpResponse api(std::string_view method, std::string_view target, std::string_view body = {}) {
    Headers h{{"Host", "admin"}, bearer(admin_token_)};
    if (!body.empty()) h.emplace_back("Content-Type", "application/json");
    return do_request(proxy_.admin_port(), method, target, h, body);
  }

  std::string admin_token_;
};

TEST_F(UnicodeNamesTest, NamesSurviveARestartExactlyAndControlsAreRefused) {
  // JSON escapes, so that the test sends exactly these code points.
  struct Named {
    std::string json;  // the name as a JSON string body
    std::string utf8;  // what GET must return
  };
  const std::vector<Named> names = {
      {R"("nbsp\u00a0here")", "nbsp\xc2\xa0here"},
      {R"("\ud83d\ude00 \ud83d\udc69\u200d\ud83d\udcbb")",
       "\xf0\x9f\x98\x80 \xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb"},
      {R"("\u65e5\u672c\u8a9e")", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"},
      {R"("e\u0301\u0327 combining")", "e\xcc\x81\xcc\xa7 combining"},
      {R"("\u05e9\u05dc\u05d5\u05dd \u0633\u0644\u0627\u0645")",
       "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d \xd8\xb3\xd9\x84\xd8\xa7\xd9\x85"},
      {R"("line\u2028sep")", "line\xe2\x80\xa8sep"},
      {R"("para\u2029sep")", "para\xe2\x80\xa9sep"},
      {R"("\ufeffbom")", "\xef\xbb\xbf" "bom"},
      {R"("\u200frtl mark")", "\xe2\x80\x8frtl mark"},
      {R"(" \"quoted\" \\ # : - null ")", " \"quoted\" \\ # : - null "},
      {R"("\udbff\udffd")", "\xf4\x8f\xbf\xbd"},  // U+10FFFD
  };
  std::vector<std::pair<std::string, std::string>> created;  // id, token
  for (const auto& n : names) {
    auto r = api("POST", "/v1/keys", R"({"name":)" + n.json + R"(,"endpoints":{"ep1":"read"}})");
    ASSERT_EQ(r.status, 201) << n.json << "\n" << r.raw;
    auto o = parse_object(r.body);
    const auto* key = o.if_contains("key");
    ASSERT_TRUE(key && key->is_object()) << r.raw;
    EXPECT_EQ(json_str(key->as_object(), "name"), n.utf8) << n.json;
    created.emplace_back(json_str(key->as_object(), "id"), json_str(o, "token"));
  }

  // Control characters (C1 too, NEL among them) and noncharacters are
  // refused naming the field; nothing is written for them.
  for (const char* bad : {R"("a\u0085b")", R"("\u0080")", R"("x\u009b[31m")", R"("\u009f")",
                          R"("\ufffe")", R"("\uffff")", R"("\ufdd0")", R"("tab\there")"}) {
    auto r = api("POST", "/v1/keys", std::string(R"({"name":)") + bad + "}");
    EXPECT_EQ(r.status, 400) << bad << "\n" << r.raw;
    auto err = parse_object(r.body);
    const auto* e = err.if_contains("error");
    ASSERT_TRUE(e && e->is_object()) << r.raw;
    EXPECT_EQ(json_str(e->as_object(), "field"), "name") << bad;
    EXPECT_EQ(json_str(e->as_object(), "code"), "invalid_body") << bad;
  }
  // A rename to such a name is refused the same way.
  auto patch = api("PATCH", "/v1/keys/" + created[0].first, R"({"name":"a\u0085b"})");
  EXPECT_EQ(patch.status, 400) << patch.raw;

  // Later writes of the store (another create, a usage flush) still work,
  // and a restart reads the file back.
  auto later = api("POST", "/v1/keys", R"({"name":"after"})");
  EXPECT_EQ(later.status, 201) << "the store no longer takes writes:\n" << later.raw;
  ASSERT_TRUE(proxy_.restart()) << "frontdoor does not start on the store it wrote: "
                                << proxy_.error() << "\n"
                                << proxy_.stderr_text();

  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto& [id, token] = created[i];
    auto r = api("GET", "/v1/keys/" + id);
    ASSERT_EQ(r.status, 200) << r.raw;
    auto o = parse_object(r.body);
    const auto* key = o.if_contains("key");
    ASSERT_TRUE(key && key->is_object()) << r.raw;
    const std::string got = json_str(key->as_object(), "name");
    EXPECT_EQ(got, names[i].utf8) << names[i].json << ": got " << hex_of(got);
    auto use = proxy_.request("GET", "/ep1/x", {{"Host", "client.test"}, bearer(token)});
    EXPECT_EQ(use.status, 200) << names[i].json << "\n" << use.raw;
  }
}

}  // namespace
}  // namespace frontdoor::test
