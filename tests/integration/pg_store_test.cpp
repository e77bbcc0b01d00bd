// The PostgreSQL key store (SPEC §3.1) through its own interface, against a
// real PostgreSQL 15: schema, writes, the change feed (with a transaction
// held open while others commit), bad rows, usage, outages, secrets; and
// TLS to the database with libpq's sslmode (PgStoreTlsTest).
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "frontdoor/auth/key_store.hpp"
#include "frontdoor/auth/store.hpp"
#include "frontdoor/auth/token.hpp"
#include "support/pg_server.hpp"
#include "support/proxy_test_base.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;
using auth::Key;

Key key(const std::string& id, const std::string& token) {
  Key k;
  k.id = id;
  k.name = "n-" + id;
  k.hash = auth::sha256(token);
  k.prefix = token.substr(0, 8);
  k.created_at = 1700000000;
  k.endpoints = {{"ep1", auth::Access::read_write}};
  return k;
}

// One server for a suite (with TLS or without); each test gets a database
// of its own.
template <bool kTls>
class PgSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new PgServer(PgServer::Options{.tls = kTls});
    std::string err;
    if (!server_->start(&err) ||
        (kTls && !write_self_signed_ca(server_->dir() + "/other-ca.crt", "another test CA", &err))) {
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
    db_ = std::string(kTls ? "tls_test_" : "store_test_") + std::to_string(++n);
    std::string err;
    ASSERT_TRUE(server_->superuser_exec("CREATE DATABASE " + db_ + " OWNER frontdoor", &err)) << err;
  }

  PgServer& pg() { return *server_; }

  static inline PgServer* server_ = nullptr;
  static inline std::string start_error_;
  std::string db_;
};

class PgStoreTest : public PgSuite<false> {
 protected:
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

  static std::string insert_sql(const std::string& id, const std::string& token, const std::string& extra_cols = "",
                                const std::string& extra_vals = "") {
    return "INSERT INTO frontdoor_keys (id, hash" + extra_cols + ") VALUES ('" + id + "', '" +
           auth::hash_form(auth::sha256(token)) + "'" + extra_vals + ")";
  }
  static bool has(const std::vector<Key>& keys, const std::string& id) {
    return std::any_of(keys.begin(), keys.end(), [&](const Key& k) { return k.id == id; });
  }
};


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

// The admin API shows the fleet's totals (SPEC §3.1): usage() reads them.
TEST_F(PgStoreTest, UsageReadsTheFleetsTotals) {
  migrate();
  ASSERT_TRUE(sql(insert_sql("key_a", "tok-a")));
  ASSERT_TRUE(sql(insert_sql("key_b", "tok-b")));
  auto a = auth::open_pg_store(uri());
  auto b = auth::open_pg_store(uri());
  a->load();
  b->load();
  a->flush_usage({{"key_a", 1800000000, 0, 4}});
  b->flush_usage({{"key_a", 1800000050, 0, 6}});
  auto t = a->usage({"key_a", "key_b", "key_none"});
  ASSERT_TRUE(t);
  ASSERT_EQ(t->size(), 1u) << "keys never flushed have no row";
  EXPECT_EQ(t->at("key_a").requests_total, 10u);
  EXPECT_EQ(t->at("key_a").last_used_at, 1800000050);
  EXPECT_TRUE(a->usage({})->empty());
}

