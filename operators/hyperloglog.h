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
  bool empty() const { return sparse_.empty() && dense_.empty(); }
  bool is_dense() const { return !dense_.empty(); }
  void clear();

  // Appends a self-delimiting, deterministic encoding; deserialize consumes it from `in`.
  void serialize(std::string& out) const;
  static Result<HyperLogLog> deserialize(std::string_view& in);

 private:
  void densify();
  void add_dense(uint64_t hash);

  std::vector<uint64_t> sparse_;  // sorted, unique; used while dense_ is empty
  std::vector<uint8_t> dense_;    // kRegisters ranks once dense
};

}  // namespace sp
