#include "frontdoor/core/time.hpp"

#include <gtest/gtest.h>

namespace frontdoor::core {
namespace {

using std::chrono::milliseconds;

TEST(ParseRfc3339, UtcWithZ) {
  EXPECT_EQ(parse_rfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_rfc3339("2026-11-22T04:00:00Z"), 1795320000);
  EXPECT_EQ(parse_rfc3339("2000-03-01T00:00:00Z"), 951868800);
  EXPECT_EQ(parse_rfc3339("1969-12-31T23:59:59Z"), -1);
}

TEST(ParseRfc3339, LowerCaseSeparators) {
  EXPECT_EQ(parse_rfc3339("2026-11-22t04:00:00z"), 1795320000);
}

TEST(ParseRfc3339, FractionIsTruncated) {
  EXPECT_EQ(parse_rfc3339("2026-11-22T04:00:00.999999Z"), 1795320000);
  EXPECT_EQ(parse_rfc3339("2026-11-22T04:00:00.1Z"), 1795320000);
}

TEST(ParseRfc3339, NumericOffsets) {
  EXPECT_EQ(parse_rfc3339("2026-11-22T06:00:00+02:00"), 1795320000);
  EXPECT_EQ(parse_rfc3339("2026-11-21T23:30:00-04:30"), 1795320000);
  EXPECT_EQ(parse_rfc3339("2026-11-22T04:00:00+00:00"), 1795320000);
  EXPECT_EQ(parse_rfc3339("2026-11-22T04:00:00.5-00:00"), 1795320000);
}

TEST(ParseRfc3339, LeapYears) {
  EXPECT_EQ(parse_rfc3339("2024-02-29T00:00:00Z"), 1709164800);
  EXPECT_EQ(parse_rfc3339("2000-02-29T00:00:00Z"), 951782400);
  EXPECT_FALSE(parse_rfc3339("2023-02-29T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("1900-02-29T00:00:00Z"));
}

TEST(ParseRfc3339, LeapSecondLandsOnNextSecond) {
  EXPECT_EQ(parse_rfc3339("2016-12-31T23:59:60Z"), parse_rfc3339("2017-01-01T00:00:00Z"));
}

TEST(ParseRfc3339, RejectsOutOfRangeFields) {
  EXPECT_FALSE(parse_rfc3339("2026-00-10T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-13-10T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-04-31T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-01-00T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-01-32T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-01-01T24:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-01-01T23:60:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-01-01T23:59:61Z"));
  EXPECT_FALSE(parse_rfc3339("2026-01-01T00:00:00+24:00"));
  EXPECT_FALSE(parse_rfc3339("2026-01-01T00:00:00+01:60"));
}

TEST(ParseRfc3339, RejectsMalformed) {
  for (const char* s :
       {"", "2026", "2026-11-22", "2026-11-22T04:00:00", "2026-11-22 04:00:00Z",
        "2026-11-22T04:00Z", "2026-1-22T04:00:00Z", "2026-11-22T04:00:00.Z",
        "2026-11-22T04:00:00ZZ", "2026-11-22T04:00:00Z ", " 2026-11-22T04:00:00Z",
        "2026-11-22T04:00:00+0200", "2026-11-22T04:00:00+02", "+026-11-22T04:00:00Z",
        "2026-11-22T04:00:00UTC", "2026/11/22T04:00:00Z", "2026-11-22T4:00:00Z"}) {
    EXPECT_FALSE(parse_rfc3339(s)) << s;
  }
}

TEST(FormatRfc3339, Formats) {
  EXPECT_EQ(format_rfc3339(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(format_rfc3339(1795320000), "2026-11-22T04:00:00Z");
  EXPECT_EQ(format_rfc3339(1709164800 + 3600 * 23 + 60 * 59 + 59), "2024-02-29T23:59:59Z");
  EXPECT_EQ(format_rfc3339(-1), "1969-12-31T23:59:59Z");
}

TEST(FormatRfc3339, RoundTrips) {
  for (UnixSeconds t : {UnixSeconds{0}, UnixSeconds{951782400}, UnixSeconds{1795320000},
                        UnixSeconds{4102444799}, UnixSeconds{253402300799}}) {
    EXPECT_EQ(parse_rfc3339(format_rfc3339(t)), t) << t;
  }
}

TEST(NowUnix, IsRecentWallClock) {
  const UnixSeconds now = now_unix();
  EXPECT_GT(now, *parse_rfc3339("2020-01-01T00:00:00Z"));
  EXPECT_LT(now, *parse_rfc3339("2200-01-01T00:00:00Z"));
}

TEST(ParseDuration, Units) {
  EXPECT_EQ(parse_duration("250ms"), milliseconds(250));
  EXPECT_EQ(parse_duration("3s"), milliseconds(3000));
  EXPECT_EQ(parse_duration("2m"), milliseconds(120'000));
  EXPECT_EQ(parse_duration("1h"), milliseconds(3'600'000));
  EXPECT_EQ(parse_duration("0s"), milliseconds(0));
  EXPECT_EQ(parse_duration("0ms"), milliseconds(0));
}

TEST(ParseDuration, Decimals) {
  EXPECT_EQ(parse_duration("1.5s"), milliseconds(1500));
  EXPECT_EQ(parse_duration("1.1s"), milliseconds(1100));
  EXPECT_EQ(parse_duration("0.25m"), milliseconds(15'000));
  EXPECT_EQ(parse_duration("0.001s"), milliseconds(1));
  EXPECT_EQ(parse_duration("1.5ms"), milliseconds(1));  // below a millisecond is truncated
  EXPECT_EQ(parse_duration("2.000000000001h"), milliseconds(7'200'000));
}

TEST(ParseDuration, RejectsMalformed) {
  for (const char* s :
       {"",       "5",   "s",   "ms", "5 s",  " 5s", "5s ",   "1s2m", "-1s",   "+1s",
        "1.5.2s", ".5s", "5.s", "5S", "5sec", "5d",  "1e3ms", "5mss", "0x10s", "١s"}) {
    EXPECT_FALSE(parse_duration(s)) << s;
  }
}

TEST(ParseDuration, RejectsOverflow) {
  EXPECT_FALSE(parse_duration("99999999999999999999999s"));
  EXPECT_FALSE(parse_duration("9223372036854775807s"));
  EXPECT_FALSE(parse_duration("2562047788015216h"));
  EXPECT_EQ(parse_duration("9223372036854775807ms"), milliseconds(9223372036854775807));
  EXPECT_FALSE(parse_duration("9223372036854775808ms"));
}

}  // namespace
}  // namespace frontdoor::core
