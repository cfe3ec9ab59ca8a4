#include "operators/spike_detector.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

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

// A bucket with negative score `x`, 30 opinion events and a steady positive side.
BucketObservation bucket(int64_t minute, double x, int64_t events = 30, double positive = 20.0) {
  BucketObservation b;
  b.minute = minute;
  b.negative = x;
  b.positive = positive;
  b.weight = x + positive + 10.0;
  b.opinion_events = events;
  return b;
}

// The v1 detector: plain EWMA z-score, one verdict per bucket, no guards.
SpikeSettings legacy_settings() {
  SpikeSettings s;
  s.warmup = 0;
  s.stddev_floor = 0.0;
  s.drop_threshold = 0.0;
  s.persistence = 1;
  s.cooldown = Millis{0};
  s.seasonal = false;
  return s;
}

struct Fed {
  SpikeDetector detector;
  int64_t minute = 0;
  std::vector<SpikeVerdict> verdicts;
  explicit Fed(SpikeSettings s = {}) : detector(s) {}
  const SpikeVerdict& feed(const BucketObservation& b) {
    verdicts.push_back(detector.observe(b));
    minute = b.minute + 1;
    return verdicts.back();
  }
  void noise(Noise& n, int buckets, double level = 10.0) {
    for (int i = 0; i < buckets; ++i) feed(bucket(minute, level + 2.0 * n.next()));
  }
  int transitions(EpisodeTransition t) const {
    int count = 0;
    for (const SpikeVerdict& v : verdicts) count += v.transition == t;
    return count;
  }
};

TEST(SpikeDetector, SeverityGrowsWithTheDeviation) {
  EXPECT_EQ(severity_of(2.9, 3.0), 0);
  EXPECT_EQ(severity_of(3.0, 3.0), 1);
  EXPECT_EQ(severity_of(6.0, 3.0), 4);
  EXPECT_EQ(severity_of(12.0, 3.0), 7);
  EXPECT_EQ(severity_of(1000.0, 3.0), 10);
}

TEST(SpikeDetector, ScoresBeforeUpdatingAndClipsTheAnomaly) {
  Fed f(legacy_settings());
  f.feed(bucket(0, 1.0, 0));
  f.feed(bucket(1, 0.0, 0));  // mean 0.9, var 0.9 * (0 + 0.1 * 1) = 0.09
  EXPECT_NEAR(f.detector.mean(), 0.9, 1e-15);
  EXPECT_NEAR(f.detector.variance(), 0.09, 1e-15);
  const SpikeVerdict v = f.feed(bucket(2, 3.0, 20));
  EXPECT_NEAR(v.mean, 0.9, 1e-15);
  EXPECT_NEAR(v.stddev, 0.3, 1e-15);
  EXPECT_NEAR(v.zscore, 7.0, 1e-12);
  EXPECT_TRUE(v.anomalous);
  EXPECT_EQ(v.transition, EpisodeTransition::started);
  // Folded in clipped at mean + 1 stddev = 1.2, not 3.0.
  EXPECT_NEAR(f.detector.mean(), 0.9 + 0.1 * 0.3, 1e-15);
  EXPECT_NEAR(f.detector.variance(), 0.9 * (0.09 + 0.1 * 0.3 * 0.3), 1e-15);
}

TEST(SpikeDetector, NoAlertDuringWarmup) {
  Noise noise;
  Fed f;
  f.noise(noise, 40);
  for (int i = 0; i < 5; ++i) f.feed(bucket(f.minute, 500.0));  // a crisis in minute 40
  EXPECT_EQ(f.transitions(EpisodeTransition::started), 0);
  for (const SpikeVerdict& v : f.verdicts) EXPECT_FALSE(v.anomalous);
}

TEST(SpikeDetector, StddevFloorKeepsACalmBrandSilent) {
  Fed f;
  for (int i = 0; i < 100; ++i) f.feed(bucket(i, 10.0 + 0.001 * (i % 2)));
  const SpikeVerdict v = f.feed(bucket(f.minute, 13.0));  // +30%: noise for a real brand
  EXPECT_NEAR(v.stddev, 2.5, 0.01);  // 0.25 x mean, not the ~0.0005 the series shows
  EXPECT_LT(v.zscore, 3.0);
  EXPECT_FALSE(v.anomalous);
}

TEST(SpikeDetector, OneAlertPerEpisodeThenEndedAfterCooldown) {
  Noise noise;
  Fed f;
  f.noise(noise, 120);
  const int64_t crisis = f.minute;
  for (int i = 0; i < 10; ++i) f.feed(bucket(f.minute, 60.0 + (i % 3) * 10.0));
  f.noise(noise, 30);
  ASSERT_EQ(f.transitions(EpisodeTransition::started), 1);
  ASSERT_EQ(f.transitions(EpisodeTransition::ended), 1);
  for (const SpikeVerdict& v : f.verdicts) {
    if (v.transition == EpisodeTransition::started) {
      EXPECT_EQ(v.episode_start, crisis);  // opened by the 3rd bucket (persistence 3)
      EXPECT_EQ(v.episode_kind, SpikeKind::negative_surge);
      EXPECT_GE(v.episode_severity, 5);
    }
    if (v.transition == EpisodeTransition::ended) {
      EXPECT_EQ(v.episode_start, crisis);
      EXPECT_EQ(v.episode_end, crisis + 10);
    }
  }
  // Ended at the 15th quiet minute (cooldown 15m), not before.
  EXPECT_EQ(f.verdicts[static_cast<size_t>(crisis + 10 + 14)].transition,
            EpisodeTransition::ended);
}

