#include "pipeline/decoder.h"

#include <simdjson.h>
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

namespace sp {

namespace {

namespace od = simdjson::ondemand;
using simdjson::error_code;

// Unknown fields may carry arbitrary JSON; we validate it recursively (on-demand skipping is
// lenient), so recursion depth must be bounded for hostile input such as 100k nested arrays.
constexpr int kMaxNesting = 64;
constexpr size_t kMaxIdChars = 128;
constexpr size_t kMaxTagChars = 64;
constexpr size_t kMaxBrandChars = 64;
// Channels longer than this cannot be configured names in practice; they fold to `other`
// without being copied.
constexpr size_t kChannelBufBytes = 128;
// RFC 3339 covers years 0001-9999; integer epoch times are held to the same range so that every
// accepted time is representable both ways and arithmetic on EventTime cannot overflow.
constexpr int64_t kMinEpochMs = -62135596800000;  // 0001-01-01T00:00:00Z
constexpr int64_t kMaxEpochMs = 253402300799999;  // 9999-12-31T23:59:59.999Z

// Top-level (event) keys; the bit index is the enum value.
enum class Key : uint8_t {
  id,
  time,
  brand,
  channel,
  type,
  count,
  actor,
  reach,
  sentiment,
  rating,
  value,
  response_time_s,
  campaign,
  url,
  text,
  tags,
  specversion,
  data,
  unknown,
};
constexpr size_t kKeyCount = static_cast<size_t>(Key::unknown);

constexpr std::array<const char*, kKeyCount> kKeyPath = {
    "id",       "time",  "brand",     "channel", "type",        "count",
    "actor",    "reach", "sentiment", "rating",  "value",       "response_time_s",
    "campaign", "url",   "text",      "tags",    "specversion", "data"};

constexpr uint32_t bit(Key k) { return uint32_t{1} << static_cast<unsigned>(k); }

Key classify_key(std::string_view k) {
  // Switch on length first: one compare per candidate instead of a scan over all names.
  switch (k.size()) {
    case 2:
      if (k == "id") return Key::id;
      break;
    case 3:
      if (k == "url") return Key::url;
      break;
    case 4:
      if (k == "time") return Key::time;
      if (k == "type") return Key::type;
      if (k == "text") return Key::text;
      if (k == "tags") return Key::tags;
      if (k == "data") return Key::data;
      break;
    case 5:
      if (k == "brand") return Key::brand;
      if (k == "count") return Key::count;
      if (k == "actor") return Key::actor;
      if (k == "reach") return Key::reach;
      if (k == "value") return Key::value;
      break;
    case 6:
      if (k == "rating") return Key::rating;
      break;
    case 7:
      if (k == "channel") return Key::channel;
      break;
    case 8:
      if (k == "campaign") return Key::campaign;
      break;
    case 9:
      if (k == "sentiment") return Key::sentiment;
      break;
    case 11:
      if (k == "specversion") return Key::specversion;
      break;
    case 15:
      if (k == "response_time_s") return Key::response_time_s;
      break;
    default:
      break;
  }
  return Key::unknown;
}

// Matches a key in place, closing quote included, so no length scan is needed. Safe to read
// past the key: simdjson requires (and we provide) SIMDJSON_PADDING readable bytes after the
// document, and a key is always followed by at least `":` and a value anyway.
bool raw_is(const char* raw, std::string_view key_and_quote) {
  return std::memcmp(raw, key_and_quote.data(), key_and_quote.size()) == 0;
}

Key match_raw_key(const char* r) {
  switch (r[0]) {
    case 'i':
      if (raw_is(r, "id\"")) return Key::id;
      break;
    case 't':
      if (raw_is(r, "time\"")) return Key::time;
      if (raw_is(r, "type\"")) return Key::type;
      if (raw_is(r, "text\"")) return Key::text;
      if (raw_is(r, "tags\"")) return Key::tags;
      break;
    case 'b':
      if (raw_is(r, "brand\"")) return Key::brand;
      break;
    case 'c':
      if (raw_is(r, "channel\"")) return Key::channel;
      if (raw_is(r, "count\"")) return Key::count;
      if (raw_is(r, "campaign\"")) return Key::campaign;
      break;
    case 'a':
      if (raw_is(r, "actor\"")) return Key::actor;
      break;
    case 'r':
      if (raw_is(r, "reach\"")) return Key::reach;
      if (raw_is(r, "rating\"")) return Key::rating;
      if (raw_is(r, "response_time_s\"")) return Key::response_time_s;
      break;
    case 's':
      if (raw_is(r, "sentiment\"")) return Key::sentiment;
      if (raw_is(r, "specversion\"")) return Key::specversion;
      break;
    case 'v':
      if (raw_is(r, "value\"")) return Key::value;
      break;
    case 'u':
      if (raw_is(r, "url\"")) return Key::url;
      break;
    case 'd':
      if (raw_is(r, "data\"")) return Key::data;
      break;
    default:
      break;
  }
  return Key::unknown;
}

// True when the raw key (up to its closing quote) contains an escape.
bool raw_key_has_escape(const char* r) {
  for (;; ++r) {
    if (*r == '"') return false;
    if (*r == '\\') return true;
  }
}

constexpr bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// `s` without the JSON whitespace at its end (a token runs up to the next one).
constexpr std::string_view trim_json_space(std::string_view s) {
  while (!s.empty() && is_json_space(s.back())) s.remove_suffix(1);
  return s;
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

unsigned hex4(const char* p) {
  unsigned v = 0;
  for (int i = 0; i < 4; ++i) {
    const char c = p[i];
    v = v * 16 + static_cast<unsigned>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
  }
  return v;
}

// Validates the escapes of a raw JSON string body (simdjson's stage 1 already checked UTF-8,
// control characters and the closing quote) with the same rules as simdjson's unescaper: known
// escapes only, \u with four hex digits, surrogates only as high+low pairs.
bool escapes_valid(const char* p, const char* end) {
  while (p < end && *p != '"') {
    if (*p != '\\') {
      ++p;
      continue;
    }
    if (end - p < 2) return false;
    const char c = p[1];
    if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' ||
        c == 't') {
      p += 2;
      continue;
    }
    if (c != 'u' || end - p < 6 || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]) ||
        !is_hex(p[5])) {
      return false;
    }
    const unsigned cp = hex4(p + 2);
    p += 6;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return false;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !is_hex(p[2]) || !is_hex(p[3]) ||
          !is_hex(p[4]) || !is_hex(p[5])) {
        return false;
      }
      const unsigned low = hex4(p + 2);
      if (low < 0xDC00 || low > 0xDFFF) return false;
      p += 6;
    }
  }
  return p < end;
}

