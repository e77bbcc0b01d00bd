// The SQLite key store (sqlite_store.cpp) and the `keys` CLI on .db stores.
#include "../temp_dir.hpp"
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "frontdoor/auth/key_store.hpp"
#include "frontdoor/auth/store.hpp"
#include "frontdoor/auth/token.hpp"
// run_keys_cli is compiled into this test binary by keys_cli_test.cpp.
#include "frontdoor/server/keys_cli.hpp"

namespace frontdoor::auth {
namespace {

namespace fs = std::filesystem;

using unit_test::TempDir;

Key make_key(const std::string& id, const std::string& token) {
  Key k;
  k.id = id;
  k.name = "name of " + id;
  k.hash = sha256(token);
  k.prefix = token.substr(0, 8);
  k.created_at = 1'700'000'000;
  return k;
}

void expect_same(const Key& a, const Key& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.name, b.name) << a.id;
  EXPECT_TRUE(digest_equal(a.hash, b.hash)) << a.id;
  EXPECT_EQ(a.prefix, b.prefix) << a.id;
  EXPECT_EQ(a.enabled, b.enabled) << a.id;
  EXPECT_EQ(a.created_at, b.created_at) << a.id;
  EXPECT_EQ(a.last_used_at, b.last_used_at) << a.id;
  EXPECT_EQ(a.expires_at, b.expires_at) << a.id;
  EXPECT_EQ(a.management, b.management) << a.id;
  EXPECT_EQ(a.legacy_access, b.legacy_access) << a.id;
  EXPECT_EQ(a.default_access, b.default_access) << a.id;
  EXPECT_EQ(a.endpoints, b.endpoints) << a.id;
  ASSERT_EQ(a.rate_limit.has_value(), b.rate_limit.has_value()) << a.id;
  if (a.rate_limit) {
    EXPECT_EQ(a.rate_limit->rps, b.rate_limit->rps) << a.id;
    EXPECT_EQ(a.rate_limit->burst, b.rate_limit->burst) << a.id;
    EXPECT_EQ(a.rate_limit->max_concurrent, b.rate_limit->max_concurrent) << a.id;
  }
  EXPECT_EQ(a.requests_total, b.requests_total) << a.id;
}

const Key* by_id(const std::vector<Key>& keys, const std::string& id) {
  for (const Key& k : keys) {
    if (k.id == id) return &k;
  }
  return nullptr;
}

std::vector<std::string> ids_of(const std::vector<Key>& keys) {
  std::vector<std::string> ids;
  for (const Key& k : keys) ids.push_back(k.id);
  return ids;
}

TEST(SqliteStore, RoundTripsEveryField) {
  TempDir dir;
  const std::string path = dir.file("keys.db");

  Key full = make_key("key_full", "token-full");
  full.enabled = false;
  full.last_used_at = 1'700'000'100;
  full.expires_at = 1'800'000'000;
  full.management = Access::read_write;
  full.default_access = Access::read;
  full.endpoints = {
      {"a\"quoted\\ep", Access::none}, {"ep1", Access::read_write}, {"ep2", Access::read}};
  full.rate_limit = RateLimit{12.5, 100, 8};
  full.requests_total = 123'456'789'012ULL;
  full.name = "ci bot \xc3\xa9";

  Key legacy = make_key("key_legacy", "legacy-token");
  legacy.created_at.reset();  // every timestamp null
  legacy.legacy_access = Access::read_write;

  {
    const auto store = open_sqlite_store(path);
    EXPECT_EQ(store->path(), path);
    EXPECT_TRUE(store->load().empty());
    store->create(full);
    store->create(legacy);
  }
  const auto reopened = open_sqlite_store(path);
  const auto keys = reopened->load();
  ASSERT_EQ(keys.size(), 2u);
  expect_same(keys[0], full);
  expect_same(keys[1], legacy);

  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);  // names and scopes are private
}

