// State survives config changes (SPEC 6 "restored state is keyed by name", issue #14): `socialpulse
// run` is stopped with SIGTERM after a first phase of the data, the config is changed, and a second
// run on the same state dir consumes the second phase. It must start, exit 0 on SIGTERM, end with
// exactly the counters an uninterrupted run with the initial config gives for every brand x channel
// the change left alone, and count an added brand, channel or window from the restart on.
//
// One input partition, for the reason given in crash_test.cc: with one partition the watermark,
// and so every late-event count and window, is a function of the offset alone and the comparison
// with the uninterrupted run can be exact. Each case has its own input topic (the same bytes as the
// reference's) so that its first run sees the first phase only.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <regex>
#include <set>
#include <sstream>

#include "pipeline/event_generator.h"
#include "pipeline/kafka.h"
#include "tests/support/test_support.h"

namespace sp {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;

const std::string kBinary = SOCIALPULSE_BINARY;
constexpr int kGeneratedPerPhase = 1200;
constexpr Millis kSpacing{500};  // 1200 events = 10 minutes of event time per phase

// A sample's name and labels; `text()` is a canonical form (labels sorted by name).
struct Series {
  std::string name;
  std::map<std::string, std::string> labels;

  static Series parse(const std::string& text) {
    Series s;
    const auto brace = text.find('{');
    s.name = text.substr(0, brace);
    if (brace == std::string::npos) return s;
    static const std::regex label(R"re(([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)")re");
    for (std::sregex_iterator
             it(text.begin() + static_cast<std::ptrdiff_t>(brace), text.end(), label),
         end;
         it != end; ++it) {
      s.labels[(*it)[1]] = (*it)[2];
    }
    return s;
  }
  bool has(const std::string& key) const { return labels.count(key) != 0; }
  const std::string& at(const std::string& key) const { return labels.at(key); }
  std::string text() const {
    std::string out = name;
    if (labels.empty()) return out;
    out += '{';
    for (const auto& [k, v] : labels) out += k + "=\"" + v + "\",";
    out.back() = '}';
    return out;
  }
};

// canonical series text -> value
using Samples = std::map<std::string, double>;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Every counter and histogram sample that derives from the data (as in crash_test.cc: process-local
// observations such as checkpoint durations and latencies are left out), in canonical form.
Samples data_counters(const std::map<std::string, double>& scraped) {
  Samples out;
  for (const auto& [text, value] : scraped) {
    const Series s = Series::parse(text);
    if (s.name.rfind("socialpulse_checkpoint_", 0) == 0 ||
        s.name.rfind("socialpulse_event_latency", 0) == 0 ||
        s.name.rfind("socialpulse_changelog_", 0) == 0 ||
        s.name.rfind("socialpulse_state_restore_", 0) == 0)
      continue;
    if (ends_with(s.name, "_total") || ends_with(s.name, "_count") || ends_with(s.name, "_sum") ||
        ends_with(s.name, "_bucket")) {
      out[s.text()] = value;
    }
  }
  return out;
}

// Counters summed in floating point (opinion weight, scores, EMV) may be added in another order
// after a restore; anything a lost or doubled event changes is far above this tolerance.
bool same_value(double a, double b) {
  return std::abs(a - b) <= 1e-9 * std::max({1.0, std::abs(a), std::abs(b)});
}

// Compares the series `selected` picks from both maps: a series missing on one side counts as 0
// (a counter that never moved may not be exported). One failure lists the first differences.
void expect_same_series(const Samples& expected, const Samples& actual,
                        const std::function<bool(const Series&)>& selected,
                        const std::string& what) {
  std::set<std::string> keys;
  for (const auto& [k, v] : expected) keys.insert(k);
  for (const auto& [k, v] : actual) keys.insert(k);
  int compared = 0, differing = 0;
  std::ostringstream report;
  report.precision(17);
  for (const std::string& key : keys) {
    if (!selected(Series::parse(key))) continue;
    ++compared;
    const auto e = expected.find(key);
    const auto a = actual.find(key);
    const double ev = e == expected.end() ? 0.0 : e->second;
    const double av = a == actual.end() ? 0.0 : a->second;
    if (same_value(ev, av)) continue;
    if (++differing <= 25) {
      report << "  " << key << ": expected " << ev << (e == expected.end() ? " (absent)" : "")
             << ", got " << av << (a == actual.end() ? " (absent)" : "") << "\n";
    }
  }
  EXPECT_GT(compared, 0) << what << ": nothing compared";
  EXPECT_EQ(differing, 0) << what << ": " << differing << " of " << compared << " series differ\n"
                          << report.str();
}

// The counter operator's families: one cell per brand x channel (plus ideas per brand x role).
// Their keys are what a removed brand or channel drops and an added one starts.
bool is_cell_family(const Series& s) {
  return s.has("channel") || s.name == "socialpulse_ideas_total";
}

struct WindowDef {
  std::string name;
  std::string yaml;
};

struct RunConfig {
  std::vector<std::string> brands;  // the first one is the company's own
  std::vector<std::string> channels;
  std::vector<WindowDef> windows;

  RunConfig with_brand(const std::string& b) const {
    RunConfig c = *this;
    c.brands.push_back(b);
    return c;
  }
  RunConfig with_channel(const std::string& ch) const {
    RunConfig c = *this;
    c.channels.push_back(ch);
    return c;
  }
  RunConfig with_window(WindowDef w) const {
    RunConfig c = *this;
    c.windows.push_back(std::move(w));
    return c;
  }
  RunConfig without_brand(const std::string& b) const {
    RunConfig c = *this;
    c.brands.erase(std::remove(c.brands.begin(), c.brands.end(), b), c.brands.end());
    return c;
  }
  RunConfig without_channel(const std::string& ch) const {
    RunConfig c = *this;
    c.channels.erase(std::remove(c.channels.begin(), c.channels.end(), ch), c.channels.end());
    return c;
  }
};

// The generator's brands and channels (GeneratorOptions' defaults) and the default windows, written
// out so that each case differs from it only by what it changes.
const RunConfig kInitial{
    {"acme", "globex", "initech"},
    {"twitter", "facebook", "instagram", "linkedin", "youtube", "tiktok", "blog", "forum",
     "reviews", "web"},
    {{"minute", "{name: minute, kind: tumbling, size: 1m, grace: 30s, emit: final}"},
     {"hourly", "{name: hourly, kind: hopping, size: 1h, advance: 5m, grace: 2m}"},
     {"sessions", "{name: sessions, kind: session, gap: 30m}"}}};

// The brands, channels and windows a config change leaves alone. `other` is unchanged only when
// the list it complements is: adding or removing a name moves events into or out of it.
struct Unchanged {
  std::set<std::string> brands, channels, windows;

  Unchanged(const RunConfig& before, const RunConfig& after) {
    auto common = [](const std::vector<std::string>& a, const std::vector<std::string>& b) {
      std::set<std::string> out;
      for (const auto& x : a) {
        if (std::find(b.begin(), b.end(), x) != b.end()) out.insert(x);
      }
      if (out.size() == a.size() && out.size() == b.size()) out.insert("other");
      return out;
    };
    brands = common(before.brands, after.brands);
    channels = common(before.channels, after.channels);
    windows.insert("kpi");  // the KPI minute buckets' late events, not a configured window
    for (const auto& w : before.windows) {
      for (const auto& v : after.windows) {
        if (w.name == v.name && w.yaml == v.yaml) windows.insert(w.name);
      }
    }
  }

  // A data counter whose value does not depend on the change: a brand's (x channel's) counters,
  // a window's late events, the event accounting. Window records are counted over every brand x
  // channel x window, so any change moves their total.
  bool operator()(const Series& s) const {
    if (s.name == "socialpulse_window_records_total" ||
        s.name == "socialpulse_state_dropped_keys_total" ||
        s.name == "socialpulse_series_folded_total") {
      return false;
    }
    if (s.has("brand"))
      return brands.count(s.at("brand")) && (!s.has("channel") || channels.count(s.at("channel")));
    if (s.has("channel")) return channels.count(s.at("channel")) != 0;
    if (s.has("window")) return windows.count(s.at("window")) != 0;
    return true;
  }
};

struct Message {
  std::string key;
  std::string value;
};

// What both runs of one case scraped once each had consumed everything it was given.
struct RestartOutcome {
  Samples before;  // first run, config before the change, first phase
  Samples after;   // second run, same state dir, config after the change, both phases
};

class ConfigChangeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = testing::make_temp_dir("sp-cfgchange");
    std::string topics = "ref.events, ref.windows";
    for (const char* c : {"same", "add", "remove", "window"}) {
      topics += std::string(", ") + c + ".events, " + c + ".windows";
    }
    const std::string broker_config = write("broker.yaml", "kafka:\n  topics: [" + topics + "]\n");
    broker_ = new ChildProcess({kBinary, "broker", "-c", broker_config, "--partitions", "1"},
                               dir_ + "/broker");
    ASSERT_TRUE(testing::wait_until(
        [&] {
          std::smatch m;
          const std::string out = broker_->stdout_text();
          if (!std::regex_search(out, m, std::regex(R"(([0-9.]+:[0-9]+))"))) return false;
          bootstrap_ = m[1];
          return true;
        },
        20s))
        << broker_->stderr_text();
    make_data_set();

    // The reference: one uninterrupted run with the initial config over both phases.
    ASSERT_NO_FATAL_FAILURE(produce("ref.events", phase1_));
    ASSERT_NO_FATAL_FAILURE(produce("ref.events", phase2_));
    const int port = testing::free_port();
    ChildProcess ref({kBinary, "run", "-c", config("ref", "ref", kInitial, port)}, dir_ + "/ref");
    ASSERT_NO_FATAL_FAILURE(consume_all(ref, port, total(), reference_));
    ASSERT_NO_FATAL_FAILURE(stop(ref, "reference run"));
    ASSERT_EQ(testing::metric_sum(reference_, "socialpulse_events_consumed_total"), total());
    ASSERT_GT(testing::metric_sum(reference_, "socialpulse_events_duplicate_total"), 0);
    ASSERT_GT(testing::metric_sum(reference_, "socialpulse_events_rejected_total"), 0);
    ASSERT_GT(testing::metric_sum(reference_, "socialpulse_late_events_total"), 0)
        << "the data must hold late events";
    for (const char* brand : {"acme", "globex", "initech", "other"}) {
      ASSERT_GT(testing::metric_sum(reference_, "socialpulse_interactions_total",
                                    {"brand=\"" + std::string(brand) + "\""}),
                0)
          << brand;
    }
  }

