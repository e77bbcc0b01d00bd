// SPEC §3: the key store as an SQLite database (keys.store: keys.db), made
// and changed with `frontdoor keys ... --store X.db` while the server runs;
// changes reach the server by its poll of the store (one indexed query),
// usage reaches the database, and `keys import` turns a YAML store into one.
#include <signal.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "support/frontdoor_cli.hpp"
#include "support/proxy_test_base.hpp"
#include "support/text_fields.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

class SqliteStoreTest : public ProxyTest {
 protected:
  void SetUp() override {
    add_default_endpoint();
    proxy_.config().key_store = "keys.db";
  }

  // Creates the service key (ep1 read_write) and an admin key in the .db
  // with the CLI, as an operator would before the first start.
  void create_keys_with_cli() {
    std::string why;
    token_ = cli_create_key(db(), "svc", {"ep1=read_write"}, {}, &why);
    ASSERT_FALSE(token_.empty()) << why;
    admin_token_ = cli_create_key(db(), "ops", {}, "read_write", &why);
    ASSERT_FALSE(admin_token_.empty()) << why;
    key_id_ = id_of("svc");
    ASSERT_FALSE(key_id_.empty());
  }

  std::string db() const { return proxy_.store_path(); }

  // The id `keys list` shows for the key named `name` ("" if none).
  std::string id_of(const std::string& name) const {
    std::string why;
    for (const auto& row : cli_list_keys(db(), &why))
      if (row.size() == 6 && row[2] == name) return row[0];
    ADD_FAILURE() << "no key named " << name << " in keys list " << why;
    return {};
  }

  // The LAST_USED column of `keys list` for key `id` ("" if no such row).
  std::string last_used_of(const std::string& id) const {
    for (const auto& row : cli_list_keys(db()))
      if (row.size() == 6 && row[0] == id) return row[5];
    return {};
  }

  HttpResponse get_with(const std::string& token, std::string_view target) const {
    return proxy_.request("GET", target, {{"Host", "client.test"}, bearer(token)});
  }

  // The server polls the store every second: ask until `status` or the deadline.
  HttpResponse poll_until_status(const std::string& token, std::string_view target, int status,
                                 std::chrono::milliseconds timeout = kWait) const {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      auto r = get_with(token, target);
      if (r.status == status || Clock::now() >= deadline) return r;
      std::this_thread::sleep_for(25ms);
    }
  }

  std::string admin_token_;
};

TEST_F(SqliteStoreTest, ServesKeysCreatedByTheCli) {
  create_keys_with_cli();
  start();
  auto r = get("/ep1/generate");
  ASSERT_EQ(r.status, 200) << r.raw;
  ASSERT_TRUE(worker_.wait_for_requests(1, kWait));
  EXPECT_EQ(worker_.requests()[0].header("X-Frontdoor-Key-Id"), key_id_);
  EXPECT_TRUE(IsFrontdoorError(get("/ep2/x"), 403, "insufficient_scope"));
  EXPECT_TRUE(IsFrontdoorError(get_with(fresh_rpa_token(), "/ep1/x"), 401, "invalid_api_key"));
  // The admin key from the same database.
  auto keys = proxy_.admin_request("GET", "/v1/keys", {{"Host", "admin"}, bearer(admin_token_)});
  EXPECT_EQ(keys.status, 200) << keys.raw;
  EXPECT_NE(keys.body.find(key_id_), std::string::npos) << keys.body;
}

TEST_F(SqliteStoreTest, CliDisableAndEnableOnTheDbReachTheRunningServer) {
  create_keys_with_cli();
  start();
  TcpClient kept(proxy_.proxy_port());
  ASSERT_TRUE(kept.send(build_request("GET", "/ep1/before", auth_headers())));
  auto before = kept.read_response();
  ASSERT_TRUE(before && before->status == 200);

  auto disable = run_frontdoor({"keys", "disable", "--store", db(), key_id_});
  ASSERT_TRUE(disable.ok()) << disable.err;
  EXPECT_TRUE(IsFrontdoorError(poll_until_status(token_, "/ep1/x", 401), 401, "api_key_disabled"));
  ASSERT_TRUE(kept.send(build_request("GET", "/ep1/after", auth_headers())));
  auto after = kept.read_response();
  ASSERT_TRUE(after) << "kept-alive connection closed";
  EXPECT_TRUE(IsFrontdoorError(*after, 401, "api_key_disabled"));

  auto enable = run_frontdoor({"keys", "enable", "--store", db(), key_id_});
  ASSERT_TRUE(enable.ok()) << enable.err;
  EXPECT_EQ(poll_until_status(token_, "/ep1/x", 200).status, 200);
}

TEST_F(SqliteStoreTest, KeysCreatedAndDeletedByTheCliWhileRunning) {
  create_keys_with_cli();
  start();
  // A key created while the server runs works without a restart...
  std::string why;
  const std::string added = cli_create_key(db(), "late", {"ep1=read"}, {}, &why);
  ASSERT_FALSE(added.empty()) << why;
  EXPECT_EQ(poll_until_status(added, "/ep1/x", 200).status, 200);
  // ...and one deleted stops working.
  auto del = run_frontdoor({"keys", "delete", "--store", db(), id_of("late")});
  ASSERT_TRUE(del.ok()) << del.err;
  EXPECT_TRUE(IsFrontdoorError(poll_until_status(added, "/ep1/x", 401), 401, "invalid_api_key"));
  EXPECT_EQ(get("/ep1/x").status, 200);
}

