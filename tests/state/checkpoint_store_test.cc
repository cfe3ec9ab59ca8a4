#include "state/checkpoint_store.h"

#include <gtest/gtest.h>
#include <rocksdb/iostats_context.h>
#include <rocksdb/perf_level.h>

#include <chrono>
#include <filesystem>

#include "tests/support/test_support.h"

namespace sp {
namespace {

using namespace std::chrono_literals;

class CheckpointStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::make_temp_dir("sp-store"); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<CheckpointStore> open() {
    auto s = CheckpointStore::open(dir_);
    EXPECT_TRUE(s.has_value()) << (s ? "" : s.error().message);
    return s ? std::move(*s) : nullptr;
  }
  std::string dir_;
};

// Nanoseconds this thread spent in fsync/fdatasync during `store`'s commit (or, with
// `write_only`, write()) of one small batch.
uint64_t fsync_nanos_of_a_commit(CheckpointStore& store, bool write_only = false) {
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableTimeExceptForMutex);
  rocksdb::get_iostats_context()->Reset();
  auto batch = store.batch();
  batch.put(Column::state, "op/0001", "state-bytes");
  EXPECT_TRUE(write_only ? store.write(batch) : store.commit(batch));
  const uint64_t nanos = rocksdb::get_iostats_context()->fsync_nanos;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  return nanos;
}

// Issue 19 item 6 (state.sync): a commit is on stable storage when it returns, so a value
// exposed from that checkpoint cannot be rolled back by a power cut.
TEST_F(CheckpointStoreTest, CommitsAreFsyncedByDefaultAndNotWhenSyncIsOff) {
  {
    auto store = open();
    ASSERT_NE(store, nullptr);
    EXPECT_GT(fsync_nanos_of_a_commit(*store), 0u);
  }
  auto unsynced = CheckpointStore::open(dir_, false);
  ASSERT_TRUE(unsynced);
  EXPECT_EQ(fsync_nanos_of_a_commit(**unsynced), 0u);
}

// Writes one small batch without waiting for the disk.
bool write_one(CheckpointStore& store) {
  auto batch = store.batch();
  batch.put(Column::state, "op/0001", "state-bytes");
  return store.write(batch).has_value();
}

// Issue #20: write() returns before the fsync, which the store's sync thread does; a ticket
// says when a written batch is on stable storage.
TEST_F(CheckpointStoreTest, AWrittenBatchIsSyncedByTheSyncThreadAndItsTicketSaysWhen) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(fsync_nanos_of_a_commit(*store, true), 0u) << "write() waited for the disk";
  store->hold_syncs(true);  // a slow disk
  const uint64_t ticket = store->sync_async();
  EXPECT_FALSE(store->sync_result(ticket).has_value());
  EXPECT_FALSE(store->wait_synced(ticket, std::chrono::steady_clock::now() + 50ms).has_value());
  auto value = store->get(Column::state, "op/0001");  // readable before it is durable
  ASSERT_TRUE(value && *value);
  store->hold_syncs(false);
  auto synced = store->wait_synced(ticket, std::chrono::steady_clock::now() + 20s);
  ASSERT_TRUE(synced.has_value());
  EXPECT_TRUE(*synced);
  EXPECT_GT(store->sync_thread_fsync_nanos(), 0u);
  auto again = store->sync_result(ticket);
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(*again);
}

TEST_F(CheckpointStoreTest, WithoutSyncATicketIsDoneAtOnceAndNothingIsFsynced) {
  auto store = CheckpointStore::open(dir_, false);
  ASSERT_TRUE(store);
  ASSERT_TRUE(write_one(**store));
  auto done = (*store)->sync_result((*store)->sync_async());
  ASSERT_TRUE(done.has_value());
  EXPECT_TRUE(*done);
  EXPECT_EQ((*store)->sync_thread_fsync_nanos(), 0u);
}

TEST_F(CheckpointStoreTest, AFailedSyncFailsItsTicketAndEveryLaterOne) {
  auto store = open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(write_one(*store));
  store->fail_next_sync();
  auto failed = store->wait_synced(store->sync_async(), std::chrono::steady_clock::now() + 20s);
  ASSERT_TRUE(failed.has_value());
  ASSERT_FALSE(*failed);
  EXPECT_EQ(failed->error().kind, ErrorKind::fatal);
  EXPECT_NE(failed->error().message.find("checkpoint sync"), std::string::npos)
      << failed->error().message;
  auto later = store->wait_synced(store->sync_async(), std::chrono::steady_clock::now() + 20s);
  ASSERT_TRUE(later.has_value());
  EXPECT_FALSE(*later);
}

// Closing the store runs a sync still waiting (held or not) instead of hanging on it; the batch
// is there after reopening.
TEST_F(CheckpointStoreTest, ClosingWithASyncHeldReturnsAndKeepsTheBatch) {
  {
    auto store = open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(write_one(*store));
    store->hold_syncs(true);
    (void)store->sync_async();
  }  // must return: the held sync runs on close
  auto store = open();
  auto value = store->get(Column::state, "op/0001");
  ASSERT_TRUE(value && *value);
  EXPECT_EQ(**value, "state-bytes");
}

