#include "state/commit_thread.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>

#include "tests/support/test_support.h"

namespace sp {
namespace {

using namespace std::chrono_literals;

class CommitThreadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_dir("sp-commit-thread");
    auto s = CheckpointStore::open(dir_);
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::optional<std::string> stored(std::string_view key) {
    auto v = store_->get(Column::state, key);
    EXPECT_TRUE(v);
    return v ? *v : std::nullopt;
  }
  std::string dir_;
  std::unique_ptr<CheckpointStore> store_;
};

// The caller goes on while the batch commits: poll() says "not yet" until the store has it.
TEST_F(CommitThreadTest, ABatchCommitsWhileTheCallerGoesOnAndPollTellsWhenItIsDone) {
  std::atomic<int> done{0};
  CommitThread thread(*store_, [&] { ++done; });
  store_->inject_commit_delay(300ms);
  auto batch = store_->batch();
  batch.put(Column::state, "op/0001/a", "1");
  thread.start(batch);
  EXPECT_TRUE(thread.busy());
  ASSERT_TRUE(testing::wait_until([&] { return store_->delayed_commits() == 1; }, 5s));
  EXPECT_FALSE(thread.poll().has_value());  // still inside the (delayed) commit
  EXPECT_FALSE(stored("op/0001/a"));
  std::optional<Status> result;
  ASSERT_TRUE(testing::wait_until([&] { return (result = thread.poll()).has_value(); }, 5s));
  EXPECT_TRUE(*result);
  EXPECT_FALSE(thread.busy());
  EXPECT_EQ(done.load(), 1);
  EXPECT_EQ(stored("op/0001/a"), "1");
}

// A failed batch is reported, changes nothing, and the same batch can be handed over again.
TEST_F(CommitThreadTest, AFailureIsReportedAndTheSameBatchCommitsOnTheNextTry) {
  CommitThread thread(*store_, nullptr);
  store_->inject_write_failures(1);
  auto batch = store_->batch();
  batch.put(Column::state, "op/0001/a", "1");
  thread.start(batch);
  Status first = thread.wait();
  ASSERT_FALSE(first);
  EXPECT_EQ(first.error().kind, ErrorKind::retryable);
  EXPECT_FALSE(stored("op/0001/a"));
  thread.start(batch);
  EXPECT_TRUE(thread.wait());
  EXPECT_EQ(stored("op/0001/a"), "1");
}

// Destroying the thread with a batch in flight waits for it: the batch is never left half used.
TEST_F(CommitThreadTest, DestructionWaitsForTheBatchInFlight) {
  auto batch = store_->batch();
  batch.put(Column::state, "op/0001/a", "1");
  {
    CommitThread thread(*store_, nullptr);
    store_->inject_commit_delay(200ms);
    thread.start(batch);
  }
  EXPECT_EQ(stored("op/0001/a"), "1");
}

}  // namespace
}  // namespace sp
