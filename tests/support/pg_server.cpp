#include "support/pg_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <thread>
#include <utility>

namespace frontdoor::test {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr const char* kDefaultBinDir = "/usr/lib/postgresql/15/bin";
constexpr const char* kSetpriv = "/usr/bin/setpriv";
constexpr const char* kReadyLine = "database system is ready to accept connections";
constexpr const char* kDirTemplate = "/frontdoor-pg-XXXXXX";
constexpr milliseconds kReadyTimeout{30000};
constexpr int kPortTries = 5;

std::string bin(const char* tool) {
  const char* dir = std::getenv("FD_PG_BINDIR");  // another PostgreSQL build, if set
  return std::string(dir && *dir ? dir : kDefaultBinDir) + "/" + tool;
}

std::string random_hex(std::size_t bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::random_device rd;
  std::string s;
  for (std::size_t i = 0; i < bytes; ++i) {
    const unsigned v = rd() & 0xffu;
    s += kDigits[v >> 4];
    s += kDigits[v & 0xfu];
  }
  return s;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string tail(const std::string& s, std::size_t n = 2000) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

// A conninfo value in single quotes (libpq: backslash escapes ' and \).
std::string quoted(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

// A port nobody listens on now: bind 127.0.0.1:0, read it, close. Someone may
// take it before postgres binds it; start() then tries another.
std::optional<std::uint16_t> ephemeral_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  std::optional<std::uint16_t> port;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

struct ProcStat {
  char state;
  pid_t ppid;
};

// Fields 3 and 4 of /proc/PID/stat; the command name (field 2) may hold
// spaces and parentheses, so parse after its last ')'.
std::optional<ProcStat> read_proc_stat(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return std::nullopt;
  const auto close_paren = line.rfind(')');
  if (close_paren == std::string::npos) return std::nullopt;
  std::istringstream in(line.substr(close_paren + 1));
  ProcStat st{};
  long ppid = 0;
  if (!(in >> st.state >> ppid)) return std::nullopt;
  st.ppid = static_cast<pid_t>(ppid);
  return st;
}

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> kids;
  std::error_code ec;
  for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() ||
        !std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isdigit(c); }))
      continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (auto st = read_proc_stat(pid); st && st->ppid == parent) kids.push_back(pid);
  }
  return kids;
}

// Waits until `pid` is stopped (or gone). SIGSTOP takes effect when the
// target next runs, after kill() returned; /proc is the only place that says
// when for a process that is not our child, so this probes it every ms.
bool wait_stopped(pid_t pid, Clock::time_point deadline) {
  for (;;) {
    auto st = read_proc_stat(pid);
    if (!st || st->state == 'T' || st->state == 't' || st->state == 'Z' || st->state == 'X')
      return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(1));
  }
}

// Waits until `fd` is ready for `events` (or has an error); false on timeout.
bool wait_socket(int fd, short events, Clock::time_point deadline) {
  if (fd < 0) return true;  // libpq reports the failure on the next call
  for (;;) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1 << 30)));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return true;
  }
}

// Every directory on the way to `base` can be entered by uid/gid.
bool searchable_by(const fs::path& base, uid_t uid, gid_t gid) {
  for (fs::path p = base; !p.empty(); p = p.parent_path()) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) return false;
    const bool ok = (st.st_mode & S_IXOTH) || (st.st_uid == uid && (st.st_mode & S_IXUSR)) ||
                    (st.st_gid == gid && (st.st_mode & S_IXGRP));
    if (!ok) return false;
    if (p == p.root_path()) break;
  }
  return true;
}

// --- certificates (OpenSSL 3), for Options::tls

using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using CertPtr = std::unique_ptr<X509, decltype(&X509_free)>;

std::string openssl_error(const std::string& what) {
  std::string out = what;
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += std::string(out == what ? ": " : "; ") + buf;
  }
  return out;
}

KeyPtr new_p256_key() { return KeyPtr(EVP_EC_gen("P-256"), &EVP_PKEY_free); }

