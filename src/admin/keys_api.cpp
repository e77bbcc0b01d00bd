#include "frontdoor/admin/keys_api.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <exception>

#include "frontdoor/auth/key_store.hpp"
#include "frontdoor/core/log.hpp"
#include "frontdoor/core/time.hpp"

namespace frontdoor::admin {

namespace json = boost::json;

namespace {

constexpr std::size_t kMaxNameLength = 256;

// ---------------------------------------------------------------- answers

std::string error_body(std::string_view code, std::string_view message,
                       const std::optional<std::string>& field = std::nullopt) {
  json::object err{{"code", code}};
  if (field) err["field"] = *field;
  err["message"] = message;
  return json::serialize(json::object{{"error", std::move(err)}});
}

ApiResponse error(unsigned status, std::string_view code, std::string_view message) {
  return {status, error_body(code, message), {}};
}

ApiResponse invalid(std::string_view code, const BodyError& e) {
  return {400,
          error_body(code, e.message, e.field.empty() ? std::nullopt : std::optional(e.field)),
          {}};
}

ApiResponse not_allowed(std::string_view allow) {
  return {
      405,
      error_body("method_not_allowed", "method not allowed here; allowed: " + std::string(allow)),
      std::string(allow)};
}

ApiResponse key_not_found() { return error(404, "key_not_found", "no key with that id"); }

ApiResponse ok(unsigned status, json::object body) { return {status, json::serialize(body), {}}; }

// ---------------------------------------------------------------- parsing

// A field name as it may appear in an answer: a token pasted as a field name
// or an endpoint id must not be echoed back.
std::string shown(std::string_view name) {
  if (name.find(auth::kTokenPrefix) != std::string_view::npos) return "(a token)";
  return std::string(name);
}

std::string join(std::string_view parent, std::string_view child) {
  std::string out(parent);
  out += '.';
  out += shown(child);
  return out;
}

bool valid_endpoint_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

// Collects the first problem; every reader below returns false once one is
// recorded, so a caller can stop at the first `false`.
struct Reader {
  std::optional<BodyError> problem;

  bool fail(std::string field, std::string message) {
    if (!problem) problem = BodyError{std::move(field), std::move(message)};
    return false;
  }

  bool read_name(const json::value& v, std::string& out) {
    if (!v.is_string()) return fail("name", "expected a non-empty string");
    const auto& s = v.get_string();
    if (s.empty()) return fail("name", "expected a non-empty string");
    if (s.size() > kMaxNameLength) return fail("name", "at most 256 bytes");
    // Cc (C1 too), noncharacters: a store file could not hold them as text.
    if (auto why = auth::key_name_problem(std::string_view(s.data(), s.size())))
      return fail("name", *why);
    out.assign(s.data(), s.size());
    return true;
  }

  bool read_bool(std::string_view field, const json::value& v, bool& out) {
    if (!v.is_bool()) return fail(std::string(field), "expected true or false");
    out = v.get_bool();
    return true;
  }

  bool read_access(std::string field, const json::value& v, auth::Access& out,
                   bool allow_none = true) {
    const char* expected = allow_none ? "expected \"none\", \"read\" or \"read_write\""
                                      : "expected \"read\" or \"read_write\"";
    if (!v.is_string()) return fail(std::move(field), expected);
    auto a = auth::parse_access(std::string_view(v.get_string()));
    if (!a || (!allow_none && *a == auth::Access::none)) return fail(std::move(field), expected);
    out = *a;
    return true;
  }

  bool read_time(std::string_view field, const json::value& v,
                 std::optional<core::UnixSeconds>& out) {
    const char* expected = "expected an RFC 3339 timestamp like \"2026-11-22T04:00:00Z\", or null";
    if (v.is_null()) {
      out.reset();
      return true;
    }
    if (!v.is_string()) return fail(std::string(field), expected);
    auto t = core::parse_rfc3339(std::string_view(v.get_string()));
    if (!t) return fail(std::string(field), expected);
    out = *t;
    return true;
  }

