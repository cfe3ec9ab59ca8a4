#include "pipeline/source_worker.h"

#include <spdlog/spdlog.h>

#include <utility>

#include "pipeline/kafka.h"
#include "pipeline/thread_policy.h"

namespace sp {

void SourceWorker::Batch::clear() {
  for (rd_kafka_message_t* m : messages_) rd_kafka_message_destroy(m);
  messages_.clear();
  item_count_ = 0;
  arena_.clear();
}

SourceWorker::SourceWorker(const Vocabulary& vocabulary, DecoderOptions options)
    : decoder_(vocabulary, options) {
  for (auto& b : batches_) free_.push_back(&b);
}

SourceWorker::~SourceWorker() {
  // Normally stopped by the runner; never leave the thread blocked in a forwarded rebalance.
  stop([](rd_kafka_resp_err_t, rd_kafka_topic_partition_list_t*) { return true; }, [](Batch&) {});
}

void SourceWorker::start(rd_kafka_t* consumer) {
  std::lock_guard lock(mutex_);
  consumer_ = consumer;
  thread_ = std::thread([this] {
    name_thread("sp-source");
    run();
  });
  worker_id_ = thread_.get_id();
}

SourceWorker::Batch* SourceWorker::next(std::chrono::milliseconds timeout,
                                        const RebalanceHandler& handler) {
  std::unique_lock lock(mutex_);
  if (!to_pipeline_.wait_for(lock, timeout, [this] { return !ready_.empty(); })) return nullptr;
  const Entry entry = ready_.front();
  ready_.pop_front();
  if (entry.batch != nullptr) return entry.batch;
  serve(entry, lock, handler);
  return nullptr;
}

void SourceWorker::release(Batch* batch) {
  {
    std::lock_guard lock(mutex_);
    free_.push_back(batch);
  }
  to_worker_.notify_all();
}

void SourceWorker::serve(Entry entry, std::unique_lock<std::mutex>& lock,
                         const RebalanceHandler& handler) {
  Rebalance* r = entry.rebalance;
  const uint64_t ticket = r->ticket;
  lock.unlock();
  const bool pause = handler(r->err, r->partitions);
  lock.lock();
  r->pause = pause;
  r->done = true;  // from here on `r` belongs to the worker again
  to_worker_.notify_all();
  // A back-pressure resume issued before the worker paused the new partitions would be undone
  // by that pause, and the partitions would stay paused for good.
  to_pipeline_.wait(lock, [this, ticket] { return applied_ >= ticket; });
}

void SourceWorker::stop(const RebalanceHandler& handler,
                        const std::function<void(Batch&)>& on_batch) {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stop_.store(true);
  }
  to_worker_.notify_all();
  std::unique_lock lock(mutex_);
  for (;;) {
    if (!ready_.empty()) {
      const Entry entry = ready_.front();
      ready_.pop_front();
      if (entry.batch != nullptr) {
        lock.unlock();
        on_batch(*entry.batch);
        lock.lock();
        free_.push_back(entry.batch);
      } else {
        serve(entry, lock, handler);
      }
      continue;
    }
    if (exited_) break;
    to_pipeline_.wait_for(lock, std::chrono::milliseconds(50));
  }
  lock.unlock();
  thread_.join();
  // Every consumed message must be gone before the consumer handle is destroyed.
  for (auto& b : batches_) b.clear();
}

void SourceWorker::forward_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                                     rd_kafka_topic_partition_list_t* partitions) {
  // Everything polled before the rebalance is processed before it.
  hand_over_current();
  Rebalance r{err, partitions};
  {
    std::unique_lock lock(mutex_);
    r.ticket = ++forwarded_;
    ready_.push_back({nullptr, &r});
    to_pipeline_.notify_all();
    to_worker_.wait(lock, [&r] { return r.done; });
  }
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    // Keep the pipeline's back-pressure decision in force for the new partitions. librdkafka keeps
    // an application pause across an unassign, so a partition paused under the previous
    // assignment (and revoked before the resume) must be resumed explicitly: before the assign.
    // Every pause or resume call starts a new version of the partition's fetch state, and one
    // made after the assign outdated the offset lookups the assign had just sent: each partition
    // whose reply was still in flight waited librdkafka's 500 ms retry timer before its first
    // fetch (243 of 256 partitions in the benchmark). A pause has to follow the assign (a
    // partition not yet known to the consumer cannot be paused), and a paused partition does not
    // fetch anyway. Neither call fails as a whole; per-partition errors go into a copy of the list
    // so that the assign sees the list as the group gave it.
    if (!r.pause) {
      KafkaPartitionList resumed(rd_kafka_topic_partition_list_copy(partitions));
      (void)rd_kafka_resume_partitions(rk, resumed.get());
    }
    if (auto e = rd_kafka_assign(rk, partitions); e) {
      spdlog::error("msg=\"assign failed\" error=\"{}\"", rd_kafka_err2str(e));
    }
    if (r.pause) (void)rd_kafka_pause_partitions(rk, partitions);
  } else {
    if (auto e = rd_kafka_assign(rk, nullptr); e) {
      spdlog::error("msg=\"unassign failed\" error=\"{}\"", rd_kafka_err2str(e));
    }
  }
  {
    std::lock_guard lock(mutex_);
    applied_ = r.ticket;
  }
  to_pipeline_.notify_all();
}