TEST(SpikeDetector, ASingleBucketBlipIsNoEpisode) {
  Noise noise;
  Fed f;
  f.noise(noise, 120);
  const SpikeVerdict v = f.feed(bucket(f.minute, 80.0));
  EXPECT_TRUE(v.anomalous);
  f.noise(noise, 30);
  EXPECT_EQ(f.transitions(EpisodeTransition::started), 0);
}

TEST(SpikeDetector, AnomalyWithinCooldownExtendsTheEpisode) {
  Noise noise;
  Fed f;
  f.noise(noise, 120);
  for (int i = 0; i < 3; ++i) f.feed(bucket(f.minute, 60.0));
  f.noise(noise, 10);
  for (int i = 0; i < 3; ++i) f.feed(bucket(f.minute, 60.0));
  f.noise(noise, 30);
  EXPECT_EQ(f.transitions(EpisodeTransition::started), 1);
  EXPECT_EQ(f.transitions(EpisodeTransition::ended), 1);
}

TEST(SpikeDetector, SilentOnLowVolume) {
  Noise noise;
  Fed f;
  f.noise(noise, 120);
  const SpikeVerdict v = f.feed(bucket(f.minute, 80.0, 19));  // min_events is 20
  EXPECT_GE(v.zscore, 3.0);
  EXPECT_FALSE(v.anomalous);
}

TEST(SpikeDetector, SentimentDropFiresWhenPraiseStops) {
  Noise noise;
  Fed f;
  for (int i = 0; i < 120; ++i) f.feed(bucket(i, 5.0 + noise.next(), 40, 20.0 + noise.next()));
  // Same negative score, the positive side vanishes: net sentiment falls from ~0.4 to ~-0.3.
  SpikeVerdict first;
  for (int i = 0; i < 3; ++i) {
    const SpikeVerdict v = f.feed(bucket(f.minute, 5.5, 40, 0.0));
    if (v.transition == EpisodeTransition::started) first = v;
  }
  EXPECT_EQ(first.transition, EpisodeTransition::started);
  EXPECT_EQ(first.episode_kind, SpikeKind::sentiment_drop);
  EXPECT_LT(first.zscore, 3.0);
  EXPECT_GE(first.drop_zscore, 4.0);
}

TEST(SpikeDetector, HourOfWeekProfileExpectsTheWeeklyRise) {
  // Quiet except one hour a week at 4x: by week 3 the profile knows that hour; the EWMA alone
  // sees a jump every week.
  auto run = [](bool seasonal) {
    SpikeSettings s;
    s.seasonal = seasonal;
    Fed f(s);
    Noise noise;
    for (int64_t m = 0; m < 3 * 7 * 24 * 60; ++m) {
      const bool busy = m % (7 * 24 * 60) >= 600 && m % (7 * 24 * 60) < 660;
      const double x = (busy ? 40.0 : 10.0) + 2.0 * noise.next();
      f.feed(bucket(m, x, 30, 2.0 * x));  // opinion volume moves with it: same net sentiment
    }
    int week3 = 0;
    for (size_t m = 2 * 7 * 24 * 60; m < f.verdicts.size(); ++m) {
      week3 += f.verdicts[m].transition == EpisodeTransition::started;
      if (f.verdicts[m].anomalous && getenv("SPIKE_DEBUG"))
        printf("seasonal=%d m=%zu x=%g mean=%g sd=%g z=%g\n", seasonal, m, f.verdicts[m].value,
               f.verdicts[m].mean, f.verdicts[m].stddev, f.verdicts[m].zscore);
    }
    return week3;
  };
  EXPECT_EQ(run(true), 0);
  EXPECT_EQ(run(false), 1);
}

TEST(SpikeDetector, SerializeRoundTripContinuesIdentically) {
  Noise noise;
  Fed a;
  a.noise(noise, 100);
  a.feed(bucket(a.minute, 70.0));  // mid-run of an anomaly
  std::string bytes;
  a.detector.serialize(bytes);
  SpikeDetector b;
  byte_codec::Reader in(bytes);
  ASSERT_TRUE(b.deserialize(in));
  EXPECT_TRUE(in.done());
  for (int i = 0; i < 40; ++i) {
    const BucketObservation o = bucket(a.minute + i, i < 5 ? 70.0 : 10.0);
    const SpikeVerdict va = a.detector.observe(o);
    const SpikeVerdict vb = b.observe(o);
    EXPECT_EQ(va.zscore, vb.zscore);
    EXPECT_EQ(va.transition, vb.transition);
  }
  std::string again;
  b.serialize(again);
  std::string original;
  a.detector.serialize(original);
  EXPECT_EQ(again, original);
}

TEST(SpikeDetector, FormatTwoRestoresTheBaselineAsWarmedUp) {
  std::string v2;
  byte_codec::put_u64(v2, 1);  // started
  byte_codec::put_f64(v2, 10.0);
  byte_codec::put_f64(v2, 4.0);
  byte_codec::put_f64(v2, 0.5);
  SpikeDetector d;
  byte_codec::Reader in(v2);
  ASSERT_TRUE(d.deserialize_v2(in));
  EXPECT_TRUE(in.done());
  EXPECT_EQ(d.mean(), 10.0);
  EXPECT_GE(d.observed(), 60);
  const SpikeVerdict v = d.observe(bucket(0, 30.0));
  EXPECT_NEAR(v.zscore, 20.0 / 2.5, 1e-12);  // floor 0.25 x 10 beats sqrt(4)
  EXPECT_TRUE(v.anomalous);
}

TEST(SpikeDetector, TruncatedBytesAreRefused) {
  Noise noise;
  Fed a;
  a.noise(noise, 10);
  std::string bytes;
  a.detector.serialize(bytes);
  bytes.resize(bytes.size() - 3);
  SpikeDetector b;
  byte_codec::Reader in(bytes);
  EXPECT_FALSE(b.deserialize(in));
}

}  // namespace
}  // namespace sp
