// The SQLite key store (SPEC §3): millions of keys, frequent changes, and
// several writers (the `keys` CLI and running servers) on one file.
//
// SQLite's own locking is the store lock: every mutation is one
// BEGIN IMMEDIATE transaction, so it is serialized with every other writer
// and works on the rows as they are now. WAL lets readers (a server's
// changes() poll) run beside a writer; synchronous=FULL makes a committed
// change survive a crash.
//
// Change tracking: a single-row `meta` table holds the global change
// sequence. Every write transaction takes the next number, stamps it on the
// rows it inserts or updates (`keys.seq`) or on a tombstone (`deleted.seq`)
// and stores it in `meta`. Because writers are serialized, sequence order is
// commit order, so "rows with seq > the last one I saw" is exactly what
// changed since, and an unchanged store costs one single-row read.
// An id lives in at most one of `keys` and `deleted`.
//
// An instance's own writes are already in its snapshot, so changes() skips
// the rows stamped with a sequence this instance wrote (`own_`). That is
// only right while the row holds nothing the snapshot lacks: a usage flush
// merges into rows that another writer may have changed since our last
// poll (a `keys disable` on a key in use), and re-stamping such a row with
// an "own" sequence would hide that change for good. So a flush's sequence
// counts as own only when no other writer's change is pending.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "frontdoor/auth/store.hpp"
#include "frontdoor/core/log.hpp"

namespace frontdoor::auth {
namespace {

constexpr int kSchemaVersion = 1;
constexpr int kBusyTimeoutMs = 4000;  // the CLI and a server may both write; under the admin API's 5 s

constexpr const char* kSchema = R"sql(
CREATE TABLE keys (
  id                  TEXT    PRIMARY KEY NOT NULL,
  name                TEXT    NOT NULL,
  hash                BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),  -- SHA-256 of the token
  prefix              TEXT    NOT NULL,
  enabled             INTEGER NOT NULL,
  created_at          INTEGER,           -- unix seconds, NULL = unknown
  last_used_at        INTEGER,
  expires_at          INTEGER,
  management          TEXT    NOT NULL,  -- none | read | read_write
  legacy_access       TEXT,              -- NULL, read or read_write
  endpoints           TEXT    NOT NULL,  -- JSON object: {"*": "none", "<endpoint>": "<access>"}
  rate_rps            REAL,              -- the three are NULL together: no rate limit
  rate_burst          INTEGER,
  rate_max_concurrent INTEGER,
  requests_total      INTEGER NOT NULL DEFAULT 0,
  seq                 INTEGER NOT NULL   -- change sequence of the last write to this row
);
CREATE INDEX keys_seq ON keys (seq);
CREATE TABLE deleted (
  id  TEXT    PRIMARY KEY NOT NULL,
  seq INTEGER NOT NULL
);
CREATE INDEX deleted_seq ON deleted (seq);
CREATE TABLE meta (
  one INTEGER PRIMARY KEY CHECK (one = 1),
  seq INTEGER NOT NULL                   -- the last change sequence handed out
);
INSERT INTO meta (one, seq) VALUES (1, 0);
)sql";

// Column order shared by every SELECT of whole keys (read_key) and by
// the INSERT/UPDATE bindings (bind_key).
#define FD_KEY_COLUMNS                                                                  \
  "id, name, hash, prefix, enabled, created_at, last_used_at, expires_at, management, " \
  "legacy_access, endpoints, rate_rps, rate_burst, rate_max_concurrent, requests_total"

std::string_view column_text(sqlite3_stmt* s, int col) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, col));
  if (!p) return {};
  return {p, static_cast<std::size_t>(sqlite3_column_bytes(s, col))};
}

std::optional<core::UnixSeconds> column_time(sqlite3_stmt* s, int col) {
  if (sqlite3_column_type(s, col) == SQLITE_NULL) return std::nullopt;
  return sqlite3_column_int64(s, col);
}

std::uint64_t column_u64(sqlite3_stmt* s, int col) {
  const sqlite3_int64 v = sqlite3_column_int64(s, col);
  return v < 0 ? 0 : static_cast<std::uint64_t>(v);
}

sqlite3_int64 to_i64(std::uint64_t v) {
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<sqlite3_int64>::max());
  return static_cast<sqlite3_int64>(std::min(v, kMax));
}

