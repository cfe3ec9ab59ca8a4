#pragma once
// Back-pressure on the input partitions: pending output records over their limit and failing
// checkpoints pause all input (nothing consumed could be stored); state over its limit pauses
// only the partitions ahead of the pipeline watermark. A resumed partition is sought to the
// offset stored with its state.
#include <librdkafka/rdkafka.h>

#include <cstddef>

#include "operators/topology.h"
#include "pipeline/config.h"

namespace sp {

class ConsumerGroup;
class PartitionTable;
struct PartitionSlot;

// Contract: the pipeline thread makes every call; `topology` and `partitions` outlive it.
class Backpressure {
 public:
  // What apply() decides on.
  struct Load {
    size_t pending_records = 0;
    size_t state_bytes = 0;  // in memory, as of the last /metrics snapshot
    bool checkpoint_failing = false;
  };

  Backpressure(const LimitsConfig& limits, const Topology& topology, PartitionTable& partitions)
      : limits_(limits), topology_(topology), partitions_(partitions) {}

  // Once per poll loop iteration, nothing after stop(). True when paused() changed.
  bool apply(ConsumerGroup& consumer, const Load& load);
  // All input paused (a paused partition is never idle).
  bool paused() const { return paused_; }
  // In the rebalance callback, on a fresh assignment (which librdkafka never pauses): keeps the
  // decision in force, or a rebalance during a checkpoint failure would consume input that cannot
  // be stored.
  void keep_on_assign(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* partitions) const;
  // An owned partition left the PartitionTable; `state_paused`: remove() said the state limit had
  // paused it.
  void partition_removed(bool state_paused);
  // Shutdown: all input paused for good (nothing consumed after the final checkpoint is stored).
  void stop(ConsumerGroup& consumer);

 private:
  void align_on_state_limit(ConsumerGroup& consumer, size_t state_bytes);
  void seek_to_state(ConsumerGroup& consumer, const PartitionSlot& slot);

  const LimitsConfig limits_;
  const Topology& topology_;
  PartitionTable& partitions_;
  bool paused_ = false;
  bool stopped_ = false;
  size_t state_paused_ = 0;  // partitions paused by align_on_state_limit()
};

}  // namespace sp