TEST(SqliteStore, ChangesReturnOnlyChangedRowsAndDeletions) {
  TempDir dir;
  const auto store = open_sqlite_store(dir.file("keys.db"));
  // Changes are reported to the instance that did not make them (its own
  // writes are in its snapshot already): `other` writes, `store` reads.
  const auto other = open_sqlite_store(dir.file("keys.db"));
  store->create(make_key("key_a", "ta"));
  store->create(make_key("key_b", "tb"));
  store->create(make_key("key_c", "tc"));
  EXPECT_EQ(store->load().size(), 3u);

  auto none = store->changes();
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->upserted.empty());
  EXPECT_TRUE(none->deleted_ids.empty());

  const auto updated = other->update("key_b", [](Key& k) { k.name = "renamed"; });
  ASSERT_TRUE(updated);
  EXPECT_EQ(updated->name, "renamed");
  EXPECT_TRUE(other->remove("key_c"));
  EXPECT_FALSE(other->remove("key_c"));
  EXPECT_FALSE(other->update("key_zz", [](Key&) {}));

  auto ch = store->changes();
  ASSERT_TRUE(ch);
  ASSERT_EQ(ch->upserted.size(), 1u);
  EXPECT_EQ(ch->upserted[0].id, "key_b");
  EXPECT_EQ(ch->upserted[0].name, "renamed");
  EXPECT_EQ(ch->deleted_ids, std::vector<std::string>{"key_c"});

  ch = store->changes();
  ASSERT_TRUE(ch);
  EXPECT_TRUE(ch->upserted.empty());
  EXPECT_TRUE(ch->deleted_ids.empty());

  // An id deleted and created again is an upsert, not a deletion.
  other->create(make_key("key_c", "tc2"));
  ch = store->changes();
  ASSERT_TRUE(ch);
  EXPECT_EQ(ids_of(ch->upserted), std::vector<std::string>{"key_c"});
  EXPECT_TRUE(ch->deleted_ids.empty());

  // A failed update (the edit throws) changes nothing.
  EXPECT_THROW(other->update("key_a",
                             [](Key& k) {
                               k.name = "half";
                               throw std::runtime_error("edit failed");
                             }),
               std::runtime_error);
  ch = store->changes();
  ASSERT_TRUE(ch);
  EXPECT_TRUE(ch->upserted.empty());
  EXPECT_EQ(by_id(store->load(), "key_a")->name, "name of key_a");

  // Its own writes are not reported back to the writer.
  store->create(make_key("key_d", "td"));
  ch = store->changes();
  ASSERT_TRUE(ch);
  EXPECT_TRUE(ch->upserted.empty());
}

TEST(SqliteStore, TwoInstancesSeeEachOthersChanges) {
  TempDir dir;
  const std::string path = dir.file("keys.db");
  const auto server = open_sqlite_store(path);
  const auto cli = open_sqlite_store(path);
  server->create(make_key("key_a", "ta"));
  EXPECT_EQ(server->load().size(), 1u);
  EXPECT_EQ(cli->load().size(), 1u);

  cli->create(make_key("key_b", "tb"));
  ASSERT_TRUE(cli->update("key_a", [](Key& k) { k.enabled = false; }));
  auto ch = server->changes();
  ASSERT_TRUE(ch);
  EXPECT_EQ(ids_of(ch->upserted), (std::vector<std::string>{"key_b", "key_a"}));
  EXPECT_FALSE(by_id(ch->upserted, "key_a")->enabled);

  // The server deletes a key the CLI still has in memory.
  EXPECT_TRUE(server->remove("key_b"));
  EXPECT_FALSE(cli->update("key_b", [](Key& k) { k.enabled = true; }));
  EXPECT_FALSE(cli->remove("key_b"));
  ch = cli->changes();
  ASSERT_TRUE(ch);
  EXPECT_EQ(ch->deleted_ids, std::vector<std::string>{"key_b"});
  // The CLI's own update of key_a is not reported back to it.
  EXPECT_TRUE(ch->upserted.empty());

  // A duplicate from another instance is caught by the database, not by
  // what this instance loaded.
  EXPECT_THROW(server->create(make_key("key_c", "ta")), StoreError);
}