// Problems (the part after "path: " in Rejection::detail). One text per field covers wrong type,
// out of range and non-integral alike: the sender needs the rule, not our parse state.
constexpr const char* kProblemId = "must be a string of 1-128 characters";
constexpr const char* kProblemTime = "must be an RFC 3339 date-time or integer epoch milliseconds";
constexpr const char* kProblemBrand = "must match ^[a-z0-9][a-z0-9_.-]{0,63}$ after lower-casing";
constexpr const char* kProblemString = "must be a string";
constexpr const char* kProblemTags = "must be an array of at most 32 strings of 1-64 characters";
constexpr const char* kProblemType =
    "must be one of impression, like, comment, share, mention, reply, follow, unfollow, click, "
    "lead, review, idea";
constexpr const char* kProblemCount = "must be an integer between 1 and 1000000000";
constexpr const char* kProblemObject = "must be an object";
constexpr const char* kProblemNonNegInt = "must be an integer >= 0";
constexpr const char* kProblemSentiment = "must be a number between -1 and 1";
constexpr const char* kProblemRating = "must be an integer between 1 and 5";
constexpr const char* kProblemNonNegNumber = "must be a number >= 0";
constexpr const char* kProblemRole =
    "must be one of customer, employee, partner, manager, prospect, anonymous";
constexpr const char* kProblemSpecVersion = "must be \"1.0\"";
constexpr const char* kProblemRequired = "required";
constexpr const char* kProblemDuplicate = "duplicate key";

const char* describe(error_code e) {
  switch (e) {
    case simdjson::EMPTY:
      return "empty message";
    case simdjson::UTF8_ERROR:
      return "invalid UTF-8";
    case simdjson::STRING_ERROR:
      return "invalid string escape";
    case simdjson::UNESCAPED_CHARS:
      return "unescaped control character in string";
    case simdjson::UNCLOSED_STRING:
      return "unclosed string";
    case simdjson::NUMBER_ERROR:
      return "invalid number";
    case simdjson::T_ATOM_ERROR:
    case simdjson::F_ATOM_ERROR:
    case simdjson::N_ATOM_ERROR:
      return "invalid literal";
    case simdjson::DEPTH_ERROR:
      return "nesting too deep";
    case simdjson::TRAILING_CONTENT:
      return "trailing content after the JSON value";
    case simdjson::TAPE_ERROR:
    case simdjson::INCOMPLETE_ARRAY_OR_OBJECT:
      return "invalid JSON structure";
    default:
      return simdjson::error_message(e);
  }
}

// JSON number grammar (RFC 8259 section 6). simdjson reports NUMBER_ERROR both for malformed
// tokens ("01", "1.") and for well-formed numbers it cannot represent (1e400); only the former
// is malformed JSON, the latter is a schema (range) problem.
bool is_json_number(std::string_view s) {
  s = trim_json_space(s);
  size_t i = 0;
  const size_t n = s.size();
  auto digit = [&](size_t j) { return j < n && s[j] >= '0' && s[j] <= '9'; };
  if (i < n && s[i] == '-') ++i;
  if (!digit(i)) return false;
  if (s[i] == '0') {
    ++i;
  } else {
    while (digit(i)) ++i;
  }
  if (i < n && s[i] == '.') {
    ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  return i == n;
}

// Code points, as JSON Schema's maxLength counts them (the input is valid UTF-8 by now).
bool length_in_chars_ok(std::string_view s, size_t max_chars) {
  if (s.empty()) return false;
  if (s.size() <= max_chars) return true;
  if (s.size() > 4 * max_chars) return false;
  size_t chars = 0;
  for (unsigned char c : s) chars += (c & 0xC0) != 0x80;
  return chars <= max_chars;
}

constexpr char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

constexpr bool is_brand_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         (!first && (c == '_' || c == '.' || c == '-'));
}

std::optional<EventType> parse_type_fast(std::string_view s) {
  // parse_event_type() scans 12 names; dispatching on the first letter is cheaper on the hot path.
  if (s.empty()) return std::nullopt;
  auto is = [&](std::string_view name, EventType t) -> std::optional<EventType> {
    if (s == name) return t;
    return std::nullopt;
  };
  switch (s[0]) {
    case 'i':
      return s.size() == 4 ? is("idea", EventType::idea) : is("impression", EventType::impression);
    case 'l':
      if (s == "like") return EventType::like;
      return is("lead", EventType::lead);
    case 'c':
      if (s.size() == 7) return is("comment", EventType::comment);
      return is("click", EventType::click);
    case 's':
      return is("share", EventType::share);
    case 'm':
      return is("mention", EventType::mention);
    case 'r':
      if (s.size() == 5) return is("reply", EventType::reply);
      return is("review", EventType::review);
    case 'f':
      return is("follow", EventType::follow);
    case 'u':
      return is("unfollow", EventType::unfollow);
    default:
      return std::nullopt;
  }
}

std::optional<Role> parse_role_fast(std::string_view s) {
  // Same answers as parse_role(), without scanning all six names.
  if (s.empty()) return std::nullopt;
  auto is = [&](std::string_view name, Role r) -> std::optional<Role> {
    if (s == name) return r;
    return std::nullopt;
  };
  switch (s[0]) {
    case 'c':
      return is("customer", Role::customer);
    case 'e':
      return is("employee", Role::employee);
    case 'p':
      if (s.size() > 1 && s[1] == 'a') return is("partner", Role::partner);
      return is("prospect", Role::prospect);
    case 'm':
      return is("manager", Role::manager);
    case 'a':
      return is("anonymous", Role::anonymous);
    default:
      return std::nullopt;
  }
}

