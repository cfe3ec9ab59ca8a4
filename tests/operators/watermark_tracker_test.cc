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
  MemoryState state;
  for (PartitionId p : {kP0, kP1, kGlobalPartition}) {
    ScopedStateWriter out(state, state_scope("tracker", p));
    t.snapshot(p, out);
  }

  WatermarkTracker r({});
  for (PartitionId p : {kP0, kP1, kGlobalPartition}) {
    ScopedStateReader in(state, state_scope("tracker", p));
    ASSERT_TRUE(r.restore(p, in));
  }
  EXPECT_EQ(r.partition_watermark(kP0), t.partition_watermark(kP0));
  EXPECT_EQ(r.pipeline_watermark(), t.pipeline_watermark());
  MemoryState again;
  for (PartitionId p : {kP0, kP1, kGlobalPartition}) {
    ScopedStateWriter out(again, state_scope("tracker", p));
    r.snapshot(p, out);
  }
  EXPECT_EQ(again.entries(), state.entries());
  MemoryState garbage;
  garbage.put("clock", "garbage");
  EXPECT_FALSE(r.restore(kP0, garbage));
}

TEST(WatermarkTracker, RestoreWithoutStateAssignsThePartition) {
  WatermarkTracker t({});
  MemoryState empty;
  ASSERT_TRUE(t.restore(kP0, empty));
  EXPECT_TRUE(t.is_assigned(kP0));
  EXPECT_EQ(t.partition_watermark(kP0), kMinEventTime);
}

TEST(WatermarkTracker, UnknownFormatVersionIsRefusedByName) {
  WatermarkTracker t({});
  t.observe(kP0, kT0, kWall0);
  MemoryState state;
  t.snapshot(kP0, state);
  const std::string good = state.get("clock").value().value();
  std::string value = good;
  value[0] = 9;  // the version byte, 1 today
  state.put("clock", value);
  WatermarkTracker r({});
  const auto refused = r.restore(kP0, state);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("version 9"), std::string::npos)
      << refused.error().message;
  for (size_t cut = 0; cut < good.size(); ++cut) {
    MemoryState truncated;
    truncated.put("clock", good.substr(0, cut));
    EXPECT_FALSE(r.restore(kP0, truncated)) << cut;
  }
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