TEST(SqliteStore, FlushUsageMergesByMaximumAndNeverResurrects) {
  TempDir dir;
  const std::string path = dir.file("keys.db");
  const auto store = open_sqlite_store(path);
  const auto other = open_sqlite_store(path);
  store->create(make_key("key_a", "ta"));
  store->create(make_key("key_b", "tb"));
  store->load();
  other->load();

  store->flush_usage({{"key_a", 1000, 5}, {"key_b", std::nullopt, 2}});
  auto keys = store->load();
  EXPECT_EQ(by_id(keys, "key_a")->last_used_at, 1000);
  EXPECT_EQ(by_id(keys, "key_a")->requests_total, 5u);
  EXPECT_FALSE(by_id(keys, "key_b")->last_used_at);
  EXPECT_EQ(by_id(keys, "key_b")->requests_total, 2u);
  auto ch = other->changes();  // usage is visible to other processes
  ASSERT_TRUE(ch);
  EXPECT_EQ(ch->upserted.size(), 2u);

  // Older values change nothing, and nothing is reported as changed.
  store->flush_usage({{"key_a", 900, 3}, {"key_b", std::nullopt, 1}});
  ch = store->changes();
  ASSERT_TRUE(ch);
  EXPECT_TRUE(ch->upserted.empty());
  keys = store->load();
  EXPECT_EQ(by_id(keys, "key_a")->last_used_at, 1000);
  EXPECT_EQ(by_id(keys, "key_a")->requests_total, 5u);

  // Each field merges on its own.
  store->flush_usage({{"key_a", std::nullopt, 7}, {"key_b", 2000, 0}});
  keys = store->load();
  EXPECT_EQ(by_id(keys, "key_a")->last_used_at, 1000);
  EXPECT_EQ(by_id(keys, "key_a")->requests_total, 7u);
  EXPECT_EQ(by_id(keys, "key_b")->last_used_at, 2000);
  EXPECT_EQ(by_id(keys, "key_b")->requests_total, 2u);

  // Deleted by another process meanwhile: the flush does not bring it back.
  EXPECT_TRUE(other->remove("key_b"));
  store->flush_usage({{"key_b", 3000, 99}, {"key_gone", 3000, 1}});
  keys = store->load();
  EXPECT_EQ(ids_of(keys), std::vector<std::string>{"key_a"});
  store->flush_usage({});
}

TEST(SqliteStore, DuplicateIdOrHashIsRejected) {
  TempDir dir;
  const std::string path = dir.file("keys.db");
  const auto store = open_sqlite_store(path);
  store->create(make_key("key_a", "ta"));
  store->create(make_key("key_b", "tb"));
  try {
    store->create(make_key("key_a", "other"));
    ADD_FAILURE() << "duplicate id accepted";
  } catch (const StoreError& e) {
    EXPECT_EQ(std::string(e.what()), path + ": key key_a already exists");
  }
  try {
    store->create(make_key("key_c", "ta"));
    ADD_FAILURE() << "duplicate hash accepted";
  } catch (const StoreError& e) {
    EXPECT_EQ(std::string(e.what()), path + ": key key_c has the same token (hash) as key key_a");
  }
  EXPECT_THROW(store->update("key_b", [](Key& k) { k.hash = sha256("ta"); }), StoreError);
  EXPECT_THROW(store->update("key_b", [](Key& k) { k.id = "key_x"; }), StoreError);
  EXPECT_THROW(store->create(make_key("", "tz")), StoreError);
  const auto keys = store->load();
  ASSERT_EQ(keys.size(), 2u);
  expect_same(keys[0], make_key("key_a", "ta"));
  expect_same(keys[1], make_key("key_b", "tb"));
}

TEST(SqliteStore, FilesThatAreNotKeyStoresGiveStoreError) {
  TempDir dir;
  const std::string garbage = dir.file("garbage.db");
  std::ofstream(garbage) << "keys:\n  - id: key_a\n    hash: nope\n" << std::string(600, 'x');
  try {
    open_sqlite_store(garbage);
    ADD_FAILURE() << "garbage accepted";
  } catch (const StoreError& e) {
    const std::string what = e.what();
    EXPECT_TRUE(what.starts_with(garbage + ": ")) << what;
    EXPECT_NE(what.find("not a database"), std::string::npos) << what;
  }

  const std::string missing_dir = dir.file("no/such/dir/keys.db");
  EXPECT_THROW(open_sqlite_store(missing_dir), StoreError);

  // Another application's database, and a newer schema.
  const std::string foreign = dir.file("foreign.db");
  const std::string newer = dir.file("newer.db");
  open_sqlite_store(newer);
  for (const auto& [file, sql] :
       {std::pair{foreign, "CREATE TABLE t (x)"}, std::pair{newer, "PRAGMA user_version = 99"}}) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  try {
    open_sqlite_store(foreign);
    ADD_FAILURE() << "foreign database accepted";
  } catch (const StoreError& e) {
    EXPECT_EQ(std::string(e.what()),
              foreign + ": not a frontdoor key store (an SQLite database with other tables)");
  }
  try {
    open_sqlite_store(newer);
    ADD_FAILURE() << "newer schema accepted";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("schema version 99"), std::string::npos) << e.what();
  }
}

