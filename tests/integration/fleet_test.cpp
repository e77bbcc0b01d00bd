// SPEC §3.1, issue 10: a fleet of real frontdoor processes sharing one real
// PostgreSQL 15 key store (tests/support/pg_server.hpp), end to end: admin
// changes on one replica reaching another within 1 s (with the propagation
// measured), outside SQL writers, a transaction held open while others
// commit, the database stopped or paused under live replicas (fail static,
// admin 503, metrics, logs, catching up), keys.max_stale failing closed, a
// replica started while the database is down, usage adding up across
// replicas, bad rows, restarts, WebSocket revocation across replicas, the
// password never shown, GET /v1/replicas and rate_limit_scope: fleet.
//
// Each test has its own PostgreSQL cluster (a test may stop or pause it)
// and its own replicas; every wait is bounded, and states that can only be
// observed (a key taking effect, a metric) are polled.
#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <csignal>
#include <ctime>
#include <future>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "support/frontdoor_cli.hpp"
#include "support/pg_server.hpp"
#include "support/proxy_test_base.hpp"
#include "support/ws_peer.hpp"
#include "support/text_fields.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;
using std::chrono::milliseconds;

// SPEC §3.1: a committed change reaches every replica within 1 s.
constexpr auto kPropagation = 1000ms;
// SPEC §3.1: admin writes answer 503 within 5 s while the store is unreachable;
// checked with a little room for a loaded 2-core machine.
constexpr auto kAdminUnavailableBound = 6000ms;
// SPEC §4 step 6: a revoked tunnel closes within 1 s of the revocation taking
// effect on the replica; the revocation reaches the replica within 1 s.
constexpr auto kTunnelRevocationBound = 1000ms + kPropagation;
// Long enough for a reconnection (one attempt per second, a 2 s connect
// timeout against a paused server) plus the catch-up poll.
constexpr auto kRecovery = 10000ms;

const std::string kEp1ReadWrite = R"({"*": "none", "ep1": "read_write"})";

double ms_of(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string show(const HttpResponse& r) {
  return r.status == 0 ? std::string("(no answer)") : r.raw.substr(0, 1500);
}

std::optional<json::object> parse_object(const std::string& text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  return v.as_object();
}

// Unix seconds of "YYYY-MM-DDTHH:MM:SSZ"; -1 for anything else.
std::int64_t unix_of(const std::string& t) {
  static const std::regex kRfc3339(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$)");
  if (!std::regex_match(t, kRfc3339)) return -1;
  std::tm tm{};
  std::istringstream in(t);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
  if (in.fail()) return -1;
  return static_cast<std::int64_t>(::timegm(&tm));
}

// Nearest-rank percentile of the samples (ms).
double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

// One proxied request with `token` on a fresh connection.
HttpResponse ask(const ProxyHarness& h, const std::string& token,
                 milliseconds timeout = kDefaultTimeout) {
  return h.request("GET", "/ep1/generate", {{"Host", "client.test"}, bearer(token)}, {}, timeout);
}

bool answer_is(const HttpResponse& r, int status, std::string_view code) {
  if (r.status != status) return false;
  return code.empty() || r.header("X-Frontdoor-Error") == std::string(code);
}

// When each replica first gave the awaited answer, counted from `since`.
struct Seen {
  std::optional<Clock::duration> after;  // nullopt: not within the timeout
  HttpResponse last;
};

// Asks every replica in turn, about every `every`, until each has answered
// `token` with `status` (and X-Frontdoor-Error `code`, when given), or until
// `since + timeout`. A key taking effect is a state to observe: polled.
std::vector<Seen> poll_until(const std::vector<const ProxyHarness*>& replicas,
                             const std::string& token, int status, std::string_view code,
                             Clock::time_point since, milliseconds timeout,
                             milliseconds every = 2ms) {
  std::vector<Seen> seen(replicas.size());
  const auto deadline = since + timeout;
  for (auto next = Clock::now();; next += every) {
    bool all = true;
    for (std::size_t i = 0; i < replicas.size(); ++i) {
      if (seen[i].after) continue;
      seen[i].last = ask(*replicas[i], token, 2000ms);
      if (answer_is(seen[i].last, status, code)) {
        seen[i].after = Clock::now() - since;
      } else {
        all = false;
      }
    }
    if (all || Clock::now() >= deadline) return seen;
    std::this_thread::sleep_until(std::max(next + every, Clock::now()));
  }
}

Seen poll_until(const ProxyHarness& h, const std::string& token, int status, std::string_view code,
                Clock::time_point since, milliseconds timeout, milliseconds every = 2ms) {
  return poll_until(std::vector<const ProxyHarness*>{&h}, token, status, code, since, timeout,
                    every)[0];
}

struct ReplicaOptions {
  std::vector<std::string> keys_extra{};
  std::string last_used_flush = "10s";
  bool wait_ready = true;
  bool start = true;
  std::vector<std::string> workers{};  // empty: the fixture's fake worker
};

class FleetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(worker_.ok());
    std::string err;
    ASSERT_TRUE(pg_.start(&err)) << err;
    auto m = cli({"keys", "migrate", "--store", pg_.uri_with_password()});
    ASSERT_TRUE(m.ok()) << "keys migrate: " << m.out << m.err;
    admin_token_ = insert_key("key_admin", R"({"*": "none"})", "read_write");
  }

  void TearDown() override {
    if (pg_.paused()) pg_.resume();
    for (auto& r : replicas_) {
      auto result = r->stop_and_check();
      EXPECT_TRUE(result);
    }
  }

  // --- the store, as an outside SQL writer

  // Inserts a key with plain SQL (the integration contract's columns);
  // returns its token. `rate_limit` is JSON or "" (NULL).
  std::string insert_key(const std::string& id, const std::string& endpoints = kEp1ReadWrite,
                         const std::string& management = "none",
                         const std::string& rate_limit = "") {
    const std::string token = fresh_rpa_token();
    sql(insert_sql(id, token, endpoints, management, rate_limit));
    return token;
  }
  static std::string insert_sql(const std::string& id, const std::string& token,
                                const std::string& endpoints = kEp1ReadWrite,
                                const std::string& management = "none",
                                const std::string& rate_limit = "") {
    return "INSERT INTO frontdoor_keys (id, name, hash, prefix, management, endpoints, rate_limit) "
           "VALUES ('" +
           id + "', 'n-" + id + "', '" + stored_hash(token) + "', '" + token.substr(0, 8) + "', '" +
           management + "', '" + endpoints + "', " +
           (rate_limit.empty() ? std::string("NULL") : "'" + rate_limit + "'") + ")";
  }
  void sql(const std::string& statements) {
    std::string err;
    EXPECT_TRUE(pg_.exec(statements, &err)) << statements << ": " << err;
  }
  std::string sql_value(const std::string& query) {
    std::string err;
    auto rows = pg_.query(query, &err);
    EXPECT_TRUE(rows) << query << ": " << err;
    return rows && !rows->empty() && !rows->front().empty() ? rows->front().front()
                                                            : std::string("(none)");
  }

  // `frontdoor ARGS`, its output kept for the password check.
  CliResult cli(const std::vector<std::string>& args) {
    auto r = run_frontdoor(args);
    cli_output_ += r.out + r.err;
    return r;
  }

  // --- replicas

  // A replica on the shared store with endpoint ep1; started unless asked
  // not to (nullptr when that failed, with the reason reported).
  ProxyHarness* add_replica(ReplicaOptions o = {}) {
    auto h = std::make_unique<ProxyHarness>();
    h->config().key_store = pg_.uri_with_password();
    h->config().last_used_flush = o.last_used_flush;
    h->config().keys_extra = o.keys_extra;
    h->config().wait_ready = o.wait_ready;
    h->add_endpoint(
        {.id = "ep1", .workers = o.workers.empty() ? std::vector{worker_.url()} : o.workers});
    replicas_.push_back(std::move(h));
    ProxyHarness* p = replicas_.back().get();
    if (o.start && !p->start()) {
      ADD_FAILURE() << "replica " << replicas_.size() << " did not start: " << p->error();
      return nullptr;
    }
    return p;
  }

  HttpResponse admin(const ProxyHarness& h, std::string_view method, std::string_view target,
                     std::string_view body = {}, milliseconds timeout = 10000ms) const {
    Headers hs{{"Host", "admin"}, bearer(admin_token_)};
    if (!body.empty()) hs.emplace_back("Content-Type", "application/json");
    return do_request(h.admin_port(), method, target, hs, body, timeout);
  }

  // POST /v1/keys on `h` for ep1 read_write: {id, token}, or empty on failure.
  std::pair<std::string, std::string> create_via_admin(const ProxyHarness& h,
                                                       const std::string& name) {
    auto r = admin(h, "POST", "/v1/keys",
                   R"({"name":")" + name + R"(","endpoints":{"*":"none","ep1":"read_write"}})");
    auto o = parse_object(r.body);
    if (r.status != 201 || !o || !o->contains("key")) {
      ADD_FAILURE() << "POST /v1/keys: " << show(r);
      return {};
    }
    return {json_str(o->at("key").as_object(), "id"), json_str(*o, "token")};
  }

  static std::map<std::string, double> metrics(const ProxyHarness& h) {
    return parse_metrics(h.admin_request("GET", "/metrics", {{"Host", "admin"}}, 2000ms).body);
  }
  // Polls /metrics until `pred` holds (a gauge is a state: observed).
  static bool wait_metrics(const ProxyHarness& h,
                           const std::function<bool(std::map<std::string, double>&)>& pred,
                           milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      auto m = metrics(h);
      if (pred(m)) return true;
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(50ms);
    }
  }
  static std::string metric_lines(const ProxyHarness& h) {
    std::string out;
    for (const auto& [name, v] : metrics(h))
      if (name.rfind("frontdoor_key_store", 0) == 0 || name.rfind("frontdoor_fleet", 0) == 0)
        out += name + " " + std::to_string(v) + "\n";
    return out;
  }

  static bool wait_log(const ProxyHarness& h, std::string_view msg_prefix, milliseconds timeout,
                       std::size_t n = 1) {
    return h.wait_for_log(
        [&](const json::object& o) { return json_str(o, "msg").rfind(msg_prefix, 0) == 0; }, n,
        timeout);
  }

  PgServer pg_;  // declared first: destroyed after the replicas that use it
  FakeWorker worker_;
  std::string admin_token_;
  std::string cli_output_;
  std::vector<std::unique_ptr<ProxyHarness>> replicas_;
};

