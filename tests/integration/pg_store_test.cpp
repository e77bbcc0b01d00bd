// The PostgreSQL key store (SPEC §3.1) through its own interface, against a
// real PostgreSQL 15: schema, writes, the change feed (with a transaction
// held open while others commit), bad rows, usage, outages, secrets.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "frontdoor/auth/key_store.hpp"
#include "frontdoor/auth/store.hpp"
#include "frontdoor/auth/token.hpp"
#include "support/pg_server.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;
using auth::Key;

// One server for the suite; each test gets a database of its own.
class PgStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new PgServer();
    std::string err;
    if (!server_->start(&err)) {
      start_error_ = err;
      delete server_;
      server_ = nullptr;
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(server_, nullptr) << start_error_;
    static int n = 0;
    db_ = "store_test_" + std::to_string(++n);
    std::string err;
    ASSERT_TRUE(server_->superuser_exec("CREATE DATABASE " + db_ + " OWNER frontdoor", &err)) << err;
  }

  PgServer& pg() { return *server_; }
  // The store's URI for this test's database (with the password).
  std::string uri() const {
    std::string u = server_->uri_with_password();
    return u.substr(0, u.rfind('/') + 1) + db_;
  }
  std::string migrate() { return auth::migrate_pg_store(uri()); }
  // An outside writer on this test's database.
  bool sql(const std::string& statements) {
    PgSession s(server_->socket_conninfo(PgRole::kOwner, db_));
    std::string err;
    const bool ok = s.ok() && s.exec(statements, &err);
    EXPECT_TRUE(ok) << statements << ": " << (s.ok() ? err : s.error());
    return ok;
  }
  PgSession session() { return PgSession(server_->socket_conninfo(PgRole::kOwner, db_)); }

  static Key key(const std::string& id, const std::string& token) {
    Key k;
    k.id = id;
    k.name = "n-" + id;
    k.hash = auth::sha256(token);
    k.prefix = token.substr(0, 8);
    k.created_at = 1700000000;
    k.endpoints = {{"ep1", auth::Access::read_write}};
    return k;
  }
  static std::string insert_sql(const std::string& id, const std::string& token, const std::string& extra_cols = "",
                                const std::string& extra_vals = "") {
    return "INSERT INTO frontdoor_keys (id, hash" + extra_cols + ") VALUES ('" + id + "', '" +
           auth::hash_form(auth::sha256(token)) + "'" + extra_vals + ")";
  }
  static bool has(const std::vector<Key>& keys, const std::string& id) {
    return std::any_of(keys.begin(), keys.end(), [&](const Key& k) { return k.id == id; });
  }

  static PgServer* server_;
  static std::string start_error_;
  std::string db_;
};

PgServer* PgStoreTest::server_ = nullptr;
std::string PgStoreTest::start_error_;

TEST_F(PgStoreTest, MissingSchemaNamesTheMigrateCommand) {
  try {
    auth::open_pg_store(uri());
    FAIL() << "opened a store without a schema";
  } catch (const auth::StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("frontdoor keys migrate"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find(pg().password()), std::string::npos) << e.what();
  }
}

