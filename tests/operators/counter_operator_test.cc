#include "operators/counter_operator.h"

#include <gtest/gtest.h>

#include "operators/byte_codec.h"
#include "tests/operators/kpi_test_support.h"
#include "tests/operators/state_test_support.h"

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

// Hands `e` to `op` from input partition `p`, in the context Topology::process would build.
void feed(CounterOperator& op, int p, const Event& e, const EmvSettings& emv = {}) {
  op.process(
      make_process_context(PartitionId{p}, kMinEventTime, kMinEventTime, e, KpiSettings{}, emv), e);
}
const std::string kAcmeTwitter = R"({brand="acme",channel="twitter"})";

TEST(CounterOperator, EmvUsesConfiguredActionValuesAndCpm) {
  EmvSettings emv;
  emv.cpm = 2.0;
  emv.action_value[static_cast<size_t>(EventType::like)] = 0.25;
  emv.action_value[static_cast<size_t>(EventType::mention)] = 0.5;
  emv.action_value[static_cast<size_t>(EventType::follow)] = 1.5;  // 0 by default
  CounterOperator op(vocab(), {});
  feed(op, 0, make(EventType::like, 4), emv);  // 4 * 0.25 = 1.0
  feed(op, 0, make(EventType::follow), emv);   // 1.5
  Event mention = make(EventType::mention);
  mention.reach = 3000;  // 0.5 + 3000/1000 * 2 = 6.5
  feed(op, 0, mention, emv);
  feed(op, 1, make(EventType::impression, 500), emv);  // 500/1000 * 2 = 1.0
  Event reply = make(EventType::reply);
  reply.reach = 9000;  // reach counts toward EMV only on mention/share; reply keeps its 0.20
  feed(op, 1, reply, emv);
  EXPECT_DOUBLE_EQ(collect(op).at("socialpulse_earned_media_value_total" + kAcmeTwitter), 10.2);
}

TEST(CounterOperator, InteractionsSumCountPerTypeAcrossPartitions) {
  CounterOperator op(vocab(), {});
  feed(op, 0, make(EventType::impression, 1500));
  feed(op, 1, make(EventType::impression, 500));
  Event other = make(EventType::like);
  other.brand = 2;    // other
  other.channel = 2;  // other
  feed(op, 1, other);
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
  CounterOperator op(vocab(), {});
  Event r = make(EventType::reply, 5);
  r.has_response_time = true;
  r.response_time_s = 60;  // le="60" is inclusive
  feed(op, 0, r);
  r.response_time_s = 100000;  // beyond the last bound: +Inf only
  feed(op, 0, r);
  feed(op, 0, make(EventType::reply));  // no response time: not observed
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
  CounterOperator op(vocab(), {});
  Event idea = make(EventType::idea, 3);
  idea.role = Role::employee;
  feed(op, 0, idea);
  idea.role = Role::partner;
  idea.count = 1;
  feed(op, 1, idea);
  const auto w = collect(op);
  EXPECT_EQ(w.at(R"(socialpulse_ideas_total{brand="acme",role="employee"})"), 3.0);
  EXPECT_EQ(w.at(R"(socialpulse_ideas_total{brand="acme",role="partner"})"), 1.0);
  EXPECT_FALSE(w.has(R"(socialpulse_ideas_total{brand="acme",role="customer"})"));
}

TEST(CounterOperator, DailySpendOnlyWhenConfigured) {
  CounterOperator none(vocab(), {});
  for (const auto& [k, v] : collect(none).samples) {
    EXPECT_EQ(k.rfind("socialpulse_daily_spend", 0), std::string::npos) << k;
  }
  CounterOperator some(vocab(), {{"acme", "twitter", 150.0}});
  const auto w = collect(some);
  EXPECT_EQ(w.samples.size(), 1u);
  EXPECT_EQ(w.at("socialpulse_daily_spend" + kAcmeTwitter), 150.0);
}

