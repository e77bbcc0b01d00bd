#pragma once
// A real PostgreSQL 15 server for the integration tests of the PostgreSQL key
// store: a fresh cluster in a temporary directory, on 127.0.0.1 and an
// ephemeral port, with faults a test can inject (stop, restart, pause).
//
//   PgServer pg;
//   ASSERT_TRUE(pg.start(&err)) << err;
//   // the store under test: pg.uri_with_password() (TCP, SCRAM-SHA-256)
//   ASSERT_TRUE(pg.exec("INSERT INTO ..."));      // an outside writer
//   PgSession tx = pg.session();                  // one connection held open
//   ASSERT_TRUE(tx.exec("BEGIN; INSERT INTO ..."));
//
// The cluster: superuser "postgres" and role "frontdoor" (LOGIN, owner of
// database "frontdoor"), each with a random password made per server. TCP
// connections must authenticate with SCRAM-SHA-256, so a test can check that
// the store's password never leaks (into logs, replies, metrics); the private
// Unix socket trusts everyone, and the helpers here use it so that they never
// need a password. Durability is off (fsync, full_page_writes,
// synchronous_commit) for speed.
//
// PostgreSQL refuses to run as root. When the tests run as root (CI), initdb
// and postgres run as the `postgres` system user through setpriv(1), which
// execs in place, so the PID we spawn is the postmaster's; the directory is
// chowned to that user.
//
// With Options{.tls = true} the server speaks TLS: start() makes a
// self-signed CA and a server certificate for 127.0.0.1 and localhost (key
// 0600, owned by the server's user, as PostgreSQL requires) in tls/, starts
// postgres with ssl=on, and pg_hba.conf accepts TCP only over TLS (hostssl):
// a client with sslmode=disable is refused ("no pg_hba.conf entry ... no
// encryption"). The store's URI then takes libpq's parameters as they are:
//
//   PgServer pg(PgServer::Options{.tls = true});
//   ASSERT_TRUE(pg.start(&err)) << err;
//   auth::open_pg_store(pg.uri_with_password() +
//                       "?sslmode=verify-full&sslrootcert=" + pg.ca_file());
//
// Every wait is bounded. Processes are signalled by PID only. Not
// thread-safe: use a PgServer (and each PgSession) from one thread.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "support/child_process.hpp"

struct pg_conn;  // libpq's PGconn

namespace frontdoor::test {

// Rows of a result, each value as text; NULL reads as "" (test for NULL in SQL).
using PgRows = std::vector<std::vector<std::string>>;

// Who a helper connection logs in as.
enum class PgRole {
  kOwner,      // "frontdoor": owns database "frontdoor", as the store does
  kSuperuser,  // "postgres"
};

// One libpq connection kept open, so that a test can hold a transaction open
// (BEGIN ... later COMMIT or ROLLBACK) while other connections commit. Every
// step (connect, each exec or query) waits at most `timeout`; when a step
// times out or the connection breaks, the connection is closed and ok()
// turns false (the server may still be running the statement).
class PgSession {
 public:
  // Connects with a libpq conninfo string or URI; see ok() and error().
  explicit PgSession(const std::string& conninfo,
                     std::chrono::milliseconds timeout = std::chrono::seconds(30));
  ~PgSession();
  PgSession(PgSession&& other) noexcept;
  PgSession& operator=(PgSession&& other) noexcept;
  PgSession(const PgSession&) = delete;
  PgSession& operator=(const PgSession&) = delete;

  bool ok() const noexcept { return conn_ != nullptr; }
  // Why the connection failed or was closed.
  const std::string& error() const noexcept { return error_; }

  // One or more statements (simple query protocol); false on the first error.
  bool exec(const std::string& sql, std::string* error = nullptr);
  // The rows of the last statement that returned rows (empty if none did).
  std::optional<PgRows> query(const std::string& sql, std::string* error = nullptr);

  // The server process serving this connection (pg_stat_activity.pid); 0 if closed.
  int backend_pid() const;
  void close();
  // For libpq calls not covered here; nullptr when closed.
  pg_conn* native() const noexcept { return conn_; }

 private:
  bool run(const std::string& sql, PgRows* rows, std::string* error);

  pg_conn* conn_ = nullptr;
  std::string error_;
  std::chrono::milliseconds timeout_;
};

// Writes a new self-signed CA certificate (PEM, a P-256 key of its own that
// is thrown away) to `cert_file`, common name `common_name`: a CA that
// signed no server's certificate, for a client that must refuse the server.
bool write_self_signed_ca(const std::string& cert_file, const std::string& common_name,
                          std::string* error = nullptr);

class PgServer {
 public:
  struct Options {
    // TLS on TCP (see above); the Unix socket the helpers use stays plain.
    bool tls = false;
  };

