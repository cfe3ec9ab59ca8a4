// End-to-end benchmark harness (SPEC 9, issue #9). One process, one run:
//  1. an in-process EmbeddedBroker; an input topic pre-loaded with N realistic events
//     (EventGenerator), checked against the partitions' low/high watermarks;
//  2. the physical limit: a bare librdkafka consumer reading the topic from the start (both the
//     per-message poll API and the batch API; the faster one is the reference);
//  3. the full pipeline with the default config (run_service, fresh state dir, /metrics on
//     127.0.0.1:0) reading the same topic from the start until
//     socialpulse_events_consumed_total == N; events/s and the ratio to the reference;
//  4. event -> /metrics latency under a steady load at a fraction of the measured capacity;
//  5. peak RSS, scrape time at 20 000 series; a pointer for restart-after-kill -9.
// --changelog-ab adds, before 3, the same pipeline pass with the state changelog off (another
// group, fresh state dir; RunnerTestHooks::without_changelog): its ratio beside 3's is the
// changelog's cost measured in one run, on one machine state.
// Not a Google Benchmark: the phases share one broker and must run in order.
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "benchmarks/vcpu_stalls.h"
#include "pipeline/config.h"
#include "pipeline/embedded_broker.h"
#include "pipeline/event_generator.h"
#include "pipeline/http_server.h"
#include "pipeline/kafka.h"
#include "pipeline/memory_policy.h"
#include "pipeline/metrics_registry.h"
#include "pipeline/service.h"
#include "tests/support/test_support.h"

namespace sp::bench {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0, Clock::time_point t) {
  return std::chrono::duration<double>(t - t0).count();
}

struct Options {
  uint64_t events = 1'000'000;
  int partitions = 64;
  // Pre-loaded events per second of event time: a backlog of a busy stream. The event-time
  // density decides how many panes, windows and sessions each event opens and closes.
  double event_rate = 5000;
  double latency_seconds = 10;     // 0: skip the latency phase
  double latency_load = 0.5;       // fraction of the measured pipeline capacity
  double latency_rate = 0;         // events/s; > 0: this fixed load instead (A/B of two builds)
  // Capacity with the load producer running (measure_sustained); 0: skip it, and the latency
  // phase's load is a fraction of the backlog capacity instead.
  double sustained_seconds = 5;
  size_t scrape_series = 20000;    // 0: skip the scrape phase
  bool smoke = false;              // CI: check counts only, short phases, exit 1 on mismatch
  bool round_robin = false;        // spread every actor over every partition (worst case for state)
  int checkpoint_ms = 0;           // state.checkpoint_interval; 0: the default (1 s)
  bool changelog_ab = false;       // also a pass with the state changelog off (its cost, same run)
  size_t changelog_lanes = 0;      // the changelog's producers; 0: the product's (kChangelogLanes)
  std::string topic = "bench.events";
};

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--events N] [--partitions P] [--event-rate R] [--latency-seconds S]\n"
               "          [--latency-load F | --latency-rate R] [--sustained-seconds S] [--scrape-series N]\n"
               "          [--partitioning actor|round-robin]\n"
               "          [--checkpoint-ms MS] [--changelog-ab] [--changelog-lanes N] [--smoke]\n",
               argv0);
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) usage(argv[0]);
      return argv[++i];
    };
    if (a == "--events") {
      o.events = std::strtoull(next(), nullptr, 10);
    } else if (a == "--partitions") {
      o.partitions = std::atoi(next());
    } else if (a == "--checkpoint-ms") {
      o.checkpoint_ms = std::atoi(next());
    } else if (a == "--event-rate") {
      o.event_rate = std::atof(next());
    } else if (a == "--latency-seconds") {
      o.latency_seconds = std::atof(next());
    } else if (a == "--latency-load") {
      o.latency_load = std::atof(next());
    } else if (a == "--latency-rate") {
      o.latency_rate = std::atof(next());
    } else if (a == "--sustained-seconds") {
      o.sustained_seconds = std::atof(next());
    } else if (a == "--scrape-series") {
      o.scrape_series = std::strtoull(next(), nullptr, 10);
    } else if (a == "--partitioning") {
      const std::string v = next();
      if (v != "actor" && v != "round-robin") usage(argv[0]);
      o.round_robin = v == "round-robin";
    } else if (a == "--smoke") {
      o.smoke = true;
    } else if (a == "--changelog-ab") {
      o.changelog_ab = true;
    } else if (a == "--changelog-lanes") {
      o.changelog_lanes = std::strtoull(next(), nullptr, 10);
      if (o.changelog_lanes == 0) usage(argv[0]);
    } else {
      usage(argv[0]);
    }
  }
  if (o.events == 0 || o.partitions <= 0 || o.event_rate <= 0) usage(argv[0]);
  return o;
}

// ---- process figures --------------------------------------------------------------------------
uint64_t proc_status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(field);
  while (std::getline(in, line)) {
    if (line.compare(0, n, field) == 0) return std::strtoull(line.c_str() + n + 1, nullptr, 10);
  }
  return 0;
}

// Resets VmHWM to the current RSS (Linux >= 4.0) so that a phase's peak can be read alone.
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  return static_cast<bool>(f);
}

// The body of a 200 answer to GET `path` on loopback, or nullopt.
std::optional<std::string> http_get(int port, const char* path) {
  auto r = sp::testing::http_get(port, path);
  if (!r || r->status != 200) return std::nullopt;
  return std::move(r->body);
}

// Value of an unlabelled sample, or of the sum over every label set of `name`.
std::optional<double> metric_value(const std::string& text, std::string_view name) {
  std::optional<double> sum;
  size_t pos = 0;
  while ((pos = text.find(name, pos)) != std::string::npos) {
    const bool line_start = pos == 0 || text[pos - 1] == '\n';
    const size_t after = pos + name.size();
    pos = after;
    if (!line_start || after >= text.size() || (text[after] != ' ' && text[after] != '{')) continue;
    size_t v = text[after] == ' ' ? after : text.find("} ", after);
    if (v == std::string::npos) break;
    v = text.find(' ', v) + 1;
    sum = sum.value_or(0) + std::strtod(text.c_str() + v, nullptr);
  }
  return sum;
}

// Cumulative histogram buckets (le -> count) of an unlabelled histogram.
std::vector<std::pair<double, double>> histogram_buckets(const std::string& text, std::string_view name) {
  std::vector<std::pair<double, double>> out;
  const std::string prefix = std::string(name) + "_bucket{le=\"";
  size_t pos = 0;
  while ((pos = text.find(prefix, pos)) != std::string::npos) {
    pos += prefix.size();
    const size_t q = text.find('"', pos);
    const std::string le = text.substr(pos, q - pos);
    const double bound = le == "+Inf" ? INFINITY : std::strtod(le.c_str(), nullptr);
    const size_t v = text.find(' ', q) + 1;
    out.emplace_back(bound, std::strtod(text.c_str() + v, nullptr));
  }
  return out;
}