// collect() keeps its sum over the partitions between calls (issue #20): every change in between
// still shows in the next one.
TEST(CounterOperator, EachCollectShowsWhatChangedSinceThePrevious) {
  const std::string visits = "socialpulse_web_visits_total" + kAcmeTwitter;
  CounterOperator op(vocab(), {});
  feed(op, 0, make(EventType::click, 3));
  EXPECT_EQ(collect(op).at(visits), 3.0);
  EXPECT_EQ(collect(op).at(visits), 3.0);  // nothing counted in between
  feed(op, 1, make(EventType::click, 2));
  EXPECT_EQ(collect(op).at(visits), 5.0);
  MemoryState state;
  testing::checkpoint_into(state, op, PartitionId{1});
  op.drop(PartitionId{1});
  EXPECT_EQ(collect(op).at(visits), 3.0);
  ASSERT_TRUE(testing::restore_from(state, op, PartitionId{1}));
  EXPECT_EQ(collect(op).at(visits), 5.0);
}

TEST(CounterOperator, SnapshotRestoreAndDrop) {
  CounterOperator a(vocab(), {});
  Event e = make(EventType::mention, 2);
  e.has_sentiment = true;
  e.sentiment = -0.7;
  e.reach = 42;
  feed(a, 0, e);
  feed(a, 1, make(EventType::click, 3));
  MemoryState state;
  testing::checkpoint_into(state, a, PartitionId{0});
  testing::checkpoint_into(state, a, PartitionId{1});
  testing::checkpoint_into(state, a, kGlobalPartition);
  EXPECT_TRUE(testing::entries_under(state, state_scope(a.name(), kGlobalPartition)).empty());

  CounterOperator b(vocab(), {});
  ASSERT_TRUE(testing::restore_from(state, b, PartitionId{0}));
  ASSERT_TRUE(testing::restore_from(state, b, PartitionId{1}));
  EXPECT_EQ(collect(a).samples, collect(b).samples);
  // Written over the store it came from, the restored state leaves it as it was.
  MemoryState again = state;
  testing::checkpoint_into(again, b, PartitionId{0});
  const std::string p0 = state_scope(a.name(), PartitionId{0});
  EXPECT_EQ(testing::entries_under(again, p0), testing::entries_under(state, p0));

  b.drop(PartitionId{1});  // the clicks lived in partition 1
  EXPECT_EQ(collect(b).at("socialpulse_web_visits_total" + kAcmeTwitter), 0.0);
}

TEST(CounterOperator, OnePackedKeyPerPartitionNamesBrandsAndChannels) {
  CounterOperator a(vocab(), {});
  Event e = make(EventType::idea);
  e.brand = 1;    // globex
  e.channel = 1;  // blog
  e.role = Role::employee;
  feed(a, 0, e);
  MemoryState state;
  a.snapshot(PartitionId{0}, state);
  std::vector<std::string> keys;
  for (const auto& [key, value] : state.entries()) keys.push_back(key);
  EXPECT_EQ(keys, (std::vector<std::string>{"cells"}));
  const std::string value = state.get("cells").value().value();
  EXPECT_NE(value.find("globex"), std::string::npos);
  EXPECT_NE(value.find("blog"), std::string::npos);
  EXPECT_NE(value.find("employee"), std::string::npos);  // ideas by role name
}

// Issue #20: written after the partition counted something, not at every checkpoint.
TEST(CounterOperator, APartitionIsSnapshotOnlyAfterItCounted) {
  CounterOperator a(vocab(), {});
  EXPECT_FALSE(a.needs_snapshot(PartitionId{0}, true));  // no state at all
  feed(a, 0, make(EventType::like));
  EXPECT_TRUE(a.needs_snapshot(PartitionId{0}, false));
  a.saved();
  EXPECT_FALSE(a.needs_snapshot(PartitionId{0}, true));
  feed(a, 0, make(EventType::like));
  EXPECT_TRUE(a.needs_snapshot(PartitionId{0}, false));
  EXPECT_FALSE(a.needs_snapshot(PartitionId{1}, true));
}