// Configured names bucketed by length: a lookup compares only same-length names, and most
// lengths hold at most one or two. Same results as Vocabulary::brand/channel (first match wins).
class NameTable {
 public:
  static constexpr size_t kMaxLength = 128;
  template <typename NameAt>
  NameTable(size_t count, NameAt name_at) : by_length_(kMaxLength + 1) {
    for (size_t i = 0; i < count; ++i) {
      const std::string& name = name_at(i);
      if (name.size() <= kMaxLength)
        by_length_[name.size()].push_back({name, static_cast<uint16_t>(i)});
    }
  }
  std::optional<uint16_t> find(std::string_view name) const {
    if (name.size() > kMaxLength) return std::nullopt;
    for (const auto& [candidate, index] : by_length_[name.size()]) {
      if (std::memcmp(candidate.data(), name.data(), name.size()) == 0) return index;
    }
    return std::nullopt;
  }

 private:
  std::vector<std::vector<std::pair<std::string, uint16_t>>> by_length_;
};

constexpr int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  // Howard Hinnant's algorithm: exact for the proleptic Gregorian calendar, no tables.
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

constexpr unsigned days_in_month(unsigned y, unsigned m) {
  constexpr std::array<unsigned, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

// Eight little-endian bytes of `p` (the caller guarantees they are readable).
uint64_t load8(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}

// True when all eight bytes are ASCII digits. A byte outside '0'..'9' fails on its own (its high
// nibble is not 3, or adding 6 to it carries into the high nibble), before any carry it makes
// could reach the next byte.
constexpr bool eight_digits(uint64_t v) {
  constexpr uint64_t kHigh = 0xF0F0F0F0F0F0F0F0;
  return ((v & kHigh) | (((v + 0x0606060606060606) & kHigh) >> 4)) == 0x3333333333333333;
}

// Eight bytes of which some are fixed characters (`pattern` has them, '0' elsewhere): true when
// those are exactly the fixed ones and all the others are digits. A letter is matched in either
// case by ORing 0x20 into its byte of `v` first and giving it in lower case.
constexpr bool digits_around(uint64_t v, uint64_t pattern, uint64_t fixed_mask) {
  constexpr uint64_t kZeros = 0x3030303030303030;
  return (v & fixed_mask) == (pattern & fixed_mask) &&
         eight_digits(v ^ ((pattern ^ kZeros) & fixed_mask));
}

constexpr uint64_t bytes8(const char (&text)[9]) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(text[i]);
  return v;
}
constexpr uint64_t byte_mask(std::initializer_list<unsigned> positions) {
  uint64_t m = 0;
  for (unsigned i : positions) m |= uint64_t{0xFF} << (8 * i);
  return m;
}

// Eight digits as the numbers their neighbours make: byte i of the result is 10 * digit i +
// digit i + 1 (at most 99, so no byte carries into the next).
constexpr uint64_t digit_pairs(uint64_t v) {
  const uint64_t d = v & 0x0F0F0F0F0F0F0F0F;
  return d * 10 + (d >> 8);
}
constexpr unsigned byte_at(uint64_t v, unsigned i) {
  return static_cast<unsigned>(v >> (8 * i)) & 0xFF;
}

// RFC 3339 date-time as JSON Schema's `date-time` format accepts it: `T`/`Z` in either case,
// fractional seconds of any length (truncated to milliseconds), `Z` or ±hh:mm; no leap second.
// The fixed bytes `YYYY-MM-DDTHH:MM` are checked eight at a time, and so is the usual rest,
// `:SS.sssZ` (a third of the events carry such a time: it was ~5 % of decoding).
bool parse_rfc3339_ms(std::string_view s, int64_t& out_ms) {
  const size_t n = s.size();
  if (n < 20) return false;
  constexpr uint64_t kCase = uint64_t{0x20};
  const uint64_t date = load8(s.data());
  const uint64_t clock = load8(s.data() + 8) | kCase << 16;
  if (!digits_around(date, bytes8("0000-00-"), byte_mask({4, 7})) ||
      !digits_around(clock, bytes8("00t00:00"), byte_mask({2, 5}))) {
    return false;
  }
  const uint64_t date_pairs = digit_pairs(date);
  const uint64_t clock_pairs = digit_pairs(clock);
  const unsigned y = byte_at(date_pairs, 0) * 100 + byte_at(date_pairs, 2);
  const unsigned mo = byte_at(date_pairs, 5);
  const unsigned d = byte_at(clock_pairs, 0);
  const unsigned h = byte_at(clock_pairs, 3);
  const unsigned mi = byte_at(clock_pairs, 6);
  auto is_digit = [](char c) { return static_cast<unsigned char>(c) - unsigned{'0'} <= 9; };
  unsigned sec;
  int64_t ms = 0;
  int64_t offset_min = 0;
  if (const uint64_t tail = n == 24 ? load8(s.data() + 16) | kCase << 56 : 0;
      n == 24 && digits_around(tail, bytes8(":00.000z"), byte_mask({0, 3, 7}))) {
    const uint64_t tail_pairs = digit_pairs(tail);
    sec = byte_at(tail_pairs, 1);
    ms = (byte_at(tail, 4) & 0xF) * 100 + byte_at(tail_pairs, 5);
  } else {
    if (s[16] != ':' || !is_digit(s[17]) || !is_digit(s[18])) return false;
    sec = static_cast<unsigned>(s[17] - '0') * 10 + static_cast<unsigned>(s[18] - '0');
    size_t i = 19;
    if (s[i] == '.') {
      ++i;
      const size_t start = i;
      while (i < n && is_digit(s[i])) {
        if (i - start < 3) ms = ms * 10 + (s[i] - '0');
        ++i;
      }
      if (i == start) return false;
      for (size_t digits = i - start; digits < 3; ++digits) ms *= 10;
    }
    if (i >= n) return false;
    if (s[i] == 'Z' || s[i] == 'z') {
      ++i;
    } else if (s[i] == '+' || s[i] == '-') {
      if (n - i != 6 || !is_digit(s[i + 1]) || !is_digit(s[i + 2]) || s[i + 3] != ':' ||
          !is_digit(s[i + 4]) || !is_digit(s[i + 5])) {
        return false;
      }
      const int oh = (s[i + 1] - '0') * 10 + (s[i + 2] - '0');
      const int om = (s[i + 4] - '0') * 10 + (s[i + 5] - '0');
      if (oh > 23 || om > 59) return false;
      offset_min = (s[i] == '+' ? 1 : -1) * int64_t{oh * 60 + om};
      i += 6;
    } else {
      return false;
    }
    if (i != n) return false;
  }
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || (d > 28 && d > days_in_month(y, mo)) || h > 23 ||
      mi > 59 || sec > 59) {
    return false;
  }
  const int64_t days = days_from_civil(y, mo, d);
  out_ms = ((days * 24 + h) * 60 + mi - offset_min) * 60'000 + int64_t{sec} * 1000 + ms;
  return true;
}