  bool read_endpoints(const json::value& v, auth::Access& default_access,
                      std::vector<std::pair<std::string, auth::Access>>& out) {
    if (!v.is_object())
      return fail("endpoints",
                  "expected an object of endpoint id to \"none\", \"read\" or \"read_write\"");
    default_access = auth::Access::none;
    out.clear();
    for (const auto& kv : v.get_object()) {
      const std::string_view id(kv.key());
      const std::string field = join("endpoints", id);
      if (id != "*" && !valid_endpoint_id(id))
        return fail(field, R"(an endpoint id is "*" or 1 to 128 letters, digits, "_" and "-")");
      auth::Access a{};
      if (!read_access(field, kv.value(), a)) return false;
      if (id == "*") {
        default_access = a;
      } else {
        out.emplace_back(std::string(id), a);
      }
    }
    std::sort(out.begin(), out.end(),
              [](const auto& x, const auto& y) { return x.first < y.first; });
    return true;
  }

  bool read_rate_limit(const json::value& v, std::optional<auth::RateLimit>& out) {
    if (v.is_null()) {
      out.reset();
      return true;
    }
    if (!v.is_object())
      return fail("rate_limit", "expected an object {rps, burst, max_concurrent}, or null");
    const auto& o = v.get_object();
    for (const auto& kv : o) {
      const std::string_view f(kv.key());
      if (f != "rps" && f != "burst" && f != "max_concurrent")
        return fail(join("rate_limit", f), "unknown field");
    }
    auth::RateLimit rl;
    const auto* rps = o.if_contains("rps");
    if (!rps) return fail("rate_limit.rps", "required field missing");
    json::error_code ec;
    const double r = rps->is_number() ? rps->to_number<double>(ec) : 0.0;
    if (!rps->is_number() || ec || !std::isfinite(r) || r <= 0)
      return fail("rate_limit.rps", "expected a number greater than 0");
    rl.rps = r;
    const auto* burst = o.if_contains("burst");
    if (!burst) return fail("rate_limit.burst", "required field missing");
    if (!read_count(*burst, rl.burst) || rl.burst < 1)
      return fail("rate_limit.burst", "expected an integer of at least 1");
    if (const auto* mc = o.if_contains("max_concurrent")) {
      if (!read_count(*mc, rl.max_concurrent))
        return fail("rate_limit.max_concurrent", "expected a non-negative integer (0 = unlimited)");
    }
    out = rl;
    return true;
  }

