#include "frontdoor/http/message.hpp"

#include <boost/beast/http/status.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstring>

#include "frontdoor/http/route.hpp"

namespace frontdoor::http {

namespace bhttp = boost::beast::http;
using core::Reason;

namespace {

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == lower(y); });
}

bool istarts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls f(token) for each comma-separated, trimmed, non-empty element.
template <class F>
void for_each_token(std::string_view list, F&& f) {
  while (!list.empty()) {
    auto comma = list.find(',');
    auto tok = trim(list.substr(0, comma));
    if (!tok.empty()) f(tok);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

bool has_token(std::string_view list, std::string_view token) noexcept {
  bool found = false;
  for_each_token(list, [&](std::string_view t) { found = found || iequals(t, token); });
  return found;
}

// RFC 9110 §7.2: Host = uri-host [ ":" port ]; uri-host is an IP-literal in
// brackets or a reg-name of unreserved / pct-encoded / sub-delims.
bool valid_host(std::string_view h) noexcept {
  if (h.empty()) return false;
  std::string_view name = h, port;
  if (h.front() == '[') {
    auto close = h.find(']');
    if (close == std::string_view::npos) return false;
    for (char c : h.substr(1, close - 1))
      if (!(std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.')) return false;
    if (close + 1 < h.size()) {
      if (h[close + 1] != ':') return false;
      port = h.substr(close + 2);
    }
    name = {};
  } else if (auto colon = h.find(':'); colon != std::string_view::npos) {
    name = h.substr(0, colon);
    port = h.substr(colon + 1);
    if (name.empty()) return false;
  }
  static constexpr auto kRegName = [] {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c) t[c] = true;
    for (int c = 'a'; c <= 'z'; ++c) t[c] = t[c - 32] = true;
    for (char c : std::string_view("-._~%!$&'()*+,;=")) t[static_cast<unsigned char>(c)] = true;
    return t;
  }();
  for (char c : name)
    if (!kRegName[static_cast<unsigned char>(c)]) return false;
  if (port.size() > 5) return false;
  return std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// obs-fold, NUL, and CR or LF that are not part of a CRLF line ending.
bool raw_head_clean(std::string_view raw) noexcept {
  const char* begin = raw.data();
  const char* end = begin + raw.size();
  if (std::memchr(begin, '\0', raw.size())) return false;
  std::size_t lines = 0;
  for (const char* p = begin; (p = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p))));
       ++p) {
    if (p == begin || p[-1] != '\r') return false;                        // bare LF
    if (p + 1 < end && (p[1] == ' ' || p[1] == '\t')) return false;       // obs-fold
    ++lines;
  }
  return static_cast<std::size_t>(std::count(begin, end, '\r')) == lines;  // no bare CR
}

void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  out.append(buf, end);
}

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out.append(name).append(": ").append(value).append("\r\n");
}

// The Connection header's tokens, lower-cased and joined by ','. Empty when absent.
template <bool isRequest>
std::string connection_tokens(const bhttp::header<isRequest>& h) {
  // Beast's equal_range() spans list order, not just the matching fields:
  // scan every field instead.
  std::string tokens;
  for (const auto& f : h) {
    if (f.name() != bhttp::field::connection) continue;
    for_each_token(std::string_view(f.value().data(), f.value().size()), [&](std::string_view t) {
      tokens.push_back(',');
      std::transform(t.begin(), t.end(), std::back_inserter(tokens), lower);
    });
  }
  if (!tokens.empty()) tokens.push_back(',');
  return tokens;
}

}  // namespace

bool version_above_http11(std::string_view head_bytes) noexcept {
  // Beast may refuse the version before the line ends: the line is what
  // has arrived of it.
  auto line = head_bytes.substr(0, head_bytes.find("\r\n"));
  // method SP request-target SP HTTP-version (RFC 9112 §3)
  auto first = line.find(' ');
  auto last = line.rfind(' ');
  if (first == std::string_view::npos || first == 0 || last == first) return false;
  auto version = line.substr(last + 1);
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (version.size() < 6 || version.size() > 8 || version.substr(0, 5) != "HTTP/" || !digit(version[5]))
    return false;
  if (version[5] > '1') return version.size() == 6 || (version[6] == '.' && (version.size() == 7 || digit(version[7])));
  // HTTP/1.x: above 1.1 only with its minor digit there.
  return version.size() == 8 && version[5] == '1' && version[6] == '.' && digit(version[7]) && version[7] > '1';
}

