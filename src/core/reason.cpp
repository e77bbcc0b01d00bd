#include "frontdoor/core/reason.hpp"

#include <array>

namespace frontdoor::core {
namespace {

constexpr std::string_view kInvalidToken =
    R"(Bearer realm="frontdoor", error="invalid_token", error_description="API key invalid or missing")";

constexpr std::array<ReasonInfo, 18> kInfos{{
    {0, "", "", ""},
    {401, "missing_api_key", "API key invalid or missing", R"(Bearer realm="frontdoor")"},
    {401, "invalid_api_key", "API key invalid or missing", kInvalidToken},
    {401, "api_key_disabled", "API key is disabled",
     R"(Bearer realm="frontdoor", error="invalid_token", error_description="API key is disabled")"},
    {401, "api_key_expired", "API key has expired",
     R"(Bearer realm="frontdoor", error="invalid_token", error_description="API key has expired")"},
    {403, "insufficient_scope", "API key has no access to this endpoint or method",
     R"(Bearer realm="frontdoor", error="insufficient_scope", error_description="API key has no access to this endpoint or method")"},
    {404, "endpoint_not_found", "no such endpoint", ""},
    {429, "rate_limited", "rate limit exceeded", ""},
    {502, "worker_unavailable", "no worker could be reached", ""},
    {503, "no_worker_ready", "no worker ready in time", ""},
    {504, "worker_timeout", "worker did not answer in time", ""},
    {400, "bad_request", "malformed request", ""},
    {408, "request_timeout", "request head not received in time", ""},
    {413, "payload_too_large", "request body too large", ""},
    {414, "uri_too_long", "request URI too long", ""},
    {431, "request_header_too_large", "request head too large", ""},
    {505, "http_version_not_supported", "HTTP version not supported", ""},
    {503, "key_store_unavailable", "key store unavailable", ""},
}};

}  // namespace

const ReasonInfo& info(Reason r) noexcept {
  auto i = static_cast<std::size_t>(r);
  return i < kInfos.size() ? kInfos[i] : kInfos[0];
}

}  // namespace frontdoor::core
