#pragma once
// Event-time watermarks (SPEC 3) for the partitions this instance owns.
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "operators/keyed_state.h"
#include "operators/partition_states.h"
#include "operators/settings.h"
#include "operators/time.h"

namespace sp {

// Wall-clock instant. Always passed in by the caller (the runner's clock, or a virtual clock in
// tests); the tracker never reads a clock itself.

// Contract: per-partition watermark = max event time seen - max_out_of_orderness; pipeline
// watermark = min over assigned, non-idle partitions, and never decreases.
//
// Idleness: a partition is idle once idle_timeout has passed without a message while it had no lag
// (time spent lagging or paused restarts the timer, so such a partition is never idle). A freshly
// assigned or restored partition starts its timer at the first observe/update_idle after
// assignment. When every assigned partition is idle, the pipeline watermark follows the wall clock
// to now - max_out_of_orderness, so windows of a quiet stream still close (Flink would stall here).
// A partition that wakes up below the pipeline watermark does not pull it back; its events for
// already closed windows are late.
class WatermarkTracker {
 public:
  explicit WatermarkTracker(WatermarkSettings settings);

  void assign(PartitionId partition);
  // Returns true when the pipeline watermark advanced (the revoked partition was holding it back).
  bool revoke(PartitionId partition);

  // Every consumed message of the partition (also the ones whose event is rejected later: they
  // prove the partition is alive). Returns true when the pipeline watermark advanced.
  // Observing an unassigned partition assigns it.
  bool observe(PartitionId partition, EventTime event_time, WallTime now);
  bool observe_activity(PartitionId partition, WallTime now);  // a message without a usable time
  // Re-evaluates idleness; has_lag(p) is true while p has unread messages or is paused.
  // Returns true when the pipeline watermark advanced.
  bool update_idle(WallTime now, const std::function<bool(PartitionId)>& has_lag);

  // kMinEventTime until the partition has seen an event.
  EventTime partition_watermark(PartitionId partition) const;
  // kMinEventTime until known.
  EventTime pipeline_watermark() const { return pipeline_; }
  bool is_idle(PartitionId partition) const;
  bool is_assigned(PartitionId partition) const { return partitions_.contains(partition); }

  // The keyed state contract (keyed_state.h): per partition its max event time (`clock`); under
  // kGlobalPartition the pipeline watermark (`pipeline`). Restoring a partition assigns it.
  void snapshot(PartitionId partition, StateWriter& out) const;
  Status restore(PartitionId partition, StateReader& in);
  // A partition's clock without a key of its own (the Topology stores it in the partition's
  // position key): its max event time in epoch ms, and restoring that (assigns the partition).
  int64_t clock_ms(PartitionId partition) const;
  void restore_clock(PartitionId partition, int64_t ms);

 private:
  struct PartitionClock {
    EventTime max_event_time = kMinEventTime;
    std::optional<WallTime> last_activity;  // unset until first seen after assignment
    bool idle = false;
  };
  bool recompute(std::optional<WallTime> now);
  PartitionClock& clock_for(PartitionId partition);  // creates (assigns) when absent
  const PartitionClock* find_clock(PartitionId partition) const;

  WatermarkSettings settings_;
  // observe() and partition_watermark() run for every message: indexed lookups.
  PartitionStates<PartitionClock> partitions_;
  EventTime pipeline_ = kMinEventTime;
  bool stale_ = false;  // assign/restore changed a partition without recomputing the minimum
};

}  // namespace sp
