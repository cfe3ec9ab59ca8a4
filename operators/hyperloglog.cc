#include "operators/hyperloglog.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>

#include "operators/byte_codec.h"

namespace sp {

namespace {
// Restrict parameters and a constant trip count: GCC vectorizes this at -O2 (a byte max per lane,
// no alias check); with std::vector operands it stayed a byte loop.
void max_registers(uint8_t* __restrict into, const uint8_t* __restrict from) {
  for (size_t i = 0; i < HyperLogLog::kRegisters; ++i)
    into[i] = into[i] < from[i] ? from[i] : into[i];
}
}  // namespace

bool HyperLogLog::add(uint64_t hash) {
  if (!dense_.empty()) return add_dense(hash);
  if (hash == 0) {
    if (has_zero_) return false;
    if (sparse_count() >= kSparseLimit) {
      densify();
      add_dense(hash);
      return true;
    }
    has_zero_ = true;
    return true;
  }
  return insert_sparse(hash);
}

bool HyperLogLog::insert_sparse(uint64_t hash) {
  if (table_.empty()) {
    table_.assign(kInitialSlots, 0);
    slot_shift_ = static_cast<uint8_t>(64 - std::countr_zero(kInitialSlots));
  }
  const size_t mask = table_.size() - 1;
  size_t i = slot_of(hash);
  for (;; i = (i + 1) & mask) {
    const uint64_t v = table_[i];
    if (v == hash) return false;
    if (v == 0) break;
  }
  if (sparse_count() >= kSparseLimit) {
    densify();
    add_dense(hash);
    return true;
  }
  if ((size_t{sparse_size_} + 1) * 4 > table_.size() * 3) {
    grow();
    i = slot_of(hash);
    while (table_[i] != 0) i = (i + 1) & (table_.size() - 1);
  }
  table_[i] = hash;
  ++sparse_size_;
  return true;
}

void HyperLogLog::grow() {
  // x4: a set that grows at all usually grows on to hundreds (the limit needs 1024 slots).
  std::vector<uint64_t> old(table_.size() * 4, 0);
  old.swap(table_);
  slot_shift_ = static_cast<uint8_t>(slot_shift_ - 2);
  const size_t mask = table_.size() - 1;
  for (uint64_t h : old) {
    if (h == 0) continue;
    size_t i = slot_of(h);
    while (table_[i] != 0) i = (i + 1) & mask;
    table_[i] = h;
  }
}

uint8_t HyperLogLog::rank_of(uint64_t hash) {
  const uint64_t rest = (hash << kPrecision) | (uint64_t{1} << (kPrecision - 1));
  return static_cast<uint8_t>(std::countl_zero(rest) + 1);
}

bool HyperLogLog::add_dense(uint64_t hash) {
  const size_t index = register_of(hash);
  const uint8_t rank = rank_of(hash);
  if (dense_[index] >= rank) return false;
  dense_[index] = rank;
  return true;
}

void HyperLogLog::merge_registers(const uint8_t* ranks) {
  if (dense_.empty()) densify();
  max_registers(dense_.data(), ranks);
}

void HyperLogLog::append_hashes(std::vector<uint64_t>& out) const {
  if (has_zero_) out.push_back(0);
  for (uint64_t h : table_) {
    if (h != 0) out.push_back(h);
  }
}

void HyperLogLog::densify() {
  dense_.assign(kRegisters, 0);
  for (uint64_t h : table_) {
    if (h != 0) add_dense(h);
  }
  if (has_zero_) add_dense(0);
  table_.clear();
  table_.shrink_to_fit();
  sparse_size_ = 0;
  slot_shift_ = 64;
  has_zero_ = false;
}

void HyperLogLog::merge(const HyperLogLog& other) {
  if (other.dense_.empty()) {
    if (empty() && other.sparse_count() != 0) {
      *this = other;  // same set, one copy instead of re-inserting every hash
      return;
    }
    if (dense_.empty()) {
      // Size the table for the union once instead of doubling through it.
      const size_t want = std::min(sparse_count() + other.sparse_count(), kSparseLimit);
      if (table_.empty()) {
        table_.assign(kInitialSlots, 0);
        slot_shift_ = static_cast<uint8_t>(64 - std::countr_zero(kInitialSlots));
      }
      while (want * 4 > table_.size() * 3) grow();
    }
    for (uint64_t h : other.table_) {
      if (h != 0) add(h);
    }
    if (other.has_zero_) add(0);
    return;
  }
  if (&other == this) return;
  if (dense_.empty()) densify();
  max_registers(dense_.data(), other.dense_.data());
}

namespace {
// 2^-r for every possible rank: the same doubles std::ldexp(1.0, -r) gives, without the call.
struct InversePowers {
  std::array<double, 256> v{};  // any uint8_t: a corrupt snapshot cannot index past the end
  InversePowers() {
    for (size_t r = 0; r < v.size(); ++r) v[r] = std::ldexp(1.0, -static_cast<int>(r));
  }
};
const InversePowers kInversePowers;

// While every rank is <= kExactRank, each term 2^-r and each partial sum of at most kRegisters
// terms is a multiple of 2^-kExactRank no larger than 2^14 = 2^53 * 2^-kExactRank: exactly
// representable in a double. The register-order double sum is then exact, so it equals the
// integer sum of 2^(kExactRank - r) scaled by 2^-kExactRank, bit for bit, and integer adds have
// no floating-point latency chain. A rank above kExactRank (probability ~3e-8 per sketch) takes
// the register-order double sum.
constexpr int kExactRank = 39;
static_assert(HyperLogLog::kPrecision + kExactRank <= 53);
struct ScaledInversePowers {
  std::array<uint64_t, 256> v{};  // indexed by any uint8_t rank; 0 above kExactRank
  ScaledInversePowers() {
    for (int r = 0; r <= kExactRank; ++r)
      v[static_cast<size_t>(r)] = uint64_t{1} << (kExactRank - r);
  }
};
const ScaledInversePowers kScaledInversePowers;
}  // namespace

double HyperLogLog::estimate() const {
  if (dense_.empty()) return static_cast<double>(sparse_count());
  const double m = static_cast<double>(kRegisters);
  // Eight registers per 64-bit word: zero bytes and ranks above kExactRank are found with
  // byte-parallel arithmetic, the scaled powers by table lookup into two accumulators.
  constexpr uint64_t kLow7 = 0x7f7f7f7f7f7f7f7fULL;
  constexpr uint64_t kLowBit = 0x0101010101010101ULL;
  constexpr uint64_t kHighBit = 0x8080808080808080ULL;
  constexpr uint64_t kAboveExact = (128 - kExactRank - 1) * kLowBit;  // byte + this >= 128 <=> > 39
  const auto& pow = kScaledInversePowers.v;
  const uint8_t* regs = dense_.data();
  uint64_t sum_even = 0, sum_odd = 0, above = 0;
  size_t zeros = 0;
  uint64_t zero_lanes = 0;  // per-byte zero counts, folded into `zeros` before a byte can overflow
  for (size_t i = 0; i < kRegisters; i += 8) {
    uint64_t w = 0;
    std::memcpy(&w, regs + i, 8);
    // High bit of each byte set iff the byte is zero (exact: no borrow or carry between bytes).
    const uint64_t is_zero = ~(((w & kLow7) + kLow7) | w | kLow7);
    zero_lanes += is_zero >> 7;
    // A byte > kExactRank sets its high bit here; bytes >= 168 may carry into the next byte, but
    // they are flagged themselves, and any flag only selects the slow path.
    above |= w | (w + kAboveExact);
    sum_even +=
        pow[w & 0xff] + pow[(w >> 16) & 0xff] + pow[(w >> 32) & 0xff] + pow[(w >> 48) & 0xff];
    sum_odd += pow[(w >> 8) & 0xff] + pow[(w >> 24) & 0xff] + pow[(w >> 40) & 0xff] + pow[w >> 56];
    if ((i & 1023) == 1016) {  // every 128 words: each byte lane holds at most 128
      const uint64_t pairs =
          (zero_lanes & 0x00ff00ff00ff00ffULL) + ((zero_lanes >> 8) & 0x00ff00ff00ff00ffULL);
      zeros += static_cast<size_t>((pairs * 0x0001000100010001ULL) >> 48);
      zero_lanes = 0;
    }
  }
  static_assert(kRegisters % 1024 == 0);
  const bool exact = (above & kHighBit) == 0;
  const uint64_t scaled_sum = sum_even + sum_odd;
  double sum = 0.0;
  if (exact) {
    sum = static_cast<double>(scaled_sum) * kInversePowers.v[kExactRank];
  } else {
    for (uint8_t r : dense_) sum += kInversePowers.v[r];
  }
  const double alpha = 0.7213 / (1.0 + 1.079 / m);
  const double raw = alpha * m * m / sum;
  // Linear counting is far more accurate in the small range (Flajolet et al., Heule et al.).
  if (zeros != 0) {
    const double linear = m * std::log(m / static_cast<double>(zeros));
    if (linear <= 3.0 * m) return linear;  // LC error stays < 1.1% up to 3m
  }
  return raw;
}

void HyperLogLog::clear() {
  table_.clear();
  sparse_size_ = 0;
  slot_shift_ = 64;
  has_zero_ = false;
  dense_.clear();
}

void HyperLogLog::serialize(std::string& out) const {
  if (dense_.empty()) {
    // Ascending hashes: the bytes depend on the set only, not on insertion order or table size.
    std::vector<uint64_t> sorted;
    sorted.reserve(sparse_count());
    if (has_zero_) sorted.push_back(0);
    for (uint64_t h : table_) {
      if (h != 0) sorted.push_back(h);
    }
    std::sort(sorted.begin(), sorted.end());
    byte_codec::put_u32(out, static_cast<uint32_t>(sorted.size()));
    const size_t at = out.size();
    out.resize(at + sorted.size() * sizeof(uint64_t));
    char* p = out.data() + at;
    for (uint64_t h : sorted) {
      byte_codec::store_u64(p, h);
      p += sizeof(uint64_t);
    }
    return;
  }
  size_t nonzero = 0;
  for (const uint8_t r : dense_) nonzero += r != 0 ? 1 : 0;
  if (nonzero * kCompactBytesPerRegister >= kRegisters) {
    byte_codec::put_u32(out, kDenseMarker);
    out.append(reinterpret_cast<const char*>(dense_.data()), dense_.size());  // one byte each
    return;
  }
  // Few registers set (a set just past the exact limit, or a minute's actors of a partition):
  // each as the gap from the previous one and its rank, 2-3 bytes instead of 16 KiB in all.
  byte_codec::put_u32(out, kCompactMarker);
  byte_codec::put_var(out, nonzero);
  size_t next = 0;  // the register after the previous one written
  for (size_t reg = 0; reg < kRegisters; ++reg) {
    if (dense_[reg] == 0) continue;
    byte_codec::put_var(out, reg - next);
    byte_codec::put_u8(out, dense_[reg]);
    next = reg + 1;
  }
}

Result<HyperLogLog> HyperLogLog::deserialize(std::string_view& in) {
  HyperLogLog h;
  if (in.size() < 4) return make_error(ErrorKind::fatal, "hyperloglog: truncated header");
  const uint32_t n = byte_codec::load_u32(in.data());
  in.remove_prefix(4);
  if (n == kDenseMarker) {
    if (in.size() < kRegisters) return make_error(ErrorKind::fatal, "hyperloglog: truncated dense");
    h.dense_.assign(in.begin(), in.begin() + kRegisters);
    in.remove_prefix(kRegisters);
    return h;
  }
  if (n == kCompactMarker) {
    byte_codec::Reader r(in);
    const uint64_t nonzero = r.var();
    if (!r.ok() || nonzero > kRegisters)
      return make_error(ErrorKind::fatal, "hyperloglog: bad compact length");
    h.dense_.assign(kRegisters, 0);
    uint64_t next = 0;
    for (uint64_t i = 0; i < nonzero; ++i) {
      const uint64_t reg = next + r.var();
      const uint8_t rank = r.u8();
      if (!r.ok() || reg >= kRegisters || rank == 0 || rank > kMaxRank) {
        return make_error(ErrorKind::fatal, "hyperloglog: bad compact register");
      }
      h.dense_[reg] = rank;
      next = reg + 1;
    }
    in = r.rest();
    return h;
  }
  if (n > kSparseLimit || in.size() < n * sizeof(uint64_t)) {
    return make_error(ErrorKind::fatal, "hyperloglog: bad sparse length");
  }
  for (uint32_t i = 0; i < n; ++i) h.add(byte_codec::load_u64(in.data() + i * sizeof(uint64_t)));
  in.remove_prefix(n * sizeof(uint64_t));
  return h;
}

}  // namespace sp
