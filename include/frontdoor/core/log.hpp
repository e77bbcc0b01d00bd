#pragma once
// Lifecycle and error events as JSON lines on stderr (SPEC §6). Thread-safe;
// one write(2) per line so lines from several threads never interleave.
// Never pass a token or a key hash here.
#include <chrono>
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
// Valid UTF-8 is kept as is; a byte that does not start a valid UTF-8
// sequence (request paths are arbitrary bytes) is written as \u00XX, so every
// line stays valid UTF-8 and the byte can still be read back: a real U+0080..
// U+00FF character is never escaped this way, it stays raw UTF-8.
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

// Writes batches of whole lines to a descriptor on its own thread, so that a
// slow reader (a container log driver, journald under backpressure, a full
// pipe) never blocks the threads that produce them. The queue is bounded:
// when more than `max_queued_bytes` wait, a new batch is dropped whole and
// its lines are counted. To a pipe, socket or terminal, writes go out in
// pieces of at most 4 KiB after poll() says the descriptor is writable, so
// the writer itself never sits in a write(2) it cannot leave; the descriptor
// keeps its blocking mode (it may be shared with other writers, e.g. stderr
// on the same pipe). A regular file or /dev/null takes each batch whole.
class AsyncWriter {
 public:
  AsyncWriter(int fd, std::size_t max_queued_bytes);
  // Writes what is queued for at most about 2 s, then drops the rest.
  ~AsyncWriter();
  AsyncWriter(const AsyncWriter&) = delete;
  AsyncWriter& operator=(const AsyncWriter&) = delete;

  // Queues `lines` (complete lines, "\n"-terminated). Never blocks on the
  // descriptor; false when dropped.
  bool submit(std::string_view lines);
  // Lines dropped: queue full, descriptor closed or broken, or still queued
  // when the writer had to give up at exit.
  std::uint64_t dropped_lines() const noexcept;
  // Waits until everything queued so far is written, at most `timeout`.
  // True when the queue is empty.
  bool drain(std::chrono::milliseconds timeout);

 private:
  struct Impl;  // the queue and the thread, kept out of this widely included header
  std::unique_ptr<Impl> impl_;
};

// The access log's writer: stdout, at most 8 MiB queued. Created on first use.
AsyncWriter& access_log_writer();
// Access-log lines dropped so far (0 when the writer was never used), for
// the metric frontdoor_access_log_dropped_total.
std::uint64_t access_log_dropped() noexcept;

}  // namespace frontdoor::core::log
