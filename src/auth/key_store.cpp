#include "frontdoor/auth/key_store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <thread>
#include <unordered_map>

namespace frontdoor::auth {
namespace {

// Loading reads libyaml's event stream and builds each Key as its events
// arrive: no document tree is ever held, which is what keeps a 100,000-key
// store within a few hundred milliseconds and tens of megabytes (yaml-cpp's
// node API needs ~9 s and ~1 GB for the same file).

constexpr std::size_t kMaxReportedErrors = 20;

std::string errno_text(int err) { return std::strerror(err); }

// Owns the current libyaml event; next() replaces it.
class EventReader {
 public:
  EventReader(const std::string& path, std::FILE* file) : path_(path) {
    if (!yaml_parser_initialize(&parser_)) throw StoreError(path_ + ": out of memory");
    yaml_parser_set_input_file(&parser_, file);
  }
  ~EventReader() {
    if (have_event_) yaml_event_delete(&event_);
    yaml_parser_delete(&parser_);
  }
  EventReader(const EventReader&) = delete;
  EventReader& operator=(const EventReader&) = delete;

  const yaml_event_t& next() {
    if (have_event_) yaml_event_delete(&event_);
    have_event_ = false;
    if (!yaml_parser_parse(&parser_, &event_)) {
      std::string msg = path_ + ":" + std::to_string(parser_.problem_mark.line + 1) + ": ";
      msg += parser_.problem ? parser_.problem : "malformed YAML";
      if (parser_.context) msg += std::string(" ") + parser_.context;
      throw StoreError(msg);
    }
    have_event_ = true;
    // Aliases would let a small file expand into a huge one; the store
    // format never needs them.
    if (event_.type == YAML_ALIAS_EVENT) {
      throw StoreError(path_ + ":" + std::to_string(line()) +
                       ": aliases (*name) are not supported in a key store");
    }
    return event_;
  }
  const yaml_event_t& event() const noexcept { return event_; }
  yaml_event_type_t type() const noexcept { return event_.type; }
  std::size_t line() const noexcept { return event_.start_mark.line + 1; }

  bool is_scalar() const noexcept { return event_.type == YAML_SCALAR_EVENT; }
  std::string_view scalar() const noexcept {
    return {reinterpret_cast<const char*>(event_.data.scalar.value), event_.data.scalar.length};
  }
  // A plain, untagged scalar: the only kind that can mean null or a boolean.
  bool is_plain() const noexcept {
    return event_.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && event_.data.scalar.tag == nullptr;
  }
  bool is_null() const noexcept {
    if (!is_scalar() || !is_plain()) return false;
    const std::string_view s = scalar();
    return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
  }

  // The current event starts a node (scalar, sequence or mapping): consume
  // the rest of it, so that parsing can go on after a reported error.
  void skip_node() {
    if (event_.type != YAML_SEQUENCE_START_EVENT && event_.type != YAML_MAPPING_START_EVENT) return;
    int depth = 1;
    while (depth > 0) {
      next();
      if (event_.type == YAML_SEQUENCE_START_EVENT || event_.type == YAML_MAPPING_START_EVENT) {
        ++depth;
      } else if (event_.type == YAML_SEQUENCE_END_EVENT || event_.type == YAML_MAPPING_END_EVENT) {
        --depth;
      }
    }
  }

