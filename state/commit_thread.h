#pragma once
// One checkpoint batch at a time, committed on a thread of its own, so that the thread that built
// it goes on consuming while RocksDB writes and fsyncs (issue #20: the commit, 45-185 ms with fsync
// for a few MB on the reference VM, stalled the pipeline thread at every checkpoint, and the
// backlog it left behind added to the latency of every event after it).
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "base/result.h"
#include "state/checkpoint_store.h"

namespace sp {

// Contract: start() hands over a batch, which must stay alive and untouched until poll() or
// wait() has returned its Status; one batch in flight at a time. Used from one thread.
class CommitThread {
 public:
  // `on_done` runs on the commit thread after each batch (e.g. to wake the caller's loop).
  CommitThread(CheckpointStore& store, std::function<void()> on_done);
  ~CommitThread();  // waits for the batch in flight, then joins
  CommitThread(const CommitThread&) = delete;
  CommitThread& operator=(const CommitThread&) = delete;

  void start(CheckpointStore::Batch& batch);
  bool busy() const { return started_; }
  // The Status of the batch in flight once it is committed (or failed); nullopt while it is not.
  std::optional<Status> poll();
  // Blocks until the batch in flight is done. Requires busy().
  Status wait();

 private:
  void loop();

  CheckpointStore& store_;
  const std::function<void()> on_done_;
  std::mutex mu_;
  std::condition_variable cv_;
  CheckpointStore::Batch* batch_ = nullptr;  // guarded by mu_: set by start, cleared when done
  std::optional<Status> result_;             // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  bool started_ = false;                     // caller's thread only
  std::thread thread_;
};

}  // namespace sp
