#include "state/commit_thread.h"

#include <utility>

namespace sp {

CommitThread::CommitThread(CheckpointStore& store, std::function<void()> on_done)
    : store_(store), on_done_(std::move(on_done)) {
  thread_ = std::thread([this] { loop(); });
}

CommitThread::~CommitThread() {
  if (started_) (void)wait();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void CommitThread::start(CheckpointStore::Batch& batch) {
  {
    std::lock_guard lock(mu_);
    batch_ = &batch;
    result_.reset();
  }
  started_ = true;
  cv_.notify_all();
}

std::optional<Status> CommitThread::poll() {
  if (!started_) return std::nullopt;
  std::lock_guard lock(mu_);
  if (!result_) return std::nullopt;
  started_ = false;
  return std::exchange(result_, std::nullopt);
}

Status CommitThread::wait() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return result_.has_value(); });
  started_ = false;
  return *std::exchange(result_, std::nullopt);
}

void CommitThread::loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || batch_ != nullptr; });
    if (batch_ == nullptr) return;  // stopping, nothing in flight
    CheckpointStore::Batch* batch = batch_;
    lock.unlock();
    Status s = store_.commit(*batch);
    lock.lock();
    batch_ = nullptr;
    result_ = std::move(s);
    cv_.notify_all();
    if (on_done_) {
      lock.unlock();
      on_done_();
      lock.lock();
    }
  }
}

}  // namespace sp