 private:
  std::string path_;
  yaml_parser_t parser_{};
  yaml_event_t event_{};
  bool have_event_ = false;
};

std::optional<bool> parse_bool(std::string_view s) {
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

std::optional<std::uint64_t> parse_uint(std::string_view s) {
  std::uint64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::optional<double> parse_number(std::string_view s) {
  double v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty() || !std::isfinite(v)) {
    return std::nullopt;
  }
  return v;
}

class StoreParser {
 public:
  StoreParser(const std::string& path, std::FILE* file) : path_(path), in_(path, file) {}

  std::vector<Key> parse() {
    try {
      parse_document();
    } catch (const StoreError& e) {
      // A syntax error ends parsing; the errors found before it still count.
      errors_.push_back(e.what());
    }
    if (!errors_.empty()) {
      std::string msg;
      for (std::size_t i = 0; i < errors_.size(); ++i) {
        if (i) msg += '\n';
        msg += errors_[i];
      }
      if (suppressed_ > 0) msg += "\n(" + std::to_string(suppressed_) + " more errors)";
      throw StoreError(msg);
    }
    return std::move(keys_);
  }

 private:
  void parse_document() {
    in_.next();  // stream start
    if (in_.next().type == YAML_STREAM_END_EVENT) {
      throw StoreError(path_ + ":1: expected a mapping with a \"keys\" list (empty file)");
    }
    if (in_.next().type != YAML_MAPPING_START_EVENT) {
      throw StoreError(at(in_.line()) + "expected a mapping with a \"keys\" list");
    }
    bool seen_keys = false;
    while (in_.next().type != YAML_MAPPING_END_EVENT) {
      const std::size_t line = in_.line();
      const std::string field = in_.is_scalar() ? std::string(in_.scalar()) : std::string();
      if (field == "keys" && !seen_keys) {
        seen_keys = true;
        parse_keys();
      } else {
        error(line, field.empty() ? "(key)" : field,
              field == "keys" ? "duplicate field" : "unknown field");
        in_.skip_node();
        in_.next();
        in_.skip_node();
      }
    }
    in_.next();  // document end
    if (in_.next().type != YAML_STREAM_END_EVENT) {
      error(in_.line(), "", "a key store holds exactly one YAML document");
    }
    if (!seen_keys) error(1, "keys", "required field missing");
  }

  std::string at(std::size_t line) const { return path_ + ":" + std::to_string(line) + ": "; }

  void error(std::size_t line, std::string_view field, std::string_view problem) {
    if (errors_.size() >= kMaxReportedErrors) {
      ++suppressed_;
      return;
    }
    std::string msg = at(line);
    if (!field.empty()) {
      msg += field;
      msg += ": ";
    }
    msg += problem;
    errors_.push_back(std::move(msg));
  }

  void parse_keys() {
    in_.next();
    if (in_.is_null()) return;  // "keys:" alone: an empty store
    if (in_.type() != YAML_SEQUENCE_START_EVENT) {
      error(in_.line(), "keys", "expected a list of keys");
      in_.skip_node();
      return;
    }
    for (std::size_t i = 0; in_.next().type != YAML_SEQUENCE_END_EVENT; ++i) {
      const std::string where = "keys[" + std::to_string(i) + "]";
      if (in_.type() != YAML_MAPPING_START_EVENT) {
        error(in_.line(), where, "expected a mapping");
        in_.skip_node();
        continue;
      }
      parse_key(i, where);
    }
  }

  // Reads the value of field `name` as a scalar; reports and skips anything else.
  bool value_scalar(const std::string& name) {
    in_.next();
    if (in_.is_scalar()) return true;
    error(in_.line(), name, "expected a single value");
    in_.skip_node();
    return false;
  }

  std::optional<std::optional<core::UnixSeconds>> value_timestamp(const std::string& name) {
    if (!value_scalar(name)) return std::nullopt;
    if (in_.is_null()) return std::optional<core::UnixSeconds>{};
    if (auto t = core::parse_rfc3339(in_.scalar())) return std::optional<core::UnixSeconds>{*t};
    error(in_.line(), name, "expected an RFC 3339 timestamp like 2026-11-22T04:00:00Z, or null");
    return std::nullopt;
  }

  std::optional<Access> value_access(const std::string& name) {
    if (!value_scalar(name)) return std::nullopt;
    if (auto a = parse_access(in_.scalar())) return a;
    error(in_.line(), name,
          "expected none, read or read_write, got \"" + std::string(in_.scalar()) + "\"");
    return std::nullopt;
  }

  void parse_key(std::size_t index, const std::string& where) {
    const std::size_t start_line = in_.line();
    const std::size_t errors_before = errors_.size() + suppressed_;
    Key k;
    std::unordered_map<std::string, std::size_t> seen;  // field -> line
    std::size_t id_line = 0;
    std::size_t hash_line = 0;
    bool have_hash = false;
    bool have_id = false;

    while (in_.next().type != YAML_MAPPING_END_EVENT) {
      const std::size_t line = in_.line();
      if (!in_.is_scalar()) {
        error(line, where, "expected a field name");
        in_.skip_node();
        in_.next();
        in_.skip_node();
        continue;
      }
      const std::string field(in_.scalar());
      const std::string name = where + "." + field;
      if (!seen.emplace(field, line).second) {
        error(line, name, "duplicate field");
        in_.next();
        in_.skip_node();
        continue;
      }
      if (field == "id") {
        if (!value_scalar(name)) continue;
        id_line = in_.line();
        if (!valid_key_id(in_.scalar())) {
          error(id_line, name, "expected 1 to 128 characters of A-Z a-z 0-9 _ - .");
          continue;
        }
        k.id = std::string(in_.scalar());
        have_id = true;
      } else if (field == "name") {
        if (!value_scalar(name)) continue;
        k.name = std::string(in_.scalar());
      } else if (field == "hash") {
        if (!value_scalar(name)) continue;
        hash_line = in_.line();
        // The value is never echoed: a token pasted here by mistake must not
        // end up in a log.
        if (auto d = parse_hash_form(in_.scalar())) {
          k.hash = *d;
          have_hash = true;
        } else {
          error(hash_line, name, "expected sha256:<64 hex>");
        }
      } else if (field == "prefix") {
        if (!value_scalar(name)) continue;
        if (!in_.is_null()) k.prefix = std::string(in_.scalar());
      } else if (field == "enabled") {
        if (!value_scalar(name)) continue;
        const auto b = in_.is_plain() ? parse_bool(in_.scalar()) : std::nullopt;
        if (b) {
          k.enabled = *b;
        } else {
          error(in_.line(), name, "expected true or false");
        }
      } else if (field == "created_at") {
        if (auto t = value_timestamp(name)) k.created_at = *t;
      } else if (field == "last_used_at") {
        if (auto t = value_timestamp(name)) k.last_used_at = *t;
      } else if (field == "expires_at") {
        if (auto t = value_timestamp(name)) k.expires_at = *t;
      } else if (field == "management") {
        if (auto a = value_access(name)) k.management = *a;
      } else if (field == "legacy_access") {
        if (auto a = value_access(name)) k.legacy_access = *a;
      } else if (field == "endpoints") {
        parse_endpoints(k, name);
      } else if (field == "rate_limit") {
        parse_rate_limit(k, name);
      } else if (field == "requests_total") {
        if (!value_scalar(name)) continue;
        if (auto n = parse_uint(in_.scalar())) {
          k.requests_total = *n;
        } else {
          error(in_.line(), name, "expected a non-negative integer");
        }
      } else {
        error(line, name, "unknown field");
        in_.next();
        in_.skip_node();
      }
    }

    if (!seen.contains("id")) error(start_line, where + ".id", "required field missing");
    if (!seen.contains("hash")) error(start_line, where + ".hash", "required field missing");
    if (seen.contains("legacy_access") && seen.contains("endpoints")) {
      error(seen["legacy_access"], where + ".legacy_access",
            "a legacy key has no endpoints map; set either legacy_access or endpoints");
    }
    if (have_id) {
      auto [it, fresh] = ids_.emplace(k.id, index);
      if (!fresh) {
        error(id_line, where + ".id",
              "duplicate id " + k.id + " (also keys[" + std::to_string(it->second) + "])");
      }
    }
    if (have_hash) {
      auto [it, fresh] = hashes_.emplace(k.hash, index);
      if (!fresh) {
        error(hash_line, where + ".hash",
              "duplicate hash (same token as keys[" + std::to_string(it->second) + "])");
      }
    }
    if (errors_.size() + suppressed_ == errors_before) keys_.push_back(std::move(k));
  }

  void parse_endpoints(Key& k, const std::string& name) {
    in_.next();
    if (in_.type() != YAML_MAPPING_START_EVENT) {
      error(in_.line(), name, "expected a mapping of endpoint id to none, read or read_write");
      in_.skip_node();
      return;
    }
    bool seen_default = false;
    while (in_.next().type != YAML_MAPPING_END_EVENT) {
      const std::size_t line = in_.line();
      if (!in_.is_scalar() || in_.scalar().empty()) {
        error(line, name, "expected an endpoint id");
        in_.skip_node();
        in_.next();
        in_.skip_node();
        continue;
      }
      const std::string endpoint(in_.scalar());
      const std::string entry = name + "." + endpoint;
      const bool duplicate = endpoint == "*"
                                 ? seen_default
                                 : std::any_of(k.endpoints.begin(), k.endpoints.end(),
                                               [&](const auto& e) { return e.first == endpoint; });
      const auto a = value_access(entry);
      if (duplicate) {
        error(line, entry, "duplicate endpoint");
        continue;
      }
      if (!a) continue;
      if (endpoint == "*") {
        k.default_access = *a;
        seen_default = true;
      } else {
        k.endpoints.emplace_back(endpoint, *a);
      }
    }
    std::sort(k.endpoints.begin(), k.endpoints.end(),
              [](const auto& x, const auto& y) { return x.first < y.first; });
  }

  // Parsed in full, so that a typo is reported as such, and then refused as
  // a whole by parse_key.
  void parse_rate_limit(Key& k, const std::string& name) {
    in_.next();
    if (in_.is_null()) return;
    if (in_.type() != YAML_MAPPING_START_EVENT) {
      error(in_.line(), name, "expected a mapping with rps, burst and max_concurrent");
      in_.skip_node();
      return;
    }
    RateLimit rl;
    while (in_.next().type != YAML_MAPPING_END_EVENT) {
      const std::size_t line = in_.line();
      const std::string field = in_.is_scalar() ? std::string(in_.scalar()) : std::string();
      const std::string entry = name + "." + field;
      if (field != "rps" && field != "burst" && field != "max_concurrent") {
        error(line, field.empty() ? name : entry, "unknown field");
        in_.skip_node();
        in_.next();
        in_.skip_node();
        continue;
      }
      if (!value_scalar(entry)) continue;
      if (field == "rps") {
        const auto v = parse_number(in_.scalar());
        if (v && *v > 0) {
          rl.rps = *v;
        } else {
          error(in_.line(), entry, "expected a number greater than 0");
        }
      } else if (auto n = parse_uint(in_.scalar())) {
        (field == "burst" ? rl.burst : rl.max_concurrent) = *n;
      } else {
        error(in_.line(), entry, "expected a non-negative integer");
      }
    }
    k.rate_limit = rl;
  }

  std::string path_;
  EventReader in_;
  std::vector<Key> keys_;
  std::vector<std::string> errors_;
  std::size_t suppressed_ = 0;
  std::unordered_map<std::string, std::size_t> ids_;
  std::unordered_map<Digest, std::size_t, DigestHash> hashes_;
};

// ---- writing ----

bool is_reserved_word(std::string_view s) {
  static constexpr std::string_view kWords[] = {"null", "true", "false", "yes", "no",
                                                "on",   "off",  "y",     "n",   "~"};
  for (std::string_view w : kWords) {
    if (s.size() != w.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < s.size() && same; ++i) {
      same = (s[i] | 0x20) == w[i] || s[i] == w[i];
    }
    if (same) return true;
  }
  return false;
}

// Plain only when no YAML reader could take it for anything but this
// string: starts with a letter or '_', then letters, digits, '_', '-', '.'.
bool plain_safe(std::string_view s) {
  if (s.empty() || is_reserved_word(s)) return false;
  const char f = s.front();
  if (!((f >= 'a' && f <= 'z') || (f >= 'A' && f <= 'Z') || f == '_')) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

void append_escape(std::string& out, char kind, char32_t c, int digits) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  out += '\\';
  out += kind;
  for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4) out += kHex[(c >> shift) & 0xF];
}

// A code point that may stand raw inside a double-quoted scalar: libyaml's
// reader refuses C0 (but tab, LF, CR), DEL, C1 (but NEL), surrogates and
// U+FFFE/U+FFFF, and its scanner folds LF, CR, NEL, U+2028 and U+2029 as
// line breaks; a BOM is dropped at a line start. All of those, and every
// other noncharacter, are written as escapes instead, which libyaml turns
// back into exactly the same code point.
bool raw_in_quotes(char32_t c) noexcept {
  if (c < 0x20 || c == '"' || c == '\\') return false;
  if (c >= 0x7F && c <= 0x9F) return false;
  if (c == 0x2028 || c == 0x2029 || c == 0xFEFF) return false;
  return !is_noncharacter(c);
}

void append_scalar(std::string& out, std::string_view s) {
  if (plain_safe(s)) {
    out += s;
    return;
  }
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t start = i;
    const char32_t c = next_code_point(s, i);
    if (c == kInvalidUtf8) {
      // Not text (a hand-edited database, say): a YAML file cannot hold the
      // raw byte, so it becomes U+FFFD and the store stays readable.
      out += "\\uFFFD";
    } else if (raw_in_quotes(c)) {
      out.append(s.substr(start, i - start));
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c <= 0xFF) {
      append_escape(out, 'x', c, 2);
    } else if (c <= 0xFFFF) {
      append_escape(out, 'u', c, 4);
    } else {
      append_escape(out, 'U', c, 8);
    }
  }
  out += '"';
}

void append_time(std::string& out, const std::optional<core::UnixSeconds>& t) {
  out += t ? core::format_rfc3339(*t) : std::string("null");
}

void append_number(std::string& out, double v) {
  char buf[64];
  const auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, ec == std::errc() ? p : buf);
}

