#include "support/text_fields.hpp"

#include <sstream>

namespace frontdoor::test {
namespace {

std::string unquote(std::string v) {
  while (!v.empty() && (v.back() == ' ' || v.back() == '\r')) v.pop_back();
  if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front())
    v = v.substr(1, v.size() - 2);
  return v;
}

}  // namespace

std::optional<std::string> store_field(const std::string& yaml, const std::string& id, const std::string& field) {
  std::istringstream in(yaml);
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("  - id: ", 0) == 0) {
      inside = unquote(line.substr(8)) == id;
      continue;
    }
    if (inside && line.rfind("    " + field + ": ", 0) == 0) return unquote(line.substr(field.size() + 6));
  }
  return std::nullopt;
}

std::map<std::string, double> parse_metrics(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto sp = line.rfind(' ');
    if (sp == std::string::npos) continue;
    try {
      out[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
    } catch (...) {
    }
  }
  return out;
}

}  // namespace frontdoor::test