  static bool read_count(const json::value& v, std::uint64_t& out) {
    if (!v.is_number()) return false;
    json::error_code ec;
    out = v.to_number<std::uint64_t>(ec);  // exact: 2.0 is 2, 2.5 and -1 fail
    return !ec;
  }
};

// Fields frontdoor sets itself: named as such rather than as unknown.
bool is_managed_field(std::string_view f) {
  return f == "id" || f == "hash" || f == "prefix" || f == "created_at" || f == "last_used_at" ||
         f == "requests_total" || f == "token";
}

// Parses a body that must be one JSON object.
std::optional<json::object> parse_object(std::string_view body, Reader& r) {
  json::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) {
    r.fail("", "the body is not valid JSON");
    return std::nullopt;
  }
  if (!v.is_object()) {
    r.fail("", "expected a JSON object");
    return std::nullopt;
  }
  return std::move(v.get_object());
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding (and "+" as space) of a query component; nullopt when malformed.
std::optional<std::string> url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      const int hi = hex_value(s[i + 1]);
      const int lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

json::value time_json(const std::optional<core::UnixSeconds>& t) {
  if (!t) return nullptr;
  return json::value(core::format_rfc3339(*t));
}

// 50 rather than 5e1: an integral rate reads as an integer.
json::value number_json(double d) {
  if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15)
    return static_cast<std::int64_t>(d);
  return d;
}

// ---------------------------------------------------------------- routes

ApiResponse list_keys(std::string_view query, auth::KeyRegistry& registry) {
  auto q = parse_list_query(query);
  if (!q) return invalid("invalid_query", q.error);
  std::optional<std::string> next;
  auto keys = registry.list(q.value->after, q.value->limit, next);
  json::array arr;
  arr.reserve(keys.size());
  for (const auto& k : keys) arr.emplace_back(key_to_json(k));
  json::object out{{"keys", std::move(arr)}};
  out["next"] = next ? json::value(*next) : json::value(nullptr);
  return ok(200, std::move(out));
}

ApiResponse create_key(std::string_view body, auth::KeyRegistry& registry) {
  auto spec = parse_new_key(body);
  if (!spec) return invalid("invalid_body", spec.error);
  auto issued = registry.create(*spec.value);
  json::object out{{"key", key_to_json(issued.key)}, {"token", issued.token}};
  return ok(201, std::move(out));
}

// Thrown from inside a store update to abandon it.
struct PatchConflict : std::exception {
  explicit PatchConflict(BodyError e) : error(std::move(e)) {}
  const char* what() const noexcept override { return "the patch conflicts with the key"; }
  BodyError error;
};

ApiResponse patch_key(const std::string& id, std::string_view body, auth::KeyRegistry& registry) {
  auto patch = parse_key_patch(body);
  if (!patch) return invalid("invalid_body", patch.error);
  if (patch.value->empty()) {
    auto key = registry.get(id);
    if (!key) return key_not_found();
    return ok(200, json::object{{"key", key_to_json(*key)}});
  }
  // The edit runs on the key as it is on disk now. A conflict found there
  // throws out of the edit, which makes the store abandon the write: no
  // rewrite, no new change sequence, nothing published (all or nothing).
  const KeyPatch& p = *patch.value;
  std::optional<auth::Key> key;
  try {
    key = registry.update(id, [&](auth::Key& k) {
      if (auto conflict = p.conflicts_with(k)) throw PatchConflict(std::move(*conflict));
      p.apply(k);
    });
  } catch (const PatchConflict& c) {
    return invalid("invalid_body", c.error);
  }
  if (!key) return key_not_found();
  return ok(200, json::object{{"key", key_to_json(*key)}});
}

// Bodies of actions that take no parameters: empty or {}.
std::optional<ApiResponse> refuse_parameters(std::string_view body) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return std::nullopt;
  Reader r;
  auto o = parse_object(body, r);
  if (!o) return invalid("invalid_body", *r.problem);
  if (!o->empty()) return invalid("invalid_body", {shown(o->begin()->key()), "unknown field"});
  return std::nullopt;
}

ApiResponse route(std::string_view method, std::string_view path, std::string_view query,
                  std::string_view body, auth::KeyRegistry& registry,
                  const std::function<std::string()>& reload) {
  const bool get = method == "GET" || method == "HEAD";
  if (path == "/v1/reload") {
    if (method != "POST") return not_allowed("POST");
    if (auto refused = refuse_parameters(body)) return *refused;
    std::string why = reload ? reload() : std::string("reload is not available");
    if (!why.empty()) return error(500, "reload_failed", why);
    return ok(200, json::object{{"status", "reloaded"}});
  }
  if (path == "/v1/keys") {
    if (get) return list_keys(query, registry);
    if (method == "POST") return create_key(body, registry);
    return not_allowed("GET, HEAD, POST");
  }
  // "/v1/keys/{id}" or "/v1/keys/{id}/rotate" (checked by the caller).
  std::string_view rest = path.substr(std::string_view("/v1/keys/").size());
  const auto slash = rest.find('/');
  const auto id = url_decode(rest.substr(0, slash));
  if (slash != std::string_view::npos) {
    if (method != "POST") return not_allowed("POST");
    if (!id) return key_not_found();
    if (auto refused = refuse_parameters(body)) return *refused;
    auto issued = registry.rotate(*id);
    if (!issued) return key_not_found();
    return ok(200, json::object{{"key", key_to_json(issued->key)}, {"token", issued->token}});
  }
  const bool known_method = get || method == "PATCH" || method == "DELETE";
  if (!known_method) return not_allowed("GET, HEAD, PATCH, DELETE");
  if (!id) return key_not_found();
  if (get) {
    auto key = registry.get(*id);
    if (!key) return key_not_found();
    return ok(200, json::object{{"key", key_to_json(*key)}});
  }
  if (method == "PATCH") return patch_key(*id, body, registry);
  if (!registry.remove(*id)) return key_not_found();
  return {204, {}, {}};
}

}  // namespace