// A change blocked by an outside writer's open transaction is given up by
// the server (lock_timeout) and rolled back, so the 503 the admin API gives
// means "not made": it is not applied when the other transaction ends.
TEST_F(PgStoreTest, AChangeBlockedByAnOpenTransactionGivesUpAndIsNeverAppliedLater) {
  migrate();
  ASSERT_TRUE(sql(insert_sql("key_l", "tok-l")));
  auto store = auth::open_pg_store(uri());
  store->load();
  PgSession holder = session();
  ASSERT_TRUE(holder.ok()) << holder.error();
  ASSERT_TRUE(holder.exec("BEGIN; UPDATE frontdoor_keys SET name = 'held' WHERE id = 'key_l'"));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(store->update("key_l", [](Key& k) { k.enabled = false; }), auth::StoreUnavailable);
  EXPECT_THROW(store->remove("key_l"), auth::StoreUnavailable);
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(took, 9s) << "each change must give up well within the admin API's 5 s";
  ASSERT_TRUE(holder.exec("COMMIT"));
  auto keys = store->load();  // the same connection: it is still usable
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].name, "held");
  EXPECT_TRUE(keys[0].enabled) << "the change answered as failed was applied later";
  // And the store writes again at once.
  ASSERT_TRUE(store->update("key_l", [](Key& k) { k.enabled = false; }));
  EXPECT_FALSE(auth::open_pg_store(uri())->load().at(0).enabled);
}

// A usage flush that times out against a paused server is rolled back, not
// applied when the server resumes and then sent again (counted twice).
TEST_F(PgStoreTest, AFlushThatTimedOutIsNotAppliedLater) {
  migrate();
  ASSERT_TRUE(sql(insert_sql("key_f", "tok-f")));
  auto store = auth::open_pg_store(uri());
  store->load();
  store->flush_usage({{"key_f", 1800000000, 0, 2}});
  ASSERT_TRUE(pg().pause()) << pg().last_error();
  EXPECT_THROW(store->flush_usage({{"key_f", 1800000001, 0, 5}}), auth::StoreUnavailable);
  ASSERT_TRUE(pg().resume()) << pg().last_error();
  // The owner keeps the 5 and sends them again once the store is back.
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  for (;;) {
    try {
      store->flush_usage({{"key_f", 1800000001, 0, 5}});
      break;
    } catch (const auth::StoreUnavailable&) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the store never came back";
      std::this_thread::sleep_for(100ms);
    }
  }
  auto keys = auth::open_pg_store(uri())->load();
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].requests_total, 7u) << "a flush that failed was also applied";
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

// A URI libpq cannot read: its own message would quote the URI, password
// and all. An sslpassword is a secret too.
TEST_F(PgStoreTest, AMalformedUriIsRefusedWithoutItsPassword) {
  EXPECT_EQ(auth::shown_store("postgresql://u@127.0.0.1/db?sslpassword=topsecret").find("topsecret"),
            std::string::npos);
  for (const std::string u : {"postgresql://u:se%zzcret@127.0.0.1:1/db", "postgresql://u:secret@[::1/db",
                              "postgresql://u:secret@127.0.0.1:1/db?bogus=1"}) {
    try {
      auth::open_pg_store(u)->load();
      ADD_FAILURE() << "loaded " << auth::shown_store(u);
    } catch (const auth::StoreError& e) {
      EXPECT_EQ(std::string(e.what()).find("cret"), std::string::npos) << e.what();
    }
  }
}

// 'infinity' is a timestamp PostgreSQL takes: never expires, or always
// expired; it neither stops the load nor the feed.
TEST_F(PgStoreTest, InfiniteTimestampsLoadAndTheFeedGoesOn) {
  migrate();
  ASSERT_TRUE(sql(insert_sql("key_never", "tok-n", ", expires_at, created_at", ", 'infinity', '-infinity'")));
  ASSERT_TRUE(sql(insert_sql("key_gone", "tok-g", ", expires_at", ", '-infinity'")));
  auto store = auth::open_pg_store(uri());
  auto keys = store->load();
  ASSERT_EQ(keys.size(), 2u);
  for (const auto& k : keys) {
    if (k.id == "key_never") {
      EXPECT_FALSE(k.expires_at) << "+infinity is never";
      EXPECT_FALSE(k.created_at);
    } else {
      ASSERT_TRUE(k.expires_at);
      EXPECT_LE(*k.expires_at, 0) << "-infinity has expired";
    }
  }
  ASSERT_TRUE(sql("UPDATE frontdoor_keys SET expires_at = 'infinity', enabled = false WHERE id = 'key_gone'"));
  auto c = store->changes();
  ASSERT_TRUE(c);
  ASSERT_EQ(c->upserted.size(), 1u);
  EXPECT_FALSE(c->upserted[0].enabled);
  EXPECT_TRUE(store->status().reachable);
}