// Decoding state of one JSON object that may be the event (the top level, or CloudEvents `data`).
struct Scope {
  uint32_t present = 0;  // keys seen, for duplicate detection
  uint32_t valid = 0;    // keys decoded successfully
  uint32_t errors = 0;   // keys with a recorded problem
  int first_error = -1;  // Key of the first problem in document order
  struct Problem {
    const char* path;
    const char* problem;
  };
  std::array<Problem, kKeyCount> problems{};  // meaningful where `errors` has the bit

  std::string_view id;
  std::string_view actor_id;
  std::array<std::string_view, Event::kMaxTags> tags{};  // the first kMaxTags
  uint8_t tag_count = 0;
  std::string_view brand;    // lower-cased, in brand_buf
  std::string_view channel;  // lower-cased, in channel_buf (empty view when overlong)
  bool channel_overlong = false;
  EventTime time{};
  EventType type = EventType::impression;
  Role role = Role::anonymous;
  int64_t count = 1;
  int64_t reach = 0;
  int64_t followers = 0;
  int64_t rating = 0;
  double sentiment = 0.0;
  double value = 0.0;
  double response_time_s = 0.0;
  std::array<char, kMaxBrandChars> brand_buf{};
  std::array<char, kChannelBufBytes> channel_buf{};

  void reset() {
    present = valid = errors = 0;
    first_error = -1;
    channel_overlong = false;
    tag_count = 0;
    role = Role::anonymous;
    count = 1;
    reach = 0;
    followers = 0;
  }
  bool has(Key k) const { return (valid & bit(k)) != 0; }
  void fail(Key k, const char* path, const char* problem) {
    if (errors & bit(k)) return;
    errors |= bit(k);
    problems[static_cast<size_t>(k)] = {path, problem};
    if (first_error < 0) first_error = static_cast<int>(k);
  }
};

// Outcome of reading one value: `invalid` is a schema problem (the value was well-formed JSON),
// `fatal` is malformed JSON and ends decoding.
enum class Got : uint8_t { ok, invalid, fatal };

struct CloudEventHeaders {
  bool binary = false;
  std::optional<std::string_view> specversion, id, time;
};

}  // namespace

struct EventDecoder::Impl {
  Impl(const Vocabulary& v, DecoderOptions o)
      : vocab(v),
        options(o),
        brands(v.other_brand(),
               [&](size_t i) -> const std::string& {
                 return v.brand_name(static_cast<BrandIndex>(i));
               }),
        channels(v.other_channel(), [&](size_t i) -> const std::string& {
          return v.channel_name(static_cast<ChannelIndex>(i));
        }) {
    buffer_capacity = options.max_message_bytes + simdjson::SIMDJSON_PADDING;
    buffer = std::make_unique<char[]>(buffer_capacity);
    // Allocate the parser up front so the first message does not pay for it; failure here is
    // retried (and reported as malformed_json) by iterate().
    const error_code ignored = parser.allocate(std::max<size_t>(options.max_message_bytes, 64));
    (void)ignored;
  }

  const Vocabulary& vocab;
  DecoderOptions options;
  NameTable brands;    // vocab's configured brands, excluding `other`
  NameTable channels;  // vocab's configured channels, excluding `other`
  od::parser parser;
  std::unique_ptr<char[]> buffer;
  size_t buffer_capacity = 0;
  Scope top;
  Scope data;
  bool data_is_object = false;
  bool data_duplicate = false;
  Event event;
  std::array<char, 4 * kMaxIdChars> header_id_buf{};
  const char* fatal_problem = nullptr;  // set with Got::fatal
  bool root_scalar_unconsumed = false;
  size_t payload_size = 0;

  tl::expected<const Event*, Rejection> decode(std::string_view payload,
                                               std::span<const HeaderView> headers,
                                               EventTime wall_now);

 private:
  static tl::unexpected<Rejection> reject(RejectReason reason, std::string_view prefix,
                                          std::string_view path, std::string_view problem) {
    std::string detail;
    detail.reserve(prefix.size() + path.size() + problem.size() + 2);
    detail.append(prefix).append(path).append(": ").append(problem);
    return tl::unexpected<Rejection>(Rejection{reason, std::move(detail)});
  }

  Got fatal(error_code e) {
    fatal_problem = describe(e);
    return Got::fatal;
  }
  Got fatal(const char* problem) {
    fatal_problem = problem;
    return Got::fatal;
  }
  bool fail(error_code e) {
    fatal(e);
    return false;
  }

  // Full validation of a value we do not otherwise read; returns ok or fatal.
  template <typename V>
  Got validate(V& v, int depth);
  // A value of the wrong type: still has to be well-formed JSON.
  template <typename V>
  Got wrong_type(V& v, int depth) {
    const Got g = validate(v, depth);
    return g == Got::ok ? Got::invalid : g;
  }
  Got number_error(od::value& v, error_code e) {
    if (e == simdjson::INCORRECT_TYPE || e == simdjson::NUMBER_ERROR ||
        e == simdjson::NUMBER_OUT_OF_RANGE) {
      if (is_json_number(v.raw_json_token())) return Got::invalid;
      return fatal(simdjson::NUMBER_ERROR);
    }
    return fatal(e);
  }

  Got read_string(od::value& v, std::string_view& out, int depth);
  Got skip_string(od::value& v, int depth);
  Got read_int(od::value& v, int64_t lo, int64_t hi, int64_t& out, int depth);
  Got read_double(od::value& v, double lo, double hi, double& out, int depth);
  Got read_time(od::value& v, EventTime& out, int depth);
  Got read_actor(od::value& v, Scope& s, int depth);
  Got read_tags(od::value& v, Scope& s, int depth);
  Got read_field(Key k, od::value& v, Scope& s, int depth);
  bool decode_object(od::object& obj, Scope& s, bool top_level, int depth);

  tl::expected<const Event*, Rejection> finish(Scope& s, std::string_view prefix,
                                               const CloudEventHeaders& ce, EventTime wall_now);
};

