// Events/s through the KPI operators (counters + reputation/spike) on one core, realistic mix:
// 3 tracked brands + other, 10 channels, 4 partitions, impressions/likes dominate, ~40% of events
// carry a sentiment, ~85% an actor, watermark advancing every 1000 events (1s of event time).
#include <benchmark/benchmark.h>
#include <xxhash.h>

#include <string>
#include <vector>

#include "operators/keyed_state.h"
#include "operators/kpi_operators.h"
#include "operators/metrics_writer.h"

namespace sp {
namespace {

class NullEmitter final : public Emitter {
 public:
  void emit(OutputRecord record) override { benchmark::DoNotOptimize(record); }
};

std::vector<std::pair<PartitionId, Event>> make_events(size_t n) {
  static constexpr EventType kMix[] = {
      EventType::impression, EventType::impression, EventType::impression, EventType::like,
      EventType::like,       EventType::like,       EventType::comment,    EventType::share,
      EventType::mention,    EventType::mention,    EventType::reply,      EventType::click,
      EventType::follow,     EventType::lead,       EventType::review,     EventType::idea};
  std::vector<std::pair<PartitionId, Event>> out;
  out.reserve(n);
  uint64_t rng = 1;
  auto next = [&rng](uint64_t m) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (rng >> 33) % m;
  };
  const int64_t t0 = 1795478400000;
  for (size_t i = 0; i < n; ++i) {
    Event e;
    e.time = from_epoch_ms(t0 + static_cast<int64_t>(i) - static_cast<int64_t>(next(5000)));
    e.brand = static_cast<BrandIndex>(next(4));
    e.channel = static_cast<ChannelIndex>(next(11));
    e.type = kMix[next(16)];
    e.count = e.type == EventType::impression ? 1 + static_cast<int64_t>(next(2000)) : 1;
    e.reach = static_cast<int64_t>(next(10000));
    e.followers = static_cast<int64_t>(next(5000));
    e.has_sentiment = next(10) < 4;
    e.sentiment = static_cast<double>(next(201)) / 100.0 - 1.0;
    e.has_actor = next(100) < 85;
    const uint64_t actor = next(200000);
    e.actor_hash = XXH3_64bits(&actor, sizeof(actor));
    e.has_response_time = e.type == EventType::reply;
    e.response_time_s = static_cast<double>(next(7200));
    e.has_value = e.type == EventType::lead;
    e.value = 100.0;
    out.emplace_back(PartitionId{static_cast<int32_t>(next(4))}, e);
  }
  return out;
}

void BM_KpiOperators(benchmark::State& state) {
  const Vocabulary vocab({{"acme", true}, {"globex", false}, {"initech", false}},
                         {"twitter", "facebook", "instagram", "linkedin", "youtube", "tiktok",
                          "blog", "forum", "reviews", "web"});
  auto ops = make_kpi_operators(vocab, KpiSettings{}, {{"acme", "twitter", 150}});
  const auto events = make_events(1 << 20);
  NullEmitter emitter;
  size_t i = 0;
  EventTime watermark = kMinEventTime;
  for (auto _ : state) {
    const auto& [partition, e] = events[i & (events.size() - 1)];
    // Event time keeps moving across passes over the sample so buckets keep closing and expiring.
    Event shifted = e;
    shifted.time +=
        Millis{static_cast<int64_t>(i / events.size()) * static_cast<int64_t>(events.size())};
    if ((i % 1000) == 0) {
      watermark = shifted.time - Millis{10'000};
      for (auto& op : ops) op->on_watermark(watermark, emitter);
    }
    const ProcessContext ctx = make_process_context(partition, watermark, watermark, shifted,
                                                    KpiSettings{}, EmvSettings{});
    for (auto& op : ops) op->process(ctx, shifted);
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_KpiOperators)->MinTime(3.0);

class NullMetricsWriter final : public MetricsWriter {
 public:
  void family(std::string_view name, std::string_view, MetricType) override {
    benchmark::DoNotOptimize(name.data());
  }
  void add(std::span<const LabelPair>, double value) override { benchmark::DoNotOptimize(value); }
  void add_histogram(std::span<const LabelPair>, std::span<const double>,
                     std::span<const uint64_t> counts, double) override {
    benchmark::DoNotOptimize(counts.data());
  }
};

// The KPI operators fed minute by minute: `per_minute` events of make_events() spread evenly
// over each minute of event time, then the watermark that closes it (10 s behind).
struct MinuteFeed {
  explicit MinuteFeed(size_t per_minute)
      : vocab({{"acme", true}, {"globex", false}, {"initech", false}},
              {"twitter", "facebook", "instagram", "linkedin", "youtube", "tiktok", "blog",
               "forum", "reviews", "web"}),
        ops(make_kpi_operators(vocab, KpiSettings{}, {{"acme", "twitter", 150}})),
        events(make_events(1 << 20)),
        per_minute(per_minute),
        step_ms(60'000 / static_cast<int64_t>(per_minute)) {}

  void feed_minute() {
    constexpr int64_t kT0 = 1795478400000;
    for (size_t k = 0; k < per_minute; ++k, ++i) {
      const auto& [partition, e] = events[i & (events.size() - 1)];
      Event shifted = e;
      shifted.time = from_epoch_ms(kT0 + static_cast<int64_t>(i) * step_ms);
      const ProcessContext ctx = make_process_context(partition, watermark, watermark, shifted,
                                                      KpiSettings{}, EmvSettings{});
      for (auto& op : ops) op->process(ctx, shifted);
    }
    watermark = from_epoch_ms(kT0 + static_cast<int64_t>(i) * step_ms - 10'000);
    for (auto& op : ops) op->on_watermark(watermark, emitter);
  }

  Vocabulary vocab;
  std::vector<std::unique_ptr<Operator>> ops;
  std::vector<std::pair<PartitionId, Event>> events;
  size_t per_minute;
  int64_t step_ms;
  size_t i = 0;
  EventTime watermark = kMinEventTime;
  NullEmitter emitter;
};

// One collect() of both KPI operators (what each checkpoint's metrics publish pays) after a day of
// event time at state.range(0) events per minute over 4 brands x 4 partitions: the unique-actor
// sketches are dense (200k actors). A minute closes before every state.range(1)-th collect (1:
// each collect sees a new closed minute, as while catching up; 60: a live pipeline publishing
// every second), outside the timing.
void BM_KpiCollect(benchmark::State& state) {
  MinuteFeed feed(static_cast<size_t>(state.range(0)));
  auto& ops = feed.ops;
  for (int m = 0; m < 24 * 60; ++m) feed.feed_minute();
  NullMetricsWriter out;
  size_t n = 0;
  for (auto _ : state) {
    if (n++ % static_cast<size_t>(state.range(1)) == 0) {
      state.PauseTiming();
      feed.feed_minute();
      state.ResumeTiming();
    }
    for (const auto& op : ops) op->collect(out);
  }
  size_t bytes = 0;
  for (const auto& op : ops) bytes += op->state_bytes();
  state.counters["state_MB"] = static_cast<double>(bytes) / 1e6;
}
BENCHMARK(BM_KpiCollect)->Args({20'000, 1})->Args({20'000, 60})->Unit(benchmark::kMicrosecond);

// The same day of state: one snapshot() of the four partitions (what a checkpoint writes when
// every partition is dirty), into a MemoryState.
void BM_KpiSnapshot(benchmark::State& state) {
  MinuteFeed feed(20'000);
  for (int m = 0; m < 24 * 60; ++m) feed.feed_minute();
  auto& ops = feed.ops;
  size_t bytes = 0;
  for (auto _ : state) {
    MemoryState out;
    for (const auto& op : ops) {
      for (int p = 0; p < 4; ++p) {
        ScopedStateWriter scoped(out, state_scope(op->name(), PartitionId{p}));
        op->snapshot(PartitionId{p}, scoped);
      }
    }
    bytes = 0;
    for (const auto& [key, value] : out.entries()) bytes += value.size();
    benchmark::DoNotOptimize(bytes);
  }
  state.counters["checkpoint_MB"] = static_cast<double>(bytes) / 1e6;
}
BENCHMARK(BM_KpiSnapshot)->Unit(benchmark::kMicrosecond);

// What a live pipeline writes when a minute closes (issue #20): six hours of event time at 20 000
// events a minute over 4 brands x 4 partitions (dense unique-actor sketches), checkpointed and
// saved after every minute as the pipeline does; then, per iteration, one more minute (untimed)
// and the checkpoint of the four partitions that follows its close (timed), bases rewritten now
// and then included. Counter: bytes written per minute close.
void BM_KpiCheckpointOfAMinuteClose(benchmark::State& state) {
  MinuteFeed feed(20'000);
  auto& ops = feed.ops;
  MemoryState store;
  size_t written = 0;
  // Counts the value bytes a checkpoint puts.
  class Counting final : public StateWriter {
   public:
    Counting(StateWriter& inner, size_t& bytes) : inner_(inner), bytes_(bytes) {}
    void put(std::string_view key, std::string_view value) override {
      bytes_ += value.size();
      inner_.put(key, value);
    }
    void remove(std::string_view key) override { inner_.remove(key); }

   private:
    StateWriter& inner_;
    size_t& bytes_;
  };
  auto checkpoint = [&] {
    for (const auto& op : ops) {
      for (int p = 0; p < 4; ++p) {
        Counting counted(store, written);
        ScopedStateWriter scoped(counted, state_scope(op->name(), PartitionId{p}));
        op->snapshot(PartitionId{p}, scoped);
      }
      op->saved();
    }
  };
  for (int m = 0; m < 6 * 60; ++m) {
    feed.feed_minute();
    checkpoint();
  }
  written = 0;
  for (auto _ : state) {
    state.PauseTiming();
    feed.feed_minute();
    state.ResumeTiming();
    checkpoint();
  }
  state.counters["kB_per_minute_close"] =
      static_cast<double>(written) / 1e3 / static_cast<double>(state.iterations());
}
BENCHMARK(BM_KpiCheckpointOfAMinuteClose)->Iterations(128)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace sp

BENCHMARK_MAIN();
