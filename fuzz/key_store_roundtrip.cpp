// Fuzz target: the YAML key store, read → write → read (SPEC §3). The
// input is a store file. When auth::load_yaml_store accepts it, the keys
// are written with auth::to_yaml (what write_yaml_store_atomic writes),
// read back, and must come back exactly the same: what frontdoor writes it
// must read back, whatever the names hold (review H4). A refused store must
// be refused with auth::StoreError, never anything else.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "frontdoor/auth/key.hpp"
#include "frontdoor/auth/key_store.hpp"
#include "scratch.hpp"

namespace {

using frontdoor::auth::Key;

[[noreturn]] void fail(const char* what, const std::string& detail, const std::string& written) {
  std::fprintf(stderr, "fuzz_key_store_roundtrip: %s\n%s\n---- the store frontdoor wrote ----\n%s\n",
               what, detail.c_str(), written.c_str());
  std::abort();
}

// Which field differs, or "" when the keys are the same.
std::string first_difference(const Key& a, const Key& b) {
  if (a.id != b.id) return "id";
  if (a.name != b.name) return "name";
  if (a.hash != b.hash) return "hash";
  if (a.prefix != b.prefix) return "prefix";
  if (a.enabled != b.enabled) return "enabled";
  if (a.created_at != b.created_at) return "created_at";
  if (a.last_used_at != b.last_used_at) return "last_used_at";
  if (a.expires_at != b.expires_at) return "expires_at";
  if (a.management != b.management) return "management";
  if (a.legacy_access != b.legacy_access) return "legacy_access";
  if (a.default_access != b.default_access) return "endpoints.*";
  if (a.endpoints != b.endpoints) return "endpoints";
  if (a.rate_limit.has_value() != b.rate_limit.has_value()) return "rate_limit";
  if (a.rate_limit) {
    // Exact: to_chars writes the shortest text that reads back as the same double.
    if (a.rate_limit->rps != b.rate_limit->rps) return "rate_limit.rps";
    if (a.rate_limit->burst != b.rate_limit->burst) return "rate_limit.burst";
    if (a.rate_limit->max_concurrent != b.rate_limit->max_concurrent)
      return "rate_limit.max_concurrent";
  }
  if (a.requests_total != b.requests_total) return "requests_total";
  return {};
}

std::string printable(std::string_view s) {
  std::string out;
  char buf[8];
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const frontdoor::fuzz::ScratchFolder folder("store");
  static const std::string input_path = folder.path() + "/input.yaml";
  static const std::string output_path = folder.path() + "/written.yaml";

  frontdoor::fuzz::write_file(input_path, std::string_view(reinterpret_cast<const char*>(data), size));
  std::vector<Key> keys;
  try {
    keys = frontdoor::auth::load_yaml_store(input_path);
  } catch (const frontdoor::auth::StoreError&) {
    return 0;  // refused, as it should be
  } catch (const std::exception& e) {
    fail("a refused store did not throw StoreError", e.what(), "");
  }

  const std::string written = frontdoor::auth::to_yaml(keys);
  frontdoor::fuzz::write_file(output_path, written);
  std::vector<Key> again;
  try {
    again = frontdoor::auth::load_yaml_store(output_path);
  } catch (const std::exception& e) {
    fail("frontdoor cannot read the store it wrote", e.what(), written);
  }
  if (again.size() != keys.size()) {
    fail("the store read back has another number of keys",
         std::to_string(keys.size()) + " written, " + std::to_string(again.size()) + " read",
         written);
  }
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const std::string field = first_difference(keys[i], again[i]);
    if (field.empty()) continue;
    std::string detail = "keys[" + std::to_string(i) + "]." + field + " changed";
    if (field == "name") {
      detail += ": \"" + printable(keys[i].name) + "\" became \"" + printable(again[i].name) + "\"";
    }
    fail("a key read back differs from the key written", detail, written);
  }
  return 0;
}
