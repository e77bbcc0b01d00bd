#pragma once
// The one error vocabulary of frontdoor (SPEC §4, status table). Every local
// reply is made from a Reason; the access log records its code.
#include <cstdint>
#include <string_view>

namespace frontdoor::core {

enum class Reason : std::uint8_t {
  none = 0,
  missing_api_key,
  invalid_api_key,
  api_key_disabled,
  api_key_expired,
  insufficient_scope,
  endpoint_not_found,
  rate_limited,
  worker_unavailable,
  no_worker_ready,
  worker_timeout,
  bad_request,
  request_timeout,
  payload_too_large,
  uri_too_long,
  request_header_too_large,
  http_version_not_supported,
  key_store_unavailable,  // SPEC §3.1: not loaded yet, stale past keys.max_stale, or (admin) not answering
};

struct ReasonInfo {
  unsigned status;                    // HTTP status code
  std::string_view code;              // machine-readable, in JSON body and X-Frontdoor-Error
  std::string_view message;           // human-readable, in JSON body
  std::string_view www_authenticate;  // empty: no WWW-Authenticate header
};

// Total over Reason; Reason::none maps to {0, "", "", ""}.
const ReasonInfo& info(Reason r) noexcept;

}  // namespace frontdoor::core
