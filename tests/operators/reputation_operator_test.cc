#include "operators/reputation_operator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "operators/kpi_operators.h"
#include "tests/operators/kpi_test_support.h"
#include "tests/operators/state_test_support.h"

namespace sp {
namespace {

using testing::FakeMetricsWriter;
using testing::RecordingEmitter;

constexpr int64_t kMinute = 60'000;
constexpr int64_t kT0 = 1795478400000;  // 2026-11-24T00:00:00Z, an hour and day boundary

EventTime at_minute(double minute) {
  return from_epoch_ms(kT0 + static_cast<int64_t>(minute * kMinute));
}

Vocabulary vocab() {
  return Vocabulary({{"acme", true}, {"globex", false}, {"initech", false}}, {"twitter"});
}
constexpr BrandIndex kAcme = 0, kGlobex = 1, kInitech = 2, kOther = 3;

// The state key of a brand's minute buckets of one chunk of ten minutes (format 5), or of one
// hour (format 4's `minutes/`).
std::string fmt_bucket_key(std::string_view prefix, std::string_view brand, int64_t chunk) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx",
                static_cast<unsigned long long>(static_cast<uint64_t>(chunk) ^ (uint64_t{1} << 63)));
  return std::string(prefix) + std::string(brand) + "/" + hex;
}
std::string fmt_chunk_key(std::string_view brand, int64_t chunk) {
  return fmt_bucket_key("chunks/", brand, chunk);
}


Event make(BrandIndex brand, EventType type, double minute, int64_t count = 1) {
  Event e;
  e.time = at_minute(minute);
  e.brand = brand;
  e.type = type;
  e.count = count;
  return e;
}
Event opinion(BrandIndex brand, double minute, double sentiment, int64_t count = 1) {
  Event e = make(brand, EventType::comment, minute, count);
  e.has_sentiment = true;
  e.sentiment = sentiment;
  return e;
}

// Drives one ReputationOperator with a pipeline watermark the test controls.
class Harness {
 public:
  explicit Harness(KpiSettings kpi = {}, const Vocabulary& vocabulary = vocab())
      : op(vocabulary, kpi), settings(std::move(kpi)) {}
  void add(const Event& e, int partition = 0) {
    op.process(make_process_context(PartitionId{partition}, watermark, watermark, e, settings,
                                    EmvSettings{}),
               e);
  }
  // The watermark that closes every minute before `minute` (its end + kpi.grace).
  void advance_to_minute(double minute) {
    watermark = at_minute(minute) + settings.grace;
    op.on_watermark(watermark, alerts);
  }
  FakeMetricsWriter metrics() const {
    FakeMetricsWriter w;
    op.collect(w);
    return w;
  }
  ReputationOperator op;
  KpiSettings settings;  // the op's, for the context Topology::process would build
  EventTime watermark = kMinEventTime;
  RecordingEmitter alerts;
};

const std::string kRiAcme = R"(socialpulse_reputation_index{brand="acme"})";

TEST(ReputationOperator, NoGaugesBeforeTheFirstBucketCloses) {
  Harness h;
  h.add(opinion(kAcme, 0.5, 0.9));
  EXPECT_FALSE(h.metrics().has(kRiAcme));
  h.advance_to_minute(0.99);
  EXPECT_FALSE(h.metrics().has(kRiAcme));
  h.advance_to_minute(1);
  EXPECT_DOUBLE_EQ(h.metrics().at(kRiAcme), 90.0);
}

// A writer that reads the counters only (the instance's continued counters, issue #20) is spared
// the gauges, which cost sketch merges, and still gets every counter.
TEST(ReputationOperator, AWriterOfCountersOnlyGetsEveryCounterAndNoGauge) {
  Harness h;
  for (int m = 0; m < 8; ++m) h.add(opinion(kAcme, m + 0.5, m < 7 ? 0.5 : -1.0, m < 7 ? 1 : 50));
  h.advance_to_minute(9);
  h.add(opinion(kAcme, 0.5, 0.5));  // late
  const FakeMetricsWriter all = h.metrics();
  FakeMetricsWriter counters;
  counters.gauges = false;
  h.op.collect(counters);
  std::map<std::string, double> expected;
  for (const auto& [key, value] : all.samples) {
    if (all.types.at(key) != MetricType::gauge) expected[key] = value;
  }
  EXPECT_TRUE(all.has(kRiAcme));  // there were gauges to leave out
  EXPECT_TRUE(expected.contains(R"(socialpulse_reputation_spikes_total{brand="acme"})"));
  EXPECT_TRUE(expected.contains(R"(socialpulse_late_events_total{window="kpi"})"));
  EXPECT_EQ(counters.samples, expected);
}

TEST(ReputationOperator, ReputationIndexExpiresWithTheHorizon) {
  KpiSettings kpi;
  kpi.reputation_horizon = std::chrono::minutes(10);
  Harness h(kpi);
  h.add(opinion(kAcme, 0.2, 0.8));               // P = 0.8, W = 1
  h.add(opinion(kAcme, 5.5, -0.4, 2), /*p=*/1);  // N = 0.8, W = 2
  h.advance_to_minute(10);                       // horizon [0, 10): both buckets
  EXPECT_DOUBLE_EQ(h.metrics().at(kRiAcme), 100.0 * (0.8 - 0.8) / 3.0);
  h.advance_to_minute(11);  // horizon [1, 11): minute 0 expired
  EXPECT_DOUBLE_EQ(h.metrics().at(kRiAcme), -40.0);
  h.advance_to_minute(16);  // horizon [6, 16): W = 0, absent
  EXPECT_FALSE(h.metrics().has(kRiAcme));
}

TEST(ReputationOperator, LateEventsAreExcluded) {
  Harness h;
  h.add(opinion(kAcme, 0.5, 0.5));
  h.advance_to_minute(2);
  h.add(opinion(kAcme, 1.9, -1.0));  // its bucket [1, 2) closed: excluded
  h.advance_to_minute(3);
  EXPECT_DOUBLE_EQ(h.metrics().at(kRiAcme), 50.0);
}

TEST(ReputationOperator, LateEventsAreCountedAsLateForTheKpiBuckets) {
  Harness h;
  h.add(opinion(kAcme, 0.5, 0.5));
  h.advance_to_minute(2);
  h.add(opinion(kAcme, 1.9, -1.0));
  h.add(make(kGlobex, EventType::like, 0.2, 7), /*partition=*/1);  // one event, count 7
  EXPECT_EQ(h.metrics().at(R"(socialpulse_late_events_total{window="kpi"})"), 2.0);
}

TEST(ReputationOperator, BucketsCloseAtWatermarkPlusGrace) {
  // Issue #17: with the default config an event 1-30 s behind the watermark was late for the
  // reputation index but not for the `minute` window (grace 30s). Same rule now.
  Harness h;
  ASSERT_EQ(h.settings.grace, std::chrono::seconds(30));
  h.add(opinion(kAcme, 0.5, 0.5));
  h.watermark = at_minute(1) + std::chrono::seconds(29);
  h.op.on_watermark(h.watermark, h.alerts);
  h.add(opinion(kAcme, 0.9, -0.5));  // 29 s behind the watermark, within grace: counted
  EXPECT_FALSE(h.metrics().has(kRiAcme));
  h.watermark = at_minute(1) + std::chrono::seconds(30);
  h.op.on_watermark(h.watermark, h.alerts);
  EXPECT_DOUBLE_EQ(h.metrics().at(kRiAcme), 0.0);
  h.add(opinion(kAcme, 0.95, -1.0));  // its minute closed: late
  EXPECT_DOUBLE_EQ(h.metrics().at(kRiAcme), 0.0);
  EXPECT_EQ(h.metrics().at(R"(socialpulse_late_events_total{window="kpi"})"), 1.0);
}

