#pragma once
// The pipeline runner: owns the consumer-group poll loop, time (watermarks, idleness),
// partitions (assignment, restore, revocation), checkpoints (state + offsets + pending output in
// one RocksDB WriteBatch), output production after commit, back-pressure and graceful shutdown.
// Operators see only events, watermarks and snapshot requests.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "pipeline/config.h"

namespace sp {

class HttpServer;
class CheckpointStore;

// Seams for fault-injection tests only (production leaves them empty): lets a test reach the
// runner's store, e.g. to make checkpoint writes fail like a full disk.
struct RunnerTestHooks {
  std::function<void(CheckpointStore&)> on_store_open;
  // Benchmarks (bench_recovery): time spent restoring the partitions of one assignment (store
  // reads + operator restore; the group join is not in it), and the total consumed count after
  // each committed checkpoint. Called on the runner thread.
  std::function<void(std::chrono::steady_clock::duration, size_t partitions)>
      on_partitions_restored;
  std::function<void(uint64_t consumed)> on_checkpoint_committed;
  // Benchmarks (bench_e2e): messages handed to the pipeline thread so far, after each batch.
  std::function<void(uint64_t messages)> on_batch_processed;
  // Benchmarks (bench_e2e --changelog-ab): no state changelog, to measure its cost against the
  // same build in one run. Not a product setting: without it a partition cannot move with its
  // state (a new owner would start empty).
  bool without_changelog = false;
  // Benchmarks (bench_e2e --changelog-lanes): the changelog's producers, instead of
  // kChangelogLanes (0: that default).
  size_t changelog_lanes = 0;
  // Tests: the fewest unwritten dedup ids the runner writes ahead of a checkpoint (1: whenever
  // there is one), instead of its default.
  std::optional<size_t> write_ahead_min_ids;
  // Called on the runner thread once a write-ahead batch is written, with its partition count.
  std::function<void(size_t partitions)> on_write_ahead;
};

class Runner {
 public:
  // `bootstrap_servers` is the resolved address (never "embedded").
  static Result<std::unique_ptr<Runner>> create(const Config& config,
                                                const std::string& bootstrap_servers,
                                                HttpServer* http,
                                                const RunnerTestHooks& hooks = {});
  virtual ~Runner() = default;
  // Runs until `stop` becomes true (graceful: checkpoint, flush, commit, leave; ok) or a
  // non-retryable error (returned).
  virtual Status run(const std::atomic<bool>& stop) = 0;
  // Thread-safe (SIGHUP reload): the spend and currency /metrics shows from the next checkpoint.
  virtual void replace_spend(SpendValues values) = 0;
};

}  // namespace sp
