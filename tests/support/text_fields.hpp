#pragma once
// Fields out of frontdoor's text outputs, for assertions: a key's field in
// a YAML store as frontdoor writes it (`keys export`, the store file), and
// the samples of a Prometheus /metrics page.
#include <map>
#include <optional>
#include <string>

namespace frontdoor::test {

// A field of key `id` in a YAML store as frontdoor writes it (one key per
// "  - id:" item, fields at four spaces), unquoted. nullopt: no such key or
// field.
std::optional<std::string> store_field(const std::string& yaml, const std::string& id, const std::string& field);

// Prometheus text: "name{labels} value" lines into a map (comments skipped).
std::map<std::string, double> parse_metrics(const std::string& text);

}  // namespace frontdoor::test