template <typename V>
Got EventDecoder::Impl::validate(V& v, int depth) {
  if (depth > kMaxNesting) return fatal("nesting deeper than 64 levels");
  od::json_type t;
  if (auto e = v.type().get(t)) return fatal(e);
  switch (t) {
    case od::json_type::object: {
      od::object o;
      if (auto e = v.get_object().get(o)) return fatal(e);
      for (auto fr : o) {
        if (auto e = fr.error()) return fatal(e);
        od::field&& f = std::move(fr).value_unsafe();
        std::string_view key;
        if (auto e = f.unescaped_key().get(key)) return fatal(e);
        if (Got g = validate(f.value(), depth + 1); g != Got::ok) return g;
      }
      return Got::ok;
    }
    case od::json_type::array: {
      od::array a;
      if (auto e = v.get_array().get(a)) return fatal(e);
      for (auto er : a) {
        od::value el;
        if (auto e = std::move(er).get(el)) return fatal(e);
        if (Got g = validate(el, depth + 1); g != Got::ok) return g;
      }
      return Got::ok;
    }
    case od::json_type::string: {
      if constexpr (std::is_same_v<V, od::document>) {
        std::string_view s;
        if (auto e = v.get_string().get(s)) return fatal(e);
        return Got::ok;
      } else {
        return skip_string(v, depth);
      }
    }
    case od::json_type::number: {
      if constexpr (std::is_same_v<V, od::document>) {
        // A root scalar must be consumed for simdjson to check what follows it ("4 2").
        double d;
        const error_code e = v.get_double().get(d);
        if (!e) return Got::ok;
        std::string_view token;
        if (e == simdjson::NUMBER_ERROR && !v.raw_json_token().get(token) &&
            is_json_number(token)) {
          root_scalar_unconsumed = true;  // 1e400: well-formed, just not a double
          return Got::ok;
        }
        return fatal(e);
      } else {
        return is_json_number(v.raw_json_token()) ? Got::ok : fatal(simdjson::NUMBER_ERROR);
      }
    }
    case od::json_type::boolean:
    case od::json_type::null: {
      if constexpr (std::is_same_v<V, od::document>) {
        // simdjson 3.0.1 misreads a root atom followed by more than one whitespace byte
        // ("true  ", "null\n"), so root atoms are checked by hand: the token is exactly the
        // literal plus whitespace, and it runs to the end of the document.
        std::string_view token;
        if (v.raw_json_token().get(token)) return fatal(simdjson::N_ATOM_ERROR);
        const bool at_end = token.data() + token.size() == buffer.get() + payload_size;
        token = trim_json_space(token);
        if (token != "null" && token != "true" && token != "false")
          return fatal(simdjson::N_ATOM_ERROR);
        if (!at_end) return fatal(simdjson::TRAILING_CONTENT);
        root_scalar_unconsumed = true;
        return Got::ok;
      } else if (t == od::json_type::boolean) {
        bool b;
        if (v.get_bool().get(b)) return fatal(simdjson::T_ATOM_ERROR);
        return Got::ok;
      } else {
        bool is_null = false;
        if (v.is_null().get(is_null) || !is_null) return fatal(simdjson::N_ATOM_ERROR);
        return Got::ok;
      }
    }
  }
  return fatal(simdjson::TAPE_ERROR);
}

Got EventDecoder::Impl::skip_string(od::value& v, int depth) {
  od::raw_json_string raw;
  const error_code e = v.get_raw_json_string().get(raw);
  if (e == simdjson::INCORRECT_TYPE) return wrong_type(v, depth);
  if (e) return fatal(e);
  // Strings we never read (campaign, url, text, unknown fields) are checked without being
  // unescaped: only strings with a backslash need a closer look. The closing quote is the last
  // byte before the next token but whitespace (stage 1 found it; a search is the fallback).
  const char* p = raw.raw();
  const char* end = buffer.get() + payload_size;
  const std::string_view token = trim_json_space(v.raw_json_token());
  const char* quote = token.data() + token.size() - 1;
  if (token.size() < 2 || *quote != '"') {
    quote = static_cast<const char*>(std::memchr(p, '"', static_cast<size_t>(end - p)));
    if (quote == nullptr) return fatal(simdjson::UNCLOSED_STRING);
  }
  if (std::memchr(p, '\\', static_cast<size_t>(quote - p)) == nullptr) return Got::ok;
  return escapes_valid(p, end) ? Got::ok : fatal(simdjson::STRING_ERROR);
}

Got EventDecoder::Impl::read_string(od::value& v, std::string_view& out, int depth) {
  const error_code e = v.get_string().get(out);
  if (!e) return Got::ok;
  if (e == simdjson::INCORRECT_TYPE) return wrong_type(v, depth);
  return fatal(e);
}

Got EventDecoder::Impl::read_int(od::value& v, int64_t lo, int64_t hi, int64_t& out, int depth) {
  // Fast path: a plain integer. A failed get_int64 leaves the value unconsumed.
  if (int64_t i; !v.get_int64().get(i)) {
    if (i < lo || i > hi) return Got::invalid;
    out = i;
    return Got::ok;
  }
  od::json_type t;
  if (auto e = v.type().get(t)) return fatal(e);
  if (t != od::json_type::number) return wrong_type(v, depth);
  od::number_type nt;
  if (auto e = v.get_number_type().get(nt)) return number_error(v, e);
  if (nt == od::number_type::floating_point_number) {
    // JSON Schema counts 5.0 and 1e3 as integers; so do we, to agree with the schema.
    double d;
    if (auto e = v.get_double().get(d)) return number_error(v, e);
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return Got::invalid;
    const auto i = static_cast<int64_t>(d);
    if (static_cast<double>(i) != d || i < lo || i > hi) return Got::invalid;
    out = i;
    return Got::ok;
  }
  int64_t i;
  if (auto e = v.get_int64().get(i)) return number_error(v, e);
  if (i < lo || i > hi) return Got::invalid;
  out = i;
  return Got::ok;
}

Got EventDecoder::Impl::read_double(od::value& v, double lo, double hi, double& out, int depth) {
  double d;
  if (const error_code e = v.get_double().get(d)) {
    od::json_type t;
    if (auto te = v.type().get(t)) return fatal(te);
    if (t != od::json_type::number) return wrong_type(v, depth);
    return number_error(v, e);
  }
  if (!(d >= lo && d <= hi)) return Got::invalid;
  out = d;
  return Got::ok;
}

