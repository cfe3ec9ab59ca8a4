#include "pipeline/config.h"

#include <charconv>

namespace sp {

Result<Millis> parse_duration(std::string_view text) {
  if (text.empty()) return make_error(ErrorKind::bad_record, "empty duration");
  int64_t total = 0;
  std::string_view rest = text;
  while (!rest.empty()) {
    int64_t n = 0;
    auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), n);
    if (ec != std::errc() || ptr == rest.data() || n < 0) {
      return make_error(ErrorKind::bad_record,
                        "invalid duration '" + std::string(text) + "' (expected e.g. 500ms, 10s, 1m, 24h)");
    }
    rest.remove_prefix(static_cast<size_t>(ptr - rest.data()));
    int64_t unit = 0;
    if (rest.starts_with("ms")) {
      unit = 1, rest.remove_prefix(2);
    } else if (rest.starts_with("s")) {
      unit = 1000, rest.remove_prefix(1);
    } else if (rest.starts_with("m")) {
      unit = 60'000, rest.remove_prefix(1);
    } else if (rest.starts_with("h")) {
      unit = 3'600'000, rest.remove_prefix(1);
    } else if (rest.starts_with("d")) {
      unit = 86'400'000, rest.remove_prefix(1);
    } else {
      return make_error(ErrorKind::bad_record,
                        "invalid duration '" + std::string(text) + "' (unit must be ms, s, m, h or d)");
    }
    total += n * unit;
  }
  return Millis{total};
}

}  // namespace sp