// Changes read from the log are returned even when pruning it fails
// afterwards (here: another session holds a lock prune needs).
TEST_F(PgStoreTest, AFailedPruneLosesNoChange) {
  migrate();
  ASSERT_TRUE(sql(insert_sql("key_p", "tok-p")));
  auto store = auth::open_pg_store(uri());
  store->load();
  PgSession locker = session();
  ASSERT_TRUE(locker.ok()) << locker.error();
  ASSERT_TRUE(locker.exec("BEGIN; LOCK TABLE frontdoor_replicas IN ACCESS EXCLUSIVE MODE"));
  ASSERT_TRUE(sql("UPDATE frontdoor_keys SET enabled = false WHERE id = 'key_p'"));
  auto c = store->changes();  // the first poll prunes; the prune waits, then gives up
  ASSERT_TRUE(locker.exec("ROLLBACK"));
  ASSERT_TRUE(c);
  ASSERT_EQ(c->upserted.size(), 1u);
  EXPECT_FALSE(c->upserted[0].enabled);
}

// The trigger runs as its owner (SECURITY DEFINER): a writer's temporary
// table named like frontdoor's must not catch the change record.
TEST_F(PgStoreTest, AWritersTemporaryTableCannotHideAChange) {
  migrate();
  ASSERT_TRUE(sql(insert_sql("key_t", "tok-t")));
  auto store = auth::open_pg_store(uri());
  store->load();
  ASSERT_TRUE(sql("CREATE TEMP TABLE frontdoor_key_changes (seq bigserial, txid bigint DEFAULT 0, key_id text, "
                  "at timestamptz DEFAULT now()); "
                  "UPDATE frontdoor_keys SET enabled = false WHERE id = 'key_t'"));
  auto c = store->changes();
  ASSERT_TRUE(c);
  ASSERT_EQ(c->upserted.size(), 1u) << "the change went to the writer's temporary table";
  EXPECT_FALSE(c->upserted[0].enabled);
}

// Rows pruned that this replica may not have read (it was behind a
// transaction older than the prune age): it loads everything.
TEST_F(PgStoreTest, ALogPrunedPastThePositionMeansAFullLoad) {
  migrate();
  ASSERT_TRUE(sql(insert_sql("key_w", "tok-w")));
  auto store = auth::open_pg_store(uri());
  store->load();
  ASSERT_TRUE(store->changes());
  // Another replica pruned rows up to a txid this one has not passed.
  // A watermark from another cluster (restored from a dump: beyond every
  // txid here) is ignored, not a load at every poll.
  ASSERT_TRUE(sql("INSERT INTO frontdoor_feed_pruned (one, txid) VALUES (1, txid_current() + 1000)"));
  EXPECT_TRUE(store->changes());
  ASSERT_TRUE(sql("UPDATE frontdoor_feed_pruned SET txid = txid_current()"));
  EXPECT_FALSE(store->changes());
  ASSERT_TRUE(sql("UPDATE frontdoor_feed_pruned SET txid = 1"));
  store->load();
  EXPECT_TRUE(store->changes());
}

