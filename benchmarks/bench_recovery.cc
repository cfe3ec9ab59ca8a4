// Restart after kill -9 (SPEC 9: ready <= 2 s with 1 M keys of state), and a partition moving to
// a new owner (issue #15; BM_PartitionMovesToANewOwner below).
//
// Setup, once: an EmbeddedBroker with an 8-partition topic; the real Runner (default config)
// consumes N generated events (N distinct event ids, 150 000 actors, 5000 events per second of
// event time so every id stays inside the 15 min dedup horizon) while they are produced, and writes
// its state through the real checkpoint path. Producing is throttled against the checkpointed
// count because the embedded broker keeps only ~5 MiB per partition. The runner then stops; its
// last writes sit in the RocksDB WAL (no memtable flush at close with the WAL on), so each start
// replays the WAL as after kill -9.
//
// Measured per iteration (manual time): Runner::create — RocksDB open with WAL replay, global
// operator state, client handles — plus the restore of every assigned partition in the rebalance
// callback (store reads, operator and deduplicator restore). The consumer-group join between the
// two is excluded: it depends on the broker, not on state. items/s = restored dedup ids per second.
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>

#include "operators/deduplicator.h"
#include "operators/keyed_state.h"
#include "operators/topology.h"
#include "pipeline/checkpoint_state.h"
#include "pipeline/config.h"
#include "pipeline/embedded_broker.h"
#include "pipeline/event_generator.h"
#include "pipeline/kafka.h"
#include "pipeline/runner.h"
#include "state/checkpoint_store.h"

