// Self-tests of PgServer (tests/support/pg_server.hpp), the real PostgreSQL
// server the PostgreSQL key store's tests run against: SQL round trips,
// transaction visibility through a held PgSession, and the faults (pause,
// stop, restart) those tests inject. No proxy involved.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "support/pg_server.hpp"

namespace frontdoor::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// One blocking libpq connect, as the store would make it; its duration.
struct ConnectAttempt {
  bool ok;
  std::string error;
  std::chrono::milliseconds took;
};

ConnectAttempt connect_once(const std::string& conninfo) {
  const auto t0 = Clock::now();
  PGconn* c = PQconnectdb(conninfo.c_str());
  ConnectAttempt a{PQstatus(c) == CONNECTION_OK, PQerrorMessage(c),
                   std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0)};
  PQfinish(c);
  return a;
}

std::string count_of(PgServer& pg, const std::string& table) {
  std::string err;
  auto rows = pg.query("SELECT count(*) FROM " + table, &err);
  if (!rows) return "error: " + err;
  return rows->empty() ? "no rows" : (*rows)[0][0];
}

// The real user ID of a process, from /proc/PID/status.
long real_uid_of(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("Uid:", 0) == 0) return std::stol(line.substr(4));
  return -1;
}

TEST(PgSupport, StartExecQueryRoundTrip) {
  PgServer pg;
  std::string err;
  const auto t0 = Clock::now();
  ASSERT_TRUE(pg.start(&err)) << err;
  std::cout << "[ info     ] PgServer::start() took "
            << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()
            << " ms\n";

  EXPECT_EQ(pg.uri(),
            "postgresql://frontdoor@127.0.0.1:" + std::to_string(pg.port()) + "/frontdoor");
  EXPECT_EQ(pg.password().rfind("pw-", 0), 0u);
  EXPECT_EQ(pg.password().size(), 35u);
  EXPECT_EQ(pg.uri().find(pg.password()), std::string::npos);
  EXPECT_NE(pg.uri_with_password().find(":" + pg.password() + "@"), std::string::npos);
  EXPECT_TRUE(std::filesystem::is_directory(pg.data_dir()));
  ASSERT_GT(pg.postmaster_pid(), 0);
  EXPECT_EQ(::kill(pg.postmaster_pid(), 0), 0);
  if (::geteuid() == 0) {  // PostgreSQL refuses root: it runs as `postgres`
    const passwd* pw = ::getpwnam("postgres");
    ASSERT_NE(pw, nullptr);
    EXPECT_EQ(real_uid_of(pg.postmaster_pid()), static_cast<long>(pw->pw_uid));
  }

  ASSERT_TRUE(
      pg.exec("CREATE TABLE t (id int PRIMARY KEY, name text, note text);"
              "INSERT INTO t VALUES (1, 'one', NULL), (2, 'two', 'x y')",
              &err))
      << err;
  auto rows = pg.query("SELECT id, name, note FROM t ORDER BY id", &err);
  ASSERT_TRUE(rows) << err;
  EXPECT_EQ(*rows, (PgRows{{"1", "one", ""}, {"2", "two", "x y"}}));
  // The table belongs to the store's role.
  rows = pg.query("SELECT tableowner FROM pg_tables WHERE tablename = 't'", &err);
  ASSERT_TRUE(rows) << err;
  EXPECT_EQ(*rows, (PgRows{{"frontdoor"}}));
  // Errors are reported, not thrown.
  EXPECT_FALSE(pg.exec("INSERT INTO t VALUES (1, 'dup', NULL)", &err));
  EXPECT_NE(err.find("duplicate key"), std::string::npos) << err;
  EXPECT_FALSE(pg.query("SELECT * FROM no_such_table", &err));
  EXPECT_NE(err.find("no_such_table"), std::string::npos) << err;
  EXPECT_TRUE(pg.superuser_exec("SELECT 1", &err)) << err;

  // Over TCP the role needs its password (SCRAM-SHA-256).
  PgSession with_pw(pg.uri_with_password(), 10s);
  ASSERT_TRUE(with_pw.ok()) << with_pw.error();
  rows = with_pw.query("SELECT current_user, count(*) FROM t GROUP BY 1", &err);
  ASSERT_TRUE(rows) << err;
  EXPECT_EQ(*rows, (PgRows{{"frontdoor", "2"}}));
  if (!std::getenv("PGPASSWORD")) {
    PgSession without_pw(pg.uri() + "?passfile=" + pg.dir() + "/no-such-pgpass", 10s);
    EXPECT_FALSE(without_pw.ok());
    EXPECT_NE(without_pw.error().find("password"), std::string::npos) << without_pw.error();
  }
  PgSession wrong_pw(
      "postgresql://frontdoor:nope@127.0.0.1:" + std::to_string(pg.port()) + "/frontdoor", 10s);
  EXPECT_FALSE(wrong_pw.ok());
  EXPECT_NE(wrong_pw.error().find("password authentication failed"), std::string::npos)
      << wrong_pw.error();
  EXPECT_EQ(pg.server_log().find(pg.password()), std::string::npos);
}

