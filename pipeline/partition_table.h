#pragma once
// The Kafka side of the input partitions this instance owns: topic name and partition number,
// the PartitionId the Topology knows each by (topic index * 65536 + partition), its
// Topology::Partition, and whether the state limit paused it. The state lives in the Topology.
#include <librdkafka/rdkafka.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "operators/topology.h"
#include "pipeline/kafka.h"

namespace sp {

struct PartitionSlot {
  std::string topic;
  int32_t partition = 0;
  Topology::Partition* state = nullptr;
  bool state_paused = false;  // ahead of the pipeline watermark while state is over its limit
};

// Contract: one thread; a slot's address is stable until remove(); iteration in PartitionId order.
class PartitionTable {
 public:
  using Slots = std::map<int32_t, PartitionSlot>;  // by PartitionId: deterministic snapshot order

  // `topics`: the subscription, in configuration order (it numbers the PartitionIds).
  explicit PartitionTable(std::vector<std::string> topics) : topics_(std::move(topics)) {}

  // Nullopt for a topic outside the subscription.
  std::optional<PartitionId> id_of(const char* topic, int32_t partition) const;
  // Hot path, once per message (`topic`: librdkafka's name of the message's topic); null when
  // the partition is not owned.
  PartitionSlot* find(const char* topic, int32_t partition);
  PartitionSlot* find(PartitionId id);
  // Owns the partition from now on (one already owned keeps its slot).
  void add(PartitionId id, PartitionSlot slot);
  // Forgets the partition; true when the state limit had paused it.
  bool remove(PartitionId id);

  // For librdkafka: every owned partition; with `at_stored_offset`, those with a stored offset,
  // at that offset (the next to consume).
  KafkaPartitionList list(bool at_stored_offset) const;
  // `slot` alone; with `at_stored_offset` at its stored offset, which it must have.
  static KafkaPartitionList list(const PartitionSlot& slot, bool at_stored_offset);

  size_t size() const { return slots_.size(); }
  bool empty() const { return slots_.empty(); }
  Slots::iterator begin() { return slots_.begin(); }
  Slots::iterator end() { return slots_.end(); }
  Slots::const_iterator begin() const { return slots_.begin(); }
  Slots::const_iterator end() const { return slots_.end(); }

 private:
  std::optional<size_t> topic_index(const char* topic) const;

  const std::vector<std::string> topics_;
  Slots slots_;
  const char* last_topic_name_ = nullptr;  // find() cache
  size_t last_topic_index_ = 0;
};

}  // namespace sp