namespace sp {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kPartitions = 8;
constexpr const char* kTopic = "bench-recovery";

uint64_t events_from_env() {
  const char* v = std::getenv("SP_RECOVERY_EVENTS");
  return v ? std::strtoull(v, nullptr, 10) : 1'000'000;
}

struct StateDir {
  std::unique_ptr<EmbeddedBroker> broker;
  Config config;
  std::string path;
  uint64_t events = 0;
  uint64_t dedup_ids = 0;  // restored from the store through the Deduplicator
  std::map<std::string, std::pair<uint64_t, uint64_t>> keys;  // prefix -> (keys, bytes)
  std::string error;
};

struct RemoveAtExit {
  std::string path;
  ~RemoveAtExit() {
    if (!path.empty()) std::filesystem::remove_all(path);
  }
};

// Runs a Runner on `config` in a thread; `stop` ends it gracefully.
struct RunningRunner {
  std::atomic<bool> stop{false};
  std::thread thread;
  Status status;
  void start(const Config& config, const std::string& bootstrap, const RunnerTestHooks& hooks,
             Clock::duration* create_time = nullptr) {
    thread = std::thread([this, config, bootstrap, hooks, create_time] {
      const auto t0 = Clock::now();
      auto runner = Runner::create(config, bootstrap, nullptr, hooks);
      if (create_time) *create_time = Clock::now() - t0;
      if (!runner) {
        status = tl::unexpected(runner.error());
        return;
      }
      status = (*runner)->run(stop);
    });
  }
  Status join() {
    if (thread.joinable()) thread.join();
    return status;
  }
};

void count_state(StateDir& d) {
  auto store = CheckpointStore::open(d.path);
  if (!store) {
    d.error = store.error().message;
    return;
  }
  for (Column c : {Column::meta, Column::state, Column::outbox}) {
    auto all = (*store)->scan(c, "");
    if (!all) {
      d.error = all.error().message;
      return;
    }
    for (const auto& [key, value] : *all) {
      auto& [n, bytes] = d.keys[key.substr(0, key.find('/'))];
      ++n;
      bytes += key.size() + value.size();
    }
  }
  StoreStateReader reader(**store);
  for (int p = 0; p < kPartitions; ++p) {
    // The runner's keys: the header (Topology::stored_dedup_header) and state_scope("dedup", pid)
    // + "seg/<16 hex>" (partition ids of topic index 0 are the partition numbers).
    const std::string scope = state_scope("dedup", PartitionId{p});
    auto header = Topology::stored_dedup_header(PartitionId{p}, reader);
    if (!header || !*header) continue;
    Deduplicator dedup(d.config.dedup.horizon);
    if (!dedup.begin_restore(**header)) continue;
    auto segments = (*store)->scan(Column::state, scope + "seg/");
    if (!segments) continue;
    for (const auto& [key, bytes] : *segments) {
      (void)dedup.restore_segment(std::stoull(key.substr(key.rfind('/') + 1), nullptr, 16), bytes);
    }
    if (dedup.finish_restore()) d.dedup_ids += dedup.size();
  }
}

// `partitions` of topic `topic`, consumed by group `group`; throttled to `max_ahead` events
// unread (the embedded broker keeps ~5 MiB per partition).
StateDir build_state(int partitions = kPartitions, uint64_t events = events_from_env(),
                     const std::string& topic = kTopic, const std::string& group = "bench-recovery",
                     uint64_t max_ahead = 150'000) {
  StateDir d;
  d.events = events;
  auto broker = EmbeddedBroker::start();
  if (!broker) {
    d.error = broker.error().message;
    return d;
  }
  d.broker = std::move(*broker);
  if (auto s = d.broker->create_topic(topic, partitions); !s) {
    d.error = s.error().message;
    return d;
  }
  if (auto s = d.broker->create_state_topic(Config{}.kafka.state_topic, partitions); !s) {
    d.error = s.error().message;
    return d;
  }
  d.path = (std::filesystem::temp_directory_path() / (group + "-" + std::to_string(::getpid()))).string();
  std::filesystem::remove_all(d.path);
  d.config.kafka.bootstrap_servers = d.broker->bootstrap_servers();
  d.config.kafka.topics = {topic};
  d.config.kafka.group_id = group;
  d.config.state.path = d.path;

  std::atomic<uint64_t> checkpointed{0};
  RunnerTestHooks hooks;
  hooks.on_checkpoint_committed = [&](uint64_t consumed) { checkpointed.store(consumed); };
  RunningRunner runner;
  runner.start(d.config, d.broker->bootstrap_servers(), hooks);

  auto conf = make_kafka_conf({{"bootstrap.servers", d.broker->bootstrap_servers()},
                               {"linger.ms", "20"},
                               {"queue.buffering.max.messages", "1000000"},
                               {"log_level", "4"}});
  Result<KafkaHandle> producer = tl::unexpected(Error{});
  if (conf) producer = make_kafka_handle(RD_KAFKA_PRODUCER, std::move(*conf));
  if (!conf || !producer) {
    d.error = conf ? producer.error().message : conf.error().message;
    runner.stop = true;
    runner.join();
    return d;
  }
  GeneratorOptions gopts;
  gopts.actors_per_brand = 50'000;
  EventGenerator generator(gopts);
  constexpr double kEventsPerSecond = 5000;  // of event time
  const auto span = Millis{static_cast<int64_t>(static_cast<double>(d.events) / kEventsPerSecond * 1000)};
  const EventTime origin = std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now()) - span;
  generator.set_origin(origin);
  GeneratedEvent ev;
  // ~3.5 MiB of unread data per partition at most (the default for 8 partitions): under the
  // broker's 5 MiB retention.
  const uint64_t kMaxAhead = max_ahead;
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < d.events; ++i) {
    while (i - std::min(i, checkpointed.load()) > kMaxAhead) {
      rd_kafka_poll(producer->get(), 10);
    }
    generator.next(origin + Millis{span.count() * static_cast<int64_t>(i) / static_cast<int64_t>(d.events)}, ev);
    const auto partition = static_cast<int32_t>(std::hash<std::string>{}(ev.value.substr(0, 64)) %
                                                static_cast<size_t>(partitions));
    for (;;) {
      const auto err = rd_kafka_producev(producer->get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
                                         RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                         RD_KAFKA_V_VALUE(ev.value.data(), ev.value.size()), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      rd_kafka_poll(producer->get(), 5);
    }
    if ((i & 4095) == 0) rd_kafka_poll(producer->get(), 0);
  }
  rd_kafka_flush(producer->get(), 120'000);
  while (checkpointed.load() < d.events && Clock::now() - t0 < std::chrono::minutes(5)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  runner.stop = true;
  if (auto s = runner.join(); !s) d.error = s.error().message;
  if (checkpointed.load() != d.events) {
    d.error = "state holds " + std::to_string(checkpointed.load()) + " of " + std::to_string(d.events) + " events";
  }
  std::fprintf(stderr, "bench_recovery: state built from %llu events in %.1f s\n",
               static_cast<unsigned long long>(d.events),
               std::chrono::duration<double>(Clock::now() - t0).count());
  if (d.error.empty()) count_state(d);
  return d;
}

void BM_RestartToReady(benchmark::State& state) {
  static StateDir dir = build_state();
  static RemoveAtExit cleanup{dir.path};
  if (!dir.error.empty()) {
    state.SkipWithError(dir.error.c_str());
    return;
  }
  double create_s = 0, restore_s = 0;
  for (auto _ : state) {
    Clock::duration create_time{}, restore_time{};
    size_t restored = 0;
    RunningRunner runner;
    RunnerTestHooks hooks;
    hooks.on_partitions_restored = [&](Clock::duration t, size_t partitions) {
      restore_time += t;
      restored += partitions;
      if (restored >= kPartitions) runner.stop = true;
    };
    runner.start(dir.config, dir.broker->bootstrap_servers(), hooks, &create_time);
    if (auto s = runner.join(); !s) {
      state.SkipWithError(s.error().message.c_str());
      return;
    }
    create_s += std::chrono::duration<double>(create_time).count();
    restore_s += std::chrono::duration<double>(restore_time).count();
    state.SetIterationTime(std::chrono::duration<double>(create_time + restore_time).count());
  }
  const auto n = static_cast<double>(state.iterations());
  state.counters["create_ms"] = create_s / n * 1000;
  state.counters["restore_ms"] = restore_s / n * 1000;
  state.counters["events"] = static_cast<double>(dir.events);
  state.counters["dedup_ids"] = static_cast<double>(dir.dedup_ids);
  for (const auto& [prefix, kb] : dir.keys) {
    state.counters["keys_" + prefix] = static_cast<double>(kb.first);
    state.counters["MB_" + prefix] = static_cast<double>(kb.second) / 1e6;
  }
  state.SetItemsProcessed(static_cast<int64_t>(dir.dedup_ids) * state.iterations());
}
BENCHMARK(BM_RestartToReady)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);

// Issue #15: a partition changes owner. Its state is built as above, on ONE partition (events:
// SP_MOVE_EVENTS, default 40 000), by a runner of group "bench-move" that then stops gracefully
// (its handover leaves the last checkpoint in the changelog). Each iteration starts a runner of
// the same group on an EMPTY state dir: its assignment restores the partition from the
// changelog (ChangelogRestorer: snapshot + deltas, then the store batch) and the Topology from
// the store. Timed: that assignment (RunnerTestHooks::on_partitions_restored), i.e. from the
// assignment to serving the partition. The embedded broker keeps ~5 MiB per partition, so the
// state must fit in it: 1 M keys (~80 MB) cannot move there; items/s gives the rate to
// extrapolate (benchmarks/RESULTS.md).
void BM_PartitionMovesToANewOwner(benchmark::State& state) {
  const char* v = std::getenv("SP_MOVE_EVENTS");
  static StateDir dir = build_state(1, v ? std::strtoull(v, nullptr, 10) : 40'000, "bench-move",
                                    "bench-move", 18'000);
  static RemoveAtExit cleanup{dir.path};
  if (!dir.error.empty()) {
    state.SkipWithError(dir.error.c_str());
    return;
  }
  double restore_s = 0;
  int iteration = 0;
  for (auto _ : state) {
    Config config = dir.config;
    config.state.path = dir.path + "-owner-" + std::to_string(iteration++);
    RemoveAtExit owner_dir{config.state.path};
    Clock::duration restore_time{};
    RunningRunner runner;
    RunnerTestHooks hooks;
    hooks.on_partitions_restored = [&](Clock::duration t, size_t partitions) {
      restore_time += t;
      if (partitions > 0) runner.stop = true;
    };
    runner.start(config, dir.broker->bootstrap_servers(), hooks);
    if (auto s = runner.join(); !s) {
      state.SkipWithError(s.error().message.c_str());
      return;
    }
    restore_s += std::chrono::duration<double>(restore_time).count();
    state.SetIterationTime(std::chrono::duration<double>(restore_time).count());
  }
  const auto n = static_cast<double>(state.iterations());
  state.counters["restore_ms"] = restore_s / n * 1000;
  state.counters["events"] = static_cast<double>(dir.events);
  double bytes = 0;
  for (const auto& [prefix, kb] : dir.keys) {
    state.counters["MB_" + prefix] = static_cast<double>(kb.second) / 1e6;
    if (prefix != "meta" && prefix != "outbox") bytes += static_cast<double>(kb.second);
  }
  state.counters["state_MB_per_s"] = bytes / 1e6 / (restore_s / n);
  // Items: the events whose ids the moved dedup state holds (each has its own id, all inside
  // the horizon).
  state.SetItemsProcessed(static_cast<int64_t>(dir.events) * state.iterations());
}
BENCHMARK(BM_PartitionMovesToANewOwner)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace
}  // namespace sp

BENCHMARK_MAIN();
