// Regression tests for the key stores' hardening (review findings H3, H4,
// L1, L2, L6, L8): writers never hide each other's changes, every name a
// store accepts survives a write and a reload exactly, and ids read from a
// database are checked as the YAML store checks them.
#include "../temp_dir.hpp"
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>

#include "frontdoor/auth/key_registry.hpp"
#include "frontdoor/auth/key_store.hpp"
#include "frontdoor/auth/store.hpp"
#include "frontdoor/auth/token.hpp"
#include "frontdoor/server/keys_cli.hpp"

// ---- a hook in fsync(2) ----
//
// The YAML store's self-write stamp (L1) can only go wrong when another
// writer renames its file over ours between our rename and the moment we
// take the stamp, which is while we fsync the folder. This definition
// replaces libc's fsync for this test binary (the store library is linked
// statically into it): it passes every call straight to the system call,
// except that, when armed, the first fsync of a directory first runs the
// hook, i.e. "another writer" lands exactly inside that window.
namespace {
std::function<void()> g_fsync_dir_hook;
}  // namespace

extern "C" int fsync(int fd) {
  if (g_fsync_dir_hook) {
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
      auto hook = std::move(g_fsync_dir_hook);
      g_fsync_dir_hook = nullptr;  // the hook's own writes fsync too
      hook();
    }
  }
  return static_cast<int>(::syscall(SYS_fsync, fd));
}

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