TEST(CounterOperator, RestoreRejectsCorruptBytesWithoutCrashing) {
  CounterOperator a(vocab(), {});
  Event idea = make(EventType::idea);
  idea.role = Role::employee;
  Event reply = make(EventType::reply);
  reply.has_response_time = true;
  reply.response_time_s = 100;
  feed(a, 0, idea);
  feed(a, 0, reply);
  MemoryState good;
  a.snapshot(PartitionId{0}, good);
  const std::string cells = good.get("cells").value().value();

  auto restore_with = [](const std::string& value) {
    MemoryState state;
    state.put("cells", value);
    CounterOperator op(vocab(), {});
    return op.restore(PartitionId{0}, state);
  };
  for (size_t cut = 0; cut < cells.size(); ++cut) {
    EXPECT_FALSE(restore_with(cells.substr(0, cut))) << cut;
  }
  EXPECT_FALSE(restore_with(cells + "x"));
  // A cell count far beyond the bytes present, then an unknown role name: errors, not crashes.
  std::string huge = cells;
  huge[1] = '\x7f';
  EXPECT_FALSE(restore_with(huge));
  std::string unknown_role = cells;
  unknown_role.replace(unknown_role.rfind("employee"), 8, "employer");
  const auto refused = restore_with(unknown_role);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("cells"), std::string::npos) << refused.error().message;
  EXPECT_TRUE(restore_with(cells));
}

TEST(CounterOperator, UnknownFormatVersionIsRefusedByName) {
  CounterOperator a(vocab(), {});
  feed(a, 0, make(EventType::like));
  MemoryState state;
  a.snapshot(PartitionId{0}, state);
  std::string value = state.get("cells").value().value();
  value[0] = 7;  // the version: a varint, 3 today
  state.put("cells", value);
  CounterOperator b(vocab(), {});
  const auto refused = b.restore(PartitionId{0}, state);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().kind, ErrorKind::fatal);
  EXPECT_NE(refused.error().message.find("version 7"), std::string::npos)
      << refused.error().message;
}

// Format 2 (one key per cell, per brand's ideas) as the previous release wrote it.
void put_format_2_cell(MemoryState& state, std::string_view brand, std::string_view channel,
                       const std::vector<Event>& events, uint64_t care_bucket_0) {
  Measures m;
  for (const Event& e : events) m.add(e, derive(e, KpiSettings{}, EmvSettings{}));
  std::string value;
  byte_codec::put_u64(value, 2);
  m.encode_named(value, MeasureSet::all().without(Measure::impressions).without(Measure::engagements));
  for (size_t k = 0; k < CounterOperator::kCareBuckets; ++k) {
    byte_codec::put_u64(value, k == 0 ? care_bucket_0 : 0);
  }
  byte_codec::put_f64(value, care_bucket_0 != 0 ? 30.0 : 0.0);
  state.put("cell/" + std::string(brand) + "/" + std::string(channel), value);
}

TEST(CounterOperator, Format2KeysAreReadAndReplacedByThePackedKey) {
  Event like = make(EventType::like, 4);
  like.reach = 70;
  Event reply = make(EventType::reply);
  reply.has_response_time = true;
  reply.response_time_s = 30;
  Event blog = make(EventType::mention, 2);
  blog.channel = 1;
  blog.has_sentiment = true;
  blog.sentiment = -0.25;
  Event idea = make(EventType::idea, 3);
  idea.role = Role::employee;
  CounterOperator reference(vocab(), {});
  for (const Event& e : {like, reply, blog, idea}) feed(reference, 0, e);

  MemoryState state;
  put_format_2_cell(state, "acme", "twitter", {like, reply, idea}, 1);
  put_format_2_cell(state, "acme", "blog", {blog}, 0);
  std::string ideas;
  byte_codec::put_u64(ideas, 2);
  byte_codec::put_u64(ideas, 1);
  byte_codec::put_str(ideas, "employee");
  byte_codec::put_i64(ideas, 3);
  state.put("ideas/acme", ideas);

  CounterOperator b(vocab(), {});
  ASSERT_TRUE(b.restore(PartitionId{0}, state));
  EXPECT_EQ(collect(b).samples, collect(reference).samples);
  EXPECT_TRUE(b.needs_snapshot(PartitionId{0}, false));
  b.snapshot(PartitionId{0}, state);
  b.saved();
  std::vector<std::string> keys;
  for (const auto& [key, value] : state.entries()) keys.push_back(key);
  EXPECT_EQ(keys, (std::vector<std::string>{"cells"}));  // the format 2 keys removed
  MemoryState expected;
  reference.snapshot(PartitionId{0}, expected);
  EXPECT_EQ(state.entries(), expected.entries());
  EXPECT_FALSE(b.needs_snapshot(PartitionId{0}, true));
}