// ---------------------------------------------------------------- public

bool is_key_api_path(std::string_view path) {
  if (path == "/v1/keys" || path == "/v1/reload") return true;
  if (!path.starts_with("/v1/keys/")) return false;
  std::string_view rest = path.substr(std::string_view("/v1/keys/").size());
  const auto slash = rest.find('/');
  if (slash == 0 || rest.empty()) return false;
  return slash == std::string_view::npos || rest.substr(slash) == "/rotate";
}

boost::json::object key_to_json(const auth::Key& k) {
  json::object o;
  o["id"] = k.id;
  o["name"] = k.name;
  o["prefix"] = k.prefix.empty() ? json::value(nullptr) : json::value(k.prefix);
  o["enabled"] = k.enabled;
  o["created_at"] = time_json(k.created_at);
  o["last_used_at"] = time_json(k.last_used_at);
  o["expires_at"] = time_json(k.expires_at);
  o["management"] = auth::to_string(k.management);
  if (k.legacy_access) {
    o["legacy_access"] = auth::to_string(*k.legacy_access);
  } else {
    json::object eps;
    eps["*"] = auth::to_string(k.default_access);
    for (const auto& [id, a] : k.endpoints) eps[id] = auth::to_string(a);
    o["endpoints"] = std::move(eps);
  }
  if (k.rate_limit) {
    o["rate_limit"] = json::object{{"rps", number_json(k.rate_limit->rps)},
                                   {"burst", k.rate_limit->burst},
                                   {"max_concurrent", k.rate_limit->max_concurrent}};
  } else {
    o["rate_limit"] = nullptr;
  }
  o["requests_total"] = k.requests_total;
  return o;
}

Parsed<auth::NewKey> parse_new_key(std::string_view body) {
  Reader r;
  auth::NewKey spec;
  auto o = parse_object(body, r);
  if (o) {
    for (const auto& kv : *o) {
      const std::string_view f(kv.key());
      const json::value& v = kv.value();
      if (f == "name") {
        r.read_name(v, spec.name);
      } else if (f == "enabled") {
        r.read_bool(f, v, spec.enabled);
      } else if (f == "management") {
        r.read_access("management", v, spec.management);
      } else if (f == "endpoints") {
        r.read_endpoints(v, spec.default_access, spec.endpoints);
      } else if (f == "legacy_access") {
        auth::Access a{};
        if (r.read_access("legacy_access", v, a, false)) spec.legacy_access = a;
      } else if (f == "expires_at") {
        r.read_time(f, v, spec.expires_at);
      } else if (f == "rate_limit") {
        r.read_rate_limit(v, spec.rate_limit);
      } else if (is_managed_field(f)) {
        r.fail(std::string(f), "set by frontdoor; it cannot be given");
      } else {
        r.fail(shown(f), "unknown field");
      }
      if (r.problem) break;
    }
    if (!r.problem && !o->contains("name")) r.fail("name", "required field missing");
    if (!r.problem && o->contains("legacy_access") && o->contains("endpoints"))
      r.fail("legacy_access",
             "a legacy key has no endpoints map; give either legacy_access or endpoints");
  }
  if (r.problem) return {std::nullopt, std::move(*r.problem)};
  return {std::move(spec), {}};
}

