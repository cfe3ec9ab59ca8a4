// End-to-end through the embedded broker, in-process: produce with librdkafka, run the pipeline,
// read /metrics over HTTP and the output/DLQ topics back with a consumer.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>

#include "pipeline/embedded_broker.h"
#include "pipeline/event_generator.h"
#include "pipeline/kafka.h"
#include "pipeline/service.h"
#include "pipeline/thread_policy.h"
#include "tests/support/test_support.h"

namespace sp {
namespace {

using namespace std::chrono_literals;

struct Message {
  std::string key;
  std::string value;
  std::map<std::string, std::string> headers;
};

class PipelineE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = EmbeddedBroker::start();
    ASSERT_TRUE(b) << b.error().message;
    broker_ = std::move(*b);
    for (const char* t : {"social.events", "socialpulse.windows", "socialpulse.alerts", "socialpulse.dlq"}) {
      ASSERT_TRUE(broker_->create_topic(t, 4));
    }
    ASSERT_TRUE(broker_->create_state_topic(config_.kafka.state_topic, 4));
    state_dir_ = testing::make_temp_dir("sp-e2e");
    config_.kafka.bootstrap_servers = broker_->bootstrap_servers();
    config_.kafka.group_id = "e2e-" + std::to_string(::getpid());
    config_.state.path = state_dir_;
    config_.state.checkpoint_interval = 200ms;
    config_.metrics.listen = "127.0.0.1:0";
  }
  void TearDown() override {
    stop_pipeline();
    std::filesystem::remove_all(state_dir_);
  }