TEST(SqliteStore, ReplacedFileMakesChangesAskForAFullLoad) {
  TempDir dir;
  const std::string path = dir.file("keys.db");
  const auto store = open_sqlite_store(path);
  store->create(make_key("key_a", "ta"));
  store->create(make_key("key_b", "tb"));
  store->load();
  // Someone rolls the sequence back (a restored copy): changes() cannot tell.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE meta SET seq = 1", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  EXPECT_FALSE(store->changes());
}

// ---- `frontdoor keys` on SQLite stores ----

struct CliResult {
  int code;
  std::string out;
  std::string err;
};

CliResult cli(std::vector<std::string> args) {
  args.insert(args.begin(), "keys");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::ostringstream out;
  std::ostringstream err;
  auto* old_out = std::cout.rdbuf(out.rdbuf());
  auto* old_err = std::cerr.rdbuf(err.rdbuf());
  const int code = server::run_keys_cli(static_cast<int>(args.size()), argv.data());
  std::cout.rdbuf(old_out);
  std::cerr.rdbuf(old_err);
  return {code, out.str(), err.str()};
}

std::string cli_create(const std::string& store, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"create", "--store", store, "--name", "bot"};
  args.insert(args.end(), extra.begin(), extra.end());
  const auto r = cli(args);
  EXPECT_EQ(r.code, 0) << r.err;
  return r.out.empty() ? std::string() : r.out.substr(0, r.out.size() - 1);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(SqliteKeysCli, CreateListDisableEnableDelete) {
  TempDir dir;
  const std::string db = dir.file("keys.db");
  const std::string token = cli_create(db, {"--endpoint", "ep1=read_write", "--management", "read",
                                            "--expires", "2099-01-01T00:00:00Z"});
  ASSERT_TRUE(rpa_token_well_formed(token));
  EXPECT_EQ(read_text(db).find(token), std::string::npos);

  auto keys = open_sqlite_store(db)->load();
  ASSERT_EQ(keys.size(), 1u);
  const Key k = keys[0];
  EXPECT_TRUE(digest_equal(k.hash, sha256(token)));
  EXPECT_EQ(k.prefix, token.substr(0, 8));
  EXPECT_EQ(k.name, "bot");
  EXPECT_EQ(k.management, Access::read);
  EXPECT_EQ(k.access_for("ep1"), Access::read_write);
  EXPECT_EQ(k.access_for("other"), Access::none);
  EXPECT_EQ(k.expires_at, core::parse_rfc3339("2099-01-01T00:00:00Z"));

  const auto list = cli({"list", "--store", db});
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_NE(list.out.find(k.id), std::string::npos);
  EXPECT_NE(list.out.find(k.prefix), std::string::npos);
  EXPECT_NE(list.out.find("true"), std::string::npos);

  ASSERT_EQ(cli({"disable", "--store", db, k.id}).code, 0);
  EXPECT_FALSE(open_sqlite_store(db)->load()[0].enabled);
  ASSERT_EQ(cli({"enable", "--store", db, k.id}).code, 0);
  EXPECT_TRUE(open_sqlite_store(db)->load()[0].enabled);

  const auto unknown = cli({"disable", "--store", db, "key_nope"});
  EXPECT_EQ(unknown.code, 1);
  EXPECT_NE(unknown.err.find("no key with id key_nope"), std::string::npos);

  ASSERT_EQ(cli({"delete", "--store", db, k.id}).code, 0);
  EXPECT_TRUE(open_sqlite_store(db)->load().empty());
  EXPECT_EQ(cli({"delete", "--store", db, k.id}).code, 1);

  // Only create makes a new store; the others name the missing file.
  const std::string missing = dir.file("missing.db");
  const auto l = cli({"list", "--store", missing});
  EXPECT_EQ(l.code, 1);
  EXPECT_NE(l.err.find(missing), std::string::npos);
  EXPECT_EQ(cli({"disable", "--store", missing, "key_a"}).code, 1);
  EXPECT_FALSE(fs::exists(missing));

  const std::string garbage = dir.file("garbage.db");
  std::ofstream(garbage) << std::string(1000, 'g');
  const auto g = cli({"list", "--store", garbage});
  EXPECT_EQ(g.code, 1);
  EXPECT_NE(g.err.find(garbage), std::string::npos);
  const auto gc = cli({"create", "--store", garbage, "--name", "x"});
  EXPECT_EQ(gc.code, 1);
  EXPECT_TRUE(gc.out.empty());  // no token for a key that was not stored
}

