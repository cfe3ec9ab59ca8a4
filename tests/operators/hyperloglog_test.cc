#include "operators/hyperloglog.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <string>

namespace sp {
namespace {

uint64_t hash_of(uint64_t i) {
  const std::string s = "actor-" + std::to_string(i);
  return XXH3_64bits(s.data(), s.size());
}

TEST(HyperLogLog, ExactWhileSparse) {
  HyperLogLog h;
  for (uint64_t i = 0; i < 300; ++i) {
    h.add(hash_of(i));
    h.add(hash_of(i));  // duplicates never count
  }
  EXPECT_FALSE(h.is_dense());
  EXPECT_EQ(h.estimate(), 300.0);
}

class HyperLogLogError : public ::testing::TestWithParam<uint64_t> {};

TEST_P(HyperLogLogError, WithinTwoPercent) {
  const uint64_t n = GetParam();
  HyperLogLog h;
  for (uint64_t i = 0; i < n; ++i) h.add(hash_of(i));
  const double rel = std::abs(h.estimate() - static_cast<double>(n)) / static_cast<double>(n);
  EXPECT_LE(rel, 0.02) << "n=" << n << " estimate=" << h.estimate();
}

INSTANTIATE_TEST_SUITE_P(Cardinalities, HyperLogLogError,
                         ::testing::Values(1000, 5000, 20000, 60000, 200000, 1000000));

TEST(HyperLogLog, MergeEqualsUnion) {
  HyperLogLog a, b, all;
  for (uint64_t i = 0; i < 50000; ++i) {
    (i % 2 ? a : b).add(hash_of(i));
    all.add(hash_of(i));
  }
  a.merge(b);
  EXPECT_DOUBLE_EQ(a.estimate(), all.estimate());
}

TEST(HyperLogLog, SerializeRoundTrip) {
  for (uint64_t n : {0, 10, 5000}) {
    HyperLogLog h;
    for (uint64_t i = 0; i < n; ++i) h.add(hash_of(i));
    std::string bytes;
    h.serialize(bytes);
    std::string_view in = bytes;
    auto back = HyperLogLog::deserialize(in);
    ASSERT_TRUE(back.has_value());
    EXPECT_TRUE(in.empty());
    EXPECT_EQ(back->estimate(), h.estimate());
  }
}

TEST(HyperLogLog, StaysExactUpToTheSparseLimit) {
  HyperLogLog h;
  for (uint64_t i = 0; i < HyperLogLog::kSparseLimit; ++i) h.add(hash_of(i));
  EXPECT_FALSE(h.is_dense());
  EXPECT_EQ(h.estimate(), static_cast<double>(HyperLogLog::kSparseLimit));
  h.add(hash_of(0));  // a known hash at the limit does not densify
  EXPECT_FALSE(h.is_dense());
  h.add(hash_of(HyperLogLog::kSparseLimit));
  EXPECT_TRUE(h.is_dense());
}

TEST(HyperLogLog, ZeroHashCountsOnce) {
  HyperLogLog h;
  h.add(0);
  h.add(0);
  h.add(1);
  EXPECT_EQ(h.estimate(), 2.0);
  std::string bytes;
  h.serialize(bytes);
  std::string_view in = bytes;
  auto back = HyperLogLog::deserialize(in);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->estimate(), 2.0);
}

TEST(HyperLogLog, SparseBytesDependOnTheSetOnly) {
  HyperLogLog forward, backward, merged, left, right;
  for (uint64_t i = 0; i < 400; ++i) {
    forward.add(hash_of(i));
    backward.add(hash_of(399 - i));
    (i % 3 ? left : right).add(hash_of(i));
  }
  merged.merge(left);
  merged.merge(right);
  std::string a, b, c;
  forward.serialize(a);
  backward.serialize(b);
  merged.serialize(c);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
  // Ascending 64-bit hashes after the 4-byte count.
  ASSERT_EQ(a.size(), 4 + 400 * sizeof(uint64_t));
  for (size_t k = 1; k < 400; ++k) {
    uint64_t prev = 0, cur = 0;
    std::memcpy(&prev, a.data() + 4 + (k - 1) * 8, 8);
    std::memcpy(&cur, a.data() + 4 + k * 8, 8);
    EXPECT_LT(prev, cur);
  }
}

TEST(HyperLogLog, DensifiedEqualsDirectlyDense) {
  // The dense registers do not depend on when the sparse phase ended or in what order hashes came.
  HyperLogLog a, b, sparse_part;
  for (uint64_t i = 0; i < 3000; ++i) a.add(hash_of(i));
  for (uint64_t i = 0; i < 300; ++i) sparse_part.add(hash_of(2999 - i));
  for (uint64_t i = 300; i < 3000; ++i) b.add(hash_of(2999 - i));
  b.merge(sparse_part);
  std::string x, y;
  a.serialize(x);
  b.serialize(y);
  EXPECT_EQ(x, y);
}

// The estimate as first written: a double sum of 2^-rank in register order.
double reference_estimate(const HyperLogLog& h) {
  std::string bytes;
  h.serialize(bytes);
  const double m = static_cast<double>(HyperLogLog::kRegisters);
  double sum = 0.0;
  size_t zeros = 0;
  for (size_t i = 4; i < bytes.size(); ++i) {
    const int r = static_cast<unsigned char>(bytes[i]);
    sum += std::ldexp(1.0, -r);
    zeros += r == 0;
  }
  const double raw = 0.7213 / (1.0 + 1.079 / m) * m * m / sum;
  if (zeros != 0) {
    const double linear = m * std::log(m / static_cast<double>(zeros));
    if (linear <= 3.0 * m) return linear;
  }
  return raw;
}

TEST(HyperLogLog, DenseEstimateIsTheRegisterOrderSum) {
  for (uint64_t n : {600, 20000, 60000, 300000}) {
    HyperLogLog h;
    for (uint64_t i = 0; i < n; ++i) h.add(hash_of(i));
    ASSERT_TRUE(h.is_dense());
    EXPECT_EQ(h.estimate(), reference_estimate(h)) << n;
  }
}

TEST(HyperLogLog, DenseEstimateWithARankAboveTheExactRange) {
  HyperLogLog h;
  for (uint64_t i = 0; i < 300000; ++i) h.add(hash_of(i));
  h.add(uint64_t{7} << (64 - HyperLogLog::kPrecision));  // register 7 gets the maximum rank, 51
  EXPECT_EQ(h.estimate(), reference_estimate(h));
}

TEST(HyperLogLog, DenseEstimateOfArbitraryRegisters) {
  // Restored registers need not come from add(): every rank pattern, including out-of-range bytes.
  for (int modulus : {1, 2, 17, 40, 41, 60, 256}) {
    std::string bytes;
    const uint32_t dense_marker = UINT32_MAX;
    bytes.append(reinterpret_cast<const char*>(&dense_marker), 4);
    for (size_t i = 0; i < HyperLogLog::kRegisters; ++i) {
      bytes.push_back(static_cast<char>((i * 7) % static_cast<size_t>(modulus)));
    }
    std::string_view in = bytes;
    auto h = HyperLogLog::deserialize(in);
    ASSERT_TRUE(h.has_value());
    EXPECT_EQ(h->estimate(), reference_estimate(*h)) << modulus;
  }
}

TEST(HyperLogLog, RejectsTruncatedBytes) {
  HyperLogLog h;
  for (uint64_t i = 0; i < 5000; ++i) h.add(hash_of(i));
  std::string bytes;
  h.serialize(bytes);
  std::string_view in(bytes.data(), bytes.size() / 2);
  EXPECT_FALSE(HyperLogLog::deserialize(in).has_value());
}

}  // namespace
}  // namespace sp
