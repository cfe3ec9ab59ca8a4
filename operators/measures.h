#pragma once
// The additive per-brand x channel measures of SPEC 2/4/5, shared by the window aggregates and the
// KPI counters so that both sum, merge and encode the same fields the same way.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "operators/byte_codec.h"
#include "operators/derived.h"
#include "operators/event.h"

namespace sp {

// The scalar measures, in the order every byte layout writes them.
enum class Measure : uint8_t {
  impressions,
  engagements,
  reach,
  web_visits,
  leads,
  opinion_weight,
  positive,
  negative,
  emv,
  lead_value,
};
inline constexpr size_t kMeasureCount = 10;
std::string_view to_string(Measure m);

// The scalar measures one byte layout holds (a layout never reorders them, it may leave some out).
class MeasureSet {
 public:
  static constexpr MeasureSet all() { return MeasureSet((1u << kMeasureCount) - 1); }
  constexpr MeasureSet without(Measure m) const { return MeasureSet(bits_ & ~bit(m)); }
  constexpr bool contains(Measure m) const { return (bits_ & bit(m)) != 0; }

 private:
  constexpr explicit MeasureSet(uint32_t bits) : bits_(bits) {}
  static constexpr uint32_t bit(Measure m) { return 1u << static_cast<unsigned>(m); }
  uint32_t bits_;
};

// Contract: sums over some span of events: add() one event (with its Derived quantities), merge()
// another span. Integer where the source is integral (exact sums), double where the derived
// quantity is real; fields are summed in call order, so a fixed merge order gives identical
// doubles on every run.
struct Measures {
  std::array<int64_t, kEventTypeCount> interactions{};  // sum of count per event type
  int64_t impressions = 0;
  int64_t engagements = 0;
  int64_t reach = 0;
  int64_t web_visits = 0;
  int64_t leads = 0;
  double opinion_weight = 0.0;
  double positive = 0.0;
  double negative = 0.0;
  double emv = 0.0;
  double lead_value = 0.0;

  // Calls fn(Measure, field of s...) for every scalar measure, in Measure order, with the same
  // field of each argument: Measures, or Derived (same member names), const or not.
  template <typename F, typename... S>
  static void for_each_field(F&& fn, S&... s) {
    fn(Measure::impressions, s.impressions...);
    fn(Measure::engagements, s.engagements...);
    fn(Measure::reach, s.reach...);
    fn(Measure::web_visits, s.web_visits...);
    fn(Measure::leads, s.leads...);
    fn(Measure::opinion_weight, s.opinion_weight...);
    fn(Measure::positive, s.positive...);
    fn(Measure::negative, s.negative...);
    fn(Measure::emv, s.emv...);
    fn(Measure::lead_value, s.lead_value...);
  }

  // Hot path (every event, several operators): inline.
  void add(const Event& event, const Derived& derived) {
    interactions[static_cast<size_t>(event.type)] += event.count;
    for_each_field([](Measure, auto& sum, const auto& v) { sum += v; }, *this, derived);
  }
  void merge(const Measures& other) {
    for (size_t i = 0; i < kEventTypeCount; ++i) interactions[i] += other.interactions[i];
    for_each_field([](Measure, auto& sum, const auto& v) { sum += v; }, *this, other);
  }
  // Any event seen (every event has a type and a count; a zero count is not an interaction).
  bool touched() const;

  // Byte layouts (byte_codec). Dense: every interaction count, then the scalars in `fields`.
  // Named: the number of non-zero interaction counts and each as (type name, count), then the
  // scalars in `fields`. decode_* return false on a short read or an unknown type name (the
  // event types are the schema's enum: an unknown name is corruption).
  void encode_dense(std::string& out, MeasureSet fields) const;
  bool decode_dense(byte_codec::Reader& in, MeasureSet fields);
  void encode_named(std::string& out, MeasureSet fields) const;
  bool decode_named(byte_codec::Reader& in, MeasureSet fields);
  // Packed (issue #20: checkpoint bytes): a varint bit set of the non-zero interaction counts
  // (bit = EventType) and each as a zigzag varint; a varint bit set of the non-zero scalars among
  // `fields` (bit = Measure) and each as a zigzag varint (integers) or 8 bytes (doubles; zero
  // means all bits zero, so -0.0 is kept). A bit beyond the known types is corruption.
  void encode_packed(std::string& out, MeasureSet fields) const;
  bool decode_packed(byte_codec::Reader& in, MeasureSet fields);
};

}  // namespace sp