TEST(ReputationOperator, LateCountSurvivesARestore) {
  Harness h;
  h.advance_to_minute(2);
  h.add(opinion(kAcme, 0.5, 0.5), /*partition=*/3);
  MemoryState store;
  h.op.snapshot(PartitionId{3}, store);
  ReputationOperator fresh(vocab(), KpiSettings{});
  ASSERT_TRUE(fresh.restore(PartitionId{3}, store).has_value());
  FakeMetricsWriter w;
  fresh.collect(w);
  EXPECT_EQ(w.at(R"(socialpulse_late_events_total{window="kpi"})"), 1.0);
}

// Issue #20: `late` was rewritten by every checkpoint of a busy partition, one key a partition,
// though late events are rare. Written when the count changed, and again after a write that
// failed (no saved()); a restore continues from it.
TEST(ReputationOperator, TheLateCountIsWrittenWhenItChanged) {
  Harness h;
  h.advance_to_minute(2);
  MemoryState store;
  auto checkpoint = [&](bool stored) {
    testing::RecordingWriter w(store);
    h.op.snapshot(PartitionId{3}, w);
    if (stored) h.op.saved();
    return w.wrote("put late");
  };
  h.add(opinion(kAcme, 2.5, 0.5), /*partition=*/3);
  EXPECT_TRUE(checkpoint(true));  // a new partition's first checkpoint
  h.add(opinion(kAcme, 2.6, 0.5), /*partition=*/3);
  EXPECT_FALSE(checkpoint(true));  // no late event since
  h.add(opinion(kAcme, 0.5, 0.5), /*partition=*/3);
  EXPECT_TRUE(checkpoint(false));  // a late one; this write fails
  h.add(opinion(kAcme, 2.7, 0.5), /*partition=*/3);
  EXPECT_TRUE(checkpoint(true));  // so the next writes it again
  h.add(opinion(kAcme, 2.8, 0.5), /*partition=*/3);
  EXPECT_FALSE(checkpoint(true));
  ReputationOperator fresh(vocab(), KpiSettings{});
  ASSERT_TRUE(fresh.restore(PartitionId{3}, store).has_value());
  FakeMetricsWriter w;
  fresh.collect(w);
  EXPECT_EQ(w.at(R"(socialpulse_late_events_total{window="kpi"})"), 1.0);
}

TEST(ReputationOperator, ContextWatermarkAheadOfOnWatermarkAlsoCloses) {
  Harness h;
  h.add(opinion(kAcme, 0.5, 0.5));
  const EventTime ahead = at_minute(2) + KpiSettings{}.grace;
  const Event late = opinion(kAcme, 1.5, -1.0);
  h.op.process(make_process_context(PartitionId{0}, ahead, ahead, late, KpiSettings{}, {}), late);
  h.advance_to_minute(3);
  EXPECT_DOUBLE_EQ(h.metrics().at(kRiAcme), 50.0);
}

TEST(ReputationOperator, ShareOfVoiceCountsOnlyTrackedBrands) {
  Harness h;
  h.add(make(kAcme, EventType::mention, 0.1, 3));
  h.add(make(kGlobex, EventType::mention, 0.2), 1);
  h.add(make(kOther, EventType::mention, 0.3, 4));  // not in the denominator
  h.add(make(kInitech, EventType::like, 0.4));      // tracked, no mentions
  h.advance_to_minute(1);
  const auto w = h.metrics();
  EXPECT_DOUBLE_EQ(w.at(R"(socialpulse_share_of_voice_ratio{brand="acme"})"), 0.75);
  EXPECT_DOUBLE_EQ(w.at(R"(socialpulse_share_of_voice_ratio{brand="globex"})"), 0.25);
  EXPECT_DOUBLE_EQ(w.at(R"(socialpulse_share_of_voice_ratio{brand="initech"})"), 0.0);
  EXPECT_FALSE(w.has(R"(socialpulse_share_of_voice_ratio{brand="other"})"));
}

TEST(ReputationOperator, ShareOfVoiceAbsentWithoutTrackedMentions) {
  Harness h;
  h.add(make(kOther, EventType::mention, 0.3, 4));
  h.advance_to_minute(1);
  for (const auto& [k, v] : h.metrics().samples) {
    EXPECT_EQ(k.rfind("socialpulse_share_of_voice_ratio", 0), std::string::npos) << k;
  }
}

TEST(ReputationOperator, InnovationRateIsIdeasPerThousandEngagements) {
  Harness h;
  h.add(make(kAcme, EventType::like, 0.1, 300));
  h.add(make(kAcme, EventType::click, 0.2, 100), 1);
  h.add(make(kAcme, EventType::impression, 0.2, 5000));  // not an engagement
  h.add(make(kAcme, EventType::idea, 0.3, 2));
  h.add(make(kGlobex, EventType::idea, 0.3));  // no engagements: absent
  h.advance_to_minute(1);
  const auto w = h.metrics();
  EXPECT_DOUBLE_EQ(w.at(R"(socialpulse_innovation_rate{brand="acme"})"), 5.0);
  EXPECT_FALSE(w.has(R"(socialpulse_innovation_rate{brand="globex"})"));
}

TEST(ReputationOperator, InnovationRateFollowsConfiguredEngagementTypes) {
  KpiSettings kpi;
  kpi.engagement_types = {};
  kpi.engagement_types[static_cast<size_t>(EventType::follow)] = true;
  Harness h(kpi);
  h.add(make(kAcme, EventType::like, 0.1, 300));
  h.add(make(kAcme, EventType::follow, 0.1, 500));
  h.add(make(kAcme, EventType::idea, 0.3));
  h.advance_to_minute(1);
  EXPECT_DOUBLE_EQ(h.metrics().at(R"(socialpulse_innovation_rate{brand="acme"})"), 2.0);
}

// 100 new actors per minute for a day, each also seen again the next minute, over two partitions
// (churn: the hour's actors are not the day's). The closed end 1443 is off the 5-minute and hour
// grid: the 1h gauge of the old slices covered [1380, 1443), 6 400 actors, 4.9 % too many.
TEST(ReputationOperator, UniqueActorsWithinTwoPercentAt1hAnd24h) {
  Harness h;
  for (int m = 0; m < 1443; ++m) {
    for (int j = 0; j < 100; ++j) {
      for (int repeat = 0; repeat < 2; ++repeat) {
        const int owner_minute = m - repeat;
        if (owner_minute < 0) continue;
        Event e = make(kAcme, EventType::like, m + j / 100.0);
        e.has_actor = true;
        e.actor_hash = testing::actor_hash("actor-" + std::to_string(owner_minute * 100 + j));
        h.add(e, j % 2);
      }
    }
    if (m % 10 == 9) h.advance_to_minute(m + 1);
  }
  h.advance_to_minute(1443);
  const auto w = h.metrics();
  // [1383, 1443): the actors of minutes 1382..1442; [3, 1443): those of minutes 2..1442.
  const double exact_1h = 61 * 100;
  const double exact_24h = 1441 * 100;
  const double got_1h = w.at(R"(socialpulse_unique_actors{brand="acme",horizon="1h"})");
  const double got_24h = w.at(R"(socialpulse_unique_actors{brand="acme",horizon="24h"})");
  EXPECT_LE(std::abs(got_1h - exact_1h) / exact_1h, 0.02) << got_1h;
  EXPECT_LE(std::abs(got_24h - exact_24h) / exact_24h, 0.02) << got_24h;
  EXPECT_FALSE(w.has(R"(socialpulse_unique_actors{brand="globex",horizon="1h"})"));
}

Event actor_event(BrandIndex brand, double minute, const std::string& actor) {
  Event e = make(brand, EventType::like, minute);
  e.has_actor = true;
  e.actor_hash = testing::actor_hash(actor);
  return e;
}
const std::string kActors1h = R"(socialpulse_unique_actors{brand="acme",horizon="1h"})";
const std::string kActors24h = R"(socialpulse_unique_actors{brand="acme",horizon="24h"})";

