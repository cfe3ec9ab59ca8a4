#pragma once
// Distinct counter: exact (sorted hashes) up to kSparseLimit items, then a dense HyperLogLog with
// 2^14 registers (standard error 0.81%). Inputs are already 64-bit hashes (XXH3 of actor ids).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "operators/result.h"

namespace sp {

class HyperLogLog {
 public:
  static constexpr int kPrecision = 14;
  static constexpr size_t kRegisters = size_t{1} << kPrecision;
  static constexpr size_t kSparseLimit = 512;

  void add(uint64_t hash);
  void merge(const HyperLogLog& other);
  double estimate() const;
  bool empty() const { return sparse_.empty() && pending_.empty() && dense_.empty(); }
  bool is_dense() const { return !dense_.empty(); }
  void clear();

  // Appends a self-delimiting, deterministic encoding; deserialize consumes it from `in`.
  void serialize(std::string& out) const;
  static Result<HyperLogLog> deserialize(std::string_view& in);

 private:
  // New sparse hashes wait in a short unsorted buffer and are merged into sparse_ in runs: one
  // sorted insert per hash would move half the sparse array every time.
  static constexpr size_t kPendingLimit = 32;

  void densify();
  void add_dense(uint64_t hash);
  void flush_pending() const;

  // Sparse set = sparse_ (sorted, unique) + pending_ (unsorted, unique, not in sparse_); used
  // while dense_ is empty. Readers that need the sorted set flush first, hence mutable.
  mutable std::vector<uint64_t> sparse_;
  mutable std::vector<uint64_t> pending_;
  std::vector<uint8_t> dense_;  // kRegisters ranks once dense
};

}  // namespace sp