TEST_F(PgStoreTest, MigrateIsIdempotentAndSafeFromSeveralProcessesAtOnce) {
  std::vector<std::thread> threads;
  std::atomic<int> created{0}, failed{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      try {
        if (migrate().find("created") != std::string::npos) ++created;
      } catch (const std::exception&) {
        ++failed;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(created, 1);
  EXPECT_NE(migrate().find("up to date"), std::string::npos);
  auto store = auth::open_pg_store(uri());
  EXPECT_TRUE(store->load().empty());
}

TEST_F(PgStoreTest, WritesThroughTheStoreRoundTrip) {
  migrate();
  auto store = auth::open_pg_store(uri());
  ASSERT_TRUE(store->load().empty());
  Key k = key("key_a", auth::generate_token());
  k.rate_limit = auth::RateLimit{2.5, 5, 1};
  k.expires_at = 1900000000;
  k.management = auth::Access::read;
  store->create(k);
  EXPECT_THROW(store->create(k), auth::DuplicateKeyId);
  Key other = key("key_b", "x");
  other.hash = k.hash;
  EXPECT_THROW(store->create(other), auth::StoreError);

  auto again = auth::open_pg_store(uri())->load();
  ASSERT_EQ(again.size(), 1u);
  const Key& r = again[0];
  EXPECT_EQ(r.name, k.name);
  EXPECT_TRUE(auth::digest_equal(r.hash, k.hash));
  EXPECT_EQ(r.created_at, k.created_at);
  EXPECT_EQ(r.expires_at, k.expires_at);
  EXPECT_EQ(r.management, auth::Access::read);
  ASSERT_EQ(r.endpoints.size(), 1u);
  EXPECT_EQ(r.endpoints[0].second, auth::Access::read_write);
  ASSERT_TRUE(r.rate_limit);
  EXPECT_DOUBLE_EQ(r.rate_limit->rps, 2.5);
  EXPECT_EQ(r.rate_limit->burst, 5u);

  auto updated = store->update("key_a", [](Key& x) { x.enabled = false; });
  ASSERT_TRUE(updated);
  EXPECT_FALSE(updated->enabled);
  EXPECT_FALSE(store->update("key_none", [](Key&) {}));
  EXPECT_TRUE(store->remove("key_a"));
  EXPECT_FALSE(store->remove("key_a"));
  EXPECT_TRUE(auth::open_pg_store(uri())->load().empty());
}

TEST_F(PgStoreTest, OutsideWritersInsertUpdateDeleteAndTruncateReachChanges) {
  migrate();
  auto store = auth::open_pg_store(uri());
  store->load();
  auto none = store->changes();
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->upserted.empty() && none->deleted_ids.empty());

  ASSERT_TRUE(sql(insert_sql("key_x", "tok-x", ", endpoints", ", '{\"*\": \"read\"}'")));
  auto c = store->changes();
  ASSERT_TRUE(c);
  ASSERT_EQ(c->upserted.size(), 1u);
  EXPECT_EQ(c->upserted[0].id, "key_x");
  EXPECT_EQ(c->upserted[0].default_access, auth::Access::read);

  ASSERT_TRUE(sql("UPDATE frontdoor_keys SET enabled = false WHERE id = 'key_x'"));
  c = store->changes();
  ASSERT_TRUE(c);
  ASSERT_EQ(c->upserted.size(), 1u);
  EXPECT_FALSE(c->upserted[0].enabled);

  ASSERT_TRUE(sql("DELETE FROM frontdoor_keys WHERE id = 'key_x'"));
  c = store->changes();
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->upserted.empty());
  EXPECT_EQ(c->deleted_ids, std::vector<std::string>{"key_x"});

  // Nothing twice: a change applied is not reported again.
  c = store->changes();
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->upserted.empty() && c->deleted_ids.empty());

  ASSERT_TRUE(sql(insert_sql("key_y", "tok-y") + "; TRUNCATE frontdoor_keys"));
  EXPECT_FALSE(store->changes()) << "a TRUNCATE must make the replica load everything again";
}

// The classic trap of sequence-number feeds: a transaction that started
// first (lower sequence, lower txid) commits after one that started later.
TEST_F(PgStoreTest, ATransactionHeldOpenWhileOthersCommitIsNeverMissed) {
  migrate();
  ASSERT_TRUE(sql(insert_sql("key_old", "tok-old")));
  auto store = auth::open_pg_store(uri());
  store->load();

  PgSession slow = session();
  ASSERT_TRUE(slow.ok()) << slow.error();
  ASSERT_TRUE(slow.exec("BEGIN; " + insert_sql("key_slow", "tok-slow") +
                        "; UPDATE frontdoor_keys SET enabled = false WHERE id = 'key_old'"));
  // Later transactions commit while the first one stays open; the replica
  // polls past them.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(sql(insert_sql("key_fast" + std::to_string(i), "tok-fast" + std::to_string(i))));
    auto c = store->changes();
    ASSERT_TRUE(c);
    ASSERT_EQ(c->upserted.size(), 1u);
    EXPECT_EQ(c->upserted[0].id, "key_fast" + std::to_string(i));
  }
  ASSERT_TRUE(slow.exec("COMMIT"));
  auto c = store->changes();
  ASSERT_TRUE(c);
  std::vector<std::string> ids;
  for (const auto& k : c->upserted) ids.push_back(k.id);
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{"key_old", "key_slow"}));
  for (const auto& k : c->upserted) EXPECT_TRUE(k.id != "key_old" || !k.enabled) << "key_old is still enabled";
  // And a rolled-back transaction leaves no trace.
  ASSERT_TRUE(slow.exec("BEGIN; " + insert_sql("key_gone", "tok-gone")));
  ASSERT_TRUE(sql(insert_sql("key_after", "tok-after")));
  ASSERT_TRUE(slow.exec("ROLLBACK"));
  c = store->changes();
  ASSERT_TRUE(c);
  ASSERT_EQ(c->upserted.size(), 1u);
  EXPECT_EQ(c->upserted[0].id, "key_after");
}

TEST_F(PgStoreTest, ARowThatBreaksTheRulesIsSkippedAndTheOthersLoad) {
  migrate();
  ASSERT_TRUE(sql(insert_sql("key_good", "tok-good")));
  ASSERT_TRUE(sql("INSERT INTO frontdoor_keys (id, hash) VALUES ('key_badhash', 'sha256:nothex')"));
  ASSERT_TRUE(sql(insert_sql("key_badmgmt", "tok-m", ", management", ", 'admin'")));
  ASSERT_TRUE(sql(insert_sql("key_badep", "tok-e", ", endpoints", ", '{\"ep1\": \"write\"}'")));
  ASSERT_TRUE(sql(insert_sql("key_both", "tok-b", ", endpoints, legacy_access", ", '{}', 'read'")));
  ASSERT_TRUE(sql(insert_sql("key_badrl", "tok-r", ", rate_limit", ", '{\"rps\": -1}'")));
  ASSERT_TRUE(sql(insert_sql("bad id!", "tok-i")));
  ASSERT_TRUE(sql(insert_sql("key_legacy", "tok-l", ", legacy_access", ", 'read_write'")));
  auto store = auth::open_pg_store(uri());
  auto keys = store->load();
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_TRUE(has(keys, "key_good"));
  EXPECT_TRUE(has(keys, "key_legacy"));
  // A good key turned bad by an outside writer is no key any more.
  ASSERT_TRUE(sql("UPDATE frontdoor_keys SET management = 'root' WHERE id = 'key_good'"));
  auto c = store->changes();
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->upserted.empty());
  EXPECT_EQ(c->deleted_ids, std::vector<std::string>{"key_good"});
}

