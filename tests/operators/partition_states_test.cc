#include "operators/partition_states.h"

#include <gtest/gtest.h>

#include <string>
#include <type_traits>
#include <vector>

#include "operators/counter_operator.h"
#include "operators/reputation_operator.h"
#include "operators/session_window_operator.h"
#include "operators/watermark_tracker.h"
#include "operators/window_operator.h"

namespace sp {
namespace {

// The operators hold per-partition state behind Operator pointers: a copy would slice, so none is
// copyable. The tracker is a value and copies correctly (see CopiesRebuildTheIndex).
static_assert(!std::is_copy_constructible_v<CounterOperator>);
static_assert(!std::is_copy_constructible_v<ReputationOperator>);
static_assert(!std::is_copy_constructible_v<WindowOperator>);
static_assert(!std::is_copy_constructible_v<SessionWindowOperator>);
static_assert(std::is_copy_constructible_v<WatermarkTracker>);

std::vector<int32_t> ids(const PartitionStates<std::string>& states) {
  std::vector<int32_t> out;
  for (const auto& [partition, state] : states) out.push_back(partition.value);
  return out;
}

TEST(PartitionStates, CreatesOnceAndFindsWhatItCreated) {
  PartitionStates<std::string> states;
  int made = 0;
  auto make = [&made] {
    ++made;
    return std::string("fresh");
  };
  EXPECT_EQ(states.find(PartitionId{3}), nullptr);
  std::string& s = states.get_or_create(PartitionId{3}, make);
  s = "three";
  EXPECT_EQ(&states.get_or_create(PartitionId{3}, make), &s);
  EXPECT_EQ(made, 1);
  EXPECT_EQ(states.find(PartitionId{3}), &s);
  EXPECT_TRUE(states.contains(PartitionId{3}));
  EXPECT_FALSE(states.contains(PartitionId{2}));
  EXPECT_EQ(states.size(), 1u);
}

TEST(PartitionStates, IteratesInPartitionOrderWhateverTheInsertionOrder) {
  PartitionStates<std::string> states;
  for (int32_t p : {7, 0, kMaxIndexedPartition + 5, 3, -1}) {
    states.get_or_create(PartitionId{p}) = std::to_string(p);
  }
  EXPECT_EQ(ids(states), (std::vector<int32_t>{-1, 0, 3, 7, kMaxIndexedPartition + 5}));
}

TEST(PartitionStates, IdsOutsideTheIndexGoThroughTheMap) {
  PartitionStates<std::string> states;
  for (PartitionId p : {kGlobalPartition, PartitionId{kMaxIndexedPartition}, PartitionId{-7}}) {
    std::string& s = states.get_or_create(p);
    s = std::to_string(p.value);
    EXPECT_EQ(states.find(p), &s);
    EXPECT_EQ(&states.get_or_create(p), &s);
  }
  EXPECT_EQ(*states.find(kGlobalPartition), "-1");
  EXPECT_TRUE(states.erase(PartitionId{kMaxIndexedPartition}));
  EXPECT_EQ(states.find(PartitionId{kMaxIndexedPartition}), nullptr);
  EXPECT_EQ(states.size(), 2u);
}

TEST(PartitionStates, EraseForgetsAndTheNextUseStartsFresh) {
  PartitionStates<std::string> states;
  states.get_or_create(PartitionId{1}) = "old";
  EXPECT_TRUE(states.erase(PartitionId{1}));
  EXPECT_FALSE(states.erase(PartitionId{1}));
  EXPECT_EQ(states.find(PartitionId{1}), nullptr);
  EXPECT_EQ(states.get_or_create(PartitionId{1}, [] { return std::string("new"); }), "new");
  EXPECT_TRUE(states.erase(PartitionId{1}));
  EXPECT_TRUE(states.empty());
}

TEST(PartitionStates, AssignReplacesAndIndexes) {
  PartitionStates<std::string> states;
  std::string& first = states.assign(PartitionId{4}, "restored");
  EXPECT_EQ(states.find(PartitionId{4}), &first);
  states.assign(PartitionId{4}, "again");
  EXPECT_EQ(*states.find(PartitionId{4}), "again");
  EXPECT_EQ(states.get_or_create(PartitionId{4}, [] { return std::string("unused"); }), "again");
  EXPECT_EQ(states.size(), 1u);
}

TEST(PartitionStates, CopiesRebuildTheIndex) {
  PartitionStates<std::string> original;
  original.get_or_create(PartitionId{0}) = "a";
  original.get_or_create(PartitionId{2}) = "b";
  PartitionStates<std::string> copy = original;
  copy.get_or_create(PartitionId{0}) = "changed";  // through the copy's own index
  *copy.find(PartitionId{2}) = "changed too";
  EXPECT_EQ(*original.find(PartitionId{0}), "a");
  EXPECT_EQ(*original.find(PartitionId{2}), "b");
  EXPECT_NE(copy.find(PartitionId{0}), original.find(PartitionId{0}));

  PartitionStates<std::string> assigned;
  assigned.get_or_create(PartitionId{9}) = "gone";
  assigned = original;
  EXPECT_EQ(assigned.find(PartitionId{9}), nullptr);
  assigned.get_or_create(PartitionId{2}) = "x";
  EXPECT_EQ(*original.find(PartitionId{2}), "b");
  EXPECT_EQ(*assigned.find(PartitionId{2}), "x");
}

TEST(PartitionStates, MovesKeepTheStates) {
  PartitionStates<std::string> from;
  std::string* a = &from.get_or_create(PartitionId{1});
  *a = "a";
  PartitionStates<std::string> to = std::move(from);
  EXPECT_EQ(to.find(PartitionId{1}), a);  // the map nodes moved along with the index
  PartitionStates<std::string> again;
  again.get_or_create(PartitionId{5}) = "replaced";
  again = std::move(to);
  EXPECT_EQ(again.find(PartitionId{1}), a);
  EXPECT_EQ(again.find(PartitionId{5}), nullptr);
  EXPECT_EQ(ids(again), (std::vector<int32_t>{1}));
}

}  // namespace
}  // namespace sp
