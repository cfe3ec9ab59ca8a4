// socialpulse: command-line entry point. Parses arguments, sets up logging and signals, and
// hands over to pipeline/ (run, demo, broker, produce) or the config validator.
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "pipeline/config.h"
#include "pipeline/memory_policy.h"
#include "pipeline/service.h"
#include "pipeline/version.h"

namespace {

constexpr int kExitConfig = 78;  // EX_CONFIG from sysexits.h
constexpr int kExitFailure = 1;

std::atomic<bool> g_stop{false};

std::atomic<uint64_t> g_reload{0};  // SIGHUP: re-read the roi section (run)

extern "C" void on_signal(int) { g_stop.store(true); }
extern "C" void on_reload(int) { g_reload.fetch_add(1); }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  struct sigaction hup {};
  hup.sa_handler = on_reload;
  sigemptyset(&hup.sa_mask);
  sigaction(SIGHUP, &hup, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

// Escapes the message for the JSON log format (%v may contain quotes and backslashes).
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    for (char c : msg.payload) {
      switch (c) {
        case '"':
          dest.append(std::string_view("\\\""));
          break;
        case '\\':
          dest.append(std::string_view("\\\\"));
          break;
        case '\n':
          dest.append(std::string_view("\\n"));
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) break;
          dest.push_back(c);
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

void setup_logging(const sp::LogConfig& log) {
  auto logger = std::make_shared<spdlog::logger>("socialpulse",
                                                 std::make_shared<spdlog::sinks::stderr_sink_mt>());
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  if (log.format == "json") {
    formatter->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","msg":"%*"})");
  } else {
    formatter->set_pattern("ts=%Y-%m-%dT%H:%M:%S.%eZ level=%l %v");
  }
  logger->set_formatter(std::move(formatter));
  logger->set_level(spdlog::level::from_str(log.level));
  spdlog::set_default_logger(logger);
}

std::string temp_state_dir(const char* what) {
  auto dir = std::filesystem::temp_directory_path() /
             ("socialpulse-" + std::string(what) + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  return dir.string();
}

// invalid_input from a running service is a configuration the machine cannot honour (a secret
// variable unset, an unreadable certificate): 78, which systemd's RestartPreventExitStatus and
// operators read as "fix the config", not "restart".
int fail(const sp::Error& e) {
  spdlog::critical("msg=\"fatal\" error=\"{}\"", e.message);
  return e.kind == sp::ErrorKind::invalid_input ? kExitConfig : kExitFailure;
}

}  // namespace

int main(int argc, char** argv) {
  sp::keep_freed_memory_for_reuse();
  CLI::App app{
      "socialpulse — social interaction events from Kafka to live business KPIs on Prometheus.\n"
      "Product contract: SPEC.md. Exit codes: 0 ok, 1 runtime failure, 78 bad configuration."};
  app.set_version_flag("--version",
                       std::string("socialpulse ") + std::string(sp::kSocialpulseVersion));
  app.require_subcommand(1);

  std::string config_path;
  std::vector<std::string> overrides;
  auto add_config_options = [&](CLI::App* cmd, bool required) {
    auto* opt = cmd->add_option("-c,--config", config_path, "YAML configuration file (SPEC 7)");
    // No CLI::ExistingFile: a missing file is a configuration problem (78), reported by
    // load_config, not a usage error (CLI11's 105).
    if (required) opt->required();
    cmd->add_option("--set", overrides, "Override a key: --set kafka.group_id=blue (repeatable)");
  };

  auto* run = app.add_subcommand(
      "run", "Run the pipeline until SIGTERM/SIGINT; SIGHUP re-reads the config's roi section");
  add_config_options(run, true);

  auto* validate = app.add_subcommand("validate", "Check a configuration file; exit 0 or 78");
  add_config_options(validate, true);

  std::string duration_text = "0s";
  double demo_rate = 100;
  std::string metrics_listen;
  std::string scenario = "crisis";
  auto* demo = app.add_subcommand(
      "demo",
      "Embedded broker + synthetic traffic for three brands with a scripted reputation\n"
      "crisis + the pipeline + /metrics, in one process; prints the URLs");
  add_config_options(demo, false);
  demo->add_option("--duration", duration_text,
                   "Stop after this long (e.g. 60s; 0 = until Ctrl-C)");
  demo->add_option("--rate", demo_rate,
                   "Synthetic events per second of event time (the history replays 60x faster)")
      ->check(CLI::PositiveNumber);
  demo->add_option("--metrics-listen", metrics_listen,
                   "host:port for /metrics (default from config)");
  demo->add_option("--scenario", scenario, "steady | crisis")
      ->check(CLI::IsMember({"steady", "crisis"}));

  int broker_partitions = 8;
  auto* broker = app.add_subcommand(
      "broker", "Run a standalone embedded Kafka broker; prints its bootstrap address");
  add_config_options(broker, false);
  broker->add_option("--partitions", broker_partitions, "Partitions per topic")
      ->check(CLI::Range(1, 1024));

  std::string bootstrap;
  std::string topic;
  double produce_rate = 1000;
  uint64_t produce_events = 0;
  uint64_t seed = 42;
  std::string backfill_text = "0s";
  double time_scale = 1.0;
  auto* produce = app.add_subcommand("produce", "Generate realistic synthetic events into Kafka");
  add_config_options(produce, false);
  produce->add_option("--bootstrap", bootstrap, "Kafka bootstrap servers (default from config)");
  produce->add_option("--topic", topic, "Topic (default: the first input topic)");
  produce
      ->add_option("--rate", produce_rate,
                   "Events per second of event time; with --backfill, time-scale x rate per wall "
                   "second until caught up (0 = as fast as possible)")
      ->check(CLI::NonNegativeNumber);
  produce->add_option("--events", produce_events, "Stop after this many events (0 = until Ctrl-C)");
  produce
      ->add_option("--scenario", scenario,
                   "steady | crisis | seasonal (weeks of history with a weekly rhythm and "
                   "injected crises, up to now, then exits)")
      ->check(CLI::IsMember({"steady", "crisis", "seasonal"}));
  std::string history_text = "1344h";
  int crises = 20;
  produce->add_option("--history", history_text,
                      "seasonal: length of the history (default 8 weeks)");
  produce->add_option("--crises", crises, "seasonal: crises injected over the history")
      ->check(CLI::NonNegativeNumber);
  produce->add_option("--seed", seed, "Random seed (same seed = same events)");
  produce->add_option("--backfill", backfill_text,
                      "Start event time this far in the past (e.g. 30m)");
  produce->add_option("--time-scale", time_scale, "Event time speed-up during the backfill")
      ->check(CLI::PositiveNumber);
  produce->get_option("--scenario")->default_str("steady");

  CLI11_PARSE(app, argc, argv);

  sp::Config config;
  if (!config_path.empty() || !overrides.empty()) {
    auto loaded = config_path.empty() ? sp::parse_config("{}", "<defaults>", overrides)
                                      : sp::load_config(config_path, overrides);
    if (!loaded) {
      std::cerr << loaded.error().message << "\n";
      return kExitConfig;
    }
    config = std::move(*loaded);
  }
  if (validate->parsed() || run->parsed()) {
    if (auto env = sp::check_environment(config); !env) {
      std::cerr << config_path << ": " << env.error().message << "\n";
      return kExitConfig;
    }
  }
  if (validate->parsed()) {
    std::cout << config_path << ": ok\n";
    return 0;
  }
  setup_logging(config.log);
  install_signal_handlers();

  if (run->parsed()) {
    sp::ServiceOptions options;
    options.reload_requests = &g_reload;
    options.reload_config = [&config_path, &overrides] {
      return sp::load_config(config_path, overrides);
    };
    auto s = sp::run_service(config, options, g_stop);
    return s ? 0 : fail(s.error());
  }
  if (broker->parsed()) {
    auto s = sp::run_broker(config, broker_partitions, g_stop, [](const std::string& address) {
      std::printf("%s\n", address.c_str());
      std::fflush(stdout);
      spdlog::info("msg=\"embedded broker ready\" bootstrap={}", address);
    });
    return s ? 0 : fail(s.error());
  }
  if (produce->parsed()) {
    auto backfill = sp::parse_duration(backfill_text);
    if (!backfill) {
      std::cerr << "--backfill: " << backfill.error().message << "\n";
      return kExitConfig;
    }
    sp::TrafficOptions traffic;
    traffic.rate = produce_rate;
    traffic.events = produce_events;
    traffic.generator.seed = seed;
    traffic.generator.crisis = scenario == "crisis";
    traffic.backfill = *backfill;
    traffic.time_scale = time_scale;
    if (bootstrap.empty()) bootstrap = config.kafka.bootstrap_servers;
    if (bootstrap == "embedded") {
      std::cerr << "produce: --bootstrap is required (start one with `socialpulse broker`)\n";
      return kExitConfig;
    }
    if (topic.empty()) topic = config.kafka.topics.front();
    if (scenario == "seasonal") {
      auto history = sp::parse_duration(history_text);
      if (!history) {
        std::cerr << "--history: " << history.error().message << "\n";
        return kExitConfig;
      }
      sp::SeasonalOptions seasonal;
      seasonal.seed = seed;
      seasonal.crises = crises;
      seasonal.live_crisis_before_end = std::chrono::minutes(2);
      auto s = sp::produce_seasonal(bootstrap, topic, config.kafka.properties, seasonal, *history,
                                    g_stop);
      return s ? 0 : fail(s.error());
    }
    auto s = sp::produce_traffic(bootstrap, topic, config.kafka.properties, traffic, g_stop);
    return s ? 0 : fail(s.error());
  }
  if (demo->parsed()) {
    auto duration = sp::parse_duration(duration_text);
    if (!duration) {
      std::cerr << "--duration: " << duration.error().message << "\n";
      return kExitConfig;
    }
    // The demo tracks the generator's three brands and starts from clean state every time.
    if (config_path.empty()) {
      config.brands.tracked = {{"acme", true}, {"globex", false}, {"initech", false}};
      config.state.path = temp_state_dir("demo");
      // Spend for the ROI recording rule and socialpulse_daily_spend (SPEC 2), sized to the
      // demo's traffic (thousands of events a second, ~150 M a day of lead value and EMV per
      // brand) so that the console shows a believable ROI of one to two times, not 10^5.
      if (config.roi.daily_spend.empty()) {
        config.roi.daily_spend = {
            {"acme", {{"twitter", 20e6}, {"facebook", 25e6}, {"linkedin", 15e6}}},
            {"globex", {{"twitter", 30e6}, {"instagram", 20e6}}}};
      }
      // Visitors come and go within minutes, so sessions close (and their metrics show) during a
      // short demo; with the 30m default gap none would close in the first half hour.
      for (auto& w : config.windows) {
        if (w.kind == sp::WindowKind::session) w.gap = std::chrono::minutes(5);
      }
    }
    if (!metrics_listen.empty()) config.metrics.listen = metrics_listen;
    sp::ServiceOptions options;
    options.with_traffic = true;
    options.duration = *duration;
    options.traffic.rate = demo_rate;
    options.traffic.generator.crisis = scenario == "crisis";
    // Many occasional visitors rather than a few hyperactive ones: realistic sessions and uniques.
    options.traffic.generator.actors_per_brand = 20000;
    // Replay 75 minutes of history at 60x (~75 s): the detector's 60-bucket warm-up plus a
    // quarter of an hour of baseline, then go live. The crisis starts two minutes before the end of
    // the replay: the replay starts on a minute boundary up to 1m before now-75m, so the bucket
    // that opens the episode (its 3rd, persistence 3) closes in real time 70-130 s after start,
    // within
    // alerts.max_lag of the wall clock: a live alert, not replayed history. The episode then
    // stays open on /metrics (socialpulse_reputation_alert_active) for the crisis and its 15m
    // cooldown, where Prometheus (and a person) can see it.
    options.traffic.backfill = std::chrono::minutes(75);
    options.traffic.time_scale = 60;
    options.traffic.generator.crisis_start = std::chrono::minutes(73);
    options.traffic.generator.crisis_length = std::chrono::minutes(10);
    // Crisis posts carry a topic tag, so the alert's explanation names it.
    options.narrate = true;
    options.on_started = [](const std::string& metrics_url, const std::string& bootstrap_address) {
      const std::string base = metrics_url.substr(0, metrics_url.rfind('/'));
      std::printf(
          "socialpulse demo\n  console:   %s/   <- open this in a browser\n  metrics:   %s\n"
          "  api:       %s/api/v1/kpis\n  livez:     %s/livez\n  readyz:    %s/readyz\n"
          "  bootstrap: %s (kcat -b %s -L)\n  stop:      Ctrl-C\n",
          base.c_str(), metrics_url.c_str(), base.c_str(), base.c_str(), base.c_str(),
          bootstrap_address.c_str(), bootstrap_address.c_str());
      std::fflush(stdout);
    };
    auto s = sp::run_service(config, options, g_stop);
    if (config_path.empty()) std::filesystem::remove_all(config.state.path);
    return s ? 0 : fail(s.error());
  }
  return 0;
}
