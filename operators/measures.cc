#include "operators/measures.h"

#include <type_traits>

namespace sp {
namespace {

template <typename T>
void put(std::string& out, T v) {
  if constexpr (std::is_same_v<T, double>) {
    byte_codec::put_f64(out, v);
  } else {
    byte_codec::put_i64(out, v);
  }
}

template <typename T>
void get(byte_codec::Reader& in, T& v) {
  if constexpr (std::is_same_v<T, double>) {
    v = in.f64();
  } else {
    v = in.i64();
  }
}

}  // namespace

std::string_view to_string(Measure m) {
  switch (m) {
    case Measure::impressions:
      return "impressions";
    case Measure::engagements:
      return "engagements";
    case Measure::reach:
      return "reach";
    case Measure::web_visits:
      return "web_visits";
    case Measure::leads:
      return "leads";
    case Measure::opinion_weight:
      return "opinion_weight";
    case Measure::positive:
      return "positive";
    case Measure::negative:
      return "negative";
    case Measure::emv:
      return "emv";
    case Measure::lead_value:
      return "lead_value";
  }
  return "unknown";
}

bool Measures::touched() const {
  for (int64_t v : interactions) {
    if (v != 0) return true;
  }
  return false;
}

void Measures::encode_dense(std::string& out, MeasureSet fields) const {
  for (int64_t v : interactions) byte_codec::put_i64(out, v);
  for_each_field(
      [&](Measure m, const auto& v) {
        if (fields.contains(m)) put(out, v);
      },
      *this);
}

bool Measures::decode_dense(byte_codec::Reader& in, MeasureSet fields) {
  for (int64_t& v : interactions) v = in.i64();
  for_each_field(
      [&](Measure m, auto& v) {
        if (fields.contains(m)) get(in, v);
      },
      *this);
  return in.ok();
}

void Measures::encode_named(std::string& out, MeasureSet fields) const {
  uint64_t types = 0;
  for (int64_t v : interactions) types += v != 0 ? 1 : 0;
  byte_codec::put_u64(out, types);
  for (size_t k = 0; k < kEventTypeCount; ++k) {
    if (interactions[k] == 0) continue;
    byte_codec::put_str(out, to_string(static_cast<EventType>(k)));
    byte_codec::put_i64(out, interactions[k]);
  }
  for_each_field(
      [&](Measure m, const auto& v) {
        if (fields.contains(m)) put(out, v);
      },
      *this);
}

bool Measures::decode_named(byte_codec::Reader& in, MeasureSet fields) {
  const uint64_t types = in.u64();
  for (uint64_t i = 0; i < types && in.ok(); ++i) {
    const std::string_view name = in.str();
    const int64_t v = in.i64();
    if (!in.ok()) return false;
    const auto type = parse_event_type(name);
    if (!type) return false;
    interactions[static_cast<size_t>(*type)] = v;
  }
  for_each_field(
      [&](Measure m, auto& v) {
        if (fields.contains(m)) get(in, v);
      },
      *this);
  return in.ok();
}

}  // namespace sp