SourceWorker::Batch* SourceWorker::acquire_free() {
  std::unique_lock lock(mutex_);
  to_worker_.wait(lock, [this] { return stop_.load() || !free_.empty(); });
  if (free_.empty()) return nullptr;
  Batch* b = free_.back();
  free_.pop_back();
  return b;
}

void SourceWorker::hand_over_current() {
  if (current_ == nullptr) return;
  Batch* b = std::exchange(current_, nullptr);
  if (b->messages_.empty()) {
    std::lock_guard lock(mutex_);
    free_.push_back(b);
    return;
  }
  decode(*b, std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now()));
  {
    std::lock_guard lock(mutex_);
    ready_.push_back({b, nullptr});
  }
  to_pipeline_.notify_all();
}

void SourceWorker::run() {
  { std::lock_guard lock(mutex_); }  // start() has published worker_id_
  while (!stop_.load(std::memory_order_relaxed)) {
    if (current_ == nullptr) {
      current_ = acquire_free();
      if (current_ == nullptr) break;
      current_
          ->clear();  // a processed batch: its messages are destroyed here, off the pipeline thread
    }
    // Block only for the first message of a batch; hand the batch over as soon as the queue is
    // empty.
    rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer_, current_->messages_.empty() ? 50 : 0);
    if (current_ == nullptr) {  // a rebalance inside the poll handed the batch over
      current_ = acquire_free();
      if (current_ == nullptr) {
        if (m != nullptr) rd_kafka_message_destroy(m);  // stopping: not processed, not stored
        break;
      }
      current_->clear();
    }
    if (m != nullptr) {
      current_->messages_.push_back(m);
      if (current_->messages_.size() < kMaxBatch) continue;
    } else if (current_->messages_.empty()) {
      continue;
    }
    hand_over_current();
  }
  hand_over_current();
  {
    std::lock_guard lock(mutex_);
    exited_ = true;
  }
  to_pipeline_.notify_all();
}

void SourceWorker::decode(Batch& batch, EventTime wall_now) {
  if (batch.items_.size() < batch.messages_.size()) batch.items_.resize(batch.messages_.size());
  batch.item_count_ = batch.messages_.size();
  batch.arena_.clear();
  // Offsets into the arena while it may still grow; turned into views at the end.
  spans_.resize(batch.messages_.size());
  auto keep = [&batch](std::string_view s, size_t& at, size_t& len) {
    at = batch.arena_.size();
    len = s.size();
    batch.arena_.append(s);
  };
  for (size_t i = 0; i < batch.messages_.size(); ++i) {
    rd_kafka_message_t* msg = batch.messages_[i];
    Item& item = batch.items_[i];
    item.message = msg;
    item.topic = msg->rkt;
    item.partition = msg->partition;
    item.offset = msg->offset;
    if (msg->err) {
      item.timestamp = 0;
      item.outcome = Outcome::kafka_error;
      continue;
    }
    rd_kafka_timestamp_type_t timestamp_type;
    item.timestamp = rd_kafka_message_timestamp(msg, &timestamp_type);
    headers_.clear();
    rd_kafka_headers_t* hdrs = nullptr;
    if (may_carry_headers(*msg) &&
        rd_kafka_message_headers(msg, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs != nullptr) {
      const char* name = nullptr;
      const void* value = nullptr;
      size_t size = 0;
      for (size_t h = 0; rd_kafka_header_get_all(hdrs, h, &name, &value, &size) == 0; ++h) {
        headers_.push_back(
            {name, std::string_view(static_cast<const char*>(value), value ? size : 0)});
      }
    }
    const std::string_view payload(static_cast<const char*>(msg->payload),
                                   msg->payload ? msg->len : 0);
    auto decoded = decoder_.decode(payload, headers_, wall_now);
    if (!decoded) {
      item.outcome = Outcome::rejected;
      item.rejection = std::move(decoded.error());
      continue;
    }
    // Read from the decoder's event (in this core's cache), not from the item: the item's lines
    // were last written by the pipeline thread, and reading them back right after the copy
    // waited for them.
    const Event& event = **decoded;
    item.outcome = Outcome::event;
    item.dedup_key = Deduplicator::key_of(event);
    Span& s = spans_[i];
    keep(event.id, s.id, s.id_len);
    keep(event.actor_id, s.actor, s.actor_len);
    keep(event.brand_name, s.brand, s.brand_len);
    for (size_t t = 0; t < event.tag_count; ++t) keep(event.tags[t], s.tag[t], s.tag_len[t]);
    item.event = event;
  }
  const char* base = batch.arena_.data();
  for (size_t i = 0; i < batch.item_count_; ++i) {
    Item& item = batch.items_[i];
    if (item.outcome != Outcome::event) continue;
    const Span& s = spans_[i];
    item.event.id = {base + s.id, s.id_len};
    item.event.actor_id = {base + s.actor, s.actor_len};
    item.event.brand_name = {base + s.brand, s.brand_len};
    for (size_t t = 0; t < item.event.tag_count; ++t)
      item.event.tags[t] = {base + s.tag[t], s.tag_len[t]};
  }
}

}  // namespace sp
