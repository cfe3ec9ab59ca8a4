#include "operators/window_record_format.h"

#include <charconv>
#include <chrono>
#include <cmath>

namespace sp {
namespace {
void append_padded(std::string& out, int64_t v, int width) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v < 0 ? -v : v);
  (void)ec;
  const int len = static_cast<int>(end - buf);
  if (v < 0) out.push_back('-');
  for (int i = len; i < width; ++i) out.push_back('0');
  out.append(buf, end);
}
}  // namespace

void append_rfc3339_ms(std::string& out, EventTime t) {
  using namespace std::chrono;
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const auto ms = (t - day).count();  // milliseconds since midnight, 0..86399999
  append_padded(out, static_cast<int>(ymd.year()), 4);
  out.push_back('-');
  append_padded(out, static_cast<unsigned>(ymd.month()), 2);
  out.push_back('-');
  append_padded(out, static_cast<unsigned>(ymd.day()), 2);
  out.push_back('T');
  append_padded(out, ms / 3'600'000, 2);
  out.push_back(':');
  append_padded(out, ms / 60'000 % 60, 2);
  out.push_back(':');
  append_padded(out, ms / 1000 % 60, 2);
  out.push_back('.');
  append_padded(out, ms % 1000, 3);
  out.push_back('Z');
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xf]);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
}

void append_json_double(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  if (v == 0.0) v = 0.0;  // -0 and 0 print the same
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  (void)ec;
  out.append(buf, end);
}

void append_json_int(std::string& out, int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  (void)ec;
  out.append(buf, end);
}

std::string format_rfc3339_ms(EventTime t) {
  std::string out;
  append_rfc3339_ms(out, t);
  return out;
}

}  // namespace sp
