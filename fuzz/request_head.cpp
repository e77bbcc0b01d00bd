// Fuzz target: the request-head path of a proxy session, without sockets
// (SPEC §4 steps 1–3). The input is what a client sends on a fresh
// connection. It goes through Beast's request_parser with the limits the
// proxy uses, then http::check_request_head, http::bearer_of, http::route
// (three routing set-ups) and, for a head the proxy would forward,
// http::build_upstream_request, whose output must parse again as one
// complete, clean head: frontdoor must never send a worker a head that it
// would itself refuse (request smuggling).
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <string>
#include <string_view>

#include "frontdoor/config/config.hpp"
#include "frontdoor/core/reason.hpp"
#include "frontdoor/http/message.hpp"
#include "frontdoor/http/route.hpp"

namespace bhttp = boost::beast::http;
namespace fd = frontdoor;

namespace {

// config::Limits' defaults: what a deployment without a `limits:` section uses.
const fd::config::Limits kLimits{};

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_request_head: invariant broken: %s\n", what);
  std::abort();
}

bool within(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

fd::config::Routing routing(std::string suffix, bool path_prefix) {
  fd::config::Routing r;
  r.host_suffix = std::move(suffix);
  r.path_prefix = path_prefix;
  return r;
}

const fd::config::Routing kRoutings[] = {
    routing("", true),                   // the default: /<endpoint>/...
    routing(".ai.example.com", true),    // host routing, path as fallback
    routing(".ai.example.com", false),   // host routing only
};

// The upstream head must be one complete head, accepted by a strict parser
// and by check_request_head, with exactly the framing frontdoor chose.
void check_upstream_head(const std::string& out, const fd::http::UpstreamRequest& u) {
  bhttp::request_parser<bhttp::empty_body> p;
  p.header_limit(1 << 20);
  p.body_limit(boost::none);  // a large Content-Length is the proxy's 413, not a bad head
  p.eager(false);
  boost::system::error_code ec;
  const std::size_t used = p.put(boost::asio::buffer(out), ec);
  check(!ec, "the upstream head does not parse");
  check(p.is_header_done(), "the upstream head is incomplete");
  check(used == out.size(), "the upstream head has bytes after its end");
  const auto again = fd::http::check_request_head(p.get(), out, 1 << 20);
  check(again.reason == fd::core::Reason::none, "the upstream head is refused by frontdoor");
  check(again.chunked == u.chunked, "the upstream head's chunked framing differs");
  check(again.content_length == u.content_length, "the upstream head's Content-Length differs");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  // As Session::on_head_bytes: a request line longer than the URI limit is
  // refused before the parser sees it.
  const std::size_t line_cap = kLimits.max_uri_bytes + 32;
  if (in.size() > line_cap && in.substr(0, line_cap).find('\n') == std::string_view::npos) return 0;

  bhttp::request_parser<bhttp::buffer_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(kLimits.max_header_bytes));
  parser.body_limit(boost::none);
  boost::system::error_code ec;
  const std::size_t head_size = parser.put(boost::asio::buffer(in.data(), in.size()), ec);
  if (ec || !parser.is_header_done()) return 0;
  check(head_size <= in.size(), "the parser used more than it was given");

  const auto& head = parser.get();
  const std::string_view raw = in.substr(0, head_size);
  const auto checked = fd::http::check_request_head(head, raw, kLimits.max_uri_bytes);
  (void)fd::http::bearer_of(head);  // also on refused heads: it must not care
  if (checked.reason != fd::core::Reason::none) return 0;
  check(!(checked.chunked && checked.content_length), "both chunked and Content-Length");

  const auto bearer = fd::http::bearer_of(head);
  if (bearer.reason == fd::core::Reason::none) check(!bearer.token.empty(), "an empty token");

  std::string out;
  for (const auto& routing : kRoutings) {
    const auto r = fd::http::route(checked.host, checked.target, routing);
    check(within(r.rest, checked.target), "Route::rest is not within the target");

    fd::http::UpstreamRequest u;
    u.method = std::string_view(head.method_string().data(), head.method_string().size());
    u.rest = r.rest;
    u.worker_authority = "127.0.0.1:8000";
    u.client_host = checked.host;
    u.proto = "http";
    u.peer_address = "127.0.0.1";
    u.peer_trusted = routing.path_prefix;  // both ways, cheaply
    u.request_id = "0123456789abcdef0123456789abcdef";
    u.key_id = "key_1";
    u.strip_authorization = !routing.host_suffix.empty();
    u.chunked = checked.chunked;
    u.content_length = checked.content_length;
    out.clear();
    fd::http::build_upstream_request(head, u, out);
    check_upstream_head(out, u);
  }
  return 0;
}