TEST(SqliteKeysCli, ImportAndExportBetweenFormats) {
  TempDir dir;
  const std::string yaml = dir.file("keys.yaml");
  cli_create(yaml);
  cli_create(yaml, {"--endpoint", "ep=read_write", "--endpoint", "*=read"});
  {  // fields the CLI cannot set: legacy access, usage, rate limit, no timestamps
    StoreLock lock(yaml);
    auto keys = load_yaml_store(yaml);
    Key legacy = make_key("key_legacy", "legacy-token");
    legacy.created_at.reset();
    legacy.legacy_access = Access::read;
    legacy.last_used_at = 1'700'000'500;
    legacy.requests_total = 42;
    keys.push_back(legacy);
    keys[0].rate_limit = RateLimit{5, 10, 2};
    write_yaml_store_atomic(yaml, keys);
  }
  const auto original = load_yaml_store(yaml);
  ASSERT_EQ(original.size(), 3u);

  // YAML -> SQLite, twice (the second adds nothing).
  const std::string db = dir.file("keys.db");
  auto imp = cli({"import", "--store", db, yaml});
  ASSERT_EQ(imp.code, 0) << imp.err;
  EXPECT_EQ(imp.err, "imported 3 keys\n");
  imp = cli({"import", "--store", db, yaml});
  ASSERT_EQ(imp.code, 0) << imp.err;
  EXPECT_EQ(imp.err, "imported 0 keys, skipped 3 already present\n");
  auto in_db = open_sqlite_store(db)->load();
  ASSERT_EQ(in_db.size(), original.size());
  for (std::size_t i = 0; i < original.size(); ++i) expect_same(in_db[i], original[i]);

  // SQLite -> stdout, SQLite -> YAML file, SQLite -> YAML store by import.
  const auto exp = cli({"export", "--store", db});
  ASSERT_EQ(exp.code, 0) << exp.err;
  EXPECT_EQ(exp.out, to_yaml(original));
  const std::string copy = dir.file("copy.yaml");
  ASSERT_EQ(cli({"export", "--store", db, copy}).code, 0);
  EXPECT_EQ(read_text(copy), read_text(yaml));
  const std::string back = dir.file("back.yaml");
  imp = cli({"import", "--store", back, db});
  ASSERT_EQ(imp.code, 0) << imp.err;
  EXPECT_EQ(read_text(back), read_text(yaml));

  // SQLite -> SQLite.
  const std::string db2 = dir.file("second.db");
  ASSERT_EQ(cli({"import", "--store", db2, db}).code, 0);
  in_db = open_sqlite_store(db2)->load();
  ASSERT_EQ(in_db.size(), original.size());
  for (std::size_t i = 0; i < original.size(); ++i) expect_same(in_db[i], original[i]);

  // A clash is refused before anything is written.
  const std::string clash = dir.file("clash.yaml");
  Key same_id = original[1];
  same_id.hash = sha256("another token");
  write_yaml_store_atomic(clash, {make_key("key_fresh", "fresh"), same_id});
  const auto refused = cli({"import", "--store", db, clash});
  EXPECT_EQ(refused.code, 1);
  EXPECT_NE(refused.err.find("already exists"), std::string::npos) << refused.err;
  EXPECT_EQ(open_sqlite_store(db)->load().size(), 3u);

  // export writes YAML only; a missing source is not created.
  EXPECT_EQ(cli({"export", "--store", yaml, dir.file("out.db")}).code, 1);
  EXPECT_FALSE(fs::exists(dir.file("out.db")));
  EXPECT_EQ(cli({"import", "--store", yaml, dir.file("missing.db")}).code, 1);
  EXPECT_FALSE(fs::exists(dir.file("missing.db")));
}

