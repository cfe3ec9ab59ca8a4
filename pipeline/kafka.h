#pragma once
// RAII ownership of librdkafka handles and the small helpers every Kafka user here needs.
#include <librdkafka/rdkafka.h>

#include <map>
#include <memory>
#include <string>

#include "operators/result.h"

namespace sp {

struct KafkaHandleDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct KafkaConfDeleter {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};
struct KafkaTopicPartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
struct KafkaMessageDeleter {
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};
struct KafkaHeadersDeleter {
  void operator()(rd_kafka_headers_t* h) const { rd_kafka_headers_destroy(h); }
};

using KafkaHandle = std::unique_ptr<rd_kafka_t, KafkaHandleDeleter>;
using KafkaConf = std::unique_ptr<rd_kafka_conf_t, KafkaConfDeleter>;
using KafkaPartitionList =
    std::unique_ptr<rd_kafka_topic_partition_list_t, KafkaTopicPartitionListDeleter>;
using KafkaMessage = std::unique_ptr<rd_kafka_message_t, KafkaMessageDeleter>;
using KafkaHeaders = std::unique_ptr<rd_kafka_headers_t, KafkaHeadersDeleter>;

// Builds a conf from key/value pairs; later entries override earlier ones.
Result<KafkaConf> make_kafka_conf(const std::map<std::string, std::string>& settings);
Result<KafkaHandle> make_kafka_handle(rd_kafka_type_t type, KafkaConf conf);

// The consumer settings of the pipeline's consumer group: no auto commit or offset store (offsets
// live with the state), eager assignor, prefetch sized for librdkafka 2.0.2; `properties`
// (kafka.properties) are passed through but cannot change what exactly-once depends on. The
// benchmark's raw consumer and the tests use the same, so that only the processing differs.
// `group_instance_id` (kafka.group_instance_id, empty = unset) becomes group.instance.id: static
// membership, so a restarting instance gets its partitions back without a rebalance.
std::map<std::string, std::string> pipeline_consumer_settings(const std::string& bootstrap,
                                                              const std::string& group_id,
                                                              const std::map<std::string, std::string>& properties = {},
                                                              const std::string& group_instance_id = {});

}  // namespace sp
