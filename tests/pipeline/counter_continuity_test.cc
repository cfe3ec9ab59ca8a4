// Counters that mean "counted by this instance" (issue #15 item 4): partitions arriving with their
// history or leaving never move an exported counter, and a restart continues from what was
// exported.
#include "pipeline/counter_continuity.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "operators/byte_codec.h"
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
  c.committed();
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

// Puts and removes into another writer, counted by key prefix within the instance scope.
class Counted final : public StateWriter {
 public:
  explicit Counted(StateWriter& inner) : inner_(inner) {}
  void put(std::string_view key, std::string_view value) override {
    puts.emplace_back(key.substr(scope().size()));
    inner_.put(key, value);
  }
  void remove(std::string_view key) override {
    removes.emplace_back(key.substr(scope().size()));
    inner_.remove(key);
  }
  static std::string scope() { return state_scope(CounterContinuity::kOwner, kGlobalPartition); }
  std::vector<std::string> puts, removes;

 private:
  StateWriter& inner_;
};

size_t keys_under(MemoryState& store, const std::string& prefix) {
  size_t n = 0;
  EXPECT_TRUE(store.scan(Counted::scope() + prefix, [&](std::string_view, std::string_view) {
    ++n;
    return Status{};
  }));
  return n;
}

// Issue #20: the instance's values went out as one key per changed series (half of a loaded
// checkpoint's RocksDB inserts); now one key a checkpoint, whatever changed.
TEST(CounterContinuity, ACheckpointWritesOneKeyHoweverManySeriesChanged) {
  MemoryState store;
  Topology t(spec());
  CounterContinuity c;
  ASSERT_TRUE(c.restore(store, t));
  assign(c, t, PartitionId{0}, store);
  reject(t, PartitionId{0}, 3);
  checkpoint(c, t, store);  // the first writes the base
  Sums shown;
  c.collect(t, shown, [] {});
  c.published();
  reject(t, PartitionId{0}, 2);
  reply(t, PartitionId{0}, 4);  // interactions, care histogram, consumed, rejected ... all move
  Counted counted(store);
  t.checkpoint(store);
  c.checkpoint(t, counted);
  t.checkpoint_committed();
  c.committed();
  ASSERT_EQ(counted.puts.size(), 1u);
  EXPECT_TRUE(counted.puts[0].starts_with("continued/delta/")) << counted.puts[0];
  EXPECT_TRUE(counted.removes.empty());
  Topology t2(spec());
  CounterContinuity c2;
  ASSERT_TRUE(c2.restore(store, t2));
  EXPECT_EQ(consumed(c2, t2), 3 + 2 + 4);
  EXPECT_EQ(care(c2, t2, "count"), 4);
}

// Deltas pile up to a bound, then a base replaces them; a restart reads the last values.
TEST(CounterContinuity, ManyCheckpointsKeepABoundedNumberOfDeltas) {
  MemoryState store;
  {
    Topology t(spec());
    CounterContinuity c;
    ASSERT_TRUE(c.restore(store, t));
    assign(c, t, PartitionId{0}, store);
    size_t most = 0;
    for (int i = 0; i < 150; ++i) {
      reject(t, PartitionId{0}, 1);
      checkpoint(c, t, store);
      most = std::max(most, keys_under(store, "continued/delta/"));
    }
    EXPECT_GT(most, 4u);    // deltas were written ...
    EXPECT_LE(most, 64u);   // ... and folded into a base before there were too many
  }
  Topology t(spec());
  CounterContinuity c;
  ASSERT_TRUE(c.restore(store, t));
  EXPECT_EQ(consumed(c, t), 150);
}

// A checkpoint whose write failed (committed() never called) is not taken as stored: the next
// one writes its changes again, even if nothing changed since.
TEST(CounterContinuity, AFailedWriteIsWrittenAgainByTheNextCheckpoint) {
  MemoryState store;
  {
    Topology t(spec());
    CounterContinuity c;
    ASSERT_TRUE(c.restore(store, t));
    assign(c, t, PartitionId{0}, store);
    checkpoint(c, t, store);
    reject(t, PartitionId{0}, 5);
    MemoryState lost;  // the batch that never reached the store
    c.checkpoint(t, lost);
    checkpoint(c, t, store);
  }
  Topology t(spec());
  CounterContinuity c;
  ASSERT_TRUE(c.restore(store, t));
  EXPECT_EQ(consumed(c, t), 5);
}