// ---- scale ----

long max_rss_kib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

// Run with --gtest_also_run_disabled_tests --gtest_filter='*Million*'.
// Target (issue 4): load() + KeySet of 1,000,000 keys in < 3 s, < 400 MB RSS.
TEST(SqliteStoreScale, DISABLED_MillionKeysLoad) {
  TempDir dir;
  const std::string path = dir.file("big.db");
  constexpr int kKeys = 1'000'000;
  open_sqlite_store(path);  // the schema
  {
    const auto t0 = std::chrono::steady_clock::now();
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_stmt* ins = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db,
                                 "INSERT INTO keys (id, name, hash, prefix, enabled, created_at, "
                                 "management, endpoints, requests_total, seq) VALUES "
                                 "(?1, ?2, ?3, ?4, 1, 1700000000, 'none', ?5, 0, 1)",
                                 -1, &ins, nullptr),
              SQLITE_OK);
    char id[32];
    char name[32];
    for (int i = 0; i < kKeys; ++i) {
      std::snprintf(id, sizeof id, "key_%08x", static_cast<unsigned>(i) * 2654435761u);
      std::snprintf(name, sizeof name, "customer-%d", i);
      const Digest h = sha256(id);
      sqlite3_bind_text(ins, 1, id, -1, SQLITE_STATIC);
      sqlite3_bind_text(ins, 2, name, -1, SQLITE_STATIC);
      sqlite3_bind_blob(ins, 3, h.data(), static_cast<int>(h.size()), SQLITE_STATIC);
      sqlite3_bind_text(ins, 4, "rpa_7Q2F", -1, SQLITE_STATIC);
      sqlite3_bind_text(ins, 5,
                        i % 2 ? R"({"*":"none","oc4qjlw7gp8i5f":"read_write"})" : R"({"*":"read"})",
                        -1, SQLITE_STATIC);
      ASSERT_EQ(sqlite3_step(ins), SQLITE_DONE);
      sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    ASSERT_EQ(sqlite3_exec(db, "UPDATE meta SET seq = 1; COMMIT", nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("created %d keys in %.2f s (%.0f MB on disk)\n", kKeys, secs,
                static_cast<double>(fs::file_size(path)) / 1e6);
  }

  const long rss_before = max_rss_kib();
  const auto t0 = std::chrono::steady_clock::now();
  const auto store = open_sqlite_store(path);
  std::vector<Key> keys = store->load();
  const auto t1 = std::chrono::steady_clock::now();
  const long rss_loaded = max_rss_kib();
  ASSERT_EQ(keys.size(), static_cast<std::size_t>(kKeys));
  const KeySet set(std::move(keys));
  const auto t2 = std::chrono::steady_clock::now();
  const long rss_after = max_rss_kib();
  const auto d = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  std::printf(
      "load() %.2f s, KeySet %.2f s, total %.2f s; max RSS %.0f MB (before %.0f MB, after "
      "load() %.0f MB; sizeof(Key) %zu)\n",
      d(t0, t1), d(t1, t2), d(t0, t2), rss_after / 1024.0, rss_before / 1024.0, rss_loaded / 1024.0,
      sizeof(Key));
  EXPECT_EQ(set.size(), static_cast<std::size_t>(kKeys));
  EXPECT_NE(set.find_by_hash(sha256("key_00000000")), nullptr);

  const auto t3 = std::chrono::steady_clock::now();
  const auto ch = store->changes();
  const auto t4 = std::chrono::steady_clock::now();
  ASSERT_TRUE(ch);
  EXPECT_TRUE(ch->upserted.empty());
  std::printf("changes() with nothing changed: %.1f us\n", d(t3, t4) * 1e6);
  EXPECT_LT(d(t0, t2), 3.0);
  EXPECT_LT(rss_after, 400L * 1024);
}

}  // namespace
}  // namespace frontdoor::auth
