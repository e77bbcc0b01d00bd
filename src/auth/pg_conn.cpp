#include "pg_conn.hpp"

#include <poll.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace frontdoor::auth::pg {
namespace {

std::string percent_encoded(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

void replace_all(std::string& text, const std::string& what, std::string_view with) {
  if (what.empty()) return;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + with.size()))
    text.replace(at, what.size(), with);
}

// libpq's messages end with a newline and may span lines: one line for a log.
std::string one_line(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (char& c : s)
    if (c == '\n' || c == '\t') c = ' ';
  return s;
}

}  // namespace

std::uint64_t Result::affected() const {
  const char* n = r_ ? PQcmdTuples(r_.get()) : "";
  return *n ? std::strtoull(n, nullptr, 10) : 0;
}

Connection::Connection(std::string uri, std::string shown) : uri_(std::move(uri)), shown_(std::move(shown)) {
  char* err = nullptr;
  if (PQconninfoOption* opts = PQconninfoParse(uri_.c_str(), &err)) {
    for (PQconninfoOption* o = opts; o->keyword; ++o)
      if ((std::strcmp(o->keyword, "password") == 0 || std::strcmp(o->keyword, "sslpassword") == 0) && o->val &&
          *o->val)
        secrets_.emplace_back(o->val);
    PQconninfoFree(opts);
  } else {
    parses_ = false;
  }
  if (err) PQfreemem(err);
  if (const char* env = std::getenv("PGPASSWORD"); env && *env) secrets_.emplace_back(env);
  for (std::size_t i = 0, n = secrets_.size(); i < n; ++i) {
    std::string enc = percent_encoded(secrets_[i]);
    if (enc != secrets_[i]) secrets_.push_back(std::move(enc));
  }
}

Connection::~Connection() { close(); }

std::string Connection::scrub(std::string text) const {
  for (const auto& s : secrets_) replace_all(text, s, "***");
  return text;
}

void Connection::close() noexcept {
  if (conn_) PQfinish(conn_);
  conn_ = nullptr;
}

int Connection::socket() const noexcept { return conn_ ? PQsocket(conn_) : -1; }

void Connection::lost(std::string_view what) {
  std::string msg = conn_ ? one_line(PQerrorMessage(conn_)) : std::string();
  close();
  throw StoreUnavailable(scrub(shown_ + ": " + std::string(what) + (msg.empty() ? "" : ": " + msg)));
}

bool Connection::wait(bool for_write, Deadline deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{PQsocket(conn_), static_cast<short>(for_write ? POLLOUT : POLLIN), 0};
    const int rc = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return false;
  }
}

void Connection::connect(Deadline deadline) {
  close();
  // Defaults first: whatever the URI says overrides them (expand_dbname).
  // Keepalives and tcp_user_timeout notice a peer that vanished without a
  // word while nothing is being sent (a LISTEN connection).
  const char* keys[] = {"application_name", "keepalives", "keepalives_idle", "keepalives_interval",
                        "keepalives_count", "tcp_user_timeout", "dbname", nullptr};
  const char* vals[] = {"frontdoor", "1", "5", "2", "3", "10000", uri_.c_str(), nullptr};
  // libpq's own message for a URI it cannot read quotes the URI, password
  // and all.
  if (!parses_) throw StoreError(shown_ + ": the URI does not parse (see libpq's connection URI format)");
  conn_ = PQconnectStartParams(keys, vals, 1);
  if (!conn_) throw StoreUnavailable(shown_ + ": cannot connect: out of memory");
  if (PQstatus(conn_) == CONNECTION_BAD) {
    std::string msg = one_line(PQerrorMessage(conn_));
    close();
    // A URI libpq cannot read is the operator's to fix, not a passing outage.
    throw StoreError(scrub(shown_ + ": " + msg));
  }
  for (PostgresPollingStatusType st = PGRES_POLLING_WRITING;;) {
    if (st == PGRES_POLLING_OK) break;
    if (st == PGRES_POLLING_FAILED) {
      std::string msg = one_line(PQerrorMessage(conn_));
      close();
      // Authentication and a missing database are configuration errors
      // that retrying cannot fix; the rest is an outage.
      const bool config = msg.find("authentication failed") != std::string::npos ||
                          msg.find("does not exist") != std::string::npos ||
                          msg.find("no password supplied") != std::string::npos ||
                          msg.find("no pg_hba.conf entry") != std::string::npos;
      if (config) throw StoreError(scrub(shown_ + ": " + msg));
      throw StoreUnavailable(scrub(shown_ + ": cannot connect: " + msg));
    }
    if (!wait(st == PGRES_POLLING_WRITING, deadline)) {
      close();
      throw StoreUnavailable(shown_ + ": cannot connect: no answer in time");
    }
    st = PQconnectPoll(conn_);
  }
  if (PQsetnonblocking(conn_, 1) != 0) lost("cannot connect");
  // NOTICEs ("relation already exists, skipping") are not for our stderr.
  PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
}

Result Connection::exec(std::string_view sql, const Params& params, Deadline deadline) {
  if (!conn_) throw StoreUnavailable(shown_ + ": not connected");
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  const std::string q(sql);
  // Without parameters the simple protocol runs several statements at once
  // (a schema script); with them, exactly one statement.
  const int sent = params.empty() ? PQsendQuery(conn_, q.c_str())
                                  : PQsendQueryParams(conn_, q.c_str(), static_cast<int>(values.size()), nullptr,
                                                      values.data(), nullptr, nullptr, 0);
  if (!sent) lost("sending a query");
  for (;;) {
    const int f = PQflush(conn_);
    if (f == 0) break;
    if (f < 0) lost("sending a query");
    if (!wait(true, deadline)) lost("no answer in time");
    if (!PQconsumeInput(conn_)) lost("reading an answer");
  }
  Result last;
  std::optional<QueryError> failed;
  for (;;) {
    while (PQisBusy(conn_)) {
      if (!wait(false, deadline)) lost("no answer in time");
      if (!PQconsumeInput(conn_)) lost("reading an answer");
    }
    PGresult* r = PQgetResult(conn_);
    if (!r) break;
    const auto status = PQresultStatus(r);
    if (status == PGRES_FATAL_ERROR && !failed) {
      const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      failed.emplace(scrub(shown_ + ": " + one_line(PQresultErrorMessage(r))), state ? state : "");
    } else if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) {
      PQclear(r);
      lost("unexpected COPY");
    }
    last = Result(r);
  }
  if (PQstatus(conn_) == CONNECTION_BAD) lost("connection lost");
  if (failed) throw *failed;
  return last;
}

std::vector<std::string> Connection::notifications() {
  std::vector<std::string> out;
  if (!conn_) return out;
  if (!PQconsumeInput(conn_)) lost("reading notifications");
  while (PGnotify* n = PQnotifies(conn_)) {
    out.emplace_back(n->relname);
    PQfreemem(n);
  }
  return out;
}

}  // namespace frontdoor::auth::pg