  void produce(const std::vector<Message>& messages) {
    auto conf = make_kafka_conf({{"bootstrap.servers", broker_->bootstrap_servers()}});
    ASSERT_TRUE(conf);
    auto producer = make_kafka_handle(RD_KAFKA_PRODUCER, std::move(*conf));
    ASSERT_TRUE(producer);
    for (const auto& m : messages) {
      KafkaHeaders hdrs(rd_kafka_headers_new(m.headers.size()));
      for (const auto& [k, v] : m.headers) rd_kafka_header_add(hdrs.get(), k.c_str(), -1, v.data(), static_cast<ssize_t>(v.size()));
      const rd_kafka_resp_err_t err =
          rd_kafka_producev(producer->get(), RD_KAFKA_V_TOPIC("social.events"),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_KEY(m.key.data(), m.key.size()),
                            RD_KAFKA_V_VALUE(const_cast<char*>(m.value.data()), m.value.size()),
                            RD_KAFKA_V_HEADERS(hdrs.get()), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) (void)hdrs.release();  // owned by the message now
      ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    ASSERT_EQ(rd_kafka_flush(producer->get(), 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  void start_pipeline() {
    stop_ = false;
    port_ = 0;
    std::atomic<int> port{0};
    thread_ = std::thread([this, &port] {
      ServiceOptions options;
      options.on_started = [&port](const std::string& url, const std::string&) {
        port = std::stoi(url.substr(url.rfind(':') + 1));
      };
      status_ = run_service(config_, options, stop_);
      if (port == 0) port = -1;
    });
    ASSERT_TRUE(testing::wait_until([&] { return port != 0; }, 20s));
    ASSERT_GT(port.load(), 0) << (status_ ? "" : status_.error().message);
    port_ = port;
  }

  void stop_pipeline() {
    if (!thread_.joinable()) return;
    stop_ = true;
    thread_.join();
    EXPECT_TRUE(status_) << status_.error().message;
  }

  std::map<std::string, double> scrape() {
    auto r = testing::http_get(port_, "/metrics");
    if (!r || r->status != 200) return {};
    return testing::parse_metrics(r->body);
  }

  // Reads every message of `topic` from the beginning until `expected` arrived or the deadline.
  std::vector<Message> consume_all(const std::string& topic, size_t expected) {
    std::vector<Message> out;
    auto conf = make_kafka_conf({{"bootstrap.servers", broker_->bootstrap_servers()},
                                 {"group.id", "reader-" + topic},
                                 {"auto.offset.reset", "earliest"},
                                 {"enable.auto.commit", "false"}});
    auto consumer = make_kafka_handle(RD_KAFKA_CONSUMER, std::move(*conf));
    KafkaPartitionList list(rd_kafka_topic_partition_list_new(4));
    for (int p = 0; p < 4; ++p) rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(consumer->get(), list.get());
    testing::wait_until([&] {
      while (rd_kafka_message_t* raw = rd_kafka_consumer_poll(consumer->get(), 100)) {
        KafkaMessage m(raw);
        if (m->err) continue;
        Message msg;
        msg.key.assign(static_cast<const char*>(m->key), m->key_len);
        msg.value.assign(static_cast<const char*>(m->payload), m->len);
        rd_kafka_headers_t* h = nullptr;
        if (rd_kafka_message_headers(m.get(), &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
          const char* name;
          const void* val;
          size_t size;
          for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &val, &size) == 0; ++i) {
            msg.headers[name] = std::string(static_cast<const char*>(val), size);
          }
        }
        out.push_back(std::move(msg));
      }
      return out.size() >= expected;
    }, 30s, 10ms);
    rd_kafka_consumer_close(consumer->get());
    return out;
  }

  std::unique_ptr<EmbeddedBroker> broker_;
  Config config_;
  std::string state_dir_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  Status status_;
  int port_ = 0;
};

std::string now_rfc3339(Millis offset = Millis{0}) {
  return format_rfc3339_ms(std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now()) + offset);
}

TEST_F(PipelineE2E, CountsExactlyTheProducedEvents) {
  constexpr int kEvents = 2000;
  GeneratorOptions g;
  g.brands = {"acme", "globex"};
  EventGenerator gen(g);
  std::vector<Message> messages;
  const EventTime t0 = std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now()) - std::chrono::minutes(5);
  for (int i = 0; i < kEvents; ++i) {
    GeneratedEvent ev;
    gen.next(t0 + Millis{i * 100}, ev);
    messages.push_back({ev.key, ev.value, {}});
  }
  produce(messages);
  start_pipeline();
  std::map<std::string, double> m;
  ASSERT_TRUE(testing::wait_until([&] {
    m = scrape();
    return testing::metric_sum(m, "socialpulse_events_consumed_total") == kEvents;
  }, 60s)) << "consumed=" << testing::metric_sum(m, "socialpulse_events_consumed_total");
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_events_accepted_total"), kEvents);
  // Every generated event has count 1 except impressions; the counter sums `count`.
  EXPECT_GE(testing::metric_sum(m, "socialpulse_interactions_total"), kEvents);
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_build_info"), 1);
  auto ready = testing::http_get(port_, "/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
}

// High watermark of each partition of social.events (the fixture's topics have 4).
std::vector<int64_t> high_watermarks(const std::string& bootstrap) {
  std::vector<int64_t> out;
  auto conf = make_kafka_conf({{"bootstrap.servers", bootstrap}});
  if (!conf) return out;
  auto handle = make_kafka_handle(RD_KAFKA_PRODUCER, std::move(*conf));
  if (!handle) return out;
  for (int32_t p = 0; p < 4; ++p) {
    int64_t lo = 0;
    int64_t hi = 0;
    if (rd_kafka_query_watermark_offsets(handle->get(), "social.events", p, &lo, &hi, 5000) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      return {};
    }
    out.push_back(hi);
  }
  return out;
}

int64_t total(const std::vector<int64_t>& v) { return std::accumulate(v.begin(), v.end(), int64_t{0}); }

// bench_query_api's full-speed generator: in turn over the partitions, and never more than
// max_ahead (plus the 1024 events between two checks) ahead of what was consumed, so that it
// cannot outrun the embedded broker's retention.
TEST_F(PipelineE2E, AFullSpeedGeneratorGoesRoundRobinAndStaysBoundedAheadOfConsumption) {
  std::atomic<uint64_t> consumed{0};
  TrafficOptions traffic;
  traffic.rate = 0;
  traffic.events = 6000;
  traffic.partitions = 4;
  traffic.max_ahead = 2000;
  traffic.consumed = [&] { return consumed.load(); };
  std::atomic<bool> stop{false};
  Status status;
  std::thread generator([&] {
    status = produce_traffic(broker_->bootstrap_servers(), "social.events", {}, traffic, stop);
  });
  std::vector<int64_t> hw;
  ASSERT_TRUE(testing::wait_until([&] { return total(hw = high_watermarks(broker_->bootstrap_servers())) >= 2000; }, 30s))
      << total(hw);
  // Held there while nothing is consumed (librdkafka's linger lets a last batch arrive).
  EXPECT_FALSE(testing::wait_until([&] { return total(hw = high_watermarks(broker_->bootstrap_servers())) > 3072; }, 1s))
      << total(hw);
  consumed = 6000;
  generator.join();
  ASSERT_TRUE(status) << status.error().message;
  EXPECT_EQ(high_watermarks(broker_->bootstrap_servers()), (std::vector<int64_t>{1500, 1500, 1500, 1500}));
}

// Each named thread of this process and its nice value (/proc/self/task/*/stat, field 19).
std::multimap<std::string, int> thread_nice_values() {
  std::multimap<std::string, int> out;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    std::ifstream stat(task.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(line.substr(close + 2));  // from field 3 (state) on
    std::string field;
    for (int i = 3; i < 19 && fields >> field;) ++i;
    int nice = 0;
    if (fields >> nice) out.emplace(name, nice);
  }
  return out;
}

// A query or a scrape gets a core within milliseconds while ingest keeps both busy (issue #18):
// the HTTP thread keeps the caller's priority, the ingest threads run kThroughputNice below it.
TEST_F(PipelineE2E, TheHttpThreadKeepsItsPriorityAndTheIngestThreadsRunBelowIt) {
  const int base = getpriority(PRIO_PROCESS, 0);
  start_pipeline();
  std::multimap<std::string, int> threads;
  ASSERT_TRUE(testing::wait_until([&] {
    threads = thread_nice_values();
    return threads.contains("sp-http") && threads.contains("sp-source");
  }, 30s));
  const auto http = threads.equal_range("sp-http");
  ASSERT_EQ(std::distance(http.first, http.second), 1);
  EXPECT_EQ(http.first->second, base);
  EXPECT_EQ(threads.find("sp-source")->second, throughput_nice(base));
  // librdkafka names its threads rdk:...; the test's own broker and producer run at the test's
  // priority, the service's consumer and producers below it.
  EXPECT_GE(std::count_if(threads.begin(), threads.end(),
                          [&](const auto& t) {
                            return t.first == "rdk:main" &&
                                   t.second == throughput_nice(base);
                          }),
            1);
}

TEST_F(PipelineE2E, RejectsGoToTheDlqWithReasonsAndTheAccountingHolds) {
  const std::string valid = R"({"id":"v1","time":")" + now_rfc3339() + R"(","brand":"acme","channel":"twitter","type":"like"})";
  const std::string valid2 = R"({"id":"v2","time":")" + now_rfc3339() + R"(","brand":"acme","channel":"twitter","type":"share","count":3})";
  const std::string malformed = R"({"id":"m1","time":)";
  const std::string schema = R"({"id":"s1","time":")" + now_rfc3339() + R"(","brand":"acme","channel":"twitter","type":"poke"})";
  const std::string future = R"({"id":"f1","time":")" + now_rfc3339(std::chrono::hours(2)) + R"(","brand":"acme","channel":"twitter","type":"like"})";
  const std::string oversized = R"({"id":"o1","text":")" + std::string(70000, 'x') + R"("})";
  std::vector<Message> messages = {
      {"acme", valid, {}},     {"acme", valid2, {}},          {"acme", malformed, {{"trace", "t-1"}}},
      {"acme", schema, {}},    {"acme", future, {}},          {"acme", oversized, {}},
      {"acme", valid, {}},  // duplicate of v1
  };
  produce(messages);
  start_pipeline();
  std::map<std::string, double> m;
  ASSERT_TRUE(testing::wait_until([&] {
    m = scrape();
    return testing::metric_sum(m, "socialpulse_events_consumed_total") == 7;
  }, 60s));
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_events_accepted_total"), 2);
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_events_duplicate_total"), 1);
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_events_rejected_total", {"reason=\"malformed_json\""}), 1);
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_events_rejected_total", {"reason=\"schema\""}), 1);
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_events_rejected_total", {"reason=\"future_time\""}), 1);
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_events_rejected_total", {"reason=\"too_large\""}), 1);
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_events_rejected_total"), 4);
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_dlq_messages_total"), 4);
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_interactions_total", {"brand=\"acme\"", "type=\"share\""}), 3);
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_interactions_total"), 4);

  auto dlq = consume_all("socialpulse.dlq", 4);
  ASSERT_EQ(dlq.size(), 4u);
  std::map<std::string, Message> by_reason;
  for (auto& d : dlq) by_reason[d.headers["sp_error_reason"]] = d;
  ASSERT_EQ(by_reason.size(), 4u);
  EXPECT_EQ(by_reason["malformed_json"].value, malformed);
  EXPECT_EQ(by_reason["malformed_json"].key, "acme");
  EXPECT_EQ(by_reason["malformed_json"].headers["trace"], "t-1");  // original headers kept
  EXPECT_EQ(by_reason["schema"].value, schema);
  EXPECT_NE(by_reason["schema"].headers["sp_error_detail"].find("type"), std::string::npos);
  EXPECT_EQ(by_reason["future_time"].value, future);
  EXPECT_EQ(by_reason["too_large"].value, oversized);
  for (auto& [reason, d] : by_reason) {
    EXPECT_EQ(d.headers["sp_source_topic"], "social.events") << reason;
    EXPECT_FALSE(d.headers["sp_source_partition"].empty()) << reason;
    EXPECT_FALSE(d.headers["sp_source_offset"].empty()) << reason;
    EXPECT_EQ(d.headers["sp_failed_at"].size(), 24u) << reason;
    EXPECT_FALSE(d.headers["sp_error_detail"].empty()) << reason;
  }
}

TEST_F(PipelineE2E, RestartResumesFromStoredOffsetsWithoutDoubleCounting) {
  std::vector<Message> first, second;
  for (int i = 0; i < 300; ++i) {
    const std::string v = R"({"id":"a)" + std::to_string(i) + R"(","time":")" + now_rfc3339(Millis{-60000}) +
                          R"(","brand":"globex","channel":"blog","type":"click"})";
    (i < 200 ? first : second).push_back({"globex", v, {}});
  }
  produce(first);
  start_pipeline();
  ASSERT_TRUE(testing::wait_until([&] {
    return testing::metric_sum(scrape(), "socialpulse_web_visits_total") == 200;
  }, 60s));
  stop_pipeline();
  produce(second);
  start_pipeline();
  std::map<std::string, double> m;
  ASSERT_TRUE(testing::wait_until([&] {
    m = scrape();
    return testing::metric_sum(m, "socialpulse_events_consumed_total") >= 300;
  }, 60s));
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_events_consumed_total"), 300);
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_web_visits_total"), 300);
}

}  // namespace
}  // namespace sp