TEST_F(SqliteStoreTest, UsageFlushReachesTheDb) {
  create_keys_with_cli();
  proxy_.config().last_used_flush = "200ms";
  start();
  EXPECT_EQ(last_used_of(key_id_), "-");
  ASSERT_EQ(get("/ep1/a").status, 200);
  ASSERT_EQ(get("/ep1/b").status, 200);

  // The flush runs on its own timer; the database is what we observe.
  std::string exported;
  const auto deadline = Clock::now() + kWait;
  for (;;) {
    auto r = run_frontdoor({"keys", "export", "--store", db()});
    ASSERT_TRUE(r.ok()) << r.err;
    exported = r.out;
    if (store_field(exported, key_id_, "requests_total") == "2" || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(store_field(exported, key_id_, "requests_total"), "2") << exported;
  EXPECT_NE(store_field(exported, key_id_, "last_used_at").value_or("null"), "null") << exported;
  const std::string shown = last_used_of(key_id_);
  EXPECT_FALSE(shown.empty() || shown == "-") << "keys list shows no LAST_USED";
  EXPECT_EQ(shown, store_field(exported, key_id_, "last_used_at"));

  // And it survives a restart on the same database.
  ASSERT_TRUE(proxy_.restart()) << proxy_.error();
  auto k = proxy_.admin_request("GET", "/v1/keys/" + key_id_,
                                {{"Host", "admin"}, bearer(admin_token_)});
  ASSERT_EQ(k.status, 200) << k.raw;
  EXPECT_NE(k.body.find("\"requests_total\":2"), std::string::npos) << k.body;
}

TEST_F(SqliteStoreTest, ImportAYamlStoreThenServeFromTheDb) {
  add_default_key();  // key_rw
  const std::string legacy =
      proxy_.add_key({.id = "key_legacy", .token = "legacy-token-0001", .legacy_access = "read"});
  const std::string disabled = proxy_.add_key(
      {.id = "key_off", .endpoints = {{"*", "none"}, {"ep1", "read_write"}}, .enabled = false});
  const std::string expired =
      proxy_.add_key({.id = "key_old",
                      .endpoints = {{"*", "none"}, {"ep1", "read_write"}},
                      .expires_at = "2020-01-01T00:00:00Z"});
  const std::string limited = proxy_.add_key({.id = "key_rl",
                                              .endpoints = {{"*", "read"}},
                                              .rate_limit = "{ rps: 10, burst: 5, max_concurrent: 2 }"});
  std::ofstream(proxy_.keys_path()) << proxy_.keys_yaml();
  auto import = run_frontdoor({"keys", "import", "--store", db(), proxy_.keys_path()});
  ASSERT_TRUE(import.ok()) << import.out << import.err;
  ASSERT_TRUE(std::filesystem::exists(db()));

  start();
  // The YAML file start() wrote beside it is not the store: take it away.
  std::filesystem::remove(proxy_.keys_path());

  EXPECT_EQ(get("/ep1/x").status, 200);
  EXPECT_EQ(get_with(legacy, "/ep1/x").status, 200);
  EXPECT_TRUE(IsFrontdoorError(
      proxy_.request("POST", "/ep1/x", {{"Host", "c"}, bearer(legacy)}, "{}"), 403,
      "insufficient_scope"))
      << "legacy read access came along";
  EXPECT_TRUE(IsFrontdoorError(get_with(disabled, "/ep1/x"), 401, "api_key_disabled"));
  EXPECT_TRUE(IsFrontdoorError(get_with(expired, "/ep1/x"), 401, "api_key_expired"));
  auto rl = get_with(limited, "/ep1/x");
  EXPECT_EQ(rl.status, 200) << rl.raw;
  EXPECT_EQ(rl.header("RateLimit-Limit"), "5") << "rate_limit came along: " << rl.raw;

  // A reload reads the database again, with no YAML store in sight.
  const std::size_t reloads = [&] {
    std::size_t n = 0;
    for (const auto& o : proxy_.log_lines()) n += json_str(o, "msg") == "reloaded";
    return n;
  }();
  ASSERT_TRUE(proxy_.send_signal(SIGHUP));
  EXPECT_TRUE(proxy_.wait_for_log(
      [](const json::object& o) { return json_str(o, "msg") == "reloaded"; }, reloads + 1, kWait));
  EXPECT_EQ(get("/ep1/y").status, 200);

  // The database exports back to the same keys.
  auto exported = run_frontdoor({"keys", "export", "--store", db()});
  ASSERT_TRUE(exported.ok()) << exported.err;
  for (const char* id : {"key_rw", "key_legacy", "key_off", "key_old", "key_rl"})
    EXPECT_TRUE(store_field(exported.out, id, "hash")) << id << " missing:\n" << exported.out;
  EXPECT_EQ(store_field(exported.out, "key_off", "enabled"), "false");
}

}  // namespace
}  // namespace frontdoor::test
