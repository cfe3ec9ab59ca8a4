#pragma once
// Distinct counter: exact (a set of hashes) up to kSparseLimit items, then a dense HyperLogLog with
// 2^14 registers (standard error 0.81%). Inputs are already 64-bit hashes (XXH3 of actor ids).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace sp {

class HyperLogLog {
 public:
  static constexpr int kPrecision = 14;
  static constexpr size_t kRegisters = size_t{1} << kPrecision;
  static constexpr size_t kSparseLimit = 512;

  // The register a hash updates and the rank it offers there (1 + leading zeros of the rest,
  // 1..kMaxRank).
  static constexpr int kMaxRank = 64 - kPrecision + 1;
  static size_t register_of(uint64_t hash) {
    return static_cast<size_t>(hash >> (64 - kPrecision));
  }
  static uint8_t rank_of(uint64_t hash);

  // True when the hash changed the state (a new hash of the exact set, the switch to registers,
  // or a raised register): replaying only those hashes onto the state as it was rebuilds the
  // state as it is (WindowOperator's checkpoint deltas, issue #20).
  bool add(uint64_t hash);
  void merge(const HyperLogLog& other);
  // Densifies, then raises every register to at least ranks[i] (kRegisters entries).
  void merge_registers(const uint8_t* ranks);
  double estimate() const;
  bool empty() const { return sparse_count() == 0 && dense_.empty(); }
  bool is_dense() const { return !dense_.empty(); }
  void clear();
  // The registers once dense (kRegisters ranks), else nullptr.
  const uint8_t* registers() const { return dense_.empty() ? nullptr : dense_.data(); }
  // Appends the sparse set's hashes, in no particular order (nothing once dense).
  void append_hashes(std::vector<uint64_t>& out) const;

  // Appends a self-delimiting, deterministic encoding: a u32 count and the sparse set's hashes in
  // ascending order, or kDenseMarker and every register, or (fewer than a third of the registers
  // set) kCompactMarker and the set registers as (gap, rank) pairs. deserialize consumes it from
  // `in` and reads all three.
  void serialize(std::string& out) const;
  static Result<HyperLogLog> deserialize(std::string_view& in);

 private:
  // The sparse set is an open-addressing table (linear probing, load <= 3/4, 0 = empty slot; the
  // hash 0 itself is kept in has_zero_): one probe per add instead of a binary search plus
  // buffered sorted merges. Order does not matter for anything but serialize(), which sorts.
  static constexpr size_t kInitialSlots = 16;
  static constexpr uint32_t kDenseMarker = UINT32_MAX;
  static constexpr uint32_t kCompactMarker = UINT32_MAX - 1;  // issue #20: 2-3 bytes a register
  static constexpr size_t kCompactBytesPerRegister = 3;       // at most: a 2-byte gap and a rank

  size_t sparse_count() const { return sparse_size_ + (has_zero_ ? 1 : 0); }
  size_t slot_of(uint64_t hash) const {
    return static_cast<size_t>((hash * 0x9e3779b97f4a7c15ULL) >> slot_shift_);
  }
  bool insert_sparse(uint64_t hash);  // hash != 0; inserts if absent; densifies past the limit
  void grow();
  void densify();
  bool add_dense(uint64_t hash);  // true when it raised a register

  std::vector<uint64_t> table_;  // sparse slots; empty once dense
  uint32_t sparse_size_ = 0;     // non-zero hashes in table_
  uint8_t slot_shift_ = 64;      // 64 - log2(table_.size())
  bool has_zero_ = false;
  std::vector<uint8_t> dense_;  // kRegisters ranks once dense
};

}  // namespace sp