Got EventDecoder::Impl::read_time(od::value& v, EventTime& out, int depth) {
  od::json_type t;
  if (auto e = v.type().get(t)) return fatal(e);
  if (t == od::json_type::string) {
    std::string_view s;
    if (auto e = v.get_string().get(s)) return fatal(e);
    int64_t ms;
    if (!parse_rfc3339_ms(s, ms)) return Got::invalid;
    out = from_epoch_ms(ms);
    return Got::ok;
  }
  if (t == od::json_type::number) {
    int64_t ms;
    const Got g = read_int(v, kMinEpochMs, kMaxEpochMs, ms, depth);
    if (g == Got::ok) out = from_epoch_ms(ms);
    return g;
  }
  return wrong_type(v, depth);
}

Got EventDecoder::Impl::read_tags(od::value& v, Scope& s, int depth) {
  od::json_type t;
  if (auto e = v.type().get(t)) return fatal(e);
  if (t != od::json_type::array) return wrong_type(v, depth);
  od::array a;
  if (auto e = v.get_array().get(a)) return fatal(e);
  Got result = Got::ok;
  size_t n = 0;
  s.tag_count = 0;
  for (auto er : a) {
    od::value el;
    if (auto e = std::move(er).get(el)) return fatal(e);
    std::string_view tag;
    const Got g = read_string(el, tag, depth + 1);
    if (g == Got::fatal) return g;
    // Keep reading after a bad item: the rest must still be well-formed JSON.
    if (g == Got::invalid || tag.empty() || !length_in_chars_ok(tag, kMaxTagChars) || ++n > 32) {
      result = Got::invalid;
      continue;
    }
    if (s.tag_count < Event::kMaxTags) s.tags[s.tag_count++] = tag;
  }
  return result;
}

Got EventDecoder::Impl::read_actor(od::value& v, Scope& s, int depth) {
  od::json_type t;
  if (auto e = v.type().get(t)) return fatal(e);
  if (t != od::json_type::object) {
    const Got g = wrong_type(v, depth);
    if (g == Got::invalid) s.fail(Key::actor, "actor", kProblemObject);
    return g;
  }
  od::object obj;
  if (auto e = v.get_object().get(obj)) return fatal(e);
  constexpr uint32_t kId = 1, kRole = 2, kFollowers = 4;
  uint32_t present = 0;
  bool id_ok = false;
  for (auto fr : obj) {
    if (auto e = fr.error()) return fatal(e);
    od::field&& f = std::move(fr).value_unsafe();  // in place: no copy of the field
    const char* raw = f.key().raw();
    uint32_t which = raw_is(raw, "id\"")          ? kId
                     : raw_is(raw, "role\"")      ? kRole
                     : raw_is(raw, "followers\"") ? kFollowers
                                                  : 0;
    if (which == 0 && raw_key_has_escape(raw)) {
      std::string_view key;
      if (auto e = f.unescaped_key().get(key)) return fatal(e);
      which = key == "id" ? kId : key == "role" ? kRole : key == "followers" ? kFollowers : 0;
    }
    od::value& fv = f.value();
    const char* path = which == kId     ? "actor.id"
                       : which == kRole ? "actor.role"
                                        : "actor.followers";
    if (which == 0) {
      if (Got g = validate(fv, depth + 1); g != Got::ok) return g;
      continue;
    }
    if (present & which) {
      if (Got g = validate(fv, depth + 1); g != Got::ok) return g;
      s.fail(Key::actor, path, kProblemDuplicate);
      continue;
    }
    present |= which;
    Got g = Got::ok;
    if (which == kId) {
      g = read_string(fv, s.actor_id, depth + 1);
      if (g == Got::ok && !length_in_chars_ok(s.actor_id, kMaxIdChars)) g = Got::invalid;
      if (g == Got::invalid) s.fail(Key::actor, path, kProblemId);
      id_ok = g == Got::ok;
    } else if (which == kRole) {
      std::string_view role;
      g = read_string(fv, role, depth + 1);
      if (g == Got::ok) {
        if (auto r = parse_role_fast(role)) {
          s.role = *r;
        } else {
          g = Got::invalid;
        }
      }
      if (g == Got::invalid) s.fail(Key::actor, path, kProblemRole);
    } else {
      g = read_int(fv, 0, std::numeric_limits<int64_t>::max(), s.followers, depth + 1);
      if (g == Got::invalid) s.fail(Key::actor, path, kProblemNonNegInt);
    }
    if (g == Got::fatal) return g;
  }
  if (!(present & kId)) s.fail(Key::actor, "actor.id", kProblemRequired);
  return id_ok ? Got::ok : Got::invalid;
}