// A bulk change is loaded whole, and after a load the changes it already
// holds are not taken again, also while an older transaction keeps the
// horizon back (no load after load).
TEST_F(PgStoreTest, ABulkChangeIsLoadedWholeOnceAndATruncateOnce) {
  migrate();
  auto store = auth::open_pg_store(uri());
  store->load();
  PgSession old = session();
  ASSERT_TRUE(old.ok()) << old.error();
  ASSERT_TRUE(old.exec("BEGIN; SELECT txid_current()"));  // holds every snapshot's xmin back
  ASSERT_TRUE(sql("INSERT INTO frontdoor_keys (id, hash) SELECT 'key_' || i, 'sha256:' || "
                  "encode(sha256(('tok-' || i)::bytea), 'hex') FROM generate_series(1, 20001) AS i"));
  EXPECT_FALSE(store->changes()) << "20,001 changed keys: a full load";
  EXPECT_EQ(store->load().size(), 20001u);
  auto c = store->changes();
  ASSERT_TRUE(c) << "the load already holds these changes";
  EXPECT_TRUE(c->upserted.empty() && c->deleted_ids.empty());
  ASSERT_TRUE(sql("TRUNCATE frontdoor_keys"));
  EXPECT_FALSE(store->changes());
  EXPECT_TRUE(store->load().empty());
  c = store->changes();
  ASSERT_TRUE(c) << "a TRUNCATE the load already holds started another load";
  EXPECT_TRUE(c->upserted.empty() && c->deleted_ids.empty());
  ASSERT_TRUE(old.exec("COMMIT"));
}

// A key deleted and made again with the same id has two counters in one
// flush; the flush still goes through, and the new key starts from zero.
TEST_F(PgStoreTest, AFlushWithAnIdTwiceAddsBothAndADeletedKeysUsageGoes) {
  migrate();
  ASSERT_TRUE(sql(insert_sql("key_d", "tok-d")));
  auto store = auth::open_pg_store(uri());
  store->load();
  store->flush_usage({{"key_d", 1800000000, 0, 3}});
  ASSERT_TRUE(sql("DELETE FROM frontdoor_keys WHERE id = 'key_d'"));
  ASSERT_TRUE(sql(insert_sql("key_d", "tok-d2")));
  store->flush_usage({{"key_d", 1800000010, 0, 2}, {"key_d", 1800000020, 0, 4}});
  auto t = store->usage({"key_d"});
  ASSERT_TRUE(t);
  ASSERT_EQ(t->count("key_d"), 1u);
  EXPECT_EQ(t->at("key_d").requests_total, 6u) << "the old key's 3 must go with it";
  EXPECT_EQ(t->at("key_d").last_used_at, 1800000020);
}

// ---------------------------------------------------------------------------
// TLS to the database: keys.store passes libpq's sslmode and sslrootcert
// through as they are. The server (PgServer::Options::tls) has a certificate
// for 127.0.0.1 signed by a CA of its own, and takes TCP only over TLS.

class PgStoreTlsTest : public PgSuite<true> {
 protected:
  const std::string& password() const { return server_->password(); }
  // The store's URI for this test's database (with the password) and libpq
  // parameters `query`.
  std::string uri(const std::string& query) const {
    std::string u = server_->uri_with_password();
    return u.substr(0, u.rfind('/') + 1) + db_ + "?" + query;
  }
  std::string verify_full() const { return uri("sslmode=verify-full&sslrootcert=" + server_->ca_file()); }
  std::string other_ca() const { return server_->dir() + "/other-ca.crt"; }

  // frontdoor's connections to this test's database (application_name
  // 'frontdoor'), as the server sees them: one row per connection, "t" when
  // it is TLS, then the protocol version.
  PgRows frontdoor_connections() {
    PgSession su = server_->session(PgRole::kSuperuser);
    std::string err;
    auto rows = su.ok() ? su.query("SELECT s.ssl, coalesce(s.version, '') FROM pg_stat_activity a "
                                   "JOIN pg_stat_ssl s ON s.pid = a.pid WHERE a.application_name = "
                                   "'frontdoor' AND a.datname = '" + db_ + "'",
                                   &err)
                        : std::nullopt;
    EXPECT_TRUE(rows) << (su.ok() ? err : su.error());
    return rows ? *rows : PgRows{};
  }

