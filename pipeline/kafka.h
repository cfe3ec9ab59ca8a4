#pragma once
// RAII ownership of librdkafka handles and the small helpers every Kafka user here needs.
#include <librdkafka/rdkafka.h>

#include <map>
#include <memory>
#include <string>

#include "base/result.h"

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
struct KafkaQueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
struct KafkaEventDeleter {
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
};
struct KafkaTopicDeleter {
  void operator()(rd_kafka_topic_t* t) const { rd_kafka_topic_destroy(t); }
};
struct KafkaErrorDeleter {
  void operator()(rd_kafka_error_t* e) const { rd_kafka_error_destroy(e); }
};

using KafkaHandle = std::unique_ptr<rd_kafka_t, KafkaHandleDeleter>;
using KafkaConf = std::unique_ptr<rd_kafka_conf_t, KafkaConfDeleter>;
using KafkaPartitionList =
    std::unique_ptr<rd_kafka_topic_partition_list_t, KafkaTopicPartitionListDeleter>;
using KafkaMessage = std::unique_ptr<rd_kafka_message_t, KafkaMessageDeleter>;
// From rd_kafka_topic_new; destroy it before the handle it belongs to.
using KafkaTopic = std::unique_ptr<rd_kafka_topic_t, KafkaTopicDeleter>;
// From rd_kafka_headers_new/_copy. rd_kafka_producev(RD_KAFKA_V_HEADERS) takes ownership only
// when it returns RD_KAFKA_RESP_ERR_NO_ERROR: release() then, keep (and free) on an error.
// Not for rd_kafka_message_headers(): those stay owned by the message.
using KafkaHeaders = std::unique_ptr<rd_kafka_headers_t, KafkaHeadersDeleter>;
// From rd_kafka_queue_new or rd_kafka_queue_get_*; destroy it before the handle it belongs to.
using KafkaQueue = std::unique_ptr<rd_kafka_queue_t, KafkaQueueDeleter>;
// From rd_kafka_queue_poll (commit and close results, rebalances of a close queue).
using KafkaEvent = std::unique_ptr<rd_kafka_event_t, KafkaEventDeleter>;
// Returned (nullptr = success) by the newer calls: rd_kafka_seek_partitions,
// rd_kafka_consumer_close_queue, rd_kafka_incremental_(un)assign.
using KafkaError = std::unique_ptr<rd_kafka_error_t, KafkaErrorDeleter>;

// False only when a consumed message certainly has no headers, so that rd_kafka_message_headers()
// need not be asked: librdkafka 2.0.2 parses the wire headers on every call and, for a record
// without any, allocates (calloc) and frees a buffer only to find a header count of 0 — about a
// fifth of the source thread's time (benchmarks/RESULTS.md). True whenever unsure.
//
// It reads the fetched bytes around the payload, which librdkafka hands out in place (never
// copied): in a v2 record (Kafka >= 0.11) the value is followed, inside the same record, by the
// header count, a zig-zag varint that is 0 exactly when there are none. A v0/v1 message carries no
// headers and may end at the end of its buffer, so nothing past its value is read: its value is
// preceded by its length as a 4-byte big-endian integer, and a v2 record's varint length never
// matches one for a non-empty value (both readable: a record has at least six bytes before its
// value). tests/pipeline/kafka_headers_test.cc checks this against librdkafka for every shape.
// A message with an error is not a record (its payload, if any, is the error text): true.
inline bool may_carry_headers(const rd_kafka_message_t& msg) {
  if (msg.err != RD_KAFKA_RESP_ERR_NO_ERROR || msg.payload == nullptr || msg.len == 0) return true;
  const auto* value = static_cast<const unsigned char*>(msg.payload);
  const size_t len = msg.len;
  const bool v0_v1_length = len <= 0x7fffffff && value[-4] == ((len >> 24) & 0xff) &&
                            value[-3] == ((len >> 16) & 0xff) && value[-2] == ((len >> 8) & 0xff) &&
                            value[-1] == (len & 0xff);
  return v0_v1_length || value[len] != 0;
}

// Builds a conf from key/value pairs; later entries override earlier ones.
Result<KafkaConf> make_kafka_conf(const std::map<std::string, std::string>& settings);
Result<KafkaHandle> make_kafka_handle(rd_kafka_type_t type, KafkaConf conf);

// The consumer settings of the pipeline's consumer group: no auto commit or offset store (offsets
// live with the state), eager assignor, prefetch sized for librdkafka 2.0.2; `properties`
// (kafka.properties) are passed through but cannot change what exactly-once depends on. The
// benchmark's raw consumer and the tests use the same, so that only the processing differs.
// `group_instance_id` (kafka.group_instance_id, empty = unset) becomes group.instance.id: static
// membership, so a restarting instance gets its partitions back without a rebalance.
std::map<std::string, std::string> pipeline_consumer_settings(
    const std::string& bootstrap, const std::string& group_id,
    const std::map<std::string, std::string>& properties = {},
    const std::string& group_instance_id = {});

}  // namespace sp