  PgServer() = default;  // does nothing: start() does the work
  explicit PgServer(Options options) : options_(options) {}
  // stop() (after resume() if paused), then removes dir() unless the
  // environment variable FD_KEEP_TMP is set.
  ~PgServer();
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  // A fresh cluster in a new directory under $TMPDIR (or /tmp): initdb, the
  // postmaster on an ephemeral port (a new one on "could not bind", up to 5
  // tries), wait until it accepts connections (at most 30 s), then role and
  // database "frontdoor". Once per object.
  bool start(std::string* error = nullptr);

  // Fast shutdown (SIGINT: open transactions are rolled back), waits for the
  // exit; SIGQUIT, then SIGKILL, after 30 s. true when the server is down
  // (also when it was not running); false if it did not even die of SIGKILL.
  bool stop();
  // stop(), then the postmaster again on the same data directory and port;
  // waits until it accepts connections. false (see last_error()) when it
  // cannot, e.g. another process took the port meanwhile.
  bool restart();
  // Makes the server unreachable without refusing: SIGSTOP to the postmaster
  // and all its children, each waited for (bounded) to be stopped. TCP
  // connects still succeed (the kernel completes the handshake into the
  // listen backlog) but nothing answers; open connections hang.
  bool pause();
  // SIGCONT to every process pause() stopped (and any child of the postmaster).
  bool resume();
  bool paused() const noexcept { return paused_; }
  bool running();

  // For the store under test, over TCP: "postgresql://frontdoor@127.0.0.1:PORT/frontdoor";
  // without the password this one cannot log in.
  std::string uri() const;
  // "postgresql://frontdoor:PASSWORD@127.0.0.1:PORT/frontdoor".
  std::string uri_with_password() const;
  // The password of role "frontdoor": "pw-" + 32 hex digits, new per server.
  const std::string& password() const noexcept { return password_; }
  // The password of superuser "postgres" (the helpers here never need it).
  const std::string& superuser_password() const noexcept { return superuser_password_; }
  std::uint16_t port() const noexcept { return port_; }
  // With Options::tls: the CA certificate that signed the server's (PEM),
  // for libpq's sslrootcert; "" without TLS.
  std::string ca_file() const { return options_.tls && !dir_.empty() ? tls_dir() + "/ca.crt" : ""; }
  bool tls() const noexcept { return options_.tls; }
  // The temporary directory: data/ (the cluster), sock/ (the private Unix
  // socket), log-N/ (the postmaster's stdout and stderr of its N-th start),
  // tls/ (with Options::tls: ca.crt, server.crt, server.key).
  const std::string& dir() const noexcept { return dir_; }
  std::string data_dir() const { return dir_ + "/data"; }
  std::string socket_dir() const { return dir_ + "/sock"; }
  std::string tls_dir() const { return dir_ + "/tls"; }
  pid_t postmaster_pid() const noexcept { return postmaster_pid_; }
  // The postmaster's children now (read from /proc/*/stat).
  std::vector<pid_t> child_pids() const;
  // Everything the server wrote to stderr since start(), across restarts.
  std::string server_log() const;
  // Why the last start(), stop(), restart(), pause() or resume() failed.
  const std::string& last_error() const noexcept { return error_; }

  // An outside writer: each call opens a new connection over the Unix
  // socket as role "frontdoor" (so objects it creates belong to the store's
  // role), runs `sql` (one or more statements; auto-commit) and closes it.
  bool exec(const std::string& sql, std::string* error = nullptr);
  std::optional<PgRows> query(const std::string& sql, std::string* error = nullptr);
  // The same as superuser "postgres" (e.g. pg_terminate_backend, ALTER SYSTEM).
  bool superuser_exec(const std::string& sql, std::string* error = nullptr);

  // A connection kept open, over the Unix socket (no password needed).
  PgSession session(PgRole role = PgRole::kOwner,
                    std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;
  // The conninfo session() uses, for database `dbname`.
  std::string socket_conninfo(PgRole role = PgRole::kOwner,
                              const std::string& dbname = "frontdoor") const;

 private:
  bool fail(std::string message, std::string* error);
  std::vector<std::string> as_server_user(std::vector<std::string> argv) const;
  bool make_dir();
  bool run_initdb();
  // Options::tls: the certificates in tls/ and a pg_hba.conf of hostssl only.
  bool setup_tls();
  // Spawns the postmaster on port_ and waits until it accepts connections.
  // *bind_failed tells a "could not bind" failure apart.
  bool spawn_postmaster(bool* bind_failed);
  void save_log();

  Options options_;
  std::string dir_;
  std::string password_;
  std::string superuser_password_;
  std::uint16_t port_ = 0;
  pid_t postmaster_pid_ = -1;
  bool as_root_ = false;
  uid_t server_uid_ = 0;
  gid_t server_gid_ = 0;
  bool started_ = false;
  bool paused_ = false;
  std::vector<pid_t> stopped_;  // what pause() stopped
  int spawns_ = 0;
  std::string past_log_;  // stderr of earlier postmasters
  std::string error_;
  ChildProcess postmaster_;
};

}  // namespace frontdoor::test
