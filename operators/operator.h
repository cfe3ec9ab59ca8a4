#pragma once
// The operator contract (STYLE: Arroyo/Flink style). The runner owns time, partitions, threading
// and storage; an operator owns only its logic and its in-memory state, kept per input partition
// so that a partition's state and offsets can be checkpointed and moved together.
#include <string>
#include <string_view>

#include "base/result.h"
#include "operators/derived.h"
#include "operators/event.h"
#include "operators/keyed_state.h"
#include "operators/metrics_writer.h"
#include "operators/time.h"

namespace sp {

struct OutputRecord {
  enum class Topic { windows, alerts };
  Topic topic = Topic::windows;
  std::string key;
  std::string value;  // deterministic JSON (SPEC 5): byte-identical when re-sent
};

class Emitter {
 public:
  virtual ~Emitter() = default;
  virtual void emit(OutputRecord record) = 0;
};

struct ProcessContext {
  PartitionId partition;
  EventTime pipeline_watermark;   // min over non-idle partitions (kMinEventTime before any)
  EventTime partition_watermark;  // this partition's own watermark before this event
  Derived derived;                // the event's SPEC 2 quantities, for every operator alike
};

// The one way to build an event's context: its derived quantities are computed here, once per
// event, instead of by each operator (four of them need them). Topology::process, and the tests
// and benchmarks that drive operators directly, all call it.
inline ProcessContext make_process_context(PartitionId partition, EventTime pipeline_watermark,
                                           EventTime partition_watermark, const Event& event,
                                           const KpiSettings& kpi, const EmvSettings& emv) {
  return {partition, pipeline_watermark, partition_watermark, derive(event, kpi, emv)};
}

class Operator {
 public:
  virtual ~Operator() = default;
  virtual std::string_view name() const = 0;
  // Hot path: no allocation where avoidable, no I/O, no locks.
  virtual void process(const ProcessContext& ctx, const Event& event) = 0;
  // The caller's wall clock, just before each on_watermark: operators that tell live output from
  // replayed history (the spike detector's alerts.max_lag) read it; the others ignore it.
  virtual void on_wall_clock(WallTime /*now*/) {}
  // The pipeline watermark advanced (monotonic): close and emit what is due.
  virtual void on_watermark(EventTime /*watermark*/, Emitter& /*out*/) {}
  // Just before a checkpoint is written: `update`-mode operators emit open windows here.
  virtual void on_checkpoint(Emitter& /*out*/) {}
  // Writes the state of one partition (or kGlobalPartition) as named keys (keyed_state.h):
  // deterministic values, keys that name brands/channels/types, stale keys removed. `out` is
  // scoped to this operator and partition.
  virtual void snapshot(PartitionId /*partition*/, StateWriter& /*out*/) const {}
  // Replaces the partition's state with what `in` holds (nothing: empty state). Keys of brands,
  // channels or types the configuration no longer has are dropped through in.drop().
  virtual Status restore(PartitionId /*partition*/, StateReader& /*in*/) { return {}; }
  // Incremental checkpoints (issue #20): whether snapshot(partition) must be written in this
  // checkpoint. `touched`: the partition had input, or the watermark advanced, since the last
  // committed checkpoint; operators that do not track their changes write then (the default).
  virtual bool needs_snapshot(PartitionId /*partition*/, bool touched) const { return touched; }
  // The checkpoint holding every snapshot() written since the last call was committed.
  virtual void saved() {}
  // The partition was revoked (after its final checkpoint): forget its state.
  virtual void drop(PartitionId /*partition*/) {}
  // Describe exported metrics from current state (called at checkpoint time).
  virtual void collect(MetricsWriter& /*out*/) const {}
  // Approximate in-memory state size, for back-pressure and socialpulse_state_bytes.
  virtual size_t state_bytes() const { return 0; }
};

}  // namespace sp