TEST(ReputationOperator, UniqueActorsCoverExactlyTheLastHourOfClosedMinutes) {
  Harness h;
  h.add(actor_event(kAcme, 0.5, "at-0"));
  h.add(actor_event(kAcme, 1.5, "at-1"), /*partition=*/1);
  h.add(actor_event(kAcme, 60.5, "at-60"));
  h.advance_to_minute(61);  // closed end 61: the hour is [1, 61)
  EXPECT_EQ(h.metrics().at(kActors1h), 2.0);
  EXPECT_EQ(h.metrics().at(kActors24h), 3.0);
  h.advance_to_minute(62);  // [2, 62): minute 1 left
  EXPECT_EQ(h.metrics().at(kActors1h), 1.0);
  EXPECT_EQ(h.metrics().at(kActors24h), 3.0);
}

TEST(ReputationOperator, UniqueActorsCoverExactlyTheLastDayOfClosedMinutes) {
  Harness h;
  h.add(actor_event(kAcme, 0.5, "at-0"));
  h.add(actor_event(kAcme, 1.5, "at-1"), /*partition=*/1);
  h.add(actor_event(kAcme, 1440.5, "at-1440"));
  h.advance_to_minute(1441);  // closed end 1441: the day is [1, 1441)
  EXPECT_EQ(h.metrics().at(kActors24h), 2.0);
  EXPECT_EQ(h.metrics().at(kActors1h), 1.0);
  h.advance_to_minute(1442);
  EXPECT_EQ(h.metrics().at(kActors24h), 1.0);
  h.advance_to_minute(1502);  // nobody left in the hour
  EXPECT_FALSE(h.metrics().has(kActors1h));
  EXPECT_EQ(h.metrics().at(kActors24h), 1.0);
  h.advance_to_minute(2881);  // nor in the day
  EXPECT_FALSE(h.metrics().has(kActors24h));
}

TEST(ReputationOperator, UniqueActorsOfOpenMinutesCountOnlyOnceTheyClose) {
  Harness h;
  h.add(actor_event(kAcme, 0.5, "first"));
  h.advance_to_minute(1);
  h.add(actor_event(kAcme, 3.5, "ahead"));  // out of order: minute 3 before minutes 1 and 2
  h.add(actor_event(kAcme, 1.5, "second"));
  h.add(actor_event(kAcme, 2.5, "third"), /*partition=*/1);
  EXPECT_EQ(h.metrics().at(kActors1h), 1.0);
  EXPECT_EQ(h.metrics().at(kActors24h), 1.0);
  h.advance_to_minute(3);
  EXPECT_EQ(h.metrics().at(kActors1h), 3.0);
  EXPECT_EQ(h.metrics().at(kActors24h), 3.0);
  h.advance_to_minute(4);
  EXPECT_EQ(h.metrics().at(kActors1h), 4.0);
  h.advance_to_minute(62);  // [2, 62): "first" (0) and "second" (1) left
  EXPECT_EQ(h.metrics().at(kActors1h), 2.0);
}

TEST(ReputationOperator, LateActorsNeverEnterTheSketch) {
  Harness h;
  h.add(actor_event(kAcme, 0.5, "on-time"));
  h.advance_to_minute(2);
  h.add(actor_event(kAcme, 1.5, "late"));  // minute 1 closed
  h.advance_to_minute(3);
  EXPECT_EQ(h.metrics().at(kActors1h), 1.0);
  EXPECT_EQ(h.metrics().at(R"(socialpulse_late_events_total{window="kpi"})"), 1.0);
}

TEST(ReputationOperator, UniqueActorsSurviveARestoreWithOpenMinutes) {
  Harness h;
  for (int i = 0; i < 900; ++i) h.add(actor_event(kAcme, 0.5 + i % 3, "a" + std::to_string(i)));
  h.add(actor_event(kAcme, 3.5, "open"), /*partition=*/1);
  h.advance_to_minute(2);
  MemoryState state;
  for (PartitionId p : {kGlobalPartition, PartitionId{0}, PartitionId{1}}) {
    testing::checkpoint_into(state, h.op, p);
  }
  h.op.saved();  // committed: what follows is written relative to it, as the restored copy's
  Harness back;
  for (PartitionId p : {kGlobalPartition, PartitionId{0}, PartitionId{1}}) {
    ASSERT_TRUE(testing::restore_from(state, back.op, p));
  }
  EXPECT_EQ(back.metrics().samples, h.metrics().samples);
  for (Harness* x : {&h, &back}) x->advance_to_minute(4);
  EXPECT_EQ(back.metrics().samples, h.metrics().samples);
  const double all = back.metrics().at(kActors1h);
  EXPECT_LE(std::abs(all - 901.0) / 901.0, 0.02) << all;
  // Written over the store they both started from, they leave the same state.
  MemoryState a = state;
  MemoryState b = state;
  for (PartitionId p : {kGlobalPartition, PartitionId{0}, PartitionId{1}}) {
    testing::checkpoint_into(a, h.op, p);
    testing::checkpoint_into(b, back.op, p);
  }
  EXPECT_EQ(a.entries(), b.entries());
}

// Issue #20: a day of minute buckets per brand and partition is not rewritten at every checkpoint:
// an event rewrites its ten minutes' buckets (format 5; format 4 rewrote its hour's), a closing
// minute adds a fold key to the sketch's, the horizon's end removes the chunks that left it. What
// is stored restores to the same state.
TEST(ReputationOperator, ACheckpointWritesOnlyTheChunksThatChanged) {
  KpiSettings kpi;
  kpi.reputation_horizon = std::chrono::hours(2);
  Harness h(kpi);
  for (int m = 0; m < 180; m += 7) h.add(actor_event(kAcme, m + 0.5, "a" + std::to_string(m)));
  h.advance_to_minute(179);  // horizon [59, 179): chunk 5 (minutes 50-59) keeps minute 59 only
  MemoryState store;
  auto snapshot = [&] {
    testing::RecordingWriter w(store);
    h.op.snapshot(PartitionId{0}, w);
    return w;
  };
  const int64_t c0 = kT0 / kMinute / 10;  // chunk of minute 0
  auto chunk = [&](int64_t c) { return fmt_chunk_key("acme", c0 + c); };
  // The newest chunk (17, minutes 170-175 so far) is in `brand/acme`, not in a key of its own.
  const auto first = snapshot();
  for (int64_t c = 5; c <= 16; ++c) EXPECT_TRUE(first.wrote("put " + chunk(c))) << c;
  EXPECT_FALSE(first.wrote("put " + chunk(4)));
  EXPECT_FALSE(first.wrote("put " + chunk(17)));
  EXPECT_TRUE(first.wrote("put brand/acme"));
  EXPECT_TRUE(first.wrote("put actors/acme"));
  h.op.saved();

  h.add(actor_event(kAcme, 179.5, "late-comer"));  // minute 179, still open: chunk 17
  const auto event = snapshot();
  EXPECT_EQ(event.writes, std::vector<std::string>{"put brand/acme"});  // no minute closed
  h.op.saved();

  h.advance_to_minute(181);  // horizon [61, 181): minutes 59 and 60 leave, chunk 5 goes
  const auto closing = snapshot();
  EXPECT_TRUE(closing.wrote("remove " + chunk(5)));
  EXPECT_TRUE(closing.wrote("put " + chunk(6)));
  EXPECT_TRUE(closing.wrote("put folds/acme/0000"));
  EXPECT_FALSE(closing.wrote("put actors/acme"));
  for (int64_t c = 7; c <= 18; ++c) EXPECT_FALSE(closing.wrote("put " + chunk(c))) << c;
  h.op.saved();

  // Minute 181 opens chunk 18: chunk 17 leaves `brand/acme` for a key of its own, written again
  // when the checkpoint that carried it failed (no saved()), then not any more.
  h.add(actor_event(kAcme, 181.5, "next"));
  for (int attempt = 0; attempt < 2; ++attempt) {
    const auto moved = snapshot();
    EXPECT_TRUE(moved.wrote("put " + chunk(17))) << attempt;
    EXPECT_FALSE(moved.wrote("put " + chunk(18))) << attempt;
    EXPECT_TRUE(moved.wrote("put brand/acme")) << attempt;
  }
  h.op.saved();
  h.add(actor_event(kAcme, 181.7, "again"));
  EXPECT_EQ(snapshot().writes, std::vector<std::string>{"put brand/acme"});
  h.op.saved();

  Harness back(kpi);
  ScopedStateWriter global(store, state_scope(h.op.name(), kGlobalPartition));
  h.op.snapshot(kGlobalPartition, global);
  ScopedStateReader global_in(store, state_scope(h.op.name(), kGlobalPartition));
  ASSERT_TRUE(back.op.restore(kGlobalPartition, global_in));
  ASSERT_TRUE(back.op.restore(PartitionId{0}, store));
  back.watermark = h.watermark;
  EXPECT_EQ(back.metrics().samples, h.metrics().samples);
  for (Harness* x : {&h, &back}) {
    x->add(opinion(kAcme, 182.5, -0.5));
    x->advance_to_minute(200);
  }
  EXPECT_EQ(back.metrics().samples, h.metrics().samples);
}

