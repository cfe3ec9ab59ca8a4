#include "pipeline/consumer_group.h"

#include <algorithm>

namespace sp {

Result<std::unique_ptr<ConsumerGroup>> ConsumerGroup::create(
    const std::map<std::string, std::string>& settings, RebalanceCallback on_rebalance,
    void* opaque, ErrorCallback on_error, StatsCallback on_stats) {
  auto conf = make_kafka_conf(settings);
  if (!conf) return tl::unexpected(conf.error());
  rd_kafka_conf_set_opaque(conf->get(), opaque);
  rd_kafka_conf_set_rebalance_cb(conf->get(), on_rebalance);
  if (on_error != nullptr) rd_kafka_conf_set_error_cb(conf->get(), on_error);
  if (on_stats != nullptr) rd_kafka_conf_set_stats_cb(conf->get(), on_stats);
  auto consumer = make_kafka_handle(RD_KAFKA_CONSUMER, std::move(*conf));
  if (!consumer) return tl::unexpected(consumer.error());
  // Fails only without a group.id, which pipeline_consumer_settings() always sets; then the
  // consumer's events would go unserved, so it is not ignored.
  if (auto err = rd_kafka_poll_set_consumer(consumer->get()); err) {
    return make_error(ErrorKind::fatal, std::string("consumer queue: ") + rd_kafka_err2str(err));
  }
  return std::unique_ptr<ConsumerGroup>(new ConsumerGroup(std::move(*consumer)));
}

Status ConsumerGroup::subscribe(const std::vector<std::string>& topics) {
  KafkaPartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(topics.size())));
  for (const auto& t : topics) {
    rd_kafka_topic_partition_list_add(list.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
  }
  if (auto err = rd_kafka_subscribe(consumer_.get(), list.get()); err) {
    return make_error(ErrorKind::fatal, std::string("subscribe: ") + rd_kafka_err2str(err));
  }
  return {};
}

void ConsumerGroup::set_paused(rd_kafka_topic_partition_list_t* partitions, bool paused) {
  // The call itself cannot fail; a partition the consumer does not hold gets its error in its
  // own list entry, and there is nothing to pause or resume for it.
  if (paused) {
    (void)rd_kafka_pause_partitions(consumer_.get(), partitions);
  } else {
    (void)rd_kafka_resume_partitions(consumer_.get(), partitions);
  }
}

void ConsumerGroup::seek(rd_kafka_topic_partition_list_t* partitions) {
  // Best effort: a partition that fails to seek is re-sought on its next resume.
  (void)KafkaError(rd_kafka_seek_partitions(consumer_.get(), partitions, 1000));
}

ConsumerGroup::Watermarks ConsumerGroup::watermarks(const std::string& topic,
                                                    int32_t partition) const {
  int64_t low = RD_KAFKA_OFFSET_INVALID;
  int64_t high = RD_KAFKA_OFFSET_INVALID;
  Watermarks w;
  if (rd_kafka_get_watermark_offsets(consumer_.get(), topic.c_str(), partition, &low, &high) !=
      RD_KAFKA_RESP_ERR_NO_ERROR) {
    return w;  // a partition the consumer does not know (yet): nothing to report
  }
  if (low != RD_KAFKA_OFFSET_INVALID) w.low = Offset{low};
  if (high != RD_KAFKA_OFFSET_INVALID) w.high = Offset{high};
  return w;
}

int64_t ConsumerGroup::lag(const std::string& topic, int32_t partition,
                           std::optional<Offset> next) const {
  const Watermarks w = watermarks(topic, partition);
  if (!w.high) return 0;
  const Offset from = next ? *next : w.low.value_or(Offset{0});
  return w.high->value - from.value;
}

void ConsumerGroup::commit_async(rd_kafka_topic_partition_list_t* offsets) {
  // Fire and forget (see the header): the group's offsets are never read back.
  if (offsets->cnt > 0) (void)rd_kafka_commit(consumer_.get(), offsets, 1);
}

rd_kafka_resp_err_t ConsumerGroup::commit_within(rd_kafka_topic_partition_list_t* offsets,
                                                 Millis timeout) {
  KafkaQueue queue(rd_kafka_queue_new(consumer_.get()));
  // A commit refused at once puts no result on the queue: answer now instead of after `timeout`.
  if (auto err = rd_kafka_commit_queue(consumer_.get(), offsets, queue.get(), nullptr, nullptr);
      err) {
    return err;
  }
  rd_kafka_resp_err_t result = RD_KAFKA_RESP_ERR__TIMED_OUT;
  if (KafkaEvent ev(rd_kafka_queue_poll(queue.get(), static_cast<int>(timeout.count()))); ev) {
    result = rd_kafka_event_error(ev.get());
  }
  return result;
}

bool ConsumerGroup::close(std::chrono::steady_clock::time_point deadline,
                          const RevokeHandler& on_revoke) {
  if (!consumer_) return true;
  auto remaining = [&] {
    return std::max<int64_t>(
        0, std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now()).count());
  };
  // Close asynchronously: a sync close can hang while the coordinator is unreachable.
  KafkaQueue queue(rd_kafka_queue_new(consumer_.get()));
  // A close that cannot start is seen below: the consumer never reports closed.
  (void)KafkaError(rd_kafka_consumer_close_queue(consumer_.get(), queue.get()));
  while (!rd_kafka_consumer_closed(consumer_.get()) && remaining() > 0) {
    KafkaEvent ev(rd_kafka_queue_poll(queue.get(), 50));
    if (ev && rd_kafka_event_type(ev.get()) == RD_KAFKA_EVENT_REBALANCE) {
      rd_kafka_topic_partition_list_t* parts = rd_kafka_event_topic_partition_list(ev.get());
      if (rd_kafka_event_error(ev.get()) == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) on_revoke(parts);
      // A failed unassign leaves the consumer unclosed, which the deadline below handles.
      (void)rd_kafka_assign(consumer_.get(), nullptr);
    }
  }
  const bool closed = rd_kafka_consumer_closed(consumer_.get());
  queue.reset();
  if (!closed) (void)consumer_.release();
  return closed;
}

}  // namespace sp