void write_all(int fd, std::string_view data, const std::string& what) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw StoreError(what + ": write failed: " + errno_text(errno));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::string parent_dir(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void fsync_dir(const std::string& path) {
  const int dfd = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) throw StoreError(parent_dir(path) + ": cannot open folder: " + errno_text(errno));
  const int rc = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  if (rc != 0) throw StoreError(parent_dir(path) + ": fsync failed: " + errno_text(err));
}

FileStamp stamp_from(const struct stat& st) {
  FileStamp f;
  f.dev = static_cast<std::uint64_t>(st.st_dev);
  f.ino = static_cast<std::uint64_t>(st.st_ino);
  f.size = static_cast<std::int64_t>(st.st_size);
  f.mtime_sec = static_cast<std::int64_t>(st.st_mtim.tv_sec);
  f.mtime_nsec = static_cast<std::int64_t>(st.st_mtim.tv_nsec);
  return f;
}

// Writes `data` to a new file `tmp` with `mode`, fsynced; unlinks it on
// failure. Returns the file's stamp, from its descriptor.
FileStamp write_temp_file(const std::string& tmp, std::string_view data, mode_t mode) {
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) throw StoreError(tmp + ": cannot create: " + errno_text(errno));
  FileStamp written;
  try {
    // open() applies the umask; the store's own mode must survive a rewrite.
    if (::fchmod(fd, mode) != 0) throw StoreError(tmp + ": chmod failed: " + errno_text(errno));
    write_all(fd, data, tmp);
    if (::fsync(fd) != 0) throw StoreError(tmp + ": fsync failed: " + errno_text(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw StoreError(tmp + ": stat failed: " + errno_text(errno));
    written = stamp_from(st);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw StoreError(tmp + ": close failed: " + errno_text(err));
  }
  return written;
}

std::atomic<unsigned> g_create_counter{0};

// Creates an empty store at `path` unless something is already there. The
// file appears whole (link of a finished temporary file), so a concurrent
// reader never sees it empty.
void create_empty_store(const std::string& path) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + ".new" +
                          std::to_string(g_create_counter.fetch_add(1));
  write_temp_file(tmp, "keys: []\n", 0600);
  const int rc = ::link(tmp.c_str(), path.c_str());
  const int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0 && err != EEXIST) throw StoreError(path + ": cannot create: " + errno_text(err));
  if (rc == 0) fsync_dir(path);
}

}  // namespace

