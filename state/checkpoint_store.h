#pragma once
// Durable byte store for checkpoints: RocksDB with one column family per concern. Everything a
// checkpoint writes (operator state, input offsets, pending output records) goes into ONE
// WriteBatch, so state and the offsets that produced it can never disagree after a crash.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
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
  Result<std::optional<std::string>> get(Column c, std::string_view key);
  Result<std::vector<std::pair<std::string, std::string>>> scan(Column c, std::string_view prefix);
  uint64_t approximate_bytes();
  // Test hook: the next `count` commits fail, by default with a retryable I/O error (a full disk);
  // with ErrorKind::fatal like corruption. Callable from another thread.
  void inject_write_failures(int count, ErrorKind kind = ErrorKind::retryable) {
    injected_kind_.store(kind);
    injected_failures_.store(count);
  }

 private:
  CheckpointStore() = default;
  rocksdb::ColumnFamilyHandle* handle(Column c) const;
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
};

}  // namespace sp
