#pragma once
// Fixed-width little-endian encoding for KPI operator snapshots. Snapshots must be byte-identical
// for identical state (SPEC 5/6 determinism), so every field is written explicitly, never as a raw
// struct (padding bytes would leak).
#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace sp::kpi_codec {

static_assert(std::endian::native == std::endian::little, "snapshots assume little-endian hosts");

inline void put_u64(std::string& out, uint64_t v) {
  char b[8];
  std::memcpy(b, &v, 8);
  out.append(b, 8);
}
inline void put_i64(std::string& out, int64_t v) { put_u64(out, static_cast<uint64_t>(v)); }
inline void put_f64(std::string& out, double v) { put_u64(out, std::bit_cast<uint64_t>(v)); }
inline void put_str(std::string& out, std::string_view s) {
  put_u64(out, s.size());
  out.append(s);
}

// Reads fields in order; any short read latches `ok` to false so callers check once at the end.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  uint64_t u64() {
    uint64_t v = 0;
    if (in_.size() < 8) {
      ok_ = false;
      return 0;
    }
    std::memcpy(&v, in_.data(), 8);
    in_.remove_prefix(8);
    return v;
  }
  int64_t i64() { return static_cast<int64_t>(u64()); }
  double f64() { return std::bit_cast<double>(u64()); }
  bool str(std::string_view& s) {
    const uint64_t n = u64();
    if (!ok_ || in_.size() < n) {
      ok_ = false;
      return false;
    }
    s = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  std::string_view& rest() { return in_; }
  bool ok() const { return ok_; }
  void fail() { ok_ = false; }
  bool done() const { return ok_ && in_.empty(); }

 private:
  std::string_view in_;
  bool ok_ = true;
};

}  // namespace sp::kpi_codec