  // The StoreError that migrate, then open + load, end in with `u`; both
  // must fail. Checks that neither message holds the password.
  std::vector<std::string> refusals(const std::string& u) {
    std::vector<std::string> messages;
    try {
      auth::migrate_pg_store(u);
      ADD_FAILURE() << "migrated " << auth::shown_store(u);
    } catch (const auth::StoreError& e) {
      messages.emplace_back(e.what());
    }
    try {
      auto store = auth::open_pg_store(u);  // a store it cannot reach comes back unconnected
      store->load();
      ADD_FAILURE() << "loaded " << auth::shown_store(u);
    } catch (const auth::StoreError& e) {
      messages.emplace_back(e.what());
    }
    for (const auto& m : messages) EXPECT_EQ(m.find(password()), std::string::npos) << m;
    return messages;
  }
};


// verify-full with the CA that signed the server's certificate: migrate,
// open, write, load, the feed; and every connection frontdoor holds to the
// database is TLS, as the server itself reports (pg_stat_ssl).
TEST_F(PgStoreTlsTest, VerifyFullWithTheServersCaWorksAndEveryConnectionIsTls) {
  // The helper first, independently of the store: the server speaks TLS,
  // and libpq verifies its certificate for 127.0.0.1.
  PgSession direct(verify_full());
  ASSERT_TRUE(direct.ok()) << direct.error();
  auto own = direct.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
  ASSERT_TRUE(own && own->size() == 1) << direct.error();
  EXPECT_EQ((*own)[0][0], "t");
  direct.close();

  EXPECT_NE(auth::migrate_pg_store(verify_full()).find("created"), std::string::npos);
  auto store = auth::open_pg_store(verify_full());
  EXPECT_EQ(store->path().find(password()), std::string::npos) << store->path();
  ASSERT_TRUE(store->load().empty());
  std::mutex mu;
  std::condition_variable cv;
  int calls = 0;
  store->watch([&] {
    std::lock_guard lock(mu);
    ++calls;
    cv.notify_all();
  });
  const std::string token = auth::generate_token();
  store->create(key("key_tls", token));
  {
    std::unique_lock lock(mu);  // the listener (a connection of its own) heard the commit
    EXPECT_TRUE(cv.wait_for(lock, 5s, [&] { return calls >= 1; }));
  }
  auto c = store->changes();
  ASSERT_TRUE(c);
  auto keys = auth::open_pg_store(verify_full())->load();
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_TRUE(auth::digest_equal(keys[0].hash, auth::sha256(token)));
  EXPECT_TRUE(store->status().reachable);

  const PgRows conns = frontdoor_connections();
  EXPECT_GE(conns.size(), 2u) << "the store's connection and its listener's";
  for (const auto& row : conns) {
    EXPECT_EQ(row[0], "t") << "a frontdoor connection without TLS";
    EXPECT_EQ(row[1].rfind("TLSv1.", 0), 0u) << row[1];
  }
  store->stop_watch();
}

// sslmode as libpq has it: verify-ca checks the chain only, verify-full the
// name too. Here libpq connects to 127.0.0.1 (hostaddr) but checks the
// certificate against another name (host).
TEST_F(PgStoreTlsTest, VerifyCaChecksTheChainAndVerifyFullAlsoTheName) {
  const std::string elsewhere = "&host=db.elsewhere.test&hostaddr=127.0.0.1";
  ASSERT_NO_THROW(auth::migrate_pg_store(verify_full()));
  auto store = auth::open_pg_store(uri("sslmode=verify-ca&sslrootcert=" + pg().ca_file() + elsewhere));
  EXPECT_TRUE(store->load().empty());
  EXPECT_TRUE(store->status().reachable);
  const PgRows conns = frontdoor_connections();
  ASSERT_EQ(conns.size(), 1u);
  EXPECT_EQ(conns[0][0], "t");

  for (const auto& m : refusals(uri("sslmode=verify-full&sslrootcert=" + pg().ca_file() + elsewhere))) {
    EXPECT_NE(m.find("does not match host name \"db.elsewhere.test\""), std::string::npos) << m;
  }
}