// Prometheus-style histogram_quantile over the difference of two cumulative bucket sets.
double histogram_quantile(double q, const std::vector<std::pair<double, double>>& before,
                          const std::vector<std::pair<double, double>>& after) {
  if (after.empty()) return NAN;
  std::vector<std::pair<double, double>> d = after;
  for (size_t i = 0; i < d.size() && i < before.size(); ++i) d[i].second -= before[i].second;
  const double total = d.back().second;
  if (total <= 0) return NAN;
  const double rank = q * total;
  double prev_bound = 0, prev_count = 0;
  for (const auto& [bound, count] : d) {
    if (count >= rank) {
      if (std::isinf(bound)) return prev_bound;
      return prev_bound + (bound - prev_bound) * (rank - prev_count) / std::max(count - prev_count, 1e-9);
    }
    prev_bound = bound;
    prev_count = count;
  }
  return d.back().first;
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return NAN;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return v[i];
}

// ---- producing -----------------------------------------------------------------------------------
// Delivery acknowledgement times (the broker appended the message), indexed by the per-message
// opaque (k + 1; 0 = not tracked).
struct AckTimes {
  std::vector<Clock::time_point> at;
  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<AckTimes*>(opaque);
    const auto k = reinterpret_cast<uintptr_t>(m->_private);
    if (self != nullptr && k > 0 && k <= self->at.size() && m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      self->at[k - 1] = Clock::now();
    }
  }
};

Result<KafkaHandle> make_producer(const std::string& bootstrap, const char* linger_ms, AckTimes* acks = nullptr) {
  auto conf = make_kafka_conf({{"bootstrap.servers", bootstrap},
                               {"linger.ms", linger_ms},
                               {"batch.num.messages", "10000"},
                               {"queue.buffering.max.messages", "1000000"},
                               {"queue.buffering.max.kbytes", "1048576"},
                               {"log_level", "4"}});
  if (!conf) return tl::unexpected(conf.error());
  if (acks != nullptr) {
    rd_kafka_conf_set_opaque(conf->get(), acks);
    rd_kafka_conf_set_dr_msg_cb(conf->get(), &AckTimes::on_delivery);
  }
  return make_kafka_handle(RD_KAFKA_PRODUCER, std::move(*conf));
}

Status produce_one(rd_kafka_t* producer, const std::string& topic, int32_t partition,
                   const GeneratedEvent& ev, uintptr_t tracking = 0) {
  for (;;) {
    const rd_kafka_resp_err_t err = rd_kafka_producev(
        producer, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(const_cast<char*>(ev.key.data()), ev.key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(ev.value.data()), ev.value.size()),
        RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(tracking)), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return {};
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      return make_error(ErrorKind::fatal, std::string("produce: ") + rd_kafka_err2str(err));
    }
    rd_kafka_poll(producer, 5);
  }
}

// Partition of a generated event: by actor id (an actor's events stay on one partition, as with
// an upstream keyed by user; brands spread over every partition) or round-robin.
int32_t partition_of(const GeneratedEvent& ev, uint64_t seq, const Options& o) {
  const auto parts = static_cast<uint64_t>(o.partitions);
  if (o.round_robin) return static_cast<int32_t>(seq % parts);
  constexpr std::string_view kActor = "\"actor\":{\"id\":\"";
  const size_t from = ev.value.find(kActor);
  if (from == std::string::npos) return static_cast<int32_t>(seq % parts);
  const size_t begin = from + kActor.size();
  const std::string_view id(ev.value.data() + begin, ev.value.find('"', begin) - begin);
  return static_cast<int32_t>(std::hash<std::string_view>{}(id) % parts);
}

// The latency phase's load: EventGenerator events made before the phase, sent with a fresh id and
// event time patched in place, so that producing costs a copy instead of a generator call (the
// load generator shares the machine's two cores with the pipeline it measures).
struct LoadTemplate {
  GeneratedEvent event;
  size_t id_at = 0;    // 16 characters: "lat-" and 12 digits
  size_t time_at = 0;  // 24 characters: RFC 3339 with milliseconds
  int32_t partition = 0;
};

std::vector<LoadTemplate> make_load_templates(size_t n, const Options& o) {
  GeneratorOptions gopts;
  gopts.seed = 4242;
  EventGenerator generator(gopts);
  const EventTime now = std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now());
  generator.set_origin(now);
  std::vector<LoadTemplate> out(n);
  for (size_t i = 0; i < n; ++i) {
    LoadTemplate& t = out[i];
    generator.next(now, t.event);
    std::string& v = t.event.value;
    const size_t id_begin = v.find("\"id\":\"") + 6;
    v.replace(id_begin, v.find('"', id_begin) - id_begin, "lat-000000000000");
    t.id_at = id_begin;
    t.time_at = v.find("\"time\":\"") + 8;
    t.partition = partition_of(t.event, i, o);
  }
  return out;
}

// Fills `out` with template k % size, id "lat-<k>" and event time `t`.
void make_load_event(const std::vector<LoadTemplate>& templates, uint64_t k, EventTime t, GeneratedEvent& out) {
  const LoadTemplate& tpl = templates[k % templates.size()];
  out.key = tpl.event.key;
  out.value = tpl.event.value;
  uint64_t rest = k;
  for (size_t i = 0; i < 12; ++i, rest /= 10) out.value[tpl.id_at + 4 + 11 - i] = static_cast<char>('0' + rest % 10);
  const std::string time = format_rfc3339_ms(t);
  std::memcpy(out.value.data() + tpl.time_at, time.data(), std::min<size_t>(24, time.size()));
}

struct Preload {
  uint64_t messages = 0;  // sum over partitions of high - low watermark
  uint64_t bytes = 0;     // payload bytes produced
  bool starts_at_zero = true;
  double seconds = 0;
};