// Issue #20: an event rewrites its own brand's `brand/` key (with its explanations) only; a
// closing minute changes every brand's (their ranges and open minutes move), so it rewrites them
// all. No `explain/` key: format 6 holds the explanations in `brand/`.
TEST(ReputationOperator, ACheckpointWritesOnlyTheBrandsThatChanged) {
  Harness h;
  for (BrandIndex b : {kAcme, kGlobex}) {
    h.add(actor_event(b, 0.5, "a"));
    h.add(opinion(b, 0.5, -0.5));
  }
  h.advance_to_minute(0.5);
  MemoryState store;
  auto snapshot = [&] {
    testing::RecordingWriter w(store);
    h.op.snapshot(PartitionId{0}, w);
    h.op.saved();
    return w;
  };
  const auto first = snapshot();
  for (const char* key : {"brand/acme", "brand/globex"})
    EXPECT_TRUE(first.wrote(std::string("put ") + key)) << key;
  EXPECT_FALSE(first.wrote("put explain/acme"));

  h.add(opinion(kAcme, 0.7, -0.9));
  const auto event = snapshot();
  EXPECT_TRUE(event.wrote("put brand/acme"));
  EXPECT_FALSE(event.wrote("put brand/globex"));

  h.advance_to_minute(1);
  const auto closing = snapshot();
  for (const char* key : {"brand/acme", "brand/globex"})
    EXPECT_TRUE(closing.wrote(std::string("put ") + key)) << key;

  h.add(actor_event(kGlobex, 1.5, "b"));
  snapshot();
  Harness back;
  MemoryState global;
  testing::checkpoint_into(global, h.op, kGlobalPartition);
  ASSERT_TRUE(testing::restore_from(global, back.op, kGlobalPartition));
  ASSERT_TRUE(back.op.restore(PartitionId{0}, store));
  back.watermark = h.watermark;
  for (Harness* x : {&h, &back}) x->advance_to_minute(3);
  EXPECT_EQ(back.metrics().samples, h.metrics().samples);
}

// Issue #20: a closing minute adds a small `folds/<name>/<n>` key (the minutes folded into the
// sliding sketch and its expiry floor) instead of rewriting the sketch, dense or not; the base is
// rewritten after 32 to 63 fold keys, or once they would outweigh it, and the fold keys removed.
// After every checkpoint, committed or not, the store restores the sketch the run has.
TEST(ReputationOperator, SketchFoldKeysRestoreLikeAnUninterruptedRun) {
  KpiSettings kpi;
  kpi.reputation_horizon = std::chrono::minutes(30);
  Harness h(kpi);
  MemoryState store;
  const std::vector<PartitionId> scopes = {kGlobalPartition, PartitionId{0}, PartitionId{1}};
  std::vector<std::string> writes;
  size_t largest_fold = 0, smallest_dense_base = SIZE_MAX;
  auto checkpoint = [&](bool commit) {
    for (PartitionId p : scopes) {
      MemoryState scratch;
      testing::RecordingWriter w(scratch);
      h.op.snapshot(p, w);
      const std::string scope = state_scope(h.op.name(), p);
      for (const std::string& op : w.writes) {
        const std::string key = op.substr(op.find(' ') + 1);
        writes.push_back(op.substr(0, op.find(' ') + 1) + scope + key);
        if (!commit) continue;  // a failed commit stores nothing
        if (op.starts_with("remove ")) {
          store.remove(scope + key);
          continue;
        }
        const std::string& value = scratch.entries().at(key);
        store.put(scope + key, value);
        if (p == PartitionId{0} && key.starts_with("folds/acme/"))
          largest_fold = std::max(largest_fold, value.size());
        if (p == PartitionId{0} && key == "actors/acme" && value.size() > 16384)
          smallest_dense_base = std::min(smallest_dense_base, value.size());
      }
    }
    if (commit) h.op.saved();
  };
  auto expect_store_restores_the_run = [&](int minute) {
    Harness back(kpi);
    for (PartitionId p : scopes) {
      const auto restored = testing::restore_from(store, back.op, p);
      ASSERT_TRUE(restored) << "minute " << minute << ": " << restored.error().message;
    }
    back.watermark = h.watermark;
    EXPECT_EQ(back.metrics().samples, h.metrics().samples) << "minute " << minute;
  };
  int actor = 0;
  for (int m = 0; m < 150; ++m) {
    // acme: 300 new actors a minute on partition 0 (a dense sketch within minutes) and a few on
    // partition 1; globex: the same 5 actors (an exact sketch that stays small).
    for (int i = 0; i < 300; ++i)
      h.add(actor_event(kAcme, m + 0.5, "a" + std::to_string(actor++ % 20000)));
    h.add(actor_event(kAcme, m + 0.5, "p1-" + std::to_string(m % 7)), /*partition=*/1);
    h.add(actor_event(kGlobex, m + 0.5, "g" + std::to_string(m % 5)));
    h.advance_to_minute(m + 1);
    // Every seventh checkpoint fails (not committed): the next one writes its keys again.
    checkpoint(/*commit=*/m % 7 != 3);
    if (m % 7 != 3) expect_store_restores_the_run(m);
  }
  auto count = [&](std::string_view what) {
    return std::count_if(writes.begin(), writes.end(), [&](const std::string& w) {
      return w.find(what) != std::string::npos;
    });
  };
  // A rebase removed the fold keys; a fold key of the dense sketch is a fraction of its base.
  EXPECT_GE(count("remove kpi_reputation/00000000/folds/acme/0000"), 1);
  EXPECT_GE(count("put kpi_reputation/00000000/folds/acme/0010"), 1);
  ASSERT_NE(smallest_dense_base, SIZE_MAX);
  EXPECT_LT(largest_fold * 4, smallest_dense_base) << largest_fold;
  // Never more than 63 fold keys beside a base.
  size_t folds = 0;
  for (const auto& [key, value] : store.entries())
    folds += key.find("/folds/") != std::string::npos ? 1 : 0;
  EXPECT_LE(folds, 3u * 63u);
  EXPECT_GT(h.metrics().at(kActors1h), 8000.0);
}

