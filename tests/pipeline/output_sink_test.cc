// OutputSink against the embedded broker: what its connect() must have done before the first
// dead letter or record goes out.
#include "pipeline/output_sink.h"

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "pipeline/embedded_broker.h"
#include "pipeline/kafka.h"
#include "state/checkpoint_store.h"
#include "tests/support/test_support.h"

namespace sp {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

constexpr const char* kInput = "social.events";
const OutputSink::Topics kTopics{"socialpulse.windows", "socialpulse.alerts", "socialpulse.dlq"};

class OutputSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_dir("sp-sink");
    auto broker = EmbeddedBroker::start();
    ASSERT_TRUE(broker) << broker.error().message;
    broker_ = std::move(*broker);
    for (const std::string& t : {std::string(kInput), kTopics.windows, kTopics.alerts, kTopics.dlq})
      ASSERT_TRUE(broker_->create_topic(t, 2));
    auto store = CheckpointStore::open(dir_);
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
  }

  void TearDown() override {
    sink_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  KafkaHandle client(rd_kafka_type_t type, std::map<std::string, std::string> settings) {
    settings["bootstrap.servers"] = broker_->bootstrap_servers();
    settings["log_level"] = "3";
    auto conf = make_kafka_conf(settings);
    EXPECT_TRUE(conf) << conf.error().message;
    if (!conf) return nullptr;
    auto handle = make_kafka_handle(type, std::move(*conf));
    EXPECT_TRUE(handle) << handle.error().message;
    return handle ? std::move(*handle) : nullptr;
  }

  // One message through the input topic, as the source hands a rejected one to the sink.
  KafkaMessage consume_one_input_message() {
    KafkaHandle producer = client(RD_KAFKA_PRODUCER, {});
    const std::string value = "{not json";
    EXPECT_EQ(rd_kafka_producev(producer.get(), RD_KAFKA_V_TOPIC(kInput), RD_KAFKA_V_PARTITION(0),
                                RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    EXPECT_EQ(rd_kafka_flush(producer.get(), 10'000), RD_KAFKA_RESP_ERR_NO_ERROR);
    consumer_ = client(RD_KAFKA_CONSUMER, {{"group.id", "sink-test"},
                                           {"enable.auto.commit", "false"},
                                           {"auto.offset.reset", "earliest"}});
    KafkaPartitionList assignment(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(assignment.get(), kInput, 0)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    EXPECT_EQ(rd_kafka_assign(consumer_.get(), assignment.get()), RD_KAFKA_RESP_ERR_NO_ERROR);
    const auto deadline = SteadyClock::now() + 30s;
    while (SteadyClock::now() < deadline) {
      KafkaMessage msg(rd_kafka_consumer_poll(consumer_.get(), 100));
      if (msg && !msg->err) return msg;
    }
    ADD_FAILURE() << "the input message never arrived";
    return nullptr;
  }

  std::string dir_;
  std::unique_ptr<EmbeddedBroker> broker_;
  std::unique_ptr<CheckpointStore> store_;
  KafkaHandle consumer_;
  std::unique_ptr<OutputSink> sink_;
};

// librdkafka asks for the metadata of a topic it has not produced to only on its once-a-second
// scan; the checkpoint after the first dead letter waited for that (up to a second, 0.5 s seen).
// connect() asks for the output topics' metadata itself: after it, a dead letter needs nothing
// more than its Produce request. Here the broker stops answering the DLQ topic's metadata
// (leader not available) once connect() returned: the dead letter must still be delivered.
TEST_F(OutputSinkTest, ConnectLearnsTheOutputTopicsSoTheFirstDeadLetterNeedsNoMetadataRequest) {
  KafkaMessage input = consume_one_input_message();
  ASSERT_NE(input, nullptr);
  auto sink = OutputSink::open(*store_, kTopics);
  ASSERT_TRUE(sink) << sink.error().message;
  sink_ = std::move(*sink);
  ASSERT_TRUE(sink_->connect(broker_->bootstrap_servers(), {{"log_level", "3"}}));

  rd_kafka_mock_topic_set_error(broker_->cluster(), kTopics.dlq.c_str(),
                                RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
  sink_->send_to_dlq(*input, kInput, Rejection{RejectReason::malformed_json, "not JSON"});
  EXPECT_TRUE(sink_->drain_dlq(SteadyClock::now() + 10s))
      << "the dead letter waited for the DLQ topic's metadata";
  rd_kafka_mock_topic_set_error(broker_->cluster(), kTopics.dlq.c_str(),
                                RD_KAFKA_RESP_ERR_NO_ERROR);
}

}  // namespace
}  // namespace sp