// Issue #14: state checkpointed under {acme, globex} x {twitter, facebook}, restored under another
// configuration. `a` runs the same events without a restart: the reference.
class CounterVocabularyChange : public ::testing::Test {
 protected:
  static Vocabulary before() {
    return Vocabulary({{"acme", true}, {"globex", false}}, {"twitter", "facebook"});
  }
  static Event at(const Vocabulary& v, std::string_view brand, std::string_view channel,
                  EventType type, int64_t count) {
    Event e = make(type, count);
    e.brand = v.brand(brand);
    e.channel = v.channel(channel);
    e.reach = 10 * count;
    e.has_sentiment = true;
    e.sentiment = 0.5;
    e.role = Role::customer;
    return e;
  }
  // Every brand x channel (other included) and partition, ideas and care replies too.
  void fill(CounterOperator& op) const {
    const Vocabulary v = before();
    int64_t n = 1;
    for (const char* brand : {"acme", "globex", "other"}) {
      for (const char* channel : {"twitter", "facebook", "other"}) {
        feed(op, 0, at(v, brand, channel, EventType::like, n++));
        feed(op, 1, at(v, brand, channel, EventType::idea, n++));
        Event reply = at(v, brand, channel, EventType::reply, 1);
        reply.has_response_time = true;
        reply.response_time_s = 30.0 * static_cast<double>(n++);
        feed(op, 1, reply);
      }
    }
  }
  // Restores partitions 0 and 1 of `a`'s state into `b`; the drops it reported are in `state`.
  static void move_state(const CounterOperator& a, CounterOperator& b, MemoryState& state) {
    for (PartitionId p : {PartitionId{0}, PartitionId{1}}) testing::checkpoint_into(state, a, p);
    for (PartitionId p : {PartitionId{0}, PartitionId{1}}) {
      ASSERT_TRUE(testing::restore_from(state, b, p));
    }
  }
  // Series of `all` whose labels mention none of `names`.
  static std::map<std::string, double> without(const std::map<std::string, double>& all,
                                               const std::vector<std::string>& names) {
    std::map<std::string, double> out;
    for (const auto& [series, value] : all) {
      bool keep = true;
      for (const std::string& n : names)
        keep = keep && series.find("\"" + n + "\"") == std::string::npos;
      if (keep) out.emplace(series, value);
    }
    return out;
  }
};

TEST_F(CounterVocabularyChange, AddedBrandAndChannelRestoreAndStartFromZero) {
  CounterOperator a(before(), {});
  fill(a);
  const Vocabulary after({{"acme", true}, {"globex", false}, {"initech", false}},
                         {"twitter", "facebook", "linkedin"});
  CounterOperator b(after, {});
  MemoryState state;
  move_state(a, b, state);
  EXPECT_TRUE(state.dropped().empty());
  EXPECT_EQ(collect(b).samples, collect(a).samples);  // nothing of initech/linkedin yet

  feed(b, 0, at(after, "initech", "linkedin", EventType::like, 5));
  feed(a, 0, at(before(), "initech", "linkedin", EventType::like, 5));  // other/other there
  const auto got = collect(b).samples;
  EXPECT_EQ(
      got.at(R"(socialpulse_interactions_total{brand="initech",channel="linkedin",type="like"})"),
      5.0);
  EXPECT_EQ(got.at(R"(socialpulse_reach_total{brand="initech",channel="linkedin"})"), 50.0);
  // Unchanged series: everything not about initech, linkedin or other (other/other got a's event).
  EXPECT_EQ(without(got, {"initech", "linkedin", "other"}),
            without(collect(a).samples, {"initech", "linkedin", "other"}));
}

