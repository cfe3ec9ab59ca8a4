#pragma once
// The Kafka source thread: polls the consumer and decodes messages on a thread of its own, and
// hands decoded batches to the pipeline thread in consumption order, so that librdkafka's
// per-message work and JSON decoding overlap the pipeline thread's stateful work (dedup,
// operators, checkpoints). It never touches state or offsets. Rebalances stay in order with the
// messages: the rebalance callback runs on this thread (inside the poll) but only forwards the
// rebalance to the pipeline thread, after every batch polled before it, and waits for it.
#include <librdkafka/rdkafka.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "operators/deduplicator.h"
#include "operators/event.h"
#include "operators/time.h"
#include "operators/vocabulary.h"
#include "pipeline/decoder.h"

namespace sp {

class SourceWorker {
 public:
  enum class Outcome : uint8_t { event, rejected, kafka_error };

  struct Item {
    rd_kafka_message_t* message = nullptr;
    // The message's topic handle, partition, offset and append time (ms since the epoch, <= 0:
    // none), copied here: the pipeline thread reads these items in order, and each message it
    // does not have to touch is a cache miss saved (the source thread read it last, on the other
    // core).
    const rd_kafka_topic_t* topic = nullptr;
    int32_t partition = 0;
    int64_t offset = 0;
    int64_t timestamp = 0;
    Outcome outcome = Outcome::kafka_error;
    Event event;                  // outcome == event; its string views point into the batch's arena
    Deduplicator::Key dedup_key;  // outcome == event: Deduplicator::key_of(event), computed here
    Rejection rejection;          // outcome == rejected
  };

  // Messages in consumption order and, once decoded, one Item per message. Reused: clear()
  // destroys the messages and keeps every buffer's capacity.
  class Batch {
   public:
    Batch() = default;
    ~Batch() { clear(); }
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;

    std::span<const Item> items() const { return {items_.data(), item_count_}; }
    void clear();

   private:
    friend class SourceWorker;
    std::vector<rd_kafka_message_t*> messages_;
    // Grown, never shrunk or re-constructed: a batch of 4096 default-constructed Items cost
    // more than its dedup keys. Only the first item_count_ are this batch's.
    std::vector<Item> items_;
    size_t item_count_ = 0;
    std::string arena_;  // copies of id, actor id and brand name of every decoded event
  };

  // Runs on the pipeline thread for each rebalance (err is ASSIGN or REVOKE); may change the
  // partitions' offsets. Returns true when newly assigned partitions must start paused.
  using RebalanceHandler =
      std::function<bool(rd_kafka_resp_err_t, rd_kafka_topic_partition_list_t*)>;

  SourceWorker(const Vocabulary& vocabulary, DecoderOptions options);
  ~SourceWorker();  // stop() must have returned, or start() never been called
  SourceWorker(const SourceWorker&) = delete;
  SourceWorker& operator=(const SourceWorker&) = delete;

  // Starts polling `consumer` (which must outlive stop()).
  void start(rd_kafka_t* consumer);
  bool running() const { return thread_.joinable(); }

  // Pipeline thread. Waits up to `timeout` for the next entry: returns a decoded batch (hand it
  // back with release()), or runs a forwarded rebalance through `handler` and returns null.
  Batch* next(std::chrono::milliseconds timeout, const RebalanceHandler& handler);
  void release(Batch* batch);

  // Pipeline thread. Stops polling and joins the thread, serving rebalances that arrive
  // meanwhile; every batch still undelivered is passed to `on_batch` (in order) first.
  void stop(const RebalanceHandler& handler, const std::function<void(Batch&)>& on_batch);

  // The consumer's rebalance callback calls this on the worker thread (see is_worker_thread).
  void forward_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t* partitions);
  bool is_worker_thread() const { return std::this_thread::get_id() == worker_id_; }

  static constexpr size_t kMaxBatch = 4096;

 private:
  struct Rebalance {
    rd_kafka_resp_err_t err;
    rd_kafka_topic_partition_list_t* partitions;
    uint64_t ticket = 0;  // applied_ reaches it once rd_kafka_assign (and the pause) are done
    bool pause = false;
    bool done = false;
  };
  struct Entry {
    Batch* batch = nullptr;
    Rebalance* rebalance = nullptr;
  };

  void run();
  void decode(Batch& batch, EventTime wall_now);
  // Decodes and queues the batch being filled, if it holds anything, and takes a fresh one.
  void hand_over_current();
  Batch* acquire_free();  // worker thread; null when stopping
  // Pipeline thread, lock held on entry and exit.
  void serve(Entry entry, std::unique_lock<std::mutex>& lock, const RebalanceHandler& handler);

  EventDecoder decoder_;  // worker thread only
  std::vector<HeaderView> headers_;
  struct Span {
    size_t id, id_len, actor, actor_len, brand, brand_len;
    std::array<size_t, Event::kMaxTags> tag, tag_len;  // `tags` views, same arena
  };
  std::vector<Span> spans_;
  rd_kafka_t* consumer_ = nullptr;
  Batch* current_ = nullptr;  // worker thread: being polled into

  // Bounded: at most this many batches exist, so a slow pipeline thread stops the polling. Enough
  // for the worker to keep polling and decoding while the pipeline thread writes a checkpoint
  // (~100 ms at 256 partitions and 250 ms checkpoints, ~60 k messages at full speed): with 4, the
  // worker stopped within a few ms of each checkpoint, and bench_e2e at 256 partitions / 250 ms
  // ran ~20 % slower (benchmarks/RESULTS.md). At most 16 x 4096 Items (272 B each), ~18 MB.
  std::array<Batch, 16> batches_;
  std::mutex mutex_;
  std::condition_variable to_pipeline_;
  std::condition_variable to_worker_;
  std::deque<Entry> ready_;   // for the pipeline thread, in order
  std::vector<Batch*> free_;  // processed (or fresh) batches for the worker to reuse
  std::atomic<bool> stop_{false};
  bool exited_ = false;
  // Forwarded rebalances, and those whose assignment the worker has applied: the pipeline thread
  // waits for the latter, so that no pause/resume of its runs before the assignment it decided.
  uint64_t forwarded_ = 0;
  uint64_t applied_ = 0;
  std::thread::id worker_id_;
  std::thread thread_;
};

}  // namespace sp