bool add_extension(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value);
  if (!ext) return false;
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// A certificate for `key`, valid from an hour ago for two days: a CA's
// (self-signed when `issuer` is null) or a TLS server's for 127.0.0.1 and
// localhost, signed by `issuer` with `issuer_key`.
CertPtr make_cert(EVP_PKEY* key, const std::string& common_name, bool ca, X509* issuer,
                  EVP_PKEY* issuer_key, std::string* error) {
  CertPtr cert(X509_new(), &X509_free);
  auto failed = [&](const std::string& what) {
    *error = openssl_error("certificate " + common_name + ": " + what);
    return CertPtr(nullptr, &X509_free);
  };
  if (!cert) return failed("X509_new");
  unsigned char serial[8];
  if (RAND_bytes(serial, sizeof serial) != 1) return failed("RAND_bytes");
  serial[0] &= 0x7f;  // positive
  std::uint64_t serial_number = 0;
  for (unsigned char b : serial) serial_number = (serial_number << 8) | b;
  X509* x = cert.get();
  X509_NAME* name = X509_get_subject_name(x);
  if (X509_set_version(x, X509_VERSION_3) != 1 ||
      ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial_number) != 1 ||
      !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
      !X509_gmtime_adj(X509_getm_notAfter(x), 2 * 24 * 3600) || X509_set_pubkey(x, key) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                                 -1, 0) != 1 ||
      X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) != 1)
    return failed("setting its fields");
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : x, x, nullptr, nullptr, 0);
  const bool extended =
      ca ? add_extension(x, &ctx, NID_basic_constraints, "critical,CA:TRUE") &&
               add_extension(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") &&
               add_extension(x, &ctx, NID_subject_key_identifier, "hash") &&
               add_extension(x, &ctx, NID_authority_key_identifier, "keyid:always")
         : add_extension(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") &&
               add_extension(x, &ctx, NID_key_usage, "critical,digitalSignature") &&
               add_extension(x, &ctx, NID_ext_key_usage, "serverAuth") &&
               add_extension(x, &ctx, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost") &&
               add_extension(x, &ctx, NID_subject_key_identifier, "hash") &&
               add_extension(x, &ctx, NID_authority_key_identifier, "keyid:always");
  if (!extended) return failed("adding its extensions");
  if (X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) <= 0) return failed("signing");
  return cert;
}

// Creates `path` (which must not exist yet) with `mode` and writes PEM into it.
bool write_pem(const std::string& path, mode_t mode, X509* cert, EVP_PKEY* key,
               std::string* error) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    *error = "create " + path + ": " + std::strerror(errno);
    return false;
  }
  FILE* f = ::fdopen(fd, "w");
  if (!f) {
    *error = "fdopen " + path + ": " + std::strerror(errno);
    ::close(fd);
    return false;
  }
  const bool written = cert ? PEM_write_X509(f, cert) == 1
                            : PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  const bool closed = std::fclose(f) == 0;
  if (!written || !closed) {
    *error = openssl_error("writing " + path);
    return false;
  }
  return true;
}

}  // namespace

bool write_self_signed_ca(const std::string& cert_file, const std::string& common_name,
                          std::string* error) {
  std::string e;
  KeyPtr key = new_p256_key();
  if (!key) e = openssl_error("P-256 key");
  CertPtr cert = key ? make_cert(key.get(), common_name, true, nullptr, nullptr, &e)
                     : CertPtr(nullptr, &X509_free);
  if (cert && write_pem(cert_file, 0644, cert.get(), nullptr, &e)) return true;
  if (error) *error = e;
  return false;
}

// ---------------------------------------------------------------- PgSession