TEST_F(CounterVocabularyChange, RemovedBrandAndChannelAreDroppedAndReported) {
  CounterOperator a(before(), {});
  fill(a);
  CounterOperator b(Vocabulary({{"acme", true}}, {"twitter"}), {});
  MemoryState state;
  move_state(a, b, state);

  const auto got = collect(b).samples;
  EXPECT_EQ(got, without(collect(a).samples, {"globex", "facebook"}));
  EXPECT_FALSE(got.empty());
  for (const auto& [series, value] : got) {
    EXPECT_EQ(series.find("globex"), std::string::npos) << series;
    EXPECT_EQ(series.find("facebook"), std::string::npos) << series;
  }
  // Partition 0: globex's three cells (the brand is checked first); partition 1: the same plus
  // globex's ideas. In both, the facebook cells of the brands still configured (acme, other).
  const std::vector<std::string> names = testing::dropped_names(state);
  std::map<std::string, int> counted;
  for (const std::string& n : names) ++counted[n];
  EXPECT_EQ(counted,
            (std::map<std::string, int>{{"brand:globex", 3 + 4}, {"channel:facebook", 2 + 2}}));
  // Entries inside one packed value: the value is rewritten without them at the next checkpoint.
  EXPECT_TRUE(testing::dropped_keys(state).empty());
  for (PartitionId p : {PartitionId{0}, PartitionId{1}}) {
    EXPECT_TRUE(b.needs_snapshot(p, false));
    testing::checkpoint_into(state, b, p);
  }
  b.saved();
  const std::string p1 = state_scope(b.name(), PartitionId{1});
  const std::string rewritten = state.get(p1 + "cells").value().value();
  EXPECT_EQ(rewritten.find("globex"), std::string::npos);
  EXPECT_EQ(rewritten.find("facebook"), std::string::npos);
  // A second restore of what is left drops nothing more.
  state.clear_dropped();
  CounterOperator c(Vocabulary({{"acme", true}}, {"twitter"}), {});
  for (PartitionId p : {PartitionId{0}, PartitionId{1}}) {
    ASSERT_TRUE(testing::restore_from(state, c, p));
  }
  EXPECT_TRUE(state.dropped().empty());
  EXPECT_EQ(collect(c).samples, got);
}

TEST_F(CounterVocabularyChange, ReorderedListsGiveIdenticalMetrics) {
  CounterOperator a(before(), {});
  fill(a);
  const Vocabulary reordered({{"globex", false}, {"acme", true}}, {"facebook", "twitter"});
  CounterOperator b(reordered, {});
  MemoryState state;
  move_state(a, b, state);
  EXPECT_TRUE(state.dropped().empty());
  EXPECT_EQ(collect(b).samples, collect(a).samples);
  // And the state written back whole is the same set of keys and values: restored from format 3
  // (the same layout, version 3), which is rewritten whole as format 4.
  MemoryState format_3;
  for (const auto& [key, value] : state.entries()) {
    ASSERT_EQ(value[0], '\x4') << key;
    format_3.put(key, '\x3' + value.substr(1));
  }
  CounterOperator c(reordered, {});
  MemoryState again;
  for (PartitionId p : {PartitionId{0}, PartitionId{1}}) {
    ASSERT_TRUE(testing::restore_from(format_3, c, p));
    EXPECT_TRUE(c.needs_snapshot(p, false));
    testing::checkpoint_into(again, c, p);
  }
  EXPECT_EQ(again.entries(), state.entries());
}

