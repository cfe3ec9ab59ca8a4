#include "operators/watermark_tracker.h"

#include <algorithm>

#include "operators/byte_codec.h"
#include "operators/operator.h"
#include "operators/state_version.h"

namespace sp {
namespace {
constexpr uint8_t kSnapshotVersion = 1;
}  // namespace

WatermarkTracker::PartitionClock& WatermarkTracker::clock_for(PartitionId partition) {
  return partitions_.get_or_create(partition);
}

const WatermarkTracker::PartitionClock* WatermarkTracker::find_clock(PartitionId partition) const {
  return partitions_.find(partition);
}

WatermarkTracker::WatermarkTracker(WatermarkSettings settings) : settings_(settings) {}

void WatermarkTracker::assign(PartitionId partition) {
  partitions_.get_or_create(partition);
  stale_ = true;
}

bool WatermarkTracker::revoke(PartitionId partition) {
  partitions_.erase(partition);
  return recompute(std::nullopt);
}

bool WatermarkTracker::observe(PartitionId partition, EventTime event_time, WallTime now) {
  PartitionClock& clock = clock_for(partition);
  const bool was_active = !clock.idle;
  const EventTime before = clock.max_event_time;
  clock.max_event_time = std::max(clock.max_event_time, event_time);
  clock.last_activity = now;
  clock.idle = false;
  // Hot path (every message): the min over the partitions can only rise when this partition was
  // one of those holding it, i.e. its watermark was at or below the pipeline's. Otherwise another
  // active partition at or below the pipeline watermark still holds it, and the O(partitions)
  // recompute would change nothing.
  if (!stale_ && was_active &&
      (clock.max_event_time == before ||
       (before != kMinEventTime && before - settings_.max_out_of_orderness > pipeline_))) {
    return false;
  }
  return recompute(now);
}

bool WatermarkTracker::observe_activity(PartitionId partition, WallTime now) {
  PartitionClock& clock = clock_for(partition);
  const bool was_active = !clock.idle;
  clock.last_activity = now;
  clock.idle = false;
  if (!stale_ && was_active) return false;  // nothing that the minimum depends on changed
  return recompute(now);
}

bool WatermarkTracker::update_idle(WallTime now, const std::function<bool(PartitionId)>& has_lag) {
  for (auto& [partition, clock] : partitions_) {
    if (!clock.last_activity || has_lag(partition)) {
      // A lagging partition has data we have not read yet: its watermark must keep holding.
      clock.last_activity = now;
      clock.idle = false;
      continue;
    }
    clock.idle = now - *clock.last_activity >= settings_.idle_timeout;
  }
  return recompute(now);
}

EventTime WatermarkTracker::partition_watermark(PartitionId partition) const {
  const PartitionClock* clock = find_clock(partition);
  if (clock == nullptr || clock->max_event_time == kMinEventTime) return kMinEventTime;
  return clock->max_event_time - settings_.max_out_of_orderness;
}

bool WatermarkTracker::is_idle(PartitionId partition) const {
  const PartitionClock* clock = find_clock(partition);
  return clock != nullptr && clock->idle;
}

bool WatermarkTracker::recompute(std::optional<WallTime> now) {
  stale_ = false;
  if (partitions_.empty()) return false;
  EventTime candidate = kMaxEventTime;
  bool any_active = false;
  for (const auto& [partition, clock] : partitions_) {
    if (clock.idle) continue;
    any_active = true;
    candidate = std::min(candidate, partition_watermark(partition));
  }
  if (!any_active) {
    // All idle: nothing can arrive that the wall clock has not already passed (minus the
    // tolerated disorder), so let quiet windows close instead of waiting forever.
    if (!now) return false;
    candidate = std::chrono::floor<Millis>(*now) - settings_.max_out_of_orderness;
  }
  if (candidate <= pipeline_) return false;
  pipeline_ = candidate;
  return true;
}

void WatermarkTracker::snapshot(PartitionId partition, StateWriter& writer) const {
  std::string out;
  byte_codec::put_u8(out, kSnapshotVersion);
  if (partition == kGlobalPartition) {
    byte_codec::put_i64(out, to_epoch_ms(pipeline_));
    writer.put("pipeline", out);
    return;
  }
  byte_codec::put_i64(out, clock_ms(partition));
  writer.put("clock", out);
}

int64_t WatermarkTracker::clock_ms(PartitionId partition) const {
  const PartitionClock* clock = find_clock(partition);
  return to_epoch_ms(clock == nullptr ? kMinEventTime : clock->max_event_time);
}

void WatermarkTracker::restore_clock(PartitionId partition, int64_t ms) {
  PartitionClock& clock = clock_for(partition);
  clock.max_event_time = std::max(clock.max_event_time, from_epoch_ms(ms));
  stale_ = true;
}

Status WatermarkTracker::restore(PartitionId partition, StateReader& reader) {
  auto stored = reader.get(partition == kGlobalPartition ? "pipeline" : "clock");
  if (!stored) return tl::unexpected(stored.error());
  if (!*stored) {
    if (partition != kGlobalPartition) assign(partition);
    return {};
  }
  const char* key = partition == kGlobalPartition ? "pipeline" : "clock";
  byte_codec::Reader in(**stored);
  const uint8_t version = in.u8();
  if (in.ok() && version != kSnapshotVersion) {
    return unreadable_format(std::string("watermark tracker: state key '") + key + "'", version,
                             kSnapshotVersion, kSnapshotVersion);
  }
  const int64_t ms = in.i64();
  if (!in.done()) {
    return make_error(ErrorKind::fatal,
                      std::string("watermark tracker: corrupt state key '") + key + "'");
  }
  if (partition == kGlobalPartition) {
    pipeline_ = std::max(pipeline_, from_epoch_ms(ms));
    return {};
  }
  restore_clock(partition, ms);
  return {};
}

}  // namespace sp
