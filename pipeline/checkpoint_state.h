#pragma once
// The keyed state contract (operators/keyed_state.h) over the RocksDB CheckpointStore: the one
// place that knows where checkpointed state lives (state keys in the `state` column family, the
// format version in `meta`) and that removes what a restore dropped.
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "operators/keyed_state.h"
#include "state/checkpoint_store.h"

namespace sp {

// Format of the stored state. 1: positional snapshots (before issue #14), refused with a message;
// 2: keys naming brands, channels, windows and types.
inline constexpr int kStateFormat = 2;

// Refuses a store written in another format (naming it and what to do).
Status check_state_format(CheckpointStore& store, const std::string& path);
// Every checkpoint records the format it writes (a store is versioned from its first commit on).
void mark_state_format(CheckpointStore::Batch& batch);

class StoreStateReader final : public StateReader {
 public:
  explicit StoreStateReader(CheckpointStore& store) : store_(store) {}
  Result<std::optional<std::string>> get(std::string_view key) override;
  Status scan(std::string_view prefix, const Visitor& visit) override;
  // Logs each dropped name once; the key is removed by the next write_drops().
  void drop(std::string_view key, DroppedKind kind, std::string_view name) override;
  void note_dropped(DroppedKind kind, std::string_view name) override;
  // Removes the keys dropped since the last call, in `batch`.
  void write_drops(CheckpointStore::Batch& batch);

 private:
  void log_once(DroppedKind kind, std::string_view name);
  CheckpointStore& store_;
  std::vector<std::string> dropped_keys_;
  std::set<std::pair<DroppedKind, std::string>> logged_;
};

class BatchStateWriter final : public StateWriter {
 public:
  explicit BatchStateWriter(CheckpointStore::Batch& batch) : batch_(batch) {}
  void put(std::string_view key, std::string_view value) override {
    batch_.put(Column::state, key, value);
  }
  void remove(std::string_view key) override { batch_.remove(Column::state, key); }

 private:
  CheckpointStore::Batch& batch_;
};

}  // namespace sp