// Issue #20: a checkpoint writes a delta `cells/<n>` with the cells counted since the previous
// one, not the partition's every cell; the base `cells` is rewritten (the deltas removed) after 8
// deltas, or once half the touched cells changed. After every checkpoint, committed or not, the
// store restores what the operator counted.
TEST(CounterOperator, ACheckpointWritesOnlyTheCellsThatChanged) {
  const Vocabulary v({{"acme", true}, {"globex", false}, {"initech", false}},
                     {"twitter", "blog", "forum", "news", "video"});
  CounterOperator a(v, {});
  auto event = [](int brand, int channel, EventType type, int64_t count) {
    Event e = make(type, count);
    e.brand = static_cast<BrandIndex>(brand);
    e.channel = static_cast<ChannelIndex>(channel);
    e.reach = 10 * count;
    return e;
  };
  // Every cell of partition 0 counted once: the base lists all of them.
  for (int b = 0; b < 4; ++b) {
    for (int c = 0; c < 6; ++c) feed(a, 0, event(b, c, EventType::like, 1));
  }
  MemoryState store;
  std::vector<std::string> written;
  auto checkpoint = [&](bool commit) {
    MemoryState scratch;
    testing::RecordingWriter w(scratch);
    a.snapshot(PartitionId{0}, w);
    for (const std::string& op : w.writes) {
      written.push_back(op);
      if (!commit) continue;  // a failed commit stores nothing
      const std::string key = op.substr(op.find(' ') + 1);
      if (op.starts_with("remove ")) {
        store.remove(key);
      } else {
        store.put(key, scratch.get(key).value().value());
      }
    }
    if (commit) a.saved();
    return w.writes;
  };
  auto expect_store_restores_it = [&](int round) {
    CounterOperator back(v, {});
    ASSERT_TRUE(back.restore(PartitionId{0}, store)) << round;
    EXPECT_EQ(collect(back).samples, collect(a).samples) << round;
  };
  EXPECT_EQ(checkpoint(true), (std::vector<std::string>{"put cells"}));
  const size_t base_bytes = store.get("cells").value()->size();
  for (int round = 0; round < 30; ++round) {
    // Two cells a round (one of them an idea: every delta carries the ideas too).
    feed(a, 0, event(round % 4, round % 6, EventType::mention, round + 1));
    Event idea = event((round + 1) % 4, 5, EventType::idea, 1);
    idea.role = Role::customer;
    feed(a, 0, idea);
    const bool commit = round % 5 != 2;
    const auto writes = checkpoint(commit);
    ASSERT_FALSE(writes.empty());
    EXPECT_TRUE(writes.front().starts_with("put cells")) << writes.front();
    if (commit) expect_store_restores_it(round);
  }
  // Deltas were written (each well under the base), then the base again with its deltas removed.
  auto wrote = [&](std::string_view what) {
    return std::count(written.begin(), written.end(), std::string(what));
  };
  EXPECT_GE(wrote("put cells/0000"), 3);
  EXPECT_GE(wrote("put cells/0003"), 1);
  EXPECT_EQ(wrote("put cells/0008"), 0);
  EXPECT_GE(wrote("remove cells/0000"), 2);
  EXPECT_GE(wrote("put cells"), 3);
  for (const auto& [key, value] : store.entries()) {
    if (key != "cells") {
      EXPECT_LT(value.size() * 4, base_bytes) << key;
    }
  }
  // Half the touched cells counted: the base, not a delta.
  for (int b = 0; b < 4; ++b) {
    for (int c = 0; c < 3; ++c) feed(a, 0, event(b, c, EventType::share, 2));
  }
  EXPECT_EQ(checkpoint(true).front(), "put cells");
  expect_store_restores_it(99);
}

// A delta beside a base of format 3, or after a gap in the numbers, is corrupt state.
TEST(CounterOperator, DeltasNeedABaseOfTheirFormatAndNoGap) {
  CounterOperator a(vocab(), {});
  for (int i = 0; i < 4; ++i) {
    Event e = make(EventType::like, i + 1);
    e.brand = static_cast<BrandIndex>(i % 3);
    e.channel = static_cast<ChannelIndex>(i % 2);
    feed(a, 0, e);
  }
  MemoryState store;
  for (int round = 0; round < 3; ++round) {
    a.snapshot(PartitionId{0}, store);
    a.saved();
    feed(a, 0, make(EventType::mention, round + 1));
  }
  ASSERT_TRUE(store.get("cells/0001").value());
  auto restores = [](const MemoryState& state) {
    MemoryState copy = state;
    CounterOperator b(vocab(), {});
    return b.restore(PartitionId{0}, copy);
  };
  EXPECT_TRUE(restores(store));
  MemoryState gap = store;
  gap.remove("cells/0000");
  const auto refused = restores(gap);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("cells/0001"), std::string::npos)
      << refused.error().message;
  MemoryState old_base = store;
  old_base.put("cells", '\x3' + store.get("cells").value()->substr(1));
  EXPECT_FALSE(restores(old_base));
}

}  // namespace
}  // namespace sp