auth::BearerResult bearer_of(const RequestHead& head) noexcept {
  std::array<std::string_view, 2> values;  // a second one already decides
  std::size_t count = 0;
  for (const auto& f : head) {
    if (f.name() != bhttp::field::authorization) continue;
    if (count < values.size()) values[count] = std::string_view(f.value().data(), f.value().size());
    ++count;
  }
  return auth::parse_bearer(std::span(values.data(), count < values.size() ? count : values.size()));
}

bool valid_request_id(std::string_view id) noexcept {
  return !id.empty() && id.size() <= 128 &&
         std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

bool is_dropped_header(bhttp::field f, std::string_view name, std::string_view connection_tokens) noexcept {
  switch (f) {
    case bhttp::field::connection:
    case bhttp::field::keep_alive:
    case bhttp::field::proxy_connection:
    case bhttp::field::te:
    case bhttp::field::trailer:
    case bhttp::field::upgrade:
    case bhttp::field::proxy_authorization:
    case bhttp::field::proxy_authenticate:
    case bhttp::field::transfer_encoding:
    case bhttp::field::content_length:
      return true;
    default:
      break;
  }
  if (istarts_with(name, "x-frontdoor-")) return true;
  if (connection_tokens.empty()) return false;
  // connection_tokens is ",a,b," so a listed name appears as ",name,".
  for (std::size_t pos = connection_tokens.find(','); pos + 1 < connection_tokens.size();) {
    auto next = connection_tokens.find(',', pos + 1);
    if (iequals(connection_tokens.substr(pos + 1, next - pos - 1), name)) return true;
    pos = next;
  }
  return false;
}

HeadCheck check_request_head(const RequestHead& head, std::string_view raw_head,
                             std::uint64_t max_uri_bytes) noexcept {
  HeadCheck r;
  auto fail = [&r](Reason why) {
    r.reason = why;
    return r;
  };
  auto target = std::string_view(head.target().data(), head.target().size());
  if (target.size() > max_uri_bytes) return fail(Reason::uri_too_long);
  // RFC 3986: a request-target is visible ASCII; raw bytes above 0x7E (or
  // controls) would reach the worker as a malformed request line.
  for (char c : target)
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) return fail(Reason::bad_request);
  if (!raw_head_clean(raw_head)) return fail(Reason::bad_request);
  if (head.method() == bhttp::verb::connect) return fail(Reason::bad_request);

  int hosts = 0, lengths = 0, encodings = 0;
  std::string_view length_value, encoding_value;
  bool upgrade_websocket = false;
  for (const auto& f : head) {
    switch (f.name()) {
      case bhttp::field::host:
        ++hosts;
        r.host = trim(std::string_view(f.value().data(), f.value().size()));
        break;
      case bhttp::field::content_length:
        ++lengths;
        length_value = trim(std::string_view(f.value().data(), f.value().size()));
        break;
      case bhttp::field::transfer_encoding:
        ++encodings;
        encoding_value = trim(std::string_view(f.value().data(), f.value().size()));
        break;
      case bhttp::field::expect:
        if (iequals(trim(std::string_view(f.value().data(), f.value().size())), "100-continue"))
          r.expect_continue = true;
        break;
      case bhttp::field::upgrade:
        if (has_token(std::string_view(f.value().data(), f.value().size()), "websocket"))
          upgrade_websocket = true;
        break;
      default:
        break;
    }
  }
  // RFC 9112 §3.2: Host is required of HTTP/1.1 only; a Host-less HTTP/1.0
  // request is routed by path (or by its absolute-form authority).
  if (hosts > 1 || (hosts == 0 && head.version() >= 11)) return fail(Reason::bad_request);
  if (hosts == 1 && !valid_host(r.host)) return fail(Reason::bad_request);
  if (lengths > 1 || encodings > 1 || (lengths && encodings)) return fail(Reason::bad_request);
  if (encodings) {
    // Only a single, final "chunked" is accepted; HTTP/1.0 has no chunked.
    if (!iequals(encoding_value, "chunked") || head.version() < 11) return fail(Reason::bad_request);
    r.chunked = true;
  }
  if (lengths) {
    std::uint64_t n = 0;
    auto [p, ec] = std::from_chars(length_value.data(), length_value.data() + length_value.size(), n);
    if (ec != std::errc() || p != length_value.data() + length_value.size() || length_value.empty())
      return fail(Reason::bad_request);
    r.content_length = n;
  }

  if (!target.empty() && target.front() == '/') {
    r.target = target;
  } else if (istarts_with(target, "http://") || istarts_with(target, "https://")) {
    // absolute-form (RFC 9112 §3.2.2): the authority replaces Host.
    auto rest = target.substr(target.find("//") + 2);
    auto slash = rest.find_first_of("/?");
    auto authority = rest.substr(0, slash);
    if (!valid_host(authority) || authority.find('@') != std::string_view::npos)
      return fail(Reason::bad_request);
    r.host = authority;
    r.target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
  } else if (target == "*" && head.method() == bhttp::verb::options) {
    r.target = "/";
  } else {
    return fail(Reason::bad_request);
  }

  // RFC 9110 §7.8: an Upgrade in an HTTP/1.0 request is ignored (and, as
  // a hop-by-hop header, not forwarded).
  if (upgrade_websocket && head.version() >= 11) {
    for (const auto& f : head) {
      if (f.name() == bhttp::field::connection &&
          has_token(std::string_view(f.value().data(), f.value().size()), "upgrade")) {
        r.websocket = true;
        // SPEC §4 step 6: an upgrade is a GET without a body (RFC 6455
        // §4.1). Anything else is refused and the connection closed (a
        // body is left unread: review H1).
        if (r.has_body() || head.method() != bhttp::verb::get) return fail(Reason::bad_request);
        break;
      }
    }
  }
  return r;
}

