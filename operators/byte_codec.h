#pragma once
// The one byte codec of checkpointed state: fixed-width little-endian integers and IEEE doubles,
// LEB128 varints (zigzag for signed values: the compact layouts of issue #20, where most fields
// are zero or small), length-prefixed strings. Checkpoints must be byte-identical for identical
// state (SPEC 5/6) and readable by the next build on any host, so every field is written explicitly
// byte by byte, never as a raw struct or host-order memcpy. (GCC and Clang merge the byte loops
// into one load/store on little-endian hosts.)
#include <bit>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace sp::byte_codec {

inline void store_u32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
inline void store_u64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
inline uint32_t load_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}
inline uint64_t load_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

inline void put_u8(std::string& out, uint8_t v) { out.push_back(static_cast<char>(v)); }
inline void put_u32(std::string& out, uint32_t v) {
  char b[4];
  store_u32(b, v);
  out.append(b, 4);
}
inline void put_u64(std::string& out, uint64_t v) {
  char b[8];
  store_u64(b, v);
  out.append(b, 8);
}
inline void put_i64(std::string& out, int64_t v) { put_u64(out, static_cast<uint64_t>(v)); }
inline void put_f64(std::string& out, double v) { put_u64(out, std::bit_cast<uint64_t>(v)); }
inline void put_str(std::string& out, std::string_view s) {
  put_u64(out, s.size());
  out.append(s);
}
// LEB128: 7 bits per byte, low groups first, high bit set on every byte but the last.
inline void put_var(std::string& out, uint64_t v) {
  char b[10];
  size_t n = 0;
  while (v >= 0x80) {
    b[n++] = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  b[n++] = static_cast<char>(v);
  out.append(b, n);
}
inline uint64_t zigzag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
inline int64_t unzigzag(uint64_t v) {
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}
inline void put_svar(std::string& out, int64_t v) { put_var(out, zigzag(v)); }
// A varint-length-prefixed string.
inline void put_vstr(std::string& out, std::string_view s) {
  put_var(out, s.size());
  out.append(s);
}

// State keys: `digits` lowercase hex digits of v, most significant first (fixed width, so keys
// sort as the values do); parse_hex reads back exactly that many.
inline void put_hex(std::string& out, uint64_t v, int digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int shift = 4 * (digits - 1); shift >= 0; shift -= 4)
    out.push_back(kHex[(v >> shift) & 0xf]);
}
// A numbered key (a delta or fold n): `prefix`, then n as put_hex.
inline void numbered_key(std::string& out, std::string_view prefix, uint64_t n, int digits) {
  out.assign(prefix);
  put_hex(out, n, digits);
}
inline std::optional<uint64_t> parse_hex(std::string_view hex, size_t digits) {
  uint64_t v = 0;
  const auto parsed = std::from_chars(hex.data(), hex.data() + hex.size(), v, 16);
  if (hex.size() != digits || parsed.ec != std::errc{} || parsed.ptr != hex.data() + hex.size())
    return std::nullopt;
  return v;
}

// Reads fields in order from the front of a view. A short read latches failure and returns 0 (or
// an empty view) from then on, so a decoder reads a whole record and checks ok()/done() once;
// loops over a stored count must also stop on !ok(), or a corrupt count would spin.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  uint8_t u8() {
    if (!need(1)) return 0;
    const auto v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return v;
  }
  uint32_t u32() {
    if (!need(4)) return 0;
    const uint32_t v = load_u32(in_.data());
    in_.remove_prefix(4);
    return v;
  }
  uint64_t u64() {
    if (!need(8)) return 0;
    const uint64_t v = load_u64(in_.data());
    in_.remove_prefix(8);
    return v;
  }
  int64_t i64() { return static_cast<int64_t>(u64()); }
  double f64() { return std::bit_cast<double>(u64()); }
  // A LEB128 varint; more than 10 bytes, or bits beyond 64, is a corrupt read.
  uint64_t var() {
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
      if (!need(1)) return 0;
      const auto byte = static_cast<uint8_t>(in_[0]);
      in_.remove_prefix(1);
      if (shift == 63 && byte > 1) break;
      v |= uint64_t{byte & 0x7fu} << shift;
      if ((byte & 0x80) == 0) return v;
    }
    fail();
    return 0;
  }
  int64_t svar() { return unzigzag(var()); }
  std::string_view vstr() { return bytes(var()); }
  // A length-prefixed string; a view into the input.
  std::string_view str() {
    const uint64_t n = u64();
    return bytes(n);
  }
  // The next n raw bytes; a view into the input.
  std::string_view bytes(uint64_t n) {
    if (!need(n)) return {};
    const std::string_view v = in_.substr(0, static_cast<size_t>(n));
    in_.remove_prefix(static_cast<size_t>(n));
    return v;
  }

  // The unread input, for nested decoders that consume from the front of a view
  // (HyperLogLog::deserialize); they call fail() when they fail.
  std::string_view& rest() { return in_; }
  size_t remaining() const { return in_.size(); }
  bool ok() const { return ok_; }
  void fail() {
    ok_ = false;
    in_ = {};
  }
  // Everything read and nothing left over.
  bool done() const { return ok_ && in_.empty(); }

 private:
  bool need(uint64_t n) {
    if (ok_ && in_.size() >= n) return true;
    fail();
    return false;
  }

  std::string_view in_;
  bool ok_ = true;
};

}  // namespace sp::byte_codec
