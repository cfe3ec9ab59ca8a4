#pragma once
// The pipeline's membership of its Kafka consumer group: the consumer handle, the subscription,
// pause/resume/seek of owned partitions, offset commits and leaving the group. Offsets are only
// ever the caller's (stored with the state); what to do on a rebalance is the caller's too.
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "operators/time.h"
#include "pipeline/kafka.h"

namespace sp {

// Contract: the caller's thread makes every call; the rebalance callback runs inside whichever
// poll serves it. After an unsuccessful close() only close() may be called (and returns true).
class ConsumerGroup {
 public:
  using RebalanceCallback = void (*)(rd_kafka_t*, rd_kafka_resp_err_t,
                                     rd_kafka_topic_partition_list_t*, void* opaque);
  using RevokeHandler = std::function<void(rd_kafka_topic_partition_list_t*)>;
  // librdkafka's error_cb: client-level errors (all brokers down, authentication...), called on
  // the polling thread with the same opaque.
  using ErrorCallback = void (*)(rd_kafka_t*, int err, const char* reason, void* opaque);
  // librdkafka's stats_cb (every `statistics.interval.ms`), same thread and opaque; returns 0 so
  // that librdkafka frees the JSON after the call.
  using StatsCallback = int (*)(rd_kafka_t*, char* json, size_t json_len, void* opaque);

  // A consumer with `settings` (pipeline_consumer_settings()) whose rebalances go to
  // `on_rebalance`.
  static Result<std::unique_ptr<ConsumerGroup>> create(
      const std::map<std::string, std::string>& settings, RebalanceCallback on_rebalance,
      void* opaque, ErrorCallback on_error = nullptr, StatsCallback on_stats = nullptr);
  ConsumerGroup(const ConsumerGroup&) = delete;
  ConsumerGroup& operator=(const ConsumerGroup&) = delete;

  Status subscribe(const std::vector<std::string>& topics);
  // Null once an unsuccessful close() abandoned it.
  rd_kafka_t* handle() const { return consumer_.get(); }

  // Pauses or resumes fetching. librdkafka keeps a pause across an unassign.
  void set_paused(rd_kafka_topic_partition_list_t* partitions, bool paused);
  // Sets where fetching continues (`offset` of each entry); a failure is left to the next resume.
  void seek(rd_kafka_topic_partition_list_t* partitions);
  // The partition's offsets as last seen by the consumer (librdkafka's cache: no broker round
  // trip); nullopt where none is cached (each is learnt separately) or the partition is unknown.
  struct Watermarks {
    std::optional<Offset> low;
    std::optional<Offset> high;
  };
  Watermarks watermarks(const std::string& topic, int32_t partition) const;
  // Messages from `next` (nothing consumed yet: from the low watermark, 0 when unknown) to the
  // high watermark; 0 without a high watermark, negative when it is older than `next`.
  int64_t lag(const std::string& topic, int32_t partition, std::optional<Offset> next) const;

  // `offsets`: each entry's offset is the next one to consume. Fire and forget: an instance
  // resumes from the offsets stored with its state, never from the group's.
  void commit_async(rd_kafka_topic_partition_list_t* offsets);
  // Waits for the commit at most `timeout`: rd_kafka_commit(sync) would block for as long as the
  // coordinator is unreachable. Returns the broker's answer (_TIMED_OUT when there was none).
  rd_kafka_resp_err_t commit_within(rd_kafka_topic_partition_list_t* offsets, Millis timeout);

  // Leaves the group within `deadline`, handing a revocation met on the way to `on_revoke`; false
  // when it could not: the handle is then abandoned to process exit (destroying a handle that
  // is still closing can block).
  bool close(std::chrono::steady_clock::time_point deadline, const RevokeHandler& on_revoke);

 private:
  explicit ConsumerGroup(KafkaHandle consumer) : consumer_(std::move(consumer)) {}
  KafkaHandle consumer_;
};

}  // namespace sp