// ---------------------------------------------------------------------------
// Changes reach every replica

// 1. Keys created and revoked through A's admin API take effect on B within
// 1 s; the propagation is measured over 30 keys (half disabled, half deleted).
TEST_F(FleetTest, AdminChangesOnOneReplicaReachTheOtherWithinOneSecond) {
  ProxyHarness* a = add_replica();
  ASSERT_TRUE(a);
  ProxyHarness* b = add_replica();
  ASSERT_TRUE(b);

  constexpr int kRounds = 30;
  std::vector<double> created_ms, revoked_ms;
  for (int i = 0; i < kRounds; ++i) {
    auto [id, token] = create_via_admin(*a, "prop-" + std::to_string(i));
    ASSERT_FALSE(token.empty());
    const auto created = Clock::now();
    // At once on A (its own write), within 1 s on B.
    ASSERT_EQ(ask(*a, token).status, 200) << "round " << i;
    auto on_b = poll_until(*b, token, 200, "", created, 3000ms);
    ASSERT_TRUE(on_b.after) << "round " << i << ": key " << id
                            << " never worked on B: " << show(on_b.last);
    created_ms.push_back(ms_of(*on_b.after));

    const bool disable = i % 2 == 0;
    auto r = disable ? admin(*a, "PATCH", "/v1/keys/" + id, R"({"enabled":false})")
                     : admin(*a, "DELETE", "/v1/keys/" + id);
    const auto acked = Clock::now();  // the commit was acknowledged with this answer
    ASSERT_EQ(r.status, disable ? 200 : 204) << show(r);
    const std::string code = disable ? "api_key_disabled" : "invalid_api_key";
    auto gone = poll_until(*b, token, 401, code, acked, 3000ms);
    ASSERT_TRUE(gone.after) << "round " << i << ": B still accepts key " << id << ": "
                            << show(gone.last);
    revoked_ms.push_back(ms_of(*gone.after));
    EXPECT_TRUE(IsFrontdoorError(gone.last, 401, code));
    EXPECT_LT(*gone.after, kPropagation)
        << "round " << i << " (" << (disable ? "PATCH" : "DELETE") << ")";
    EXPECT_LT(ms_of(*on_b.after), ms_of(kPropagation)) << "round " << i << " (create)";
    EXPECT_TRUE(IsFrontdoorError(ask(*a, token), 401, code));
  }
  std::cout << "[ info ] create on A -> works on B: p50 " << percentile(created_ms, 0.5)
            << " ms, p99 " << percentile(created_ms, 0.99) << " ms, max "
            << percentile(created_ms, 1.0) << " ms (n=" << kRounds << ")\n";
  std::cout << "[ info ] revoke on A (commit ack) -> 401 on B: p50 " << percentile(revoked_ms, 0.5)
            << " ms, p99 " << percentile(revoked_ms, 0.99) << " ms, max "
            << percentile(revoked_ms, 1.0) << " ms (n=" << kRounds << ", B polled every ~2 ms)\n";
}

