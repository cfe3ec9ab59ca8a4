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

void put2(char* p, int64_t v) {
  p[0] = static_cast<char>('0' + v / 10);
  p[1] = static_cast<char>('0' + v % 10);
}

// The general form below, for any year std::chrono can represent.
void append_rfc3339_ms_chrono(std::string& out, EventTime t) {
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

}  // namespace

void append_rfc3339_ms(std::string& out, EventTime t) {
  // Years 0000-9999 (every time a record can carry in practice): civil date from the day number
  // (H. Hinnant's days_from_civil inverse), digits written into one buffer, one append. Window
  // and session records spent most of their formatting time in year_month_day and per-character
  // appends. Same characters as the chrono form, which handles the other years.
  const int64_t ms_total = to_epoch_ms(t);
  const int64_t day = floor_div(ms_total, 86'400'000);
  const int64_t ms = ms_total - day * 86'400'000;
  const int64_t z = day + 719'468;
  const int64_t era = (z >= 0 ? z : z - 146'096) / 146'097;
  const int64_t doe = z - era * 146'097;                                        // [0, 146096]
  const int64_t yoe = (doe - doe / 1460 + doe / 36'524 - doe / 146'096) / 365;  // [0, 399]
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                  // [0, 365]
  const int64_t mp = (5 * doy + 2) / 153;                                       // [0, 11]
  const int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const int64_t m = mp < 10 ? mp + 3 : mp - 9;
  const int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  if (y < 0 || y > 9999) {
    append_rfc3339_ms_chrono(out, t);
    return;
  }
  char buf[24];  // YYYY-MM-DDTHH:MM:SS.mmmZ
  put2(buf, y / 100);
  put2(buf + 2, y % 100);
  buf[4] = '-';
  put2(buf + 5, m);
  buf[7] = '-';
  put2(buf + 8, d);
  buf[10] = 'T';
  put2(buf + 11, ms / 3'600'000);
  buf[13] = ':';
  put2(buf + 14, ms / 60'000 % 60);
  buf[16] = ':';
  put2(buf + 17, ms / 1000 % 60);
  buf[19] = '.';
  buf[20] = static_cast<char>('0' + ms % 1000 / 100);
  put2(buf + 21, ms % 100);
  buf[23] = 'Z';
  out.append(buf, sizeof(buf));
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  // Names and ids rarely need escaping: append the clean prefix in one go.
  size_t clean = 0;
  while (clean < s.size()) {
    const auto c = static_cast<unsigned char>(s[clean]);
    if (c < 0x20 || c == '"' || c == '\\') break;
    ++clean;
  }
  out.append(s.data(), clean);
  for (char ch : s.substr(clean)) {
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