// Stores written before issue #20's segments: one key per series (`counter/<series>`: the value,
// then the help text) and its published copy. Restored as they were, then replaced by a base.
TEST(CounterContinuity, Format1KeysRestoreAndAreReplacedByABase) {
  MemoryState store;
  std::string value;
  byte_codec::put_f64(value, 7);
  byte_codec::put_str(value, "Messages consumed");
  store.put(Counted::scope() + "counter/socialpulse_events_consumed_total", value);
  store.put(Counted::scope() + "published/counter/socialpulse_events_consumed_total", value);
  {
    Topology t(spec());
    CounterContinuity c;
    ASSERT_TRUE(c.restore(store, t));
    EXPECT_EQ(consumed(c, t), 7);
    assign(c, t, PartitionId{0}, store);
    checkpoint(c, t, store);  // nothing counted since: still rewritten, as a base
    EXPECT_EQ(keys_under(store, "counter/"), 0u);
    EXPECT_EQ(keys_under(store, "published/"), 0u);
    EXPECT_EQ(keys_under(store, "continued/base"), 1u);
    reject(t, PartitionId{0}, 2);
    checkpoint(c, t, store);
  }
  Topology t(spec());
  CounterContinuity c;
  ASSERT_TRUE(c.restore(store, t));
  EXPECT_EQ(consumed(c, t), 9);
}

// Format 3 (issue #20): under load every series changes every checkpoint, and a delta that named
// each by its encoded key and help text was as large as a base. A delta names the base's series
// by position; one first counted after the base is written whole.
TEST(CounterContinuity, ADeltaNamesTheBaseSeriesByPosition) {
  MemoryState store;
  const std::string scope = Counted::scope();
  auto value_of = [&](const std::string& key) {
    std::string out;
    EXPECT_TRUE(store.scan(scope + key, [&](std::string_view, std::string_view v) {
      out = std::string(v);
      return Status{};
    }));
    return out;
  };
  {
    Topology t(spec());
    CounterContinuity c;
    ASSERT_TRUE(c.restore(store, t));
    assign(c, t, PartitionId{0}, store);
    reject(t, PartitionId{0}, 3);
    checkpoint(c, t, store);  // the base
    Sums shown;
    c.collect(t, shown, [] {});
    c.published();
    reject(t, PartitionId{0}, 2);
    checkpoint(c, t, store);  // a delta: the consumed and rejected counters moved
    const std::string base = value_of("continued/base");
    const std::string delta = value_of("continued/delta/");
    ASSERT_FALSE(delta.empty());
    EXPECT_NE(base.find("socialpulse_events_consumed_total"), std::string::npos);
    EXPECT_EQ(delta.find("socialpulse_events_consumed_total"), std::string::npos);
    EXPECT_LT(delta.size() * 4, base.size());
    reply(t, PartitionId{0}, 4);  // the care histogram: not in the base, written whole
    checkpoint(c, t, store);
  }
  Topology t(spec());
  CounterContinuity c;
  ASSERT_TRUE(c.restore(store, t));
  EXPECT_EQ(consumed(c, t), 3 + 2 + 4);
  EXPECT_EQ(care(c, t, "count"), 4);
  EXPECT_EQ(care(c, t, "sum"), 400);
}

// A base written by format 2 (every entry whole) gives the positions the next deltas name.
TEST(CounterContinuity, AFormat2BaseRestoresAndLaterDeltasNameItsSeries) {
  MemoryState store;
  std::string base;
  byte_codec::put_u8(base, 2);
  byte_codec::put_var(base, 1);  // exported
  byte_codec::put_u8(base, 0);   // a counter
  byte_codec::put_vstr(base, "socialpulse_events_consumed_total");
  byte_codec::put_vstr(base, "Messages consumed");
  byte_codec::put_f64(base, 7);
  byte_codec::put_var(base, 0);  // published
  store.put(Counted::scope() + "continued/base", base);
  {
    Topology t(spec());
    CounterContinuity c;
    ASSERT_TRUE(c.restore(store, t));
    EXPECT_EQ(consumed(c, t), 7);
    assign(c, t, PartitionId{0}, store);
    reject(t, PartitionId{0}, 2);
    checkpoint(c, t, store);
    EXPECT_EQ(keys_under(store, "continued/delta/"), 1u);
  }
  Topology t(spec());
  CounterContinuity c;
  ASSERT_TRUE(c.restore(store, t));
  EXPECT_EQ(consumed(c, t), 9);
}

}  // namespace
}  // namespace sp
