#pragma once
// Deterministic JSON fragments for window records (SPEC 5): a record re-sent after a crash must be
// byte-identical, so numbers and times have exactly one spelling.
#include <cstdint>
#include <string>
#include <string_view>

#include "operators/time.h"

namespace sp {

// 2026-11-24T10:00:00.000Z (UTC, milliseconds).
void append_rfc3339_ms(std::string& out, EventTime t);
// RFC 3339 UTC with milliseconds, e.g. 2026-11-24T10:00:00.000Z.
std::string format_rfc3339_ms(EventTime t);
// A quoted JSON string; control characters, quote and backslash escaped, other UTF-8 kept as is.
void append_json_string(std::string& out, std::string_view s);
// Shortest round-trip spelling (std::to_chars); non-finite values become null (not valid JSON).
void append_json_double(std::string& out, double v);
void append_json_int(std::string& out, int64_t v);

// Floor division for possibly negative epoch milliseconds (window alignment).
constexpr int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

}  // namespace sp
