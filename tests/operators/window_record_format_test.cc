#include "operators/window_record_format.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <string>

namespace sp {
namespace {

// libc's calendar as the reference for the years the fast path covers.
std::string reference_rfc3339_ms(int64_t ms) {
  const time_t seconds = static_cast<time_t>(floor_div(ms, 1000));
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms - floor_div(ms, 1000) * 1000));
  return buf;
}

TEST(Rfc3339, MatchesTheCalendarFromYear0To9999) {
  constexpr int64_t kFirst = -62'167'219'200'000;  // 0000-01-01T00:00:00.000Z
  constexpr int64_t kLast = 253'402'300'799'999;   // 9999-12-31T23:59:59.999Z
  // A stride that is prime in ms walks every day, hour, minute, second and millisecond phase.
  for (int64_t ms = kFirst; ms <= kLast; ms += 3'600'000 * 24 * 7 + 1'234'567) {
    ASSERT_EQ(format_rfc3339_ms(from_epoch_ms(ms)), reference_rfc3339_ms(ms)) << ms;
  }
  for (int64_t ms : {kFirst, kLast, int64_t{0}, int64_t{-1}, int64_t{951'782'400'000},
                     int64_t{4'107'542'400'000}, int64_t{1'795'000'000'123}}) {
    EXPECT_EQ(format_rfc3339_ms(from_epoch_ms(ms)), reference_rfc3339_ms(ms)) << ms;
  }
  EXPECT_EQ(format_rfc3339_ms(from_epoch_ms(951'782'400'000)), "2000-02-29T00:00:00.000Z");
}

TEST(Rfc3339, YearsOutsideFourDigits) {
  EXPECT_EQ(format_rfc3339_ms(from_epoch_ms(253'402'300'800'000)), "10000-01-01T00:00:00.000Z");
  EXPECT_EQ(format_rfc3339_ms(from_epoch_ms(-62'167'219'200'001)), "-0001-12-31T23:59:59.999Z");
}

TEST(JsonString, EscapesOnlyWhatJsonRequires) {
  std::string out;
  append_json_string(out, "plain user-1 é");
  EXPECT_EQ(out, "\"plain user-1 é\"");
  out.clear();
  append_json_string(out, std::string_view("a\"b\\c\nd\re\tf\bg\fh\x01i\x1f", 18));
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\nd\\re\\tf\\bg\\fh\\u0001i\\u001f\"");
}

}  // namespace
}  // namespace sp
