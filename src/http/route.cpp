#include "frontdoor/http/route.hpp"

#include <algorithm>

namespace frontdoor::http {

std::string_view host_without_port(std::string_view host) noexcept {
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  auto colon = host.rfind(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}

namespace {

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool iends_with(std::string_view s, std::string_view suffix) noexcept {
  if (s.size() < suffix.size()) return false;
  auto tail = s.substr(s.size() - suffix.size());
  return std::equal(tail.begin(), tail.end(), suffix.begin(),
                    [](char a, char b) { return lower(a) == b; });
}

}  // namespace

Route route(std::string_view host, std::string_view target, const config::Routing& routing) {
  Route r;
  auto name = host_without_port(host);
  const auto& suffix = routing.host_suffix;  // lower-case, starts with '.'
  if (!suffix.empty() && name.size() > suffix.size() && iends_with(name, suffix)) {
    auto label = name.substr(0, name.size() - suffix.size());
    r.endpoint.resize(label.size());
    std::transform(label.begin(), label.end(), r.endpoint.begin(), lower);
    r.rest = target;
    r.by_host = true;
    return r;
  }
  if (routing.path_prefix && !target.empty() && target.front() == '/') {
    auto end = target.find_first_of("/?", 1);
    if (end == std::string_view::npos) end = target.size();
    r.endpoint.assign(target.substr(1, end - 1));
    r.rest = target.substr(end);
    return r;
  }
  r.rest = target;
  return r;
}

}  // namespace frontdoor::http
