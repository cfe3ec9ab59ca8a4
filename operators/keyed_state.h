#pragma once
// The keyed state contract: every stateful owner (each operator, the Deduplicator, the
// WatermarkTracker) checkpoints its state as named keys through a StateWriter and restores it
// through a StateReader. Keys are relative to the owner's scope (owner name + partition, added by
// the caller: see state_scope()), and name brands, channels, windows and types by name, never by
// their position in a configured list, so a restart under a changed configuration maps every key
// it still knows and drops, visibly, the ones it no longer does.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "operators/time.h"

namespace sp {

// What a dropped key belonged to: the label of socialpulse_state_dropped_keys_total{kind}.
enum class DroppedKind { brand, channel, window, type };
std::string_view to_string(DroppedKind kind);

class StateWriter {
 public:
  virtual ~StateWriter() = default;
  virtual void put(std::string_view key, std::string_view value) = 0;
  virtual void remove(std::string_view key) = 0;
};

class StateReader {
 public:
  virtual ~StateReader() = default;
  using Visitor = std::function<Status(std::string_view key, std::string_view value)>;
  virtual Result<std::optional<std::string>> get(std::string_view key) = 0;
  // Every key starting with `prefix`, in ascending byte order; stops at the first error.
  virtual Status scan(std::string_view prefix, const Visitor& visit) = 0;
  // A stored key the configuration no longer has (`name`: the removed brand, channel, window or
  // type). The owner forgets it; the caller removes it from the store at the next checkpoint,
  // counts it and logs each removed name once.
  virtual void drop(std::string_view key, DroppedKind kind, std::string_view name) = 0;
  // Like drop() for an entry inside a value that the owner rewrites at the next checkpoint
  // anyway: counted and logged, no key removed.
  virtual void note_dropped(DroppedKind kind, std::string_view name) = 0;
};

// "<owner>/<partition as 8 hex digits>/", or "<owner>/global/" for kGlobalPartition: the one key
// schema of checkpointed state (the store adapter and the in-memory state both use it).
std::string state_scope(std::string_view owner, PartitionId partition);

// Writes / reads through another writer / reader under a fixed key prefix.
class ScopedStateWriter final : public StateWriter {
 public:
  ScopedStateWriter(StateWriter& inner, std::string prefix)
      : inner_(inner), prefix_(std::move(prefix)) {}
  void put(std::string_view key, std::string_view value) override;
  void remove(std::string_view key) override;

 private:
  StateWriter& inner_;
  std::string prefix_;
  std::string key_;  // reused: no allocation per key once grown
};

class ScopedStateReader final : public StateReader {
 public:
  ScopedStateReader(StateReader& inner, std::string prefix)
      : inner_(inner), prefix_(std::move(prefix)) {}
  Result<std::optional<std::string>> get(std::string_view key) override;
  Status scan(std::string_view prefix, const Visitor& visit) override;
  void drop(std::string_view key, DroppedKind kind, std::string_view name) override;
  void note_dropped(DroppedKind kind, std::string_view name) override {
    inner_.note_dropped(kind, name);
  }

 private:
  StateReader& inner_;
  std::string prefix_;
};

// Ordered in-memory state implementing both sides: the test driver, unit tests and benchmarks
// checkpoint into it exactly as the runner does into RocksDB.
class MemoryState final : public StateWriter, public StateReader {
 public:
  struct Dropped {
    std::string key;  // empty for note_dropped()
    DroppedKind kind;
    std::string name;
  };
  void put(std::string_view key, std::string_view value) override;
  void remove(std::string_view key) override;
  Result<std::optional<std::string>> get(std::string_view key) override;
  Status scan(std::string_view prefix, const Visitor& visit) override;
  // Records the drop and removes the key (as the store does at the next checkpoint).
  void drop(std::string_view key, DroppedKind kind, std::string_view name) override;
  void note_dropped(DroppedKind kind, std::string_view name) override;

  const std::map<std::string, std::string, std::less<>>& entries() const { return entries_; }
  const std::vector<Dropped>& dropped() const { return dropped_; }
  void clear_dropped() { dropped_.clear(); }

 private:
  std::map<std::string, std::string, std::less<>> entries_;
  std::vector<Dropped> dropped_;
};

}  // namespace sp