std::string encode_endpoints(const Key& k) {
  boost::json::object o;
  o.reserve(k.endpoints.size() + 1);
  o.emplace("*", to_string(k.default_access));
  for (const auto& [endpoint, access] : k.endpoints) o.emplace(endpoint, to_string(access));
  return boost::json::serialize(o);
}

// Owns the connection and turns every SQLite failure into a StoreError
// "<path>: <what>: <sqlite3_errmsg>".
class Db {
 public:
  explicit Db(std::string path) : path_(std::move(path)) {}
  ~Db() {
    if (db_) sqlite3_close_v2(db_);
  }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  void open(int flags) {
    const int rc = sqlite3_open_v2(path_.c_str(), &db_, flags, nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      throw StoreError(path_ + ": cannot open the key store: " + msg);
    }
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, kBusyTimeoutMs);
  }

  [[noreturn]] void fail(std::string_view what) const {
    throw StoreError(path_ + ": " + std::string(what) + ": " + sqlite3_errmsg(db_));
  }

  void exec(const char* sql, std::string_view what) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) fail(what);
  }

  sqlite3* get() const noexcept { return db_; }
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
  sqlite3* db_ = nullptr;
};

// A statement prepared once and reused for the life of the store.
class Statement {
 public:
  Statement(Db& db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v3(db.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) !=
        SQLITE_OK) {
      db.fail(std::string("preparing \"") + sql + "\"");
    }
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Db& db() const noexcept { return db_; }
  sqlite3_stmt* get() const noexcept { return stmt_; }

 private:
  Db& db_;
  sqlite3_stmt* stmt_ = nullptr;
};

// One execution of a Statement. Resets it on scope exit, so that a
// statement left half-stepped (an exception) never pins a read transaction.
class Run {
 public:
  explicit Run(Statement& s) : db_(s.db()), s_(s.get()) {}
  ~Run() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;

  sqlite3_stmt* get() const noexcept { return s_; }

  void bind_text(int i, std::string_view v) {
    check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  }
  void bind_blob(int i, const void* p, std::size_t n) {
    check(sqlite3_bind_blob(s_, i, p, static_cast<int>(n), SQLITE_TRANSIENT));
  }
  void bind_i64(int i, sqlite3_int64 v) { check(sqlite3_bind_int64(s_, i, v)); }
  void bind_double(int i, double v) { check(sqlite3_bind_double(s_, i, v)); }
  void bind_null(int i) { check(sqlite3_bind_null(s_, i)); }
  void bind_opt_time(int i, const std::optional<core::UnixSeconds>& t) {
    if (t) {
      bind_i64(i, *t);
    } else {
      bind_null(i);
    }
  }

  // True for a row, false when done; throws on an error.
  bool step(std::string_view what) {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    db_.fail(what);
  }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) db_.fail("binding a parameter");
  }

  Db& db_;
  sqlite3_stmt* s_;
};

// BEGIN ... COMMIT, rolled back on scope exit unless committed.
class Transaction {
 public:
  Transaction(Db& db, const char* begin) : db_(db) { db_.exec(begin, "starting a transaction"); }
  ~Transaction() {
    if (!done_) sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  void commit() {
    db_.exec("COMMIT", "committing");
    done_ = true;
  }

 private:
  Db& db_;
  bool done_ = false;
};

class SqliteKeyStore final : public KeyStore {
 public:
  explicit SqliteKeyStore(const std::string& path) : db_(path) {
    create_private_file(path);
    db_.open(SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX);
    // The first statement reads the file: a file that is not an SQLite
    // database fails here ("file is not a database").
    set_wal();
    db_.exec("PRAGMA synchronous = FULL", "opening the key store");
    ensure_schema();
    prepare();
  }

  const std::string& path() const noexcept override { return db_.path(); }

  std::vector<Key> load() override {
    Transaction tx(db_, "BEGIN");  // one snapshot: the keys and their sequence agree
    std::vector<Key> keys;
    {
      Run count(*count_);
      if (count.step("counting keys")) {
        keys.reserve(static_cast<std::size_t>(sqlite3_column_int64(count.get(), 0)));
      }
    }
    {
      Run all(*select_all_);
      while (all.step("reading keys")) {
        if (!read_key(all.get(), keys.emplace_back())) keys.pop_back();
      }
    }
    const std::int64_t seq = read_seq();
    tx.commit();
    last_seen_ = seq;
    return keys;
  }

