#pragma once
// The admin key API (SPEC §5): /v1/keys, /v1/keys/{id}, /v1/keys/{id}/rotate
// and /v1/reload, as one function of plain values that the admin router calls
// after it has authenticated and authorized the request (management level).
//
// Answers never contain a token hash, and never a token other than the one
// a create or rotate just issued. Error messages do not echo values from the
// request (a token pasted into a path or body must not come back); only
// field names are named.
#include <boost/json/object.hpp>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "frontdoor/auth/key.hpp"
#include "frontdoor/auth/key_registry.hpp"
#include "frontdoor/core/reason.hpp"

namespace frontdoor::admin {

struct ApiResponse {
  unsigned status = 200;
  std::string body;   // JSON; empty for 204
  std::string allow;  // for 405: the value of the Allow header (RFC 9110 §15.5.6)
  // Set for answers that are one of frontdoor's own errors (SPEC §4 error
  // responses): the router then answers with that reason's status, body and
  // headers (X-Frontdoor-Error, X-Request-Id), as the proxy would.
  core::Reason reason = core::Reason::none;
};

// True for the paths handle_keys_api answers: /v1/keys, /v1/keys/{id},
// /v1/keys/{id}/rotate and /v1/reload.
bool is_key_api_path(std::string_view path);

// Routes one admin request to the key API.
//   path:   the request path without the query ("/v1/keys", "/v1/keys/key_1",
//           "/v1/keys/key_1/rotate", "/v1/reload");
//   query:  the raw query string without "?" (may be empty);
//   method: as sent ("GET", "POST", ...); HEAD is answered like GET (the
//           router drops the body);
//   reload: does what SIGHUP does; returns "" on success, else why the new
//           config or store did not load (the running one is kept).
// Returns nullopt when `path` is not a key-API path (the router answers 404).
// A store that cannot be reached or stays locked (auth::StoreUnavailable)
// answers 503 key_store_unavailable; any other store failure 500.
// Thread-safety: as the registry's (any thread); the registry may block on
// disk, the store's lock or the network, so the server calls this on its
// store thread only, never on a proxy or the admin thread.
std::optional<ApiResponse> handle_keys_api(std::string_view method, std::string_view path,
                                           std::string_view query, std::string_view body,
                                           auth::KeyRegistry& registry,
                                           const std::function<std::string()>& reload);

// A key as the API shows it: id, name, prefix, enabled, created_at,
// last_used_at, expires_at (RFC 3339 or null), management, endpoints (with
// "*") or legacy_access, rate_limit (or null), requests_total. Never the hash.
boost::json::object key_to_json(const auth::Key& key);

// Why a request body (or query) was refused: the offending field as a dotted
// path ("endpoints.ep1", "rate_limit.rps"; empty when the body as a whole is
// wrong, e.g. not JSON) and a message for humans.
struct BodyError {
  std::string field;
  std::string message;
};

// Either a parsed value or the first problem found.
template <class T>
struct Parsed {
  std::optional<T> value;
  BodyError error;
  explicit operator bool() const noexcept { return value.has_value(); }
};

// A PATCH: each member that is set replaces the key's field.
struct KeyPatch {
  std::optional<std::string> name;
  std::optional<bool> enabled;
  std::optional<auth::Access> management;
  // The whole map: "*" (default none) and the named endpoints.
  std::optional<std::pair<auth::Access, std::vector<std::pair<std::string, auth::Access>>>>
      endpoints;
  std::optional<std::optional<core::UnixSeconds>> expires_at;  // inner nullopt: never expires
  std::optional<std::optional<auth::RateLimit>> rate_limit;    // inner nullopt: no limit

  bool empty() const noexcept {
    return !name && !enabled && !management && !endpoints && !expires_at && !rate_limit;
  }
  // Applies the set fields. A legacy key has no endpoints map: the caller
  // refuses `endpoints` for it first (see conflicts_with).
  void apply(auth::Key& key) const;
  // Why this patch cannot apply to `key`, or nullopt.
  std::optional<BodyError> conflicts_with(const auth::Key& key) const;
};

// POST /v1/keys body: name (required), enabled, management, endpoints or
// legacy_access, expires_at, rate_limit. Unknown fields are refused.
Parsed<auth::NewKey> parse_new_key(std::string_view body);

// PATCH /v1/keys/{id} body: any subset of name, enabled, endpoints,
// management, expires_at, rate_limit. Every other field is refused.
Parsed<KeyPatch> parse_key_patch(std::string_view body);

// GET /v1/keys query: limit (1..1000, default 100; larger values are
// capped) and after (a key id). Unknown parameters are refused.
struct ListQuery {
  std::size_t limit = 100;
  std::string after;
};
inline constexpr std::size_t kDefaultListLimit = 100;
inline constexpr std::size_t kMaxListLimit = 1000;
Parsed<ListQuery> parse_list_query(std::string_view query);

}  // namespace frontdoor::admin