PgSession::PgSession(const std::string& conninfo, milliseconds timeout) : timeout_(timeout) {
  const auto deadline = Clock::now() + timeout_;
  // PQconnectStart + PQconnectPoll rather than PQconnectdb: our deadline
  // bounds the connect whatever the conninfo says about connect_timeout.
  PGconn* c = PQconnectStart(conninfo.c_str());
  if (!c) {
    error_ = "PQconnectStart: out of memory";
    return;
  }
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  if (PQstatus(c) == CONNECTION_BAD) st = PGRES_POLLING_FAILED;
  while (st != PGRES_POLLING_OK) {
    if (st == PGRES_POLLING_FAILED) {
      error_ = trimmed(PQerrorMessage(c));
      PQfinish(c);
      return;
    }
    if (!wait_socket(PQsocket(c), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline)) {
      error_ = "timed out connecting after " + std::to_string(timeout_.count()) + " ms";
      PQfinish(c);
      return;
    }
    st = PQconnectPoll(c);
  }
  conn_ = c;
}

PgSession::~PgSession() { close(); }

PgSession::PgSession(PgSession&& other) noexcept
    : conn_(std::exchange(other.conn_, nullptr)),
      error_(std::move(other.error_)),
      timeout_(other.timeout_) {}

PgSession& PgSession::operator=(PgSession&& other) noexcept {
  if (this != &other) {
    close();
    conn_ = std::exchange(other.conn_, nullptr);
    error_ = std::move(other.error_);
    timeout_ = other.timeout_;
  }
  return *this;
}

void PgSession::close() {
  if (conn_) PQfinish(conn_);
  conn_ = nullptr;
}

int PgSession::backend_pid() const { return conn_ ? PQbackendPID(conn_) : 0; }

bool PgSession::exec(const std::string& sql, std::string* error) {
  return run(sql, nullptr, error);
}

std::optional<PgRows> PgSession::query(const std::string& sql, std::string* error) {
  PgRows rows;
  if (!run(sql, &rows, error)) return std::nullopt;
  return rows;
}

bool PgSession::run(const std::string& sql, PgRows* rows, std::string* error) {
  auto failed = [&](std::string message, bool broken) {
    error_ = std::move(message);
    if (broken) close();
    if (error) *error = error_;
    return false;
  };
  if (!conn_) {
    if (error) *error = "not connected: " + error_;
    return false;
  }
  const auto deadline = Clock::now() + timeout_;
  // Asynchronous API so that a hung server (pause()) cannot hang the test.
  if (!PQsendQuery(conn_, sql.c_str())) return failed(trimmed(PQerrorMessage(conn_)), true);
  std::string first_error;
  PgRows last;
  for (;;) {
    while (PQisBusy(conn_)) {
      if (!wait_socket(PQsocket(conn_), POLLIN, deadline))
        return failed("timed out after " + std::to_string(timeout_.count()) + " ms running: " + sql,
                      true);
      if (!PQconsumeInput(conn_)) return failed(trimmed(PQerrorMessage(conn_)), true);
    }
    PGresult* r = PQgetResult(conn_);
    if (!r) break;
    switch (PQresultStatus(r)) {
      case PGRES_TUPLES_OK: {
        last.assign(static_cast<std::size_t>(PQntuples(r)), {});
        for (int i = 0; i < PQntuples(r); ++i)
          for (int j = 0; j < PQnfields(r); ++j)
            last[static_cast<std::size_t>(i)].emplace_back(
                PQgetvalue(r, i, j), static_cast<std::size_t>(PQgetlength(r, i, j)));
        break;
      }
      case PGRES_COMMAND_OK:
      case PGRES_EMPTY_QUERY:
        break;
      case PGRES_COPY_IN:
      case PGRES_COPY_OUT:
      case PGRES_COPY_BOTH:
        PQclear(r);
        return failed("COPY is not supported by PgSession", true);
      default:
        if (first_error.empty()) first_error = trimmed(PQresultErrorMessage(r));
        break;
    }
    PQclear(r);
  }
  if (PQstatus(conn_) == CONNECTION_BAD) {
    return failed(first_error.empty() ? trimmed(PQerrorMessage(conn_)) : first_error, true);
  }
  if (!first_error.empty()) return failed(first_error, false);
  if (rows) *rows = std::move(last);
  return true;
}

// ----------------------------------------------------------------- PgServer