std::vector<Key> load_yaml_store(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) throw StoreError(path + ": cannot open: " + errno_text(errno));
  std::setvbuf(file, nullptr, _IOFBF, 1 << 16);
  try {
    StoreParser parser(path, file);
    auto keys = parser.parse();
    std::fclose(file);
    return keys;
  } catch (...) {
    std::fclose(file);
    throw;
  }
}

std::string to_yaml(const std::vector<Key>& keys) {
  if (keys.empty()) return "keys: []\n";
  std::string out = "keys:\n";
  out.reserve(keys.size() * 400);
  for (const Key& k : keys) {
    out += "  - id: ";
    append_scalar(out, k.id);
    out += "\n    name: ";
    append_scalar(out, k.name);
    out += "\n    hash: ";
    out += hash_form(k.hash);
    out += "\n    prefix: ";
    append_scalar(out, k.prefix);
    out += "\n    enabled: ";
    out += k.enabled ? "true" : "false";
    out += "\n    created_at: ";
    append_time(out, k.created_at);
    out += "\n    last_used_at: ";
    append_time(out, k.last_used_at);
    out += "\n    expires_at: ";
    append_time(out, k.expires_at);
    out += "\n    management: ";
    out += to_string(k.management);
    out += '\n';
    if (k.legacy_access) {
      out += "    legacy_access: ";
      out += to_string(*k.legacy_access);
      out += '\n';
    } else {
      out += "    endpoints:\n      \"*\": ";
      out += to_string(k.default_access);
      out += '\n';
      for (const auto& [endpoint, access] : k.endpoints) {
        out += "      ";
        append_scalar(out, endpoint);
        out += ": ";
        out += to_string(access);
        out += '\n';
      }
    }
    if (k.rate_limit) {
      // rps is absent, not 0, on a limit of only max_concurrent: 0 is no rps.
      out += "    rate_limit: { ";
      if (k.rate_limit->rps > 0) {
        out += "rps: ";
        append_number(out, k.rate_limit->rps);
        out += ", ";
      }
      out += "burst: " + std::to_string(k.rate_limit->burst);
      out += ", max_concurrent: " + std::to_string(k.rate_limit->max_concurrent) + " }\n";
    }
    if (k.requests_total > 0)
      out += "    requests_total: " + std::to_string(k.requests_total) + "\n";
  }
  return out;
}

