#include "state/checkpoint_store.h"

#include <pthread.h>
#include <rocksdb/db.h>
#include <rocksdb/iostats_context.h>
#include <rocksdb/options.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

namespace sp {
namespace {
const std::vector<std::string> kColumnNames = {rocksdb::kDefaultColumnFamilyName, "state",
                                               "outbox"};

tl::unexpected<Error> from_status(const rocksdb::Status& s, std::string_view what) {
  // I/O trouble (disk full included) can clear up; corruption or misuse cannot.
  const bool retryable = s.IsIOError() || s.IsBusy() || s.IsTimedOut() || s.IsTryAgain();
  return make_error(retryable ? ErrorKind::retryable : ErrorKind::fatal,
                    std::string(what) + ": " + s.ToString());
}
}  // namespace

CheckpointStore::Batch::Batch() = default;
CheckpointStore::Batch::Batch(CheckpointStore* store) : store_(store) {
  {
    std::lock_guard lock(store->spare_mu_);
    batch_ = std::move(store->spare_);
  }
  // Sized like the last committed batch: growing a multi-MB batch by doubling copied it several
  // times per checkpoint (a quarter of the runner thread in bench_e2e).
  if (!batch_) {
    batch_ = std::make_unique<rocksdb::WriteBatch>(store->last_batch_bytes_ +
                                                   store->last_batch_bytes_ / 8);
  }
}
CheckpointStore::Batch::~Batch() { recycle(); }
CheckpointStore::Batch::Batch(Batch&&) noexcept = default;
CheckpointStore::Batch& CheckpointStore::Batch::operator=(Batch&& other) noexcept {
  if (this != &other) {
    recycle();
    store_ = other.store_;
    batch_ = std::move(other.batch_);
  }
  return *this;
}

void CheckpointStore::Batch::recycle() {
  if (!batch_ || store_ == nullptr) return;
  if (batch_->GetDataSize() > (size_t{64} << 20)) return;  // an outlier: not kept around
  batch_->Clear();                                         // keeps the buffer's capacity
  std::lock_guard lock(store_->spare_mu_);
  store_->spare_ = std::move(batch_);
}

// A WriteBatch without max_bytes refuses only keys or values over 4 GiB: checkpoints have none.
void CheckpointStore::Batch::put(Column c, std::string_view key, std::string_view value) {
  (void)batch_->Put(store_->handle(c), rocksdb::Slice(key.data(), key.size()),
                    rocksdb::Slice(value.data(), value.size()));
}

void CheckpointStore::Batch::remove(Column c, std::string_view key) {
  (void)batch_->Delete(store_->handle(c), rocksdb::Slice(key.data(), key.size()));
}

size_t CheckpointStore::Batch::count() const { return batch_->Count(); }
size_t CheckpointStore::Batch::data_bytes() const { return batch_->GetDataSize(); }

Result<std::unique_ptr<CheckpointStore>> CheckpointStore::open(const std::string& path, bool sync) {
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  // A restart after kill -9 replays every live WAL file. The meta column takes a few bytes per
  // checkpoint and the outbox hardly any: their memtables never fill, so by default each WAL
  // stayed live until RocksDB's own bound (4 x every memtable: ~1.1 GiB here), reached in minutes
  // under load, and a restart then replayed all of it (seconds; SPEC 9: ready <= 2 s). Past this
  // bound the columns that hold the oldest WAL are flushed and it is deleted.
  db_options.max_total_wal_size = kMaxTotalWalBytes;
  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.OptimizeLevelStyleCompaction(64 << 20);
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& name : kColumnNames) descriptors.emplace_back(name, cf_options);
  std::unique_ptr<CheckpointStore> store(new CheckpointStore());
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, path, descriptors, &store->handles_, &raw);
  if (!s.ok()) {
    // A lock held by another live process is an operator mistake, not a transient condition.
    return make_error(ErrorKind::fatal, "state store open " + path + ": " + s.ToString());
  }
  store->db_.reset(raw);
  store->sync_ = sync;
  return store;
}

CheckpointStore::~CheckpointStore() {
  stop_sync_thread();  // syncs what was written and not yet synced, then the DB can close
  // Nothing to do about a failed close here: every committed batch is in the WAL already, and
  // the next open recovers from it.
  for (auto* h : handles_) {
    if (db_) (void)db_->DestroyColumnFamilyHandle(h);
  }
  if (db_) (void)db_->Close();
}

rocksdb::ColumnFamilyHandle* CheckpointStore::handle(Column c) const {
  return handles_[static_cast<size_t>(c)];
}

Status CheckpointStore::commit(Batch& batch) { return apply(batch, sync_); }

Status CheckpointStore::write(Batch& batch) { return apply(batch, false); }

