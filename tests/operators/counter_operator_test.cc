#include "operators/counter_operator.h"

#include <gtest/gtest.h>

#include "tests/operators/kpi_test_support.h"

namespace sp {
namespace {

using testing::FakeMetricsWriter;

Vocabulary vocab() { return Vocabulary({{"acme", true}, {"globex", false}}, {"twitter", "blog"}); }

Event make(EventType type, int64_t count = 1) {
  Event e;
  e.time = from_epoch_ms(1'000'000);
  e.brand = 0;
  e.channel = 0;
  e.type = type;
  e.count = count;
  return e;
}

FakeMetricsWriter collect(const Operator& op) {
  FakeMetricsWriter w;
  op.collect(w);
  return w;
}

constexpr ProcessContext kP0{PartitionId{0}, kMinEventTime, kMinEventTime};
constexpr ProcessContext kP1{PartitionId{1}, kMinEventTime, kMinEventTime};
const std::string kAcmeTwitter = R"({brand="acme",channel="twitter"})";

TEST(CounterOperator, EmvUsesConfiguredActionValuesAndCpm) {
  EmvSettings emv;
  emv.cpm = 2.0;
  emv.action_value[static_cast<size_t>(EventType::like)] = 0.25;
  emv.action_value[static_cast<size_t>(EventType::mention)] = 0.5;
  emv.action_value[static_cast<size_t>(EventType::follow)] = 1.5;  // 0 by default
  CounterOperator op(vocab(), KpiSettings{}, emv, {});
  op.process(kP0, make(EventType::like, 4));  // 4 * 0.25 = 1.0
  op.process(kP0, make(EventType::follow));   // 1.5
  Event mention = make(EventType::mention);
  mention.reach = 3000;  // 0.5 + 3000/1000 * 2 = 6.5
  op.process(kP0, mention);
  op.process(kP1, make(EventType::impression, 500));  // 500/1000 * 2 = 1.0
  Event reply = make(EventType::reply);
  reply.reach = 9000;  // reach counts toward EMV only on mention/share; reply keeps its 0.20
  op.process(kP1, reply);
  EXPECT_DOUBLE_EQ(collect(op).at("socialpulse_earned_media_value_total" + kAcmeTwitter), 10.2);
}

TEST(CounterOperator, InteractionsSumCountPerTypeAcrossPartitions) {
  CounterOperator op(vocab(), KpiSettings{}, EmvSettings{}, {});
  op.process(kP0, make(EventType::impression, 1500));
  op.process(kP1, make(EventType::impression, 500));
  Event other = make(EventType::like);
  other.brand = 2;    // other
  other.channel = 2;  // other
  op.process(kP1, other);
  const auto w = collect(op);
  EXPECT_EQ(
      w.at(R"(socialpulse_interactions_total{brand="acme",channel="twitter",type="impression"})"),
      2000.0);
  EXPECT_EQ(w.at(R"(socialpulse_interactions_total{brand="other",channel="other",type="like"})"),
            1.0);
  EXPECT_FALSE(
      w.has(R"(socialpulse_interactions_total{brand="acme",channel="twitter",type="like"})"));
  EXPECT_FALSE(w.has(R"(socialpulse_reach_total{brand="globex",channel="twitter"})"));
}

TEST(CounterOperator, CareHistogramObservesEachReplyOnce) {
  CounterOperator op(vocab(), KpiSettings{}, EmvSettings{}, {});
  Event r = make(EventType::reply, 5);
  r.has_response_time = true;
  r.response_time_s = 60;  // le="60" is inclusive
  op.process(kP0, r);
  r.response_time_s = 100000;  // beyond the last bound: +Inf only
  op.process(kP0, r);
  op.process(kP0, make(EventType::reply));  // no response time: not observed
  const auto w = collect(op);
  EXPECT_EQ(
      w.at(R"(socialpulse_care_response_seconds_bucket{brand="acme",channel="twitter",le="60"})"),
      1.0);
  EXPECT_EQ(
      w.at(
          R"(socialpulse_care_response_seconds_bucket{brand="acme",channel="twitter",le="86400"})"),
      1.0);
  EXPECT_EQ(
      w.at(R"(socialpulse_care_response_seconds_bucket{brand="acme",channel="twitter",le="+Inf"})"),
      2.0);
  EXPECT_EQ(w.at("socialpulse_care_response_seconds_sum" + kAcmeTwitter), 100060.0);
}

TEST(CounterOperator, IdeasByRole) {
  CounterOperator op(vocab(), KpiSettings{}, EmvSettings{}, {});
  Event idea = make(EventType::idea, 3);
  idea.role = Role::employee;
  op.process(kP0, idea);
  idea.role = Role::partner;
  idea.count = 1;
  op.process(kP1, idea);
  const auto w = collect(op);
  EXPECT_EQ(w.at(R"(socialpulse_ideas_total{brand="acme",role="employee"})"), 3.0);
  EXPECT_EQ(w.at(R"(socialpulse_ideas_total{brand="acme",role="partner"})"), 1.0);
  EXPECT_FALSE(w.has(R"(socialpulse_ideas_total{brand="acme",role="customer"})"));
}

TEST(CounterOperator, DailySpendOnlyWhenConfigured) {
  CounterOperator none(vocab(), KpiSettings{}, EmvSettings{}, {});
  for (const auto& [k, v] : collect(none).samples) {
    EXPECT_EQ(k.rfind("socialpulse_daily_spend", 0), std::string::npos) << k;
  }
  CounterOperator some(vocab(), KpiSettings{}, EmvSettings{}, {{"acme", "twitter", 150.0}});
  const auto w = collect(some);
  EXPECT_EQ(w.samples.size(), 1u);
  EXPECT_EQ(w.at("socialpulse_daily_spend" + kAcmeTwitter), 150.0);
}

TEST(CounterOperator, SnapshotRestoreAndDrop) {
  CounterOperator a(vocab(), KpiSettings{}, EmvSettings{}, {});
  Event e = make(EventType::mention, 2);
  e.has_sentiment = true;
  e.sentiment = -0.7;
  e.reach = 42;
  a.process(kP0, e);
  a.process(kP1, make(EventType::click, 3));
  std::string p0, p1, global;
  a.snapshot(PartitionId{0}, p0);
  a.snapshot(PartitionId{1}, p1);
  a.snapshot(kGlobalPartition, global);
  EXPECT_TRUE(global.empty());

  CounterOperator b(vocab(), KpiSettings{}, EmvSettings{}, {});
  ASSERT_TRUE(b.restore(PartitionId{0}, p0));
  ASSERT_TRUE(b.restore(PartitionId{1}, p1));
  EXPECT_EQ(collect(a).samples, collect(b).samples);
  std::string again;
  b.snapshot(PartitionId{0}, again);
  EXPECT_EQ(again, p0);

  b.drop(PartitionId{1});  // the clicks lived in partition 1
  EXPECT_EQ(collect(b).at("socialpulse_web_visits_total" + kAcmeTwitter), 0.0);
}

TEST(CounterOperator, RestoreRejectsOtherVocabularyAndCorruptBytes) {
  CounterOperator a(vocab(), KpiSettings{}, EmvSettings{}, {});
  a.process(kP0, make(EventType::like));
  std::string bytes;
  a.snapshot(PartitionId{0}, bytes);
  CounterOperator wider(Vocabulary({{"acme", true}}, {"twitter", "blog", "forum"}), KpiSettings{},
                        EmvSettings{}, {});
  EXPECT_FALSE(wider.restore(PartitionId{0}, bytes));
  CounterOperator same(vocab(), KpiSettings{}, EmvSettings{}, {});
  EXPECT_FALSE(same.restore(PartitionId{0}, bytes.substr(0, bytes.size() - 3)));
}

}  // namespace
}  // namespace sp
