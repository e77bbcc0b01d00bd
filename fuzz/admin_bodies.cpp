// Fuzz target: the admin key API's request bodies (SPEC §5). The input is
// given, whole, to the three parsers: parse_new_key (POST /v1/keys),
// parse_key_patch (PATCH /v1/keys/{id}) and parse_list_query (the GET
// query). A refusal must name a field that the body really could have
// named; an accepted body becomes a key as KeyRegistry::create makes it (or
// patches two stored keys), which must render as JSON (key_to_json) and
// survive the YAML store read back after a restart: a name the API accepts
// is a name the store can hold (review H4).
#include <boost/json.hpp>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "frontdoor/admin/keys_api.hpp"
#include "frontdoor/auth/key.hpp"
#include "frontdoor/auth/key_registry.hpp"
#include "frontdoor/auth/key_store.hpp"
#include "frontdoor/auth/token.hpp"
#include "scratch.hpp"

namespace {

namespace json = boost::json;
using frontdoor::auth::Access;
using frontdoor::auth::Key;


[[noreturn]] void fail(const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "fuzz_admin_bodies: %s\n%s\n", what, detail.c_str());
  std::abort();
}

// Only its hash is used; made here so that no token-shaped literal is committed.
const std::string kToken = std::string("rpa_") + std::string(36, 'x');

// As KeyRegistry::create fills a key, without the random parts.
Key key_from(const frontdoor::auth::NewKey& spec) {
  Key k;
  k.id = "key_0badf00d";
  k.name = spec.name;
  k.hash = frontdoor::auth::sha256(kToken);
  k.prefix = kToken.substr(0, 8);
  k.enabled = spec.enabled;
  k.created_at = 1790000000;
  k.expires_at = spec.expires_at;
  k.management = spec.management;
  k.legacy_access = spec.legacy_access;
  k.default_access = spec.default_access;
  k.endpoints = spec.endpoints;
  std::sort(k.endpoints.begin(), k.endpoints.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  k.rate_limit = spec.rate_limit;
  return k;
}

Key stored_key(bool legacy) {
  Key k;
  k.id = legacy ? "key_legacy01" : "key_map00001";
  k.name = legacy ? "legacy" : "mapped";
  k.hash = frontdoor::auth::sha256(legacy ? kToken + "L" : kToken + "M");
  k.prefix = kToken.substr(0, 8);
  k.created_at = 1780000000;
  if (legacy) {
    k.legacy_access = Access::read;
  } else {
    k.default_access = Access::read;
    k.endpoints = {{"ep1", Access::read_write}, {"ep2", Access::none}};
  }
  return k;
}

// The key renders as a JSON object, and the store holds it across a restart.
void check_key(const Key& key) {
  static const frontdoor::fuzz::ScratchFolder folder("admin");
  static const std::string store = folder.path() + "/keys.yaml";

  const json::object shown = frontdoor::admin::key_to_json(key);
  const std::string text = json::serialize(shown);
  boost::system::error_code ec;
  const json::value parsed = json::parse(text, ec);
  if (ec || !parsed.is_object()) fail("key_to_json does not serialize to a JSON object", text);
  if (shown.contains("hash") || shown.contains("token_hash"))
    fail("key_to_json shows the hash", text);

  const std::string yaml = frontdoor::auth::to_yaml({key});
  frontdoor::fuzz::write_file(store, yaml);
  std::vector<Key> again;
  try {
    again = frontdoor::auth::load_yaml_store(store);
  } catch (const std::exception& e) {
    fail("a key the API accepted makes the store unreadable", std::string(e.what()) + "\n" + yaml);
  }
  if (again.size() != 1 || again[0].name != key.name || again[0].endpoints != key.endpoints ||
      again[0].expires_at != key.expires_at || again[0].legacy_access != key.legacy_access)
    fail("a key the API accepted comes back changed from the store", yaml);
}

// An error names a field and says what is wrong, and never echoes a token
// pasted into the body (keys_api.hpp).
void check_error(const frontdoor::admin::BodyError& e) {
  if (e.message.empty()) fail("an error without a message");
  // A token pasted as a field name or query parameter comes back as
  // "(a token)" (keys_api.cpp's shown()). Only a whole name is checked: a
  // token further inside a name ("x-rpa_...") is still echoed today (a
  // finding reported with this target; tighten this check with its fix).
  if (e.field.starts_with("rpa_")) fail("an error echoes a token", e.field);
  if (e.message.find("rpa_") != std::string::npos) fail("an error message echoes a token", e.message);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);

  const auto created = frontdoor::admin::parse_new_key(body);
  if (created) {
    check_key(key_from(*created.value));
  } else {
    check_error(created.error);
  }

  const auto patch = frontdoor::admin::parse_key_patch(body);
  if (patch) {
    for (bool legacy : {false, true}) {
      Key k = stored_key(legacy);
      if (auto why = patch.value->conflicts_with(k)) {
        check_error(*why);
        continue;
      }
      patch.value->apply(k);
      check_key(k);
    }
  } else {
    check_error(patch.error);
  }

  const auto query = frontdoor::admin::parse_list_query(body);
  if (query) {
    if (query.value->limit < 1 || query.value->limit > frontdoor::admin::kMaxListLimit)
      fail("a list limit out of range", std::to_string(query.value->limit));
  } else {
    check_error(query.error);
  }
  return 0;
}
