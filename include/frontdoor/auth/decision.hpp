#pragma once
// The key decision table (SPEC §4 steps 2 and 4). Pure.
#include <string_view>

#include "frontdoor/auth/key.hpp"
#include "frontdoor/core/reason.hpp"

namespace frontdoor::auth {

// GET, HEAD and OPTIONS need read access; every other method read_write.
bool is_read_method(std::string_view method) noexcept;

// key: the key found for the token, or nullptr (unknown token).
// endpoint: the routed endpoint id ("" when the request named none);
// endpoint_exists: whether the configuration has it.
// Returns Reason::none when the request may proceed, else
// invalid_api_key, api_key_disabled, api_key_expired, insufficient_scope or
// endpoint_not_found.
core::Reason decide(const Key* key, core::UnixSeconds now, std::string_view endpoint,
                    bool endpoint_exists, std::string_view method) noexcept;
// The same for a request that needs `need` whatever its method: a WebSocket
// tunnel needs read_write (it carries the client's writes; SPEC §4 step 6).
core::Reason decide(const Key* key, core::UnixSeconds now, std::string_view endpoint,
                    bool endpoint_exists, Access need) noexcept;

}  // namespace frontdoor::auth
