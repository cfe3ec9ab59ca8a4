// Issue #5 "Done when", end to end: windowed records through the embedded broker. The events of
// tests/data/windows_e2e/input.jsonl (explicit event times, out of order, late within grace, too
// late, a duplicate, two brands x two channels) are produced phase by phase; after each phase the
// output topic must hold exactly the records of expected.txt (hand calculation in README.md), and
// /metrics the late/record counters of expected_metrics.txt.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "tests/pipeline/e2e_fixture.h"
#include "tests/support/test_support.h"

namespace sp {
namespace {

using namespace std::chrono_literals;
using testing::TopicMessage;
using testing::TopicReader;

struct Record {
  std::string key;
  std::string value;
  bool operator==(const Record&) const = default;
  auto operator<=>(const Record&) const = default;
};

struct Phase {
  std::vector<std::string> events;  // JSON values, in production order
  std::vector<Record> records;      // records the phase closes, in emission order
};

std::string data_path(const std::string& name) {
  return std::string(SOCIALPULSE_WINDOWS_E2E_DATA_DIR) + "/" + name;
}

// Lines of a data file without comments; `--- phase N` lines start phase N (1-based).
std::vector<std::vector<std::string>> read_phased(const std::string& name) {
  std::ifstream in(data_path(name));
  EXPECT_TRUE(in.good()) << data_path(name);
  std::vector<std::vector<std::string>> phases;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind("--- phase ", 0) == 0) {
      const size_t n = std::stoul(line.substr(10));
      if (phases.size() < n) phases.resize(n);
      continue;
    }
    EXPECT_FALSE(phases.empty()) << "data line before the first phase: " << line;
    if (!phases.empty()) phases.back().push_back(line);
  }
  return phases;
}

std::vector<Phase> load_phases() {
  const auto events = read_phased("input.jsonl");
  const auto records = read_phased("expected.txt");
  std::vector<Phase> phases(std::max(events.size(), records.size()));
  for (size_t i = 0; i < events.size(); ++i) phases[i].events = events[i];
  for (size_t i = 0; i < records.size(); ++i) {
    for (const auto& line : records[i]) {
      const auto space = line.find(' ');
      phases[i].records.push_back({line.substr(0, space), line.substr(space + 1)});
    }
  }
  return phases;
}

std::string brand_of(const std::string& json) {
  const std::string tag = "\"brand\":\"";
  const auto at = json.find(tag) + tag.size();
  return json.substr(at, json.find('"', at) - at);
}

std::vector<Record> as_records(const std::vector<TopicMessage>& messages, size_t from = 0) {
  std::vector<Record> out;
  for (size_t i = from; i < messages.size(); ++i) out.push_back({messages[i].key, messages[i].value});
  return out;
}

class WindowsE2E : public testing::EmbeddedPipelineTest {
 protected:
  void SetUp() override {
    EmbeddedPipelineTest::SetUp();
    config_.brands.tracked = {{"acme", true}, {"globex", false}};
    config_.channels = {"twitter", "facebook"};
    config_.windows = {
        WindowSpec{.name = "minute", .kind = WindowKind::tumbling, .size = 1min, .grace = 10s},
        WindowSpec{.name = "hop", .kind = WindowKind::hopping, .size = 2min, .advance = 1min},
        WindowSpec{.name = "sess", .kind = WindowKind::session, .gap = 1min},
    };
    config_.watermark.max_out_of_orderness = 10s;
    // Only events move the watermark here: no partition may turn idle while a phase is awaited.
    config_.watermark.idle_timeout = 10min;
    // Binary-exact action values and cpm: every expected double is exact, whatever the order of
    // the additions.
    config_.emv.cpm = 4.0;
    config_.emv.action_value = {};
    auto value = [&](EventType t, double v) { config_.emv.action_value[static_cast<size_t>(t)] = v; };
    value(EventType::like, 0.25);
    value(EventType::comment, 0.5);
    value(EventType::share, 1.5);
    value(EventType::mention, 0.75);
    value(EventType::reply, 0.25);
    value(EventType::click, 0.5);
    phases_ = load_phases();
    ASSERT_EQ(phases_.size(), 5u);
  }

  // Produces every phase, waiting after each until the pipeline consumed it and its records
  // arrived. With several partitions, acme goes to partition 0 and globex to partition 1: each
  // phase ends with one event per partition at the same time, so the pipeline watermark is the
  // same as with one partition at every phase boundary, and no event's fate depends on how the
  // consumer interleaves the partitions.
  void run_phases(TopicReader& reader, bool ordered) {
    size_t consumed = 0;
    size_t records = 0;
    for (size_t i = 0; i < phases_.size(); ++i) {
      SCOPED_TRACE("phase " + std::to_string(i + 1));
      for (const auto& event : phases_[i].events) {
        const std::string brand = brand_of(event);
        const int32_t partition = input_partitions_ == 1 || brand == "acme" ? 0 : 1;
        produce(config_.kafka.topics.front(), partition, brand, event);
      }
      flush_producer();
      consumed += phases_[i].events.size();
      std::map<std::string, double> m;
      ASSERT_TRUE(wait_for_metric("socialpulse_events_consumed_total", static_cast<double>(consumed), &m))
          << "consumed " << testing::metric_sum(m, "socialpulse_events_consumed_total");
      const size_t before = records;
      records += phases_[i].records.size();
      const auto& got = reader.read_until(records, 30s);
      ASSERT_GE(got.size(), records);
      std::vector<Record> phase_records = as_records(got, before);
      std::vector<Record> expected = phases_[i].records;
      if (!ordered) {
        std::sort(phase_records.begin(), phase_records.end());
        std::sort(expected.begin(), expected.end());
      }
      ASSERT_EQ(phase_records.size(), expected.size());
      for (size_t r = 0; r < expected.size(); ++r) {
        EXPECT_EQ(phase_records[r].key, expected[r].key) << "record " << r;
        EXPECT_EQ(phase_records[r].value, expected[r].value) << "record " << r;
      }
    }
  }