PgServer::~PgServer() {
  stop();
  if (dir_.empty()) return;
  if (std::getenv("FD_KEEP_TMP")) {
    std::fprintf(stderr, "PgServer: kept %s\n", dir_.c_str());
    return;
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

bool PgServer::fail(std::string message, std::string* error) {
  error_ = std::move(message);
  if (error) *error = error_;
  return false;
}

std::vector<std::string> PgServer::as_server_user(std::vector<std::string> argv) const {
  if (!as_root_) return argv;
  // setpriv execs the program in place: the PID we spawn is the postmaster's
  // (runuser and su fork and wait instead).
  std::vector<std::string> wrapped = {kSetpriv, "--reuid=" + std::to_string(server_uid_),
                                      "--regid=" + std::to_string(server_gid_), "--clear-groups",
                                      "--"};
  wrapped.insert(wrapped.end(), argv.begin(), argv.end());
  return wrapped;
}

bool PgServer::make_dir() {
  as_root_ = ::geteuid() == 0;
  if (as_root_) {
    const passwd* pw = ::getpwnam("postgres");
    if (!pw)
      return fail("running as root, and there is no `postgres` user to run PostgreSQL as", nullptr);
    server_uid_ = pw->pw_uid;
    server_gid_ = pw->pw_gid;
    if (::access(kSetpriv, X_OK) != 0)
      return fail(std::string("running as root needs ") + kSetpriv + " (util-linux)", nullptr);
  }
  std::error_code ec;
  fs::path base = fs::temp_directory_path(ec);  // $TMPDIR, else /tmp
  if (ec) base = "/tmp";
  base = fs::absolute(base, ec);
  // The socket path must fit in sockaddr_un, and as root the postgres user
  // must be able to reach the directory; /tmp does both.
  const std::size_t socket_path_len =
      base.string().size() + std::strlen(kDirTemplate) + std::strlen("/sock/.s.PGSQL.65535");
  if (socket_path_len >= sizeof(sockaddr_un{}.sun_path) ||
      (as_root_ && !searchable_by(base, server_uid_, server_gid_)))
    base = "/tmp";
  std::string tmpl = base.string() + kDirTemplate;
  if (!::mkdtemp(tmpl.data()))
    return fail("mkdtemp " + tmpl + ": " + std::strerror(errno), nullptr);
  dir_ = tmpl;
  if (::mkdir(socket_dir().c_str(), 0700) != 0)
    return fail("mkdir " + socket_dir() + ": " + std::strerror(errno), nullptr);
  if (as_root_) {
    for (const std::string& d : {dir_, socket_dir()})
      if (::chown(d.c_str(), server_uid_, server_gid_) != 0)
        return fail("chown " + d + ": " + std::strerror(errno), nullptr);
  }
  return true;
}

bool PgServer::run_initdb() {
  const std::string pwfile = dir_ + "/superuser.pw";
  {
    std::ofstream f(pwfile);
    f << superuser_password_ << "\n";
    if (!f) return fail("cannot write " + pwfile, nullptr);
  }
  ::chmod(pwfile.c_str(), 0600);
  if (as_root_ && ::chown(pwfile.c_str(), server_uid_, server_gid_) != 0)
    return fail("chown " + pwfile + ": " + std::strerror(errno), nullptr);

  ChildProcess initdb;
  // Trust on the private Unix socket (the helpers' way in); SCRAM on TCP
  // (the store's way in). --no-sync: the cluster is thrown away.
  const bool spawned = initdb.spawn(
      as_server_user({bin("initdb"), "-D", data_dir(), "-U", "postgres", "--pwfile=" + pwfile,
                      "--auth-local=trust", "--auth-host=scram-sha-256", "--no-locale",
                      "--encoding=UTF8", "--no-sync", "--no-instructions"}));
  if (!spawned) return fail("initdb: " + initdb.error(), nullptr);
  const auto rc = initdb.wait_exit(milliseconds(120000));
  initdb.wait_streams_closed(milliseconds(5000));
  ::unlink(pwfile.c_str());
  if (!rc || *rc != 0) {
    return fail("initdb " + (rc ? "exited " + std::to_string(*rc) : std::string("timed out")) +
                    ":\n" + tail(initdb.stdout_text() + initdb.stderr_text()),
                nullptr);
  }
  return true;
}

bool PgServer::setup_tls() {
  // tls/, like everything here, belongs to the server's user; only the key
  // is private (the CA certificate is for clients to read).
  const std::string dir = tls_dir();
  if (::mkdir(dir.c_str(), 0755) != 0)
    return fail("mkdir " + dir + ": " + std::strerror(errno), nullptr);
  std::string e;
  KeyPtr ca_key = new_p256_key();
  KeyPtr server_key = new_p256_key();
  if (!ca_key || !server_key) return fail(openssl_error("P-256 key"), nullptr);
  CertPtr ca = make_cert(ca_key.get(), "frontdoor test CA " + random_hex(4), true, nullptr,
                         nullptr, &e);
  if (!ca) return fail(e, nullptr);
  CertPtr server = make_cert(server_key.get(), "localhost", false, ca.get(), ca_key.get(), &e);
  if (!server) return fail(e, nullptr);
  const std::string key_file = dir + "/server.key";
  const std::string cert_file = dir + "/server.crt";
  // PostgreSQL refuses a key file that its owner's group or others may read
  // ("has group or world access"), and one it does not own unless root does.
  if (!write_pem(ca_file(), 0644, ca.get(), nullptr, &e) ||
      !write_pem(cert_file, 0644, server.get(), nullptr, &e) ||
      !write_pem(key_file, 0600, nullptr, server_key.get(), &e))
    return fail(e, nullptr);
  if (as_root_) {
    for (const std::string& f : {dir, ca_file(), cert_file, key_file})
      if (::chown(f.c_str(), server_uid_, server_gid_) != 0)
        return fail("chown " + f + ": " + std::strerror(errno), nullptr);
  }

  // TCP only over TLS: a plain connection matches no line and is refused
  // before authentication.
  const std::string hba = data_dir() + "/pg_hba.conf";
  std::ofstream f(hba, std::ios::trunc);
  f << "# PgServer with Options::tls: the helpers' Unix socket trusts everyone;\n"
       "# TCP must be TLS, then SCRAM-SHA-256.\n"
       "local all all trust\n"
       "hostssl all all 127.0.0.1/32 scram-sha-256\n"
       "hostssl all all ::1/128 scram-sha-256\n";
  f.close();
  if (!f) return fail("cannot write " + hba, nullptr);
  return true;
}

bool PgServer::spawn_postmaster(bool* bind_failed) {
  *bind_failed = false;
  const std::string log_dir = dir_ + "/log-" + std::to_string(++spawns_);
  ::mkdir(log_dir.c_str(), 0700);
  const std::string port = std::to_string(port_);
  // postgres itself, not pg_ctl: the PID we spawn is the postmaster's.
  std::vector<std::string> argv = {bin("postgres"),
                                   "-D",
                                   data_dir(),
                                   "-k",
                                   socket_dir(),
                                   "-h",
                                   "127.0.0.1",
                                   "-p",
                                   port,
                                   "-c",
                                   "listen_addresses=127.0.0.1",
                                   "-c",
                                   "fsync=off",
                                   "-c",
                                   "synchronous_commit=off",
                                   "-c",
                                   "full_page_writes=off",
                                   "-c",
                                   "max_connections=100",
                                   "-c",
                                   "shared_buffers=32MB",
                                   "-c",
                                   "lc_messages=C"};
  if (options_.tls) {
    for (std::string setting : {std::string("ssl=on"), "ssl_cert_file=" + tls_dir() + "/server.crt",
                                "ssl_key_file=" + tls_dir() + "/server.key"}) {
      argv.push_back("-c");
      argv.push_back(std::move(setting));
    }
  }
  if (!postmaster_.spawn(as_server_user(std::move(argv)), log_dir))
    return fail("postgres: " + postmaster_.error(), nullptr);
  postmaster_pid_ = postmaster_.pid();

  // Readiness is the postmaster's own log line (event-driven); a FATAL or
  // PANIC before it, or its exit, means it will not come. Not a FATAL that
  // a client got for connecting too early (a replica that keeps retrying
  // while the server restarts).
  postmaster_.wait_output(
      [](const std::string&, const std::string& err) {
        if (err.find(kReadyLine) != std::string::npos || err.find("PANIC:") != std::string::npos) return true;
        for (std::size_t at = err.find("FATAL:"); at != std::string::npos; at = err.find("FATAL:", at + 1)) {
          const std::string line = err.substr(at, err.find('\n', at) - at);
          if (line.find("is starting up") == std::string::npos &&
              line.find("not yet accepting connections") == std::string::npos)
            return true;
        }
        return false;
      },
      kReadyTimeout);
  const std::string err = postmaster_.stderr_text();
  if (err.find(kReadyLine) == std::string::npos) {
    *bind_failed = err.find("could not bind") != std::string::npos;
    stop();
    return fail("postgres on port " + port + " did not become ready within " +
                    std::to_string(kReadyTimeout.count() / 1000) + " s:\n" + tail(err),
                nullptr);
  }

  // Checks: the PID we hold is the postmaster (setpriv exec'd in place)...
  std::ifstream pidfile(data_dir() + "/postmaster.pid");
  long recorded = 0;
  pidfile >> recorded;
  if (recorded != postmaster_pid_) {
    stop();
    return fail("postmaster.pid says " + std::to_string(recorded) + ", we spawned " +
                    std::to_string(postmaster_pid_),
                nullptr);
  }
  // ... and it answers (connect_timeout bounds the ping).
  const std::string ping = socket_conninfo(PgRole::kSuperuser, "postgres") + " connect_timeout=10";
  if (PQping(ping.c_str()) != PQPING_OK) {
    stop();
    return fail("postgres logged that it is ready, but PQping failed", nullptr);
  }
  return true;
}

bool PgServer::start(std::string* error) {
  if (started_) return fail("PgServer::start() was already called", error);
  started_ = true;
  password_ = "pw-" + random_hex(16);
  superuser_password_ = "su-" + random_hex(16);
  if (!make_dir() || !run_initdb() || (options_.tls && !setup_tls())) return fail(error_, error);

  for (int attempt = 1;; ++attempt) {
    const auto port = ephemeral_port();
    if (!port) return fail(std::string("no ephemeral port: ") + std::strerror(errno), error);
    port_ = *port;
    bool bind_failed = false;
    if (spawn_postmaster(&bind_failed)) break;
    if (!bind_failed || attempt == kPortTries) return fail(error_, error);
  }

  // CREATE DATABASE refuses to run inside a multi-statement string: one each.
  PgSession su(socket_conninfo(PgRole::kSuperuser, "postgres"));
  std::string e;
  if (!su.exec("CREATE ROLE frontdoor LOGIN PASSWORD '" + password_ + "'", &e) ||
      !su.exec("CREATE DATABASE frontdoor OWNER frontdoor", &e))
    return fail("creating role and database frontdoor: " + e, error);
  return true;
}

void PgServer::save_log() { past_log_ += postmaster_.stderr_text(); }

bool PgServer::stop() {
  if (postmaster_.pid() <= 0) return true;
  if (paused_) resume();
  const std::vector<pid_t> kids = child_pids();
  if (postmaster_.running()) {
    // SIGTERM would be a "smart" shutdown, which waits for every client to
    // disconnect (an open PgSession); SIGINT is the fast one.
    postmaster_.send_signal(SIGINT);
    auto status = postmaster_.wait_exit(milliseconds(30000));
    if (!status) {
      postmaster_.send_signal(SIGQUIT);  // immediate shutdown
      status = postmaster_.wait_exit(milliseconds(10000));
    }
    if (!status) {
      postmaster_.send_signal(SIGKILL);
      status = postmaster_.wait_exit(milliseconds(5000));
      // Its children would linger (and hold the log pipe) until they notice.
      for (pid_t kid : kids)
        if (auto st = read_proc_stat(kid); st && st->ppid != postmaster_pid_) ::kill(kid, SIGKILL);
    }
    if (!status)
      return fail("the postmaster (pid " + std::to_string(postmaster_.pid()) +
                      ") did not exit, even after SIGKILL",
                  nullptr);
  }
  postmaster_.wait_streams_closed(milliseconds(10000));
  save_log();
  postmaster_.reset(milliseconds(0));
  postmaster_pid_ = -1;
  return true;
}

bool PgServer::restart() {
  if (dir_.empty() || port_ == 0) return fail("restart() before a successful start()", nullptr);
  if (!stop()) return false;
  bool bind_failed = false;
  return spawn_postmaster(&bind_failed);
}

bool PgServer::running() { return postmaster_.pid() > 0 && postmaster_.running(); }

std::vector<pid_t> PgServer::child_pids() const {
  return postmaster_pid_ > 0 ? children_of(postmaster_pid_) : std::vector<pid_t>{};
}

bool PgServer::pause() {
  if (paused_) return true;
  if (!running()) return fail("pause(): the server is not running", nullptr);
  const auto deadline = Clock::now() + milliseconds(5000);
  // The postmaster first, and wait until it is stopped: then it forks no
  // new child while we stop the ones it has.
  if (::kill(postmaster_pid_, SIGSTOP) != 0)
    return fail(std::string("SIGSTOP postmaster: ") + std::strerror(errno), nullptr);
  paused_ = true;  // from here on, resume() undoes whatever was done
  stopped_ = {postmaster_pid_};
  if (!wait_stopped(postmaster_pid_, deadline))
    return fail("the postmaster did not stop within 5 s", nullptr);
  for (pid_t kid : children_of(postmaster_pid_))
    if (::kill(kid, SIGSTOP) == 0) stopped_.push_back(kid);
  for (pid_t pid : stopped_)
    if (!wait_stopped(pid, deadline))
      return fail("process " + std::to_string(pid) + " did not stop within 5 s", nullptr);
  return true;
}

bool PgServer::resume() {
  if (!paused_) return true;
  bool ok = true;
  std::vector<pid_t> all = stopped_;
  for (pid_t kid : child_pids())
    if (std::find(all.begin(), all.end(), kid) == all.end()) all.push_back(kid);
  // Children first, the postmaster last (it finds them all running).
  for (auto it = all.rbegin(); it != all.rend(); ++it)
    if (::kill(*it, SIGCONT) != 0 && errno != ESRCH) ok = false;
  paused_ = false;
  stopped_.clear();
  if (!ok) return fail(std::string("SIGCONT: ") + std::strerror(errno), nullptr);
  return true;
}

std::string PgServer::uri() const {
  return "postgresql://frontdoor@127.0.0.1:" + std::to_string(port_) + "/frontdoor";
}

std::string PgServer::uri_with_password() const {
  // The password is hex: nothing to percent-encode.
  return "postgresql://frontdoor:" + password_ + "@127.0.0.1:" + std::to_string(port_) +
         "/frontdoor";
}

std::string PgServer::server_log() const { return past_log_ + postmaster_.stderr_text(); }

std::string PgServer::socket_conninfo(PgRole role, const std::string& dbname) const {
  return "host=" + quoted(socket_dir()) + " port=" + std::to_string(port_) +
         " user=" + (role == PgRole::kSuperuser ? "postgres" : "frontdoor") +
         " dbname=" + quoted(dbname);
}

PgSession PgServer::session(PgRole role, milliseconds timeout) const {
  return PgSession(socket_conninfo(role), timeout);
}

bool PgServer::exec(const std::string& sql, std::string* error) {
  PgSession s = session();
  return s.exec(sql, error);
}

std::optional<PgRows> PgServer::query(const std::string& sql, std::string* error) {
  PgSession s = session();
  return s.query(sql, error);
}

bool PgServer::superuser_exec(const std::string& sql, std::string* error) {
  PgSession s = session(PgRole::kSuperuser);
  return s.exec(sql, error);
}

}  // namespace frontdoor::test
