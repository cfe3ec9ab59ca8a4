// Issue #17 "Done when", end to end through the embedded broker: event times spread over an hour,
// retries of late events, events late for the windows and the KPI buckets, a quiet channel and a
// spend changed by the SIGHUP reload path. /metrics must equal the hand calculation of
// tests/data/kpi_truth (README.md, expected_metrics.txt); an independent reference of the SPEC
// rules, written here without the code under test, must agree on every count and explain every
// accepted event that is in no window record.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "tests/pipeline/e2e_fixture.h"
#include "tests/support/test_support.h"

namespace sp {
namespace {

using namespace std::chrono_literals;
using testing::TopicReader;

std::string data_path(const std::string& name) {
  return std::string(SOCIALPULSE_KPI_TRUTH_DATA_DIR) + "/" + name;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> data_lines(const std::string& name) {
  std::vector<std::string> out;
  std::istringstream in(slurp(data_path(name)));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') out.push_back(line);
  }
  return out;
}

// "name{a="x",b="y"}" -> name and sorted "a=x;b=y;".
std::pair<std::string, std::string> split_series(const std::string& series) {
  const auto brace = series.find('{');
  const std::string name = series.substr(0, brace);
  std::map<std::string, std::string> labels;
  if (brace != std::string::npos) {
    size_t at = brace + 1;
    while (at < series.size() && series[at] != '}') {
      const auto eq = series.find('=', at);
      const auto close = series.find('"', eq + 2);
      labels[series.substr(at, eq - at)] = series.substr(eq + 2, close - eq - 2);
      at = close + 1;
      if (at < series.size() && series[at] == ',') ++at;
    }
  }
  std::string key;
  for (const auto& [k, v] : labels) key += k + "=" + v + ";";
  return {name, key};
}

// ---- The independent reference: SPEC 1-3 rules over the data set, nothing from src ----------
struct RefEvent {
  std::string id, brand, channel, type;
  int64_t time_s = 0;
  int64_t count = 1;
};

std::string json_string(const std::string& line, const std::string& field) {
  const std::regex re("\"" + field + "\":\"([^\"]*)\"");
  std::smatch m;
  return std::regex_search(line, m, re) ? m[1].str() : "";
}

RefEvent parse_ref(const std::string& line) {
  RefEvent e;
  e.id = json_string(line, "id");
  e.brand = json_string(line, "brand");
  e.channel = json_string(line, "channel");
  e.type = json_string(line, "type");
  int h = 0, m = 0, s = 0;
  EXPECT_EQ(std::sscanf(json_string(line, "time").c_str(), "2026-11-20T%d:%d:%dZ", &h, &m, &s), 3);
  e.time_s = (h * 60 + m) * 60 + s;
  std::smatch c;
  if (std::regex_search(line, c, std::regex("\"count\":([0-9]+)"))) e.count = std::stoll(c[1]);
  return e;
}

struct Reference {
  uint64_t accepted = 0, duplicate = 0, late_minute = 0, late_kpi = 0;
  std::map<std::string, int64_t> interactions;  // brand/channel/type -> sum of count
  std::map<std::string, int64_t> windowed;      // same, over the closed minute windows' events
  std::set<std::string> records;                // brand|channel|minute of closed windows
};

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

Reference reference(const std::vector<std::string>& lines) {
  constexpr int64_t kOutOfOrder = 10, kGrace = 30, kKpiGrace = 30, kHorizon = 15 * 60;
  constexpr int64_t kNone = INT64_MIN / 4;
  Reference r;
  int64_t stream = kNone;  // max event time seen (every message, for dedup)
  int64_t max_accepted = kNone;
  std::map<std::string, int64_t> seen_at;  // brand|id -> stream time when seen
  std::vector<RefEvent> in_windows;
  for (const auto& line : lines) {
    const RefEvent e = parse_ref(line);
    stream = std::max(stream, e.time_s);
    const std::string key = e.brand + "|" + e.id;
    if (auto it = seen_at.find(key); it != seen_at.end() && it->second >= stream - kHorizon) {
      ++r.duplicate;
      continue;
    }
    seen_at[key] = stream;
    ++r.accepted;
    r.interactions[e.brand + "/" + e.channel + "/" + e.type] += e.count;
    const int64_t wm = max_accepted == kNone ? kNone : max_accepted - kOutOfOrder;
    const int64_t minute = floor_div(e.time_s, 60);
    if (wm != kNone && minute * 60 + 60 + kGrace <= wm) {
      ++r.late_minute;
    } else {
      in_windows.push_back(e);
    }
    if (wm != kNone && minute < floor_div(wm - kKpiGrace, 60)) ++r.late_kpi;
    max_accepted = std::max(max_accepted, e.time_s);
  }
  const int64_t final_wm = max_accepted - kOutOfOrder;
  for (const RefEvent& e : in_windows) {
    const int64_t minute = floor_div(e.time_s, 60);
    if (minute * 60 + 60 + kGrace > final_wm) continue;  // still open
    r.windowed[e.brand + "/" + e.channel + "/" + e.type] += e.count;
    r.records.insert(e.brand + "|" + e.channel + "|" + std::to_string(minute));
  }
  return r;
}

class KpiTruthE2E : public testing::EmbeddedPipelineTest {
 protected:
  void SetUp() override {
    EmbeddedPipelineTest::SetUp();
    auto parsed = parse_config(slurp(data_path("config.yaml")), "config.yaml");
    ASSERT_TRUE(parsed) << parsed.error().message;
    Config fixture = config_;
    config_ = std::move(*parsed);
    config_.kafka.bootstrap_servers = fixture.kafka.bootstrap_servers;
    config_.kafka.group_id = fixture.kafka.group_id;
    config_.state.path = fixture.state.path;
    config_.metrics.listen = fixture.metrics.listen;
    reload_file_ = state_dir_ + "-reload.yaml";
    service_options_.reload_requests = &reload_requests_;
    service_options_.reload_config = [this]() -> Result<Config> {
      auto loaded = load_config(reload_file_);
      ++reload_calls_;
      return loaded;
    };
  }
  void TearDown() override {
    EmbeddedPipelineTest::TearDown();
    std::remove(reload_file_.c_str());
  }

