#include "frontdoor/core/log.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
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
bool needs_escape(unsigned char u) noexcept { return u < 0x20 || u == '"' || u == '\\' || u == 0x7f; }
}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t run = 0;  // start of the current run of plain characters
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto u = static_cast<unsigned char>(s[i]);
    if (!needs_escape(u)) continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (u) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      default:
        out.append("\\u00");
        out.push_back(kHex[u >> 4]);
        out.push_back(kHex[u & 15]);
    }
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('"');
}

void append_timestamp(std::string& out) {
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
  out.append(cached, 20);
  auto ms = static_cast<int>(ts.tv_nsec / 1000000);
  out.push_back(static_cast<char>('0' + ms / 100));
  out.push_back(static_cast<char>('0' + ms / 10 % 10));
  out.push_back(static_cast<char>('0' + ms % 10));
  out.push_back('Z');
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
