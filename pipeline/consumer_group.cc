#include "pipeline/consumer_group.h"

#include <algorithm>

namespace sp {

Result<std::unique_ptr<ConsumerGroup>> ConsumerGroup::create(
    const std::map<std::string, std::string>& settings, RebalanceCallback on_rebalance,
    void* opaque, ErrorCallback on_error) {
  auto conf = make_kafka_conf(settings);
  if (!conf) return tl::unexpected(conf.error());
  rd_kafka_conf_set_opaque(conf->get(), opaque);
  rd_kafka_conf_set_rebalance_cb(conf->get(), on_rebalance);
  if (on_error != nullptr) rd_kafka_conf_set_error_cb(conf->get(), on_error);
  auto consumer = make_kafka_handle(RD_KAFKA_CONSUMER, std::move(*conf));
  if (!consumer) return tl::unexpected(consumer.error());
  rd_kafka_poll_set_consumer(consumer->get());
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
  if (paused) {
    rd_kafka_pause_partitions(consumer_.get(), partitions);
  } else {
    rd_kafka_resume_partitions(consumer_.get(), partitions);
  }
}

void ConsumerGroup::seek(rd_kafka_topic_partition_list_t* partitions) {
  // Best effort: a partition that fails to seek is re-sought on its next resume.
  (void)KafkaError(rd_kafka_seek_partitions(consumer_.get(), partitions, 1000));
}

ConsumerGroup::Watermarks ConsumerGroup::watermarks(const std::string& topic,
                                                    int32_t partition) const {
  Watermarks w;
  rd_kafka_get_watermark_offsets(consumer_.get(), topic.c_str(), partition, &w.low, &w.high);
  return w;
}

int64_t ConsumerGroup::lag(const std::string& topic, int32_t partition,
                           std::optional<Offset> next) const {
  const Watermarks w = watermarks(topic, partition);
  return w.high - (next ? next->value : w.low);
}

void ConsumerGroup::commit_async(rd_kafka_topic_partition_list_t* offsets) {
  if (offsets->cnt > 0) rd_kafka_commit(consumer_.get(), offsets, 1);
}

rd_kafka_resp_err_t ConsumerGroup::commit_within(rd_kafka_topic_partition_list_t* offsets,
                                                 Millis timeout) {
  KafkaQueue queue(rd_kafka_queue_new(consumer_.get()));
  rd_kafka_commit_queue(consumer_.get(), offsets, queue.get(), nullptr, nullptr);
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
      rd_kafka_assign(consumer_.get(), nullptr);
    }
  }
  const bool closed = rd_kafka_consumer_closed(consumer_.get());
  queue.reset();
  if (!closed) (void)consumer_.release();
  return closed;
}

}  // namespace sp
