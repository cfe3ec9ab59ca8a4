#include "pipeline/timestamp_sample.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

namespace sp {
namespace {

TEST(TimestampSampleTest, BelowItsCapacityItKeepsEveryTimestampInOrderButNoMissingOne) {
  TimestampSample sample(8, 1);
  for (int64_t ts : {5, 0, 7, -1, 9}) sample.offer([ts] { return ts; });
  EXPECT_EQ(sample.offered(), 5u);
  EXPECT_EQ(sample.take(), (std::vector<int64_t>{5, 7, 9}));
  EXPECT_EQ(sample.offered(), 0u);  // a new sample
  EXPECT_EQ(sample.size(), 0u);
}

// Offers 1..n to samples of `capacity` with 20 seeds: each tenth of the stream must hold a tenth
// of what was kept (an early or late bias fails), and only the offers that may be kept are read.
TEST(TimestampSampleTest, AFullSampleIsUniformOverTheStreamAndReadsOnlyWhatItKeeps) {
  constexpr size_t kCapacity = 1000;
  constexpr int64_t kOffers = 100'000;
  std::array<size_t, 10> tenths{};
  size_t kept = 0;
  size_t read = 0;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    TimestampSample sample(kCapacity, seed);
    for (int64_t i = 1; i <= kOffers; ++i) {
      sample.offer([&read, i] {
        ++read;
        return i;
      });
    }
    ASSERT_EQ(sample.offered(), static_cast<uint64_t>(kOffers));
    std::vector<int64_t> values = sample.take();
    ASSERT_EQ(values.size(), kCapacity);
    std::sort(values.begin(), values.end());
    ASSERT_EQ(std::adjacent_find(values.begin(), values.end()), values.end()) << "kept twice";
    for (int64_t v : values) ++tenths[static_cast<size_t>((v - 1) * 10 / kOffers)];
    kept += values.size();
  }
  for (size_t t = 0; t < tenths.size(); ++t) {
    // 2 000 expected of 20 000, standard deviation ~42.
    EXPECT_NEAR(static_cast<double>(tenths[t]), kept / 10.0, 200.0) << "tenth " << t;
  }
  // Algorithm L reads about capacity * (1 + ln(offers / capacity)) = 5 600 per sample.
  EXPECT_LT(read, 20u * 8'000u);
  EXPECT_GT(read, 20u * kCapacity);
}

TEST(TimestampSampleTest, PutBackSamplesStayInTheNextOne) {
  TimestampSample sample(4, 3);
  for (int64_t ts = 1; ts <= 3; ++ts) sample.offer([ts] { return ts; });
  const std::vector<int64_t> taken = sample.take();
  sample.offer([] { return int64_t{10}; });
  sample.put_back(taken);
  std::vector<int64_t> next = sample.take();
  std::sort(next.begin(), next.end());
  EXPECT_EQ(next, (std::vector<int64_t>{1, 2, 3, 10}));
  // Beyond the capacity after a put_back: offers go on replacing slots, nothing is lost or grown.
  sample.put_back({1, 2, 3, 4, 5});
  for (int64_t ts = 100; ts < 200; ++ts) sample.offer([ts] { return ts; });
  EXPECT_EQ(sample.size(), 5u);
}

}  // namespace
}  // namespace sp
