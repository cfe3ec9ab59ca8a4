#include "operators/hyperloglog.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>

namespace sp {

void HyperLogLog::add(uint64_t hash) {
  if (!dense_.empty()) {
    add_dense(hash);
    return;
  }
  if (std::find(pending_.begin(), pending_.end(), hash) != pending_.end()) return;
  if (std::binary_search(sparse_.begin(), sparse_.end(), hash)) return;
  if (sparse_.size() + pending_.size() >= kSparseLimit) {
    densify();
    add_dense(hash);
    return;
  }
  if (pending_.capacity() == 0) pending_.reserve(kPendingLimit);
  pending_.push_back(hash);
  if (pending_.size() == kPendingLimit) flush_pending();
}

void HyperLogLog::flush_pending() const {
  if (pending_.empty()) return;
  std::sort(pending_.begin(), pending_.end());
  const auto middle = static_cast<std::ptrdiff_t>(sparse_.size());
  sparse_.insert(sparse_.end(), pending_.begin(), pending_.end());
  std::inplace_merge(sparse_.begin(), sparse_.begin() + middle, sparse_.end());
  pending_.clear();
}

void HyperLogLog::add_dense(uint64_t hash) {
  const size_t index = hash >> (64 - kPrecision);
  const uint64_t rest = (hash << kPrecision) | (uint64_t{1} << (kPrecision - 1));
  const uint8_t rank = static_cast<uint8_t>(std::countl_zero(rest) + 1);
  if (dense_[index] < rank) dense_[index] = rank;
}

void HyperLogLog::densify() {
  dense_.assign(kRegisters, 0);
  for (uint64_t h : sparse_) add_dense(h);
  for (uint64_t h : pending_) add_dense(h);
  sparse_.clear();
  sparse_.shrink_to_fit();
  pending_.clear();
  pending_.shrink_to_fit();
}

void HyperLogLog::merge(const HyperLogLog& other) {
  if (other.dense_.empty()) {
    for (uint64_t h : other.sparse_) add(h);
    for (uint64_t h : other.pending_) add(h);
    return;
  }
  if (dense_.empty()) densify();
  for (size_t i = 0; i < kRegisters; ++i) dense_[i] = std::max(dense_[i], other.dense_[i]);
}

namespace {
// 2^-r for every possible rank: the same doubles std::ldexp(1.0, -r) gives, without the call.
struct InversePowers {
  std::array<double, 65> v{};
  InversePowers() {
    for (size_t r = 0; r < v.size(); ++r) v[r] = std::ldexp(1.0, -static_cast<int>(r));
  }
};
const InversePowers kInversePowers;
}  // namespace

double HyperLogLog::estimate() const {
  if (dense_.empty()) return static_cast<double>(sparse_.size() + pending_.size());
  const double m = static_cast<double>(kRegisters);
  double sum = 0.0;
  size_t zeros = 0;
  // Same additions in the same order as before: bit-identical estimates.
  for (uint8_t r : dense_) {
    sum += kInversePowers.v[r];
    zeros += r == 0;
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
  sparse_.clear();
  pending_.clear();
  dense_.clear();
}

namespace {
void put_u32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
bool get_u32(std::string_view& in, uint32_t& v) {
  if (in.size() < 4) return false;
  std::memcpy(&v, in.data(), 4);
  in.remove_prefix(4);
  return true;
}
}  // namespace

void HyperLogLog::serialize(std::string& out) const {
  if (dense_.empty()) {
    flush_pending();
    put_u32(out, static_cast<uint32_t>(sparse_.size()));
    out.append(reinterpret_cast<const char*>(sparse_.data()), sparse_.size() * sizeof(uint64_t));
  } else {
    put_u32(out, UINT32_MAX);
    out.append(reinterpret_cast<const char*>(dense_.data()), dense_.size());
  }
}

Result<HyperLogLog> HyperLogLog::deserialize(std::string_view& in) {
  HyperLogLog h;
  uint32_t n = 0;
  if (!get_u32(in, n)) return make_error(ErrorKind::fatal, "hyperloglog: truncated header");
  if (n == UINT32_MAX) {
    if (in.size() < kRegisters) return make_error(ErrorKind::fatal, "hyperloglog: truncated dense");
    h.dense_.assign(in.begin(), in.begin() + kRegisters);
    in.remove_prefix(kRegisters);
    return h;
  }
  if (n > kSparseLimit || in.size() < n * sizeof(uint64_t)) {
    return make_error(ErrorKind::fatal, "hyperloglog: bad sparse length");
  }
  h.sparse_.resize(n);
  std::memcpy(h.sparse_.data(), in.data(), n * sizeof(uint64_t));
  in.remove_prefix(n * sizeof(uint64_t));
  return h;
}

}  // namespace sp
