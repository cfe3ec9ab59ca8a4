#pragma once
// In-process Kafka: librdkafka's mock cluster, a real Kafka protocol endpoint on loopback that
// any client (kcat included) can use. For demo, tests and benchmarks; data lives in memory and
// each partition keeps only its most recent ~5 MiB.
#include <librdkafka/rdkafka.h>
// clang-format off: the mock header requires rdkafka.h first
#include <librdkafka/rdkafka_mock.h>
// clang-format on

#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "pipeline/kafka.h"

namespace sp {

struct KafkaMockClusterDeleter {
  void operator()(rd_kafka_mock_cluster_t* c) const { rd_kafka_mock_cluster_destroy(c); }
};
using KafkaMockCluster = std::unique_ptr<rd_kafka_mock_cluster_t, KafkaMockClusterDeleter>;

// What each partition of the embedded broker keeps: librdkafka's mock deletes the oldest message
// sets once a partition holds more than 5 MiB (or 100 000 message sets), and never compacts.
inline constexpr size_t kEmbeddedPartitionRetentionBytes = size_t{5} << 20;

class EmbeddedBroker {
 public:
  static Result<std::unique_ptr<EmbeddedBroker>> start(int brokers = 1);
  EmbeddedBroker(const EmbeddedBroker&) = delete;
  EmbeddedBroker& operator=(const EmbeddedBroker&) = delete;

  const std::string& bootstrap_servers() const { return bootstraps_; }
  Status create_topic(const std::string& topic, int partitions);
  // The state changelog (kafka.state_topic), with as many partitions as the input topics. The
  // mock answers neither CreateTopics nor DescribeConfigs, so it cannot be created compacted nor
  // checked (ensure_state_topic() does both on a real Kafka): logged once per call. It never
  // compacts: the changelog stays restorable through its snapshots (pipeline/changelog.h).
  Status create_state_topic(const std::string& topic, int partitions);
  // Fault injection for tests.
  rd_kafka_mock_cluster_t* cluster() { return cluster_.get(); }

 private:
  EmbeddedBroker() = default;
  KafkaHandle host_;          // the mock cluster lives inside this client handle
  KafkaMockCluster cluster_;  // declared after host_: destroyed before it
  std::string bootstraps_;
};

}  // namespace sp