  std::optional<StoreChanges> changes() override {
    Transaction tx(db_, "BEGIN");
    const std::int64_t seq = read_seq();
    StoreChanges out;
    if (seq == last_seen_) return out;
    // Sequences only grow; a smaller one means the file was replaced or
    // recreated, and nothing can be said about what changed.
    if (seq < last_seen_) return std::nullopt;
    // Rows this instance wrote itself (its admin changes, its usage
    // flushes) are already in its snapshot: reporting them again would only
    // grow the registry's overlay with copies.
    {
      Run changed(*select_changed_);
      changed.bind_i64(1, last_seen_);
      while (changed.step("reading changed keys")) {
        if (own_.count(sqlite3_column_int64(changed.get(), 15))) continue;
        if (!read_key(changed.get(), out.upserted.emplace_back())) out.upserted.pop_back();
      }
    }
    {
      Run deleted(*select_deleted_);
      deleted.bind_i64(1, last_seen_);
      while (deleted.step("reading deleted keys")) {
        if (own_.count(sqlite3_column_int64(deleted.get(), 1))) continue;
        const std::string_view id = column_text(deleted.get(), 0);
        if (valid_key_id(id)) out.deleted_ids.emplace_back(id);  // never loaded otherwise
      }
    }
    tx.commit();
    last_seen_ = seq;
    own_.erase(own_.begin(), own_.upper_bound(seq));
    return out;
  }

  void create(const Key& key) override {
    if (!valid_key_id(key.id)) {
      throw StoreError(path() + ": key id \"" + printable_id(key.id) +
                       "\": expected 1 to 128 characters of A-Z a-z 0-9 _ - .");
    }
    Transaction tx(db_, "BEGIN IMMEDIATE");
    {
      Run by_id(*select_id_);
      by_id.bind_text(1, key.id);
      if (by_id.step("looking up a key")) {
        throw DuplicateKeyId(path() + ": key " + key.id + " already exists");
      }
    }
    {
      Run by_hash(*select_hash_);
      by_hash.bind_blob(1, key.hash.data(), key.hash.size());
      if (by_hash.step("looking up a key")) {
        throw StoreError(path() + ": key " + key.id + " has the same token (hash) as key " +
                         std::string(column_text(by_hash.get(), 0)));
      }
    }
    const std::int64_t seq = read_seq() + 1;
    {
      Run insert(*insert_);
      bind_key(insert, key, seq);
      insert.step("adding key " + key.id);
    }
    {
      Run untomb(*delete_tombstone_);
      untomb.bind_text(1, key.id);
      untomb.step("adding key " + key.id);
    }
    write_seq(seq);
    tx.commit();
    own_.insert(seq);
  }

  std::optional<Key> update(const std::string& id, const std::function<void(Key&)>& edit) override {
    Transaction tx(db_, "BEGIN IMMEDIATE");
    Key k;
    {
      Run one(*select_one_);
      one.bind_text(1, id);
      if (!one.step("reading key " + id)) return std::nullopt;
      read_key(one.get(), k);
    }
    edit(k);
    if (k.id != id) throw StoreError(path() + ": key " + id + ": the id of a key cannot change");
    const std::int64_t seq = read_seq() + 1;
    {
      Run upd(*update_);
      bind_key(upd, k, seq);
      if (sqlite3_step(upd.get()) != SQLITE_DONE) {
        if (sqlite3_extended_errcode(db_.get()) == SQLITE_CONSTRAINT_UNIQUE) {
          throw StoreError(path() + ": key " + id + ": another key has the same token (hash)");
        }
        db_.fail("updating key " + id);
      }
    }
    write_seq(seq);
    tx.commit();
    own_.insert(seq);
    return k;
  }

  bool remove(const std::string& id) override {
    Transaction tx(db_, "BEGIN IMMEDIATE");
    {
      Run del(*delete_key_);
      del.bind_text(1, id);
      del.step("deleting key " + id);
    }
    if (sqlite3_changes(db_.get()) == 0) return false;
    const std::int64_t seq = read_seq() + 1;
    {
      Run tomb(*insert_tombstone_);
      tomb.bind_text(1, id);
      tomb.bind_i64(2, seq);
      tomb.step("deleting key " + id);
    }
    write_seq(seq);
    tx.commit();
    own_.insert(seq);
    return true;
  }

