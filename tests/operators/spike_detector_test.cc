#include "operators/spike_detector.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

namespace sp {
namespace {

// Deterministic uniform noise in [0, 1) (64-bit LCG, Knuth MMIX constants).
class Noise {
 public:
  double next() {
    state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state_ >> 11) * 0x1.0p-53;
  }

 private:
  uint64_t state_ = 42;
};

SpikeDetector warmed_up(Noise& noise) {
  SpikeDetector d;
  for (int i = 0; i < 200; ++i) d.observe(10.0 + noise.next(), 30);
  return d;
}

TEST(SpikeDetector, FirstObservationSeedsMeanWithoutScoring) {
  SpikeDetector d;
  const SpikeVerdict v = d.observe(7.5, 100);
  EXPECT_FALSE(v.spike);
  EXPECT_EQ(v.zscore, 0.0);
  EXPECT_EQ(d.mean(), 7.5);
  EXPECT_EQ(d.variance(), 0.0);
}

TEST(SpikeDetector, ZeroWhileStddevIsZero) {
  SpikeDetector d;
  for (int i = 0; i < 5; ++i) d.observe(5.0, 100);
  const SpikeVerdict v = d.observe(500.0, 100);  // huge jump, but no variance seen yet
  EXPECT_EQ(v.stddev, 0.0);
  EXPECT_EQ(v.zscore, 0.0);
  EXPECT_FALSE(v.spike);
}

TEST(SpikeDetector, ScoresBeforeUpdatingWithDocumentedEwma) {
  SpikeDetector d;
  d.observe(1.0, 0);
  d.observe(0.0, 0);  // mean 0.9, var 0.9 * (0 + 0.1 * 1) = 0.09
  EXPECT_NEAR(d.mean(), 0.9, 1e-15);
  EXPECT_NEAR(d.variance(), 0.09, 1e-15);
  const SpikeVerdict v = d.observe(3.0, 20);
  EXPECT_NEAR(v.mean, 0.9, 1e-15);
  EXPECT_NEAR(v.stddev, 0.3, 1e-15);
  EXPECT_NEAR(v.zscore, 7.0, 1e-12);
  EXPECT_TRUE(v.spike);
  EXPECT_NEAR(d.mean(), 0.9 + 0.1 * 2.1, 1e-15);
  EXPECT_NEAR(d.variance(), 0.9 * (0.09 + 0.1 * 2.1 * 2.1), 1e-15);
}

TEST(SpikeDetector, FiresOnSpike) {
  Noise noise;
  SpikeDetector d = warmed_up(noise);
  const SpikeVerdict v = d.observe(30.0, 25);
  EXPECT_TRUE(v.spike) << "z=" << v.zscore;
  EXPECT_GE(v.zscore, 3.0);
  EXPECT_EQ(d.last_zscore(), v.zscore);
}

TEST(SpikeDetector, SilentOnNoise) {
  Noise noise;
  SpikeDetector d = warmed_up(noise);
  int spikes = 0;
  double max_z = 0.0;
  for (int i = 0; i < 10000; ++i) {
    const SpikeVerdict v = d.observe(10.0 + noise.next(), 30);
    spikes += v.spike;
    max_z = std::max(max_z, v.zscore);
  }
  EXPECT_EQ(spikes, 0) << "max z " << max_z;
  EXPECT_GT(max_z, 0.5);  // the detector is scoring, just not above the threshold
}

TEST(SpikeDetector, SilentOnLowVolume) {
  Noise noise;
  SpikeDetector d = warmed_up(noise);
  const SpikeVerdict v = d.observe(30.0, 19);  // min_events is 20
  EXPECT_GE(v.zscore, 3.0);
  EXPECT_FALSE(v.spike);
}

TEST(SpikeDetector, SerializeRoundTrip) {
  Noise noise;
  SpikeDetector a = warmed_up(noise);
  std::string bytes;
  a.serialize(bytes);
  SpikeDetector b;
  byte_codec::Reader in(bytes);
  ASSERT_TRUE(b.deserialize(in));
  EXPECT_TRUE(in.done());
  const SpikeVerdict va = a.observe(12.0, 30);
  const SpikeVerdict vb = b.observe(12.0, 30);
  EXPECT_EQ(va.zscore, vb.zscore);
  EXPECT_EQ(a.mean(), b.mean());
  EXPECT_EQ(a.variance(), b.variance());
}

}  // namespace
}  // namespace sp
