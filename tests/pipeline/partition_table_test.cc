#include "pipeline/partition_table.h"

#include <gtest/gtest.h>

#include <string>

namespace sp {
namespace {

PartitionSlot slot_of(const std::string& topic, int32_t partition) {
  PartitionSlot s;
  s.topic = topic;
  s.partition = partition;
  return s;
}

TEST(PartitionTableTest, FindsOwnedPartitionsByTopicNameAndNumberOnly) {
  PartitionTable table({"events", "more"});
  const auto a = table.id_of("events", 3);
  const auto b = table.id_of("more", 3);
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->value, b->value);
  EXPECT_FALSE(table.id_of("other", 3));
  table.add(*a, slot_of("events", 3));
  table.add(*b, slot_of("more", 3));
  const std::string events = "events";  // another pointer to the same name
  for (int round = 0; round < 2; ++round) {  // the second round: find()'s topic-name cache
    PartitionSlot* s = table.find(events.c_str(), 3);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->topic, "events");
    s = table.find("more", 3);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->topic, "more");
    EXPECT_EQ(table.find("events", 4), nullptr);
    EXPECT_EQ(table.find("other", 3), nullptr);
  }
}

// Messages of a revoked partition can still be in hand: find() must not return its old slot.
TEST(PartitionTableTest, ARemovedPartitionIsNotFoundAgainEvenRightAfterALookup) {
  PartitionTable table({"events"});
  const PartitionId id = *table.id_of("events", 0);
  table.add(id, slot_of("events", 0));
  ASSERT_NE(table.find("events", 0), nullptr);
  table.remove(id);
  EXPECT_EQ(table.find("events", 0), nullptr);
  EXPECT_EQ(table.find(id), nullptr);
  PartitionSlot again = slot_of("events", 0);
  again.state_paused = true;
  table.add(id, again);
  PartitionSlot* s = table.find("events", 0);
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->state_paused);  // the new slot
  EXPECT_TRUE(table.remove(id));
  EXPECT_EQ(table.find("events", 0), nullptr);
}

}  // namespace
}  // namespace sp