void build_upstream_request(const RequestHead& head, const UpstreamRequest& u, std::string& out) {
  out.append(u.method).push_back(' ');
  append_target(out, u.rest);
  out.append(" HTTP/1.1\r\n");
  append_header(out, "Host", u.worker_authority);

  const std::string tokens = connection_tokens(head);
  std::string forwarded_for_joined;  // only when the peer is trusted
  if (u.websocket) out.append("Connection: upgrade\r\nUpgrade: websocket\r\n");  // SPEC §4 step 6
  for (const auto& f : head) {
    auto name = std::string_view(f.name_string().data(), f.name_string().size());
    auto value = std::string_view(f.value().data(), f.value().size());
    switch (f.name()) {
      case bhttp::field::host:
      case bhttp::field::expect:  // 100-continue is answered by frontdoor itself
        continue;
      case bhttp::field::authorization:
        if (u.strip_authorization) continue;
        break;
      case bhttp::field::unknown:
        if (iequals(name, "x-forwarded-for")) {
          if (u.peer_trusted) {
            if (!forwarded_for_joined.empty()) forwarded_for_joined.append(", ");
            forwarded_for_joined.append(value);
          }
          continue;
        }
        if (iequals(name, "x-forwarded-host") || iequals(name, "x-forwarded-proto") ||
            iequals(name, "x-request-id"))
          continue;
        break;
      default:
        break;
    }
    if (is_dropped_header(f.name(), name, tokens)) continue;
    append_header(out, name, value);
  }
  out.append("X-Forwarded-For: ");
  if (!forwarded_for_joined.empty()) out.append(forwarded_for_joined).append(", ");
  out.append(u.peer_address).append("\r\n");
  if (!u.client_host.empty()) append_header(out, "X-Forwarded-Host", u.client_host);  // HTTP/1.0 may send none
  append_header(out, "X-Forwarded-Proto", u.proto);
  append_header(out, "X-Request-Id", u.request_id);
  append_header(out, "X-Frontdoor-Key-Id", u.key_id);
  if (u.chunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  } else if (u.content_length) {
    out.append("Content-Length: ");
    append_uint(out, *u.content_length);
    out.append("\r\n");
  }
  out.append("\r\n");
}

