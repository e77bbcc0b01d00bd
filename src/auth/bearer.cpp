#include "frontdoor/auth/bearer.hpp"

#include "frontdoor/auth/token.hpp"

#include <array>

namespace frontdoor::auth {
namespace {

using core::Reason;

bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

constexpr auto kToken68 = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = t[c - 32] = true;
  for (char c : std::string_view("-._~+/")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

bool is_token68_char(char c) noexcept { return kToken68[static_cast<unsigned char>(c)]; }

// RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
bool is_token68(std::string_view t) noexcept {
  std::size_t i = 0;
  while (i < t.size() && is_token68_char(t[i])) ++i;
  if (i == 0) return false;
  while (i < t.size() && t[i] == '=') ++i;
  return i == t.size();
}

}  // namespace

BearerResult parse_bearer(std::span<const std::string_view> values) noexcept {
  if (values.empty()) return {Reason::missing_api_key, {}};
  // Two Authorization headers are ambiguous: a proxy and a worker could
  // each pick a different one, so neither is trusted.
  if (values.size() > 1) return {Reason::invalid_api_key, {}};

  const std::string_view value = trim_ows(values.front());
  const std::size_t sp = value.find(' ');
  if (sp == std::string_view::npos) return {Reason::invalid_api_key, {}};
  if (!iequals(value.substr(0, sp), "bearer")) return {Reason::invalid_api_key, {}};

  std::string_view token = value.substr(sp);
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  if (!is_token68(token)) return {Reason::invalid_api_key, {}};
  // A mistyped rpa_ token is rejected here, without touching the key store.
  if (token.starts_with(kTokenPrefix) && !rpa_token_well_formed(token)) {
    return {Reason::invalid_api_key, {}};
  }
  return {Reason::none, token};
}

}  // namespace frontdoor::auth