// A fold key beside a base of the previous version (4) cannot be: such state is corrupt, and so is
// a gap in the fold keys' numbers.
TEST(ReputationOperator, FoldKeysNeedABaseOfTheirVersionAndNoGap) {
  Harness h;
  for (int m = 0; m < 3; ++m) {
    for (int i = 0; i < 50; ++i)
      h.add(actor_event(kAcme, m + 0.5, "a" + std::to_string(m * 50 + i)));
    h.advance_to_minute(m + 1);
  }
  MemoryState store;
  for (int round = 0; round < 3; ++round) {
    for (PartitionId p : {kGlobalPartition, PartitionId{0}}) testing::checkpoint_into(store, h.op, p);
    h.op.saved();
    h.add(actor_event(kAcme, 3.5 + round, "late-" + std::to_string(round)));
    h.advance_to_minute(4 + round);
  }
  const std::string scope = state_scope(h.op.name(), PartitionId{0});
  ASSERT_TRUE(store.entries().contains(scope + "folds/acme/0001"));
  auto restores = [&](const MemoryState& state) {
    Harness back;
    MemoryState copy = state;
    EXPECT_TRUE(testing::restore_from(copy, back.op, kGlobalPartition));
    return testing::restore_from(copy, back.op, PartitionId{0});
  };
  EXPECT_TRUE(restores(store));
  MemoryState gap = store;
  gap.remove(scope + "folds/acme/0000");
  auto s = restores(gap);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("folds/acme/0001"), std::string::npos) << s.error().message;
  MemoryState old_base = store;
  std::string base = store.entries().at(scope + "actors/acme");
  base[0] = 4;  // version 4: the whole sketch, which no fold key follows
  old_base.put(scope + "actors/acme", base);
  EXPECT_FALSE(restores(old_base));
}

// State written before issue #17 (`brand/<name>` format 2: minutes, then 5-minute and 1-hour HLL
// slices) restores: each slice's actors are dated to its last minute, the 1-hour slices only
// before the 5-minute ones, the slice holding the closed end to the last closed minute.
std::string slice_series_bytes(int64_t first, const std::vector<std::vector<std::string>>& slices) {
  std::string v;
  byte_codec::put_i64(v, first);
  byte_codec::put_u64(v, slices.size());
  for (const auto& actors : slices) {
    HyperLogLog h;
    for (const auto& a : actors) h.add(testing::actor_hash(a));
    h.serialize(v);
  }
  return v;
}

TEST(ReputationOperator, RestoresUniqueActorsOfTheSliceFormat) {
  const int64_t m0 = kT0 / kMinute;  // minute 0 of at_minute(), on an hour boundary
  std::string brand;
  byte_codec::put_u64(brand, 2);        // format 2
  byte_codec::put_i64(brand, m0 + 60);  // minutes: none
  byte_codec::put_u64(brand, 0);
  // 5-minute slices [60, 65) and [65, 70); 1-hour slices [0, 60) and [60, 120).
  brand += slice_series_bytes((m0 + 60) / 5, {{"a"}, {"b", "open"}});
  brand += slice_series_bytes(m0 / 60, {{"x", "a"}, {"a", "b", "open"}});
  std::string closed;
  byte_codec::put_u64(closed, 2);
  byte_codec::put_i64(closed, m0 + 67);  // minutes < 67 closed
  MemoryState state;
  state.put(state_scope("kpi_reputation", PartitionId{0}) + "brand/acme", brand);
  state.put(state_scope("kpi_reputation", kGlobalPartition) + "closed", closed);
  Harness h;
  ASSERT_TRUE(testing::restore_from(state, h.op, kGlobalPartition));
  ASSERT_TRUE(testing::restore_from(state, h.op, PartitionId{0}));
  // x at 59, a at 64, b and open at 66 (the slice holding the closed end): all in [7, 67).
  EXPECT_EQ(h.metrics().at(kActors1h), 4.0);
  EXPECT_EQ(h.metrics().at(kActors24h), 4.0);
  h.advance_to_minute(120);  // [60, 120)
  EXPECT_EQ(h.metrics().at(kActors1h), 3.0);
  h.advance_to_minute(125);  // [65, 125)
  EXPECT_EQ(h.metrics().at(kActors1h), 2.0);
  EXPECT_EQ(h.metrics().at(kActors24h), 4.0);
  h.advance_to_minute(1500);  // [60, 1500): x (59) left
  EXPECT_EQ(h.metrics().at(kActors24h), 3.0);
  // It is written back in the new format (7: the buckets and the sketch in keys of their own).
  MemoryState again;
  h.op.snapshot(PartitionId{0}, again);
  EXPECT_EQ(again.get("brand/acme").value().value()[0], 7);
  EXPECT_TRUE(again.get("actors/acme").value().has_value());
}

TEST(ReputationOperator, RestoresDenseSlicesOfTheSliceFormat) {
  const int64_t m0 = kT0 / kMinute;
  std::vector<std::string> many;
  for (int i = 0; i < 3000; ++i) many.push_back("dense-" + std::to_string(i));
  std::string brand;
  byte_codec::put_u64(brand, 2);
  byte_codec::put_i64(brand, m0 + 60);
  byte_codec::put_u64(brand, 0);
  brand += slice_series_bytes((m0 + 60) / 5, {many});  // [60, 65), dense
  brand += slice_series_bytes(m0 / 60, {{}, many});    // [0, 60) empty, [60, 120)
  std::string closed;
  byte_codec::put_u64(closed, 2);
  byte_codec::put_i64(closed, m0 + 66);
  MemoryState state;
  state.put(state_scope("kpi_reputation", PartitionId{0}) + "brand/acme", brand);
  state.put(state_scope("kpi_reputation", kGlobalPartition) + "closed", closed);
  Harness h;
  ASSERT_TRUE(testing::restore_from(state, h.op, kGlobalPartition));
  ASSERT_TRUE(testing::restore_from(state, h.op, PartitionId{0}));
  EXPECT_LE(std::abs(h.metrics().at(kActors1h) - 3000.0) / 3000.0, 0.02);
  h.advance_to_minute(124);  // [64, 124): the slice's last minute, 64, is still in
  EXPECT_LE(std::abs(h.metrics().at(kActors1h) - 3000.0) / 3000.0, 0.02);
  h.advance_to_minute(125);
  EXPECT_FALSE(h.metrics().has(kActors1h));
  EXPECT_LE(std::abs(h.metrics().at(kActors24h) - 3000.0) / 3000.0, 0.02);
}

TEST(ReputationOperator, GapMinutesFeedZeroToTheDetector) {
  Harness h;
  h.add(opinion(kAcme, 0.5, -1.0));  // x = 1 at minute 0
  h.add(opinion(kAcme, 3.5, -1.0));
  h.advance_to_minute(3);  // minutes 0, 1, 2 closed: 1, 0, 0
  EXPECT_NEAR(h.op.detector(kAcme).mean(), 0.81, 1e-15);
  EXPECT_FALSE(h.op.detector(kGlobex).started());
}

// Quiet baseline for minutes [0, 70): 25 opinions a minute with a small, varying negative share;
// then a crisis in minutes [70, 73): every opinion very negative.
void quiet_then_crisis(Harness& h, int crisis_minutes = 3) {
  for (int m = 0; m < 70; ++m) {
    for (int j = 0; j < 25; ++j) h.add(opinion(kAcme, m + j / 25.0, j < 2 + m % 3 ? -0.5 : 0.5));
  }
  for (int m = 70; m < 70 + crisis_minutes; ++m) {
    for (int j = 0; j < 25; ++j) h.add(opinion(kAcme, m + j / 25.0, -0.9));
  }
}

