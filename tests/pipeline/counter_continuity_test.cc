// Counters that mean "counted by this instance" (issue #15 item 4): partitions arriving with their
// history or leaving never move an exported counter, and a restart continues from what was
// exported.
#include "pipeline/counter_continuity.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "operators/topology.h"

namespace sp {
namespace {

// Counter samples by family (summed over label sets).
class Sums final : public MetricsWriter {
 public:
  void family(std::string_view name, std::string_view, MetricType type) override {
    family_ = name;
    counter_ = type == MetricType::counter;
  }
  void add(std::span<const LabelPair>, double value) override {
    if (counter_) sums[family_] += value;
  }
  // A histogram as its observation count (`<family>_count`) and sum (`<family>_sum`).
  void add_histogram(std::span<const LabelPair>, std::span<const double>,
                     std::span<const uint64_t> buckets, double sum) override {
    for (uint64_t b : buckets) sums[family_ + "_count"] += static_cast<double>(b);
    sums[family_ + "_sum"] += sum;
  }
  std::map<std::string, double> sums;

 private:
  std::string family_;
  bool counter_ = false;
};

TopologySpec spec() {
  TopologySpec s;
  s.vocabulary = Vocabulary({BrandInfo{"acme", true}}, {"twitter"});
  return s;
}

double consumed(const CounterContinuity& c, const Topology& t) {
  Sums sums;
  c.collect(t, sums, [] {});
  return sums.sums["socialpulse_events_consumed_total"];
}

void reject(Topology& t, PartitionId pid, int n) {
  Topology::Partition* p = t.find(pid);
  ASSERT_NE(p, nullptr);
  const int64_t first = p->next_offset ? p->next_offset->value : 0;
  for (int i = 0; i < n; ++i) {
    t.reject(*p, Offset{first + i}, RejectReason::malformed_json, WallTime{});
  }
}

void assign(CounterContinuity& c, Topology& t, PartitionId pid, StateReader& from) {
  c.before(t);
  ASSERT_TRUE(t.assign(pid, from));
  c.after(t);
}

// n replies of response time 100 s each: care-response histogram observations.
void reply(Topology& t, PartitionId pid, int n) {
  Topology::Partition* p = t.find(pid);
  ASSERT_NE(p, nullptr);
  const int64_t first = p->next_offset ? p->next_offset->value : 0;
  for (int i = 0; i < n; ++i) {
    const std::string id = "r" + std::to_string(pid.value) + "-" + std::to_string(first + i);
    Event e;
    e.time = EventTime{Millis{1'700'000'000'000 + (first + i) * 1000}};
    e.type = EventType::reply;
    e.has_response_time = true;
    e.response_time_s = 100;
    e.id = id;
    e.brand_name = "acme";
    t.process(*p, Offset{first + i}, e, Deduplicator::key_of(e), WallTime{});
  }
}

double care(const CounterContinuity& c, const Topology& t, const std::string& what) {
  Sums sums;
  c.collect(t, sums, [] {});
  return sums.sums["socialpulse_care_response_seconds_" + what];
}

void revoke(CounterContinuity& c, Topology& t, PartitionId pid) {
  c.before(t);
  t.revoke(pid);
  c.after(t);
}

// Writes staged against a MemoryState and applied at once, like a store batch (a scan of the
// state must not see the writes it causes).
class BatchOf final : public StateWriter {
 public:
  explicit BatchOf(MemoryState& into) : into_(into) {}
  void put(std::string_view key, std::string_view value) override {
    ops_.emplace_back(std::string(key), std::string(value));
  }
  void remove(std::string_view key) override { ops_.emplace_back(std::string(key), std::nullopt); }
  void apply() {
    for (const auto& [key, value] : ops_) {
      if (value) {
        into_.put(key, *value);
      } else {
        into_.remove(key);
      }
    }
  }