TEST_F(PgStoreTest, UsageFromSeveralReplicasAddsUpAndIsNoKeyChange) {
  migrate();
  ASSERT_TRUE(sql(insert_sql("key_u", "tok-u")));
  auto a = auth::open_pg_store(uri());
  auto b = auth::open_pg_store(uri());
  a->load();
  b->load();
  a->flush_usage({{"key_u", 1800000000, 0, 7}, {"key_deleted", 1800000000, 0, 3}});
  b->flush_usage({{"key_u", 1800000100, 0, 5}});
  a->flush_usage({{"key_u", 1799999999, 0, 1}});
  auto keys = auth::open_pg_store(uri())->load();
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].requests_total, 13u);
  EXPECT_EQ(keys[0].last_used_at, 1800000100);
  auto c = a->changes();
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->upserted.empty() && c->deleted_ids.empty()) << "usage must never look like a key change";
}

TEST_F(PgStoreTest, TheListenerCallsBackOnAnOutsideCommit) {
  migrate();
  auto store = auth::open_pg_store(uri());
  store->load();
  std::mutex mu;
  std::condition_variable cv;
  int calls = 0;
  store->watch([&] {
    std::lock_guard lock(mu);
    ++calls;
    cv.notify_all();
  });
  {
    std::unique_lock lock(mu);  // the first call: it is listening
    ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return calls >= 1; }));
  }
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(sql(insert_sql("key_n", "tok-n")));
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 2s, [&] { return calls >= 2; }));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

TEST_F(PgStoreTest, AStoppedServerFailsFastAndTheReplicaCatchesUpAfterwards) {
  migrate();
  auto store = auth::open_pg_store(uri());
  store->load();
  ASSERT_TRUE(store->status().reachable);
  ASSERT_TRUE(pg().stop());
  EXPECT_THROW(store->changes(), auth::StoreUnavailable);
  EXPECT_FALSE(store->status().reachable);
  // While it is down, writes fail at once instead of waiting for a timeout.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(store->create(key("key_w", "tok-w")), auth::StoreUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);
  ASSERT_TRUE(pg().restart()) << pg().last_error();
  ASSERT_TRUE(sql(insert_sql("key_meanwhile", "tok-m")));
  std::optional<auth::StoreChanges> c;
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < until) {
    try {
      c = store->changes();
      break;
    } catch (const auth::StoreUnavailable&) {
      std::this_thread::sleep_for(100ms);  // the store retries at most once a second
    }
  }
  ASSERT_TRUE(c);
  ASSERT_EQ(c->upserted.size(), 1u);
  EXPECT_EQ(c->upserted[0].id, "key_meanwhile");
  EXPECT_TRUE(store->status().reachable);
  EXPECT_EQ(store->status().reconnects, 1u);
}

TEST_F(PgStoreTest, APausedServerIsUnavailableWithinTheQueryDeadline) {
  migrate();
  auto store = auth::open_pg_store(uri());
  store->load();
  ASSERT_TRUE(pg().pause()) << pg().last_error();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(store->changes(), auth::StoreUnavailable);
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(pg().resume()) << pg().last_error();
  EXPECT_LT(took, 4s);
  EXPECT_GE(took, 2s);
}

TEST_F(PgStoreTest, ThePasswordAppearsInNoMessage) {
  migrate();
  const std::string pw = pg().password();
  auto store = auth::open_pg_store(uri());
  EXPECT_EQ(store->path().find(pw), std::string::npos) << store->path();
  EXPECT_EQ(auth::shown_store(uri()).find(pw), std::string::npos);
  EXPECT_EQ(auth::shown_store(uri() + "?password=" + pw).find(pw), std::string::npos);
  // A refused connection, and a wrong database, name the store without it.
  std::string bad_port = uri();
  bad_port.replace(bad_port.find(":" + std::to_string(pg().port())), std::to_string(pg().port()).size() + 1, ":1");
  for (const std::string& u : {bad_port, uri() + "_nonexistent"}) {
    try {
      auth::open_pg_store(u)->load();
      ADD_FAILURE() << "loaded " << auth::shown_store(u);
    } catch (const auth::StoreError& e) {
      EXPECT_EQ(std::string(e.what()).find(pw), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("127.0.0.1"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace frontdoor::test