Status CheckpointStore::apply(Batch& batch, bool sync) {
  if (injected_failures_.load() > 0) {
    --injected_failures_;
    if (injected_kind_.load() == ErrorKind::fatal) {
      return from_status(rocksdb::Status::Corruption("injected: corrupted write-ahead log"),
                         "checkpoint commit");
    }
    return from_status(rocksdb::Status::NoSpace("injected: no space left on device"),
                       "checkpoint commit");
  }
  rocksdb::WriteOptions options;
  options.sync = sync;
  rocksdb::Status s = db_->Write(options, batch.batch_.get());
  if (!s.ok()) return from_status(s, "checkpoint commit");
  last_batch_bytes_ = batch.batch_->GetDataSize();
  return {};
}

uint64_t CheckpointStore::sync_async() {
  std::lock_guard lock(sync_mu_);
  const uint64_t ticket = ++sync_requested_;
  if (!sync_) {
    sync_done_ = ticket;
    return ticket;
  }
  if (!sync_thread_.joinable()) {
    sync_thread_ = std::thread([this] {
#if defined(__linux__)
      (void)pthread_setname_np(pthread_self(), "sp-sync");  // for top -H and perf
#endif
      sync_loop();
    });
  }
  sync_cv_.notify_all();
  return ticket;
}

std::optional<Status> CheckpointStore::sync_result(uint64_t ticket) {
  return wait_synced(ticket, Deadline::min());
}

std::optional<Status> CheckpointStore::wait_synced(uint64_t ticket, Deadline deadline) {
  std::unique_lock lock(sync_mu_);
  if (!sync_cv_.wait_until(lock, deadline, [&] { return ticket <= sync_done_; })) {
    return std::nullopt;
  }
  if (sync_error_) return Status(tl::unexpected(*sync_error_));
  return Status{};
}

void CheckpointStore::hold_syncs(bool hold) {
  std::lock_guard lock(sync_mu_);
  sync_hold_ = hold;
  sync_cv_.notify_all();
}

void CheckpointStore::fail_next_sync() {
  std::lock_guard lock(sync_mu_);
  sync_fail_next_ = true;
}

// One fsync covers every batch written before it: requests that pile up while a sync runs are
// answered together by the next.
void CheckpointStore::sync_loop() {
  std::unique_lock lock(sync_mu_);
  for (;;) {
    sync_cv_.wait(lock, [&] {
      return sync_done_ < sync_requested_ ? (sync_stop_ || !sync_hold_) : sync_stop_;
    });
    if (sync_done_ == sync_requested_) return;  // stopping, nothing outstanding
    const uint64_t upto = sync_requested_;
    const bool fail = std::exchange(sync_fail_next_, false);
    lock.unlock();
    rocksdb::Status s;
    if (fail) {
      s = rocksdb::Status::IOError("injected: fsync failed");
    } else {
      rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableTimeExceptForMutex);
      rocksdb::get_iostats_context()->Reset();
      s = db_->SyncWAL();
      sync_fsync_nanos_ += rocksdb::get_iostats_context()->fsync_nanos;
      rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
    }
    lock.lock();
    // A WAL that could not be synced may have lost writes the store already acknowledged: the
    // store is failed from here on (RocksDB refuses further writes too).
    if (!s.ok() && !sync_error_) {
      sync_error_ = Error{ErrorKind::fatal, "checkpoint sync: " + s.ToString()};
    }
    sync_done_ = upto;
    sync_cv_.notify_all();
  }
}

void CheckpointStore::stop_sync_thread() {
  {
    std::lock_guard lock(sync_mu_);
    sync_stop_ = true;
    sync_cv_.notify_all();
  }
  if (sync_thread_.joinable()) sync_thread_.join();
}

Result<std::optional<std::string>> CheckpointStore::get(Column c, std::string_view key) {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), handle(c), rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return from_status(s, "state read");
  return std::optional<std::string>(std::move(value));
}

Result<std::vector<std::pair<std::string, std::string>>> CheckpointStore::scan(
    Column c, std::string_view prefix) {
  std::vector<std::pair<std::string, std::string>> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handle(c)));
  for (it->Seek(rocksdb::Slice(prefix.data(), prefix.size())); it->Valid(); it->Next()) {
    rocksdb::Slice k = it->key();
    if (!k.starts_with(rocksdb::Slice(prefix.data(), prefix.size()))) break;
    out.emplace_back(k.ToString(), it->value().ToString());
  }
  if (!it->status().ok()) return from_status(it->status(), "state scan");
  return out;
}

uint64_t CheckpointStore::approximate_bytes() {
  uint64_t total = 0;
  for (auto* h : handles_) {
    uint64_t v = 0;
    if (db_->GetIntProperty(h, "rocksdb.estimate-live-data-size", &v)) total += v;
    if (db_->GetIntProperty(h, "rocksdb.cur-size-all-mem-tables", &v)) total += v;
  }
  return total;
}

}  // namespace sp
