#pragma once
// Authorization header parsing (SPEC §4 step 2). Pure.
#include <span>
#include <string_view>

#include "frontdoor/core/reason.hpp"

namespace frontdoor::auth {

struct BearerResult {
  core::Reason reason = core::Reason::none;  // none, missing_api_key or invalid_api_key
  std::string_view token;                    // valid only when reason == none
};

// `values` are the values of every Authorization header of the request, in
// order. Exactly one header, scheme "Bearer" (any case), one token of
// token68 characters; an "rpa_" token must also pass its checksum.
BearerResult parse_bearer(std::span<const std::string_view> values) noexcept;

}  // namespace frontdoor::auth