// 2. Another service writes frontdoor_keys with plain SQL: INSERT, UPDATE
// and DELETE reach all three replicas within 1 s.
TEST_F(FleetTest, OutsideSqlWritesReachEveryReplicaWithinOneSecond) {
  std::vector<const ProxyHarness*> fleet;
  for (int i = 0; i < 3; ++i) {
    ProxyHarness* r = add_replica();
    ASSERT_TRUE(r);
    fleet.push_back(r);
  }
  const std::string token = fresh_rpa_token();
  for (const auto* r : fleet) EXPECT_TRUE(IsFrontdoorError(ask(*r, token), 401, "invalid_api_key"));

  auto check = [&](const std::string& statement, int status, std::string_view code) {
    sql(statement);
    const auto committed = Clock::now();
    auto seen = poll_until(fleet, token, status, code, committed, 3000ms);
    for (std::size_t i = 0; i < seen.size(); ++i) {
      ASSERT_TRUE(seen[i].after) << statement << ": replica " << i << ": " << show(seen[i].last);
      EXPECT_LT(*seen[i].after, kPropagation) << statement << ": replica " << i;
      std::cout << "[ info ] " << statement.substr(0, 6) << " -> replica " << i << ": "
                << ms_of(*seen[i].after) << " ms\n";
    }
  };
  check(insert_sql("key_outside", token), 200, "");
  check("UPDATE frontdoor_keys SET enabled = false WHERE id = 'key_outside'", 401,
        "api_key_disabled");
  check("UPDATE frontdoor_keys SET enabled = true WHERE id = 'key_outside'", 200, "");
  check("DELETE FROM frontdoor_keys WHERE id = 'key_outside'", 401, "invalid_api_key");
}

// 3. A transaction that started first and commits last is not missed: X is
// inserted (and key_old disabled) in a transaction held open while Y commits
// and is applied; X's commit then reaches the replicas within 1 s.
TEST_F(FleetTest, ATransactionHeldOpenWhileAnotherCommitsIsApplied) {
  const std::string old_token = insert_key("key_old");
  ProxyHarness* a = add_replica();
  ASSERT_TRUE(a);
  ProxyHarness* b = add_replica();
  ASSERT_TRUE(b);
  std::vector<const ProxyHarness*> fleet{a, b};
  ASSERT_EQ(ask(*a, old_token).status, 200);

  PgSession slow = pg_.session();
  ASSERT_TRUE(slow.ok()) << slow.error();
  const std::string x = fresh_rpa_token(), y = fresh_rpa_token();
  std::string err;
  ASSERT_TRUE(slow.exec("BEGIN; " + insert_sql("key_x", x) +
                            "; UPDATE frontdoor_keys SET enabled = false WHERE id = 'key_old'",
                        &err))
      << err;
  sql(insert_sql("key_y", y));  // started later, committed first
  auto y_seen = poll_until(fleet, y, 200, "", Clock::now(), 3000ms);
  for (const auto& s : y_seen) ASSERT_TRUE(s.after) << "Y never applied: " << show(s.last);
  // More commits pass X while it stays open, and are applied.
  const std::string z = fresh_rpa_token();
  sql(insert_sql("key_z", z));
  for (const auto& s : poll_until(fleet, z, 200, "", Clock::now(), 3000ms))
    ASSERT_TRUE(s.after) << "Z never applied: " << show(s.last);
  for (const auto* r : fleet) {
    EXPECT_TRUE(IsFrontdoorError(ask(*r, x), 401, "invalid_api_key")) << "an uncommitted key works";
    EXPECT_EQ(ask(*r, old_token).status, 200) << "an uncommitted UPDATE took effect";
  }

  ASSERT_TRUE(slow.exec("COMMIT", &err)) << err;
  const auto committed = Clock::now();
  auto x_seen = poll_until(fleet, x, 200, "", committed, 3000ms);
  auto old_seen = poll_until(fleet, old_token, 401, "api_key_disabled", committed, 3000ms);
  for (std::size_t i = 0; i < fleet.size(); ++i) {
    ASSERT_TRUE(x_seen[i].after) << "replica " << i
                                 << " missed the late commit of X: " << show(x_seen[i].last);
    EXPECT_LT(*x_seen[i].after, kPropagation) << "replica " << i;
    ASSERT_TRUE(old_seen[i].after)
        << "replica " << i << " missed the late UPDATE: " << show(old_seen[i].last);
    EXPECT_LT(*old_seen[i].after, kPropagation) << "replica " << i;
  }
  EXPECT_EQ(ask(*a, y).status, 200);
}

// ---------------------------------------------------------------------------
// The database goes away

