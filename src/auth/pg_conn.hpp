#pragma once
// One libpq connection with a deadline on every wait (SPEC §3.1: a database
// that stops answering must never hold a thread for long). Queries are sent
// with libpq's asynchronous calls and awaited with poll(2); a deadline that
// passes drops the connection (it cannot be trusted any more) and throws
// StoreUnavailable. Every message that leaves this class has the password
// scrubbed from it. Not thread-safe: one owner.
#include <libpq-fe.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "frontdoor/auth/key_store.hpp"

namespace frontdoor::auth::pg {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

inline Deadline in(std::chrono::milliseconds d) { return Clock::now() + d; }

// A query's result; empty for a statement without one.
class Result {
 public:
  Result() = default;
  explicit Result(PGresult* r) : r_(r, &PQclear) {}
  int rows() const noexcept { return r_ ? PQntuples(r_.get()) : 0; }
  bool null(int row, int col) const noexcept { return PQgetisnull(r_.get(), row, col) != 0; }
  std::string_view text(int row, int col) const noexcept {
    return {PQgetvalue(r_.get(), row, col), static_cast<std::size_t>(PQgetlength(r_.get(), row, col))};
  }
  std::optional<std::string_view> opt(int row, int col) const noexcept {
    if (null(row, col)) return std::nullopt;
    return text(row, col);
  }
  // Rows affected by an INSERT, UPDATE or DELETE.
  std::uint64_t affected() const;

 private:
  std::shared_ptr<PGresult> r_;
};

// An error the server reported for one statement (the connection is fine).
struct QueryError : StoreError {
  QueryError(const std::string& what, std::string state) : StoreError(what), sqlstate(std::move(state)) {}
  std::string sqlstate;  // e.g. "23505" unique_violation
};

using Params = std::vector<std::optional<std::string>>;

class Connection {
 public:
  // `uri` may hold a password; `shown` is what messages name the store by.
  Connection(std::string uri, std::string shown);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool connected() const noexcept { return conn_ != nullptr; }
  // Throws StoreUnavailable (cannot reach, refused, timed out) or StoreError
  // (a bad URI, authentication failed).
  void connect(Deadline deadline);
  void close() noexcept;

  Result exec(std::string_view sql, const Params& params, Deadline deadline);
  Result exec(std::string_view sql, Deadline deadline) { return exec(sql, {}, deadline); }

  // LISTEN support: the socket to wait on, and the channels notified since
  // the last call (reads what the socket has, never blocks).
  int socket() const noexcept;
  std::vector<std::string> notifications();

  const std::string& shown() const noexcept { return shown_; }
  // `text` with the password (as written and percent-encoded) replaced.
  std::string scrub(std::string text) const;

 private:
  [[noreturn]] void lost(std::string_view what);
  bool wait(bool for_write, Deadline deadline);

  std::string uri_;
  std::string shown_;
  std::vector<std::string> secrets_;  // the password(s) to scrub from messages
  bool parses_ = true;                // libpq reads the URI (its error would repeat it)
  PGconn* conn_ = nullptr;
};

}  // namespace frontdoor::auth::pg