Got EventDecoder::Impl::read_field(Key k, od::value& v, Scope& s, int depth) {
  const char* path = kKeyPath[static_cast<size_t>(k)];
  const char* problem = nullptr;
  Got g = Got::ok;
  switch (k) {
    case Key::id:
      g = read_string(v, s.id, depth);
      if (g == Got::ok && !length_in_chars_ok(s.id, kMaxIdChars)) g = Got::invalid;
      problem = kProblemId;
      break;
    case Key::time:
      g = read_time(v, s.time, depth);
      problem = kProblemTime;
      break;
    case Key::brand: {
      std::string_view raw;
      g = read_string(v, raw, depth);
      problem = kProblemBrand;
      if (g != Got::ok) break;
      if (raw.empty() || raw.size() > kMaxBrandChars) {
        g = Got::invalid;
        break;
      }
      for (size_t i = 0; i < raw.size(); ++i) {
        const char c = ascii_lower(raw[i]);
        if (!is_brand_char(c, i == 0)) {
          g = Got::invalid;
          break;
        }
        s.brand_buf[i] = c;
      }
      s.brand = {s.brand_buf.data(), raw.size()};
      break;
    }
    case Key::channel: {
      std::string_view raw;
      g = read_string(v, raw, depth);
      problem = kProblemString;
      if (g != Got::ok) break;
      if (raw.size() > s.channel_buf.size()) {
        s.channel_overlong = true;
        s.channel = {};
        break;
      }
      for (size_t i = 0; i < raw.size(); ++i) s.channel_buf[i] = ascii_lower(raw[i]);
      s.channel = {s.channel_buf.data(), raw.size()};
      break;
    }
    case Key::type: {
      std::string_view raw;
      g = read_string(v, raw, depth);
      problem = kProblemType;
      if (g != Got::ok) break;
      if (auto t = parse_type_fast(raw)) {
        s.type = *t;
      } else {
        g = Got::invalid;
      }
      break;
    }
    case Key::count:
      g = read_int(v, 1, 1'000'000'000, s.count, depth);
      problem = kProblemCount;
      break;
    case Key::actor:
      // read_actor records its own, more specific, problems.
      g = read_actor(v, s, depth);
      if (g == Got::invalid) return Got::invalid;
      break;
    case Key::reach:
      g = read_int(v, 0, std::numeric_limits<int64_t>::max(), s.reach, depth);
      problem = kProblemNonNegInt;
      break;
    case Key::sentiment:
      g = read_double(v, -1.0, 1.0, s.sentiment, depth);
      problem = kProblemSentiment;
      break;
    case Key::rating:
      g = read_int(v, 1, 5, s.rating, depth);
      problem = kProblemRating;
      break;
    case Key::value:
      g = read_double(v, 0.0, std::numeric_limits<double>::max(), s.value, depth);
      problem = kProblemNonNegNumber;
      break;
    case Key::response_time_s:
      g = read_double(v, 0.0, std::numeric_limits<double>::max(), s.response_time_s, depth);
      problem = kProblemNonNegNumber;
      break;
    case Key::campaign:
    case Key::url:
    case Key::text:
      g = skip_string(v, depth);
      problem = kProblemString;
      break;
    case Key::tags:
      g = read_tags(v, s, depth);
      problem = kProblemTags;
      break;
    case Key::specversion: {
      std::string_view version;
      g = read_string(v, version, depth);
      if (g == Got::ok && version != "1.0") g = Got::invalid;
      problem = kProblemSpecVersion;
      break;
    }
    case Key::data:
    case Key::unknown:
      break;  // handled by decode_object
  }
  if (g == Got::invalid) s.fail(k, path, problem);
  if (g == Got::ok) s.valid |= bit(k);
  return g;
}

bool EventDecoder::Impl::decode_object(od::object& obj, Scope& s, bool top_level, int depth) {
  for (auto fr : obj) {
    if (auto e = fr.error()) return fail(e);
    od::field&& f = std::move(fr).value_unsafe();  // in place: no copy of the field
    // Fast path: keys without escapes are compared in place; escaped keys ("\u0069d") are
    // unescaped so that they mean what any other JSON parser thinks they mean.
    const char* raw = f.key().raw();
    Key k = match_raw_key(raw);
    if (k == Key::unknown && raw_key_has_escape(raw)) {
      std::string_view key;
      if (auto e = f.unescaped_key().get(key)) return fail(e);
      k = classify_key(key);
    }
    od::value& v = f.value();
    if (!top_level && (k == Key::specversion || k == Key::data)) k = Key::unknown;
    if (k == Key::unknown) {
      if (validate(v, depth + 1) != Got::ok) return false;
      continue;
    }
    if (s.present & bit(k)) {
      if (validate(v, depth + 1) != Got::ok) return false;
      if (k == Key::data) {
        data_duplicate = true;
      } else {
        s.fail(k, kKeyPath[static_cast<size_t>(k)], kProblemDuplicate);
      }
      continue;
    }
    s.present |= bit(k);
    if (k == Key::data) {
      // Decoded eagerly because `specversion` may come after it; ignored unless it does.
      od::json_type t;
      if (auto e = v.type().get(t)) return fail(e);
      if (t != od::json_type::object) {
        if (validate(v, depth + 1) != Got::ok) return false;
        continue;
      }
      od::object inner;
      if (auto e = v.get_object().get(inner)) return fail(e);
      data_is_object = true;
      if (!decode_object(inner, data, false, depth + 1)) return false;
      continue;
    }
    if (read_field(k, v, s, depth + 1) == Got::fatal) return false;
  }
  return true;
}

tl::expected<const Event*, Rejection> EventDecoder::Impl::decode(
    std::string_view payload, std::span<const HeaderView> headers, EventTime wall_now) {
  if (payload.size() > options.max_message_bytes) {
    return reject(RejectReason::too_large, "", "$",
                  std::to_string(payload.size()) + " bytes exceeds max_message_bytes " +
                      std::to_string(options.max_message_bytes));
  }
  // The payload is not padded (simdjson reads up to SIMDJSON_PADDING bytes past the end), so it
  // is copied into our buffer; zeroing the padding keeps runs deterministic under valgrind/fuzz.
  std::memcpy(buffer.get(), payload.data(), payload.size());
  payload_size = payload.size();
  std::memset(buffer.get() + payload.size(), 0, simdjson::SIMDJSON_PADDING);

  CloudEventHeaders ce;
  for (const HeaderView& h : headers) {
    if (h.key.size() < 5 || !h.key.starts_with("ce_")) continue;
    if (h.key == "ce_specversion" && !ce.specversion) ce.specversion = h.value;
    if (h.key == "ce_id" && !ce.id) ce.id = h.value;
    if (h.key == "ce_time" && !ce.time) ce.time = h.value;
  }
  ce.binary = ce.specversion.has_value();

  top.reset();
  data.reset();
  data_is_object = false;
  data_duplicate = false;
  fatal_problem = nullptr;

  od::document doc;
  if (auto e =
          parser.iterate(buffer.get(), payload.size(), payload.size() + simdjson::SIMDJSON_PADDING)
              .get(doc)) {
    return reject(RejectReason::malformed_json, "", "$", describe(e));
  }
  od::object obj;
  if (auto e = doc.get_object().get(obj)) {
    if (e != simdjson::INCORRECT_TYPE)
      return reject(RejectReason::malformed_json, "", "$", describe(e));
    // Valid JSON that is not an object is a schema problem; anything else is malformed.
    root_scalar_unconsumed = false;
    if (validate(doc, 0) != Got::ok)
      return reject(RejectReason::malformed_json, "", "$", fatal_problem);
    const char* loc;
    if (!root_scalar_unconsumed && !doc.current_location().get(loc)) {
      return reject(RejectReason::malformed_json, "", "$", "trailing content after the JSON value");
    }
    return reject(RejectReason::schema, "", "$", "must be a JSON object");
  }
  if (!decode_object(obj, top, !ce.binary, 0)) {
    // The field being read is not tracked precisely on this rare path; "$" keeps detail honest.
    return reject(RejectReason::malformed_json, "", "$", fatal_problem);
  }
  const char* loc;
  if (!doc.current_location().get(loc)) {
    return reject(RejectReason::malformed_json, "", "$", "trailing content after the JSON object");
  }

  if (!ce.binary && (top.present & bit(Key::specversion))) {
    // CloudEvents structured mode: the event is `data`; the envelope's id/time are defaults.
    for (Key k : {Key::specversion, Key::id, Key::time}) {
      if (top.errors & bit(k)) {
        const auto& p = top.problems[static_cast<size_t>(k)];
        return reject(RejectReason::schema, "", p.path, p.problem);
      }
    }
    if (data_duplicate) return reject(RejectReason::schema, "", "data", kProblemDuplicate);
    if (!(top.present & bit(Key::data)))
      return reject(RejectReason::schema, "", "data", kProblemRequired);
    if (!data_is_object) return reject(RejectReason::schema, "", "data", kProblemObject);
    if (!data.has(Key::id) && top.has(Key::id) && !(data.errors & bit(Key::id))) {
      data.id = top.id;
      data.valid |= bit(Key::id);
    }
    if (!data.has(Key::time) && top.has(Key::time) && !(data.errors & bit(Key::time))) {
      data.time = top.time;
      data.valid |= bit(Key::time);
    }
    return finish(data, "data.", ce, wall_now);
  }
  return finish(top, "", ce, wall_now);
}

tl::expected<const Event*, Rejection> EventDecoder::Impl::finish(Scope& s, std::string_view prefix,
                                                                 const CloudEventHeaders& ce,
                                                                 EventTime wall_now) {
  if (ce.binary && *ce.specversion != "1.0") {
    return reject(RejectReason::schema, "", "ce_specversion", kProblemSpecVersion);
  }
  if (s.first_error >= 0) {
    const auto& p = s.problems[static_cast<size_t>(s.first_error)];
    return reject(RejectReason::schema, prefix, p.path, p.problem);
  }
  if (ce.binary) {
    // Binary mode: the body is the event; ce_id/ce_time headers fill what it lacks.
    if (!(s.present & bit(Key::id)) && ce.id) {
      const std::string_view h = *ce.id;
      if (h.size() > header_id_buf.size() || !simdjson::validate_utf8(h.data(), h.size()) ||
          !length_in_chars_ok(h, kMaxIdChars)) {
        return reject(RejectReason::schema, "", "ce_id", kProblemId);
      }
      // Copied: the Event must not point into the caller's header memory.
      std::memcpy(header_id_buf.data(), h.data(), h.size());
      s.id = {header_id_buf.data(), h.size()};
      s.valid |= bit(Key::id);
    }
    if (!(s.present & bit(Key::time)) && ce.time) {
      int64_t ms;
      if (!parse_rfc3339_ms(*ce.time, ms)) {
        return reject(RejectReason::schema, "", "ce_time", "must be an RFC 3339 date-time");
      }
      s.time = from_epoch_ms(ms);
      s.valid |= bit(Key::time);
    }
  }
  constexpr uint32_t kRequired =
      bit(Key::id) | bit(Key::time) | bit(Key::brand) | bit(Key::channel) | bit(Key::type);
  if ((s.valid & kRequired) != kRequired) {
    for (Key k : {Key::id, Key::time, Key::brand, Key::channel, Key::type}) {
      if (!s.has(k))
        return reject(RejectReason::schema, prefix, kKeyPath[static_cast<size_t>(k)],
                      kProblemRequired);
    }
  }

  Event& ev = event;
  ev = Event{};
  ev.time = s.time;
  ev.type = s.type;
  ev.count = s.count;
  ev.reach = s.reach;
  ev.id = s.id;
  ev.brand_name = s.brand;
  const std::optional<uint16_t> brand = brands.find(s.brand);
  const bool known = brand.has_value();
  ev.brand = known ? *brand : vocab.other_brand();
  const std::optional<uint16_t> channel =
      s.channel_overlong ? std::nullopt : channels.find(s.channel);
  ev.channel = channel ? *channel : vocab.other_channel();
  if (s.has(Key::actor)) {
    ev.has_actor = true;
    ev.actor_id = s.actor_id;
    ev.actor_hash = XXH3_64bits(s.actor_id.data(), s.actor_id.size());
    ev.role = s.role;
    ev.followers = s.followers;
  }
  if (s.has(Key::tags)) {
    ev.tags = s.tags;
    ev.tag_count = s.tag_count;
  }
  if (s.has(Key::sentiment)) {
    ev.has_sentiment = true;
    ev.sentiment = s.sentiment;
  } else if (s.has(Key::rating)) {
    ev.has_sentiment = true;
    ev.sentiment = static_cast<double>(s.rating - 3) / 2.0;
  }
  if (s.has(Key::value)) {
    ev.has_value = true;
    ev.value = s.value;
  }
  if (s.has(Key::response_time_s)) {
    ev.has_response_time = true;
    ev.response_time_s = s.response_time_s;
  }

  if (ev.time > wall_now + options.max_future) {
    return reject(
        RejectReason::future_time, prefix, "time",
        "more than " + std::to_string(options.max_future.count()) + " ms ahead of the wall clock");
  }
  if (!known && options.unknown == UnknownBrandPolicy::reject) {
    return reject(RejectReason::unknown_brand, prefix, "brand",
                  "'" + std::string(s.brand) + "' is not a configured brand");
  }
  return &event;
}

EventDecoder::EventDecoder(const Vocabulary& vocab, DecoderOptions options)
    : impl_(std::make_unique<Impl>(vocab, options)) {}
EventDecoder::~EventDecoder() = default;
EventDecoder::EventDecoder(EventDecoder&&) noexcept = default;
EventDecoder& EventDecoder::operator=(EventDecoder&&) noexcept = default;

tl::expected<const Event*, Rejection> EventDecoder::decode(std::string_view payload,
                                                           std::span<const HeaderView> headers,
                                                           EventTime wall_now) {
  return impl_->decode(payload, headers, wall_now);
}

}  // namespace sp
