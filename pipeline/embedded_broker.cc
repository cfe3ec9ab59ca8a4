#include "pipeline/embedded_broker.h"

#include <spdlog/spdlog.h>

namespace sp {

Result<std::unique_ptr<EmbeddedBroker>> EmbeddedBroker::start(int brokers) {
  auto conf = make_kafka_conf({{"log_level", "3"}});
  if (!conf) return tl::unexpected(conf.error());
  auto host = make_kafka_handle(RD_KAFKA_PRODUCER, std::move(*conf));
  if (!host) return tl::unexpected(host.error());
  std::unique_ptr<EmbeddedBroker> broker(new EmbeddedBroker());
  broker->host_ = std::move(*host);
  broker->cluster_.reset(rd_kafka_mock_cluster_new(broker->host_.get(), brokers));
  if (broker->cluster_ == nullptr) {
    return make_error(ErrorKind::fatal, "embedded broker: rd_kafka_mock_cluster_new failed");
  }
  broker->bootstraps_ = rd_kafka_mock_cluster_bootstraps(broker->cluster_.get());
  return broker;
}

Status EmbeddedBroker::create_topic(const std::string& topic, int partitions) {
  rd_kafka_resp_err_t err =
      rd_kafka_mock_topic_create(cluster_.get(), topic.c_str(), partitions, 1);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
    return make_error(ErrorKind::fatal,
                      "embedded broker: create topic " + topic + ": " + rd_kafka_err2str(err));
  }
  return {};
}

Status EmbeddedBroker::create_state_topic(const std::string& topic, int partitions) {
  if (auto s = create_topic(topic, partitions); !s) return s;
  spdlog::info(
      "msg=\"state topic created; compaction check skipped on the embedded broker (it neither "
      "compacts nor answers DescribeConfigs)\" topic={} partitions={}",
      topic, partitions);
  return {};
}

}  // namespace sp