TEST(ReputationOperator, SpikeEmitsOneStartedRecordAndCounts) {
  Harness h;
  quiet_then_crisis(h);
  h.advance_to_minute(73);
  // Warm-up (60 buckets) and persistence (3): the crisis is the only alert, opened by its 3rd
  // bucket and dated from its 1st.
  ASSERT_EQ(h.alerts.records.size(), 1u);
  const OutputRecord& r = h.alerts.records.back();
  EXPECT_EQ(r.topic, OutputRecord::Topic::alerts);
  EXPECT_EQ(r.key, "acme|2026-11-24T01:10:00.000Z|started");
  // Exact field order and shortest round-trip numbers (25 x 0.9 sums to 22.499999999999993).
  // (No std::regex: GCC 12 + sanitizers trips -Wmaybe-uninitialized inside <regex>.)
  const std::string head =
      R"({"brand":"acme","bucket_start":"2026-11-24T01:12:00.000Z","value":22.499999999999993,"mean":)";
  EXPECT_EQ(r.value.substr(0, head.size()), head);
  for (const char* field :
       {R"(,"kind":"negative_surge","severity":)", R"(,"episode":"started")",
        R"(,"episode_start":"2026-11-24T01:10:00.000Z","episode_end":null)", R"(,"replay":false)"}) {
    EXPECT_NE(r.value.find(field), std::string::npos) << field << " in " << r.value;
  }
  EXPECT_EQ(r.value.back(), '}');
  const auto w = h.metrics();
  EXPECT_EQ(w.at(R"(socialpulse_reputation_spikes_total{brand="acme"})"), 1.0);
  EXPECT_GE(w.at(R"(socialpulse_reputation_anomaly_zscore{brand="acme"})"), 3.0);
  EXPECT_EQ(w.at(R"(socialpulse_reputation_alert_active{brand="acme",kind="negative_surge"})"),
            1.0);
  EXPECT_EQ(w.at(R"(socialpulse_reputation_alert_active{brand="acme",kind="sentiment_drop"})"),
            0.0);
  EXPECT_GE(w.at(R"(socialpulse_reputation_alert_severity{brand="acme",kind="negative_surge"})"),
            1.0);
  EXPECT_EQ(w.at("socialpulse_catching_up{}"), 0.0);
}

TEST(ReputationOperator, ExplanationListsTheCrisisChannelTagAndAuthorFirst) {
  Harness h;
  const std::string_view everyday = "pricing";
  const std::string_view crisis_tag = "outage";
  for (int m = 0; m < 70; ++m) {
    for (int j = 0; j < 25; ++j) {
      Event e = opinion(kAcme, m + j / 25.0, j < 2 + m % 3 ? -0.5 : 0.5);
      e.channel = 0;  // twitter
      e.tags[0] = everyday;
      e.tag_count = 1;
      e.has_actor = true;
      e.actor_id = j % 2 ? "regular-1" : "regular-2";
      e.reach = 50;
      h.add(e);
    }
  }
  for (int m = 70; m < 73; ++m) {
    for (int j = 0; j < 25; ++j) {
      Event e = opinion(kAcme, m + j / 25.0, -0.9);
      e.channel = 1;  // other
      e.tags = {crisis_tag, everyday};
      e.tag_count = 2;
      e.has_actor = true;
      const std::string id = j == 0 ? "influencer" : "angry-" + std::to_string(j % 5);
      e.actor_id = id;  // a view, like the decoder's: valid during process()
      e.reach = j == 0 ? 100'000 : 20;
      h.add(e);
    }
  }
  h.advance_to_minute(73);
  ASSERT_EQ(h.alerts.records.size(), 1u);
  const std::string& v = h.alerts.records[0].value;
  for (const char* first :
       {R"("explanation":{"channels":[{"name":"other",)", R"("types":[{"name":"comment",)",
        R"("tags":[{"name":"outage",)", R"("authors":[{"id":"influencer","reach":100000,)"}) {
    EXPECT_NE(v.find(first), std::string::npos) << first << " in " << v;
  }
  // Twitter's usual complaints are no excess: not listed.
  EXPECT_EQ(v.find(R"("name":"twitter")"), std::string::npos) << v;
}

TEST(ReputationOperator, EpisodeEndsWithARecordAfterTheCooldown) {
  Harness h;
  quiet_then_crisis(h);
  h.advance_to_minute(73 + 14);
  EXPECT_EQ(h.alerts.records.size(), 1u);  // 14 quiet minutes: still the same episode
  h.advance_to_minute(73 + 15);
  ASSERT_EQ(h.alerts.records.size(), 2u);
  const OutputRecord& r = h.alerts.records.back();
  EXPECT_EQ(r.key, "acme|2026-11-24T01:10:00.000Z|ended");
  EXPECT_NE(r.value.find(R"("episode":"ended","episode_start":"2026-11-24T01:10:00.000Z","episode_end":"2026-11-24T01:13:00.000Z")"),
            std::string::npos)
      << r.value;
  EXPECT_EQ(h.metrics().at(R"(socialpulse_reputation_alert_active{brand="acme",kind="negative_surge"})"),
            0.0);
}

