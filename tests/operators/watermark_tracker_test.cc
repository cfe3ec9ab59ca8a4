#include "operators/watermark_tracker.h"

#include <gtest/gtest.h>

#include "operators/operator.h"

namespace sp {
namespace {

using std::chrono::seconds;

constexpr PartitionId kP0{0};
constexpr PartitionId kP1{1};
const EventTime kT0 = from_epoch_ms(1'795'000'000'000);
const WallTime kWall0{std::chrono::milliseconds(1'795'000'000'000)};

bool no_lag(PartitionId) { return false; }

TEST(WatermarkTracker, PartitionWatermarkIsMaxEventTimeMinusTolerance) {
  WatermarkTracker t({});
  t.assign(kP0);
  EXPECT_EQ(t.partition_watermark(kP0), kMinEventTime);
  t.observe(kP0, kT0 + seconds(30), kWall0);
  t.observe(kP0, kT0 + seconds(5), kWall0);  // out of order: never lowers it
  EXPECT_EQ(t.partition_watermark(kP0), kT0 + seconds(20));
}

TEST(WatermarkTracker, PipelineIsUnknownUntilEveryActivePartitionHasEvents) {
  WatermarkTracker t({});
  t.assign(kP0);
  t.assign(kP1);
  t.update_idle(kWall0, no_lag);
  EXPECT_FALSE(t.observe(kP0, kT0 + seconds(30), kWall0));
  EXPECT_EQ(t.pipeline_watermark(), kMinEventTime);
  EXPECT_TRUE(t.observe(kP1, kT0 + seconds(15), kWall0));
  EXPECT_EQ(t.pipeline_watermark(), kT0 + seconds(5));  // min over partitions
}

TEST(WatermarkTracker, AssigningAPartitionNeverMovesThePipelineBack) {
  WatermarkTracker t({});
  t.assign(kP0);
  t.observe(kP0, kT0 + seconds(30), kWall0);
  const EventTime before = t.pipeline_watermark();
  t.assign(kP1);
  t.observe(kP1, kT0, kWall0);
  EXPECT_EQ(t.pipeline_watermark(), before);
}

TEST(WatermarkTracker, QuietPartitionStopsHoldingAfterIdleTimeout) {
  WatermarkTracker t({});
  t.assign(kP0);
  t.assign(kP1);
  t.update_idle(kWall0, no_lag);
  t.observe(kP0, kT0 + seconds(60), kWall0 + seconds(25));
  EXPECT_FALSE(t.update_idle(kWall0 + seconds(29), no_lag));
  EXPECT_EQ(t.pipeline_watermark(), kMinEventTime);
  EXPECT_TRUE(t.update_idle(kWall0 + seconds(30), no_lag));
  EXPECT_TRUE(t.is_idle(kP1));
  EXPECT_FALSE(t.is_idle(kP0));
  EXPECT_EQ(t.pipeline_watermark(), kT0 + seconds(50));
}

TEST(WatermarkTracker, LaggingPartitionIsNeverIdle) {
  WatermarkTracker t({});
  t.assign(kP0);
  t.assign(kP1);
  t.update_idle(kWall0, no_lag);
  t.observe(kP0, kT0 + seconds(60), kWall0);
  t.observe(kP1, kT0, kWall0);
  auto p1_lags = [](PartitionId p) { return p == kP1; };
  t.update_idle(kWall0 + seconds(120), p1_lags);
  EXPECT_FALSE(t.is_idle(kP1));
  EXPECT_EQ(t.pipeline_watermark(), kT0 - seconds(10));
  // The idle timer restarts when the lag clears: not idle right away.
  t.update_idle(kWall0 + seconds(125), no_lag);
  EXPECT_FALSE(t.is_idle(kP1));
}

TEST(WatermarkTracker, WakingPartitionDoesNotPullPipelineBack) {
  WatermarkTracker t({});
  t.assign(kP0);
  t.assign(kP1);
  t.observe(kP1, kT0, kWall0);
  t.observe(kP0, kT0 + seconds(100), kWall0 + seconds(40));
  t.update_idle(kWall0 + seconds(40), no_lag);  // p1 quiet for 40s
  EXPECT_EQ(t.pipeline_watermark(), kT0 + seconds(90));
  EXPECT_FALSE(t.observe(kP1, kT0 + seconds(1), kWall0 + seconds(41)));
  EXPECT_FALSE(t.is_idle(kP1));
  EXPECT_EQ(t.pipeline_watermark(), kT0 + seconds(90));
}

TEST(WatermarkTracker, AllIdleFollowsWallClock) {
  WatermarkTracker t({});
  t.assign(kP0);
  t.observe(kP0, kT0, kWall0);
  EXPECT_TRUE(t.update_idle(kWall0 + seconds(30), no_lag));
  EXPECT_EQ(t.pipeline_watermark(), std::chrono::floor<Millis>(kWall0) + seconds(20));
  EXPECT_TRUE(t.update_idle(kWall0 + seconds(90), no_lag));
  EXPECT_EQ(t.pipeline_watermark(), std::chrono::floor<Millis>(kWall0) + seconds(80));
}

TEST(WatermarkTracker, FreshPartitionWithoutMessagesIdlesOnlyAfterTimeout) {
  WatermarkTracker t({});
  t.assign(kP0);
  t.update_idle(kWall0, no_lag);
  t.update_idle(kWall0 + seconds(29), no_lag);
  EXPECT_FALSE(t.is_idle(kP0));
  EXPECT_EQ(t.pipeline_watermark(), kMinEventTime);
  t.update_idle(kWall0 + seconds(30), no_lag);
  EXPECT_TRUE(t.is_idle(kP0));
}

TEST(WatermarkTracker, RevokingTheSlowestPartitionAdvances) {
  WatermarkTracker t({});
  t.assign(kP0);
  t.assign(kP1);
  t.observe(kP1, kT0, kWall0);
  t.observe(kP0, kT0 + seconds(60), kWall0);
  EXPECT_EQ(t.pipeline_watermark(), kT0 - seconds(10));
  EXPECT_TRUE(t.revoke(kP1));
  EXPECT_EQ(t.pipeline_watermark(), kT0 + seconds(50));
}

TEST(WatermarkTracker, SnapshotRestoreRoundTripsDeterministically) {
  WatermarkTracker t({});
  t.observe(kP0, kT0 + seconds(60), kWall0);
  t.observe(kP1, kT0 + seconds(40), kWall0);
  std::string p0, p1, global;
  t.snapshot(kP0, p0);
  t.snapshot(kP1, p1);
  t.snapshot(kGlobalPartition, global);

  WatermarkTracker r({});
  ASSERT_TRUE(r.restore(kP0, p0));
  ASSERT_TRUE(r.restore(kP1, p1));
  ASSERT_TRUE(r.restore(kGlobalPartition, global));
  EXPECT_EQ(r.partition_watermark(kP0), t.partition_watermark(kP0));
  EXPECT_EQ(r.pipeline_watermark(), t.pipeline_watermark());
  std::string again;
  r.snapshot(kP1, again);
  EXPECT_EQ(again, p1);
  EXPECT_FALSE(r.restore(kP0, "garbage"));
}

TEST(WatermarkTracker, CopyKeepsItsOwnPartitions) {
  WatermarkTracker t({});
  t.assign(kP0);
  t.observe(kP0, kT0 + seconds(30), kWall0);
  WatermarkTracker copy = t;
  copy.observe(kP0, kT0 + seconds(60), kWall0);
  EXPECT_EQ(t.partition_watermark(kP0), kT0 + seconds(20));
  EXPECT_EQ(copy.partition_watermark(kP0), kT0 + seconds(50));
  t = copy;
  t.observe(kP0, kT0 + seconds(90), kWall0);
  EXPECT_EQ(copy.partition_watermark(kP0), kT0 + seconds(50));
  EXPECT_EQ(t.partition_watermark(kP0), kT0 + seconds(80));
}

TEST(WatermarkTracker, RevokedPartitionStartsOverWhenSeenAgain) {
  WatermarkTracker t({});
  t.assign(kP0);
  t.assign(kP1);
  t.observe(kP0, kT0 + seconds(30), kWall0);
  t.observe(kP1, kT0 + seconds(30), kWall0);
  t.revoke(kP1);
  EXPECT_FALSE(t.is_assigned(kP1));
  EXPECT_EQ(t.partition_watermark(kP1), kMinEventTime);
  t.observe(kP1, kT0 + seconds(12), kWall0);
  EXPECT_TRUE(t.is_assigned(kP1));
  EXPECT_EQ(t.partition_watermark(kP1), kT0 + seconds(2));
}

}  // namespace
}  // namespace sp