  void expect_final_metrics() {
    std::map<std::string, double> m;
    ASSERT_TRUE(wait_for_metric("socialpulse_window_records_total", 36, &m));
    std::ifstream in(data_path("expected_metrics.txt"));
    std::string line;
    size_t checked = 0;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      const auto space = line.rfind(' ');
      const std::string series = line.substr(0, space);
      const double value = std::stod(line.substr(space + 1));
      const auto brace = series.find('{');
      std::vector<std::string> labels;
      if (brace != std::string::npos) {
        std::stringstream ss(series.substr(brace + 1, series.size() - brace - 2));
        for (std::string l; std::getline(ss, l, ',');) labels.push_back(l);
      }
      EXPECT_EQ(testing::metric_sum(m, series.substr(0, brace), labels), value) << series;
      ++checked;
    }
    EXPECT_EQ(checked, 8u);
    // No pair had an event in the last closed minute (10:08): no rate, not a stale one (#17).
    size_t rate_series = 0;
    for (const auto& [series, v] : m) rate_series += series.rfind("socialpulse_engagement_rate{", 0) == 0;
    EXPECT_EQ(rate_series, 0u);
  }

  // After a graceful stop (which flushes the producer), the topic holds exactly `n` messages.
  void expect_topic_size(const std::string& topic, int64_t n) {
    auto conf = make_kafka_conf({{"bootstrap.servers", broker_->bootstrap_servers()}, {"log_level", "4"}});
    ASSERT_TRUE(conf);
    auto consumer = make_kafka_handle(RD_KAFKA_CONSUMER, std::move(*conf));
    ASSERT_TRUE(consumer);
    int64_t lo = -1, hi = -1;
    ASSERT_EQ(rd_kafka_query_watermark_offsets(consumer->get(), topic.c_str(), 0, &lo, &hi, 5000),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    EXPECT_EQ(hi - lo, n) << topic;
  }

  std::vector<Phase> phases_;
};

TEST_F(WindowsE2E, OnePartitionEmitsExactlyTheHandComputedRecordsInOrder) {
  create_topics("events.p1", 1);
  start_pipeline();
  TopicReader reader(broker_->bootstrap_servers(), config_.kafka.output_topic, 1);
  run_phases(reader, /*ordered=*/true);
  expect_final_metrics();
  stop_pipeline();
  // A late event never changes an emitted final record: no window key was emitted twice, and
  // nothing beyond the 36 expected records reached the topic.
  std::set<std::string> keys;
  for (const auto& m : reader.messages()) EXPECT_TRUE(keys.insert(m.key).second) << m.key;
  expect_topic_size(config_.kafka.output_topic, 36);
}

TEST_F(WindowsE2E, TwoPartitionsMergeIntoTheSameRecords) {
  create_topics("events.p2", 2);
  start_pipeline();
  TopicReader reader(broker_->bootstrap_servers(), config_.kafka.output_topic, 1);
  run_phases(reader, /*ordered=*/false);
  expect_final_metrics();
  stop_pipeline();
  expect_topic_size(config_.kafka.output_topic, 36);
}

TEST_F(WindowsE2E, ReprocessingFromScratchGivesByteIdenticalRecords) {
  create_topics("events.rerun", 1);
  start_pipeline();
  TopicReader first(broker_->bootstrap_servers(), config_.kafka.output_topic, 1);
  run_phases(first, /*ordered=*/true);
  stop_pipeline();

  // Same input topic, all of it at once this time: new consumer group, empty state directory,
  // records into a fresh topic.
  const std::string first_state = state_dir_;
  state_dir_ = testing::make_temp_dir("sp-e2e-rerun");
  config_.state.path = state_dir_;
  config_.kafka.group_id += "-rerun";
  config_.kafka.output_topic = "windows.rerun.second";
  ASSERT_TRUE(broker_->create_topic(config_.kafka.output_topic, 1));
  // A new application: its own state changelog (the first run's would be restored).
  config_.kafka.state_topic += ".rerun";
  ASSERT_TRUE(broker_->create_state_topic(config_.kafka.state_topic, input_partitions_));
  start_pipeline();
  TopicReader second(broker_->bootstrap_servers(), config_.kafka.output_topic, 1);
  const auto& again = second.read_until(first.messages().size(), 60s);
  EXPECT_EQ(as_records(again), as_records(first.messages()));
  expect_final_metrics();
  std::filesystem::remove_all(first_state);
}

}  // namespace
}  // namespace sp
