#include "frontdoor/core/time.hpp"

#include <cstdio>
#include <limits>

namespace frontdoor::core {
namespace {

// The parsers below read fixed-width fields by hand rather than through
// sscanf/strptime/timegm: those depend on the locale and the TZ environment,
// accept leading blanks and signs, and cannot report trailing garbage.

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// Reads exactly `width` decimal digits at s[pos].
bool read_fixed(std::string_view s, std::size_t pos, std::size_t width, int& out) noexcept {
  if (pos + width > s.size()) return false;
  int v = 0;
  for (std::size_t i = pos; i < pos + width; ++i) {
    if (!is_digit(s[i])) return false;
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  return true;
}

}  // namespace

UnixSeconds now_unix() noexcept {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

std::optional<UnixSeconds> parse_rfc3339(std::string_view s) noexcept {
  using namespace std::chrono;
  // RFC 3339 §5.6: full-date "T" partial-time time-offset, where "T" and "Z"
  // may be lower case (§5.6 NOTE) and the seconds may carry a fraction.
  int year = 0, mon = 0, mday = 0, hour = 0, min = 0, sec = 0;
  if (!read_fixed(s, 0, 4, year) || s.size() < 20 || s[4] != '-' || !read_fixed(s, 5, 2, mon) ||
      s[7] != '-' || !read_fixed(s, 8, 2, mday) || (s[10] != 'T' && s[10] != 't') ||
      !read_fixed(s, 11, 2, hour) || s[13] != ':' || !read_fixed(s, 14, 2, min) || s[16] != ':' ||
      !read_fixed(s, 17, 2, sec)) {
    return std::nullopt;
  }
  std::size_t pos = 19;
  if (s[pos] == '.') {
    // Whole-second precision is all frontdoor keeps: the fraction is only
    // validated, then dropped (truncation, never rounding into the next second).
    std::size_t start = ++pos;
    while (pos < s.size() && is_digit(s[pos])) ++pos;
    if (pos == start) return std::nullopt;
  }
  if (pos >= s.size()) return std::nullopt;

  int offset_minutes = 0;
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    int off_h = 0, off_m = 0;
    if (!read_fixed(s, pos + 1, 2, off_h) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !read_fixed(s, pos + 4, 2, off_m) || off_h > 23 || off_m > 59) {
      return std::nullopt;
    }
    offset_minutes = (off_h * 60 + off_m) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;

  const year_month_day ymd{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(mon)},
                           std::chrono::day{static_cast<unsigned>(mday)}};
  // ymd.ok() knows month lengths and leap years; sec 60 is a leap second,
  // which Unix time cannot represent: it lands on the next second, as POSIX does.
  if (!ymd.ok() || hour > 23 || min > 59 || sec > 60) return std::nullopt;

  const auto days = sys_days{ymd}.time_since_epoch().count();
  return static_cast<UnixSeconds>(days) * 86400 + hour * 3600 + min * 60 + sec -
         static_cast<UnixSeconds>(offset_minutes) * 60;
}

std::string format_rfc3339(UnixSeconds t) {
  using namespace std::chrono;
  const sys_seconds tp{seconds{t}};
  const auto day_start = floor<days>(tp);
  const year_month_day ymd{day_start};
  const hh_mm_ss hms{tp - day_start};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<int>(hms.seconds().count()));
  return buf;
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view s) noexcept {
  // Integer arithmetic throughout: "1.1s" must be exactly 1100ms, which a
  // double would not guarantee, and overflow must be detected, not wrapped.
  std::size_t pos = 0;
  std::uint64_t whole = 0;
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  while (pos < s.size() && is_digit(s[pos])) {
    const auto d = static_cast<std::uint64_t>(s[pos] - '0');
    if (whole > (kMax - d) / 10) return std::nullopt;
    whole = whole * 10 + d;
    ++pos;
  }
  if (pos == 0) return std::nullopt;  // no leading digit: "", "-1s", ".5s", "s"

  // Up to 9 fraction digits are kept (finer than a millisecond of an hour
  // needs); more are accepted and ignored.
  std::uint64_t frac = 0;
  std::uint64_t frac_scale = 1;
  if (pos < s.size() && s[pos] == '.') {
    const std::size_t start = ++pos;
    while (pos < s.size() && is_digit(s[pos])) {
      if (frac_scale < 1'000'000'000) {
        frac = frac * 10 + static_cast<std::uint64_t>(s[pos] - '0');
        frac_scale *= 10;
      }
      ++pos;
    }
    if (pos == start) return std::nullopt;  // "5.s"
  }

  const std::string_view unit = s.substr(pos);
  std::uint64_t unit_ms = 0;
  if (unit == "ms") {
    unit_ms = 1;
  } else if (unit == "s") {
    unit_ms = 1000;
  } else if (unit == "m") {
    unit_ms = 60'000;
  } else if (unit == "h") {
    unit_ms = 3'600'000;
  } else {
    return std::nullopt;
  }

  if (whole > kMax / unit_ms) return std::nullopt;
  const std::uint64_t total = whole * unit_ms + frac * unit_ms / frac_scale;
  if (total > kMax) return std::nullopt;
  return std::chrono::milliseconds{static_cast<std::int64_t>(total)};
}

}  // namespace frontdoor::core