  void write_reload_file(const std::string& roi_and_channels) {
    std::ofstream out(reload_file_);
    out << "brands: {tracked: [{name: acme, own: true}, {name: globex}]}\n" << roi_and_channels;
  }

  std::string reload_file_;
  std::atomic<uint64_t> reload_requests_{0};
  std::atomic<int> reload_calls_{0};
};

TEST_F(KpiTruthE2E, EveryKpiEqualsTheHandCalculationAndTheReference) {
  create_topics("truth.events", 1);
  const auto events = data_lines("events.jsonl");
  for (const auto& e : events) produce(config_.kafka.topics.front(), 0, "k", e);
  flush_producer();
  start_pipeline();
  std::map<std::string, double> m;
  ASSERT_TRUE(wait_for_metric("socialpulse_events_consumed_total", static_cast<double>(events.size()), &m));
  const std::string text = scrape_text();
  const auto scraped = testing::parse_metrics(text);

  // 1. The hand calculation (README.md).
  std::map<std::string, std::map<std::string, double>> expected, actual;
  for (const auto& line : data_lines("expected_metrics.txt")) {
    const auto space = line.rfind(' ');
    const auto [name, labels] = split_series(line.substr(0, space));
    EXPECT_TRUE(expected[name].emplace(labels, std::stod(line.substr(space + 1))).second) << line;
  }
  for (const auto& [series, value] : scraped) {
    const auto [name, labels] = split_series(series);
    if (expected.contains(name)) actual[name][labels] = value;
  }
  for (const auto& [name, series] : expected) {
    for (const auto& [labels, want] : series) {
      auto it = actual[name].find(labels);
      if (it == actual[name].end()) {
        ADD_FAILURE() << "missing " << name << " {" << labels << "} (want " << want << ")";
        continue;
      }
      EXPECT_NEAR(it->second, want, 1e-9 * std::max(1.0, std::fabs(want))) << name << " {" << labels << "}";
    }
    for (const auto& [labels, got] : actual[name]) {
      EXPECT_TRUE(series.contains(labels)) << "unexpected " << name << " {" << labels << "} = " << got;
    }
  }
  EXPECT_NE(text.find("socialpulse_daily_spend Configured daily spend (roi.daily_spend) by brand and "
                      "channel, in EUR"),
            std::string::npos);

  // 2. The independent reference agrees on every count.
  const Reference ref = reference(events);
  EXPECT_EQ(testing::metric_sum(scraped, "socialpulse_events_accepted_total"), ref.accepted);
  EXPECT_EQ(testing::metric_sum(scraped, "socialpulse_events_duplicate_total"), ref.duplicate);
  EXPECT_EQ(testing::metric_sum(scraped, "socialpulse_late_events_total", {"window=\"minute\""}), ref.late_minute);
  EXPECT_EQ(testing::metric_sum(scraped, "socialpulse_late_events_total", {"window=\"kpi\""}), ref.late_kpi);
  for (const auto& [key, count] : ref.interactions) {
    const auto a = key.find('/'), b = key.rfind('/');
    EXPECT_EQ(testing::metric_sum(scraped, "socialpulse_interactions_total",
                                  {"brand=\"" + key.substr(0, a) + "\"",
                                   "channel=\"" + key.substr(a + 1, b - a - 1) + "\"",
                                   "type=\"" + key.substr(b + 1) + "\""}),
              count)
        << key;
  }

  // 3. Window records hold exactly the accepted events that are neither late nor in the open
  // minute: the late counter explains every other exclusion.
  TopicReader reader(broker_->bootstrap_servers(), config_.kafka.output_topic, 1);
  const auto& records = reader.read_until(ref.records.size(), 30s);
  ASSERT_EQ(records.size(), ref.records.size());
  std::map<std::string, int64_t> windowed;
  const std::regex count_re("\"([a-z]+)\":([0-9]+)");
  for (const auto& rec : records) {
    const auto first = rec.key.find('|'), second = rec.key.find('|', first + 1);
    const std::string brand = rec.key.substr(0, first);
    const std::string channel = rec.key.substr(first + 1, second - first - 1);
    const auto open = rec.value.find("\"counts\":{"), close = rec.value.find('}', open);
    ASSERT_NE(open, std::string::npos) << rec.value;
    const std::string counts = rec.value.substr(open + 10, close - open - 10);
    for (auto it = std::sregex_iterator(counts.begin(), counts.end(), count_re);
         it != std::sregex_iterator(); ++it) {
      windowed[brand + "/" + channel + "/" + (*it)[1].str()] += std::stoll((*it)[2].str());
    }
  }
  EXPECT_EQ(windowed, ref.windowed);
  if (HasFailure()) ADD_FAILURE() << "scraped /metrics:\n" << text;

  // 4. Spend reloads without a restart; a file that does not fit the running instance is refused.
  write_reload_file(
      "channels: [twitter, facebook]\n"
      "roi: {currency: USD, daily_spend: {acme: {twitter: 250, facebook: 40}}}\n");
  ++reload_requests_;
  ASSERT_TRUE(wait_for_metric("socialpulse_daily_spend", 290, &m)) << scrape_text();
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_daily_spend", {"channel=\"twitter\""}), 250);
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_daily_spend", {"channel=\"facebook\""}), 40);
  EXPECT_NE(scrape_text().find("channel, in USD (roi.currency)"), std::string::npos);

  write_reload_file(
      "channels: [twitter, facebook, tiktok]\n"
      "roi: {currency: EUR, daily_spend: {acme: {twitter: 1, tiktok: 10}}}\n");
  ++reload_requests_;
  ASSERT_TRUE(testing::wait_until([&] { return reload_calls_.load() == 2; }, 10s));
  // One more event: a checkpoint (and a /metrics snapshot) after the refused reload.
  produce(config_.kafka.topics.front(), 0, "k",
          R"({"id":"after","time":"2026-11-20T11:00:05Z","brand":"acme","channel":"twitter","type":"like"})");
  flush_producer();
  ASSERT_TRUE(wait_for_metric("socialpulse_events_consumed_total", static_cast<double>(events.size() + 1), &m));
  EXPECT_EQ(testing::metric_sum(m, "socialpulse_daily_spend"), 290);
  EXPECT_NE(scrape_text().find("channel, in USD (roi.currency)"), std::string::npos);
}

TEST(SpendReload, RefusesBrandsAndChannelsTheRunningInstanceDoesNotHave) {
  Config running;  // acme, globex; the SPEC channels
  Config reloaded = running;
  reloaded.roi.currency = "USD";
  reloaded.roi.daily_spend = {{"acme", {{"twitter", 250}}}};
  auto ok = reloadable_spend(running, reloaded);
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->currency, "USD");
  ASSERT_EQ(ok->entries.size(), 1u);
  EXPECT_EQ(ok->entries[0], (SpendEntry{"acme", "twitter", 250}));

  reloaded.roi.daily_spend = {{"initech", {{"twitter", 1}}}};
  EXPECT_FALSE(reloadable_spend(running, reloaded));
  reloaded.roi.daily_spend = {{"acme", {{"mastodon", 1}}}};
  EXPECT_FALSE(reloadable_spend(running, reloaded));
}

}  // namespace
}  // namespace sp
