#include "config/yaml_reader.hpp"

#include <algorithm>
#include <limits>

#include "frontdoor/core/time.hpp"

namespace frontdoor::config::detail {
namespace {

// yaml-cpp tags a quoted scalar "!" and a plain one "?" (YAML 1.2 §6.9.1
// non-specific tags); only a plain scalar can be a number or a boolean.
bool is_plain_scalar(const YAML::Node& n) { return n.IsScalar() && n.Tag() != "!"; }

std::string uint_expectation(std::uint64_t min, std::uint64_t max) {
  if (max == std::numeric_limits<std::uint64_t>::max()) {
    return min == 0   ? "expected a non-negative integer"
           : min == 1 ? "expected a positive integer"
                      : "expected an integer of at least " + std::to_string(min);
  }
  return "expected an integer from " + std::to_string(min) + " to " + std::to_string(max);
}

Item child(const Item& parent, std::string path, const YAML::Node& node, int key_line) {
  int line = line_of(node);
  if (line == 0) line = key_line > 0 ? key_line : parent.line;
  return Item{node, std::move(path), line, key_line > 0 ? key_line : line};
}

}  // namespace

int line_of(const YAML::Node& node) noexcept {
  try {
    const YAML::Mark mark = node.Mark();
    return mark.is_null() || mark.line < 0 ? 0 : mark.line + 1;
  } catch (...) {
    // Mark() of an undefined node (a lookup that found nothing) throws.
    return 0;
  }
}

void Problems::add(int line, std::string_view path, std::string_view problem) {
  std::string text = file_;
  if (line > 0) {
    text += ':';
    text += std::to_string(line);
  }
  text += ": ";
  if (!path.empty()) {
    text += path;
    text += ": ";
  }
  text += problem;
  entries_.push_back(Entry{line, std::move(text)});
}

std::vector<std::string> Problems::lines() const {
  std::vector<const Entry*> sorted;
  sorted.reserve(entries_.size());
  for (const Entry& e : entries_) sorted.push_back(&e);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const Entry* a, const Entry* b) { return a->line < b->line; });
  std::vector<std::string> out;
  out.reserve(sorted.size());
  for (const Entry* e : sorted) out.push_back(e->text);
  return out;
}

std::string Problems::joined() const {
  std::string out;
  for (const std::string& line : lines()) {
    if (!out.empty()) out += '\n';
    out += line;
  }
  return out;
}

std::optional<std::uint64_t> read_uint(Problems& problems, const Item& item, std::uint64_t min,
                                       std::uint64_t max) {
  // Digits only: no sign, no "0x", no "1_000" or "1e3", which YAML 1.1
  // readers disagree about.
  const auto fail = [&] {
    problems.add(item.line, item.path, uint_expectation(min, max));
    return std::nullopt;
  };
  if (!is_plain_scalar(item.node)) return fail();
  const std::string& s = item.node.Scalar();
  if (s.empty()) return fail();
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return fail();
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10) return fail();
    v = v * 10 + d;
  }
  if (v < min || v > max) return fail();
  return v;
}

std::optional<bool> read_bool(Problems& problems, const Item& item) {
  // YAML 1.2 core schema booleans only; "yes", "on" and "y" (YAML 1.1) are
  // exactly the kind of value that means something else to someone.
  if (is_plain_scalar(item.node)) {
    const std::string& s = item.node.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
  }
  problems.add(item.line, item.path, "expected true or false");
  return std::nullopt;
}

std::optional<std::string> read_string(Problems& problems, const Item& item) {
  if (!item.node.IsScalar()) {
    problems.add(item.line, item.path, "expected a string");
    return std::nullopt;
  }
  return item.node.Scalar();
}

