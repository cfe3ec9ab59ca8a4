// Events/s through ALL default operators on one core (SPEC 9: >= 1.5 M events/s): the default
// window set (make_window_operators: minute tumbling, hourly 1h/5m hopping, 30m sessions) plus the
// KPI operators (make_kpi_operators: counters, reputation/spike), driven through the runtime core
// the runner uses (operators/topology.h: offset check, dedup of a fresh id, derived quantities,
// every operator, watermark, on_watermark when it advances; records built inside the timed loop). Realistic mix: 3 tracked
// brands + other, 10 channels + other, impressions/likes dominate, ~40% of events carry a
// sentiment, ~85% an actor out of 10k, 4 input partitions, up to 3 s of disorder.
#include <benchmark/benchmark.h>
#include <xxhash.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "operators/deduplicator.h"
#include "operators/keyed_state.h"
#include "operators/settings.h"
#include "operators/topology.h"
#include "operators/vocabulary.h"
#include "operators/window_operators.h"
#include "pipeline/checkpoint_state.h"
#include "pipeline/counter_continuity.h"
#include "state/checkpoint_store.h"

namespace sp {
namespace {

struct Input {
  PartitionId partition;
  Event event;
};

std::vector<Input> make_events(size_t n, size_t actors, int64_t step_ms, int partitions,
                               std::vector<std::string>& ids) {
  static constexpr EventType kMix[] = {
      EventType::impression, EventType::impression, EventType::impression, EventType::like,
      EventType::like,       EventType::like,       EventType::comment,    EventType::share,
      EventType::mention,    EventType::mention,    EventType::reply,      EventType::click,
      EventType::follow,     EventType::lead,       EventType::review,     EventType::idea};
  ids.clear();
  std::vector<uint64_t> hashes;
  for (size_t i = 0; i < actors; ++i) {
    ids.push_back("user-" + std::to_string(i));
    hashes.push_back(XXH3_64bits(ids.back().data(), ids.back().size()));
  }
  std::vector<Input> out(n);
  uint64_t rng = 0x9e3779b97f4a7c15ULL;
  auto next = [&rng](uint64_t m) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (rng >> 33) % m;
  };
  const int64_t t0 = 1'795'000'000'000;
  for (size_t i = 0; i < n; ++i) {
    Event& e = out[i].event;
    e.time = from_epoch_ms(t0 + static_cast<int64_t>(i) * step_ms - static_cast<int64_t>(next(3000)));
    e.brand = static_cast<BrandIndex>(next(4));  // 3 tracked + other
    e.channel = static_cast<ChannelIndex>(next(11));
    e.type = kMix[next(16)];
    e.count = e.type == EventType::impression ? 1 + static_cast<int64_t>(next(2000)) : 1;
    e.reach = static_cast<int64_t>(next(10000));
    e.followers = static_cast<int64_t>(next(5000));
    e.has_sentiment = next(10) < 4;
    e.sentiment = static_cast<double>(next(201)) / 100.0 - 1.0;
    e.has_actor = next(100) < 85;
    const size_t a = next(actors);
    e.actor_id = ids[a];
    e.actor_hash = hashes[a];
    e.role = static_cast<Role>(next(kRoleCount));
    e.has_response_time = e.type == EventType::reply;
    e.response_time_s = static_cast<double>(next(7200));
    e.has_value = e.type == EventType::lead;
    e.value = 100.0;
    // An actor's events stay on one partition (upstream keyed by user).
    out[i].partition = PartitionId{static_cast<int32_t>(a % static_cast<size_t>(partitions))};
  }
  return out;
}

// The default windows and KPIs over three brands and ten channels.
TopologySpec default_spec() {
  TopologySpec spec;
  spec.vocabulary = Vocabulary({{"acme", true}, {"globex", false}, {"initech", false}},
                               {"twitter", "facebook", "instagram", "linkedin", "youtube", "tiktok",
                                "blog", "forum", "reviews", "web"});
  spec.windows = default_windows();
  return spec;
}

// Partitions 0..n-1 of `topology`, assigned with no stored state.
std::vector<Topology::Partition*> assign_fresh(Topology& topology, int n) {
  std::vector<Topology::Partition*> out;
  MemoryState none;
  for (int p = 0; p < n; ++p) out.push_back(*topology.assign(PartitionId{p}, none));
  return out;
}

void BM_AllDefaultOperators(benchmark::State& state) {
  const size_t actors = static_cast<size_t>(state.range(0));
  const int64_t step_ms = state.range(1);  // event time between consecutive events
  constexpr int kPartitions = 4;
  std::vector<std::string> ids;
  const auto events = make_events(size_t{1} << 20, actors, step_ms, kPartitions, ids);

  TopologySpec spec = default_spec();
  spec.spend.entries = {{"acme", "twitter", 150}};
  Topology topology(std::move(spec));
  const std::vector<Topology::Partition*> partitions = assign_fresh(topology, kPartitions);
  const WallTime now{std::chrono::milliseconds(1'795'000'000'000)};
  size_t records = 0;

  size_t i = 0;
  int64_t pass_offset = 0;
  uint64_t seq = 0;
  for (auto _ : state) {
    const Input& in = events[i];
    Event e = in.event;
    e.time += Millis{pass_offset};
    ++seq;  // every event a new id (the dedup table lookup and insert are measured)
    const Deduplicator::Key key{seq * 0x9e3779b97f4a7c15ULL, seq};
    Topology::Partition& p = *partitions[static_cast<size_t>(in.partition.value)];
    topology.process(p, Offset{static_cast<int64_t>(seq)}, e, key, now);
    if (auto& pending = topology.pending(); pending.size() > 4096) {
      records += pending.size();
      pending.clear();
    }
    if (++i == events.size()) {
      i = 0;
      pass_offset += static_cast<int64_t>(events.size()) * step_ms;  // event time keeps moving
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["records"] = static_cast<double>(records + topology.pending().size());
  state.counters["state_MB"] = static_cast<double>(topology.state_bytes()) / 1e6;
}
// Issue #20: what one checkpoint costs as a function of the partitions owned and of how many had
// input since the last one (`dirty`, one event each). Each partition first holds 1 500 events
// over ~5 minutes of event time, or over `minutes` when that is not 0 (60: an hour of panes in
// the hourly window, as a long-running instance holds). Timed: Topology::checkpoint into a writer that only counts (the store's
// cost per key and byte is measured by bench_e2e's commit times) and checkpoint_committed.
class CountingSink final : public StateWriter {
 public:
  void put(std::string_view key, std::string_view value) override {
    ++keys;
    bytes += key.size() + value.size();
  }
  void remove(std::string_view key) override {
    ++keys;
    bytes += key.size();
  }
  size_t keys = 0;
  size_t bytes = 0;
};

void BM_Checkpoint(benchmark::State& state) {
  const int partitions = static_cast<int>(state.range(0));
  const int dirty = static_cast<int>(state.range(1));
  std::vector<std::string> ids;
  const int64_t minutes = state.range(2);
  const size_t per_partition = 1500;
  const size_t n = per_partition * static_cast<size_t>(partitions);
  const int64_t step_ms =
      minutes == 0 ? 160 / partitions + 1
                   : std::max<int64_t>(1, minutes * 60'000 / static_cast<int64_t>(n));
  const auto events = make_events(n, 10'000, step_ms, partitions, ids);
  Topology topology(default_spec());
  const std::vector<Topology::Partition*> owned = assign_fresh(topology, partitions);
  const WallTime now{std::chrono::milliseconds(1'795'000'000'000)};
  uint64_t seq = 0;
  std::vector<const Input*> last(static_cast<size_t>(partitions), nullptr);
  for (const Input& in : events) {
    ++seq;
    topology.process(*owned[static_cast<size_t>(in.partition.value)],
                     Offset{static_cast<int64_t>(seq)}, in.event,
                     Deduplicator::Key{seq * 0x9e3779b97f4a7c15ULL, seq}, now);
    last[static_cast<size_t>(in.partition.value)] = &in;
  }
  CountingSink first;
  topology.checkpoint(first);
  topology.checkpoint_committed();
  topology.pending().clear();
  size_t keys = 0;
  size_t bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (int p = 0; p < dirty; ++p) {
      const Input* in = last[static_cast<size_t>(p)];
      if (in == nullptr) continue;
      ++seq;
      topology.process(*owned[static_cast<size_t>(p)], Offset{static_cast<int64_t>(seq)},
                       in->event, Deduplicator::Key{seq * 0x9e3779b97f4a7c15ULL, seq}, now);
    }
    topology.pending().clear();
    CountingSink sink;
    state.ResumeTiming();
    topology.checkpoint(sink);
    topology.checkpoint_committed();
    keys = sink.keys;
    bytes = sink.bytes;
  }
  state.counters["keys"] = static_cast<double>(keys);
  state.counters["bytes"] = static_cast<double>(bytes);
  for (const auto& w : topology.checkpoint_profile()) {
    if (w.bytes > 0) state.counters[std::string(w.owner)] = static_cast<double>(w.bytes);
  }
}

// `partitions` partitions of a default Topology that take `per_partition` new events each between
// two checkpoints (new ids; the event time moves on with every pass over the generated events).
struct LoadedTopology {
  LoadedTopology(int partitions, size_t per_partition)
      : events(make_events(per_partition * static_cast<size_t>(partitions) * 16, 10'000, 5,
                           partitions, ids)),
        owned(assign_fresh(topology, partitions)),
        per_checkpoint(per_partition * static_cast<size_t>(partitions)) {}
  // One checkpoint interval's events.
  void feed() {
    for (size_t i = 0; i < per_checkpoint; ++i) {
      const Input& in = events[next];
      Event e = in.event;
      e.time += Millis{pass_offset};
      ++seq;
      topology.process(*owned[static_cast<size_t>(in.partition.value)],
                       Offset{static_cast<int64_t>(seq)}, e,
                       Deduplicator::Key{seq * 0x9e3779b97f4a7c15ULL, seq}, now);
      if (++next == events.size()) {
        next = 0;
        pass_offset += static_cast<int64_t>(events.size()) * 5;
      }
    }
    topology.pending().clear();
  }

  std::vector<std::string> ids;
  const std::vector<Input> events;
  Topology topology{default_spec()};
  const std::vector<Topology::Partition*> owned;
  const size_t per_checkpoint;
  const WallTime now{std::chrono::milliseconds(1'795'000'000'000)};
  uint64_t seq = 0;
  size_t next = 0;
  int64_t pass_offset = 0;
};

// Issue #20: a loaded checkpoint's build and commit into a real state store: every partition
// takes `events` new events (new ids, event time moving on) between two checkpoints, then
// Topology::checkpoint writes into a store batch and CheckpointStore::write applies it (no
// fsync: the store's thread does that in the runner). Timed: both; `write_us` is the apply
// alone (RocksDB's WAL append and memtable inserts), per checkpoint. The store is new for each
// case, so the memtable holds the earlier checkpoints' versions of the same keys, as a running
// instance's does.
void BM_CheckpointCommit(benchmark::State& state) {
  LoadedTopology load(static_cast<int>(state.range(0)), static_cast<size_t>(state.range(1)));
  Topology& topology = load.topology;
  char dir[] = "/tmp/sp-bench-commit-XXXXXX";
  if (mkdtemp(dir) == nullptr) return state.SkipWithError("mkdtemp");
  auto store = CheckpointStore::open(dir, /*sync=*/false);
  if (!store) {
    std::filesystem::remove_all(dir);
    return state.SkipWithError(store.error().message.c_str());
  }
  auto checkpoint = [&](double* write_us) {
    auto batch = (*store)->batch();
    BatchStateWriter writer(batch);
    topology.checkpoint(writer);
    const auto t = std::chrono::steady_clock::now();
    if (auto s = (*store)->write(batch); !s) state.SkipWithError(s.error().message.c_str());
    if (write_us != nullptr) {
      *write_us += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t)
                       .count();
    }
    topology.checkpoint_committed();
    return std::pair(batch.count(), batch.data_bytes());
  };
  for (int warm = 0; warm < 4; ++warm) {  // the first checkpoints write every partition whole
    load.feed();
    checkpoint(nullptr);
  }
  double write_us = 0;
  std::pair<size_t, size_t> written{};
  for (auto _ : state) {
    state.PauseTiming();
    load.feed();
    state.ResumeTiming();
    written = checkpoint(&write_us);
  }
  state.counters["keys"] = static_cast<double>(written.first);
  state.counters["bytes"] = static_cast<double>(written.second);
  for (const auto& w : topology.checkpoint_profile()) {
    if (w.bytes > 0) state.counters[std::string(w.owner)] = static_cast<double>(w.bytes);
  }
  state.counters["write_us"] = write_us / static_cast<double>(state.iterations());
  store->reset();
  std::filesystem::remove_all(dir);
}

// The instance's continued counters at a loaded checkpoint (pipeline/counter_continuity.h): every
// partition takes N new events, then the runner's two calls, CounterContinuity::checkpoint (the
// changed exported values into a segment) and, for /metrics, CounterContinuity::collect (here
// into a writer that only counts the samples). Timed: those two; the Topology's own collect
// passes are part of both.
void BM_InstanceCounters(benchmark::State& state) {
  struct CountingWriter final : MetricsWriter {
    size_t samples = 0;
    void family(std::string_view, std::string_view, MetricType) override {}
    void add(std::span<const LabelPair>, double) override { ++samples; }
    void add_histogram(std::span<const LabelPair>, std::span<const double>,
                       std::span<const uint64_t>, double) override {
      ++samples;
    }
  };
  struct NullStateWriter final : StateWriter {
    size_t bytes = 0;
    void put(std::string_view key, std::string_view value) override {
      bytes += key.size() + value.size();
    }
    void remove(std::string_view key) override { bytes += key.size(); }
  };
  LoadedTopology load(static_cast<int>(state.range(0)), static_cast<size_t>(state.range(1)));
  const Topology& topology = load.topology;
  CounterContinuity counters;
  CountingWriter metrics;
  NullStateWriter stored;
  auto checkpoint = [&] {
    counters.checkpoint(topology, stored);
    counters.committed();
    metrics.samples = 0;
    counters.collect(topology, metrics, [] {});
    counters.published();
  };
  for (int warm = 0; warm < 4; ++warm) {
    load.feed();
    checkpoint();
  }
  stored.bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    load.feed();
    state.ResumeTiming();
    checkpoint();
  }
  state.counters["series"] = static_cast<double>(metrics.samples);
  state.counters["bytes"] =
      static_cast<double>(stored.bytes) / static_cast<double>(state.iterations());
}

// 10k actors. 2 ms of event time per event: sessions stay open, minute windows close every 30k
// events, hourly ones every 150k. 50 ms per event: session churn (each actor returns every ~8 min
// of event time, sessions of idle actors close), one closed session per few events.
void register_benchmarks(int64_t iterations) {
  auto* b = benchmark::RegisterBenchmark("BM_AllDefaultOperators", BM_AllDefaultOperators)
                ->Args({10'000, 2})
                ->Args({10'000, 50});
  if (iterations > 0) {
    b->Iterations(iterations);
  } else {
    b->MinTime(3.0);
  }
  benchmark::RegisterBenchmark("BM_Checkpoint", BM_Checkpoint)
      ->ArgNames({"partitions", "dirty", "minutes"})
      ->Args({64, 0, 0})
      ->Args({64, 8, 0})
      ->Args({64, 64, 0})
      ->Args({256, 0, 0})
      ->Args({256, 8, 0})
      ->Args({256, 64, 0})
      ->Args({256, 256, 0})
      ->Args({64, 64, 60})
      ->Args({256, 256, 60})
      ->Args({64, 64, 1440})
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_CheckpointCommit", BM_CheckpointCommit)
      ->ArgNames({"partitions", "events"})
      ->Args({64, 1000})
      ->Args({256, 200})
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_InstanceCounters", BM_InstanceCounters)
      ->ArgNames({"partitions", "events"})
      ->Args({64, 1000})
      ->Args({256, 200})
      ->Unit(benchmark::kMicrosecond);
}

// One partition's dedup table taking N new ids from empty (a backlog, or a run's first horizon:
// the table grows the whole time), then the same N again (every one a duplicate); per id. The
// runner prefetches each slot a few messages ahead; this does not.
void BM_DedupNewThenSeenIds(benchmark::State& state) {
  const auto n = static_cast<size_t>(state.range(0));
  std::vector<Deduplicator::Key> keys(n);
  Event event;
  event.brand_name = "acme";
  event.time = from_epoch_ms(1'700'000'000'000);
  for (size_t i = 0; i < n; ++i) {
    const std::string id = "evt-" + std::to_string(i);
    event.id = id;
    keys[i] = Deduplicator::key_of(event);
  }
  event.id = {};
  size_t duplicates = 0;
  for (auto _ : state) {
    Deduplicator d(Millis{15 * 60 * 1000});
    for (size_t i = 0; i < n; ++i) duplicates += d.is_duplicate(event, keys[i]) ? 1 : 0;
    for (size_t i = 0; i < n; ++i) duplicates += d.is_duplicate(event, keys[i]) ? 1 : 0;
    state.counters["bytes_per_id"] = static_cast<double>(d.memory_bytes()) / static_cast<double>(n);
  }
  if (duplicates != n * static_cast<size_t>(state.iterations())) state.SkipWithError("miscounted");
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(2 * n));
}
BENCHMARK(BM_DedupNewThenSeenIds)->Arg(100'000)->Arg(2'000'000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sp

// `--iterations=N` runs exactly N events per case: with valgrind --tool=callgrind that gives a
// deterministic instruction count, the before/after measure that does not depend on machine load.
int main(int argc, char** argv) {
  int64_t iterations = 0;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.starts_with("--iterations=")) {
      iterations = std::stoll(std::string(arg.substr(13)));
    } else {
      args.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  sp::register_benchmarks(iterations);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
