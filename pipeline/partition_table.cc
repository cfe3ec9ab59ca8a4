#include "pipeline/partition_table.h"

namespace sp {
namespace {

PartitionId make_partition_id(size_t topic_index, int32_t partition) {
  return PartitionId{static_cast<int32_t>(topic_index) * 65536 + partition};
}

}  // namespace

std::optional<size_t> PartitionTable::topic_index(const char* topic) const {
  for (size_t t = 0; t < topics_.size(); ++t) {
    if (topics_[t] == topic) return t;
  }
  return std::nullopt;
}

std::optional<PartitionId> PartitionTable::id_of(const char* topic, int32_t partition) const {
  const auto t = topic_index(topic);
  if (!t) return std::nullopt;
  return make_partition_id(*t, partition);
}

PartitionSlot* PartitionTable::find(const char* topic, int32_t partition) {
  // librdkafka hands out one name pointer per topic handle: skip the string compares per message.
  if (topic != last_topic_name_) {
    const auto t = topic_index(topic);
    if (!t) return nullptr;
    last_topic_name_ = topic;
    last_topic_index_ = *t;
  }
  auto it = slots_.find(make_partition_id(last_topic_index_, partition).value);
  return it == slots_.end() ? nullptr : &it->second;
}

PartitionSlot* PartitionTable::find(PartitionId id) {
  auto it = slots_.find(id.value);
  return it == slots_.end() ? nullptr : &it->second;
}

void PartitionTable::add(PartitionId id, PartitionSlot slot) {
  slots_.emplace(id.value, std::move(slot));
}

bool PartitionTable::remove(PartitionId id) {
  auto it = slots_.find(id.value);
  if (it == slots_.end()) return false;
  const bool state_paused = it->second.state_paused;
  slots_.erase(it);
  return state_paused;
}

KafkaPartitionList PartitionTable::list(bool at_stored_offset) const {
  KafkaPartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(slots_.size())));
  for (const auto& [id, slot] : slots_) {
    if (at_stored_offset && !slot.state->next_offset) continue;
    auto* tp = rd_kafka_topic_partition_list_add(list.get(), slot.topic.c_str(), slot.partition);
    if (at_stored_offset) tp->offset = slot.state->next_offset->value;
  }
  return list;
}

KafkaPartitionList PartitionTable::list(const PartitionSlot& slot, bool at_stored_offset) {
  KafkaPartitionList one(rd_kafka_topic_partition_list_new(1));
  auto* tp = rd_kafka_topic_partition_list_add(one.get(), slot.topic.c_str(), slot.partition);
  if (at_stored_offset) tp->offset = slot.state->next_offset->value;
  return one;
}

}  // namespace sp
