#pragma once
// Checkpoint helpers for operator unit tests: an owner's state goes into a MemoryState under its
// scope (state_scope(owner, partition)) exactly as the runner writes it into RocksDB, so several
// owners and partitions can share one MemoryState.
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "operators/keyed_state.h"
#include "operators/operator.h"

namespace sp::testing {

inline void checkpoint_into(MemoryState& state, const Operator& op, PartitionId partition) {
  ScopedStateWriter out(state, state_scope(op.name(), partition));
  op.snapshot(partition, out);
}

inline Status restore_from(MemoryState& state, Operator& op, PartitionId partition) {
  ScopedStateReader in(state, state_scope(op.name(), partition));
  return op.restore(partition, in);
}

// Passes what an owner writes on to `store` and records it, in order, as "put <key>" and
// "remove <key>": which keys a checkpoint writes (issue #20: only those that changed).
class RecordingWriter final : public StateWriter {
 public:
  explicit RecordingWriter(MemoryState& store) : store_(store) {}
  void put(std::string_view key, std::string_view value) override {
    writes.push_back("put " + std::string(key));
    store_.put(key, value);
  }
  void remove(std::string_view key) override {
    writes.push_back("remove " + std::string(key));
    store_.remove(key);
  }
  bool wrote(std::string_view write) const {
    for (const std::string& w : writes) {
      if (w == write) return true;
    }
    return false;
  }
  std::vector<std::string> writes;

 private:
  MemoryState& store_;
};

// The entries of one scope (keys relative to it), for "same state" comparisons.
inline std::map<std::string, std::string> entries_under(const MemoryState& state,
                                                        std::string_view prefix) {
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : state.entries()) {
    if (std::string_view(key).substr(0, prefix.size()) == prefix) {
      out.emplace(key.substr(prefix.size()), value);
    }
  }
  return out;
}

// "kind:name" of every drop (drop() and note_dropped()), in report order.
inline std::vector<std::string> dropped_names(const MemoryState& state) {
  std::vector<std::string> out;
  for (const MemoryState::Dropped& d : state.dropped()) {
    out.push_back(std::string(to_string(d.kind)) + ":" + d.name);
  }
  return out;
}

// The keys removed through drop() (note_dropped() removes none), in report order.
inline std::vector<std::string> dropped_keys(const MemoryState& state) {
  std::vector<std::string> out;
  for (const MemoryState::Dropped& d : state.dropped()) {
    if (!d.key.empty()) out.push_back(d.key);
  }
  return out;
}

}  // namespace sp::testing