TEST(PgSupport, OpenTransactionIsInvisibleUntilCommit) {
  PgServer pg;
  std::string err;
  ASSERT_TRUE(pg.start(&err)) << err;
  ASSERT_TRUE(pg.exec("CREATE TABLE t (id int PRIMARY KEY)", &err)) << err;

  PgSession early = pg.session();
  ASSERT_TRUE(early.ok()) << early.error();
  PgSession rolled_back = pg.session();
  ASSERT_TRUE(rolled_back.ok()) << rolled_back.error();
  EXPECT_NE(early.backend_pid(), rolled_back.backend_pid());

  ASSERT_TRUE(early.exec("BEGIN; INSERT INTO t VALUES (1)", &err)) << err;
  ASSERT_TRUE(rolled_back.exec("BEGIN; INSERT INTO t VALUES (3)", &err)) << err;
  // Inside its transaction the session sees its own row; nobody else does.
  auto rows = early.query("SELECT count(*) FROM t", &err);
  ASSERT_TRUE(rows) << err;
  EXPECT_EQ(*rows, (PgRows{{"1"}}));
  EXPECT_EQ(count_of(pg, "t"), "0");

  // A later transaction commits first: visible at once, the open one still not.
  ASSERT_TRUE(pg.exec("INSERT INTO t VALUES (2)", &err)) << err;
  rows = pg.query("SELECT id FROM t ORDER BY id", &err);
  ASSERT_TRUE(rows) << err;
  EXPECT_EQ(*rows, (PgRows{{"2"}}));

  ASSERT_TRUE(early.exec("COMMIT", &err)) << err;
  ASSERT_TRUE(rolled_back.exec("ROLLBACK", &err)) << err;
  rows = pg.query("SELECT id FROM t ORDER BY id", &err);
  ASSERT_TRUE(rows) << err;
  EXPECT_EQ(*rows, (PgRows{{"1"}, {"2"}}));
  // The session stays usable after its transaction.
  rows = early.query("SELECT count(*) FROM t", &err);
  ASSERT_TRUE(rows) << err;
  EXPECT_EQ(*rows, (PgRows{{"2"}}));
}