  void flush_usage(const std::vector<KeyUsage>& usage) override {
    if (usage.empty()) return;
    Transaction tx(db_, "BEGIN IMMEDIATE");
    const std::int64_t seq = read_seq() + 1;
    // Asked before the merge re-stamps anything: whether a row holds a
    // change this instance has not seen yet (see the top of this file).
    const bool others_pending = foreign_changes_pending();
    bool changed = false;
    for (const KeyUsage& u : usage) {
      Run upd(*merge_usage_);
      upd.bind_text(1, u.id);
      upd.bind_opt_time(2, u.last_used_at);
      upd.bind_i64(3, to_i64(u.requests_total));
      upd.bind_i64(4, seq);
      upd.step("recording usage of key " + u.id);
      // A key deleted meanwhile matches no row and stays deleted.
      changed = changed || sqlite3_changes(db_.get()) > 0;
    }
    if (!changed) return;  // nothing newer than what is stored: no write at all
    write_seq(seq);
    tx.commit();
    // Otherwise the next changes() reports this batch back: our usage
    // comes along with the other writer's change, which is what matters.
    if (!others_pending) own_.insert(seq);
  }

 private:
  // A new store is created owner-only, as the YAML store is: key names and
  // scopes are private. SQLite gives its -wal and -shm files the same mode.
  static void create_private_file(const std::string& path) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) ::close(fd);
    // EEXIST and every other failure: let sqlite3_open_v2 report it.
  }

  void set_wal() {
    std::string mode;
    auto cb = [](void* out, int n, char** values, char**) -> int {
      if (n > 0 && values[0]) *static_cast<std::string*>(out) = values[0];
      return 0;
    };
    if (sqlite3_exec(db_.get(), "PRAGMA journal_mode = WAL", cb, &mode, nullptr) != SQLITE_OK) {
      db_.fail("opening the key store");
    }
    if (mode != "wal") {
      throw StoreError(path() + ": opening the key store: cannot use WAL journal mode (got \"" +
                       mode + "\")");
    }
  }

  int user_version() {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_.get(), "PRAGMA user_version", -1, &s, nullptr) != SQLITE_OK) {
      db_.fail("reading the schema version");
    }
    const int rc = sqlite3_step(s);
    const int v = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
    sqlite3_finalize(s);
    if (v < 0) db_.fail("reading the schema version");
    return v;
  }

  void ensure_schema() {
    int v = user_version();
    if (v == 0) {
      // Two processes may open a new file at once: decide under the write lock.
      Transaction tx(db_, "BEGIN IMMEDIATE");
      v = user_version();
      if (v == 0) {
        sqlite3_stmt* s = nullptr;
        if (sqlite3_prepare_v2(db_.get(), "SELECT count(*) FROM sqlite_schema", -1, &s, nullptr) !=
            SQLITE_OK) {
          db_.fail("reading the schema");
        }
        const bool empty = sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int64(s, 0) == 0;
        sqlite3_finalize(s);
        if (!empty) {
          throw StoreError(path() +
                           ": not a frontdoor key store (an SQLite database with other tables)");
        }
        db_.exec(kSchema, "creating the schema");
        db_.exec(("PRAGMA user_version = " + std::to_string(kSchemaVersion)).c_str(),
                 "creating the schema");
        tx.commit();
        return;
      }
    }
    if (v != kSchemaVersion) {
      throw StoreError(path() + ": key store schema version " + std::to_string(v) +
                       " is not supported (this frontdoor reads version " +
                       std::to_string(kSchemaVersion) + ")");
    }
  }

  void prepare() {
    auto p = [this](const char* sql) { return std::make_unique<Statement>(db_, sql); };
    count_ = p("SELECT count(*) FROM keys");
    select_all_ = p("SELECT " FD_KEY_COLUMNS " FROM keys");
    select_changed_ = p("SELECT " FD_KEY_COLUMNS ", seq FROM keys WHERE seq > ?1 ORDER BY seq");
    select_deleted_ = p("SELECT id, seq FROM deleted WHERE seq > ?1 ORDER BY seq");
    select_one_ = p("SELECT " FD_KEY_COLUMNS " FROM keys WHERE id = ?1");
    select_id_ = p("SELECT 1 FROM keys WHERE id = ?1");
    select_hash_ = p("SELECT id FROM keys WHERE hash = ?1");
    read_seq_ = p("SELECT seq FROM meta WHERE one = 1");
    select_seq_since_ = p("SELECT seq FROM keys WHERE seq > ?1");
    write_seq_ = p("UPDATE meta SET seq = ?1 WHERE one = 1");
    insert_ = p("INSERT INTO keys (" FD_KEY_COLUMNS
                ", seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
                "?15, ?16)");
    update_ =
        p("UPDATE keys SET name = ?2, hash = ?3, prefix = ?4, enabled = ?5, created_at = ?6, "
          "last_used_at = ?7, expires_at = ?8, management = ?9, legacy_access = ?10, "
          "endpoints = ?11, rate_rps = ?12, rate_burst = ?13, rate_max_concurrent = ?14, "
          "requests_total = ?15, seq = ?16 WHERE id = ?1");
    delete_key_ = p("DELETE FROM keys WHERE id = ?1");
    insert_tombstone_ = p("INSERT OR REPLACE INTO deleted (id, seq) VALUES (?1, ?2)");
    delete_tombstone_ = p("DELETE FROM deleted WHERE id = ?1");
    // Merge by maximum; the WHERE clause leaves a row (and its seq) alone
    // when the batch has nothing newer, so idle keys never look changed.
    merge_usage_ =
        p("UPDATE keys SET "
          "last_used_at = CASE WHEN ?2 IS NOT NULL AND (last_used_at IS NULL OR last_used_at < ?2) "
          "THEN ?2 ELSE last_used_at END, "
          "requests_total = max(requests_total, ?3), seq = ?4 "
          "WHERE id = ?1 AND ((?2 IS NOT NULL AND (last_used_at IS NULL OR last_used_at < ?2)) "
          "OR requests_total < ?3)");
  }

  std::int64_t read_seq() {
    Run r(*read_seq_);
    if (!r.step("reading the change sequence")) {
      throw StoreError(path() + ": the change sequence (table meta) is missing");
    }
    return sqlite3_column_int64(r.get(), 0);
  }

  // The caller records `seq` in own_ once the transaction has committed: a
  // failed commit hands the same number to the next writer, whose rows
  // must not be skipped as ours.
  void write_seq(std::int64_t seq) {
    Run w(*write_seq_);
    w.bind_i64(1, seq);
    w.step("writing the change sequence");
  }

  // True when a key row carries a sequence that changes() has not reported
  // yet and that this instance did not write. Only rows changed since the
  // last poll are read (the keys_seq index).
  bool foreign_changes_pending() {
    Run since(*select_seq_since_);
    since.bind_i64(1, last_seen_);
    while (since.step("reading changed keys")) {
      if (!own_.count(sqlite3_column_int64(since.get(), 0))) return true;
    }
    return false;
  }

  [[noreturn]] void corrupt(std::string_view id, std::string_view what) const {
    throw StoreError(path() + ": key " + std::string(id) + ": " + std::string(what));
  }

  Access access_column(sqlite3_stmt* s, int col, std::string_view id,
                       std::string_view field) const {
    const auto a = parse_access(column_text(s, col));
    if (!a) corrupt(id, std::string(field) + ": expected none, read or read_write");
    return *a;
  }

  // Reads one row (FD_KEY_COLUMNS order) into `k`, which is default-built.
  // Straight from SQLite's buffers into the Key's own strings. False (and
  // logged) for a row whose id is not a key id, as the YAML store refuses
  // one: ids go unescaped into the access log and X-Frontdoor-Key-Id. Such
  // a row can only come from editing the database by hand; it is skipped,
  // so its token gets 401 and every other key still loads.
  bool read_key(sqlite3_stmt* s, Key& k) const {
    const std::string_view id = column_text(s, 0);
    if (!valid_key_id(id)) {
      core::log::error("key store: key skipped",
                       {{"store", path()},
                        {"id", printable_id(id)},
                        {"error", "id: expected 1 to 128 characters of A-Z a-z 0-9 _ - ."}});
      return false;
    }
    k.id.assign(id);
    k.name.assign(column_text(s, 1));
    if (sqlite3_column_bytes(s, 2) != static_cast<int>(k.hash.size()))
      corrupt(k.id, "hash: not 32 bytes");
    std::memcpy(k.hash.data(), sqlite3_column_blob(s, 2), k.hash.size());
    k.prefix.assign(column_text(s, 3));
    k.enabled = sqlite3_column_int(s, 4) != 0;
    k.created_at = column_time(s, 5);
    k.last_used_at = column_time(s, 6);
    k.expires_at = column_time(s, 7);
    k.management = access_column(s, 8, k.id, "management");
    if (sqlite3_column_type(s, 9) != SQLITE_NULL) {
      k.legacy_access = access_column(s, 9, k.id, "legacy_access");
    }
    read_endpoints(column_text(s, 10), k);
    if (sqlite3_column_type(s, 11) != SQLITE_NULL) {
      k.rate_limit = RateLimit{sqlite3_column_double(s, 11), column_u64(s, 12), column_u64(s, 13)};
    }
    k.requests_total = column_u64(s, 14);
    return true;
  }

  void read_endpoints(std::string_view text, Key& k) const {
    // Parsed in a stack buffer: no heap traffic beyond the Key's own.
    unsigned char buf[2048];
    boost::json::monotonic_resource mr(buf, sizeof buf);
    boost::system::error_code ec;
    const boost::json::value v = boost::json::parse(text, ec, &mr);
    if (ec || !v.is_object()) corrupt(k.id, "endpoints: expected a JSON object");
    const boost::json::object& o = v.get_object();
    k.endpoints.reserve(o.size());
    for (const auto& entry : o) {
      const boost::json::string* s = entry.value().if_string();
      const auto a = s ? parse_access(std::string_view(*s)) : std::nullopt;
      if (!a)
        corrupt(k.id,
                "endpoints." + std::string(entry.key()) + ": expected none, read or read_write");
      if (entry.key() == "*") {
        k.default_access = *a;
      } else {
        k.endpoints.emplace_back(std::string(entry.key()), *a);
      }
    }
    if (!std::is_sorted(k.endpoints.begin(), k.endpoints.end())) {
      std::sort(k.endpoints.begin(), k.endpoints.end());
    }
  }

  static void bind_key(Run& r, const Key& k, std::int64_t seq) {
    r.bind_text(1, k.id);
    r.bind_text(2, k.name);
    r.bind_blob(3, k.hash.data(), k.hash.size());
    r.bind_text(4, k.prefix);
    r.bind_i64(5, k.enabled ? 1 : 0);
    r.bind_opt_time(6, k.created_at);
    r.bind_opt_time(7, k.last_used_at);
    r.bind_opt_time(8, k.expires_at);
    r.bind_text(9, to_string(k.management));
    if (k.legacy_access) {
      r.bind_text(10, to_string(*k.legacy_access));
    } else {
      r.bind_null(10);
    }
    r.bind_text(11, encode_endpoints(k));
    if (k.rate_limit) {
      r.bind_double(12, k.rate_limit->rps);
      r.bind_i64(13, to_i64(k.rate_limit->burst));
      r.bind_i64(14, to_i64(k.rate_limit->max_concurrent));
    } else {
      r.bind_null(12);
      r.bind_null(13);
      r.bind_null(14);
    }
    r.bind_i64(15, to_i64(k.requests_total));
    r.bind_i64(16, seq);
  }

  Db db_;
  // The sequence this instance has seen: load() and changes() move it.
  std::int64_t last_seen_ = 0;
  std::set<std::int64_t> own_;  // change sequences this instance wrote

  std::unique_ptr<Statement> count_, select_all_, select_changed_, select_deleted_, select_one_,
      select_id_, select_hash_, read_seq_, select_seq_since_, write_seq_, insert_, update_, delete_key_,
      insert_tombstone_, delete_tombstone_, merge_usage_;
};

#undef FD_KEY_COLUMNS

}  // namespace

std::unique_ptr<KeyStore> open_sqlite_store(const std::string& path) {
  return std::make_unique<SqliteKeyStore>(path);
}

}  // namespace frontdoor::auth
