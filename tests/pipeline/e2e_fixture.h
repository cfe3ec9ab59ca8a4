#pragma once
// In-process end-to-end fixture shared by the windowing and KPI e2e suites: an embedded broker,
// a producer that targets explicit partitions, the whole service (run_service) in a thread, a
// /metrics scraper and a topic reader that keeps its position across calls.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/config.h"
#include "pipeline/embedded_broker.h"
#include "pipeline/kafka.h"
#include "pipeline/service.h"

namespace sp::testing {

struct TopicMessage {
  std::string key;
  std::string value;
  int32_t partition = 0;
};

// Reads a topic from the beginning of every partition; each read() continues where the last
// one stopped.
class TopicReader {
 public:
  TopicReader(const std::string& bootstrap, const std::string& topic, int partitions);
  ~TopicReader();
  TopicReader(const TopicReader&) = delete;
  TopicReader& operator=(const TopicReader&) = delete;

  // Polls until `total` messages were read since construction or the deadline passed.
  const std::vector<TopicMessage>& read_until(size_t total, std::chrono::milliseconds deadline);
  // Polls for `quiet` and returns everything read so far (for "nothing more arrives" checks).
  const std::vector<TopicMessage>& drain(std::chrono::milliseconds quiet);
  const std::vector<TopicMessage>& messages() const { return messages_; }

 private:
  void poll_once(int timeout_ms);
  KafkaHandle consumer_;
  std::vector<TopicMessage> messages_;
};

class EmbeddedPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Creates the input topic with `input_partitions` and the output/alerts/DLQ topics with one
  // partition each (a total order for record comparisons), and fills config_ for them.
  void create_topics(const std::string& input, int input_partitions);

  void produce(const std::string& topic, int32_t partition, const std::string& key,
               const std::string& value);
  void flush_producer();

  void start_pipeline();
  void stop_pipeline();

  std::string scrape_text();
  std::map<std::string, double> scrape();
  // Scrapes until `name` (summed over series) equals `value` or the deadline passes.
  bool wait_for_metric(const std::string& name, double value, std::map<std::string, double>* last,
                       std::chrono::milliseconds deadline = std::chrono::seconds(60));

  std::unique_ptr<EmbeddedBroker> broker_;
  Config config_;
  ServiceOptions service_options_;  // start_pipeline() adds on_started
  std::string state_dir_;
  int input_partitions_ = 1;

 private:
  KafkaHandle producer_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  Status status_;
  int port_ = 0;
};

}  // namespace sp::testing
