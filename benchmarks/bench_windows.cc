// Events/s through the default window set (minute tumbling, hourly 1h/5m hopping, 30m sessions)
// driven as the runner drives it: process on every operator, watermark tracker observe, and
// on_watermark whenever the pipeline watermark advances. One core, 10k active actors.
#include <benchmark/benchmark.h>
#include <xxhash.h>

#include <string>
#include <vector>

#include "operators/settings.h"
#include "operators/vocabulary.h"
#include "operators/watermark_tracker.h"
#include "operators/window_operators.h"

namespace sp {
namespace {

class CountingEmitter : public Emitter {
 public:
  void emit(OutputRecord record) override {
    bytes += record.value.size();
    if (record.value.starts_with("{\"brand")) ++sessions;
    ++records;
  }
  size_t records = 0;
  size_t sessions = 0;
  size_t bytes = 0;
};

void BM_DefaultWindows(benchmark::State& state) {
  const size_t actors = static_cast<size_t>(state.range(0));
  const int64_t step_ms = state.range(1);  // event-time distance between consecutive events
  constexpr size_t kEvents = 1 << 20;
  const Vocabulary vocabulary({{"acme", true}, {"globex", false}, {"initech", false}},
                              {"twitter", "facebook", "instagram", "linkedin", "youtube", "tiktok",
                               "blog", "forum", "reviews", "web"});
  std::vector<std::string> ids;
  std::vector<uint64_t> hashes;
  for (size_t i = 0; i < actors; ++i) {
    ids.push_back("user-" + std::to_string(i));
    hashes.push_back(XXH3_64bits(ids.back().data(), ids.back().size()));
  }
  std::vector<Event> events(kEvents);
  uint64_t rng = 0x9e3779b97f4a7c15ULL;
  auto next = [&rng] {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  };
  const int64_t t0 = 1'795'000'000'000;
  for (size_t i = 0; i < kEvents; ++i) {
    Event& e = events[i];
    const uint64_t r = next();
    // Slight disorder (within the 10s tolerance) as real partitions have.
    e.time = from_epoch_ms(t0 + static_cast<int64_t>(i) * step_ms - static_cast<int64_t>(r % 3000));
    e.brand = static_cast<BrandIndex>(r % 3);
    e.channel = static_cast<ChannelIndex>((r >> 8) % 10);
    e.type = static_cast<EventType>((r >> 16) % kEventTypeCount);
    e.count = e.type == EventType::impression ? 100 : 1;
    const size_t a = (r >> 24) % actors;
    e.has_actor = true;
    e.actor_id = ids[a];
    e.actor_hash = hashes[a];
    e.has_sentiment = (r >> 40) % 3 == 0;
    e.sentiment = e.has_sentiment ? static_cast<double>((r >> 44) % 201) / 100.0 - 1.0 : 0.0;
    e.reach = static_cast<int64_t>((r >> 52) % 500);
  }

  auto ops = make_window_operators(default_windows(), vocabulary);
  WatermarkTracker tracker(WatermarkSettings{});
  const PartitionId partition{0};
  tracker.assign(partition);
  const WallTime now{std::chrono::milliseconds(t0)};
  CountingEmitter out;

  size_t i = 0;
  int64_t pass_offset = 0;
  for (auto _ : state) {
    Event e = events[i];
    e.time += Millis{pass_offset};
    const ProcessContext ctx = make_process_context(partition, tracker.pipeline_watermark(),
                                                    tracker.partition_watermark(partition), e,
                                                    KpiSettings{}, EmvSettings{});
    for (auto& op : ops) op->process(ctx, e);
    if (tracker.observe(partition, e.time, now)) {
      for (auto& op : ops) op->on_watermark(tracker.pipeline_watermark(), out);
    }
    if (++i == kEvents) {
      i = 0;
      pass_offset += static_cast<int64_t>(kEvents) * step_ms;  // keep event time moving forward
    }
  }
  state.SetItemsProcessed(state.iterations());
  size_t bytes = 0;
  for (const auto& op : ops) bytes += op->state_bytes();
  state.counters["records"] = static_cast<double>(out.records);
  state.counters["sessions"] = static_cast<double>(out.sessions);
  state.counters["state_MB"] = static_cast<double>(bytes) / 1e6;
}
// 10k actors; 2 ms of event time per event (500 events/s of event time: minute windows close
// every 30k events, hourly ones every 150k, each actor returns every ~20 s so sessions stay open)
// and 50 ms per event (each actor returns every ~8 min: sessions do close).
BENCHMARK(BM_DefaultWindows)->Args({10'000, 2})->Args({10'000, 50})->MinTime(3.0);

}  // namespace
}  // namespace sp

BENCHMARK_MAIN();
