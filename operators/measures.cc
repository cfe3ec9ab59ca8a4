#include "operators/measures.h"

#include <bit>
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

void Measures::encode_packed(std::string& out, MeasureSet fields) const {
  static_assert(kEventTypeCount <= 64 && kMeasureCount <= 64);
  uint64_t types = 0;
  for (size_t k = 0; k < kEventTypeCount; ++k) {
    if (interactions[k] != 0) types |= uint64_t{1} << k;
  }
  byte_codec::put_var(out, types);
  for (size_t k = 0; k < kEventTypeCount; ++k) {
    if (interactions[k] != 0) byte_codec::put_svar(out, interactions[k]);
  }
  uint64_t present = 0;
  auto non_zero = [](const auto& v) {
    if constexpr (std::is_same_v<std::decay_t<decltype(v)>, double>) {
      return std::bit_cast<uint64_t>(v) != 0;
    } else {
      return v != 0;
    }
  };
  for_each_field(
      [&](Measure m, const auto& v) {
        if (fields.contains(m) && non_zero(v)) present |= uint64_t{1} << static_cast<unsigned>(m);
      },
      *this);
  byte_codec::put_var(out, present);
  for_each_field(
      [&](Measure m, const auto& v) {
        if ((present >> static_cast<unsigned>(m) & 1) == 0) return;
        if constexpr (std::is_same_v<std::decay_t<decltype(v)>, double>) {
          byte_codec::put_f64(out, v);
        } else {
          byte_codec::put_svar(out, v);
        }
      },
      *this);
}

bool Measures::decode_packed(byte_codec::Reader& in, MeasureSet fields) {
  const uint64_t types = in.var();
  if (!in.ok() || (kEventTypeCount < 64 && (types >> kEventTypeCount) != 0)) return false;
  for (size_t k = 0; k < kEventTypeCount; ++k) {
    interactions[k] = (types >> k & 1) != 0 ? in.svar() : 0;
  }
  const uint64_t present = in.var();
  if (!in.ok() || (present >> kMeasureCount) != 0) return false;
  bool known = true;
  for_each_field(
      [&](Measure m, auto& v) {
        const bool stored = (present >> static_cast<unsigned>(m) & 1) != 0;
        if (stored && !fields.contains(m)) known = false;
        if constexpr (std::is_same_v<std::decay_t<decltype(v)>, double>) {
          v = stored ? in.f64() : 0.0;
        } else {
          v = stored ? in.svar() : 0;
        }
      },
      *this);
  return known && in.ok();
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