Parsed<KeyPatch> parse_key_patch(std::string_view body) {
  Reader r;
  KeyPatch p;
  auto o = parse_object(body, r);
  if (o) {
    for (const auto& kv : *o) {
      const std::string_view f(kv.key());
      const json::value& v = kv.value();
      if (f == "name") {
        std::string name;
        if (r.read_name(v, name)) p.name = std::move(name);
      } else if (f == "enabled") {
        bool b = true;
        if (r.read_bool(f, v, b)) p.enabled = b;
      } else if (f == "management") {
        auth::Access a{};
        if (r.read_access("management", v, a)) p.management = a;
      } else if (f == "endpoints") {
        auth::Access def{};
        std::vector<std::pair<std::string, auth::Access>> eps;
        if (r.read_endpoints(v, def, eps)) p.endpoints.emplace(def, std::move(eps));
      } else if (f == "expires_at") {
        std::optional<core::UnixSeconds> t;
        if (r.read_time(f, v, t)) p.expires_at = t;
      } else if (f == "rate_limit") {
        std::optional<auth::RateLimit> rl;
        if (r.read_rate_limit(v, rl)) p.rate_limit = rl;
      } else if (f == "legacy_access") {
        r.fail("legacy_access", "cannot be changed; create a new key instead");
      } else if (is_managed_field(f)) {
        r.fail(std::string(f), f == "token"
                                   ? "cannot be changed here; use POST /v1/keys/{id}/rotate"
                                   : "set by frontdoor; it cannot be changed");
      } else {
        r.fail(shown(f), "unknown field");
      }
      if (r.problem) break;
    }
  }
  if (r.problem) return {std::nullopt, std::move(*r.problem)};
  return {std::move(p), {}};
}

void KeyPatch::apply(auth::Key& key) const {
  if (name) key.name = *name;
  if (enabled) key.enabled = *enabled;
  if (management) key.management = *management;
  if (endpoints) {
    key.default_access = endpoints->first;
    key.endpoints = endpoints->second;
  }
  if (expires_at) key.expires_at = *expires_at;
  if (rate_limit) key.rate_limit = *rate_limit;
}

std::optional<BodyError> KeyPatch::conflicts_with(const auth::Key& key) const {
  if (endpoints && key.legacy_access)
    return BodyError{"endpoints",
                     "a legacy key has one access level (legacy_access) and no endpoints map"};
  return std::nullopt;
}

Parsed<ListQuery> parse_list_query(std::string_view query) {
  ListQuery q;
  while (!query.empty()) {
    const auto amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (part.empty()) continue;
    const auto eq = part.find('=');
    const std::string_view name = part.substr(0, eq);
    const auto value =
        url_decode(eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1));
    if (name == "limit") {
      std::size_t n = 0;
      bool good =
          value && !value->empty() && value->size() <= 9 &&
          std::all_of(value->begin(), value->end(), [](char c) { return c >= '0' && c <= '9'; });
      if (good) n = std::stoul(*value);
      if (!good || n == 0) return {std::nullopt, {"limit", "expected an integer from 1 to 1000"}};
      q.limit = std::min(n, kMaxListLimit);
    } else if (name == "after") {
      if (!value) return {std::nullopt, {"after", "malformed percent-encoding"}};
      q.after = *value;
    } else {
      return {std::nullopt, {shown(name), "unknown query parameter; expected limit or after"}};
    }
  }
  return {std::move(q), {}};
}

std::optional<ApiResponse> handle_keys_api(std::string_view method, std::string_view path,
                                           std::string_view query, std::string_view body,
                                           auth::KeyRegistry& registry,
                                           const std::function<std::string()>& reload) {
  if (!is_key_api_path(path)) return std::nullopt;
  try {
    return route(method, path, query, body, registry, reload);
  } catch (const auth::StoreUnavailable& e) {
    // Locked by another writer past the deadline, or a database that does
    // not answer or gave the change up: nothing was written (the message
    // says so when a COMMIT went unanswered and the change may have been
    // made); the caller may try again.
    core::log::warn("admin: key store unavailable", {{"error", e.what()}});
    const auto& i = core::info(core::Reason::key_store_unavailable);
    return ApiResponse{i.status, error_body(i.code, i.message), {}, core::Reason::key_store_unavailable};
  } catch (const auth::StoreError& e) {
    // The store refused or failed to write: nothing was acknowledged.
    return error(500, "store_error", e.what());
  } catch (const std::exception& e) {
    return error(500, "internal_error", e.what());
  }
}

}  // namespace frontdoor::admin
