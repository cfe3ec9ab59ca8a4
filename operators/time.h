#pragma once
// Strong time and position types: event time is milliseconds since the Unix epoch (UTC).
#include <chrono>
#include <compare>
#include <cstdint>
#include <limits>

namespace sp {

using Millis = std::chrono::milliseconds;
using EventTime = std::chrono::sys_time<Millis>;

// The caller's wall clock (the runner's system clock, a virtual clock in tests).
using WallTime = std::chrono::system_clock::time_point;

constexpr EventTime kMinEventTime{Millis{std::numeric_limits<int64_t>::min() / 2}};
constexpr EventTime kMaxEventTime{Millis{std::numeric_limits<int64_t>::max() / 2}};

inline constexpr int64_t to_epoch_ms(EventTime t) { return t.time_since_epoch().count(); }
inline constexpr EventTime from_epoch_ms(int64_t ms) { return EventTime{Millis{ms}}; }

// Input partition number within this instance's assignment (all input topics share one space:
// the runner maps (topic, partition) to a PartitionId).
struct PartitionId {
  int32_t value = 0;
  auto operator<=>(const PartitionId&) const = default;
};

// Instance-level state (not tied to one partition) is checkpointed under this id.
inline constexpr PartitionId kGlobalPartition{-1};

struct Offset {
  int64_t value = 0;
  auto operator<=>(const Offset&) const = default;
};

}  // namespace sp
