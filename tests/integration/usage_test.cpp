// SPEC §3 and §2 keys.last_used_flush: frontdoor maintains last_used_at and
// requests_total per key, writes them to the store every last_used_flush and
// at shutdown (so they survive a restart), merges with what the keys CLI
// changed meanwhile (the copy on disk wins but for usage; a key deleted on
// disk stays deleted) and writes nothing when no usage changed.
#include <signal.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <thread>

#include "support/frontdoor_cli.hpp"
#include "support/proxy_test_base.hpp"
#include "support/text_fields.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool has_key(const std::string& yaml, const std::string& id) {
  return store_field(yaml, id, "hash").has_value();
}

std::int64_t requests_total(const std::string& yaml, const std::string& id) {
  auto v = store_field(yaml, id, "requests_total");
  return v ? std::stoll(*v) : 0;  // written only when not 0
}

// Unix seconds of an RFC 3339 UTC timestamp "YYYY-MM-DDTHH:MM:SSZ"; -1 otherwise.
std::int64_t unix_of(const std::string& t) {
  std::tm tm{};
  std::istringstream in(t);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
  if (in.fail()) return -1;
  return static_cast<std::int64_t>(::timegm(&tm));
}

std::int64_t now_unix() { return static_cast<std::int64_t>(std::time(nullptr)); }

struct Stamp {
  ino_t ino = 0;
  off_t size = -1;
  timespec mtime{};
  bool operator==(const Stamp& o) const {
    return ino == o.ino && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
           mtime.tv_nsec == o.mtime.tv_nsec;
  }
};

Stamp stamp_of(const std::string& path) {
  struct stat st {};
  Stamp s;
  if (::stat(path.c_str(), &st) == 0) {
    s.ino = st.st_ino;
    s.size = st.st_size;
    s.mtime = st.st_mtim;
  }
  return s;
}

class UsageTest : public ProxyTest {
 protected:
  void SetUp() override {
    add_default_endpoint();
    add_default_key();  // key_rw
    other_token_ =
        proxy_.add_key({.id = "key_other", .endpoints = {{"*", "none"}, {"ep1", "read_write"}}});
    admin_token_ = proxy_.add_key({.id = "key_admin", .management = "read"});
  }

  HttpResponse get_with(const std::string& token, std::string_view target) const {
    return proxy_.request("GET", target, {{"Host", "client.test"}, bearer(token)});
  }

  // Polls the store file until `pred(text)` holds: the flush runs on its own
  // timer, and the file is what this test observes.
  bool wait_for_store(const std::function<bool(const std::string&)>& pred,
                      std::chrono::milliseconds timeout = kWait) const {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (pred(read_file(proxy_.keys_path()))) return true;
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(20ms);
    }
  }

  // GET /v1/keys/{id} through the admin API ({} on failure).
  json::object admin_key(const std::string& id) const {
    auto r = proxy_.admin_request("GET", "/v1/keys/" + id, {{"Host", "admin"}, bearer(admin_token_)});
    boost::system::error_code ec;
    auto v = json::parse(r.body, ec);
    if (r.status != 200 || ec || !v.is_object()) {
      ADD_FAILURE() << "GET /v1/keys/" << id << ": " << r.raw;
      return {};
    }
    auto* k = v.as_object().if_contains("key");
    return k && k->is_object() ? k->as_object() : v.as_object();
  }

  std::string other_token_, admin_token_;
};

