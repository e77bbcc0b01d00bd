// The PostgreSQL key store (SPEC §3.1): one store for a fleet of replicas,
// written by frontdoor (admin API, `keys` commands) and by other services
// with plain SQL on `frontdoor_keys`.
//
// The change feed. A trigger on frontdoor_keys appends the id of every
// inserted, updated or deleted row to frontdoor_key_changes, with the
// writing transaction's id (txid_current()), and sends a NOTIFY that the
// replicas LISTEN for. A sequence number alone cannot tell a reader what it
// has seen: a transaction that took seq 7 may commit after one that took
// seq 8, and a reader that moved past 8 never sees 7. So the reader's
// position is not a sequence but a transaction horizon: the xmin of a
// snapshot, below which every transaction has finished. Each poll
//   1. takes X = txid_snapshot_xmin(txid_current_snapshot()),
//   2. reads every change row whose txid >= the previous poll's X (rows
//      below it were all committed and read before), skipping the rows it
//      has applied already (by seq),
//   3. reads those keys as they are now, and moves its horizon to X.
// A transaction held open keeps X from moving past it, so its rows are
// read when it commits, whatever the others did meanwhile. Applying a key's
// current row is idempotent, so reading a change twice is harmless, and a
// deleted key is simply one that is no longer there. The NOTIFY only makes
// the poll come sooner; the periodic poll alone would miss nothing.
//
// Usage is a separate table written by additions (every replica adds what
// it counted since its last flush), so it never feeds the change feed.
#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <map>
#include <set>
#include <thread>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "frontdoor/auth/store.hpp"
#include "frontdoor/core/log.hpp"
#include "pg_conn.hpp"