// Round-robin over the partitions (not keyed by brand: the generator has only three brands and
// the benchmark needs every partition busy; one instance merges all partitions anyway, SPEC 1).
Result<Preload> preload(const std::string& bootstrap, const Options& o) {
  auto producer = make_producer(bootstrap, "20");
  if (!producer) return tl::unexpected(producer.error());
  GeneratorOptions gopts;
  EventGenerator generator(gopts);
  const EventTime now = std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now());
  const auto span_ms = static_cast<int64_t>(static_cast<double>(o.events) / o.event_rate * 1000.0);
  const EventTime origin = now - Millis{span_ms};
  generator.set_origin(origin);
  std::mt19937 jitter(7);
  GeneratedEvent ev;
  Preload p;
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < o.events; ++i) {
    const int64_t offset_ms = static_cast<int64_t>(static_cast<double>(span_ms) * static_cast<double>(i) /
                                                   static_cast<double>(o.events));
    const EventTime t = origin + Millis{offset_ms} - Millis{static_cast<int64_t>(jitter() % 3000)};
    generator.next(t, ev);
    p.bytes += ev.value.size();
    if (auto s = produce_one(producer->get(), o.topic, partition_of(ev, i, o), ev); !s) {
      return tl::unexpected(s.error());
    }
    if ((i & 4095) == 0) rd_kafka_poll(producer->get(), 0);
  }
  rd_kafka_flush(producer->get(), 120'000);
  if (rd_kafka_outq_len(producer->get()) > 0) return make_error(ErrorKind::fatal, "preload: flush timed out");
  p.seconds = seconds_since(t0, Clock::now());
  for (int32_t part = 0; part < o.partitions; ++part) {
    int64_t lo = 0, hi = 0;
    if (auto err = rd_kafka_query_watermark_offsets(producer->get(), o.topic.c_str(), part, &lo, &hi, 10'000)) {
      return make_error(ErrorKind::fatal, std::string("watermarks: ") + rd_kafka_err2str(err));
    }
    if (lo != 0) p.starts_at_zero = false;
    p.messages += static_cast<uint64_t>(hi - lo);
  }
  return p;
}

// ---- the physical limit: a bare consumer -----------------------------------------------------------
struct RawResult {
  uint64_t messages = 0;
  uint64_t bytes = 0;
  double seconds = 0;  // first message -> last message
  double rate() const { return seconds > 0 ? static_cast<double>(messages) / seconds : 0; }
};

Result<RawResult> raw_consume(const std::string& bootstrap, const Options& o, bool batch_api,
                              const std::string& group) {
  // The runner's consumer settings, so that only the processing differs.
  auto conf = make_kafka_conf(pipeline_consumer_settings(bootstrap, group));
  if (!conf) return tl::unexpected(conf.error());
  auto consumer = make_kafka_handle(RD_KAFKA_CONSUMER, std::move(*conf));
  if (!consumer) return tl::unexpected(consumer.error());
  rd_kafka_t* rk = consumer->get();
  rd_kafka_poll_set_consumer(rk);
  KafkaPartitionList topics(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(topics.get(), o.topic.c_str(), RD_KAFKA_PARTITION_UA);
  if (auto err = rd_kafka_subscribe(rk, topics.get())) {
    return make_error(ErrorKind::fatal, std::string("subscribe: ") + rd_kafka_err2str(err));
  }
  RawResult r;
  Clock::time_point first{}, last{};
  const auto deadline = Clock::now() + std::chrono::seconds(300);
  std::vector<rd_kafka_message_t*> batch(4096);
  KafkaQueue queue(rd_kafka_queue_get_consumer(rk));
  auto account = [&](const rd_kafka_message_t* m) {
    if (m->err) return;
    if (r.messages == 0) first = Clock::now();
    ++r.messages;
    r.bytes += m->len;
  };
  while (r.messages < o.events && Clock::now() < deadline) {
    if (batch_api) {
      const ssize_t n = rd_kafka_consume_batch_queue(queue.get(), 100, batch.data(), batch.size());
      for (ssize_t i = 0; i < n; ++i) {
        account(batch[static_cast<size_t>(i)]);
        rd_kafka_message_destroy(batch[static_cast<size_t>(i)]);
      }
    } else if (rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100)) {
      account(m);
      rd_kafka_message_destroy(m);
    }
  }
  last = Clock::now();
  queue.reset();  // our reference to the consumer queue, dropped before the consumer closes
  r.seconds = seconds_since(first, last);
  rd_kafka_consumer_close(rk);
  return r;
}

// ---- the pipeline -----------------------------------------------------------------------------------
struct Sample {
  Clock::time_point at;
  double consumed;
};

class Pipeline {
 public:
  // `changelog`: false only for --changelog-ab's comparison pass.
  Pipeline(const std::string& bootstrap, const Options& o, const std::string& state_dir, bool changelog = true)
      : changelog_(changelog), changelog_lanes_(o.changelog_lanes) {
    config_.kafka.bootstrap_servers = bootstrap;
    config_.kafka.topics = {o.topic};
    config_.kafka.group_id =
        std::string(changelog ? "bench-pipeline-" : "bench-pipeline-no-changelog-") + std::to_string(::getpid());
    config_.state.path = state_dir;
    config_.metrics.listen = "127.0.0.1:0";
    if (o.checkpoint_ms > 0) config_.state.checkpoint_interval = Millis{o.checkpoint_ms};
    if (const char* props = std::getenv("SP_BENCH_PROPS")) {
      std::string all = props;
      size_t at = 0;
      while (at < all.size()) {
        size_t end = all.find(',', at);
        if (end == std::string::npos) end = all.size();
        const std::string kv = all.substr(at, end - at);
        const size_t eq = kv.find('=');
        if (eq != std::string::npos) config_.kafka.properties[kv.substr(0, eq)] = kv.substr(eq + 1);
        at = end + 1;
      }
    }
  }

  Status start() {
    std::atomic<int> port{0};
    std::atomic<bool> failed{false};
    thread_ = std::thread([this, &port, &failed] {
      ServiceOptions so;
      so.on_started = [&port](const std::string& url, const std::string&) {
        port.store(std::atoi(url.c_str() + url.rfind(':') + 1));
      };
      so.runner_hooks.without_changelog = !changelog_;
      so.runner_hooks.changelog_lanes = changelog_lanes_;
      so.runner_hooks.on_batch_processed = [this](uint64_t messages) {
        const auto now = Clock::now();
        std::lock_guard lock(commits_mutex_);
        if (first_batch_.at == Clock::time_point{}) first_batch_ = {now, static_cast<double>(messages)};
        last_batch_ = {now, static_cast<double>(messages)};
      };
      so.runner_hooks.on_checkpoint_committed = [this](uint64_t consumed) {
        std::lock_guard lock(commits_mutex_);
        commits_.push_back({Clock::now(), static_cast<double>(consumed)});
      };
      status_ = run_service(config_, so, stop_);
      if (port.load() == 0) failed.store(true);
    });
    while (port.load() == 0 && !failed.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (failed.load()) {
      thread_.join();
      return tl::unexpected(status_.error());
    }
    port_ = port.load();
    return {};
  }

  Status stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    return status_;
  }

  int port() const { return port_; }
  const Config& config() const { return config_; }

  std::optional<std::string> scrape() const { return http_get(port_, "/metrics"); }
  // (commit time, consumed count) of every checkpoint the runner committed so far.
  std::vector<Sample> commits() const {
    std::lock_guard lock(commits_mutex_);
    return commits_;
  }
  // The first batch the pipeline thread processed, and the latest (message count, time).
  std::pair<Sample, Sample> batches() const {
    std::lock_guard lock(commits_mutex_);
    return {first_batch_, last_batch_};
  }
  // Messages the pipeline thread processed so far (every batch, not only at checkpoints).
  uint64_t processed() const {
    std::lock_guard lock(commits_mutex_);
    return static_cast<uint64_t>(last_batch_.consumed);
  }
  std::optional<double> consumed() const {
    auto body = scrape();
    if (!body) return std::nullopt;
    return metric_value(*body, "socialpulse_events_consumed_total");
  }

 private:
  bool changelog_ = true;
  size_t changelog_lanes_ = 0;
  Config config_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  Status status_;
  int port_ = 0;
  mutable std::mutex commits_mutex_;
  std::vector<Sample> commits_;
  Sample first_batch_{};
  Sample last_batch_{};
};

struct ThroughputResult {
  double rate = 0;             // events/s from the first to the last message processed (as raw)
  double checkpoint_rate = 0;  // events/s between the first and last checkpoint during the run
  double wall_seconds = 0;     // from run_service start to the scrape that showed N
  double wall_rate = 0;        // N / wall_seconds (includes group join and the last checkpoint wait)
  int checkpoints_seen = 0;
  bool complete = false;
};

// Waits until /metrics shows N consumed. The rate comes from the runner's own checkpoint commits
// (exact commit times, no scrape jitter): between the first and the last commit that happened
// while the backlog was still being read, so that neither the group join nor the wait for the
// checkpoint after the last event is counted.
ThroughputResult measure_pipeline(const Pipeline& p, uint64_t n, Clock::time_point started) {
  ThroughputResult r;
  const auto deadline = Clock::now() + std::chrono::seconds(600);
  double last = 0;
  Clock::time_point seen_all{};
  while (Clock::now() < deadline) {
    const auto c = p.consumed();
    if (c) last = *c;
    if (last >= static_cast<double>(n)) {
      seen_all = Clock::now();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  r.complete = last >= static_cast<double>(n);
  if (!r.complete) return r;
  r.wall_seconds = seconds_since(started, seen_all);
  r.wall_rate = last / r.wall_seconds;
  std::vector<Sample> mid;
  const std::vector<Sample> commits = p.commits();
  for (const auto& s : commits) {
    if (s.consumed > 0 && s.consumed < static_cast<double>(n)) mid.push_back(s);
  }
  r.checkpoints_seen = static_cast<int>(mid.size());
  // Like the raw consumers: first message -> last message, here processed by the pipeline thread
  // (decoded, deduplicated, through every operator; exposed at the next checkpoint).
  const auto [first_batch, last_batch] = p.batches();
  if (last_batch.consumed >= static_cast<double>(n) && last_batch.at > first_batch.at) {
    r.rate = (last_batch.consumed - first_batch.consumed) / seconds_since(first_batch.at, last_batch.at);
  }
  if (mid.size() >= 2) {
    r.checkpoint_rate = (mid.back().consumed - mid.front().consumed) / seconds_since(mid.front().at, mid.back().at);
  } else {
    // Fewer than two checkpoints inside the backlog: from the first one to the one covering N
    // (biased low by up to one interval). Use more --events.
    const Sample* first = mid.empty() ? nullptr : &mid.front();
    const Sample* end = nullptr;
    for (const auto& s : commits) {
      if (s.consumed >= static_cast<double>(n)) {
        end = &s;
        break;
      }
    }
    r.checkpoint_rate = first && end ? (end->consumed - first->consumed) / seconds_since(first->at, end->at) : r.wall_rate;
  }
  return r;
}

// ---- sustained capacity ----------------------------------------------------------------------
struct SustainedResult {
  double rate = 0;           // events/s the pipeline processed in the window
  double produced_rate = 0;  // events/s the producer had acknowledged in the window
  bool producer_held = false;  // the producer waited for the pipeline (else it was the limit)
  bool drained = false;        // every event produced was consumed afterwards
};

// Events of the sustained phase get ids from here: never those of the latency phase.
constexpr uint64_t kSustainedIdBase = 500'000'000'000ULL;
// The embedded broker keeps ~5 MiB a partition: with fewer partitions that is a fraction of a
// second of a flat-out producer, and the lead bound (a total) does not stop one partition the
// pipeline fetches later than the others from falling out of it (at 16 partitions: offsets reset,
// ~12 % of the events lost). Below this the phase is skipped and the latency load is taken from
// the backlog rate.
constexpr int kSustainedMinPartitions = 64;

// The capacity the backlog phase measures has the pipeline alone on the machine. Under a live
// load the producer and the broker share the two cores with it: 50 % of the backlog figure is
// then more than this machine sustains, and a latency phase at that load measures falling
// behind. Here the load producer runs flat out for `seconds`, held back only while it is more
// than kMaxLead events ahead of the pipeline (the embedded broker keeps ~5 MiB a partition); the
// rate the pipeline processes from the first second on is what the machine sustains end to end.
Result<SustainedResult> measure_sustained(const Pipeline& p, const std::string& bootstrap, const Options& o,
                                          double seconds) {
  const auto max_lead = static_cast<uint64_t>(o.partitions) * 3'000;  // ~1 MB a partition
  SustainedResult r;
  auto producer = make_producer(bootstrap, "50");
  if (!producer) return tl::unexpected(producer.error());
  const std::vector<LoadTemplate> templates = make_load_templates(65536, o);
  const uint64_t base = p.processed();
  std::atomic<uint64_t> produced{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> held{false};
  Status produce_status;
  // Of `sent` messages handed to the producer, those the broker acknowledged.
  auto acked = [&](uint64_t sent) { return sent - static_cast<uint64_t>(rd_kafka_outq_len(producer->get())); };
  std::thread producer_thread([&] {
    GeneratedEvent ev;
    uint64_t k = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      if (acked(k) > p.processed() - base + max_lead) {
        held.store(true, std::memory_order_relaxed);
        rd_kafka_poll(producer->get(), 1);
        continue;
      }
      for (int i = 0; i < 256; ++i, ++k) {
        const EventTime now = std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now());
        make_load_event(templates, kSustainedIdBase + k, now, ev);
        if (auto s = produce_one(producer->get(), o.topic, templates[k % templates.size()].partition, ev); !s) {
          produce_status = s;
          stop.store(true);
          break;
        }
      }
      produced.store(k, std::memory_order_relaxed);
      rd_kafka_poll(producer->get(), 0);
    }
    rd_kafka_flush(producer->get(), 30'000);
    produced.store(k);
  });
  const auto t0 = Clock::now();
  std::this_thread::sleep_until(t0 + std::chrono::seconds(1));
  const auto t1 = Clock::now();
  const uint64_t processed1 = p.processed(), acked1 = acked(produced.load());
  held.store(false);
  std::this_thread::sleep_until(t0 + std::chrono::duration<double>(seconds));
  const auto t2 = Clock::now();
  const uint64_t processed2 = p.processed(), acked2 = acked(produced.load());
  r.producer_held = held.load();
  stop.store(true);
  producer_thread.join();
  if (!produce_status) return tl::unexpected(produce_status.error());
  r.rate = static_cast<double>(processed2 - processed1) / seconds_since(t1, t2);
  r.produced_rate = static_cast<double>(acked2 - acked1) / seconds_since(t1, t2);
  const uint64_t total = produced.load();
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline && p.processed() - base < total) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  r.drained = p.processed() - base >= total;
  return r;
}

struct LatencyResult {
  double target_rate = 0;
  double produced_rate = 0;
  uint64_t produced = 0;
  double p50 = NAN, p99 = NAN, max = NAN;            // external: produce call -> counter on /metrics
  double hist_p50 = NAN, hist_p99 = NAN;             // socialpulse_event_latency_seconds
  double checkpoint_mean_ms = NAN;                   // checkpoints written during the phase
  double append_p50 = NAN, append_p99 = NAN, append_max = NAN;  // broker ack -> counter on /metrics
  double producer_p50 = NAN, producer_p99 = NAN;                // produce call -> broker ack
  bool caught_up = false;
  // The virtual CPUs' stalls during the phase (vcpu_stalls.h), and the p99 from append with the
  // time either CPU was stopped subtracted from each event's wait (a lower bound of what a
  // machine without such stalls would show).
  size_t host_stalls = 0, guest_stalls = 0;
  double host_stalled_ms = 0, host_stall_max_ms = 0;
  double append_p99_unstalled = NAN;
};

// Watchers of the virtual CPUs' stalls (forked in main() before any thread), armed during the
// latency phase only; null when they could not start.
VcpuStallWatch* g_stall_watch = nullptr;

// Steady load: produce at `rate` for `seconds` with event time = now while scraping /metrics every
// 5 ms. Message k's latency is the time from its produce call (its CreateTime) until a scrape shows
// consumed >= base + k: the counter is the first value the pipeline exposes for an event.
Result<LatencyResult> measure_latency(const Pipeline& p, const std::string& bootstrap, const Options& o,
                                      double rate) {
  LatencyResult r;
  r.target_rate = rate;
  const auto total = static_cast<uint64_t>(rate * o.latency_seconds);
  AckTimes acks;
  acks.at.resize(total);
  // linger 50 ms: the embedded broker finds a fetch offset by walking the partition's message
  // sets one by one (rdkafka_mock.c: "FIXME: Maintain an index"); with 5 ms batches the walk grew
  // by ~200 sets per partition a second and slowed every fetch of the phase down. Producer
  // batching does not count in the latency from append.
  auto producer = make_producer(bootstrap, "50", &acks);
  if (!producer) return tl::unexpected(producer.error());
  const std::vector<LoadTemplate> templates = make_load_templates(65536, o);
  // Warm-up: a fresh producer got its first acknowledgement only ~1 s after its first send (its
  // connections and metadata), then appended that second's messages at once, and the pipeline
  // spent the next seconds on a burst of twice the load: the first seconds measured the
  // producer's start, not the pipeline. One message per partition, acknowledged and consumed,
  // before the clock starts (unconsumed, they would count as the first load messages).
  const auto warm_from = p.consumed();
  if (!warm_from) return make_error(ErrorKind::fatal, "latency warm-up: scrape failed");
  GeneratedEvent warm_event;
  for (int32_t part = 0; part < o.partitions; ++part) {
    const auto now = std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now());
    make_load_event(templates, 999'999'000'000ULL + static_cast<uint64_t>(part), now, warm_event);
    if (auto s = produce_one(producer->get(), o.topic, part, warm_event); !s) return tl::unexpected(s.error());
  }
  rd_kafka_flush(producer->get(), 10'000);
  const auto warm_until = Clock::now() + std::chrono::seconds(10);
  for (;;) {
    if (p.consumed().value_or(0) >= *warm_from + o.partitions) break;
    if (Clock::now() >= warm_until) return make_error(ErrorKind::fatal, "latency warm-up: not consumed within 10 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const auto before = p.scrape();
  if (!before) return make_error(ErrorKind::fatal, "latency: scrape failed");
  const double base = metric_value(*before, "socialpulse_events_consumed_total").value_or(0);
  const auto hist_before = histogram_buckets(*before, "socialpulse_event_latency_seconds");

  std::vector<Clock::time_point> produced_at(total);
  std::atomic<uint64_t> produced{0};
  std::atomic<bool> producing{true};
  Status produce_status;
  const auto t0 = Clock::now();
  if (g_stall_watch) g_stall_watch->arm(true);
  std::thread producer_thread([&] {
    std::mt19937 jitter(11);
    GeneratedEvent ev;
    uint64_t k = 0;
    while (k < total) {
      const auto due = static_cast<uint64_t>(seconds_since(t0, Clock::now()) * rate);
      if (k >= due) {
        rd_kafka_poll(producer->get(), 0);
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        continue;
      }
      // Generate up to what is due, then hand the batch to librdkafka.
      for (; k < std::min(due, total); ++k) {
        const EventTime now = std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now());
        make_load_event(templates, k, now - Millis{static_cast<int64_t>(jitter() % 3000)}, ev);
        produced_at[k] = Clock::now();
        if (auto s = produce_one(producer->get(), o.topic, templates[k % templates.size()].partition, ev, k + 1); !s) {
          produce_status = s;
          k = total;
          break;
        }
        produced.store(k + 1, std::memory_order_release);
      }
      rd_kafka_poll(producer->get(), 0);
    }
    producing.store(false);
    rd_kafka_flush(producer->get(), 30'000);
  });

  std::vector<double> latencies;
  std::vector<Clock::time_point> exposed_at;
  // Sized and written once before the clock matters: first touching ~100 MB of fresh pages while
  // the load runs cost this thread (at the broker's priority) tens of ms of page faults.
  latencies.resize(total);
  latencies.clear();
  exposed_at.resize(total);
  exposed_at.clear();
  uint64_t exposed = 0;  // messages whose latency is recorded
  const auto deadline = t0 + std::chrono::duration<double>(o.latency_seconds + 30);
  std::string last_body;
  while (Clock::now() < deadline) {
    const auto body = p.scrape();
    const auto at = Clock::now();
    if (body) {
      const double c = metric_value(*body, "socialpulse_events_consumed_total").value_or(base) - base;
      const auto upto = std::min<uint64_t>(static_cast<uint64_t>(std::max(0.0, c)), produced.load(std::memory_order_acquire));
      for (; exposed < upto; ++exposed) {
        latencies.push_back(seconds_since(produced_at[exposed], at));
        exposed_at.push_back(at);
      }
      last_body = *body;
      if (!producing.load() && exposed >= total) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  producer_thread.join();
  if (g_stall_watch) g_stall_watch->arm(false);
  if (!produce_status) return tl::unexpected(produce_status.error());
  r.produced = produced.load();
  r.produced_rate = static_cast<double>(r.produced) / o.latency_seconds;
  r.caught_up = exposed >= total;
  if (std::getenv("SP_BENCH_DEBUG_LOG")) {
    std::vector<Clock::time_point> sorted_acks;
    for (const auto& a : acks.at) {
      if (a != Clock::time_point{}) sorted_acks.push_back(a);
    }
    std::sort(sorted_acks.begin(), sorted_acks.end());
    for (const auto& c : p.commits()) {
      if (c.at < t0) continue;
      const auto acked = std::upper_bound(sorted_acks.begin(), sorted_acks.end(), c.at) - sorted_acks.begin();
      std::fprintf(stderr, "commit at %.3f s: consumed %.0f, acked by then %ld, lag %.0f\n", seconds_since(t0, c.at),
                   c.consumed - base, static_cast<long>(acked), static_cast<double>(acked) - (c.consumed - base));
    }
    for (int sec = 0; sec < static_cast<int>(o.latency_seconds); ++sec) {
      std::vector<double> in_sec;
      for (uint64_t k = 0; k < latencies.size(); ++k) {
        if (static_cast<int>(seconds_since(t0, produced_at[k])) == sec) in_sec.push_back(latencies[k]);
      }
      if (!in_sec.empty()) {
        std::fprintf(stderr, "latency second %d: n=%zu p50=%.3f max=%.3f\n", sec, in_sec.size(),
                     quantile(in_sec, 0.5), *std::max_element(in_sec.begin(), in_sec.end()));
      }
    }
  }
  // Skip the first second: the load ramps up from an idle pipeline.
  std::vector<double> steady;
  for (uint64_t k = 0; k < latencies.size(); ++k) {
    if (seconds_since(t0, produced_at[k]) >= 1.0) steady.push_back(latencies[k]);
  }
  if (!steady.empty()) {
    r.p50 = quantile(steady, 0.5);
    r.p99 = quantile(steady, 0.99);
    r.max = *std::max_element(steady.begin(), steady.end());
  }
  // From the broker's acknowledgement (append) instead of the produce call: without the
  // producer's own batching and queueing (SPEC 4: message append -> value exposed).
  std::vector<double> from_append, producer_delay;
  for (uint64_t k = 0; k < latencies.size(); ++k) {
    if (seconds_since(t0, produced_at[k]) < 1.0 || acks.at[k] == Clock::time_point{}) continue;
    from_append.push_back(std::max(0.0, seconds_since(acks.at[k], exposed_at[k])));
    producer_delay.push_back(seconds_since(produced_at[k], acks.at[k]));
  }
  if (g_stall_watch && !from_append.empty()) {
    // The watchers were armed from t0 to the end of the phase only.
    const auto stalls = summarize_vcpu_stalls(g_stall_watch->stalls(), steady_ns(t0), INT64_MAX);
    r.host_stalls = stalls.host;
    r.guest_stalls = stalls.guest;
    r.host_stalled_ms = stalls.host_ms;
    r.host_stall_max_ms = stalls.host_max_ms;
    std::vector<double> unstalled;
    unstalled.reserve(from_append.size());
    for (uint64_t k = 0; k < latencies.size(); ++k) {
      if (seconds_since(t0, produced_at[k]) < 1.0 || acks.at[k] == Clock::time_point{}) continue;
      const double stalled =
          static_cast<double>(stalled_ns(stalls.host_intervals, steady_ns(acks.at[k]), steady_ns(exposed_at[k]))) / 1e9;
      unstalled.push_back(std::max(0.0, seconds_since(acks.at[k], exposed_at[k]) - stalled));
    }
    r.append_p99_unstalled = quantile(unstalled, 0.99);
  }
  if (!from_append.empty()) {
    r.append_p50 = quantile(from_append, 0.5);
    r.append_p99 = quantile(from_append, 0.99);
    r.append_max = *std::max_element(from_append.begin(), from_append.end());
    r.producer_p50 = quantile(producer_delay, 0.5);
    r.producer_p99 = quantile(producer_delay, 0.99);
  }
  const auto hist_after = histogram_buckets(last_body, "socialpulse_event_latency_seconds");
  r.hist_p50 = histogram_quantile(0.5, hist_before, hist_after);
  r.hist_p99 = histogram_quantile(0.99, hist_before, hist_after);
  const double cp_count = metric_value(last_body, "socialpulse_checkpoint_duration_seconds_count").value_or(0) -
                          metric_value(*before, "socialpulse_checkpoint_duration_seconds_count").value_or(0);
  const double cp_sum = metric_value(last_body, "socialpulse_checkpoint_duration_seconds_sum").value_or(0) -
                        metric_value(*before, "socialpulse_checkpoint_duration_seconds_sum").value_or(0);
  if (cp_count > 0) r.checkpoint_mean_ms = cp_sum / cp_count * 1e3;
  return r;
}

// ---- scrape of 20 000 series -----------------------------------------------------------------------
struct ScrapeResult {
  size_t series = 0;
  size_t bytes = 0;
  double build_ms = 0;  // snapshot build at checkpoint time (pipeline thread)
  double best_ms = 0, median_ms = 0, worst_ms = 0;  // GET /metrics over loopback, first after a publish
  double cached_median_ms = 0;                       // GET of a snapshot already rendered
};

Result<ScrapeResult> measure_scrape(size_t target) {
  MetricsRegistry registry(target + 5000);
  auto server = HttpServer::start({"127.0.0.1:0", "", ""});
  if (!server) return tl::unexpected(server.error());
  // 40 brands x 11 channels x 12 types per family: the label shapes of the interaction counters.
  std::vector<std::string> brands, channels, types;
  for (int i = 0; i < 40; ++i) brands.push_back("brand" + std::to_string(i));
  for (int i = 0; i < 11; ++i) channels.push_back("channel" + std::to_string(i));
  for (int i = 0; i < 12; ++i) types.push_back("type" + std::to_string(i));
  const auto b0 = Clock::now();
  registry.begin();
  size_t n = 0;
  for (int family = 0; n < target; ++family) {
    registry.family("socialpulse_family" + std::to_string(family) + "_total", "benchmark family",
                    MetricType::counter);
    for (size_t i = 0; i < brands.size() * channels.size() * types.size() && n < target; ++i, ++n) {
      const std::array<LabelPair, 3> labels{{{"brand", brands[i / 132]},
                                             {"channel", channels[(i / 12) % 11]},
                                             {"type", types[i % 12]}}};
      registry.add(labels, static_cast<double>(n) * 1.5);
    }
  }
  const auto snapshot = registry.finish();
  ScrapeResult r;
  r.series = n;
  r.build_ms = seconds_since(b0, Clock::now()) * 1e3;
  std::vector<double> times, cached;
  for (int i = 0; i < 21; ++i) {
    // A fresh snapshot (as after a checkpoint): this scrape renders it, the next one reuses it.
    (*server)->publish(std::make_shared<const MetricsSnapshot>(*snapshot));
    for (int k = 0; k < 2; ++k) {
      const auto t = Clock::now();
      const auto body = http_get((*server)->port(), "/metrics");
      if (!body) return make_error(ErrorKind::fatal, "scrape failed");
      (k == 0 ? times : cached).push_back(seconds_since(t, Clock::now()) * 1e3);
      r.bytes = body->size();
    }
  }
  std::sort(times.begin(), times.end());
  std::sort(cached.begin(), cached.end());
  r.best_ms = times.front();
  r.median_ms = times[times.size() / 2];
  r.worst_ms = times.back();
  r.cached_median_ms = cached[cached.size() / 2];
  return r;
}

int run(const Options& o) {
  spdlog::set_level(std::getenv("SP_BENCH_DEBUG_LOG") ? spdlog::level::debug : spdlog::level::warn);
  bool ok = true;
  auto check = [&ok](bool cond, const std::string& what) {
    if (!cond) {
      std::fprintf(stderr, "CHECK FAILED: %s\n", what.c_str());
      ok = false;
    }
  };
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) < 0) load[0] = NAN;
  std::printf("bench_e2e: %" PRIu64 " events at %.0f events per event-time second, %d partitions (%s), "
              "load average %.2f at start\n",
              o.events, o.event_rate, o.partitions, o.round_robin ? "round-robin" : "keyed by actor", load[0]);

  auto broker = EmbeddedBroker::start();
  if (!broker) return std::fprintf(stderr, "broker: %s\n", broker.error().message.c_str()), 1;
  const std::string bootstrap = (*broker)->bootstrap_servers();
  const Config defaults;
  for (const auto* t : {&o.topic, &defaults.kafka.output_topic, &defaults.kafka.alerts_topic,
                        &defaults.kafka.dlq_topic}) {
    if (auto s = (*broker)->create_topic(*t, o.partitions); !s) {
      return std::fprintf(stderr, "%s\n", s.error().message.c_str()), 1;
    }
  }

  if (auto s = (*broker)->create_state_topic(defaults.kafka.state_topic, o.partitions); !s) {
    return std::fprintf(stderr, "%s\n", s.error().message.c_str()), 1;
  }

  // 1. Pre-load.
  auto pre = preload(bootstrap, o);
  if (!pre) return std::fprintf(stderr, "preload: %s\n", pre.error().message.c_str()), 1;
  std::printf("preload: %" PRIu64 " events (%.0f B avg) in %.1f s; topic holds %" PRIu64
              " (low watermarks all 0: %s)\n",
              o.events, static_cast<double>(pre->bytes) / static_cast<double>(o.events), pre->seconds,
              pre->messages, pre->starts_at_zero ? "yes" : "no");
  check(pre->messages == o.events && pre->starts_at_zero,
        "the topic does not hold every pre-loaded event (mock broker retention: use more partitions)");
  if (!ok) return 1;
  const uint64_t rss_after_preload = proc_status_kib("VmRSS:");

  // 2. Raw consumers.
  auto raw_poll = raw_consume(bootstrap, o, false, "bench-raw-poll-" + std::to_string(::getpid()));
  if (!raw_poll) return std::fprintf(stderr, "raw: %s\n", raw_poll.error().message.c_str()), 1;
  auto raw_batch = raw_consume(bootstrap, o, true, "bench-raw-batch-" + std::to_string(::getpid()));
  if (!raw_batch) return std::fprintf(stderr, "raw: %s\n", raw_batch.error().message.c_str()), 1;
  check(raw_poll->messages == o.events, "raw poll consumer read " + std::to_string(raw_poll->messages));
  check(raw_batch->messages == o.events, "raw batch consumer read " + std::to_string(raw_batch->messages));
  const double raw_rate = std::max(raw_poll->rate(), raw_batch->rate());
  std::printf("raw consume: poll %.0f ev/s, batch %.0f ev/s\n", raw_poll->rate(), raw_batch->rate());
  // The raw reference ran with glibc's allocator defaults, as a bare consumer process does; the
  // pipeline runs with the binary's (app/main.cc).
  keep_freed_memory_for_reuse();

  // 3a. --changelog-ab: the same pass without the state changelog, throughput only.
  const std::string state_dir =
      (std::filesystem::temp_directory_path() / ("socialpulse-bench-e2e-" + std::to_string(::getpid()))).string();
  std::optional<ThroughputResult> without_changelog;
  if (o.changelog_ab) {
    std::filesystem::remove_all(state_dir);
    Pipeline off(bootstrap, o, state_dir, false);
    const auto off_started = Clock::now();
    if (auto s = off.start(); !s) return std::fprintf(stderr, "pipeline: %s\n", s.error().message.c_str()), 1;
    without_changelog = measure_pipeline(off, o.events, off_started);
    check(without_changelog->complete, "the pipeline without the changelog did not consume every event");
    if (auto body = off.scrape()) {
      check(metric_value(*body, "socialpulse_changelog_bytes_total").value_or(0) == 0,
            "the changelog was off but produced bytes");
    }
    if (auto s = off.stop(); !s) check(false, "pipeline without the changelog stopped with: " + s.error().message);
    std::printf("pipeline, changelog off: %.0f ev/s first to last message processed; %.0f ev/s between checkpoints\n",
                without_changelog->rate, without_changelog->checkpoint_rate);
  }

  // 3. Pipeline.
  std::filesystem::remove_all(state_dir);
  const uint64_t rss_before_pipeline = proc_status_kib("VmRSS:");
  const bool peak_reset = reset_peak_rss();
  Pipeline pipeline(bootstrap, o, state_dir);
  const auto started = Clock::now();
  if (auto s = pipeline.start(); !s) return std::fprintf(stderr, "pipeline: %s\n", s.error().message.c_str()), 1;
  const ThroughputResult tp = measure_pipeline(pipeline, o.events, started);
  check(tp.complete, "the pipeline did not consume every event");
  std::printf("pipeline: %.0f ev/s first to last message processed; %.0f ev/s between checkpoints (%d committed "
              "while reading the backlog); wall %.2f s (%.0f ev/s incl. group join and last checkpoint)\n",
              tp.rate, tp.checkpoint_rate, tp.checkpoints_seen, tp.wall_seconds, tp.wall_rate);
  if (auto body = pipeline.scrape()) {
    const double consumed = metric_value(*body, "socialpulse_events_consumed_total").value_or(-1);
    const double accepted = metric_value(*body, "socialpulse_events_accepted_total").value_or(-1);
    const double duplicate = metric_value(*body, "socialpulse_events_duplicate_total").value_or(-1);
    const double rejected = metric_value(*body, "socialpulse_events_rejected_total").value_or(-1);
    std::printf("accounting: consumed %.0f = accepted %.0f + duplicate %.0f + rejected %.0f\n", consumed,
                accepted, duplicate, rejected);
    check(consumed == static_cast<double>(o.events), "consumed != N");
    check(consumed == accepted + duplicate + rejected, "consumed != accepted + duplicate + rejected");
    check(rejected == 0, "generated events were rejected");
    const double cp_count = metric_value(*body, "socialpulse_checkpoint_duration_seconds_count").value_or(0);
    const double cp_sum = metric_value(*body, "socialpulse_checkpoint_duration_seconds_sum").value_or(0);
    const double state_bytes = metric_value(*body, "socialpulse_state_bytes").value_or(0);
    std::printf("checkpoints: %.0f, mean %.1f ms, %.1f%% of the run; state %.1f MB\n", cp_count,
                cp_count > 0 ? cp_sum / cp_count * 1e3 : 0.0, 100 * cp_sum / tp.wall_seconds, state_bytes / 1e6);
    // Issue #15: what the state changelog (kafka.state_topic, on by default) costs per checkpoint.
    const double changelog = metric_value(*body, "socialpulse_changelog_bytes_total").value_or(0);
    std::printf("changelog: %.1f MB in all, %.0f kB per checkpoint (%.0f B per event)\n", changelog / 1e6,
                cp_count > 0 ? changelog / cp_count / 1e3 : 0.0, changelog / static_cast<double>(o.events));
  } else {
    check(false, "final scrape failed");
  }
  const uint64_t peak_pipeline = proc_status_kib("VmHWM:");

  // 3b. Capacity with the load producer running (the latency phase's load is a fraction of it).
  std::optional<SustainedResult> sustained;
  const bool sustained_wanted = o.sustained_seconds > 0 && !o.smoke && o.latency_rate <= 0;
  if (sustained_wanted && o.partitions < kSustainedMinPartitions) {
    std::printf("sustained phase skipped: %d partitions, fewer than %d (the embedded broker's retention); "
                "latency load from the backlog rate\n",
                o.partitions, kSustainedMinPartitions);
  } else if (sustained_wanted) {
    auto sr = measure_sustained(pipeline, bootstrap, o, o.sustained_seconds);
    if (!sr) {
      check(false, "sustained: " + sr.error().message);
    } else {
      sustained = *sr;
      check(sr->drained, "sustained phase: the pipeline did not consume every event produced");
      std::printf("sustained, load producer running: %.0f ev/s processed, %.0f ev/s produced (%s)\n", sr->rate,
                  sr->produced_rate, sr->producer_held ? "the producer waited for the pipeline" : "producer-bound");
    }
  }

  // 4. Latency at a fraction of the measured capacity.
  std::optional<LatencyResult> lat;
  const double capacity = sustained ? sustained->rate : tp.rate;
  if (o.latency_seconds > 0 && tp.rate > 0) {
    // The smoke test checks the phase works, not a figure: its capacity comes from a 20 000-event
    // backlog (first to last message, hundreds of k/s), and half of that for 2 s on 8 partitions
    // outran the embedded broker's retention on a busy CI machine (offsets reset, "did not keep
    // up"). A fixed, modest load keeps it a check of the harness.
    constexpr double kSmokeLatencyRate = 20'000;
    const double rate = o.latency_rate > 0 ? o.latency_rate
                        : o.smoke          ? std::min(tp.rate * o.latency_load, kSmokeLatencyRate)
                                           : capacity * o.latency_load;
    auto l = measure_latency(pipeline, bootstrap, o, rate);
    if (!l) {
      check(false, "latency: " + l.error().message);
    } else {
      lat = *l;
      check(l->caught_up, "latency phase: the pipeline did not keep up with the load");
    }
  }
  const uint64_t peak_total = proc_status_kib("VmHWM:");
  if (auto s = pipeline.stop(); !s) check(false, "pipeline stopped with: " + s.error().message);
  std::filesystem::remove_all(state_dir);

  // 5. Scrape.
  std::optional<ScrapeResult> scrape;
  if (o.scrape_series > 0) {
    auto s = measure_scrape(o.scrape_series);
    if (!s) {
      check(false, "scrape: " + s.error().message);
    } else {
      scrape = *s;
    }
  }

  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  if (getloadavg(load, 3) < 0) load[0] = NAN;
  const double ratio = raw_rate > 0 ? tp.rate / raw_rate : 0;
  const double interval_s = std::chrono::duration<double>(pipeline.config().state.checkpoint_interval).count();

  std::printf("\n| SPEC 9 figure | target | measured |\n|---|---|---|\n");
  std::printf("| raw librdkafka consume (max of poll, batch) | physical limit | %.0f ev/s |\n", raw_rate);
  std::printf("| end to end, default config | >= 0.6 x raw | %.0f ev/s, ratio **%.2f** |\n", tp.rate, ratio);
  if (without_changelog && raw_rate > 0) {
    std::printf("| same, state changelog off (--changelog-ab, same run) | - | %.0f ev/s, ratio %.2f; changelog on / "
                "off **%.2f** |\n",
                without_changelog->rate, without_changelog->rate / raw_rate,
                without_changelog->rate > 0 ? tp.rate / without_changelog->rate : 0.0);
  }
  if (sustained) {
    std::printf("| capacity with the load producer running (%.0f s, %s) | - | %.0f ev/s (backlog: %.0f ev/s) |\n",
                o.sustained_seconds, sustained->producer_held ? "pipeline-bound" : "producer-bound", sustained->rate,
                tp.rate);
  }
  if (lat) {
    std::printf("| event -> /metrics latency at %.0f ev/s (%.0f%% of %s capacity), from broker append | p99 <= %.3f "
                "s | p50 %.3f s, p99 **%.3f s**, max %.3f s (checkpoints mean %.1f ms) |\n",
                lat->produced_rate, capacity > 0 ? lat->target_rate / capacity * 100 : 0.0,
                sustained ? "sustained" : "backlog", interval_s + 0.05,
                lat->append_p50, lat->append_p99,
                lat->append_max, lat->checkpoint_mean_ms);
    std::printf("| same, from the produce call (incl. producer batching: p50 %.3f s, p99 %.3f s) | - | "
                "p50 %.3f s, p99 %.3f s, max %.3f s (socialpulse_event_latency_seconds: p50 %.3f, p99 %.3f) |\n",
                lat->producer_p50, lat->producer_p99, lat->p50, lat->p99, lat->max, lat->hist_p50, lat->hist_p99);
    if (g_stall_watch) {
      std::printf("| same, from append, each wait less the time a virtual CPU was stopped (vCPU stalls the guest did "
                  "not cause: %zu, %.0f ms in all, longest %.0f ms; %zu behind guest threads) | - | p99 %.3f s |\n",
                  lat->host_stalls, lat->host_stalled_ms, lat->host_stall_max_ms, lat->guest_stalls,
                  lat->append_p99_unstalled);
    }
  }
  std::printf("| peak RSS, pipeline phase (VmHWM after reset%s) | - | %.0f MiB (RSS before: %.0f MiB, of which "
              "broker + topic ~%.0f MiB) |\n",
              peak_reset ? "" : " FAILED: whole process", static_cast<double>(peak_pipeline) / 1024.0,
              static_cast<double>(rss_before_pipeline) / 1024.0, static_cast<double>(rss_after_preload) / 1024.0);
  std::printf("| peak RSS incl. latency phase / process ru_maxrss | - | %.0f / %.0f MiB |\n",
              static_cast<double>(peak_total) / 1024.0, static_cast<double>(ru.ru_maxrss) / 1024.0);
  if (scrape) {
    std::printf("| scrape of %zu series (GET /metrics, %zu B), first after a checkpoint | <= 20 ms | best %.1f ms, "
                "median **%.1f ms**, worst %.1f ms; later scrapes of the same snapshot: median %.1f ms "
                "(snapshot build %.1f ms, pipeline thread) |\n",
                scrape->series, scrape->bytes, scrape->best_ms, scrape->median_ms, scrape->worst_ms,
                scrape->cached_median_ms, scrape->build_ms);
  }
  std::printf("| restart after kill -9, 1 M keys | ready <= 2 s | next: bench_recovery (make bench-e2e runs it) |\n");
  std::printf("load average at end: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
  if (o.smoke) std::printf("smoke: %s\n", ok ? "counts match" : "FAILED");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace sp::bench

int main(int argc, char** argv) {
  const sp::bench::Options o = sp::bench::parse_args(argc, argv);
  // The stall watchers are processes forked while this one has a single thread; disarmed until
  // the latency phase.
  sp::bench::VcpuStallWatch watch;
  if (o.latency_seconds > 0 && !o.smoke && watch.start()) {
    watch.arm(false);
    sp::bench::g_stall_watch = &watch;
  }
  return sp::bench::run(o);
}
