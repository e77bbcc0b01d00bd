#include "frontdoor/auth/decision.hpp"

namespace frontdoor::auth {

using core::Reason;

bool is_read_method(std::string_view method) noexcept {
  // Methods are case-sensitive (RFC 9110 §9.1): "get" is not GET.
  return method == "GET" || method == "HEAD" || method == "OPTIONS";
}

Reason decide(const Key* key, core::UnixSeconds now, std::string_view endpoint,
              bool endpoint_exists, std::string_view method) noexcept {
  return decide(key, now, endpoint, endpoint_exists, is_read_method(method) ? Access::read : Access::read_write);
}

Reason decide(const Key* key, core::UnixSeconds now, std::string_view endpoint,
              bool endpoint_exists, Access need) noexcept {
  if (key == nullptr) return Reason::invalid_api_key;
  if (!key->enabled) return Reason::api_key_disabled;
  if (key->expired_at(now)) return Reason::api_key_expired;

  const Access a = key->access_for(endpoint);
  if (!endpoint_exists) {
    // Only a key that could reach any endpoint learns that this one does not
    // exist; a narrower key must not be able to probe endpoint names.
    return a != Access::none ? Reason::endpoint_not_found : Reason::insufficient_scope;
  }
  if (a == Access::none) return Reason::insufficient_scope;
  if (a == Access::read && need == Access::read_write) return Reason::insufficient_scope;
  return Reason::none;
}

}  // namespace frontdoor::auth