TEST(PgSupport, PauseHangsConnectionsWithoutRefusingThemAndResumeRevives) {
  PgServer pg;
  std::string err;
  ASSERT_TRUE(pg.start(&err)) << err;
  const std::string conninfo = pg.uri_with_password() + "?connect_timeout=1";
  ASSERT_TRUE(connect_once(conninfo).ok);
  PgSession held = pg.session(PgRole::kOwner, 500ms);
  ASSERT_TRUE(held.ok()) << held.error();
  PgSession held_long = pg.session();
  ASSERT_TRUE(held_long.ok()) << held_long.error();
  ASSERT_FALSE(pg.child_pids().empty());

  ASSERT_TRUE(pg.pause()) << pg.last_error();
  EXPECT_TRUE(pg.paused());
  EXPECT_TRUE(pg.running());
  // libpq raises connect_timeout=1 to 2 s. A refusal would come at once.
  const ConnectAttempt a = connect_once(conninfo);
  EXPECT_FALSE(a.ok);
  EXPECT_GE(a.took, 1500ms) << a.error;
  EXPECT_LT(a.took, 5000ms) << a.error;
  EXPECT_NE(a.error.find("timeout"), std::string::npos) << a.error;
  // A connection made before the pause hangs too: its backend is stopped.
  EXPECT_FALSE(held.query("SELECT 1", &err));
  EXPECT_NE(err.find("timed out"), std::string::npos) << err;
  EXPECT_FALSE(held.ok());

  ASSERT_TRUE(pg.resume()) << pg.last_error();
  EXPECT_FALSE(pg.paused());
  const ConnectAttempt b = connect_once(conninfo);
  EXPECT_TRUE(b.ok) << b.error;
  auto rows = held_long.query("SELECT 1", &err);
  ASSERT_TRUE(rows) << err;
  EXPECT_EQ(*rows, (PgRows{{"1"}}));

  // Pausing twice in a row works the same.
  ASSERT_TRUE(pg.pause()) << pg.last_error();
  EXPECT_FALSE(connect_once(conninfo).ok);
  ASSERT_TRUE(pg.resume()) << pg.last_error();
  EXPECT_TRUE(connect_once(conninfo).ok);
}

TEST(PgSupport, StopAndRestartKeepTheData) {
  PgServer pg;
  std::string err;
  ASSERT_TRUE(pg.start(&err)) << err;
  ASSERT_TRUE(pg.exec("CREATE TABLE t (id int); INSERT INTO t VALUES (7)", &err)) << err;
  const auto port = pg.port();
  const pid_t first_pid = pg.postmaster_pid();
  PgSession held = pg.session();
  ASSERT_TRUE(held.exec("BEGIN; INSERT INTO t VALUES (8)", &err)) << err;

  // Fast shutdown: the open transaction does not delay it and is lost.
  ASSERT_TRUE(pg.stop()) << pg.last_error();
  EXPECT_FALSE(pg.running());
  const ConnectAttempt down = connect_once(pg.uri_with_password() + "?connect_timeout=5");
  EXPECT_FALSE(down.ok);
  EXPECT_LT(down.took, 1000ms) << down.error;  // refused, not hung

  ASSERT_TRUE(pg.restart()) << pg.last_error();
  EXPECT_TRUE(pg.running());
  EXPECT_EQ(pg.port(), port);
  EXPECT_NE(pg.postmaster_pid(), first_pid);
  EXPECT_FALSE(held.exec("COMMIT", &err));  // its server went away
  auto rows = pg.query("SELECT id FROM t ORDER BY id", &err);
  ASSERT_TRUE(rows) << err;
  EXPECT_EQ(*rows, (PgRows{{"7"}}));
  PgSession tcp(pg.uri_with_password(), 10s);
  EXPECT_TRUE(tcp.ok()) << tcp.error();

  // restart() while running stops first.
  ASSERT_TRUE(pg.restart()) << pg.last_error();
  EXPECT_EQ(count_of(pg, "t"), "1");
  EXPECT_NE(pg.server_log().find("database system is shut down"), std::string::npos);
}

TEST(PgSupport, DestructorStopsAPausedServerAndRemovesItsDirectory) {
  std::string dir;
  pid_t postmaster = -1;
  std::vector<pid_t> kids;
  {
    PgServer pg;
    std::string err;
    ASSERT_TRUE(pg.start(&err)) << err;
    dir = pg.dir();
    postmaster = pg.postmaster_pid();
    PgSession held = pg.session();
    ASSERT_TRUE(held.exec("BEGIN; SELECT 1", &err)) << err;
    kids = pg.child_pids();
    ASSERT_TRUE(pg.pause()) << pg.last_error();
    held.close();  // closing a socket does not wait for the peer
  }
  EXPECT_NE(::kill(postmaster, 0), 0);
  for (pid_t kid : kids) EXPECT_NE(::kill(kid, 0), 0) << kid;
  if (!std::getenv("FD_KEEP_TMP")) {
    EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
  }
}

}  // namespace
}  // namespace frontdoor::test