namespace frontdoor::auth {

bool is_postgres_uri(std::string_view store) noexcept {
  return store.starts_with("postgresql://") || store.starts_with("postgres://");
}

std::string shown_store(const std::string& store) {
  if (!is_postgres_uri(store)) return store;
  auto parsed = boost::urls::parse_uri(store);
  if (!parsed) return "postgresql://(a URI that does not parse)";
  boost::urls::url u(*parsed);
  u.remove_password();
  u.params().erase("password");
  u.params().erase("sslpassword");
  return std::string(u.buffer());
}

namespace {

using namespace std::chrono_literals;
using pg::Deadline;
using pg::Params;

constexpr int kSchemaVersion = 1;
constexpr auto kQueryTimeout = 3s;       // a poll, a write: longer means "unavailable"
// A whole change (admin API, CLI), under the admin API's 5 s: its
// statements share one deadline.
constexpr auto kWriteTimeout = 4s;
// The server gives a change up before we stop waiting for it: a row locked
// by an outside writer's open transaction, or a disk that does not keep up,
// then ends in an error and a rollback, not in a change applied after the
// admin API answered 503. Only a COMMIT whose answer is lost stays in doubt.
constexpr const char* kBeginWrite =
    "BEGIN; SET LOCAL statement_timeout = 2500; SET LOCAL lock_timeout = 2000";
constexpr auto kConnectTimeout = 2s;
constexpr auto kLoadTimeout = 30s;       // per FETCH of a full load
constexpr auto kRetryEvery = 1s;         // reconnection attempts while down
constexpr auto kIncrementalWithin = 10min;  // after a longer outage, load everything again
constexpr int kFetchRows = 20000;
constexpr int kMaxPolledChanges = 20000;  // more changed rows in one poll: a full load
// Any fixed number: serializes `keys migrate` runs (pg_advisory_xact_lock).
constexpr const char* kMigrateLock = "7412093511";

// Version 1. Every statement may run again (IF NOT EXISTS, OR REPLACE).
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE IF NOT EXISTS frontdoor_keys (
  id            text PRIMARY KEY,
  name          text NOT NULL DEFAULT '',
  hash          text NOT NULL UNIQUE,
  prefix        text,
  enabled       boolean NOT NULL DEFAULT true,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz,
  management    text NOT NULL DEFAULT 'none',
  endpoints     jsonb,
  legacy_access text,
  rate_limit    jsonb
);
CREATE TABLE IF NOT EXISTS frontdoor_key_changes (
  seq    bigserial PRIMARY KEY,
  txid   bigint NOT NULL DEFAULT txid_current(),
  key_id text NOT NULL,                 -- '*': every key (TRUNCATE)
  at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS frontdoor_key_changes_txid ON frontdoor_key_changes (txid);
CREATE INDEX IF NOT EXISTS frontdoor_key_changes_at ON frontdoor_key_changes (at);
CREATE TABLE IF NOT EXISTS frontdoor_key_usage (
  id             text PRIMARY KEY,
  last_used_at   timestamptz,
  requests_total bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS frontdoor_replicas (
  id            text PRIMARY KEY,
  address       text NOT NULL,
  version       text NOT NULL,
  started_at    timestamptz NOT NULL,
  last_seen     timestamptz NOT NULL,
  stale_seconds double precision NOT NULL DEFAULT 0
);
-- The largest txid pruned from frontdoor_key_changes: a replica whose
-- position is at or below it may have lost rows and loads everything.
CREATE TABLE IF NOT EXISTS frontdoor_feed_pruned (
  one  int PRIMARY KEY CHECK (one = 1),
  txid bigint NOT NULL
);
-- SECURITY DEFINER: an outside writer allowed only on frontdoor_keys still
-- records its changes. Its search_path (set below) is the schema of `keys
-- migrate` and then pg_temp, named last: a writer's temporary table can
-- never stand in for frontdoor's tables.
CREATE OR REPLACE FUNCTION frontdoor_key_changed() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    INSERT INTO frontdoor_key_changes (key_id) VALUES ('*');
    DELETE FROM frontdoor_key_usage;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO frontdoor_key_changes (key_id) VALUES (OLD.id);
    -- A key made again with the same id starts from nothing.
    DELETE FROM frontdoor_key_usage WHERE id = OLD.id;
  ELSE
    INSERT INTO frontdoor_key_changes (key_id) VALUES (NEW.id);
    IF TG_OP = 'UPDATE' AND OLD.id IS DISTINCT FROM NEW.id THEN
      INSERT INTO frontdoor_key_changes (key_id) VALUES (OLD.id);
    END IF;
  END IF;
  PERFORM pg_notify('frontdoor_keys', '');
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS frontdoor_keys_changed ON frontdoor_keys;
CREATE TRIGGER frontdoor_keys_changed AFTER INSERT OR UPDATE OR DELETE ON frontdoor_keys
  FOR EACH ROW EXECUTE FUNCTION frontdoor_key_changed();
DROP TRIGGER IF EXISTS frontdoor_keys_truncated ON frontdoor_keys;
CREATE TRIGGER frontdoor_keys_truncated AFTER TRUNCATE ON frontdoor_keys
  FOR EACH STATEMENT EXECUTE FUNCTION frontdoor_key_changed();
-- Also for writers with session_replication_role = replica (pg_restore,
-- logical replication): no change may go unrecorded.
ALTER TABLE frontdoor_keys ENABLE ALWAYS TRIGGER frontdoor_keys_changed;
ALTER TABLE frontdoor_keys ENABLE ALWAYS TRIGGER frontdoor_keys_truncated;
DO $$ BEGIN
  EXECUTE format('ALTER FUNCTION frontdoor_key_changed() SET search_path = %I, pg_temp', current_schema());
END $$;
)sql";

// Whole keys, with their usage, in the order parse_key reads them.
constexpr const char* kSelectKeys =
    // 'infinity' is a timestamp too (and does not fit a bigint): created
    // and last used at ±infinity are unknown; expiring at -infinity is
    // expired, at +infinity never.
    "SELECT k.id, k.name, k.hash, k.prefix, k.enabled, "
    "CASE WHEN isfinite(k.created_at) THEN floor(extract(epoch FROM k.created_at))::bigint END, "
    "CASE WHEN isfinite(u.last_used_at) THEN floor(extract(epoch FROM u.last_used_at))::bigint END, "
    "CASE WHEN k.expires_at = '-infinity' THEN 0 "
    "WHEN isfinite(k.expires_at) THEN floor(extract(epoch FROM k.expires_at))::bigint END, "
    "k.management, k.endpoints::text, k.legacy_access, k.rate_limit::text, u.requests_total "
    "FROM frontdoor_keys k LEFT JOIN frontdoor_key_usage u ON u.id = k.id";

constexpr const char* kSnapshotXmin = "SELECT txid_snapshot_xmin(txid_current_snapshot())";
// The same, and how far the change log has been pruned.
constexpr const char* kFeedPosition =
    "SELECT txid_snapshot_xmin(txid_current_snapshot()), "
    // (a watermark from another cluster, restored from a dump, is ignored)
    "coalesce((SELECT txid FROM frontdoor_feed_pruned WHERE one = 1 "
    "AND txid < txid_snapshot_xmax(txid_current_snapshot())), 0)";

std::int64_t to_i64(std::string_view s) {
  std::int64_t v = 0;
  bool neg = !s.empty() && s.front() == '-';
  for (char c : s.substr(neg ? 1 : 0)) v = v * 10 + (c - '0');
  return neg ? -v : v;
}

std::optional<std::string> opt_time(const std::optional<core::UnixSeconds>& t) {
  if (!t) return std::nullopt;
  return std::to_string(*t);
}

// A PostgreSQL array literal of text elements: {"a","b"}.
std::string text_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::string endpoints_json(const Key& k) {
  boost::json::object o;
  o.emplace("*", to_string(k.default_access));
  for (const auto& [endpoint, access] : k.endpoints) o.emplace(endpoint, to_string(access));
  return boost::json::serialize(o);
}

std::optional<std::string> rate_limit_json(const Key& k) {
  if (!k.rate_limit) return std::nullopt;
  boost::json::object o;
  o.emplace("rps", k.rate_limit->rps);
  o.emplace("burst", k.rate_limit->burst);
  o.emplace("max_concurrent", k.rate_limit->max_concurrent);
  return boost::json::serialize(o);
}

// The key's columns for INSERT and UPDATE ($1..$11).
Params key_params(const Key& k) {
  return {k.id,
          k.name,
          hash_form(k.hash),
          k.prefix,
          std::string(k.enabled ? "true" : "false"),
          opt_time(k.created_at),
          opt_time(k.expires_at),
          std::string(to_string(k.management)),
          k.legacy_access ? std::nullopt : std::optional<std::string>(endpoints_json(k)),
          k.legacy_access ? std::optional<std::string>(std::string(to_string(*k.legacy_access))) : std::nullopt,
          rate_limit_json(k)};
}

// Reads row `i` (kSelectKeys order) into a Key, or says which of §3's rules
// it breaks. An outside writer may put anything in these columns: a row is
// taken whole or not at all.
std::optional<Key> parse_key(const pg::Result& r, int i, std::string& problem) {
  Key k;
  const std::string_view id = r.text(i, 0);
  if (!valid_key_id(id)) {
    problem = "id: expected 1 to 128 characters of A-Z a-z 0-9 _ - .";
    return std::nullopt;
  }
  k.id.assign(id);
  k.name.assign(r.text(i, 1));
  if (auto why = key_name_problem(k.name)) {
    problem = "name: " + *why;
    return std::nullopt;
  }
  if (auto d = parse_hash_form(r.text(i, 2))) {
    k.hash = *d;
  } else {
    problem = "hash: expected sha256:<64 hex>";  // never echoed: it may be a token pasted by mistake
    return std::nullopt;
  }
  if (auto p = r.opt(i, 3)) k.prefix.assign(*p);
  k.enabled = r.text(i, 4) == "t";
  if (auto t = r.opt(i, 5)) k.created_at = to_i64(*t);
  if (auto t = r.opt(i, 6)) k.last_used_at = to_i64(*t);
  if (auto t = r.opt(i, 7)) k.expires_at = to_i64(*t);
  if (auto a = parse_access(r.text(i, 8))) {
    k.management = *a;
  } else {
    problem = "management: expected none, read or read_write";
    return std::nullopt;
  }
  boost::system::error_code ec;
  const auto endpoints = r.opt(i, 9);
  boost::json::value ev;
  if (endpoints) ev = boost::json::parse(*endpoints, ec);
  const bool has_endpoints = endpoints && !ev.is_null();
  if (auto legacy = r.opt(i, 10)) {
    if (has_endpoints) {
      problem = "legacy_access: a legacy key has no endpoints map; set either legacy_access or endpoints";
      return std::nullopt;
    }
    auto a = parse_access(*legacy);
    if (!a) {
      problem = "legacy_access: expected read or read_write";
      return std::nullopt;
    }
    k.legacy_access = *a;
  }
  if (has_endpoints) {
    if (ec || !ev.is_object()) {
      problem = "endpoints: expected a JSON object of endpoint id to none, read or read_write";
      return std::nullopt;
    }
    for (const auto& entry : ev.get_object()) {
      const boost::json::string* s = entry.value().if_string();
      const auto a = s ? parse_access(std::string_view(*s)) : std::nullopt;
      if (!a || entry.key().empty()) {
        problem = "endpoints." + std::string(entry.key()) + ": expected none, read or read_write";
        return std::nullopt;
      }
      if (entry.key() == "*") {
        k.default_access = *a;
      } else {
        k.endpoints.emplace_back(std::string(entry.key()), *a);
      }
    }
    std::sort(k.endpoints.begin(), k.endpoints.end());
  }
  if (auto rl = r.opt(i, 11)) {
    const boost::json::value v = boost::json::parse(*rl, ec);
    if (!ec && !v.is_null()) {
      if (!v.is_object()) {
        problem = "rate_limit: expected a JSON object with rps, burst and max_concurrent";
        return std::nullopt;
      }
      RateLimit limit;
      for (const auto& entry : v.get_object()) {
        const auto& f = entry.value();
        if (entry.key() == "rps" && f.is_number() && f.to_number<double>() > 0) {
          limit.rps = f.to_number<double>();
        } else if ((entry.key() == "burst" || entry.key() == "max_concurrent") &&
                   (f.is_uint64() || (f.is_int64() && f.as_int64() >= 0))) {
          (entry.key() == "burst" ? limit.burst : limit.max_concurrent) = f.to_number<std::uint64_t>();
        } else {
          problem = "rate_limit." + std::string(entry.key()) +
                    ": expected rps (a number > 0), burst or max_concurrent (integers >= 0)";
          return std::nullopt;
        }
      }
      k.rate_limit = limit;
    } else if (ec) {
      problem = "rate_limit: not JSON";
      return std::nullopt;
    }
  }
  if (auto n = r.opt(i, 12)) k.requests_total = static_cast<std::uint64_t>(std::max<std::int64_t>(0, to_i64(*n)));
  return k;
}

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(pg::Clock::now().time_since_epoch()).count();
}

int schema_version(pg::Connection& c, Deadline deadline) {
  auto r = c.exec("SELECT to_regclass('frontdoor_schema') IS NOT NULL", deadline);
  if (r.text(0, 0) != "t") return 0;
  r = c.exec("SELECT version FROM frontdoor_schema WHERE one = 1", deadline);
  return r.rows() ? static_cast<int>(to_i64(r.text(0, 0))) : 0;
}

class PgKeyStore final : public KeyStore {
 public:
  explicit PgKeyStore(const std::string& uri) : uri_(uri), shown_(shown_store(uri)), conn_(uri, shown_) {
    try {
      connect();
    } catch (const StoreUnavailable& e) {
      // Not fatal: the server keeps trying (SPEC §3.1); load() says why.
      down(e.what());
    }
  }

