#pragma once
// Schema-checking helpers over yaml-cpp nodes, private to the config module.
//
// yaml-cpp's own conversions (as<T>) are too lenient for a config that must
// refuse what it does not understand: they accept "yes"/"on" as booleans,
// quoted numbers, negative numbers for unsigned types, and they keep
// duplicate mapping keys silently. These helpers check the exact shape and
// record every problem instead of stopping at the first, so an operator
// fixes a file in one pass.
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace frontdoor::config::detail {

// 1-based line of a node, or 0 when yaml-cpp has no position for it.
int line_of(const YAML::Node& node) noexcept;

// Problems found in one file, rendered as "<file>:<line>: <path>: <problem>".
class Problems {
 public:
  explicit Problems(std::string file) : file_(std::move(file)) {}

  // `line` is 1-based; 0 leaves the line out. An empty `path` leaves the
  // field out (for problems with the file as a whole).
  void add(int line, std::string_view path, std::string_view problem);

  bool empty() const noexcept { return entries_.empty(); }

  // All problems in file order (by line, then in the order found), one per line.
  std::string joined() const;
  // The same, one string each.
  std::vector<std::string> lines() const;

 private:
  struct Entry {
    int line;
    std::string text;
  };
  std::string file_;
  std::vector<Entry> entries_;
};

// One value in the document with the dotted path and line used to report it.
struct Item {
  YAML::Node node;
  std::string path;  // "endpoints.ep1.timeouts.connect", "listeners[0]"
  int line = 0;      // of the value, or of its key when the value has none
  int key_line = 0;  // of its key in the parent mapping; `line` for list elements
};

// Scalar readers: they return nullopt after recording a problem at `item`.
// Numbers and booleans must be plain scalars: a quoted "5" is a string,
// and a string where a number belongs is a mistake worth reporting.
std::optional<std::uint64_t> read_uint(Problems& problems, const Item& item, std::uint64_t min,
                                       std::uint64_t max);
std::optional<bool> read_bool(Problems& problems, const Item& item);
std::optional<std::string> read_string(Problems& problems, const Item& item);

enum class ZeroDuration { allowed, refused };
std::optional<std::chrono::milliseconds> read_duration(Problems& problems, const Item& item,
                                                       ZeroDuration zero);

// The elements of a sequence as Items ("path[0]", "path[1]", ...); records
// a problem and returns nullopt when the node is not a sequence.
std::optional<std::vector<Item>> read_sequence(Problems& problems, const Item& item);

// A mapping whose keys were checked once: non-string, duplicate and
// (when a set of allowed keys is given) unknown keys are recorded as problems
// and left out, so lookups see each valid key exactly once.
class MapReader {
 public:
  // Any key is allowed (for maps keyed by names, such as endpoints);
  // `duplicate_what` names the thing a repeated key duplicates.
  struct AnyKey {
    std::string_view duplicate_what;
  };
  MapReader(Problems& problems, const Item& item, AnyKey any);

  // Only `allowed` keys are accepted. A null node (a section left empty) is
  // an empty mapping, since every key of such a section has a default.
  MapReader(Problems& problems, const Item& item, std::vector<std::string_view> allowed);

  // False when the node was neither a mapping nor null.
  bool is_mapping() const noexcept { return is_mapping_; }

  const Item& item() const noexcept { return item_; }

  // Valid fields in file order.
  const std::vector<std::pair<std::string, Item>>& fields() const noexcept { return fields_; }

  // The field `key`, if present.
  const Item* find(std::string_view key) const noexcept;

  // Typed lookups: when the key is present and valid, `out` is assigned;
  // otherwise `out` keeps its default and the problem is recorded.
  void read(std::string_view key, std::uint64_t& out, std::uint64_t min, std::uint64_t max);
  void read(std::string_view key, unsigned& out, unsigned min, unsigned max);
  void read(std::string_view key, bool& out);
  void read(std::string_view key, std::string& out);
  void read(std::string_view key, std::chrono::milliseconds& out, ZeroDuration zero);

 private:
  void collect(const std::vector<std::string_view>* allowed, std::string_view duplicate_what);

  Problems& problems_;
  Item item_;
  bool is_mapping_ = false;
  std::vector<std::pair<std::string, Item>> fields_;
};

}  // namespace frontdoor::config::detail