FileStamp stamp_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return stamp_from(st);
}

FileStamp write_yaml_store_atomic(const std::string& path, const std::vector<Key>& keys) {
  const std::string data = to_yaml(keys);
  mode_t mode = 0600;  // tokens' hashes are not secrets, but key names and scopes are private
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) mode = st.st_mode & 07777;
  // pid in the name: two processes never share a temporary file; within one
  // process the StoreLock the caller holds serializes writers.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const FileStamp written = write_temp_file(tmp, data, mode);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw StoreError(path + ": rename failed: " + errno_text(err));
  }
  // Without this the rename itself may be lost on a crash.
  fsync_dir(path);
  // rename(2) keeps the inode, size and mtime: this is the file now at
  // `path`, unless another writer has replaced it since.
  return written;
}

namespace {

// "5 s", or "250 ms" for a deadline that is not whole seconds.
std::string duration_text(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + " s";
  return std::to_string(d.count()) + " ms";
}

}  // namespace

StoreLock::StoreLock(const std::string& store_path, std::chrono::milliseconds deadline) {
  using Clock = std::chrono::steady_clock;
  constexpr std::chrono::milliseconds kMaxPause{50};
  const auto give_up = Clock::now() + deadline;
  std::chrono::milliseconds pause{1};
  for (;;) {
    fd_ = ::open(store_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      if (errno != ENOENT) throw StoreError(store_path + ": cannot open: " + errno_text(errno));
      create_empty_store(store_path);
      continue;
    }
    // Never a blocking flock: a writer that holds the lock forever (stopped
    // with Ctrl-Z, stuck on NFS) must not hold our thread forever (M4).
    while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      if (err == EINTR) continue;
      const auto now = Clock::now();
      if (err != EWOULDBLOCK || now >= give_up) {
        ::close(fd_);
        fd_ = -1;
        if (err != EWOULDBLOCK) throw StoreError(store_path + ": cannot lock: " + errno_text(err));
        throw StoreUnavailable(store_path + ": locked by another writer for more than " + duration_text(deadline));
      }
      std::this_thread::sleep_for(std::min<Clock::duration>(pause, give_up - now));
      pause = std::min(pause * 2, kMaxPause);
    }
    // While we waited, a writer may have renamed a new file over the path;
    // a lock on the old inode would then exclude nobody.
    struct stat locked {};
    struct stat current {};
    if (::fstat(fd_, &locked) == 0 && ::stat(store_path.c_str(), &current) == 0 &&
        locked.st_dev == current.st_dev && locked.st_ino == current.st_ino) {
      return;
    }
    ::close(fd_);
    fd_ = -1;
  }
}

StoreLock::~StoreLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the flock
}

}  // namespace frontdoor::auth
