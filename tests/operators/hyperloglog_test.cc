#include "operators/hyperloglog.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cmath>
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