TEST_F(UsageTest, PeriodicFlushWritesLastUsedAndRequestsTotal) {
  proxy_.config().last_used_flush = "200ms";
  start();
  const auto t0 = now_unix();
  {
    const std::string yaml = read_file(proxy_.keys_path());
    ASSERT_EQ(store_field(yaml, key_id_, "last_used_at"), "null");
    ASSERT_EQ(requests_total(yaml, key_id_), 0);
  }
  for (int i = 0; i < 3; ++i) ASSERT_EQ(get("/ep1/x").status, 200);

  EXPECT_TRUE(wait_for_store(
      [&](const std::string& y) { return requests_total(y, key_id_) == 3; }))
      << read_file(proxy_.keys_path());
  const std::string yaml = read_file(proxy_.keys_path());
  const auto used = unix_of(store_field(yaml, key_id_, "last_used_at").value_or(""));
  EXPECT_GE(used, t0 - 1) << yaml;
  EXPECT_LE(used, now_unix() + 1) << yaml;
  // Keys nobody used keep no usage.
  EXPECT_EQ(store_field(yaml, "key_other", "last_used_at"), "null");
  EXPECT_EQ(requests_total(yaml, "key_other"), 0);

  // The next flush adds to what was written, it does not start over.
  ASSERT_EQ(get("/ep1/y").status, 200);
  EXPECT_TRUE(wait_for_store(
      [&](const std::string& y) { return requests_total(y, key_id_) == 4; }))
      << read_file(proxy_.keys_path());
}

TEST_F(UsageTest, ShutdownFlushesAndUsageSurvivesARestart) {
  proxy_.config().last_used_flush = "1h";  // only the shutdown flush writes
  start();
  const auto t0 = now_unix();
  ASSERT_EQ(get("/ep1/a").status, 200);
  ASSERT_EQ(get("/ep1/b").status, 200);
  EXPECT_EQ(requests_total(read_file(proxy_.keys_path()), key_id_), 0) << "flushed too early";

  ASSERT_TRUE(proxy_.send_signal(SIGTERM));
  ASSERT_EQ(proxy_.wait_exit(kWait), 0);
  std::string yaml = read_file(proxy_.keys_path());
  EXPECT_EQ(requests_total(yaml, key_id_), 2) << yaml;
  const auto used = unix_of(store_field(yaml, key_id_, "last_used_at").value_or(""));
  EXPECT_GE(used, t0 - 1) << yaml;
  EXPECT_LE(used, now_unix() + 1) << yaml;

  // `keys list` shows it.
  std::string why;
  auto rows = cli_list_keys(proxy_.keys_path(), &why);
  ASSERT_FALSE(rows.empty()) << why;
  bool listed = false;
  for (const auto& row : rows) {
    if (row.size() == 6 && row[0] == key_id_) {
      listed = true;
      EXPECT_EQ(unix_of(row[5]), used) << "LAST_USED column: " << row[5];
    }
  }
  EXPECT_TRUE(listed);

  // A new server on the same files starts from the stored usage.
  ASSERT_TRUE(proxy_.restart()) << proxy_.error();
  auto k = admin_key(key_id_);
  EXPECT_EQ(json_int(k, "requests_total"), 2) << json::serialize(k);
  EXPECT_EQ(unix_of(json_str(k, "last_used_at")), used) << json::serialize(k);

  ASSERT_EQ(get("/ep1/c").status, 200);
  EXPECT_EQ(json_int(admin_key(key_id_), "requests_total"), 3);
  ASSERT_TRUE(proxy_.send_signal(SIGTERM));
  ASSERT_EQ(proxy_.wait_exit(kWait), 0);
  yaml = read_file(proxy_.keys_path());
  EXPECT_EQ(requests_total(yaml, key_id_), 3) << "counted on from the stored total:\n" << yaml;
}