// 4. Stopped: the replica serves from its snapshot, answers admin writes 503
// key_store_unavailable, says so in metrics and logs, keeps its usage
// counts; after a restart it catches up with a change made at once and is
// fresh again.
TEST_F(FleetTest, StoppedDatabaseFailsStaticAndTheReplicaCatchesUpAfterARestart) {
  const std::string token = insert_key("key_live");
  ProxyHarness* a = add_replica({.last_used_flush = "1s"});
  ASSERT_TRUE(a);
  int used = 0;
  ASSERT_EQ(ask(*a, token).status, 200);
  ++used;
  ASSERT_TRUE(wait_metrics(
      *a, [](auto& m) { return m["frontdoor_key_store_up"] == 1; }, 5000ms))
      << metric_lines(*a);

  ASSERT_TRUE(pg_.stop());
  ASSERT_TRUE(wait_log(*a, "key store unreachable", 5000ms)) << a->stderr_text();
  // Fail static: the snapshot keeps serving.
  for (int i = 0; i < 10; ++i, ++used) {
    auto r = ask(*a, token);
    ASSERT_EQ(r.status, 200) << "request " << i << " while the database is down: " << show(r);
  }
  // Admin writes cannot be made: 503 within 5 s.
  const auto t0 = Clock::now();
  auto w = admin(*a, "POST", "/v1/keys", R"({"name":"while-down"})");
  const auto took = Clock::now() - t0;
  EXPECT_TRUE(IsFrontdoorError(w, 503, "key_store_unavailable"));
  EXPECT_LT(took, kAdminUnavailableBound) << ms_of(took) << " ms";
  std::cout << "[ info ] admin POST while the database is stopped: " << w.status << " in "
            << ms_of(took) << " ms\n";
  // Reads of the snapshot still answer.
  EXPECT_EQ(admin(*a, "GET", "/v1/keys/key_live").status, 200);
  EXPECT_TRUE(wait_metrics(
      *a,
      [](auto& m) {
        return m["frontdoor_key_store_stale_seconds"] > 0 && m["frontdoor_key_store_up"] == 0;
      },
      5000ms))
      << metric_lines(*a);
  EXPECT_EQ(a->admin_request("GET", "/readyz", {{"Host", "admin"}}).status, 200);
  // A usage flush was tried (and failed) while the database was down.
  EXPECT_TRUE(wait_log(*a, "usage flush failed", 5000ms)) << a->stderr_text();

  // Back: a change made at once is applied, and the store is fresh again.
  ASSERT_TRUE(pg_.restart()) << pg_.last_error();
  const std::string later = fresh_rpa_token();
  sql(insert_sql("key_later", later));
  const auto changed = Clock::now();
  auto seen = poll_until(*a, later, 200, "", changed, kRecovery, 20ms);
  ASSERT_TRUE(seen.after) << "the change made after the restart never arrived: " << show(seen.last)
                          << "\n"
                          << a->stderr_text();
  std::cout << "[ info ] change made right after the restart applied in " << ms_of(*seen.after)
            << " ms\n";
  EXPECT_TRUE(wait_log(*a, "key store reachable again", 5000ms)) << a->stderr_text();
  EXPECT_TRUE(wait_metrics(
      *a,
      [](auto& m) {
        return m["frontdoor_key_store_stale_seconds"] == 0 && m["frontdoor_key_store_up"] == 1;
      },
      5000ms))
      << metric_lines(*a);
  EXPECT_EQ(admin(*a, "POST", "/v1/keys", R"({"name":"after-restart"})").status, 201);

  // The usage counted while the database was down is written afterwards.
  const std::string total = std::to_string(used);
  const auto deadline = Clock::now() + 5000ms;
  std::string got;
  while ((got = sql_value(
              "SELECT requests_total FROM frontdoor_key_usage WHERE id = 'key_live'")) != total &&
         Clock::now() < deadline)
    std::this_thread::sleep_for(100ms);
  EXPECT_EQ(got, total) << "usage counted while the database was down was not written afterwards";
}

// 5. Paused (SIGSTOP: connections hang, nothing refuses): requests and the
// admin listener's health answers stay fast, admin writes answer 503 within
// 5 s, and the replica recovers once the database resumes.
TEST_F(FleetTest, PausedDatabaseDelaysNoRequestAndAdminWritesAnswer503) {
  const std::string token = insert_key("key_live");
  ProxyHarness* a = add_replica();
  ASSERT_TRUE(a);
  ASSERT_EQ(ask(*a, token).status, 200);

  ASSERT_TRUE(pg_.pause()) << pg_.last_error();
  // The write goes to a connection that hangs, at once (the store thread is idle).
  auto write = std::async(std::launch::async, [&] {
    const auto t0 = Clock::now();
    auto r = admin(*a, "POST", "/v1/keys", R"({"name":"while-paused"})");
    return std::make_pair(r, Clock::now() - t0);
  });
  Clock::duration slowest_request{}, slowest_admin{};
  int requests = 0;
  const auto until = Clock::now() + 4000ms;
  while (Clock::now() < until || write.wait_for(0ms) != std::future_status::ready) {
    auto t0 = Clock::now();
    auto r = ask(*a, token, 3000ms);
    slowest_request = std::max(slowest_request, Clock::now() - t0);
    ASSERT_EQ(r.status, 200) << "while the database is paused: " << show(r);
    ++requests;
    for (const char* path : {"/healthz", "/readyz", "/metrics"}) {
      t0 = Clock::now();
      auto h = a->admin_request("GET", path, {{"Host", "admin"}}, 3000ms);
      slowest_admin = std::max(slowest_admin, Clock::now() - t0);
      ASSERT_EQ(h.status, 200) << path << " while the database is paused: " << show(h);
    }
    if (Clock::now() > until + 10000ms) break;  // the admin write hangs: judged below
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_LT(slowest_request, 500ms) << ms_of(slowest_request) << " ms";
  EXPECT_LT(slowest_admin, 1000ms) << ms_of(slowest_admin) << " ms";
  std::cout << "[ info ] database paused: " << requests << " requests, slowest "
            << ms_of(slowest_request) << " ms; slowest /healthz|/readyz|/metrics "
            << ms_of(slowest_admin) << " ms\n";
  ASSERT_EQ(write.wait_for(5000ms), std::future_status::ready) << "the admin write never answered";
  auto [w, took] = write.get();
  EXPECT_TRUE(IsFrontdoorError(w, 503, "key_store_unavailable"));
  EXPECT_LT(took, kAdminUnavailableBound) << ms_of(took) << " ms";
  std::cout << "[ info ] admin POST while the database is paused: " << w.status << " in "
            << ms_of(took) << " ms\n";
  EXPECT_TRUE(wait_metrics(
      *a, [](auto& m) { return m["frontdoor_key_store_stale_seconds"] > 0; }, 5000ms))
      << metric_lines(*a);

  ASSERT_TRUE(pg_.resume()) << pg_.last_error();
  const std::string later = fresh_rpa_token();
  sql(insert_sql("key_later", later));
  auto seen = poll_until(*a, later, 200, "", Clock::now(), kRecovery, 20ms);
  ASSERT_TRUE(seen.after) << "no recovery after resume: " << show(seen.last) << "\n"
                          << a->stderr_text();
  std::cout << "[ info ] change made after resume applied in " << ms_of(*seen.after) << " ms\n";
  EXPECT_TRUE(wait_metrics(
      *a, [](auto& m) { return m["frontdoor_key_store_up"] == 1; }, 5000ms))
      << metric_lines(*a);
  EXPECT_EQ(admin(*a, "POST", "/v1/keys", R"({"name":"after-resume"})").status, 201);
  // The write answered 503 was not made: the change runs in a transaction
  // that was never committed (only a COMMIT sent and left unanswered could
  // be, and the message would say so).
  EXPECT_EQ(sql_value("SELECT count(*) FROM frontdoor_keys WHERE name = 'while-paused'"), "0")
      << "a write answered 503 was made after the database resumed";
}

// 6. keys.max_stale: past it, proxied requests fail closed with 503
// key_store_unavailable (the worker sees none of them) while /readyz stays
// 200; once the database is back, requests are served again.
TEST_F(FleetTest, MaxStaleFailsClosedUntilTheDatabaseIsBack) {
  const std::string token = insert_key("key_live");
  ProxyHarness* a = add_replica({.keys_extra = {"max_stale: 1s"}});
  ASSERT_TRUE(a);
  ASSERT_EQ(ask(*a, token).status, 200);

  ASSERT_TRUE(pg_.stop());
  const auto stopped = Clock::now();
  auto closed = poll_until(*a, token, 503, "key_store_unavailable", stopped, 6000ms, 20ms);
  ASSERT_TRUE(closed.after) << "never failed closed: " << show(closed.last) << "\n"
                            << metric_lines(*a);
  std::cout << "[ info ] max_stale 1s: failing closed " << ms_of(*closed.after)
            << " ms after the stop\n";
  EXPECT_TRUE(IsFrontdoorError(closed.last, 503, "key_store_unavailable"));
  // Not before max_stale: the last contact was at most one poll (500 ms) before the stop.
  EXPECT_GE(*closed.after, 450ms);
  const std::size_t seen_by_worker = worker_.requests().size();
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(IsFrontdoorError(ask(*a, token), 503, "key_store_unavailable"));
    EXPECT_EQ(a->admin_request("GET", "/readyz", {{"Host", "admin"}}).status, 200)
        << "SPEC: /readyz stays 200";
  }
  EXPECT_EQ(worker_.requests().size(), seen_by_worker)
      << "a request reached the worker while failing closed";
  EXPECT_EQ(metrics(*a)["frontdoor_key_store_failing_closed"], 1) << metric_lines(*a);
  EXPECT_TRUE(wait_log(*a, "key store stale past keys.max_stale", 2000ms)) << a->stderr_text();

  ASSERT_TRUE(pg_.restart()) << pg_.last_error();
  auto open = poll_until(*a, token, 200, "", Clock::now(), kRecovery, 20ms);
  ASSERT_TRUE(open.after) << "still failing closed after the restart: " << show(open.last);
  std::cout << "[ info ] serving again " << ms_of(*open.after) << " ms after the restart\n";
  EXPECT_EQ(metrics(*a)["frontdoor_key_store_failing_closed"], 0) << metric_lines(*a);
  EXPECT_TRUE(wait_log(*a, "key store fresh: serving again", 2000ms)) << a->stderr_text();
}

