// Counters that mean "counted by this instance" (issue #15 item 4): partitions arriving with their
// history or leaving never move an exported counter, and a restart continues from what was
// exported.
#include "pipeline/counter_continuity.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

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
  void add_histogram(std::span<const LabelPair>, std::span<const double>,
                     std::span<const uint64_t>, double) override {}
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

void revoke(CounterContinuity& c, Topology& t, PartitionId pid) {
  c.before(t);
  t.revoke(pid);
  c.after(t);
}

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

}  // namespace
}  // namespace sp