TEST(ReputationOperator, BucketsClosingFarBehindTheWallClockAreReplay) {
  Harness h;
  quiet_then_crisis(h);
  // The wall clock is 10m 1s past the end of the crisis bucket that opens the episode.
  h.op.on_wall_clock(WallTime{at_minute(73).time_since_epoch() + Millis{601'000}});
  h.advance_to_minute(73);
  ASSERT_EQ(h.alerts.records.size(), 1u);
  EXPECT_NE(h.alerts.records[0].value.find(R"(,"replay":true)"), std::string::npos);
  const auto w = h.metrics();
  EXPECT_EQ(w.at("socialpulse_catching_up{}"), 1.0);
  // History never shows as a live alert.
  EXPECT_EQ(w.at(R"(socialpulse_reputation_alert_active{brand="acme",kind="negative_surge"})"),
            0.0);
  EXPECT_EQ(w.at(R"(socialpulse_reputation_spikes_total{brand="acme"})"), 1.0);
}

TEST(ReputationOperator, BucketsWithinMaxLagAreLive) {
  Harness h;
  quiet_then_crisis(h);
  h.op.on_wall_clock(WallTime{at_minute(73).time_since_epoch() + Millis{600'000}});
  h.advance_to_minute(73);
  ASSERT_EQ(h.alerts.records.size(), 1u);
  EXPECT_NE(h.alerts.records[0].value.find(R"(,"replay":false)"), std::string::npos);
  EXPECT_EQ(h.metrics().at("socialpulse_catching_up{}"), 0.0);
}

// Detector state written by the v1 build (key format 2: version, started, mean, variance, last z,
// spikes) restores: the baseline carries over, warmed up; an unknown version is refused by name.
std::string detector_v1_bytes(uint64_t version) {
  std::string v;
  byte_codec::put_u64(v, version);
  byte_codec::put_u64(v, 1);  // started
  byte_codec::put_f64(v, 10.0);
  byte_codec::put_f64(v, 4.0);
  byte_codec::put_f64(v, 0.5);
  byte_codec::put_u64(v, 7);  // spikes so far
  return v;
}

TEST(ReputationOperator, RestoresDetectorStateOfTheV1Format) {
  MemoryState state;
  state.put(state_scope("kpi_reputation", kGlobalPartition) + "detector/acme",
            detector_v1_bytes(2));
  Harness h;
  ASSERT_TRUE(testing::restore_from(state, h.op, kGlobalPartition));
  EXPECT_TRUE(h.op.detector(kAcme).started());
  EXPECT_EQ(h.op.detector(kAcme).mean(), 10.0);
  EXPECT_GE(h.op.detector(kAcme).observed(), 60);  // no second warm-up after an upgrade
  EXPECT_EQ(h.metrics().at(R"(socialpulse_reputation_spikes_total{brand="acme"})"), 7.0);
}

TEST(ReputationOperator, RefusesAnUnknownDetectorFormatWithItsVersion) {
  MemoryState state;
  state.put(state_scope("kpi_reputation", kGlobalPartition) + "detector/acme",
            detector_v1_bytes(9));
  Harness h;
  const Status s = testing::restore_from(state, h.op, kGlobalPartition);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("spike detector has format version 9"), std::string::npos)
      << s.error().message;
  EXPECT_NE(s.error().message.find("reads versions 2 to 3"), std::string::npos);
}

TEST(ReputationOperator, NoSpikeOnLowVolume) {
  Harness h;
  for (int m = 0; m < 60; ++m) h.add(opinion(kAcme, m + 0.5, m % 2 ? -0.2 : -0.3));
  for (int j = 0; j < 19; ++j) h.add(opinion(kAcme, 60 + j / 19.0, -1.0));  // 19 < min_events
  h.advance_to_minute(61);
  EXPECT_TRUE(h.alerts.records.empty());
  EXPECT_GE(h.metrics().at(R"(socialpulse_reputation_anomaly_zscore{brand="acme"})"), 3.0);
}

// A realistic mix over two hours and three partitions, with late events and a crisis.
std::vector<std::pair<int, Event>> mixed_stream(std::vector<std::string>& actor_ids) {
  std::vector<std::pair<int, Event>> out;
  uint64_t rng = 7;
  auto next = [&rng](uint64_t n) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (rng >> 33) % n;
  };
  actor_ids.reserve(20000);
  for (int i = 0; i < 20000; ++i) {
    const double minute = i * 120.0 / 20000 + (next(100) < 3 ? -2.0 : 0.0);  // ~3% late
    const auto brand = static_cast<BrandIndex>(next(4));
    const auto type = static_cast<EventType>(next(kEventTypeCount));
    Event e = make(brand, type, minute, 1 + static_cast<int64_t>(next(3)));
    e.reach = static_cast<int64_t>(next(5000));
    if (next(2)) {
      e.has_sentiment = true;
      const bool crisis = minute > 90 && minute < 95 && brand == kAcme;
      e.sentiment = crisis ? -0.9 : static_cast<double>(next(201)) / 100.0 - 1.0;
    }
    actor_ids.push_back("a" + std::to_string(next(3000)));
    e.has_actor = true;
    e.actor_hash = testing::actor_hash(actor_ids.back());
    out.emplace_back(static_cast<int>(next(3)), e);
  }
  return out;
}

TEST(KpiOperators, SnapshotRestoreEqualsUninterruptedRun) {
  std::vector<std::string> ids;
  const auto stream = mixed_stream(ids);
  KpiSettings kpi;
  kpi.reputation_horizon = std::chrono::minutes(45);  // so that expiry happens within the run
  kpi.spike.min_events = 5;
  auto build = [&] { return make_kpi_operators(vocab(), kpi, {{"acme", "twitter", 10}}); };

  auto run = [&](std::vector<std::unique_ptr<Operator>>& ops, size_t from, size_t to,
                 RecordingEmitter& out) {
    for (size_t i = from; i < to; ++i) {
      const Event& e = stream[i].second;
      // The pipeline watermark trails event time by 10s (SPEC 3 default out-of-orderness).
      const EventTime wm = at_minute(i * 120.0 / 20000) - Millis{10'000};
      testing::advance(ops, wm, out);
      testing::feed(ops, PartitionId{stream[i].first}, wm, e);
    }
  };

  auto whole = build();
  RecordingEmitter whole_out;
  const size_t half = stream.size() / 2;
  run(whole, 0, half, whole_out);
  // The checkpoint the split run restores, committed here too (state is written relative to it).
  MemoryState committed;
  for (const auto& op : whole) {
    for (PartitionId p : {kGlobalPartition, PartitionId{0}, PartitionId{1}, PartitionId{2}})
      testing::checkpoint_into(committed, *op, p);
    op->saved();
  }
  run(whole, half, stream.size(), whole_out);

  auto first = build();
  RecordingEmitter split_out;
  run(first, 0, half, split_out);
  MemoryState state;
  const std::vector<PartitionId> ids_to_save = {kGlobalPartition, PartitionId{0}, PartitionId{1},
                                                PartitionId{2}};
  for (const auto& op : first) {
    for (PartitionId p : ids_to_save) testing::checkpoint_into(state, *op, p);
  }
  first.clear();
  auto second = build();
  for (auto& op : second) {
    for (PartitionId p : ids_to_save) {
      ASSERT_TRUE(testing::restore_from(state, *op, p)) << op->name() << "/" << p.value;
    }
  }
  EXPECT_TRUE(state.dropped().empty());
  run(second, half, stream.size(), split_out);

  EXPECT_EQ(testing::collect_all(whole).samples, testing::collect_all(second).samples);
  ASSERT_EQ(whole_out.records.size(), split_out.records.size());
  EXPECT_GE(whole_out.records.size(), 1u) << "the crisis should raise an alert";
  for (size_t i = 0; i < whole_out.records.size(); ++i) {
    EXPECT_EQ(whole_out.records[i].key, split_out.records[i].key);
    EXPECT_EQ(whole_out.records[i].value, split_out.records[i].value);
  }
  for (size_t o = 0; o < whole.size(); ++o) {
    for (PartitionId p : ids_to_save) {
      MemoryState a, b;
      testing::checkpoint_into(a, *whole[o], p);
      testing::checkpoint_into(b, *second[o], p);
      EXPECT_EQ(a.entries(), b.entries()) << "operator " << o << " partition " << p.value;
    }
  }
}

TEST(KpiOperators, DropForgetsAPartition) {
  Harness h;
  h.add(opinion(kAcme, 0.5, 0.5), 0);
  h.add(opinion(kAcme, 0.5, -0.5), 1);
  h.advance_to_minute(1);
  EXPECT_DOUBLE_EQ(h.metrics().at(kRiAcme), 0.0);
  h.op.drop(PartitionId{1});
  EXPECT_DOUBLE_EQ(h.metrics().at(kRiAcme), 50.0);
}

TEST(KpiOperators, RestoreRejectsCorruptSnapshot) {
  Harness h;
  h.add(opinion(kAcme, 0.5, 0.5), 0);
  MemoryState state;
  h.op.snapshot(PartitionId{0}, state);
  const std::string good = state.get("brand/acme").value().value();
  ReputationOperator fresh(vocab(), KpiSettings{});
  state.put("brand/acme", good.substr(0, good.size() - 1));
  EXPECT_FALSE(fresh.restore(PartitionId{0}, state));
  state.put("brand/acme", good);
  EXPECT_TRUE(fresh.restore(PartitionId{0}, state));
}

TEST(ReputationOperator, CorruptValuesAreErrorsNotCrashes) {
  Harness h;
  Event e = opinion(kAcme, 0.5, -0.5);
  e.has_actor = true;
  e.actor_hash = testing::actor_hash("someone");
  h.add(e, 0);
  h.advance_to_minute(1);
  MemoryState good;
  h.op.snapshot(PartitionId{0}, good);
  h.op.snapshot(kGlobalPartition, good);
  const auto entries = good.entries();  // a copy: the loop puts into copies of `good`
  for (const auto& [key, value] : entries) {
    const PartitionId p =
        key == "closed" || key.starts_with("detector/") || key.starts_with("baseline/")
            ? kGlobalPartition
            : PartitionId{0};
    for (size_t cut = 0; cut < value.size(); cut += std::max<size_t>(1, value.size() / 40)) {
      MemoryState state = good;
      state.put(key, value.substr(0, cut));
      ReputationOperator fresh(vocab(), KpiSettings{});
      EXPECT_FALSE(fresh.restore(p, state)) << key << " cut at " << cut;
    }
    MemoryState state = good;
    state.put(key, value + "xyz");
    ReputationOperator fresh(vocab(), KpiSettings{});
    EXPECT_FALSE(fresh.restore(p, state)) << key << " with trailing bytes";
  }
  // A minute count far beyond the bytes present must not allocate it.
  std::string huge = good.get("brand/acme").value().value();
  huge[16 + 7] = '\x7f';
  MemoryState state = good;
  state.put("brand/acme", huge);
  ReputationOperator fresh(vocab(), KpiSettings{});
  EXPECT_FALSE(fresh.restore(PartitionId{0}, state));
}

TEST(ReputationOperator, UnknownFormatVersionIsRefusedByName) {
  Harness h;
  h.add(opinion(kAcme, 0.5, 0.5), 0);
  h.advance_to_minute(1);
  MemoryState good;
  h.op.snapshot(PartitionId{0}, good);
  h.op.snapshot(kGlobalPartition, good);
  for (const char* key : {"brand/acme", "closed", "detector/acme"}) {
    MemoryState state = good;
    std::string value = state.get(key).value().value();
    value[0] = 9;  // the version: u64 little-endian
    state.put(key, value);
    const PartitionId p = std::string_view(key) == "brand/acme" ? PartitionId{0} : kGlobalPartition;
    ReputationOperator fresh(vocab(), KpiSettings{});
    const auto refused = fresh.restore(p, state);
    ASSERT_FALSE(refused) << key;
    EXPECT_NE(refused.error().message.find("version 9"), std::string::npos)
        << refused.error().message;
    EXPECT_NE(refused.error().message.find(key), std::string::npos) << refused.error().message;
  }
}

// Issue #14: state checkpointed under brands {acme, globex} (channels {twitter, facebook}: the
// reputation state has no channel dimension) and restored under another configuration, compared
// with the same operator running on without a restart.
class ReputationVocabularyChange : public ::testing::Test {
 protected:
  static Vocabulary before() {
    return Vocabulary({{"acme", true}, {"globex", false}}, {"twitter", "facebook"});
  }
  static KpiSettings kpi() {
    KpiSettings k;
    k.reputation_horizon = std::chrono::minutes(10);
    k.spike.min_events = 1;
    return k;
  }
  // Minutes [from, to) of opinions, mentions (with actors) and ideas of acme, globex and other on
  // partitions 0 and 1, closing each minute. Names `v` does not know fold into `other`.
  static void play(Harness& h, const Vocabulary& v, int from, int to) {
    for (int m = from; m < to; ++m) {
      int j = 0;
      for (const std::string brand : {"acme", "globex", "other"}) {
        const BrandIndex b = v.brand(brand);
        h.add(opinion(b, m + 0.1, ((m * 7 + j * 3) % 11) / 5.0 - 1.0, 1 + j), j % 2);
        Event mention = make(b, EventType::mention, m + 0.2, 2 + j);
        mention.has_actor = true;
        mention.actor_hash = testing::actor_hash(brand + std::to_string(m % 7));
        h.add(mention, (j + 1) % 2);
        h.add(make(b, EventType::idea, m + 0.3), j % 2);
        ++j;
      }
      h.advance_to_minute(m + 1);
    }
  }
  static void move_state(const Harness& from, Harness& to, MemoryState& state) {
    for (PartitionId p : {kGlobalPartition, PartitionId{0}, PartitionId{1}}) {
      testing::checkpoint_into(state, from.op, p);
    }
    for (PartitionId p : {kGlobalPartition, PartitionId{0}, PartitionId{1}}) {
      ASSERT_TRUE(testing::restore_from(state, to.op, p));
    }
    to.watermark = from.watermark;
  }
  // Series whose labels mention none of `names`.
  static std::map<std::string, double> without(const std::map<std::string, double>& all,
                                               const std::vector<std::string>& names) {
    std::map<std::string, double> out;
    for (const auto& [series, value] : all) {
      bool keep = true;
      for (const std::string& n : names) {
        keep = keep && series.find("\"" + n + "\"") == std::string::npos;
      }
      if (keep) out.emplace(series, value);
    }
    return out;
  }
  static std::vector<std::string> records_from(const RecordingEmitter& e, size_t first) {
    std::vector<std::string> out;
    for (size_t i = first; i < e.records.size(); ++i) {
      out.push_back(e.records[i].key + " " + e.records[i].value);
    }
    return out;
  }
};

TEST_F(ReputationVocabularyChange, AddedBrandRestoresAndStartsFromZero) {
  Harness a(kpi(), before());
  play(a, before(), 0, 12);
  const Vocabulary after({{"acme", true}, {"globex", false}, {"initech", false}},
                         {"twitter", "facebook", "linkedin"});
  Harness b(kpi(), after);
  MemoryState state;
  move_state(a, b, state);
  EXPECT_TRUE(state.dropped().empty());
  ASSERT_TRUE(a.metrics().has(kRiAcme));
  EXPECT_EQ(without(b.metrics().samples, {"initech"}), a.metrics().samples);

  const size_t cut = a.alerts.records.size();
  b.add(opinion(after.brand("initech"), 12.5, 0.5), 1);
  play(a, before(), 12, 20);
  play(b, after, 12, 20);
  const auto got = b.metrics().samples;
  EXPECT_EQ(without(got, {"initech"}), a.metrics().samples);
  EXPECT_DOUBLE_EQ(got.at(R"(socialpulse_reputation_index{brand="initech"})"), 50.0);
  EXPECT_EQ(got.at(R"(socialpulse_reputation_spikes_total{brand="initech"})"), 0.0);
  EXPECT_EQ(records_from(b.alerts, 0), records_from(a.alerts, cut));
}

TEST_F(ReputationVocabularyChange, RemovedBrandIsDroppedAndReported) {
  Harness a(kpi(), before());
  play(a, before(), 0, 12);
  Harness b(kpi(), Vocabulary({{"acme", true}}, {"twitter"}));
  MemoryState state;
  move_state(a, b, state);
  // Per partition the brand (with its explanations and the newest chunk, minutes 10-11 here),
  // bucket chunk (minutes 0-9) and actors keys; the global detector and explanation baseline
  // keys.
  EXPECT_EQ(testing::dropped_names(state), std::vector<std::string>(8, "brand:globex"));
  const std::vector<std::string> keys = testing::dropped_keys(state);
  std::vector<std::string> want = {state_scope(b.op.name(), kGlobalPartition) + "detector/globex",
                                   state_scope(b.op.name(), kGlobalPartition) + "baseline/globex"};
  for (PartitionId p : {PartitionId{0}, PartitionId{1}}) {
    const std::string scope = state_scope(b.op.name(), p);
    const int64_t chunk0 = kT0 / kMinute / 10;
    for (const std::string& key : std::vector<std::string>{
             "brand/globex", fmt_chunk_key("globex", chunk0), "actors/globex"})
      want.push_back(scope + key);
  }
  EXPECT_EQ(keys, want);
  for (const std::string& key : want) EXPECT_FALSE(state.entries().contains(key)) << key;

  const auto got = b.metrics().samples;
  // Share of voice is relative to the tracked brands, so removing one changes it by definition.
  auto no_share = [](std::map<std::string, double> m) {
    std::erase_if(
        m, [](const auto& kv) { return kv.first.starts_with("socialpulse_share_of_voice_ratio"); });
    return m;
  };
  EXPECT_EQ(no_share(got), no_share(without(a.metrics().samples, {"globex"})));
  EXPECT_DOUBLE_EQ(got.at(R"(socialpulse_share_of_voice_ratio{brand="acme"})"), 1.0);
  for (const auto& [series, value] : got) {
    EXPECT_EQ(series.find("globex"), std::string::npos) << series;
  }
}

TEST_F(ReputationVocabularyChange, ReorderedBrandsGiveIdenticalMetrics) {
  Harness a(kpi(), before());
  play(a, before(), 0, 12);
  const Vocabulary reordered({{"globex", false}, {"acme", true}}, {"facebook", "twitter"});
  Harness b(kpi(), reordered);
  MemoryState state;
  move_state(a, b, state);
  EXPECT_TRUE(state.dropped().empty());
  EXPECT_EQ(b.metrics().samples, a.metrics().samples);
  const size_t cut = a.alerts.records.size();
  play(a, before(), 12, 20);
  play(b, reordered, 12, 20);
  EXPECT_EQ(b.metrics().samples, a.metrics().samples);
  // Alerts of one minute leave in brand order, which is the configured order: compare as sets.
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  EXPECT_EQ(sorted(records_from(b.alerts, 0)), sorted(records_from(a.alerts, cut)));
}

}  // namespace
}  // namespace sp
