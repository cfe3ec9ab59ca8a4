#include "operators/measures.h"

#include <gtest/gtest.h>

#include <cmath>

#include <set>
#include <string>
#include <vector>

namespace sp {
namespace {

Event event(EventType type, int64_t count) {
  Event e;
  e.type = type;
  e.count = count;
  e.reach = 1200;
  e.has_sentiment = true;
  e.sentiment = -0.6;
  return e;
}

Measures sample() {
  Measures m;
  const Event lead = [] {
    Event e = event(EventType::lead, 2);
    e.has_value = true;
    e.value = 40.5;
    return e;
  }();
  for (const Event& e : {event(EventType::impression, 300), event(EventType::like, 4),
                         event(EventType::click, 3), lead, event(EventType::mention, 1)}) {
    m.add(e, derive(e, KpiSettings{}, EmvSettings{}));
  }
  return m;
}

std::vector<double> scalars(const Measures& m) {
  std::vector<double> out;
  Measures::for_each_field([&](Measure, const auto& v) { out.push_back(static_cast<double>(v)); },
                           m);
  return out;
}

TEST(Measures, VisitsEveryScalarOnceInMeasureOrder) {
  std::vector<Measure> order;
  std::set<std::string_view> names;
  const Measures m = sample();
  Measures::for_each_field(
      [&](Measure field, const auto&) {
        order.push_back(field);
        names.insert(to_string(field));
      },
      m);
  ASSERT_EQ(order.size(), kMeasureCount);
  for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(static_cast<size_t>(order[i]), i);
  EXPECT_EQ(names.size(), kMeasureCount);
  EXPECT_EQ(names.count("unknown"), 0u);
}

TEST(Measures, AddSumsTheDerivedQuantitiesAndCountsPerType) {
  const Event e = event(EventType::click, 3);
  const Derived d = derive(e, KpiSettings{}, EmvSettings{});
  Measures m;
  m.add(e, d);
  m.add(e, d);
  EXPECT_EQ(m.interactions[static_cast<size_t>(EventType::click)], 6);
  EXPECT_EQ(m.web_visits, 2 * d.web_visits);
  EXPECT_EQ(m.engagements, 2 * d.engagements);
  EXPECT_EQ(m.reach, 2 * d.reach);
  EXPECT_DOUBLE_EQ(m.opinion_weight, 2 * d.opinion_weight);
  EXPECT_DOUBLE_EQ(m.negative, 2 * d.negative);
  EXPECT_DOUBLE_EQ(m.emv, 2 * d.emv);
  EXPECT_TRUE(m.touched());
  EXPECT_FALSE(Measures{}.touched());
}

TEST(Measures, MergeEqualsAddingEverythingToOne) {
  Measures a = sample();
  Measures both = sample();
  const Event extra = event(EventType::share, 9);
  Measures b;
  b.add(extra, derive(extra, KpiSettings{}, EmvSettings{}));
  both.add(extra, derive(extra, KpiSettings{}, EmvSettings{}));
  a.merge(b);
  EXPECT_EQ(a.interactions, both.interactions);
  EXPECT_EQ(scalars(a), scalars(both));
}

TEST(Measures, DenseLayoutRoundTripsTheChosenFields) {
  const Measures m = sample();
  const MeasureSet fields = MeasureSet::all().without(Measure::web_visits);
  std::string bytes;
  m.encode_dense(bytes, fields);
  EXPECT_EQ(bytes.size(), (kEventTypeCount + kMeasureCount - 1) * 8);
  Measures back;
  byte_codec::Reader in(bytes);
  ASSERT_TRUE(back.decode_dense(in, fields));
  EXPECT_TRUE(in.done());
  EXPECT_EQ(back.interactions, m.interactions);
  EXPECT_EQ(back.web_visits, 0);  // not in the layout
  Measures expected = m;
  expected.web_visits = 0;
  EXPECT_EQ(scalars(back), scalars(expected));
  byte_codec::Reader truncated(std::string_view(bytes).substr(0, bytes.size() - 1));
  EXPECT_FALSE(Measures{}.decode_dense(truncated, fields));
}

TEST(Measures, NamedLayoutWritesOnlyTheTypesSeen) {
  const Measures m = sample();
  const MeasureSet fields =
      MeasureSet::all().without(Measure::impressions).without(Measure::engagements);
  std::string bytes;
  m.encode_named(bytes, fields);
  byte_codec::Reader peek(bytes);
  EXPECT_EQ(peek.u64(), 5u);  // impression, like, click, lead, mention
  EXPECT_EQ(peek.str(), "impression");
  Measures back;
  byte_codec::Reader in(bytes);
  ASSERT_TRUE(back.decode_named(in, fields));
  EXPECT_TRUE(in.done());
  EXPECT_EQ(back.interactions, m.interactions);
  EXPECT_EQ(back.reach, m.reach);
  EXPECT_EQ(back.lead_value, m.lead_value);
  EXPECT_EQ(back.impressions, 0);

  std::string unknown = bytes;
  unknown.replace(unknown.find("mention"), 7, "menTion");
  byte_codec::Reader bad(unknown);
  EXPECT_FALSE(Measures{}.decode_named(bad, fields));
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    byte_codec::Reader short_read(std::string_view(bytes).substr(0, cut));
    EXPECT_FALSE(Measures{}.decode_named(short_read, fields)) << cut;
  }
}

TEST(Measures, PackedLayoutKeepsOnlyNonZeroFieldsAndRoundTrips) {
  Measures m = sample();
  m.positive = -0.0;  // all bits are not zero: kept, sign included
  const MeasureSet fields = MeasureSet::all().without(Measure::web_visits);
  std::string packed;
  m.encode_packed(packed, fields);
  std::string dense;
  m.encode_dense(dense, fields);
  EXPECT_LE(packed.size() * 3, dense.size());
  Measures back;
  byte_codec::Reader in(packed);
  ASSERT_TRUE(back.decode_packed(in, fields));
  EXPECT_TRUE(in.done());
  EXPECT_EQ(back.interactions, m.interactions);
  Measures expected = m;
  expected.web_visits = 0;
  EXPECT_EQ(scalars(back), scalars(expected));
  EXPECT_TRUE(std::signbit(back.positive));

  std::string empty;
  Measures{}.encode_packed(empty, fields);
  EXPECT_EQ(empty.size(), 2u);  // two empty bit sets
  for (size_t cut = 0; cut < packed.size(); ++cut) {
    byte_codec::Reader short_read(std::string_view(packed).substr(0, cut));
    EXPECT_FALSE(Measures{}.decode_packed(short_read, fields)) << cut;
  }
  // A field the layout does not hold, or a type bit beyond the schema's, is corruption.
  Measures visits;
  visits.web_visits = 3;
  std::string with_visits;
  visits.encode_packed(with_visits, MeasureSet::all());
  byte_codec::Reader narrower(with_visits);
  EXPECT_FALSE(Measures{}.decode_packed(narrower, fields));
  std::string unknown_type;
  byte_codec::put_var(unknown_type, uint64_t{1} << kEventTypeCount);
  byte_codec::put_svar(unknown_type, 1);
  byte_codec::put_var(unknown_type, 0);
  byte_codec::Reader bad(unknown_type);
  EXPECT_FALSE(Measures{}.decode_packed(bad, fields));
}

}  // namespace
}  // namespace sp
