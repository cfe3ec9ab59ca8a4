#include "tests/pipeline/e2e_fixture.h"

#include <unistd.h>

#include <filesystem>

#include "pipeline/service.h"
#include "tests/support/test_support.h"

namespace sp::testing {

using namespace std::chrono_literals;

TopicReader::TopicReader(const std::string& bootstrap, const std::string& topic, int partitions) {
  static std::atomic<int> readers{0};
  auto conf = make_kafka_conf({{"bootstrap.servers", bootstrap},
                               {"group.id", "reader-" + std::to_string(::getpid()) + "-" +
                                                std::to_string(readers++)},
                               {"enable.auto.commit", "false"},
                               {"enable.partition.eof", "false"},
                               {"fetch.wait.max.ms", "20"},
                               {"log_level", "4"}});
  EXPECT_TRUE(conf);
  auto consumer = make_kafka_handle(RD_KAFKA_CONSUMER, std::move(*conf));
  EXPECT_TRUE(consumer);
  consumer_ = std::move(*consumer);
  KafkaPartitionList list(rd_kafka_topic_partition_list_new(partitions));
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(consumer_.get(), list.get());
}

TopicReader::~TopicReader() {
  if (consumer_) rd_kafka_consumer_close(consumer_.get());
}

void TopicReader::poll_once(int timeout_ms) {
  while (rd_kafka_message_t* raw = rd_kafka_consumer_poll(consumer_.get(), timeout_ms)) {
    KafkaMessage m(raw);
    timeout_ms = 0;
    if (m->err) continue;
    TopicMessage msg;
    if (m->key) msg.key.assign(static_cast<const char*>(m->key), m->key_len);
    if (m->payload) msg.value.assign(static_cast<const char*>(m->payload), m->len);
    msg.partition = m->partition;
    messages_.push_back(std::move(msg));
  }
}

const std::vector<TopicMessage>& TopicReader::read_until(size_t total,
                                                         std::chrono::milliseconds deadline) {
  wait_until(
      [&] {
        poll_once(50);
        return messages_.size() >= total;
      },
      deadline, 1ms);
  return messages_;
}

const std::vector<TopicMessage>& TopicReader::drain(std::chrono::milliseconds quiet) {
  const auto until = std::chrono::steady_clock::now() + quiet;
  while (std::chrono::steady_clock::now() < until) poll_once(50);
  return messages_;
}

void EmbeddedPipelineTest::SetUp() {
  auto b = EmbeddedBroker::start();
  ASSERT_TRUE(b) << b.error().message;
  broker_ = std::move(*b);
  state_dir_ = make_temp_dir("sp-e2e");
  config_.kafka.bootstrap_servers = broker_->bootstrap_servers();
  config_.kafka.group_id = "e2e-" + std::to_string(::getpid());
  config_.state.path = state_dir_;
  config_.state.checkpoint_interval = 200ms;
  config_.metrics.listen = "127.0.0.1:0";
  auto conf = make_kafka_conf({{"bootstrap.servers", broker_->bootstrap_servers()},
                               {"linger.ms", "0"},
                               {"log_level", "4"}});
  ASSERT_TRUE(conf);
  auto producer = make_kafka_handle(RD_KAFKA_PRODUCER, std::move(*conf));
  ASSERT_TRUE(producer);
  producer_ = std::move(*producer);
}

void EmbeddedPipelineTest::TearDown() {
  stop_pipeline();
  producer_.reset();
  std::filesystem::remove_all(state_dir_);
}

void EmbeddedPipelineTest::create_topics(const std::string& input, int input_partitions) {
  input_partitions_ = input_partitions;
  ASSERT_TRUE(broker_->create_topic(input, input_partitions));
  const std::string suffix = "." + input;
  config_.kafka.topics = {input};
  config_.kafka.output_topic = "windows" + suffix;
  config_.kafka.alerts_topic = "alerts" + suffix;
  config_.kafka.dlq_topic = "dlq" + suffix;
  config_.kafka.state_topic = "state" + suffix;
  ASSERT_TRUE(broker_->create_state_topic(config_.kafka.state_topic, input_partitions));
  for (const auto* t : {&config_.kafka.output_topic, &config_.kafka.alerts_topic,
                        &config_.kafka.dlq_topic}) {
    ASSERT_TRUE(broker_->create_topic(*t, 1));
  }
}

void EmbeddedPipelineTest::produce(const std::string& topic, int32_t partition,
                                   const std::string& key, const std::string& value) {
  ASSERT_EQ(rd_kafka_producev(producer_.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                              RD_KAFKA_V_PARTITION(partition),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_KEY(key.data(), key.size()),
                              RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                              RD_KAFKA_V_END),
            RD_KAFKA_RESP_ERR_NO_ERROR);
}

void EmbeddedPipelineTest::flush_producer() {
  ASSERT_EQ(rd_kafka_flush(producer_.get(), 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

void EmbeddedPipelineTest::start_pipeline() {
  stop_ = false;
  port_ = 0;
  std::atomic<int> port{0};
  thread_ = std::thread([this, &port] {
    ServiceOptions options = service_options_;
    options.on_started = [&port](const std::string& url, const std::string&) {
      port = std::stoi(url.substr(url.rfind(':') + 1));
    };
    status_ = run_service(config_, options, stop_);
    if (port == 0) port = -1;
  });
  ASSERT_TRUE(wait_until([&] { return port != 0; }, 20s));
  ASSERT_GT(port.load(), 0) << (status_ ? "" : status_.error().message);
  port_ = port;
}

void EmbeddedPipelineTest::stop_pipeline() {
  if (!thread_.joinable()) return;
  stop_ = true;
  thread_.join();
  EXPECT_TRUE(status_) << status_.error().message;
}

std::string EmbeddedPipelineTest::scrape_text() {
  auto r = http_get(port_, "/metrics");
  if (!r || r->status != 200) return {};
  return r->body;
}

std::map<std::string, double> EmbeddedPipelineTest::scrape() {
  return parse_metrics(scrape_text());
}

bool EmbeddedPipelineTest::wait_for_metric(const std::string& name, double value,
                                           std::map<std::string, double>* last,
                                           std::chrono::milliseconds deadline) {
  std::map<std::string, double> m;
  const bool ok = wait_until(
      [&] {
        m = scrape();
        return metric_sum(m, name) == value;
      },
      deadline);
  if (last) *last = std::move(m);
  return ok;
}

}  // namespace sp::testing