std::optional<std::chrono::milliseconds> read_duration(Problems& problems, const Item& item,
                                                       ZeroDuration zero) {
  std::optional<std::chrono::milliseconds> d;
  if (item.node.IsScalar()) d = core::parse_duration(item.node.Scalar());
  if (!d) {
    problems.add(item.line, item.path, R"(expected a duration like "3s")");
    return std::nullopt;
  }
  if (zero == ZeroDuration::refused && d->count() == 0) {
    problems.add(item.line, item.path, R"(expected a duration greater than 0, like "3s")");
    return std::nullopt;
  }
  return d;
}

std::optional<std::vector<Item>> read_sequence(Problems& problems, const Item& item) {
  if (!item.node.IsSequence()) {
    problems.add(item.line, item.path, "expected a list");
    return std::nullopt;
  }
  std::vector<Item> out;
  out.reserve(item.node.size());
  std::size_t i = 0;
  for (const YAML::Node& element : item.node) {
    out.push_back(child(item, item.path + "[" + std::to_string(i++) + "]", element, 0));
  }
  return out;
}

MapReader::MapReader(Problems& problems, const Item& item, AnyKey any)
    : problems_(problems), item_(item) {
  collect(nullptr, any.duplicate_what);
}

MapReader::MapReader(Problems& problems, const Item& item, std::vector<std::string_view> allowed)
    : problems_(problems), item_(item) {
  collect(&allowed, "key");
}

void MapReader::collect(const std::vector<std::string_view>* allowed,
                        std::string_view duplicate_what) {
  if (item_.node.IsNull()) {
    is_mapping_ = true;
    return;
  }
  if (!item_.node.IsMap()) {
    problems_.add(item_.line, item_.path, "expected a mapping");
    return;
  }
  is_mapping_ = true;
  const std::string prefix = item_.path.empty() ? "" : item_.path + ".";
  for (const auto& kv : item_.node) {
    const YAML::Node& key = kv.first;
    const int key_line = line_of(key) > 0 ? line_of(key) : item_.line;
    if (!key.IsScalar()) {
      problems_.add(key_line, item_.path, "expected a string as key");
      continue;
    }
    const std::string& name = key.Scalar();
    const std::string path = prefix + name;
    // yaml-cpp keeps every occurrence of a repeated key, and node[key]
    // would silently pick the first: catch the repeat here.
    const auto seen = std::find_if(fields_.begin(), fields_.end(),
                                   [&](const auto& f) { return f.first == name; });
    if (seen != fields_.end()) {
      problems_.add(key_line, path,
                    "duplicate " + std::string(duplicate_what) + ", first defined at line " +
                        std::to_string(seen->second.key_line));
      continue;
    }
    if (allowed != nullptr && std::find(allowed->begin(), allowed->end(), name) == allowed->end()) {
      problems_.add(key_line, path, "unknown key");
      continue;
    }
    fields_.emplace_back(name, child(item_, path, kv.second, key_line));
  }
}

const Item* MapReader::find(std::string_view key) const noexcept {
  for (const auto& [name, item] : fields_) {
    if (name == key) return &item;
  }
  return nullptr;
}

void MapReader::read(std::string_view key, std::uint64_t& out, std::uint64_t min,
                     std::uint64_t max) {
  if (const Item* it = find(key)) {
    if (auto v = read_uint(problems_, *it, min, max)) out = *v;
  }
}

void MapReader::read(std::string_view key, unsigned& out, unsigned min, unsigned max) {
  if (const Item* it = find(key)) {
    if (auto v = read_uint(problems_, *it, min, max)) out = static_cast<unsigned>(*v);
  }
}

void MapReader::read(std::string_view key, bool& out) {
  if (const Item* it = find(key)) {
    if (auto v = read_bool(problems_, *it)) out = *v;
  }
}

void MapReader::read(std::string_view key, std::string& out) {
  if (const Item* it = find(key)) {
    if (auto v = read_string(problems_, *it)) out = std::move(*v);
  }
}

void MapReader::read(std::string_view key, std::chrono::milliseconds& out, ZeroDuration zero) {
  if (const Item* it = find(key)) {
    if (auto v = read_duration(problems_, *it, zero)) out = *v;
  }
}

}  // namespace frontdoor::config::detail
