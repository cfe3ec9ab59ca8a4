#include "pipeline/service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <thread>

#include "pipeline/demo_narrator.h"
#include "pipeline/embedded_broker.h"
#include "pipeline/http_server.h"
#include "pipeline/kafka.h"
#include "pipeline/runner.h"
#include "pipeline/thread_policy.h"

namespace sp {
namespace {

using SteadyClock = std::chrono::steady_clock;

Result<std::unique_ptr<EmbeddedBroker>> start_embedded(const Config& config, int partitions) {
  auto broker = EmbeddedBroker::start();
  if (!broker) return broker;
  for (const auto& t : config.kafka.topics) {
    if (auto s = (*broker)->create_topic(t, partitions); !s) return tl::unexpected(s.error());
  }
  for (const auto* t :
       {&config.kafka.output_topic, &config.kafka.alerts_topic, &config.kafka.dlq_topic}) {
    if (auto s = (*broker)->create_topic(*t, partitions); !s) return tl::unexpected(s.error());
  }
  // Same partition count as the input topics: changelog partition n holds input partition n.
  if (auto s = (*broker)->create_state_topic(config.kafka.state_topic, partitions); !s) {
    return tl::unexpected(s.error());
  }
  return broker;
}

void wait_until(const std::atomic<bool>& stop, SteadyClock::time_point until) {
  while (!stop.load() && SteadyClock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The producer of the demo's and the seasonal history's events (kafka.properties apply).
Result<KafkaHandle> make_traffic_producer(const std::string& bootstrap,
                                          const std::map<std::string, std::string>& properties) {
  auto settings = properties;
  settings["bootstrap.servers"] = bootstrap;
  settings.try_emplace("linger.ms", "20");
  settings.try_emplace("queue.buffering.max.messages", "500000");
  settings.try_emplace("log_level", "4");
  auto conf = make_kafka_conf(settings);
  if (!conf) return tl::unexpected(conf.error());
  return make_kafka_handle(RD_KAFKA_PRODUCER, std::move(*conf));
}

}  // namespace

Status produce_traffic(const std::string& bootstrap, const std::string& topic,
                       const std::map<std::string, std::string>& properties,
                       const TrafficOptions& options, const std::atomic<bool>& stop) {
  auto producer = make_traffic_producer(bootstrap, properties);
  if (!producer) return tl::unexpected(producer.error());

  EventGenerator generator(options.generator);
  const auto wall_start = std::chrono::system_clock::now();
  const EventTime now_ms = std::chrono::time_point_cast<Millis>(wall_start);
  EventTime origin = now_ms - options.backfill;
  // A backfill starts on a minute boundary, so that the first 1-minute bucket of every brand is a
  // whole minute (a partial first bucket would look like a jump to the spike detector).
  if (options.backfill.count() > 0)
    origin = from_epoch_ms(floor_div(to_epoch_ms(origin), 60'000) * 60'000);
  generator.set_origin(origin);
  const auto steady_start = SteadyClock::now();
  GeneratedEvent ev;
  std::mt19937 jitter(options.generator.seed + 1);
  uint64_t sent = 0;
  while (!stop.load(std::memory_order_relaxed) && (options.events == 0 || sent < options.events)) {
    const auto elapsed = SteadyClock::now() - steady_start;
    // Event time runs time_scale faster than the wall clock during the backfill, then in real
    // time. The rate is per second of event time, so a replayed minute holds as many events as a
    // live one (otherwise every brand's volume would jump time_scale-fold at the catch-up).
    const auto scaled = std::chrono::duration_cast<Millis>(elapsed * options.time_scale);
    const EventTime clock = std::min(
        origin + scaled, std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now()));
    if (options.rate > 0) {
      const auto due = static_cast<uint64_t>(std::chrono::duration<double>(clock - origin).count() *
                                             options.rate);
      if (sent >= due) {
        rd_kafka_poll(producer->get(), 1);
        continue;
      }
    }
    if (options.max_ahead > 0 && options.consumed && (sent & 1023) == 0 &&
        sent > options.consumed() + options.max_ahead) {
      rd_kafka_poll(producer->get(), 1);
      continue;
    }
    // A few seconds of disorder, never before the origin.
    const EventTime t = std::max(origin, clock - Millis{static_cast<int64_t>(jitter() % 3000)});
    generator.next(t, ev);
    for (;;) {
      auto err = rd_kafka_producev(
          producer->get(), RD_KAFKA_V_TOPIC(topic.c_str()),
          RD_KAFKA_V_PARTITION(
              options.partitions > 0
                  ? static_cast<int32_t>(sent % static_cast<uint64_t>(options.partitions))
                  : RD_KAFKA_PARTITION_UA),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(ev.key.data(), ev.key.size()),
          RD_KAFKA_V_VALUE(ev.value.data(), ev.value.size()), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        return make_error(ErrorKind::fatal, std::string("produce: ") + rd_kafka_err2str(err));
      }
      rd_kafka_poll(producer->get(), 10);
      if (stop.load()) break;
    }
    ++sent;
    if ((sent & 1023) == 0) rd_kafka_poll(producer->get(), 0);
  }
  // Its answer is the queue length, checked right below.
  (void)rd_kafka_flush(producer->get(), 10000);
  if (rd_kafka_outq_len(producer->get()) > 0) {
    return make_error(ErrorKind::retryable, "produce: not every event was acknowledged within 10s");
  }
  spdlog::info("msg=\"produced\" events={}", sent);
  return {};
}

Status produce_seasonal(const std::string& bootstrap, const std::string& topic,
                        const std::map<std::string, std::string>& properties,
                        const SeasonalOptions& options, Millis history,
                        const std::atomic<bool>& stop) {
  auto producer = make_traffic_producer(bootstrap, properties);
  if (!producer) return tl::unexpected(producer.error());

  const int64_t end = floor_div(
      to_epoch_ms(std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now())), 60'000);
  SeasonalScenario scenario(options, end - history.count() / 60'000, end);
  for (const InjectedCrisis& c : scenario.crises()) {
    spdlog::info("msg=\"injected crisis\" brand={} start={} minutes={} channel={} tag={}", c.brand,
                 format_rfc3339_ms(from_epoch_ms(c.start_minute * 60'000)), c.minutes, c.channel,
                 c.tag);
  }
  std::vector<GeneratedEvent> batch;
  uint64_t sent = 0;
  for (int64_t m = end - history.count() / 60'000; m < end && !stop.load(); ++m) {
    batch.clear();
    scenario.minute(m, batch);
    for (const GeneratedEvent& ev : batch) {
      for (;;) {
        auto err = rd_kafka_producev(
            producer->get(), RD_KAFKA_V_TOPIC(topic.c_str()),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(ev.key.data(), ev.key.size()),
            RD_KAFKA_V_VALUE(const_cast<char*>(ev.value.data()), ev.value.size()), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
          return make_error(ErrorKind::fatal, std::string("produce: ") + rd_kafka_err2str(err));
        }
        rd_kafka_poll(producer->get(), 10);
        if (stop.load()) break;
      }
      if ((++sent & 1023) == 0) rd_kafka_poll(producer->get(), 0);
    }
  }
  rd_kafka_flush(producer->get(), 30000);
  if (rd_kafka_outq_len(producer->get()) > 0) {
    return make_error(ErrorKind::retryable, "produce: not every event was acknowledged within 30s");
  }
  spdlog::info("msg=\"produced\" events={} crises={}", sent, scenario.crises().size());
  return {};
}

Status run_broker(const Config& config, int partitions, std::atomic<bool>& stop,
                  const std::function<void(const std::string&)>& on_started) {
  auto broker = start_embedded(config, partitions);
  if (!broker) return tl::unexpected(broker.error());
  on_started((*broker)->bootstrap_servers());
  while (!stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  return {};
}

Result<SpendValues> reloadable_spend(const Config& running, const Config& reloaded) {
  for (const auto& [brand, channels] : reloaded.roi.daily_spend) {
    const std::string& name = brand;  // Clang 14 cannot capture a structured binding
    const bool brand_known =
        std::any_of(running.brands.tracked.begin(), running.brands.tracked.end(),
                    [&](const BrandInfo& b) { return b.name == name; });
    if (!brand_known) {
      return make_error(ErrorKind::invalid_input, "roi.daily_spend: '" + brand +
                                                      "' is not a tracked brand of the running "
                                                      "instance (brands need a restart)");
    }
    for (const auto& [channel, value] : channels) {
      if (std::find(running.channels.begin(), running.channels.end(), channel) ==
          running.channels.end()) {
        return make_error(ErrorKind::invalid_input,
                          "roi.daily_spend." + brand + ": '" + channel +
                              "' is not a channel of the running instance (channels need a "
                              "restart)");
      }
    }
  }
  return spend_of(reloaded.roi);
}

namespace {

// Applies one SIGHUP: the old values stay unless the whole roi section is valid.
void reload_roi(const Config& running, const ServiceOptions& options, Runner& runner) {
  auto reloaded = options.reload_config();
  if (!reloaded) {
    spdlog::error("msg=\"roi reload failed, keeping the previous spend\" error=\"{}\"",
                  reloaded.error().message);
    return;
  }
  auto spend = reloadable_spend(running, *reloaded);
  if (!spend) {
    spdlog::error("msg=\"roi reload failed, keeping the previous spend\" error=\"{}\"",
                  spend.error().message);
    return;
  }
  double total = 0;
  for (const SpendEntry& e : spend->entries) total += e.spend;
  spdlog::info("msg=\"roi reloaded\" currency={} entries={} daily_spend_total={}", spend->currency,
               spend->entries.size(), total);
  runner.replace_spend(std::move(*spend));
}

}  // namespace

Status run_service(const Config& config, const ServiceOptions& options, std::atomic<bool>& stop) {
  auto password = check_environment(config);
  if (!password) return tl::unexpected(password.error());
  HttpServerOptions http_options;
  const MetricsConfig& m = config.metrics;
  http_options.listen = m.listen;
  http_options.basic_auth_user = m.basic_auth.username;
  http_options.basic_auth_password = std::move(*password);
  http_options.request_timeout = m.request_timeout;
  http_options.response_timeout = m.response_timeout;
  http_options.max_connections = m.max_connections;
  http_options.max_connections_per_client = m.max_connections_per_client;
  http_options.max_request_bytes = m.max_request_bytes;
  http_options.tls_cert_file = m.tls.cert_file;
  http_options.tls_key_file = m.tls.key_file;
  http_options.tls_client_ca_file = m.tls.client_ca_file;
  http_options.ready_timeout = config.kafka.ready_timeout;
  for (const auto& b : config.brands.tracked) http_options.brands.push_back(b.name);
  http_options.brands.emplace_back("other");
  // Inside the state directory (RocksDB, which creates it, ignores files it does not know).
  http_options.series_file = config.state.path + "/console-series";
  // The HTTP thread first, with this thread's priority; then this thread and every thread it
  // creates from here on (the broker's, librdkafka's, RocksDB's, the pipeline's) are throughput
  // threads (thread_policy.h: without CAP_SYS_NICE a thread cannot take a lower priority back).
  auto http = HttpServer::start(http_options);
  if (!http) return tl::unexpected(http.error());
  const ThroughputScope throughput;
  std::unique_ptr<EmbeddedBroker> broker;
  std::string bootstrap = config.kafka.bootstrap_servers;
  if (bootstrap == "embedded") {
    auto started = start_embedded(config, config.kafka.embedded_partitions);
    if (!started) return tl::unexpected(started.error());
    broker = std::move(*started);
    bootstrap = broker->bootstrap_servers();
    spdlog::info("msg=\"embedded broker started\" bootstrap={}", bootstrap);
  }
  auto runner = Runner::create(config, bootstrap, http->get(), options.runner_hooks);
  if (!runner) return tl::unexpected(runner.error());

  std::string host = config.metrics.listen.substr(0, config.metrics.listen.rfind(':'));
  if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
  const std::string url = std::string((*http)->tls() ? "https://" : "http://") + host + ":" +
                          std::to_string((*http)->port()) + "/metrics";
  spdlog::info("msg=\"serving\" metrics={} bootstrap={}", url, bootstrap);
  if (options.on_started) options.on_started(url, bootstrap);
  std::optional<DemoNarrator> narrator;
  if (options.narrate) narrator.emplace((*http)->query_api(), stdout);

  std::atomic<bool> traffic_stop{false};
  std::thread traffic;
  Status traffic_status;
  if (options.with_traffic) {
    traffic = std::thread([&] {
      traffic_status = produce_traffic(bootstrap, config.kafka.topics.front(),
                                       config.kafka.properties, options.traffic, traffic_stop);
    });
  }
  std::thread timer;
  std::atomic<bool> timer_stop{false};
  if (options.duration.count() > 0) {
    timer = std::thread([&] {
      wait_until(timer_stop, SteadyClock::now() + options.duration);
      if (!timer_stop.load()) stop.store(true);
    });
  }
  std::thread reloader;
  std::atomic<bool> reloader_stop{false};
  if (options.reload_requests != nullptr && options.reload_config) {
    reloader = std::thread([&] {
      // Polled, not signalled: the signal handler may only touch an atomic.
      uint64_t handled = options.reload_requests->load();
      while (!reloader_stop.load()) {
        const uint64_t requested = options.reload_requests->load();
        if (requested != handled) {
          handled = requested;
          reload_roi(config, options, **runner);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
  }
  Status result = (*runner)->run(stop);
  narrator.reset();
  traffic_stop.store(true);
  timer_stop.store(true);
  reloader_stop.store(true);
  if (traffic.joinable()) traffic.join();
  if (timer.joinable()) timer.join();
  if (reloader.joinable()) reloader.join();
  runner->reset();
  if (result && !traffic_status)
    spdlog::warn("msg=\"traffic generator\" error=\"{}\"", traffic_status.error().message);
  return result;
}

}  // namespace sp
