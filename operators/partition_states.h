#pragma once
// Per-input-partition state of one owner (an operator or the WatermarkTracker).
#include <cstddef>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "operators/time.h"

namespace sp {

// PartitionIds below this are looked up by index; others (never seen from the runner) by the map.
// Defined once, in partition_states.cc (read only when a partition is first indexed).
extern const int32_t kMaxIndexedPartition;

// Contract: one T per PartitionId, iterated in PartitionId order (merges over partitions sum
// doubles in a fixed order: identical results on every run), found on the hot path by a vector
// index and a null check. Events of different partitions interleave, so a one-entry cache
// missed on most events; std::map nodes are stable, so the index holds pointers into them.
// Copies rebuild the index (it must point into the copy); moves keep it (the nodes move along).
template <typename T>
class PartitionStates {
 public:
  using Map = std::map<PartitionId, T>;

  PartitionStates() = default;
  PartitionStates(const PartitionStates& other) : states_(other.states_) { reindex(); }
  PartitionStates& operator=(const PartitionStates& other) {
    if (this != &other) {
      states_ = other.states_;
      reindex();
    }
    return *this;
  }
  PartitionStates(PartitionStates&&) noexcept = default;
  PartitionStates& operator=(PartitionStates&&) noexcept = default;

  // nullptr when the partition has no state.
  const T* find(PartitionId partition) const {
    if (const T* indexed = find_indexed(partition)) return indexed;
    auto it = states_.find(partition);
    return it == states_.end() ? nullptr : &it->second;
  }
  T* find(PartitionId partition) {
    return const_cast<T*>(static_cast<const PartitionStates&>(*this).find(partition));
  }
  bool contains(PartitionId partition) const { return find(partition) != nullptr; }

  // The hot path: the partition's state, created by make() (a T) on first use.
  template <typename Factory>
  T& get_or_create(PartitionId partition, Factory&& make) {
    if (T* indexed = find_indexed(partition)) return *indexed;
    return create_slow(partition, std::forward<Factory>(make));
  }
  T& get_or_create(PartitionId partition) {
    return get_or_create(partition, [] { return T{}; });
  }
  // Replaces the partition's state (restore).
  T& assign(PartitionId partition, T state) {
    auto it = states_.insert_or_assign(partition, std::move(state)).first;
    index(partition, &it->second);
    return it->second;
  }
  // Forgets the partition's state; false when it had none.
  bool erase(PartitionId partition) {
    const auto slot = static_cast<size_t>(partition.value);
    if (slot < by_id_.size()) by_id_[slot] = nullptr;  // before its map node goes away
    return states_.erase(partition) != 0;
  }
  void clear() {
    states_.clear();
    by_id_.clear();
  }

  // Incremental checkpoints (Operator::needs_snapshot / saved, issue #20), for a T with a
  // `bool unsaved` set wherever the partition's stored state goes stale.
  bool unsaved(PartitionId partition) const {
    const T* state = find(partition);
    return state != nullptr && state->unsaved;
  }
  void mark_all_saved() {
    for (auto& [partition, state] : states_) state.unsaved = false;
  }

  size_t size() const { return states_.size(); }
  bool empty() const { return states_.empty(); }
  // (PartitionId, T) pairs in PartitionId order.
  typename Map::iterator begin() { return states_.begin(); }
  typename Map::iterator end() { return states_.end(); }
  typename Map::const_iterator begin() const { return states_.begin(); }
  typename Map::const_iterator end() const { return states_.end(); }

 private:
  T* find_indexed(PartitionId partition) const {
    const auto slot = static_cast<size_t>(partition.value);  // negative ids: huge, not indexed
    return slot < by_id_.size() ? by_id_[slot] : nullptr;
  }
  // Out of line and cold: inlined, the map insertion made get_or_create too big to be inlined
  // itself (+20 instructions per event and owner under callgrind).
  template <typename Factory>
  [[gnu::noinline, gnu::cold]] T& create_slow(PartitionId partition, Factory&& make) {
    auto it = states_.find(partition);
    if (it == states_.end()) it = states_.emplace(partition, make()).first;
    index(partition, &it->second);
    return it->second;
  }
  void index(PartitionId partition, T* state) {
    if (partition.value < 0 || partition.value >= kMaxIndexedPartition) return;
    const auto slot = static_cast<size_t>(partition.value);
    if (by_id_.size() <= slot) by_id_.resize(slot + 1, nullptr);
    by_id_[slot] = state;
  }
  void reindex() {
    by_id_.clear();
    for (auto& [partition, state] : states_) index(partition, &state);
  }

  Map states_;
  std::vector<T*> by_id_;  // states_ nodes by PartitionId value; nullptr: not indexed (yet)
};

}  // namespace sp