 private:
  MemoryState& into_;
  std::vector<std::pair<std::string, std::optional<std::string>>> ops_;
};

void checkpoint(CounterContinuity& c, Topology& t, MemoryState& store) {
  t.checkpoint(store);
  c.checkpoint(t, store);
  t.checkpoint_committed();
}

TEST(CounterContinuity, APartitionArrivingWithItsHistoryDoesNotMoveTheCounter) {
  MemoryState shared;  // the partition's state as another instance left it
  {
    Topology other(spec());
    CounterContinuity c;
    ASSERT_TRUE(c.restore(shared, other));
    assign(c, other, PartitionId{0}, shared);
    reject(other, PartitionId{0}, 7);
    checkpoint(c, other, shared);
  }
  Topology t(spec());
  MemoryState mine;
  CounterContinuity c;
  ASSERT_TRUE(c.restore(mine, t));
  EXPECT_EQ(consumed(c, t), 0);
  assign(c, t, PartitionId{0}, shared);
  EXPECT_EQ(consumed(c, t), 0);  // the 7 were counted by the other instance
  reject(t, PartitionId{0}, 2);
  EXPECT_EQ(consumed(c, t), 2);
}

TEST(CounterContinuity, APartitionLeavingKeepsWhatThisInstanceCounted) {
  Topology t(spec());
  MemoryState store;
  CounterContinuity c;
  ASSERT_TRUE(c.restore(store, t));
  assign(c, t, PartitionId{0}, store);
  assign(c, t, PartitionId{1}, store);
  reject(t, PartitionId{0}, 3);
  reject(t, PartitionId{1}, 4);
  revoke(c, t, PartitionId{1});
  EXPECT_EQ(consumed(c, t), 7);
  revoke(c, t, PartitionId{0});
  EXPECT_EQ(consumed(c, t), 7);  // no partition left: the series stays
  assign(c, t, PartitionId{0}, store);  // back with nothing stored: counts on from 7
  reject(t, PartitionId{0}, 1);
  EXPECT_EQ(consumed(c, t), 8);
}

TEST(CounterContinuity, ARestartContinuesFromTheLastCheckpointedExport) {
  MemoryState store;
  {
    Topology t(spec());
    CounterContinuity c;
    ASSERT_TRUE(c.restore(store, t));
    assign(c, t, PartitionId{0}, store);
    reject(t, PartitionId{0}, 5);
    checkpoint(c, t, store);
    reject(t, PartitionId{0}, 9);  // never checkpointed: lost with the crash, read again
  }
  Topology t(spec());
  CounterContinuity c;
  ASSERT_TRUE(c.restore(store, t));
  EXPECT_EQ(consumed(c, t), 5);  // before any partition is back
  assign(c, t, PartitionId{0}, store);
  EXPECT_EQ(consumed(c, t), 5);
  reject(t, PartitionId{0}, 9);
  EXPECT_EQ(consumed(c, t), 14);
}

// Histogram buckets and sums are counters to Prometheus: they move with the partitions like the
// counters do (a drop at a revoke read as a reset, and the new owner's jump, were both wrong).
TEST(CounterContinuity, HistogramsStayWithTheInstanceThatObservedAndSurviveARestart) {
  MemoryState store;
  {
    Topology t(spec());
    CounterContinuity c;
    ASSERT_TRUE(c.restore(store, t));
    assign(c, t, PartitionId{0}, store);
    assign(c, t, PartitionId{1}, store);
    reply(t, PartitionId{0}, 3);
    reply(t, PartitionId{1}, 2);
    ASSERT_EQ(care(c, t, "count"), 5);
    revoke(c, t, PartitionId{1});
    EXPECT_EQ(care(c, t, "count"), 5);
    EXPECT_EQ(care(c, t, "sum"), 500);
    checkpoint(c, t, store);
  }
  Topology t(spec());
  CounterContinuity c;
  ASSERT_TRUE(c.restore(store, t));
  EXPECT_EQ(care(c, t, "count"), 5);  // before any partition is back
  assign(c, t, PartitionId{0}, store);
  assign(c, t, PartitionId{1}, store);  // whatever it brings is no jump
  EXPECT_EQ(care(c, t, "count"), 5);
  reply(t, PartitionId{1}, 1);
  EXPECT_EQ(care(c, t, "count"), 6);
  EXPECT_EQ(care(c, t, "sum"), 600);
}

// A restart whose last checkpoints never reached the changelog, after another member took their
// partitions over (StateChangelog::repair_unconfirmed()): the counters continue from the values
// last published, histograms included, not from the newer checkpoints /metrics never showed.
TEST(CounterContinuity, RolledBackToPublishedTheRestartContinuesFromWhatWasShown) {
  MemoryState store;
  {
    Topology t(spec());
    CounterContinuity c;
    ASSERT_TRUE(c.restore(store, t));
    assign(c, t, PartitionId{0}, store);
    reject(t, PartitionId{0}, 5);
    reply(t, PartitionId{0}, 2);
    checkpoint(c, t, store);
    Sums shown;
    c.collect(t, shown, [] {});  // prepared at the checkpoint ...
    c.published();               // ... and on /metrics once the changelog acknowledged it
    reject(t, PartitionId{0}, 4);
    reply(t, PartitionId{0}, 1);
    checkpoint(c, t, store);  // stored locally; the changelog never acknowledged it
    Sums unshown;
    c.collect(t, unshown, [] {});  // prepared, never published
    reject(t, PartitionId{0}, 3);
    checkpoint(c, t, store);
  }
  {  // a plain restart continues from the last checkpoint
    Topology t(spec());
    CounterContinuity c;
    ASSERT_TRUE(c.restore(store, t));
    EXPECT_EQ(consumed(c, t), 5 + 2 + 4 + 1 + 3);
  }
  BatchOf rollback(store);
  ASSERT_TRUE(CounterContinuity::roll_back_to_published(store, rollback));
  rollback.apply();
  Topology t(spec());
  CounterContinuity c;
  ASSERT_TRUE(c.restore(store, t));
  EXPECT_EQ(consumed(c, t), 5 + 2);
  EXPECT_EQ(care(c, t, "count"), 2);
  EXPECT_EQ(care(c, t, "sum"), 200);
  assign(c, t, PartitionId{0}, store);  // as its next owner left it: nothing jumps
  reject(t, PartitionId{0}, 1);
  EXPECT_EQ(consumed(c, t), 5 + 2 + 1);
  // What continues counts as published: rolled back again, it stays.
  checkpoint(c, t, store);
  BatchOf again(store);
  ASSERT_TRUE(CounterContinuity::roll_back_to_published(store, again));
  again.apply();
  Topology t2(spec());
  CounterContinuity c2;
  ASSERT_TRUE(c2.restore(store, t2));
  EXPECT_EQ(consumed(c2, t2), 5 + 2);
}

}  // namespace
}  // namespace sp
