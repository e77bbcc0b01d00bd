#pragma once
// Routing (SPEC §4 step 3). Pure.
#include <string>
#include <string_view>

#include "frontdoor/config/config.hpp"

namespace frontdoor::http {

struct Route {
  // The addressed endpoint id; empty when the request names none (then it
  // is treated as an unknown endpoint).
  std::string endpoint;
  // The target to forward: the original target, or what follows the first
  // path segment ("", "/v1/x?q" or "?q"); append_target() turns it into an
  // origin-form target.
  std::string_view rest;
  bool by_host = false;
};

// host: the Host header value (any case, port ignored).
// target: the origin-form request target ("/ep1/v1/x?q").
Route route(std::string_view host, std::string_view target, const config::Routing& routing);

// Appends `rest` as an origin-form target: "" → "/", "?q" → "/?q".
inline void append_target(std::string& out, std::string_view rest) {
  if (rest.empty() || rest.front() != '/') out.push_back('/');
  out.append(rest);
}

// Strips an optional ":port" from a Host value; keeps IPv6 brackets.
std::string_view host_without_port(std::string_view host) noexcept;

}  // namespace frontdoor::http