  ~PgKeyStore() override {
    stop_watch();
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  void stop_watch() noexcept override {
    {
      std::lock_guard lock(listen_mutex_);
      stopping_ = true;
    }
    if (wake_fd_ >= 0) {
      const std::uint64_t one = 1;
      (void)!::write(wake_fd_, &one, sizeof one);
    }
    if (listener_.joinable()) listener_.join();
  }

  const std::string& path() const noexcept override { return shown_; }

  std::vector<Key> load() override {
    return feed_guarded([&] {
      std::vector<Key> keys;
      // Each FETCH of a large table may take longer than the session's 10 s.
      Transaction tx(conn_, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = 30000");
      // The transaction's snapshot: every transaction below its xmin is in
      // what the cursor reads.
      const std::int64_t horizon = to_i64(conn_.exec(kSnapshotXmin, pg::in(kQueryTimeout)).text(0, 0));
      // The planner's estimate is enough to reserve (count(*) would scan
      // the table once more before the cursor does: ~0.5 s at 1M keys).
      auto estimate = conn_.exec(
          "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'frontdoor_keys'::regclass",
          pg::in(kQueryTimeout));
      if (estimate.rows() == 1)
        keys.reserve(static_cast<std::size_t>(std::min<std::int64_t>(to_i64(estimate.text(0, 0)), 50'000'000)));
      conn_.exec(std::string("DECLARE frontdoor_load NO SCROLL CURSOR FOR ") + kSelectKeys, pg::in(kQueryTimeout));
      const std::string fetch = "FETCH FORWARD " + std::to_string(kFetchRows) + " FROM frontdoor_load";
      for (;;) {
        auto rows = conn_.exec(fetch, pg::in(kLoadTimeout));
        for (int i = 0; i < rows.rows(); ++i)
          if (auto k = parse_row(rows, i)) keys.push_back(std::move(*k));
        if (rows.rows() < kFetchRows) break;
      }
      // Changes at or above the horizon that the snapshot already holds are
      // applied; the next poll must not take them again (a TRUNCATE among
      // them would start a load over and over).
      std::set<std::int64_t> applied;
      auto seen = conn_.exec("SELECT seq FROM frontdoor_key_changes WHERE txid >= $1", {std::to_string(horizon)},
                             pg::in(kLoadTimeout));
      for (int i = 0; i < seen.rows(); ++i) applied.insert(to_i64(seen.text(i, 0)));
      tx.commit();
      horizon_ = horizon;
      applied_ = std::move(applied);
      caught_up();
      return keys;
    });
  }

  std::optional<StoreChanges> changes() override {
    return feed_guarded([&]() -> std::optional<StoreChanges> {
      // After a long outage the change log may have been pruned: start over.
      if (!last_contact_ms_ || steady_ms() - last_contact_ms_ > std::chrono::milliseconds(kIncrementalWithin).count())
        return std::nullopt;
      auto position = conn_.exec(kFeedPosition, pg::in(kQueryTimeout));
      const std::int64_t horizon = to_i64(position.text(0, 0));
      // Rows this replica may not have read were pruned (it was away while
      // a transaction older than the prune age committed): start over.
      if (to_i64(position.text(0, 1)) >= horizon_) return std::nullopt;
      // A bulk change (an outside INSERT of many keys) is cheaper to load
      // whole, through the cursor, than to read by id within one deadline:
      // more than kMaxPolledChanges rows not applied yet. (Had the limit cut
      // the rows, more than that many would be new.)
      auto rows = conn_.exec(
          "SELECT seq, txid, key_id, extract(epoch FROM clock_timestamp() - at) FROM frontdoor_key_changes "
          "WHERE txid >= $1 ORDER BY seq LIMIT " + std::to_string(applied_.size() + kMaxPolledChanges + 1),
          {std::to_string(horizon_)}, pg::in(kQueryTimeout));
      int fresh = 0;
      for (int i = 0; i < rows.rows(); ++i) fresh += applied_.count(to_i64(rows.text(i, 0))) ? 0 : 1;
      if (fresh > kMaxPolledChanges) return std::nullopt;
      std::set<std::int64_t> still_open;  // applied rows that the next poll reads again
      std::vector<std::string> ids;
      std::set<std::string> wanted;
      bool everything = false;
      double lag = -1;
      for (int i = 0; i < rows.rows(); ++i) {
        const std::int64_t seq = to_i64(rows.text(i, 0));
        if (to_i64(rows.text(i, 1)) >= horizon) still_open.insert(seq);
        if (applied_.count(seq)) continue;
        const std::string_view id = rows.text(i, 2);
        if (id == "*") everything = true;
        if (wanted.emplace(id).second) ids.emplace_back(id);
        lag = std::max(lag, std::strtod(std::string(rows.text(i, 3)).c_str(), nullptr));
      }
      if (everything) return std::nullopt;  // TRUNCATE: load() starts over
      StoreChanges out;
      if (!ids.empty()) {
        auto keys = conn_.exec(std::string(kSelectKeys) + " WHERE k.id = ANY($1::text[])", {text_array(ids)},
                               pg::in(kQueryTimeout));
        for (int i = 0; i < keys.rows(); ++i) {
          wanted.erase(std::string(keys.text(i, 0)));
          if (auto k = parse_row(keys, i)) out.upserted.push_back(std::move(*k));
          else out.deleted_ids.emplace_back(keys.text(i, 0));  // a bad row is no key
        }
        for (const auto& gone : wanted) out.deleted_ids.push_back(gone);
      }
      if (lag >= 0) feed_lag_ = lag;
      horizon_ = horizon;
      applied_ = std::move(still_open);
      caught_up();
      // The position has moved: nothing may now keep `out` from its caller.
      try {
        prune();
      } catch (const StoreError& e) {
        core::log::warn("key store: pruning the change log failed", {{"store", shown_}, {"error", e.what()}});
      }
      return out;
    });
  }

  void create(const Key& key) override {
    change([&](Deadline deadline) {
      try {
        conn_.exec(
            "INSERT INTO frontdoor_keys (id, name, hash, prefix, enabled, created_at, expires_at, management, "
            "endpoints, legacy_access, rate_limit) VALUES ($1, $2, $3, $4, $5, coalesce(to_timestamp($6), now()), "
            "to_timestamp($7), $8, $9, $10, $11)",
            key_params(key), deadline);
      } catch (const pg::QueryError& e) {
        if (e.sqlstate != "23505") throw;
        if (std::string_view(e.what()).find("frontdoor_keys_pkey") != std::string_view::npos)
          throw DuplicateKeyId(shown_ + ": key " + key.id + " already exists");
        throw StoreError(shown_ + ": key " + key.id + " has the same token (hash) as another key");
      }
      return 0;
    });
  }

  std::optional<Key> update(const std::string& id, const std::function<void(Key&)>& edit) override {
    return change([&](Deadline deadline) -> std::optional<Key> {
      auto r = conn_.exec(std::string(kSelectKeys) + " WHERE k.id = $1 FOR UPDATE OF k", {id}, deadline);
      if (r.rows() == 0) return std::nullopt;
      std::string problem;
      auto k = parse_key(r, 0, problem);
      if (!k) throw StoreError(shown_ + ": key " + printable_id(id) + " breaks the store's rules: " + problem);
      edit(*k);
      if (k->id != id) throw StoreError(shown_ + ": key " + id + ": the id of a key cannot change");
      try {
        conn_.exec(
            "UPDATE frontdoor_keys SET name = $2, hash = $3, prefix = $4, enabled = $5, "
            "created_at = coalesce(to_timestamp($6), created_at), expires_at = to_timestamp($7), management = $8, "
            "endpoints = $9, legacy_access = $10, rate_limit = $11 WHERE id = $1",
            key_params(*k), deadline);
      } catch (const pg::QueryError& e) {
        if (e.sqlstate != "23505") throw;
        throw StoreError(shown_ + ": key " + id + ": another key has the same token (hash)");
      }
      return k;
    });
  }

  bool remove(const std::string& id) override {
    return change([&](Deadline deadline) {
      return conn_.exec("DELETE FROM frontdoor_keys WHERE id = $1", {id}, deadline).affected() > 0;
    });
  }

  void flush_usage(const std::vector<KeyUsage>& usage) override {
    // One row per id: a key deleted and made again with the same id has two
    // counters here, and ON CONFLICT may not touch a row twice.
    std::map<std::string, std::pair<std::optional<core::UnixSeconds>, std::uint64_t>> merged;
    for (const KeyUsage& u : usage) {
      if (u.requests_added == 0 && !u.last_used_at) continue;
      auto& [last, n] = merged[u.id];
      if (u.last_used_at && (!last || *last < *u.last_used_at)) last = u.last_used_at;
      n += u.requests_added;
    }
    std::vector<std::string> ids;
    std::string used = "{", added = "{";
    for (const auto& [id, u] : merged) {
      if (!ids.empty()) {
        used += ',';
        added += ',';
      }
      ids.push_back(id);
      used += u.first ? std::to_string(*u.first) : "NULL";
      added += std::to_string(u.second);
    }
    if (ids.empty()) return;
    used += '}';
    added += '}';
    change([&](Deadline deadline) {
      // One statement for the batch; a key deleted meanwhile gets no row.
      // A change of its own: a flush that timed out is rolled back, not
      // applied later and then sent again (counted twice).
      conn_.exec(
          "INSERT INTO frontdoor_key_usage AS u (id, last_used_at, requests_total) "
          "SELECT x.id, to_timestamp(x.used), x.added "
          "FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS x(id, used, added) "
          "WHERE EXISTS (SELECT 1 FROM frontdoor_keys k WHERE k.id = x.id) "
          "ON CONFLICT (id) DO UPDATE SET requests_total = u.requests_total + excluded.requests_total, "
          "last_used_at = greatest(u.last_used_at, excluded.last_used_at)",
          {text_array(ids), used, added}, deadline);
      return 0;
    });
  }

  std::optional<std::unordered_map<std::string, UsageTotal>> usage(const std::vector<std::string>& ids) override {
    std::unordered_map<std::string, UsageTotal> out;
    if (ids.empty()) return out;
    guarded([&] {
      // A read for the admin API: brief, or the snapshot's counts stand.
      auto r = conn_.exec(
          "SELECT id, requests_total, "
          "CASE WHEN isfinite(last_used_at) THEN floor(extract(epoch FROM last_used_at))::bigint END "
          "FROM frontdoor_key_usage WHERE id = ANY($1::text[])",
          {text_array(ids)}, pg::in(1s));
      for (int i = 0; i < r.rows(); ++i) {
        UsageTotal u;
        u.requests_total = static_cast<std::uint64_t>(std::max<std::int64_t>(0, to_i64(r.text(i, 1))));
        if (auto t = r.opt(i, 2)) u.last_used_at = to_i64(*t);
        out.emplace(std::string(r.text(i, 0)), u);
      }
      return 0;
    });
    return out;
  }

  void watch(std::function<void()> on_change) override {
    if (listener_.joinable()) return;
    on_change_ = std::move(on_change);
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    listener_ = std::thread([this] { listen_loop(); });
  }

  StoreStatus status() const override {
    StoreStatus s;
    s.remote = true;
    s.reachable = reachable_;
    s.last_contact_ms = last_contact_ms_;
    s.reconnects = reconnects_;
    s.feed_lag_seconds = feed_lag_;
    return s;
  }

  std::optional<std::vector<Replica>> heartbeat(const Replica& self) override {
    return guarded([&] {
      conn_.exec(
          "INSERT INTO frontdoor_replicas (id, address, version, started_at, last_seen, stale_seconds) "
          "VALUES ($1, $2, $3, now(), now(), $4) ON CONFLICT (id) DO UPDATE SET address = excluded.address, "
          "version = excluded.version, last_seen = now(), stale_seconds = excluded.stale_seconds",
          {self.id, self.address, self.version, std::to_string(self.stale_seconds)}, pg::in(kQueryTimeout));
      auto r = conn_.exec(
          "SELECT id, address, version, floor(extract(epoch FROM last_seen))::bigint, stale_seconds "
          "FROM frontdoor_replicas WHERE last_seen > now() - interval '15 seconds' ORDER BY id",
          pg::in(kQueryTimeout));
      std::vector<Replica> out;
      for (int i = 0; i < r.rows(); ++i)
        out.push_back({std::string(r.text(i, 0)), std::string(r.text(i, 1)), std::string(r.text(i, 2)),
                       to_i64(r.text(i, 3)), std::strtod(std::string(r.text(i, 4)).c_str(), nullptr)});
      return std::optional<std::vector<Replica>>(std::move(out));
    });
  }

  void leave(const std::string& replica_id) noexcept override {
    try {
      if (conn_.connected())
        conn_.exec("DELETE FROM frontdoor_replicas WHERE id = $1", {replica_id}, pg::in(1s));
    } catch (const std::exception&) {
      // Its row ages out of the list in 15 s.
    }
  }

 private:
  // BEGIN ... COMMIT; rolled back on scope exit unless committed (a lost
  // connection has nothing to roll back).
  class Transaction {
   public:
    Transaction(pg::Connection& c, const char* begin, Deadline deadline = pg::in(kQueryTimeout)) : c_(c) {
      c_.exec(begin, deadline);
    }
    ~Transaction() {
      if (done_ || !c_.connected()) return;
      try {
        c_.exec("ROLLBACK", pg::in(1s));
      } catch (const std::exception&) {
      }
    }
    void commit(Deadline deadline = pg::in(kQueryTimeout)) {
      done_ = true;  // whatever happens now, there is nothing to roll back
      try {
        c_.exec("COMMIT", deadline);
      } catch (const StoreUnavailable& e) {
        // Sent, but no answer: the server may have committed.
        throw StoreUnavailable(std::string(e.what()) + " (at COMMIT: the change may have been made)");
      }
    }

   private:
    pg::Connection& c_;
    bool done_ = false;
  };

  // Runs `f` on a connected store; a lost connection marks the store
  // unreachable, and while it is, a new attempt is made at most every
  // kRetryEvery (callers then fail fast instead of waiting for a timeout).
  // `by`: a change's deadline, which a reconnection first counts against.
  template <typename F>
  auto guarded(F&& f, std::optional<Deadline> by = std::nullopt) -> decltype(f()) {
    try {
      if (!conn_.connected()) {
        if (pg::Clock::now() < next_attempt_) throw StoreUnavailable(shown_ + ": unreachable: " + down_reason_);
        connect(by);
      }
      return f();
    } catch (const pg::QueryError& e) {
      // A statement the server gave up (statement_timeout, lock_timeout):
      // rolled back, the connection fine, the store busy for now.
      if (e.sqlstate == "57014" || e.sqlstate == "55P03")
        throw StoreUnavailable(std::string(e.what()) + " (nothing was written)");
      throw;
    } catch (const StoreUnavailable& e) {
      down(e.what());
      throw;
    }
  }

  // One change: `f(deadline)` in a transaction that the server gives up in
  // time (kBeginWrite), all under one deadline that a reconnection counts
  // against too; committed when `f` returns, rolled back when it throws.
  template <typename F>
  auto change(F&& f) -> decltype(f(Deadline{})) {
    const Deadline deadline = pg::in(kWriteTimeout);
    return guarded(
        [&] {
          Transaction tx(conn_, kBeginWrite, deadline);
          auto result = f(deadline);
          tx.commit(deadline);
          return result;
        },
        deadline);
  }

  // Reading the keys: an error that is not an outage (a row the query
  // cannot read) still leaves the snapshot behind, and says so (stale
  // seconds grow, max_stale applies) rather than reporting it fresh.
  template <typename F>
  auto feed_guarded(F&& f) -> decltype(f()) {
    try {
      return guarded(std::forward<F>(f));
    } catch (const StoreUnavailable&) {
      throw;
    } catch (const StoreError& e) {
      down(e.what());
      throw;
    }
  }

  void connect(std::optional<Deadline> by = std::nullopt) {
    next_attempt_ = pg::Clock::now() + kRetryEvery;
    // Connecting and the checks after it: one deadline.
    const Deadline deadline = std::min(pg::in(kConnectTimeout + 1s), by.value_or(Deadline::max()));
    conn_.connect(deadline);
    // A query this connection gave up waiting for does not run on and on in
    // the server (nor pile up, poll after poll).
    conn_.exec("SET statement_timeout = 10000", deadline);
    const int v = schema_version(conn_, deadline);
    if (v < kSchemaVersion) {
      conn_.close();
      throw StoreError(shown_ + ": " +
                       (v == 0 ? std::string("frontdoor's schema is missing")
                               : "frontdoor's schema is version " + std::to_string(v) + ", older than the " +
                                     std::to_string(kSchemaVersion) + " this frontdoor needs") +
                       ": run `frontdoor keys migrate --store URI`");
    }
    if (ever_connected_) ++reconnects_;
    ever_connected_ = true;
  }

  void down(const std::string& why) {
    reachable_ = false;
    down_reason_ = why;
  }

  void caught_up() {
    reachable_ = true;
    last_contact_ms_ = steady_ms();
  }

  std::optional<Key> parse_row(const pg::Result& r, int i) const {
    std::string problem;
    auto k = parse_key(r, i, problem);
    if (!k)
      core::log::error("key store: key skipped",
                       {{"store", shown_}, {"id", printable_id(r.text(i, 0))}, {"error", problem}});
    return k;
  }

  // The change log only needs what a replica that was away for less than
  // kIncrementalWithin has not read; one replica's DELETE every few minutes.
  void prune() {
    const auto now = pg::Clock::now();
    if (now < next_prune_) return;
    next_prune_ = now + 5min;
    // The watermark moves in the same statement as the rows go.
    conn_.exec(
        "WITH gone AS (DELETE FROM frontdoor_key_changes WHERE at < now() - interval '1 hour' AND txid < $1 "
        "RETURNING txid) "
        "INSERT INTO frontdoor_feed_pruned AS p (one, txid) SELECT 1, max(txid) FROM gone HAVING count(*) > 0 "
        "ON CONFLICT (one) DO UPDATE SET txid = greatest(p.txid, excluded.txid)",
        {std::to_string(horizon_)}, pg::in(kQueryTimeout));
    conn_.exec("DELETE FROM frontdoor_replicas WHERE last_seen < now() - interval '1 day'", pg::in(kQueryTimeout));
  }

  // The LISTEN connection, on its own thread: every notification, and
  // every (re)connection, asks the owner for a poll.
  void listen_loop() {
    pg::Connection c(uri_, shown_);
    for (;;) {
      if (!c.connected()) {
        try {
          c.connect(pg::in(kConnectTimeout));
          c.exec("LISTEN frontdoor_keys", pg::in(kQueryTimeout));
          on_change_();  // whatever happened while it was not listening
        } catch (const std::exception&) {
          c.close();
        }
      }
      pollfd p[2] = {{wake_fd_, POLLIN, 0}, {c.socket(), POLLIN, 0}};
      const int n = ::poll(p, c.connected() ? 2 : 1, c.connected() ? 5000 : 1000);
      {
        std::lock_guard lock(listen_mutex_);
        if (stopping_) return;
      }
      if (n <= 0 || !c.connected() || !(p[1].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      try {
        if (!c.notifications().empty()) on_change_();
      } catch (const std::exception&) {
        c.close();
        on_change_();
      }
    }
  }

  const std::string uri_;
  const std::string shown_;
  pg::Connection conn_;

  // The change feed's position (see the top of this file).
  std::int64_t horizon_ = 0;
  std::set<std::int64_t> applied_;  // seqs applied whose transaction is at or above the horizon

  bool reachable_ = false;
  bool ever_connected_ = false;
  std::int64_t last_contact_ms_ = 0;
  std::uint64_t reconnects_ = 0;
  double feed_lag_ = 0;
  std::string down_reason_ = "not connected yet";
  pg::Clock::time_point next_attempt_{};
  pg::Clock::time_point next_prune_{};

  std::function<void()> on_change_;
  std::thread listener_;
  int wake_fd_ = -1;
  std::mutex listen_mutex_;
  bool stopping_ = false;
};

}  // namespace

std::unique_ptr<KeyStore> open_pg_store(const std::string& uri) { return std::make_unique<PgKeyStore>(uri); }

std::string migrate_pg_store(const std::string& uri) {
  const std::string shown = shown_store(uri);
  pg::Connection c(uri, shown);
  c.connect(pg::in(kConnectTimeout));
  c.exec("BEGIN", pg::in(kQueryTimeout));
  // Replicas starting together wait here for each other; the second finds
  // the schema done.
  c.exec(std::string("SELECT pg_advisory_xact_lock(") + kMigrateLock + ")", pg::in(60s));
  c.exec("CREATE TABLE IF NOT EXISTS frontdoor_schema (one int PRIMARY KEY CHECK (one = 1), version int NOT NULL)",
         pg::in(kQueryTimeout));
  const int before = schema_version(c, pg::in(kQueryTimeout));
  if (before > kSchemaVersion) {
    c.exec("ROLLBACK", pg::in(kQueryTimeout));
    return shown + ": schema version " + std::to_string(before) + " is newer than this frontdoor's " +
           std::to_string(kSchemaVersion) + ": nothing to do";
  }
  if (before < 1) c.exec(kSchemaV1, pg::in(60s));
  c.exec("INSERT INTO frontdoor_schema (one, version) VALUES (1, $1) ON CONFLICT (one) DO UPDATE SET version = "
         "excluded.version",
         {std::to_string(kSchemaVersion)}, pg::in(kQueryTimeout));
  c.exec("COMMIT", pg::in(kQueryTimeout));
  if (before == kSchemaVersion) return shown + ": schema is up to date (version " + std::to_string(before) + ")";
  return shown + ": schema " + (before == 0 ? "created" : "upgraded from version " + std::to_string(before)) +
         " (version " + std::to_string(kSchemaVersion) + ")";
}

}  // namespace frontdoor::auth
