#pragma once
// Lifecycle and error events as JSON lines on stderr (SPEC §6). Thread-safe;
// one write(2) per line so lines from several threads never interleave.
// Never pass a token or a key hash here.
#include <cstdint>
#include <initializer_list>
#include <memory>
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

// A growable byte buffer written through raw pointers, for lines on the
// request path (the access log): reserve the most a line may take, write,
// commit. One bounds check per line instead of one per field.
class LineBuffer {
 public:
  // A pointer to at least `n` writable bytes after the current end.
  char* reserve(std::size_t n);
  void commit(const char* end) noexcept { size_ = static_cast<std::size_t>(end - data_.get()); }
  const char* data() const noexcept { return data_.get(); }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  void clear() noexcept { size_ = 0; }

 private:
  std::unique_ptr<char[]> data_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

// Writers for LineBuffer: each returns the new end. Room needed:
// write_json_string 2 + 6 × s.size(), write_timestamp 24, write_uint 20.
char* write_json_string(char* p, std::string_view s) noexcept;
char* write_timestamp(char* p) noexcept;
char* write_uint(char* p, std::uint64_t v) noexcept;
inline char* write_raw(char* p, std::string_view s) noexcept {
  __builtin_memcpy(p, s.data(), s.size());
  return p + s.size();
}

}  // namespace frontdoor::core::log
