// Topology::write_ahead() (issue #20): which partitions' dedup ids are written ahead of the
// checkpoint, and that the checkpoint then holds every id exactly as if none had been.
#include <gtest/gtest.h>

#include <string>

#include "operators/keyed_state.h"
#include "operators/topology.h"

namespace sp {
namespace {

TopologySpec spec() {
  TopologySpec s;
  s.vocabulary = Vocabulary({BrandInfo{"acme", true}}, {"twitter"});
  return s;
}

// n events with fresh ids into partition `pid`.
void feed(Topology& t, PartitionId pid, int n) {
  Topology::Partition* p = t.find(pid);
  ASSERT_NE(p, nullptr);
  const int64_t first = p->next_offset ? p->next_offset->value : 0;
  for (int i = 0; i < n; ++i) {
    Event e;
    e.time = EventTime{Millis{1'700'000'000'000 + (first + i) * 10}};
    e.type = EventType::like;
    e.id = "e" + std::to_string(pid.value) + "-" + std::to_string(first + i);
    e.brand_name = "acme";
    t.process(*p, Offset{first + i}, e, Deduplicator::key_of(e), WallTime{});
  }
}

size_t segment_keys(const MemoryState& state, PartitionId pid) {
  const std::string prefix = state_scope("dedup", pid) + "seg/";
  size_t n = 0;
  for (const auto& [key, value] : state.entries()) n += key.starts_with(prefix) ? 1 : 0;
  return n;
}

// A partition with few new ids is left to the checkpoint: its segment would be a key for the
// whole horizon. The one written ahead and the one that was not both restore every id.
TEST(TopologyWriteAhead, OnlyPartitionsWithEnoughNewIdsAreWrittenAheadAndEveryIdIsStored) {
  const PartitionId busy{0}, quiet{1};
  MemoryState store;
  Topology t(spec());
  ASSERT_TRUE(t.assign(busy, store));
  ASSERT_TRUE(t.assign(quiet, store));
  feed(t, busy, 300);
  feed(t, quiet, 10);
  EXPECT_EQ(t.dedup_unwritten_ids(256), 300u);
  EXPECT_EQ(t.dedup_unwritten_ids(1), 310u);

  EXPECT_EQ(t.write_ahead(store, 256), 1u);
  t.write_ahead_committed();
  EXPECT_EQ(segment_keys(store, busy), 1u);
  EXPECT_EQ(segment_keys(store, quiet), 0u);
  EXPECT_EQ(t.dedup_unwritten_ids(1), 10u);
  MemoryState nothing;
  EXPECT_EQ(t.write_ahead(nothing, 256), 0u);
  EXPECT_TRUE(nothing.entries().empty());

  t.checkpoint(store);
  t.checkpoint_committed();
  EXPECT_EQ(segment_keys(store, busy), 1u) << "nothing new since the write-ahead";
  EXPECT_EQ(segment_keys(store, quiet), 1u);
  Topology restored(spec());
  ASSERT_TRUE(restored.assign(busy, store));
  ASSERT_TRUE(restored.assign(quiet, store));
  EXPECT_EQ(restored.find(busy)->dedup.size(), 300u);
  EXPECT_EQ(restored.find(quiet)->dedup.size(), 10u);
}

}  // namespace
}  // namespace sp
