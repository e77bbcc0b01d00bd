#pragma once
// Request-head checks and header rewriting (SPEC §4 steps 1 and 6). Pure
// functions over Beast headers; no sockets.
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "frontdoor/auth/bearer.hpp"
#include "frontdoor/core/reason.hpp"

namespace frontdoor::http {

using RequestHead = boost::beast::http::request_header<>;
using ResponseHead = boost::beast::http::response_header<>;

// What the strict framing rules (RFC 9112 §6.3, §11) decided about a parsed
// request head, beyond what Beast's parser already rejects.
struct HeadCheck {
  core::Reason reason = core::Reason::none;  // bad_request, uri_too_long
  // (a version other than 1.0 or 1.1 is refused by Beast's parser first:
  // see version_above_http11)
  bool chunked = false;
  std::optional<std::uint64_t> content_length;
  bool expect_continue = false;
  bool websocket = false;  // a WebSocket upgrade (SPEC §4 step 6): HTTP/1.1, GET, no body
  std::string_view host;    // the one Host value (or the absolute-form authority)
  std::string_view target;  // origin-form target (absolute-form reduced to its path)
  // The framing is filled in before any check that can still fail, so that
  // a refused request's body is known to be unread (review H1).
  bool has_body() const noexcept { return chunked || (content_length && *content_length > 0); }
};

// raw_head: the exact bytes of the head as received (request line through
// the empty line), used to find obs-fold, NUL and bare CR/LF that a parser
// might tolerate.
HeadCheck check_request_head(const RequestHead& head, std::string_view raw_head,
                             std::uint64_t max_uri_bytes) noexcept;

// For a head Beast's parser refused: true when its request line is well
// formed but names a version above HTTP/1.1 (HTTP/2.0, HTTP/1.2), which gets
// 505 rather than 400 (SPEC §4 step 1; RFC 9110 §15.6.6).
bool version_above_http11(std::string_view head_bytes) noexcept;

// SPEC §4 step 2 over a parsed head: every Authorization header's value
// goes to auth::parse_bearer (more than one is refused there).
auth::BearerResult bearer_of(const RequestHead& head) noexcept;

// True when `id` may be forwarded as X-Request-Id: 1..128 visible ASCII characters.
bool valid_request_id(std::string_view id) noexcept;

// True for headers never forwarded in either direction: hop-by-hop ones
// (RFC 9110 §7.6.1), framing (re-done by frontdoor) and X-Frontdoor-*.
// `connection_tokens` is the lower-cased, comma-joined Connection value.
bool is_dropped_header(boost::beast::http::field f, std::string_view name,
                       std::string_view connection_tokens) noexcept;

struct UpstreamRequest {
  std::string_view method;
  std::string_view rest;              // Route::rest
  std::string_view worker_authority;  // Host sent to the worker
  std::string_view client_host;       // X-Forwarded-Host
  std::string_view proto;             // "http" or "https"
  std::string_view peer_address;      // client IP, text
  bool peer_trusted = false;          // keep and append to X-Forwarded-For
  std::string_view request_id;
  std::string_view key_id;
  bool strip_authorization = true;
  bool chunked = false;                         // body sent chunked
  std::optional<std::uint64_t> content_length;  // body sent with this length
  bool websocket = false;                       // forward the upgrade (Connection, Upgrade)
};

// Appends the rewritten request head (request line through the empty line)
// to `out`.
void build_upstream_request(const RequestHead& head, const UpstreamRequest& u, std::string& out);

struct DownstreamResponse {
  std::string_view request_id;
  bool head_request = false;   // response to HEAD: framing headers kept as sent
  bool chunked = false;        // body re-framed as chunked
  std::optional<std::uint64_t> content_length;
  bool keep_alive = true;
  bool http10_client = false;  // HTTP/1.0 client: no chunked; keep-alive explicit
  std::string_view extra_headers;  // complete lines added by frontdoor (RateLimit-*)
  bool switching = false;  // the 101 of a WebSocket tunnel: Connection and Upgrade kept, no framing
};

// Appends the rewritten response head for the client to `out`.
void build_downstream_response(const ResponseHead& head, const DownstreamResponse& d,
                               std::string& out);

// A complete local reply (SPEC §4, error responses): status line, JSON body,
// X-Frontdoor-Error, WWW-Authenticate when the reason has one, X-Request-Id,
// and "Connection: close" unless keep_alive. extra_headers: complete header
// lines ("Retry-After: 1\r\n"), for phases that add their own.
struct LocalReplyOptions {
  bool head_request = false;  // answer to HEAD: no body, Content-Length kept
  bool http10_client = false; // HTTP/1.0 client: keep-alive is stated explicitly
};
void build_local_reply(core::Reason reason, std::string_view request_id, bool keep_alive,
                       std::string& out, std::string_view extra_headers = {},
                       LocalReplyOptions options = {});

}  // namespace frontdoor::http