  static void TearDownTestSuite() {
    delete broker_;
    broker_ = nullptr;
    std::filesystem::remove_all(dir_);
  }

  static std::string write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  static double total() { return static_cast<double>(phase1_.size() + phase2_.size()); }

  // Generated traffic of acme, globex and initech on the ten default channels, with the hard cases
  // of crash_test.cc (out-of-order, late, duplicate and malformed messages), plus hand-written
  // events for a brand (`newco`) and a channel (`mastodon`) the initial config does not list. Both
  // phases hold all of it; a retry of the last newco event of phase 1 opens phase 2 (a duplicate
  // across the restart). The newco and mastodon events of phase 2 are tallied in `added_`: what
  // the run that adds them must count for them.
  static void make_data_set() {
    EventGenerator gen(GeneratorOptions{});
    std::mt19937 rng(1234);
    const EventTime t0 =
        std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now()) - 2h;
    std::vector<GeneratedEvent> sent;
    std::string last_newco;
    for (int i = 0; i < 2 * kGeneratedPerPhase; ++i) {
      std::vector<Message>& out = i < kGeneratedPerPhase ? phase1_ : phase2_;
      const bool second = i >= kGeneratedPerPhase;
      if (i == kGeneratedPerPhase) out.push_back({"newco", last_newco});
      const EventTime base = t0 + kSpacing * i;
      EventTime t = base;
      if (i % 10 == 3) t -= Millis{2000 + static_cast<int64_t>(rng() % 20000)};  // out of order
      if (i % 150 == 77) t -= std::chrono::minutes(3);                           // late
      GeneratedEvent e;
      gen.next(t, e);
      out.push_back({e.key, e.value});
      sent.push_back(e);
      if (i % 40 == 39)
        out.push_back(
            {sent[static_cast<size_t>(i - 5)].key, sent[static_cast<size_t>(i - 5)].value});
      if (i % 90 == 45)
        out.push_back({e.key, "{\"id\":\"cut-" + std::to_string(i) + "\",\"brand\":"});

      // Hand-written events at this step's in-order time.
      const std::string time = std::to_string(base.time_since_epoch().count());
      auto event = [&](const std::string& id, const std::string& brand, const std::string& channel,
                       const std::string& rest) {
        return "{\"id\":\"" + id + "\",\"time\":" + time + ",\"brand\":\"" + brand +
               "\",\"channel\":\"" + channel + "\"," + rest + "}";
      };
      if (i % 20 == 7) {
        const std::string channel = i % 40 == 7 ? "mastodon" : "twitter";
        last_newco = event(
            "newco-" + std::to_string(i), "newco", channel,
            R"("type":"mention","reach":100,"actor":{"id":"fan-)" + std::to_string(i % 7) + "\"}");
        out.push_back({"newco", last_newco});
        if (i % 200 == 47) out.push_back({"newco", last_newco});  // an immediate retry: duplicate
        if (second) {
          added_[cell("socialpulse_interactions_total", "newco", channel, "mention")] += 1;
          added_[cell("socialpulse_reach_total", "newco", channel)] += 100;
        }
      }
      if (i % 25 == 11) {
        out.push_back({"acme", event("toot-" + std::to_string(i), "acme", "mastodon",
                                     R"("type":"like","actor":{"id":"acme-u)" +
                                         std::to_string(i % 5) + "\"}")});
        if (second) {
          added_[cell("socialpulse_interactions_total", "acme", "mastodon", "like")] += 1;
          added_[cell("socialpulse_reach_total", "acme", "mastodon")] += 0;
        }
      }
    }
  }

  static std::string cell(const std::string& name, const std::string& brand,
                          const std::string& channel, const std::string& type = "") {
    Series s{name, {{"brand", brand}, {"channel", channel}}};
    if (!type.empty()) s.labels["type"] = type;
    return s.text();
  }

  static void produce(const std::string& topic, const std::vector<Message>& messages) {
    auto conf = make_kafka_conf({{"bootstrap.servers", bootstrap_}});
    ASSERT_TRUE(conf);
    auto producer = make_kafka_handle(RD_KAFKA_PRODUCER, std::move(*conf));
    ASSERT_TRUE(producer);
    for (const Message& m : messages) {
      ASSERT_EQ(
          rd_kafka_producev(
              producer->get(), RD_KAFKA_V_TOPIC(topic.c_str()),
              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(m.key.data(), m.key.size()),
              RD_KAFKA_V_VALUE(const_cast<char*>(m.value.data()), m.value.size()), RD_KAFKA_V_END),
          RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    ASSERT_EQ(rd_kafka_flush(producer->get(), 20000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  static std::string config(const std::string& file, const std::string& name, const RunConfig& c,
                            int port) {
    std::ostringstream y;
    y << "kafka:\n  bootstrap_servers: " << bootstrap_ << "\n  group_id: " << name << "\n"
      << "  topics: [" << name << ".events]\n  output_topic: " << name
      << ".windows\n"
      // The mock coordinator's lowest workable session (see recovery_e2e_test.cc).
      << "  properties: {session.timeout.ms: '3500', heartbeat.interval.ms: '200'}\n"
      << "state:\n  path: " << dir_ << "/state-" << name << "\n  checkpoint_interval: 100ms\n"
      << "metrics:\n  listen: 127.0.0.1:" << port << "\n"
      << "brands:\n  unknown: other\n  tracked:\n";
    for (const auto& b : c.brands) {
      y << "    - {name: " << b << (b == c.brands.front() ? ", own: true}\n" : "}\n");
    }
    y << "channels:\n";
    for (const auto& ch : c.channels) y << "  - " << ch << "\n";
    y << "windows:\n";
    for (const auto& w : c.windows) y << "  - " << w.yaml << "\n";
    // No wall-clock idleness: the watermark must depend on the data alone.
    y << "watermark: {idle_timeout: 24h}\n";
    return write(file + ".yaml", y.str());
  }

  static std::map<std::string, double> scrape(int port) {
    auto r = testing::http_get(port, "/metrics");
    return r && r->status == 200 ? testing::parse_metrics(r->body)
                                 : std::map<std::string, double>{};
  }

  static bool exited(ChildProcess& run) { return run.wait(0ms).has_value(); }

  // Waits until `run` reports `count` consumed messages (its counters are then those of the data
  // given so far) and returns its data counters; fails at once if the process ends first.
  static void consume_all(ChildProcess& run, int port, double count, Samples& out) {
    std::map<std::string, double> m;
    const bool done = testing::wait_until(
        [&] {
          if (exited(run)) return true;
          m = scrape(port);
          return testing::metric_sum(m, "socialpulse_events_consumed_total") >= count;
        },
        60s);
    ASSERT_FALSE(exited(run)) << "exited with " << *run.wait(0ms) << " before consuming " << count
                              << " messages:\n"
                              << run.stderr_text();
    ASSERT_TRUE(done) << "consumed " << testing::metric_sum(m, "socialpulse_events_consumed_total")
                      << " of " << count << " messages in 60 s:\n"
                      << run.stderr_text();
    out = data_counters(m);
  }

  static void stop(ChildProcess& run, const std::string& what) {
    run.signal(SIGTERM);
    const auto code = run.wait(15s);
    ASSERT_TRUE(code.has_value()) << what << " did not exit within 15 s of SIGTERM:\n"
                                  << run.stderr_text();
    ASSERT_EQ(*code, 0) << what << " exit code on SIGTERM:\n" << run.stderr_text();
  }

  // Case `name`: the first phase with config `before`, SIGTERM, the second phase produced, then a
  // run with config `after` on the same state dir until it consumed both phases, SIGTERM.
  static void restart_with_changed_config(const std::string& name, const RunConfig& before,
                                          const RunConfig& after, RestartOutcome& outcome) {
    ASSERT_NO_FATAL_FAILURE(produce(name + ".events", phase1_));
    {
      const int port = testing::free_port();
      ChildProcess first({kBinary, "run", "-c", config(name + "-before", name, before, port)},
                         dir_ + "/" + name + "-before");
      ASSERT_NO_FATAL_FAILURE(
          consume_all(first, port, static_cast<double>(phase1_.size()), outcome.before));
      ASSERT_NO_FATAL_FAILURE(stop(first, "first run (config before the change)"));
    }
    ASSERT_NO_FATAL_FAILURE(produce(name + ".events", phase2_));

    const int port = testing::free_port();
    ChildProcess second({kBinary, "run", "-c", config(name + "-after", name, after, port)},
                        dir_ + "/" + name + "-after");
    const bool ready = testing::wait_until(
        [&] {
          if (exited(second)) return true;
          auto r = testing::http_get(port, "/readyz");
          return r && r->status == 200;
        },
        30s);
    ASSERT_FALSE(exited(second)) << "the run after the config change exited with "
                                 << *second.wait(0ms) << " before it was ready:\n"
                                 << second.stderr_text();
    ASSERT_TRUE(ready) << "the run after the config change was not ready within 30 s:\n"
                       << second.stderr_text();
    ASSERT_NO_FATAL_FAILURE(consume_all(second, port, total(), outcome.after));
    ASSERT_NO_FATAL_FAILURE(stop(second, "run after the config change"));
  }

  static inline std::string dir_;
  static inline std::string bootstrap_;
  static inline ChildProcess* broker_ = nullptr;
  static inline std::vector<Message> phase1_;
  static inline std::vector<Message> phase2_;
  // The newco and acme x mastodon series the second phase adds, once both are configured.
  static inline Samples added_;
  static inline Samples reference_;  // uninterrupted run, initial config, both phases
};

// The harness itself: a restart without a change ends with every data counter of the reference.
TEST_F(ConfigChangeTest, RestartWithAnUnchangedConfigEqualsAnUninterruptedRun) {
  RestartOutcome run;
  ASSERT_NO_FATAL_FAILURE(restart_with_changed_config("same", kInitial, kInitial, run));
  expect_same_series(reference_, run.after, Unchanged(kInitial, kInitial), "every data counter");
  EXPECT_EQ(testing::metric_sum(run.after, "socialpulse_window_records_total"),
            testing::metric_sum(reference_, "socialpulse_window_records_total"));
}

TEST_F(ConfigChangeTest, AddedBrandAndChannelAreCountedFromTheRestartOnAndTheRestIsUnchanged) {
  const RunConfig after = kInitial.with_brand("newco").with_channel("mastodon");
  RestartOutcome run;
  ASSERT_NO_FATAL_FAILURE(restart_with_changed_config("add", kInitial, after, run));

  expect_same_series(reference_, run.after, Unchanged(kInitial, after),
                     "unchanged brands x unchanged channels");

  // newco and mastodon count their second-phase events exactly; their first-phase events stay in
  // `other` (and the retry of a first-phase newco event is a duplicate, not a count).
  ASSERT_GT(testing::metric_sum(run.before, "socialpulse_interactions_total", {"brand=\"other\""}),
            0);
  expect_same_series(
      added_, run.after,
      [](const Series& s) {
        return (s.name == "socialpulse_interactions_total" ||
                s.name == "socialpulse_reach_total") &&
               (s.at("brand") == "newco" || s.at("channel") == "mastodon");
      },
      "newco and mastodon from the restart on");

  // Nothing is lost or counted twice: per counter, the sum over all brands and channels (`other`
  // included) is the reference's.
  auto totals = [](const Samples& samples) {
    Samples out;
    for (const auto& [text, value] : samples) {
      Series s = Series::parse(text);
      if (!is_cell_family(s)) continue;
      s.labels.erase("brand");
      s.labels.erase("channel");
      out[s.text()] += value;
    }
    return out;
  };
  expect_same_series(
      totals(reference_), totals(run.after), [](const Series&) { return true; },
      "counters summed over brands and channels");

  // An addition drops nothing.
  EXPECT_EQ(testing::metric_sum(run.after, "socialpulse_state_dropped_keys_total"), 0);
}

TEST_F(ConfigChangeTest, RemovedBrandAndChannelAreDroppedAndTheRestIsUnchanged) {
  const RunConfig after = kInitial.without_brand("initech").without_channel("forum");
  RestartOutcome run;
  ASSERT_NO_FATAL_FAILURE(restart_with_changed_config("remove", kInitial, after, run));
  ASSERT_GT(
      testing::metric_sum(run.before, "socialpulse_interactions_total", {"brand=\"initech\""}), 0);
  ASSERT_GT(
      testing::metric_sum(run.before, "socialpulse_interactions_total", {"channel=\"forum\""}), 0);

  expect_same_series(reference_, run.after, Unchanged(kInitial, after),
                     "unchanged brands x unchanged channels");

  // The removed names are gone from /metrics: no series of any family carries them.
  for (const auto& [text, value] : run.after) {
    const Series s = Series::parse(text);
    EXPECT_FALSE(s.has("brand") && s.at("brand") == "initech") << text;
    EXPECT_FALSE(s.has("channel") && s.at("channel") == "forum") << text;
  }

  // Their first-phase counts are dropped, their second-phase events count as `other`: each
  // brand x channel cell ends with what it had at the restart (when it survived) plus the
  // second-phase increments (reference minus first run) of every cell that now maps to it.
  auto surviving = [&](const std::string& name, const std::vector<std::string>& list) {
    return name == "other" || std::find(list.begin(), list.end(), name) != list.end();
  };
  Samples expected;
  for (const auto& [text, value] : run.before) {
    const Series s = Series::parse(text);
    if (!is_cell_family(s)) continue;
    if (surviving(s.at("brand"), after.brands) &&
        (!s.has("channel") || surviving(s.at("channel"), after.channels))) {
      expected[text] += value;
    }
  }
  for (const auto& [text, value] : reference_) {
    Series s = Series::parse(text);
    if (!is_cell_family(s)) continue;
    const auto before = run.before.find(text);
    const double increment = value - (before == run.before.end() ? 0.0 : before->second);
    if (!surviving(s.at("brand"), after.brands)) s.labels["brand"] = "other";
    if (s.has("channel") && !surviving(s.at("channel"), after.channels))
      s.labels["channel"] = "other";
    expected[s.text()] += increment;
  }
  expect_same_series(expected, run.after, is_cell_family,
                     "counters after dropping initech and forum");

  // The new counter socialpulse_state_dropped_keys_total{kind}: the restart dropped the stored
  // keys of the removed brand and of the removed channel, and no window or type.
  EXPECT_GT(
      testing::metric_sum(run.after, "socialpulse_state_dropped_keys_total", {"kind=\"brand\""}),
      0);
  EXPECT_GT(
      testing::metric_sum(run.after, "socialpulse_state_dropped_keys_total", {"kind=\"channel\""}),
      0);
  EXPECT_EQ(
      testing::metric_sum(run.after, "socialpulse_state_dropped_keys_total", {"kind=\"window\""}),
      0);
  EXPECT_EQ(
      testing::metric_sum(run.after, "socialpulse_state_dropped_keys_total", {"kind=\"type\""}), 0);
}

TEST_F(ConfigChangeTest, AddedHoppingWindowStartsAtTheRestartAndTheCountersAreUnchanged) {
  const RunConfig after = kInitial.with_window(
      {"extra", "{name: extra, kind: hopping, size: 10m, advance: 5m, grace: 1m}"});
  RestartOutcome run;
  ASSERT_NO_FATAL_FAILURE(restart_with_changed_config("window", kInitial, after, run));

  // Every brand and channel, `other` included, is unchanged.
  expect_same_series(reference_, run.after, Unchanged(kInitial, after),
                     "every brand x channel counter");

  // The new window closes windows within the second phase (10 minutes of event time): the records
  // published are the reference's plus its own.
  EXPECT_GT(testing::metric_sum(run.after, "socialpulse_window_records_total"),
            testing::metric_sum(reference_, "socialpulse_window_records_total"));
  EXPECT_EQ(testing::metric_sum(run.after, "socialpulse_state_dropped_keys_total"), 0);
}

}  // namespace
}  // namespace sp
