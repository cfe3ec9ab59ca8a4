#pragma once
// Durable byte store for checkpoints: RocksDB with one column family per concern. Everything a
// checkpoint writes (operator state, input offsets, pending output records) goes into ONE
// WriteBatch, so state and the offsets that produced it can never disagree after a crash.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "base/result.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class WriteBatch;
}  // namespace rocksdb

namespace sp {

// The RocksDB column family a key lives in: `Column`, so that `Family` keeps its one meaning in
// this code base (a Prometheus metric family, pipeline/).
enum class Column : int { meta = 0, state = 1, outbox = 2 };

// The live write-ahead log a restart replays stays about this size (checkpoint_store.cc).
inline constexpr uint64_t kMaxTotalWalBytes = uint64_t{64} << 20;

class CheckpointStore {
 public:
  class Batch {
   public:
    Batch();
    ~Batch();
    Batch(Batch&&) noexcept;
    Batch& operator=(Batch&&) noexcept;
    void put(Column c, std::string_view key, std::string_view value);
    void remove(Column c, std::string_view key);
    size_t count() const;
    size_t data_bytes() const;

   private:
    friend class CheckpointStore;
    explicit Batch(CheckpointStore* store);
    void recycle();  // hands the cleared batch back to the store for the next one
    CheckpointStore* store_ = nullptr;
    std::unique_ptr<rocksdb::WriteBatch> batch_;
  };

  // `sync`: each commit returns only once its batch is on stable storage (fsync of the WAL), so
  // that nothing exposed from a checkpoint can be lost to a power cut or kernel crash; without
  // it, only to those (kill -9 is safe either way).
  static Result<std::unique_ptr<CheckpointStore>> open(const std::string& path, bool sync = true);
  ~CheckpointStore();
  CheckpointStore(const CheckpointStore&) = delete;
  CheckpointStore& operator=(const CheckpointStore&) = delete;

  Batch batch() { return Batch(this); }
  // Atomic; an I/O error is retryable unless the DB went read-only (fatal).
  Status commit(Batch& batch);

  // A commit in two steps, so that the thread that builds checkpoints does not wait for the disk
  // (issue #20): write() applies the batch like commit() but returns before it is on stable
  // storage (a killed process keeps it, a power cut may not); sync_async() then has the store's
  // sync thread make everything written so far durable, and returns the ticket to ask about.
  // Without `sync` every ticket is durable at once (as commit() does not sync either).
  Status write(Batch& batch);
  uint64_t sync_async();
  using Deadline = std::chrono::steady_clock::time_point;
  // The outcome of a ticket's sync; nullopt while it runs (and, for wait_synced, at the
  // deadline). A failed sync leaves the store failed: every later ticket fails too.
  std::optional<Status> sync_result(uint64_t ticket);
  std::optional<Status> wait_synced(uint64_t ticket, Deadline deadline);
  // Time the sync thread spent in fsync/fdatasync so far (tests and diagnostics).
  uint64_t sync_thread_fsync_nanos() const { return sync_fsync_nanos_.load(); }
  Result<std::optional<std::string>> get(Column c, std::string_view key);
  Result<std::vector<std::pair<std::string, std::string>>> scan(Column c, std::string_view prefix);
  uint64_t approximate_bytes();
  // Test hook: the next `count` commits fail, by default with a retryable I/O error (a full disk);
  // with ErrorKind::fatal like corruption. Callable from another thread.
  void inject_write_failures(int count, ErrorKind kind = ErrorKind::retryable) {
    injected_kind_.store(kind);
    injected_failures_.store(count);
  }
  // Test hooks for the sync thread: hold_syncs(true) keeps every sync waiting until
  // hold_syncs(false) (a slow disk); fail_next_sync() makes the next one fail like an fsync
  // error.
  void hold_syncs(bool hold);
  void fail_next_sync();

 private:
  CheckpointStore() = default;
  rocksdb::ColumnFamilyHandle* handle(Column c) const;
  Status apply(Batch& batch, bool sync);
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  size_t last_batch_bytes_ = 0;  // reservation for the next batch
  // The last finished batch, cleared, for the next one: its buffer keeps its capacity, where a
  // fresh multi-MB buffer each checkpoint took page faults on every page (issue #20).
  std::mutex spare_mu_;
  std::unique_ptr<rocksdb::WriteBatch> spare_;
  bool sync_ = true;
  std::atomic<int> injected_failures_{0};
  std::atomic<ErrorKind> injected_kind_{ErrorKind::retryable};

  void sync_loop();
  void stop_sync_thread();
  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  std::thread sync_thread_;      // started by the first sync_async() of a syncing store
  uint64_t sync_requested_ = 0;  // tickets handed out
  uint64_t sync_done_ = 0;       // every ticket up to this one has its outcome
  std::optional<Error> sync_error_;
  bool sync_hold_ = false;
  bool sync_fail_next_ = false;
  bool sync_stop_ = false;
  std::atomic<uint64_t> sync_fsync_nanos_{0};
};

}  // namespace sp
