#include "pipeline/backpressure.h"

#include <spdlog/spdlog.h>

#include "pipeline/consumer_group.h"
#include "pipeline/partition_table.h"

namespace sp {

bool Backpressure::apply(ConsumerGroup& consumer, const Load& load) {
  if (stopped_) return false;
  // Pending records and failing checkpoints stop all input: nothing consumed could be stored.
  const bool over = load.pending_records > limits_.max_pending_records || load.checkpoint_failing;
  const bool changed = over != paused_;
  if (changed) {
    consumer.set_paused(partitions_.list(false).get(), over);
    if (over) {
      spdlog::warn("msg=\"input paused\" pending_records={} state_bytes={} checkpoint_failing={}",
                   load.pending_records, load.state_bytes, load.checkpoint_failing);
    } else {
      // Re-seek: resume must continue exactly after the last offset in state.
      for (auto& [id, slot] : partitions_) {
        seek_to_state(consumer, slot);
        slot.state_paused = false;  // resumed with the rest; re-decided below
      }
      state_paused_ = 0;
      spdlog::info("msg=\"input resumed\"");
    }
    paused_ = over;
  }
  if (!paused_) align_on_state_limit(consumer, load.state_bytes);
  return changed;
}

void Backpressure::keep_on_assign(rd_kafka_t* rk,
                                  rd_kafka_topic_partition_list_t* partitions) const {
  // Neither call fails as a whole (per-partition errors stay in the list: nothing to act on).
  if (paused_) {
    (void)rd_kafka_pause_partitions(rk, partitions);
  } else {
    // A pause survives an unassign in librdkafka.
    (void)rd_kafka_resume_partitions(rk, partitions);
  }
}

void Backpressure::partition_removed(bool state_paused) {
  if (state_paused) --state_paused_;
}

void Backpressure::stop(ConsumerGroup& consumer) {
  consumer.set_paused(partitions_.list(false).get(), true);
  paused_ = true;
  stopped_ = true;
}

// Over max_state_bytes, pausing everything stalled for good: state shrinks only when windows
// close, which needs the watermark to move, which needs input (a paused partition is never
// idle). Like Flink's watermark alignment, pause only the partitions ahead of the pipeline
// watermark and let the slowest catch up; below the limit, resume them all.
void Backpressure::align_on_state_limit(ConsumerGroup& consumer, size_t state_bytes) {
  const bool over = state_bytes > limits_.max_state_bytes;
  if (!over && state_paused_ == 0) return;
  const EventTime wm = topology_.watermark();
  size_t paused = 0, resumed = 0;
  for (auto& [id, slot] : partitions_) {
    const bool ahead = over && topology_.partition_watermark(slot.state->id) > wm;
    if (ahead == slot.state_paused) continue;
    consumer.set_paused(PartitionTable::list(slot, false).get(), ahead);
    if (ahead) {
      ++state_paused_;
      ++paused;
    } else {
      seek_to_state(consumer, slot);
      --state_paused_;
      ++resumed;
    }
    slot.state_paused = ahead;
  }
  if (paused > 0 || resumed > 0) {
    spdlog::info(
        "msg=\"state limit: partitions ahead of the watermark paused\" paused={} resumed={} "
        "now_paused={} state_bytes={} limit={}",
        paused, resumed, state_paused_, state_bytes, limits_.max_state_bytes);
  }
}

void Backpressure::seek_to_state(ConsumerGroup& consumer, const PartitionSlot& slot) {
  if (!slot.state->next_offset) return;
  consumer.seek(PartitionTable::list(slot, true).get());
}

}  // namespace sp
