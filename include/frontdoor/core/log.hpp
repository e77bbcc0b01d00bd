#pragma once
// Lifecycle and error events as JSON lines on stderr (SPEC §6). Thread-safe;
// one write(2) per line so lines from several threads never interleave.
// Never pass a token or a key hash here.
#include <initializer_list>
#include <string>
#include <string_view>

namespace frontdoor::core::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

void set_level(Level level) noexcept;
bool enabled(Level level) noexcept;

struct Field {
  std::string_view key;
  std::string_view value;
  bool raw = false;  // value is already JSON (a number, true, false)
};

void write(Level level, std::string_view msg, std::initializer_list<Field> fields = {});

inline void debug(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::debug, m, f); }
inline void info(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::info, m, f); }
inline void warn(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::warn, m, f); }
inline void error(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::error, m, f); }

// Appends s as a JSON string literal (with quotes), escaping as RFC 8259 requires.
void append_json_string(std::string& out, std::string_view s);

// Appends the current UTC time as RFC 3339 with milliseconds.
void append_timestamp(std::string& out);

}  // namespace frontdoor::core::log
