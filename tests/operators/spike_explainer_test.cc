#include "operators/spike_explainer.h"

#include <gtest/gtest.h>

#include <string>

namespace sp {
namespace {

TEST(SpaceSaving, KeepsEveryHeavyHitterWithinCapacity) {
  SpaceSaving s(4);
  // One heavy key among 100 light ones, interleaved: the heavy one (> total / capacity) stays.
  for (int i = 0; i < 100; ++i) {
    s.add("light-" + std::to_string(i), 1.0);
    s.add("heavy", 3.0);
  }
  EXPECT_EQ(s.entries().size(), 4u);
  EXPECT_GE(s.weight_of("heavy"), 300.0);  // never under-estimated
}

TEST(SpaceSaving, BytesDoNotDependOnInsertionOrder) {
  SpaceSaving a(8), b(8);
  a.add("x", 1.0, 5);
  a.add("y", 2.0, 7);
  b.add("y", 2.0, 7);
  b.add("x", 1.0, 5);
  std::string ba, bb;
  a.serialize(ba);
  b.serialize(bb);
  EXPECT_EQ(ba, bb);
  SpaceSaving c(8);
  byte_codec::Reader in(ba);
  ASSERT_TRUE(c.deserialize(in));
  EXPECT_TRUE(in.done());
  EXPECT_EQ(c.weight_of("y"), 2.0);
}

TEST(SpaceSaving, MoreEntriesThanCapacityAreCorrupt) {
  SpaceSaving big(8);
  for (int i = 0; i < 8; ++i) big.add(std::to_string(i), 1.0);
  std::string bytes;
  big.serialize(bytes);
  SpaceSaving small(4);
  byte_codec::Reader in(bytes);
  EXPECT_FALSE(small.deserialize(in));
}

TEST(ExplainBaseline, RanksByExcessOverTheBaselineNotByVolume) {
  const Vocabulary vocab({{"acme", true}}, {"twitter", "forum"});
  ExplainBaseline baseline(vocab.channel_count());
  ContributionSketch usual(vocab.channel_count());
  usual.channels[0] = 50.0;  // twitter always carries most complaints
  for (int i = 0; i < 100; ++i) baseline.update(usual, 0.1);
  ContributionSketch spike(vocab.channel_count());
  spike.channels[0] = 55.0;  // +5 on twitter
  spike.channels[1] = 30.0;  // +30 on the forum: the cause
  std::string out;
  baseline.append_explanation(out, spike, vocab);
  EXPECT_EQ(out.find(R"({"channels":[{"name":"forum","negative":30,"baseline":0},)"), 0u) << out;
}

}  // namespace
}  // namespace sp