void build_downstream_response(const ResponseHead& head, const DownstreamResponse& d, std::string& out) {
  // RFC 9110 §6.2: a server sends its own version, also to 1.0 clients.
  out.append("HTTP/1.1 ");
  append_uint(out, head.result_int());
  out.push_back(' ');
  auto reason = head.reason();
  if (reason.empty()) reason = bhttp::obsolete_reason(head.result());
  out.append(reason.data(), reason.size()).append("\r\n");

  const std::string tokens = connection_tokens(head);
  for (const auto& f : head) {
    auto name = std::string_view(f.name_string().data(), f.name_string().size());
    auto value = std::string_view(f.value().data(), f.value().size());
    if (d.head_request && (f.name() == bhttp::field::content_length)) {
      append_header(out, name, value);  // HEAD: the length of the body not sent
      continue;
    }
    if (f.name() == bhttp::field::unknown && iequals(name, "x-request-id")) continue;
    if (d.switching && (f.name() == bhttp::field::connection || f.name() == bhttp::field::upgrade)) {
      append_header(out, name, value);  // the 101 that opens a tunnel says what it switches to
      continue;
    }
    if (is_dropped_header(f.name(), name, tokens)) continue;
    append_header(out, name, value);
  }
  append_header(out, "X-Request-Id", d.request_id);
  out.append(d.extra_headers);
  if (d.switching) {  // no body, no framing: the connection belongs to the tunnel now
    out.append("\r\n");
    return;
  }
  if (d.chunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  } else if (d.content_length) {
    out.append("Content-Length: ");
    append_uint(out, *d.content_length);
    out.append("\r\n");
  }
  if (!d.keep_alive)
    out.append("Connection: close\r\n");
  else if (d.http10_client)
    out.append("Connection: keep-alive\r\n");
  out.append("\r\n");
}

namespace {

// The parts of a local reply that depend only on its reason, built once:
// a reject costs a few appends instead of formatting the whole message.
struct ReplyTemplate {
  std::string head;         // status line and fixed headers
  std::string body_prefix;  // {"error":{"code":...,"message":...,"request_id":"
};

const ReplyTemplate& reply_template(Reason reason) {
  static const auto templates = [] {
    std::array<ReplyTemplate, 32> t;
    for (std::size_t r = 1; r <= static_cast<std::size_t>(Reason::key_store_unavailable); ++r) {
      const auto& i = core::info(static_cast<Reason>(r));
      auto& out = t[r];
      out.head.append("HTTP/1.1 ");
      append_uint(out.head, i.status);
      out.head.push_back(' ');
      auto text = bhttp::obsolete_reason(static_cast<bhttp::status>(i.status));
      out.head.append(text.data(), text.size()).append("\r\n");
      out.head.append("Content-Type: application/json\r\n");
      append_header(out.head, "X-Frontdoor-Error", i.code);
      if (!i.www_authenticate.empty()) append_header(out.head, "WWW-Authenticate", i.www_authenticate);
      out.body_prefix.append(R"({"error":{"code":")").append(i.code).append(R"(","message":")");
      out.body_prefix.append(i.message).append(R"(","request_id":")");
    }
    return t;
  }();
  return templates[static_cast<std::size_t>(reason) < templates.size() ? static_cast<std::size_t>(reason) : 0];
}

}  // namespace

void build_local_reply(Reason reason, std::string_view request_id, bool keep_alive, std::string& out,
                       std::string_view extra_headers, LocalReplyOptions options) {
  using namespace std::string_view_literals;
  const auto& t = reply_template(reason);
  // request_id is visible ASCII (valid_request_id); escape what JSON needs.
  std::size_t escapes = 0;
  for (char c : request_id) escapes += (c == '"' || c == '\\') ? 1 : 0;
  const std::size_t body_size = t.body_prefix.size() + request_id.size() + escapes + 3;

  out.append(t.head);
  out.append("Content-Length: "sv);
  append_uint(out, body_size);
  out.append("\r\nX-Request-Id: "sv).append(request_id).append("\r\n"sv);
  out.append(extra_headers);
  if (!keep_alive)
    out.append("Connection: close\r\n"sv);
  else if (options.http10_client)
    out.append("Connection: keep-alive\r\n"sv);
  out.append("\r\n"sv);
  // RFC 9110 §9.3.2: the answer to HEAD states the length of the body it
  // does not carry; sending it would desync a kept-alive connection.
  if (options.head_request) return;
  out.append(t.body_prefix);
  if (escapes == 0) {
    out.append(request_id);
  } else {
    for (char c : request_id) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
  }
  out.append("\"}}"sv);
}

}  // namespace frontdoor::http