uint64_t wal_bytes(const std::string& dir) {
  uint64_t bytes = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    if (f.path().extension() == ".log") bytes += f.file_size();
  }
  return bytes;
}

// A restart replays every live WAL file: with checkpoints that touch the meta column each time
// (the input offsets) and the state column heavily, the WAL must not pile up until RocksDB's own
// bound (~1.1 GiB), which took a restart seconds. 192 MiB written in 1 MiB checkpoints.
TEST_F(CheckpointStoreTest, TheWriteAheadLogARestartReplaysStaysBounded) {
  auto opened = CheckpointStore::open(dir_, false);
  ASSERT_TRUE(opened);
  CheckpointStore& store = **opened;
  const std::string value(1 << 20, 'v');
  for (int i = 0; i < 192; ++i) {
    auto batch = store.batch();
    batch.put(Column::state, "op/" + std::to_string(i % 16), value);
    batch.put(Column::meta, "partition/0001", std::to_string(i));
    ASSERT_TRUE(store.commit(batch));
  }
  // Once the flushes that the bound started are done (background threads: a loaded machine may
  // lag behind the writes): the bound, plus the WAL written since the last flush was due.
  uint64_t live = 0;
  EXPECT_TRUE(testing::wait_until(
      [&] {
        live = wal_bytes(dir_);
        return live <= kMaxTotalWalBytes + (uint64_t{48} << 20);
      },
      std::chrono::seconds(20)))
      << "live WAL " << (live >> 20) << " MiB";
  auto last = store.get(Column::meta, "partition/0001");
  ASSERT_TRUE(last && *last);
  EXPECT_EQ(**last, "191");
}

TEST_F(CheckpointStoreTest, CommittedBatchSurvivesReopen) {
  {
    auto store = open();
    auto batch = store->batch();
    batch.put(Column::state, "op/0001", "state-bytes");
    batch.put(Column::meta, "partition/0001", "offset-42");
    batch.put(Column::outbox, "0000000000000001", "record");
    ASSERT_TRUE(store->commit(batch));
  }
  auto store = open();
  auto state = store->get(Column::state, "op/0001");
  ASSERT_TRUE(state && *state);
  EXPECT_EQ(**state, "state-bytes");
  auto meta = store->get(Column::meta, "partition/0001");
  ASSERT_TRUE(meta && *meta);
  EXPECT_EQ(**meta, "offset-42");
}

TEST_F(CheckpointStoreTest, FamiliesAreSeparateKeySpaces) {
  auto store = open();
  auto batch = store->batch();
  batch.put(Column::state, "k", "in-state");
  ASSERT_TRUE(store->commit(batch));
  auto meta = store->get(Column::meta, "k");
  ASSERT_TRUE(meta);
  EXPECT_FALSE(meta->has_value());
}

TEST_F(CheckpointStoreTest, ScanReturnsOnlyThePrefixInOrder) {
  auto store = open();
  auto batch = store->batch();
  batch.put(Column::outbox, "b2", "2");
  batch.put(Column::outbox, "a1", "x");
  batch.put(Column::outbox, "b1", "1");
  batch.put(Column::outbox, "c1", "y");
  ASSERT_TRUE(store->commit(batch));
  auto rows = store->scan(Column::outbox, "b");
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].first, "b1");
  EXPECT_EQ((*rows)[1].first, "b2");
}

TEST_F(CheckpointStoreTest, FailedCommitWritesNothing) {
  auto store = open();
  store->inject_write_failures(1);
  auto batch = store->batch();
  batch.put(Column::state, "op/0001", "new");
  batch.put(Column::meta, "partition/0001", "offset-43");
  auto s = store->commit(batch);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().kind, ErrorKind::retryable);
  auto state = store->get(Column::state, "op/0001");
  ASSERT_TRUE(state);
  EXPECT_FALSE(state->has_value());
  auto meta = store->get(Column::meta, "partition/0001");
  ASSERT_TRUE(meta);
  EXPECT_FALSE(meta->has_value());
  ASSERT_TRUE(store->commit(batch));  // the retry succeeds
  EXPECT_TRUE(store->get(Column::state, "op/0001").value().has_value());
}

TEST_F(CheckpointStoreTest, DeleteInBatchRemovesKey) {
  auto store = open();
  auto b1 = store->batch();
  b1.put(Column::outbox, "0001", "r");
  ASSERT_TRUE(store->commit(b1));
  auto b2 = store->batch();
  b2.remove(Column::outbox, "0001");
  ASSERT_TRUE(store->commit(b2));
  EXPECT_FALSE(store->get(Column::outbox, "0001").value().has_value());
}

TEST_F(CheckpointStoreTest, SecondOpenOfALockedStoreFailsClearly) {
  auto first = open();
  auto second = CheckpointStore::open(dir_);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().kind, ErrorKind::fatal);
  EXPECT_NE(second.error().message.find(dir_), std::string::npos);
}

}  // namespace
}  // namespace sp
