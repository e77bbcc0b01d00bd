#include "frontdoor/core/log.hpp"

#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <time.h>

namespace frontdoor::core::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::info)};

constexpr std::string_view level_name(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "info";
}
}  // namespace

void set_level(Level level) noexcept { g_level.store(static_cast<int>(level), std::memory_order_relaxed); }

bool enabled(Level level) noexcept {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

namespace {
// 0: copied as is; otherwise the character to write after a backslash ('u'
// for \u00XX). A table keeps the common case to one load per character.
constexpr auto kJsonEscape = [] {
  std::array<char, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = 'u';
  t['"'] = '"';
  t['\\'] = '\\';
  t['\n'] = 'n';
  t['\r'] = 'r';
  t['\t'] = 't';
  t[0x7f] = 'u';
  return t;
}();
}  // namespace

char* write_json_string(char* p, std::string_view s) noexcept {
  static constexpr char kHex[] = "0123456789abcdef";
  *p++ = '"';
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    char e = kJsonEscape[u];
    if (e == 0) {
      *p++ = c;
      continue;
    }
    *p++ = '\\';
    *p++ = e;
    if (e == 'u') {
      *p++ = '0';
      *p++ = '0';
      *p++ = kHex[u >> 4];
      *p++ = kHex[u & 15];
    }
  }
  *p++ = '"';
  return p;
}

void append_json_string(std::string& out, std::string_view s) {
  auto old = out.size();
  out.resize(old + 2 + 6 * s.size());
  char* end = write_json_string(out.data() + old, s);
  out.resize(static_cast<std::size_t>(end - out.data()));
}

char* write_timestamp(char* p) noexcept {
  // Formatting the date costs more than the rest of an access-log line:
  // each thread formats it once per second and appends milliseconds.
  thread_local std::time_t cached_second = -1;
  thread_local char cached[64];  // roomy enough for any int the formatter may print
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != cached_second) {
    std::tm tm{};
    gmtime_r(&ts.tv_sec, &tm);
    std::snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    cached_second = ts.tv_sec;
  }
  std::memcpy(p, cached, 20);
  p += 20;
  auto ms = static_cast<int>(ts.tv_nsec / 1000000);
  *p++ = static_cast<char>('0' + ms / 100);
  *p++ = static_cast<char>('0' + ms / 10 % 10);
  *p++ = static_cast<char>('0' + ms % 10);
  *p++ = 'Z';
  return p;
}

void append_timestamp(std::string& out) {
  char buf[32];
  char* end = write_timestamp(buf);
  out.append(buf, static_cast<std::size_t>(end - buf));
}

char* write_uint(char* p, std::uint64_t v) noexcept {
  return std::to_chars(p, p + 20, v).ptr;
}

char* LineBuffer::reserve(std::size_t n) {
  if (size_ + n > capacity_) {
    std::size_t cap = std::max<std::size_t>(capacity_ * 2, size_ + n);
    cap = std::max<std::size_t>(cap, 64 * 1024);
    auto bigger = std::make_unique<char[]>(cap);
    if (size_) std::memcpy(bigger.get(), data_.get(), size_);
    data_ = std::move(bigger);
    capacity_ = cap;
  }
  return data_.get() + size_;
}

void write(Level level, std::string_view msg, std::initializer_list<Field> fields) {
  if (!enabled(level)) return;
  std::string line;
  line.reserve(128);
  line.append("{\"ts\":\"");
  append_timestamp(line);
  line.append("\",\"level\":\"").append(level_name(level)).append("\",\"msg\":");
  append_json_string(line, msg);
  for (const auto& f : fields) {
    line.push_back(',');
    append_json_string(line, f.key);
    line.push_back(':');
    if (f.raw)
      line.append(f.value);
    else
      append_json_string(line, f.value);
  }
  line.append("}\n");
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace frontdoor::core::log