const Key* by_id(const std::vector<Key>& keys, const std::string& id) {
  for (const Key& k : keys)
    if (k.id == id) return &k;
  return nullptr;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The UTF-8 encoding of one code point (any value up to U+10FFFF, the
// surrogates included, so that tests can build invalid input too).
std::string utf8(char32_t c) {
  std::string s;
  if (c < 0x80) {
    s += static_cast<char>(c);
  } else if (c < 0x800) {
    s += static_cast<char>(0xC0 | (c >> 6));
    s += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    s += static_cast<char>(0xE0 | (c >> 12));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (c >> 18));
    s += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (c & 0x3F));
  }
  return s;
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

// Every name that must come back from a YAML store byte for byte: the
// admin API and the CLI accept the first group, and a store must also
// carry the second (written by an older frontdoor, or exported from a
// database) without becoming unreadable.
std::vector<std::string> tricky_names() {
  std::vector<std::string> names = {
      "plain",
      "with space",
      " leading and trailing ",
      "quote \" and backslash \\",
      "single ' quote",
      "# not a comment",
      "key: value",
      "- dash",
      "&anchor",
      "*alias",
      "!tag",
      "%directive",
      "@at `tick`",
      "{flow}, [seq]",
      "null",
      "true",
      "~",
      "0x1F",
      "123",
      "caf\xc3\xa9",                                       // é
      "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",              // CJK
      "\xf0\x9f\x98\x80 \xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb",  // emoji, ZWJ sequence
      "e\xcc\x81\xcc\xa7",                                 // combining marks
      "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d \xd8\xb3\xd9\x84\xd8\xa7\xd9\x85",  // Hebrew, Arabic
      "\xe2\x80\x8f" "rtl mark",                           // U+200F
      "zero\xe2\x80\x8bwidth",                             // U+200B
      "\xef\xbf\xbd replacement",                          // U+FFFD
      "private \xee\x80\x80",                              // U+E000
      "last " + utf8(0x10FFFD),
  };
  // One name per tricky code point, alone and between letters.
  std::vector<char32_t> points = {0xA0, 0x2028, 0x2029, 0xFEFF, 0xD7FF, 0xE000, 0xFFFD, 0x10000};
  // Names only a store (not the API or the CLI) may hold.
  for (char32_t c = 1; c < 0x20; ++c) points.push_back(c);
  for (char32_t c = 0x7F; c <= 0x9F; ++c) points.push_back(c);  // DEL, C1 (NEL = U+0085)
  for (char32_t c : {0xFDD0, 0xFDEF, 0xFFFE, 0xFFFF, 0x1FFFE, 0x1FFFF, 0x10FFFE, 0x10FFFF})
    points.push_back(c);
  for (char32_t c : points) {
    const std::string one = utf8(c);
    names.push_back(one);
    names.push_back(std::string("a").append(one).append("b"));
    names.push_back(std::string(one).append(" ").append(one));
  }
  return names;
}

// ---- H4: whatever a store holds survives write → load ----

TEST(YamlStoreNames, EveryNameRoundTripsThroughTheFile) {
  TempDir dir;
  const std::string path = dir.file("keys.yaml");
  const auto names = tricky_names();
  std::vector<Key> keys;
  for (std::size_t i = 0; i < names.size(); ++i) {
    Key k = make_key("key_" + std::to_string(i), "token-" + std::to_string(i));
    k.name = names[i];
    k.prefix = names[i];  // shown as written, like the name
    if (i % 7 == 0) k.endpoints = {{names[i].empty() ? "x" : names[i], Access::read}};
    keys.push_back(std::move(k));
  }
  write_yaml_store_atomic(path, keys);
  std::vector<Key> loaded;
  try {
    loaded = load_yaml_store(path);
  } catch (const StoreError& e) {
    FAIL() << "the store frontdoor wrote does not load: " << e.what();
  }
  ASSERT_EQ(loaded.size(), keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(loaded[i].name, keys[i].name) << "name " << i << ": " << hex_of(keys[i].name);
    EXPECT_EQ(loaded[i].prefix, keys[i].prefix) << "prefix " << i;
    EXPECT_EQ(loaded[i].endpoints, keys[i].endpoints) << "endpoints " << i;
  }
  // Printable text stays readable in the file (only the unsafe is escaped).
  const std::string text = read_text(path);
  EXPECT_NE(text.find("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"), std::string::npos);
  EXPECT_NE(text.find("\\x85"), std::string::npos);
  EXPECT_NE(text.find("\\u2028"), std::string::npos);
  EXPECT_NE(text.find("\\U0010FFFF"), std::string::npos);
}

TEST(YamlStoreNames, BytesThatAreNotUtf8KeepTheFileReadable) {
  // A name that is not text at all (a hand-edited database exported to
  // YAML): the file must still load; the bad bytes become U+FFFD.
  TempDir dir;
  const std::string path = dir.file("keys.yaml");
  const std::vector<std::string> bad = {
      "over\xc0\xaflong", "surrogate\xed\xa0\x80", "stray\x80", "cut\xe6\x97", "\xff\xfe", "big\xf4\x90\x80\x80"};
  std::vector<Key> keys;
  for (std::size_t i = 0; i < bad.size(); ++i) {
    Key k = make_key("key_" + std::to_string(i), "token-" + std::to_string(i));
    k.name = bad[i];
    keys.push_back(std::move(k));
  }
  write_yaml_store_atomic(path, keys);
  std::vector<Key> loaded;
  ASSERT_NO_THROW(loaded = load_yaml_store(path));
  ASSERT_EQ(loaded.size(), bad.size());
  EXPECT_EQ(loaded[0].name, "over\xef\xbf\xbd\xef\xbf\xbdlong");
  EXPECT_EQ(loaded[1].name, "surrogate\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  for (const Key& k : loaded) EXPECT_FALSE(key_name_problem(k.name)) << hex_of(k.name);
}

TEST(KeyNames, WhatIsRefusedAndWhatIsAName) {
  for (const std::string& ok :
       {std::string("ci-bot"), utf8(0xA0), utf8(0x2028), utf8(0x2029), utf8(0xFEFF), utf8(0xFFFD),
        utf8(0x10FFFD), std::string("\xf0\x9f\x98\x80"), std::string("e\xcc\x81"),
        std::string("\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d"), std::string("\xe6\x97\xa5")}) {
    EXPECT_FALSE(key_name_problem(ok)) << hex_of(ok);
  }
  std::vector<std::string> refused = {"tab\there", "nl\n", std::string("nul\0", 4), "del\x7f"};
  for (char32_t c = 0x80; c <= 0x9F; ++c) refused.push_back("c1 " + utf8(c));
  for (char32_t c : {0xFDD0, 0xFDEF, 0xFFFE, 0xFFFF, 0x1FFFE, 0x10FFFF}) refused.push_back(utf8(c));
  // Not UTF-8: overlong forms, surrogates, beyond U+10FFFF, cut short.
  for (const char* bad : {"\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xed\xa0\x80",
                          "\xed\xbf\xbf", "\xf4\x90\x80\x80", "\xe6\x97", "\x80", "\xff"})
    refused.push_back(bad);
  for (const auto& name : refused) EXPECT_TRUE(key_name_problem(name)) << hex_of(name);
  EXPECT_EQ(key_name_problem(utf8(0x85)), "control characters are not allowed");
  EXPECT_EQ(key_name_problem("\xed\xa0\x80"), "not valid UTF-8");
}

// `frontdoor keys create --name` refuses what the API refuses, with a
// message, before anything is written; and takes the rest.
struct CliRun {
  int code;
  std::string out;
  std::string err;
};

CliRun keys_cli(std::vector<std::string> args) {
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

TEST(KeysCliNames, RefusesControlsNoncharactersAndInvalidUtf8) {
  TempDir dir;
  for (const std::string& store : {dir.file("keys.yaml"), dir.file("keys.db")}) {
    for (const std::string& bad : {"a" + utf8(0x85), utf8(0x80), utf8(0x9B) + "[31m", utf8(0xFFFE),
                                   utf8(0xFDD0), std::string("\xc0\xaf"), std::string("\xed\xa0\x80"),
                                   std::string("\xf4\x90\x80\x80")}) {
      const auto r = keys_cli({"create", "--store", store, "--name", bad});
      EXPECT_EQ(r.code, 1) << store << " " << hex_of(bad);
      EXPECT_TRUE(r.out.empty()) << "a token was printed for a refused name";
      EXPECT_NE(r.err.find("--name: "), std::string::npos) << r.err;
    }
    const std::string fine = "dash " + utf8(0xA0) + "\xf0\x9f\x98\x80 \xe6\x97\xa5 e\xcc\x81 " +
                             utf8(0x2028) + "\xd7\xa9";
    const auto r = keys_cli({"create", "--store", store, "--name", fine});
    ASSERT_EQ(r.code, 0) << store << ": " << r.err;
    std::vector<Key> keys;
    if (store.ends_with(".db")) {
      keys = open_sqlite_store(store)->load();
    } else {
      ASSERT_NO_THROW(keys = load_yaml_store(store));
    }
    ASSERT_EQ(keys.size(), 1u) << store;
    EXPECT_EQ(keys[0].name, fine) << store;
  }
}

// ---- H3: a usage flush never hides another writer's change ----

TEST(SqliteUsageFlush, DoesNotHideADisableByAnotherWriter) {
  TempDir dir;
  const std::string path = dir.file("keys.db");
  const auto server = open_sqlite_store(path);
  const auto cli = open_sqlite_store(path);
  server->create(make_key("key_a", "ta"));
  server->create(make_key("key_b", "tb"));
  ASSERT_EQ(server->load().size(), 2u);

  // `keys disable key_a` commits; before the server's next poll, its usage
  // flush merges into that very row (the key is in use).
  ASSERT_TRUE(cli->update("key_a", [](Key& k) { k.enabled = false; }));
  server->flush_usage({{"key_a", 1'700'000'500, 10}, {"key_b", 1'700'000'500, 3}});
  auto ch = server->changes();
  ASSERT_TRUE(ch);
  const Key* a = by_id(ch->upserted, "key_a");
  ASSERT_NE(a, nullptr) << "the disable was hidden by the usage flush";
  EXPECT_FALSE(a->enabled);
  EXPECT_EQ(a->requests_total, 10u);

  // With no other writer, the server's own flush is not reported back.
  server->flush_usage({{"key_a", 1'700'000'600, 11}});
  ch = server->changes();
  ASSERT_TRUE(ch);
  EXPECT_TRUE(ch->upserted.empty());

  // The same for a change made between two flushes of the same poll period.
  server->flush_usage({{"key_b", 1'700'000'700, 4}});
  ASSERT_TRUE(cli->update("key_b", [](Key& k) { k.rate_limit = RateLimit{1, 1, 0}; }));
  server->flush_usage({{"key_b", 1'700'000'800, 5}});
  ch = server->changes();
  ASSERT_TRUE(ch);
  const Key* b = by_id(ch->upserted, "key_b");
  ASSERT_NE(b, nullptr) << "the rate limit was hidden by the usage flush";
  EXPECT_TRUE(b->rate_limit);

  // Another process still sees the usage.
  ch = cli->changes();
  ASSERT_TRUE(ch);
  ASSERT_NE(by_id(ch->upserted, "key_a"), nullptr);
  EXPECT_EQ(by_id(ch->upserted, "key_a")->requests_total, 11u);
}

// ---- L2: a sequence is ours only once its transaction committed ----

TEST(SqliteOwnWrites, AFailedCommitDoesNotHideTheNextWriter) {
  TempDir dir;
  const std::string path = dir.file("keys.db");
  const auto server = open_sqlite_store(path);
  const auto cli = open_sqlite_store(path);
  server->create(make_key("key_a", "ta"));
  server->load();

  // No file may grow: the commit (which appends to the WAL) fails, and
  // the transaction rolls back, freeing its sequence number.
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  const auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  std::uintmax_t biggest = 0;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::error_code ec;
    const auto size = fs::file_size(path + suffix, ec);
    if (!ec) biggest = std::max(biggest, size);
  }
  struct rlimit small = old;
  small.rlim_cur = static_cast<rlim_t>(biggest);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  bool failed = false;
  try {
    server->create(make_key("key_b", "tb"));
  } catch (const StoreError&) {
    failed = true;
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);
  ASSERT_TRUE(failed) << "the commit did not fail; the test cannot say anything";
  ASSERT_EQ(server->load().size(), 1u);
  server->changes();

  // The next writer gets the same sequence number: its key must reach us.
  cli->create(make_key("key_c", "tc"));
  const auto ch = server->changes();
  ASSERT_TRUE(ch);
  EXPECT_NE(by_id(ch->upserted, "key_c"), nullptr) << "another writer's key was taken for ours";
}

// ---- L6: ids from a database are checked as YAML ids are ----

void exec_sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "") << "\n" << sql;
  sqlite3_free(err);
  sqlite3_close(db);
}

// A row inserted behind frontdoor's back, stamped as a change.
std::string hand_insert(const std::string& id_sql, const std::string& hash_hex) {
  return "INSERT INTO keys (id, name, hash, prefix, enabled, management, endpoints, seq) VALUES (" +
         id_sql + ", 'hand', X'" + hash_hex +
         "', 'rpa_x', 1, 'none', '{\"*\":\"read\"}', (SELECT seq + 1 FROM meta));"
         "UPDATE meta SET seq = seq + 1;";
}

TEST(SqliteKeyIds, RowsWithIdsThatAreNotKeyIdsAreSkipped) {
  TempDir dir;
  const std::string path = dir.file("keys.db");
  {
    const auto store = open_sqlite_store(path);
    store->create(make_key("key_good", "tg"));
  }
  auto hex = [](const std::string& token) {
    const Digest d = sha256(token);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string s;
    for (unsigned char c : d) {
      s += kHex[c >> 4];
      s += kHex[c & 15];
    }
    return s;
  };
  // A quote and a newline (they would break the access log's JSON and
  // the X-Frontdoor-Key-Id header), a space, and an empty id.
  exec_sql(path, hand_insert("'key_\"x' || char(10) || 'X-Injected: 1'", hex("t1")));
  exec_sql(path, hand_insert("'key with space'", hex("t2")));
  exec_sql(path, hand_insert("''", hex("t3")));
  exec_sql(path, hand_insert("'key_fine.2'", hex("t4")));

  const auto store = open_sqlite_store(path);
  std::vector<Key> keys;
  ASSERT_NO_THROW(keys = store->load());
  std::vector<std::string> ids;
  for (const Key& k : keys) ids.push_back(k.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"key_good", "key_fine.2"}));

  // The same for rows that arrive as changes; good changes still come.
  exec_sql(path, hand_insert("'bad id 2'", hex("t5")));
  exec_sql(path, hand_insert("'key_new'", hex("t6")));
  exec_sql(path,
           "INSERT INTO deleted (id, seq) VALUES ('gone' || char(10), (SELECT seq + 1 FROM meta));"
           "UPDATE meta SET seq = seq + 1;");
  std::optional<StoreChanges> ch;
  ASSERT_NO_THROW(ch = store->changes());
  ASSERT_TRUE(ch);
  ASSERT_EQ(ch->upserted.size(), 1u);
  EXPECT_EQ(ch->upserted[0].id, "key_new");
  EXPECT_TRUE(ch->deleted_ids.empty());

  // And nothing writes such an id.
  EXPECT_THROW(store->create(make_key("key\nx", "t7")), StoreError);
}

// ---- L8: a random id another writer holds already is picked again ----

// A store whose first creates meet an id "taken by another writer".
class CollidingStore final : public KeyStore {
 public:
  CollidingStore(std::unique_ptr<KeyStore> real, int collisions)
      : real_(std::move(real)), collisions_(collisions) {}
  const std::string& path() const noexcept override { return real_->path(); }
  std::vector<Key> load() override { return real_->load(); }
  std::optional<StoreChanges> changes() override { return real_->changes(); }
  void create(const Key& key) override {
    tried.push_back(key.id);
    if (collisions_-- > 0) {
      // What the real store does when the id exists: make it so, then ask.
      Key other = key;
      other.hash = sha256("other-" + key.id);
      real_->create(other);
    }
    real_->create(key);
  }
  std::optional<Key> update(const std::string& id, const std::function<void(Key&)>& edit) override {
    return real_->update(id, edit);
  }
  bool remove(const std::string& id) override { return real_->remove(id); }
  void flush_usage(const std::vector<KeyUsage>& usage) override { real_->flush_usage(usage); }

  std::vector<std::string> tried;

 private:
  std::unique_ptr<KeyStore> real_;
  int collisions_;
};

TEST(KeyRegistryIds, AnIdTakenMeanwhileIsPickedAgain) {
  for (const std::string name : {"keys.db", "keys.yaml"}) {
    TempDir dir;
    const std::string path = dir.file(name);
    if (name.ends_with(".yaml")) std::ofstream(path) << "keys: []\n";
    auto colliding = std::make_unique<CollidingStore>(KeyStore::open(path), 2);
    CollidingStore* store = colliding.get();
    core::SnapshotCell<KeySet> cell;
    KeyRegistry registry(std::move(colliding), cell);
    NewKey spec;
    spec.name = "n";
    IssuedKey issued;
    ASSERT_NO_THROW(issued = registry.create(spec)) << name;
    ASSERT_EQ(store->tried.size(), 3u) << name;
    EXPECT_NE(store->tried[0], store->tried[1]);
    EXPECT_EQ(issued.key.id, store->tried[2]);
    EXPECT_TRUE(valid_key_id(issued.key.id));
    EXPECT_EQ(issued.key.id.size(), 12u) << "SPEC §3: key_ and 8 hex digits";
    EXPECT_TRUE(registry.get(issued.key.id));
  }
}

// ---- L1: the YAML store's own write is told apart from a CLI write ----

TEST(YamlSelfWrite, ACliWriteRightAfterOursIsStillSeen) {
  TempDir dir;
  const std::string path = dir.file("keys.yaml");
  write_yaml_store_atomic(path, {make_key("key_a", "ta")});
  const auto store = KeyStore::open(path);
  ASSERT_EQ(store->load().size(), 1u);

  // While our update fsyncs the folder after its rename, `keys disable`
  // (which locks the new file: our lock is on the old one) writes too.
  bool cli_ran = false;
  g_fsync_dir_hook = [&] {
    StoreLock lock(path);
    auto keys = load_yaml_store(path);
    keys[0].enabled = false;
    write_yaml_store_atomic(path, keys);
    cli_ran = true;
  };
  ASSERT_TRUE(store->update("key_a", [](Key& k) { k.name = "renamed"; }));
  g_fsync_dir_hook = nullptr;
  ASSERT_TRUE(cli_ran);
  ASSERT_FALSE(load_yaml_store(path)[0].enabled);
  EXPECT_FALSE(store->changes()) << "the CLI's disable was taken for our own write";

  // Our own write alone is not a change.
  store->load();
  ASSERT_TRUE(store->update("key_a", [](Key& k) { k.name = "again"; }));
  const auto ch = store->changes();
  ASSERT_TRUE(ch);
  EXPECT_TRUE(ch->upserted.empty());
}

}  // namespace
}  // namespace frontdoor::auth