// sslmode=disable: the server takes TCP only over TLS and refuses the
// connection before authentication; a configuration error, without the
// password.
TEST_F(PgStoreTlsTest, SslmodeDisableIsRefusedByTheServerWithoutThePassword) {
  const auto messages = refusals(uri("sslmode=disable"));
  ASSERT_EQ(messages.size(), 2u);
  for (const auto& m : messages) {
    EXPECT_NE(m.find("no pg_hba.conf entry"), std::string::npos) << m;
    EXPECT_NE(m.find("no encryption"), std::string::npos) << m;
    EXPECT_NE(m.find("127.0.0.1"), std::string::npos) << m;
  }
  EXPECT_TRUE(frontdoor_connections().empty());
}

// verify-full with a CA that did not sign the server's certificate, or a CA
// file that is not there: refused, the message names the certificate
// problem, without the password.
TEST_F(PgStoreTlsTest, VerifyFullWithAnotherCaIsRefusedNamingTheCertificateProblem) {
  auto messages = refusals(uri("sslmode=verify-full&sslrootcert=" + other_ca()));
  ASSERT_EQ(messages.size(), 2u);
  for (const auto& m : messages) EXPECT_NE(m.find("certificate verify failed"), std::string::npos) << m;
  auto store = auth::open_pg_store(uri("sslmode=verify-full&sslrootcert=" + other_ca()));
  EXPECT_THROW(store->load(), auth::StoreUnavailable);
  EXPECT_FALSE(store->status().reachable);

  const std::string missing = pg().dir() + "/no-such-ca.crt";
  messages = refusals(uri("sslmode=verify-full&sslrootcert=" + missing));
  ASSERT_EQ(messages.size(), 2u);
  for (const auto& m : messages) {
    EXPECT_NE(m.find("root certificate file"), std::string::npos) << m;
    EXPECT_NE(m.find(missing), std::string::npos) << m;
  }
  EXPECT_TRUE(frontdoor_connections().empty());
}

// The server end to end: a replica whose keys.store is a verify-full URI
// serves a key written into the database by an outside writer, over TLS,
// and shows the password nowhere.
TEST_F(PgStoreTlsTest, AReplicaOnAVerifyFullUriServesAKey) {
  ASSERT_NO_THROW(auth::migrate_pg_store(verify_full()));
  const std::string token = fresh_rpa_token();
  {
    PgSession s(server_->socket_conninfo(PgRole::kOwner, db_));
    std::string err;
    ASSERT_TRUE(s.ok() && s.exec("INSERT INTO frontdoor_keys (id, name, hash, prefix, endpoints) VALUES "
                                 "('key_tls', 'n', '" + stored_hash(token) + "', '" + token.substr(0, 8) +
                                     "', '{\"*\": \"none\", \"ep1\": \"read_write\"}')",
                                 &err))
        << (s.ok() ? err : s.error());
  }
  FakeWorker worker;
  ASSERT_TRUE(worker.ok());
  ProxyHarness h;
  h.config().key_store = verify_full();
  h.add_endpoint({.id = "ep1", .workers = {worker.url()}});
  ASSERT_TRUE(h.start()) << h.error();
  const auto r = h.request("GET", "/ep1/generate", {{"Host", "client.test"}, bearer(token)});
  EXPECT_EQ(r.status, 200) << r.raw.substr(0, 1000);
  const auto bad = h.request("GET", "/ep1/generate", {{"Host", "client.test"}, bearer(fresh_rpa_token())});
  EXPECT_EQ(bad.status, 401);

  const PgRows conns = frontdoor_connections();
  EXPECT_FALSE(conns.empty());
  for (const auto& row : conns) EXPECT_EQ(row[0], "t") << "a frontdoor connection without TLS";
  EXPECT_TRUE(h.stop_and_check());
  EXPECT_EQ(h.stderr_text().find(password()), std::string::npos);
  EXPECT_EQ(h.stdout_text().find(password()), std::string::npos);
}

}  // namespace
}  // namespace frontdoor::test