TEST_F(UsageTest, FlushKeepsAKeyDisabledByTheCliMeanwhile) {
  proxy_.config().last_used_flush = "200ms";
  start();
  ASSERT_EQ(get("/ep1/a").status, 200);
  ASSERT_EQ(get("/ep1/b").status, 200);
  // The CLI disables key_rw while its usage may not be flushed yet.
  auto cli = run_frontdoor({"keys", "disable", "--store", proxy_.keys_path(), key_id_});
  ASSERT_TRUE(cli.ok()) << cli.err;
  // Usage of another key after the disable: a flush after it must merge
  // with the file the CLI wrote.
  ASSERT_EQ(get_with(other_token_, "/ep1/c").status, 200);

  EXPECT_TRUE(wait_for_store([&](const std::string& y) {
    return requests_total(y, "key_other") == 1 && requests_total(y, key_id_) == 2;
  })) << read_file(proxy_.keys_path());
  std::string yaml = read_file(proxy_.keys_path());
  EXPECT_EQ(store_field(yaml, key_id_, "enabled"), "false") << "a flush re-enabled the key:\n"
                                                            << yaml;
  // And the server itself sees the disable (file watch). Until then the
  // key still works, and each of those requests is usage too.
  const auto deadline = Clock::now() + kWait;
  HttpResponse r;
  std::int64_t served = 2;
  do {
    r = get("/ep1/d");
    if (r.status != 200) break;
    ++served;
    std::this_thread::sleep_for(25ms);
  } while (Clock::now() < deadline);
  EXPECT_TRUE(IsFrontdoorError(r, 401, "api_key_disabled"));

  // More usage and flushes later, still disabled.
  ASSERT_EQ(get_with(other_token_, "/ep1/e").status, 200);
  EXPECT_TRUE(wait_for_store([&](const std::string& y) {
    return requests_total(y, "key_other") == 2 && requests_total(y, key_id_) == served;
  })) << "refused requests of a disabled key are not counted; expected " << served;
  yaml = read_file(proxy_.keys_path());
  EXPECT_EQ(store_field(yaml, key_id_, "enabled"), "false") << yaml;
}

TEST_F(UsageTest, FlushDoesNotResurrectAKeyDeletedByTheCli) {
  proxy_.config().last_used_flush = "200ms";
  start();
  // Usage for key_rw, then deleted on disk before (or after) it is flushed.
  ASSERT_EQ(get("/ep1/a").status, 200);
  auto cli = run_frontdoor({"keys", "delete", "--store", proxy_.keys_path(), key_id_});
  ASSERT_TRUE(cli.ok()) << cli.err;
  ASSERT_EQ(get_with(other_token_, "/ep1/b").status, 200);
  EXPECT_TRUE(
      wait_for_store([&](const std::string& y) { return requests_total(y, "key_other") == 1; }))
      << read_file(proxy_.keys_path());
  // One more flush period with usage of key_rw pending (if it still works
  // until the watch reloads, that is more usage for a deleted key).
  get("/ep1/c");
  ASSERT_EQ(get_with(other_token_, "/ep1/d").status, 200);
  EXPECT_TRUE(
      wait_for_store([&](const std::string& y) { return requests_total(y, "key_other") == 2; }));
  const std::string yaml = read_file(proxy_.keys_path());
  EXPECT_FALSE(has_key(yaml, key_id_)) << "a flush brought a deleted key back:\n" << yaml;
  EXPECT_TRUE(has_key(yaml, "key_admin"));
}

TEST_F(UsageTest, NoRewriteWhenNoUsageChanged) {
  proxy_.config().last_used_flush = "200ms";
  start();
  // Nothing to observe but the absence of writes: let five flush periods
  // (and a file-watch poll) pass, then compare.
  const Stamp initial = stamp_of(proxy_.keys_path());
  std::this_thread::sleep_for(1100ms);
  EXPECT_TRUE(stamp_of(proxy_.keys_path()) == initial) << "store rewritten with no request made";

  // One request: one write...
  ASSERT_EQ(get("/ep1/x").status, 200);
  ASSERT_TRUE(wait_for_store([&](const std::string& y) { return requests_total(y, key_id_) == 1; }));
  const Stamp after_use = stamp_of(proxy_.keys_path());
  EXPECT_FALSE(after_use == initial);
  // ...and then none while nothing is used.
  std::this_thread::sleep_for(1100ms);
  EXPECT_TRUE(stamp_of(proxy_.keys_path()) == after_use) << "store rewritten with no new usage";
}

}  // namespace
}  // namespace frontdoor::test
