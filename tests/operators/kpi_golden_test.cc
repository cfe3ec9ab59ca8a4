// Golden test: tests/data/kpi/events.txt through make_kpi_operators must produce exactly the series
// in expected_metrics.txt (values to 1e-9 relative) and the records in expected_alerts.txt. The
// hand calculation of every value is in tests/data/kpi/README.md.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "operators/kpi_operators.h"
#include "tests/operators/kpi_test_support.h"

namespace sp {
namespace {

using testing::FakeMetricsWriter;
using testing::OwnedEvent;
using testing::RecordingEmitter;

// 2026-11-24T00:00:00Z; golden times are hh:mm:ss on that day.
constexpr int64_t kDayStartMs = 1795478400000;

std::string data_path(const char* file) { return std::string(KPI_TEST_DATA_DIR) + "/" + file; }

EventTime parse_clock(const std::string& hhmmss) {
  int h = 0, m = 0, s = 0;
  EXPECT_EQ(std::sscanf(hhmmss.c_str(), "%d:%d:%d", &h, &m, &s), 3) << hhmmss;
  return from_epoch_ms(kDayStartMs + ((h * 60 + m) * 60 + s) * 1000LL);
}

Vocabulary golden_vocabulary() {
  return Vocabulary({{"acme", true}, {"globex", false}}, {"twitter", "facebook", "reviews"});
}

KpiSettings golden_kpi() {
  KpiSettings k;
  k.spike.min_events = 2;  // the golden crisis minute has 6 opinion events
  // Five minutes of data: the v1 arithmetic of the README table (no warm-up, no floor, one
  // anomalous bucket opens the episode; sentiment_drop off).
  k.spike.warmup = 0;
  k.spike.stddev_floor = 0.0;
  k.spike.persistence = 1;
  k.spike.drop_threshold = 0.0;
  // The golden buckets close as the watermark reaches their end (README), as before kpi.grace.
  k.grace = Millis{0};
  return k;
}

struct GoldenRun {
  FakeMetricsWriter metrics;
  std::vector<OutputRecord> alerts;
};

GoldenRun run_golden() {
  const Vocabulary vocab = golden_vocabulary();
  auto ops = make_kpi_operators(
      vocab, golden_kpi(),
      {{"acme", "twitter", 150}, {"acme", "facebook", 200}, {"globex", "twitter", 80}});
  RecordingEmitter emitter;
  EventTime watermark = kMinEventTime;
  std::ifstream in(data_path("events.txt"));
  EXPECT_TRUE(in.good()) << data_path("events.txt");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream words(line);
    std::string kind, word;
    words >> kind;
    std::map<std::string, std::string> kv;
    while (words >> word) {
      const auto eq = word.find('=');
      kv[word.substr(0, eq)] = word.substr(eq + 1);
    }
    if (kind == "watermark") {
      watermark = parse_clock(kv.at("t"));
      testing::advance(ops, watermark, emitter);
      continue;
    }
    EXPECT_EQ(kind, "event") << line;
    OwnedEvent o;
    Event& e = o.event;
    e.time = parse_clock(kv.at("t"));
    e.brand = vocab.brand(kv.at("brand"));
    e.channel = vocab.channel(kv.at("channel"));
    e.type = parse_event_type(kv.at("type")).value();
    if (kv.count("role")) e.role = parse_role(kv.at("role")).value();
    if (kv.count("count")) e.count = std::stoll(kv.at("count"));
    if (kv.count("reach")) e.reach = std::stoll(kv.at("reach"));
    if (kv.count("followers")) e.followers = std::stoll(kv.at("followers"));
    if (kv.count("actor")) o.set_actor(kv.at("actor"));
    if (kv.count("sentiment")) {
      e.has_sentiment = true;
      e.sentiment = std::stod(kv.at("sentiment"));
    } else if (kv.count("rating")) {
      e.has_sentiment = true;  // SPEC 1: sentiment = (rating - 3) / 2
      e.sentiment = (std::stod(kv.at("rating")) - 3.0) / 2.0;
    }
    if (kv.count("value")) {
      e.has_value = true;
      e.value = std::stod(kv.at("value"));
    }
    if (kv.count("rt")) {
      e.has_response_time = true;
      e.response_time_s = std::stod(kv.at("rt"));
    }
    testing::feed(ops, PartitionId{std::stoi(kv.at("p"))}, watermark, e);
  }
  GoldenRun run;
  for (const auto& op : ops) op->collect(run.metrics);
  run.alerts = std::move(emitter.records);
  return run;
}

TEST(KpiGolden, EveryMetricMatchesTheHandCalculation) {
  const GoldenRun run = run_golden();
  std::ifstream in(data_path("expected_metrics.txt"));
  ASSERT_TRUE(in.good());
  std::map<std::string, double> expected;
  std::string series;
  double value = 0;
  while (in >> series >> value) expected[series] = value;
  ASSERT_GT(expected.size(), 100u);

  for (const auto& [name, want] : expected) {
    const auto it = run.metrics.samples.find(name);
    if (it == run.metrics.samples.end()) {
      ADD_FAILURE() << "missing " << name;
      continue;
    }
    EXPECT_LE(std::abs(it->second - want), 1e-9 * std::max(1.0, std::abs(want)))
        << name << " got " << it->second << " want " << want;
  }
  for (const auto& [name, got] : run.metrics.samples) {
    EXPECT_TRUE(expected.count(name)) << "unexpected series " << name << " = " << got;
  }
}

TEST(KpiGolden, SpikeAlertRecordIsByteExact) {
  const GoldenRun run = run_golden();
  std::ifstream in(data_path("expected_alerts.txt"));
  ASSERT_TRUE(in.good());
  std::vector<std::pair<std::string, std::string>> expected;
  std::string key, value;
  while (in >> key >> value) expected.emplace_back(key, value);
  ASSERT_EQ(run.alerts.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(run.alerts[i].topic, OutputRecord::Topic::alerts);
    EXPECT_EQ(run.alerts[i].key, expected[i].first);
    EXPECT_EQ(run.alerts[i].value, expected[i].second);
  }
}

}  // namespace
}  // namespace sp