// 7. A replica started while the database is down: not ready and failing
// closed until it has loaded the keys once.
TEST_F(FleetTest, AReplicaStartedWhileTheDatabaseIsDownBecomesReadyWhenItComes) {
  const std::string token = insert_key("key_live");
  ASSERT_TRUE(pg_.stop());
  ProxyHarness* a = add_replica({.wait_ready = false});
  ASSERT_TRUE(a);
  // Long enough for the health checker's first round (which alone would make it ready).
  const auto until = Clock::now() + 1500ms;
  do {
    auto ready = a->admin_request("GET", "/readyz", {{"Host", "admin"}});
    ASSERT_EQ(ready.status, 503) << show(ready);
    EXPECT_TRUE(IsFrontdoorError(ask(*a, token), 503, "key_store_unavailable"));
    std::this_thread::sleep_for(100ms);
  } while (Clock::now() < until);
  EXPECT_TRUE(a->running());

  ASSERT_TRUE(pg_.restart()) << pg_.last_error();
  const auto back = Clock::now();
  const auto deadline = back + kRecovery;
  HttpResponse ready;
  while ((ready = a->admin_request("GET", "/readyz", {{"Host", "admin"}})).status != 200 &&
         Clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  ASSERT_EQ(ready.status, 200) << "never ready after the database came: " << show(ready) << "\n"
                               << a->stderr_text();
  std::cout << "[ info ] ready " << ms_of(Clock::now() - back) << " ms after the database came\n";
  auto r = ask(*a, token);
  EXPECT_EQ(r.status, 200) << show(r);
  EXPECT_TRUE(wait_metrics(
      *a, [](auto& m) { return m["frontdoor_key_store_up"] == 1; }, 5000ms))
      << metric_lines(*a);
}

// ---------------------------------------------------------------------------
// Usage, bad rows, restarts

// 8. Usage adds up across replicas in frontdoor_key_usage, is shown by
// `keys export` and the admin API, and is never a key change.
TEST_F(FleetTest, UsageFromThreeReplicasAddsUpAndIsNoKeyChange) {
  const std::string token = insert_key("key_u");
  std::vector<ProxyHarness*> fleet;
  for (int i = 0; i < 3; ++i) {
    ProxyHarness* r = add_replica({.last_used_flush = "1s"});
    ASSERT_TRUE(r);
    fleet.push_back(r);
  }
  const std::string changes_before = sql_value("SELECT count(*) FROM frontdoor_key_changes");
  // 7, 11 and 13 requests, in two rounds each flushed (3+4, 5+6, 6+7): a
  // flush must add what was counted since the last one, not the total.
  const int counts[3] = {7, 11, 13};
  const int first_round[3] = {3, 5, 6};
  auto wait_total = [&](const std::string& want) {
    const auto deadline = Clock::now() + 6000ms;
    std::string total;
    while ((total = sql_value(
                "SELECT requests_total FROM frontdoor_key_usage WHERE id = 'key_u'")) != want &&
           Clock::now() < deadline)
      std::this_thread::sleep_for(100ms);
    return total;
  };
  for (int i = 0; i < 3; ++i)
    for (int n = 0; n < first_round[i]; ++n) ASSERT_EQ(ask(*fleet[i], token).status, 200);
  ASSERT_EQ(wait_total("14"), "14") << "the first flushes of the three replicas do not add up";
  for (int i = 0; i < 3; ++i)
    for (int n = first_round[i]; n < counts[i]; ++n) ASSERT_EQ(ask(*fleet[i], token).status, 200);
  ASSERT_EQ(wait_total("31"), "31") << "the flushes of the three replicas do not add up";
  EXPECT_EQ(
      sql_value("SELECT last_used_at IS NOT NULL FROM frontdoor_key_usage WHERE id = 'key_u'"),
      "t");
  // Every running replica's admin API shows the fleet's total (SPEC §3.1),
  // not the count it loaded plus its own (7, 11 or 13), and the latest use.
  const std::string latest =
      sql_value("SELECT floor(extract(epoch FROM last_used_at))::bigint FROM frontdoor_key_usage WHERE id = 'key_u'");
  for (int i = 0; i < 3; ++i) {
    auto g = admin(*fleet[i], "GET", "/v1/keys/key_u");
    auto o = parse_object(g.body);
    ASSERT_TRUE(o && o->contains("key")) << show(g);
    EXPECT_EQ(o->at("key").as_object().at("requests_total"), 31)
        << "replica " << i << " (" << counts[i] << " requests there): " << g.body;
    EXPECT_EQ(unix_of(json_str(o->at("key").as_object(), "last_used_at")), std::stoll(latest)) << g.body;
    auto l = admin(*fleet[i], "GET", "/v1/keys?limit=10");
    EXPECT_NE(l.body.find("\"requests_total\":31"), std::string::npos) << "the list, replica " << i << ": " << l.body;
  }
  // A request counted but not flushed yet is in this replica's answer: 32
  // whether its flush (every 1 s) came first or not.
  ASSERT_EQ(ask(*fleet[1], token).status, 200);
  {
    auto g = admin(*fleet[1], "GET", "/v1/keys/key_u");
    auto o = parse_object(g.body);
    ASSERT_TRUE(o && o->contains("key")) << show(g);
    EXPECT_EQ(o->at("key").as_object().at("requests_total"), 32) << g.body;
  }
  // The last flush at shutdown adds nothing twice.
  for (auto* r : fleet) EXPECT_TRUE(r->stop_and_check());
  EXPECT_EQ(sql_value("SELECT requests_total FROM frontdoor_key_usage WHERE id = 'key_u'"), "32");
  EXPECT_EQ(sql_value("SELECT count(*) FROM frontdoor_key_changes"), changes_before)
      << "usage flushes were recorded as key changes";

  auto e = cli({"keys", "export", "--store", pg_.uri_with_password()});
  ASSERT_TRUE(e.ok()) << e.err;
  EXPECT_EQ(store_field(e.out, "key_u", "requests_total"), "32") << e.out;
  auto used = store_field(e.out, "key_u", "last_used_at");
  ASSERT_TRUE(used) << e.out;
  EXPECT_GT(unix_of(*used), 0) << *used;

  // A replica (re)started now shows the fleet's total in the admin API.
  ASSERT_TRUE(fleet[0]->restart()) << fleet[0]->error();
  auto g = admin(*fleet[0], "GET", "/v1/keys/key_u");
  auto o = parse_object(g.body);
  ASSERT_TRUE(o && o->contains("key")) << show(g);
  const auto& k = o->at("key").as_object();
  EXPECT_EQ(k.at("requests_total"), 32) << g.body;
  EXPECT_GT(unix_of(json_str(k, "last_used_at")), 0) << g.body;
}

// 9. A row that breaks §3's rules, written by SQL, is skipped and logged
// with its id; the other keys load and its token gets 401.
TEST_F(FleetTest, ABadRowIsSkippedLoggedAndItsTokenRefused) {
  const std::string good = insert_key("key_good");
  const std::string bad_mgmt = insert_key("key_badmgmt", kEp1ReadWrite, "bogus");
  sql("INSERT INTO frontdoor_keys (id, hash) VALUES ('key_badhash', 'nonsense')");
  ProxyHarness* a = add_replica();
  ASSERT_TRUE(a);
  for (const char* id : {"key_badmgmt", "key_badhash"}) {
    EXPECT_TRUE(a->wait_for_log(
        [&](const json::object& o) {
          return json_str(o, "msg") == "key store: key skipped" && json_str(o, "id") == id;
        },
        1, 5000ms))
        << id << " not logged as skipped:\n"
        << a->stderr_text();
  }
  EXPECT_EQ(ask(*a, good).status, 200);
  EXPECT_TRUE(IsFrontdoorError(ask(*a, bad_mgmt), 401, "invalid_api_key"));
  EXPECT_EQ(admin(*a, "GET", "/v1/keys/key_badmgmt").status, 404);

  // A good key turned bad by an outside writer is no key any more, at once.
  const std::string second = insert_key("key_second");
  ASSERT_TRUE(poll_until(*a, second, 200, "", Clock::now(), 3000ms).after);
  sql("UPDATE frontdoor_keys SET endpoints = '{\"ep1\": \"write\"}' WHERE id = 'key_second'");
  auto gone = poll_until(*a, second, 401, "invalid_api_key", Clock::now(), 3000ms);
  EXPECT_TRUE(gone.after) << show(gone.last);
  EXPECT_TRUE(a->wait_for_log(
      [](const json::object& o) {
        return json_str(o, "msg") == "key store: key skipped" && json_str(o, "id") == "key_second";
      },
      1, 5000ms))
      << a->stderr_text();
  EXPECT_EQ(ask(*a, good).status, 200);
}

// 10. A replica restarted while another keeps serving comes back with the
// keys, including what changed while it was down.
TEST_F(FleetTest, ARestartedReplicaHasTheChangesMadeWhileItWasDown) {
  const std::string stays = insert_key("key_stays");
  const std::string disabled = insert_key("key_disabled");
  const std::string deleted = insert_key("key_deleted");
  ProxyHarness* a = add_replica();
  ASSERT_TRUE(a);
  ProxyHarness* b = add_replica();
  ASSERT_TRUE(b);
  for (const auto& t : {stays, disabled, deleted}) ASSERT_EQ(ask(*b, t).status, 200);

  ASSERT_TRUE(b->send_signal(SIGTERM));
  ASSERT_EQ(b->wait_exit(5000ms), 0) << b->stderr_text();
  // Meanwhile, through A (which keeps serving) and by SQL.
  auto [new_id, created] = create_via_admin(*a, "while-b-down");
  ASSERT_FALSE(created.empty());
  ASSERT_EQ(admin(*a, "PATCH", "/v1/keys/key_disabled", R"({"enabled":false})").status, 200);
  ASSERT_EQ(admin(*a, "DELETE", "/v1/keys/key_deleted").status, 204);
  const std::string by_sql = insert_key("key_by_sql");
  for (const auto& t : {stays, created, by_sql}) {
    auto r = poll_until(*a, t, 200, "", Clock::now(), kPropagation);
    EXPECT_TRUE(r.after) << show(r.last) << a->stderr_text();
  }

  ASSERT_TRUE(b->restart()) << b->error();
  EXPECT_EQ(ask(*b, stays).status, 200);
  EXPECT_EQ(ask(*b, created).status, 200);
  EXPECT_EQ(ask(*b, by_sql).status, 200);
  EXPECT_TRUE(IsFrontdoorError(ask(*b, disabled), 401, "api_key_disabled"));
  EXPECT_TRUE(IsFrontdoorError(ask(*b, deleted), 401, "invalid_api_key"));
  // And it follows the feed again.
  ASSERT_EQ(admin(*a, "PATCH", "/v1/keys/key_stays", R"({"enabled":false})").status, 200);
  auto gone = poll_until(*b, stays, 401, "api_key_disabled", Clock::now(), 3000ms);
  ASSERT_TRUE(gone.after) << show(gone.last);
  EXPECT_LT(*gone.after, kPropagation);
}

// ---------------------------------------------------------------------------
// Tunnels, secrets, replicas, rate limits

// 11. A WebSocket tunnel through B is closed (1008 both ways) once its key
// is disabled through A's admin API: within 1 s of the change reaching B.
TEST_F(FleetTest, ATunnelThroughOneReplicaClosesWhenTheKeyIsRevokedOnAnother) {
  WsWorker ws;
  ASSERT_TRUE(ws.ok());
  ProxyHarness* a = add_replica({.workers = {ws.url()}});
  ASSERT_TRUE(a);
  ProxyHarness* b = add_replica({.workers = {ws.url()}});
  ASSERT_TRUE(b);
  ASSERT_TRUE(b->wait_for_worker_state(ws.authority(), "ready", kWait)) << b->stderr_text();
  auto [id, token] = create_via_admin(*a, "ws-key");
  ASSERT_FALSE(token.empty());
  ASSERT_TRUE(poll_until(*b, token, 200, "", Clock::now(), 3000ms).after);

  WsClient c;
  ASSERT_TRUE(
      c.connect(b->proxy_port(), "/ep1/chat", {bearer(token), {"X-Request-Id", "fleet-ws"}}))
      << c.error() << "\n"
      << show(c.response());
  ASSERT_TRUE(ws.wait_accepted(0, kWait));
  ASSERT_TRUE(c.send_text("before"));
  auto echo = c.read_message(kWait);
  ASSERT_TRUE(echo && echo->data == "before");

  auto r = admin(*a, "PATCH", "/v1/keys/" + id, R"({"enabled":false})");
  const auto answered = Clock::now();
  ASSERT_EQ(r.status, 200) << show(r);
  auto cf = c.wait_close_frame(5s);
  ASSERT_TRUE(cf) << "the client read no Close frame; end: " << describe(c.end());
  EXPECT_EQ(cf->code, 1008) << cf->reason;
  EXPECT_LE(cf->at - answered, kTunnelRevocationBound) << ms_of(cf->at - answered) << " ms";
  std::cout << "[ info ] tunnel on B closed " << ms_of(cf->at - answered)
            << " ms after the revocation on A\n";
  ASSERT_TRUE(ws.wait_close_frame(0, 3s)) << describe(ws.upgrade(0)->stats.end);
  EXPECT_EQ(ws.upgrade(0)->stats.close_frame->code, 1008);
  EXPECT_TRUE(c.wait_end(3s).ended());
  EXPECT_TRUE(b->wait_for_access_log_line(
      [](const json::object& o) {
        return json_str(o, "request_id") == "fleet-ws" && json_str(o, "error") == "revoked";
      },
      1, kWait))
      << b->stdout_text();
}

// 12. The store's password appears in nothing frontdoor prints or answers:
// logs of a start, an outage and a recovery, admin answers, metrics,
// /v1/replicas, and the CLI on an unreachable store.
TEST_F(FleetTest, ThePasswordIsNeverShown) {
  const std::string pw = pg_.password();
  ASSERT_FALSE(pw.empty());
  const std::string token = insert_key("key_live");
  ProxyHarness* a = add_replica({.keys_extra = {"max_stale: 1s"}, .last_used_flush = "1s"});
  ASSERT_TRUE(a);
  std::string answers;
  auto keep = [&](const HttpResponse& r) {
    answers += r.raw + "\n";
    return r;
  };
  keep(ask(*a, token));
  keep(admin(*a, "GET", "/v1/replicas"));
  keep(admin(*a, "GET", "/v1/keys"));
  ASSERT_TRUE(pg_.stop());
  ASSERT_TRUE(wait_log(*a, "key store unreachable", 5000ms));
  EXPECT_TRUE(IsFrontdoorError(keep(admin(*a, "POST", "/v1/keys", R"({"name":"x"})")), 503,
                               "key_store_unavailable"));
  keep(admin(*a, "PATCH", "/v1/keys/key_live", R"({"enabled":false})"));
  keep(a->admin_request("GET", "/metrics", {{"Host", "admin"}}));
  keep(admin(*a, "GET", "/v1/replicas"));
  EXPECT_TRUE(
      poll_until(*a, token, 503, "key_store_unavailable", Clock::now(), 5000ms, 20ms).after);
  keep(ask(*a, token));
  // The CLI against a port where nothing listens, and against the stopped server.
  std::string bad_port = pg_.uri_with_password();
  const std::string port = ":" + std::to_string(pg_.port());
  bad_port.replace(bad_port.find(port), port.size(), ":1");
  auto l1 = cli({"keys", "list", "--store", bad_port});
  EXPECT_FALSE(l1.ok());
  EXPECT_NE(l1.err.find("127.0.0.1"), std::string::npos) << l1.err;
  EXPECT_FALSE(cli({"keys", "list", "--store", pg_.uri_with_password()}).ok());
  EXPECT_FALSE(cli({"keys", "create", "--store", pg_.uri_with_password(), "--name", "n"}).ok());
  EXPECT_FALSE(cli({"keys", "migrate", "--store", pg_.uri_with_password()}).ok());
  ASSERT_TRUE(pg_.restart()) << pg_.last_error();
  ASSERT_TRUE(wait_log(*a, "key store reachable again", kRecovery)) << a->stderr_text();
  auto wrong = pg_.uri_with_password();
  wrong.replace(wrong.find(pw), pw.size(), "pw-wrong");
  EXPECT_FALSE(cli({"keys", "list", "--store", wrong}).ok());
  EXPECT_TRUE(cli({"keys", "list", "--store", pg_.uri_with_password()}).ok());
  keep(admin(*a, "GET", "/v1/replicas"));
  ASSERT_TRUE(a->stop_and_check());

  const std::string out = a->stdout_text(), err = a->stderr_text();
  ASSERT_NE(err.find("key store unreachable"), std::string::npos) << "the outage was not logged";
  EXPECT_EQ(err.find(pw), std::string::npos) << "the password is in the server's stderr:\n" << err;
  EXPECT_EQ(out.find(pw), std::string::npos) << "the password is in the server's stdout";
  EXPECT_EQ(answers.find(pw), std::string::npos) << "the password is in an answer:\n" << answers;
  EXPECT_EQ(cli_output_.find(pw), std::string::npos) << "the password is in the CLI's output:\n"
                                                     << cli_output_;
  // The URI without the password is shown, so the operator knows which store.
  EXPECT_NE(err.find(pg_.uri()), std::string::npos) << err;
}

// 13. GET /v1/replicas lists the replicas sharing the store (heartbeat every
// 2 s); a replica that stops leaves the list; a file store answers 404.
TEST_F(FleetTest, ReplicasAreListedAndAFileStoreHasNone) {
  ProxyHarness* a = add_replica();
  ASSERT_TRUE(a);
  ProxyHarness* b = add_replica();
  ASSERT_TRUE(b);
  auto version = cli({"--version"}).out;  // "frontdoor X.Y.Z\n"
  version = version.substr(version.find(' ') + 1);
  while (!version.empty() && version.back() == '\n') version.pop_back();

  auto list = [&](const ProxyHarness& h) {
    std::vector<json::object> out;
    auto r = admin(h, "GET", "/v1/replicas");
    auto o = parse_object(r.body);
    if (r.status == 200 && o && o->contains("replicas") && o->at("replicas").is_array())
      for (const auto& x : o->at("replicas").as_array())
        if (x.is_object()) out.push_back(x.as_object());
    return out;
  };
  const auto deadline = Clock::now() + 5000ms;
  std::vector<json::object> seen;
  while ((seen = list(*a)).size() != 2 && Clock::now() < deadline)
    std::this_thread::sleep_for(100ms);
  ASSERT_EQ(seen.size(), 2u) << show(admin(*a, "GET", "/v1/replicas"));
  std::set<std::string> addresses, ids;
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  for (const auto& r : seen) {
    ids.insert(json_str(r, "id"));
    addresses.insert(json_str(r, "address"));
    EXPECT_EQ(json_str(r, "version"), version) << json::serialize(r);
    const auto last_seen = unix_of(json_str(r, "last_seen"));
    EXPECT_GT(last_seen, 0) << "last_seen is not RFC 3339: " << json::serialize(r);
    EXPECT_LE(std::abs(now - last_seen), 20) << json::serialize(r);
    ASSERT_TRUE(r.contains("stale_seconds") && r.at("stale_seconds").is_number())
        << json::serialize(r);
    EXPECT_EQ(r.at("stale_seconds").to_number<double>(), 0.0) << json::serialize(r);
  }
  EXPECT_EQ(ids.size(), 2u);
  EXPECT_FALSE(ids.count(""));
  EXPECT_EQ(addresses, (std::set<std::string>{"127.0.0.1:" + std::to_string(a->proxy_port()),
                                              "127.0.0.1:" + std::to_string(b->proxy_port())}));
  EXPECT_EQ(metrics(*a)["frontdoor_fleet_replicas"], 2) << metric_lines(*a);
  // B's own list agrees.
  EXPECT_TRUE(wait_metrics(
      *b, [](auto& m) { return m["frontdoor_fleet_replicas"] == 2; }, 5000ms));

  // B stops: it leaves the list.
  ASSERT_TRUE(b->stop_and_check());
  const auto gone_by = Clock::now() + 5000ms;
  while ((seen = list(*a)).size() != 1 && Clock::now() < gone_by)
    std::this_thread::sleep_for(100ms);
  ASSERT_EQ(seen.size(), 1u) << show(admin(*a, "GET", "/v1/replicas"));
  EXPECT_EQ(json_str(seen[0], "address"), "127.0.0.1:" + std::to_string(a->proxy_port()));

  // A YAML store has no fleet.
  ProxyHarness yaml;
  yaml.add_endpoint({.id = "ep1", .workers = {worker_.url()}});
  const std::string mgmt = yaml.add_key({.id = "key_admin", .management = "read_write"});
  ASSERT_TRUE(yaml.start()) << yaml.error();
  auto r = yaml.admin_request("GET", "/v1/replicas", {{"Host", "admin"}, bearer(mgmt)});
  EXPECT_EQ(r.status, 404) << show(r);
  EXPECT_EQ(metrics(yaml).count("frontdoor_fleet_replicas"), 0u);
  EXPECT_TRUE(yaml.stop_and_check());
}

// 14. rate_limit_scope: fleet: with two live replicas each enforces half of
// a key's limits ({rps: 10, burst: 10} -> burst 5 here).
TEST_F(FleetTest, FleetRateLimitsAreSharedBetweenTheLiveReplicas) {
  const std::string token = insert_key("key_limited", kEp1ReadWrite, "none",
                                       R"({"rps": 10, "burst": 10, "max_concurrent": 0})");
  ProxyHarness* a = add_replica({.keys_extra = {"rate_limit_scope: fleet"}});
  ASSERT_TRUE(a);
  ProxyHarness* b = add_replica({.keys_extra = {"rate_limit_scope: fleet"}});
  ASSERT_TRUE(b);
  auto sharing_by_two = [](const json::object& o) {
    return json_str(o, "msg") == "fleet rate limits: sharing each key's limits" &&
           json_int(o, "replicas") == 2;
  };
  ASSERT_TRUE(a->wait_for_log(sharing_by_two, 1, 6000ms)) << a->stderr_text();
  ASSERT_TRUE(b->wait_for_log(sharing_by_two, 1, 6000ms)) << b->stderr_text();
  EXPECT_EQ(metrics(*a)["frontdoor_fleet_replicas"], 2);

  auto first = ask(*a, token);
  ASSERT_EQ(first.status, 200) << show(first);
  EXPECT_EQ(first.header("RateLimit-Limit"), "5") << show(first);
  auto on_b = ask(*b, token);
  EXPECT_EQ(on_b.header("RateLimit-Limit"), "5") << show(on_b);

  // 20 more at once on A: the 4 tokens left (of 5), plus what refills at
  // 5 per second meanwhile.
  int ok = 1, limited = 0;
  const auto t0 = Clock::now();
  for (int i = 0; i < 20; ++i) {
    auto r = ask(*a, token);
    if (r.status == 200) {
      ++ok;
    } else if (IsFrontdoorError(r, 429, "rate_limited")) {
      ++limited;
      EXPECT_TRUE(r.has_header("Retry-After"));
    } else {
      ADD_FAILURE() << show(r);
    }
  }
  const double elapsed_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const int refill = static_cast<int>(std::floor(elapsed_s * 5.0));
  std::cout << "[ info ] fleet share: " << ok << " of 21 passed on A in " << elapsed_s * 1000
            << " ms, " << limited << " got 429\n";
  EXPECT_GE(ok, 5);
  EXPECT_LE(ok, 5 + refill + 1)
      << "a replica enforced more than its share (burst 10 would let 10 through)";
  EXPECT_LT(elapsed_s, 0.8) << "too slow for the share to be told from the whole burst";
}

}  // namespace
}  // namespace frontdoor::test
