// Scrape cost at the SPEC's series cap: building the snapshot at checkpoint time (pipeline
// thread) and rendering it for one GET /metrics (HTTP thread). Target: a scrape of 20 000 series
// in <= 20 ms.
#include <benchmark/benchmark.h>

#include <array>
#include <string>
#include <vector>

#include "pipeline/http_server.h"
#include "pipeline/metrics_registry.h"

namespace {

// 20 brands x 11 channels x 12 types = 2640 interaction series; the rest spread over the other
// per-brand/channel families, like a large real deployment at the cap.
std::shared_ptr<const sp::MetricsSnapshot> build(sp::MetricsRegistry& r, size_t target) {
  r.begin();
  std::vector<std::string> brands, channels, types;
  for (int i = 0; i < 40; ++i) brands.push_back("brand" + std::to_string(i));
  for (int i = 0; i < 11; ++i) channels.push_back("channel" + std::to_string(i));
  for (int i = 0; i < 12; ++i) types.push_back("type" + std::to_string(i));
  size_t n = 0;
  for (int family = 0; n < target; ++family) {
    const std::string name = "socialpulse_family" + std::to_string(family) + "_total";
    r.family(name, "benchmark family", sp::MetricType::counter);
    for (const auto& b : brands) {
      for (const auto& c : channels) {
        for (const auto& t : types) {
          if (n++ >= target) break;
          const std::array<sp::LabelPair, 3> labels{{{"brand", b}, {"channel", c}, {"type", t}}};
          r.add(labels, static_cast<double>(n) * 1.5);
        }
      }
    }
  }
  return r.finish();
}

void BM_BuildSnapshot20k(benchmark::State& state) {
  sp::MetricsRegistry r(25000);
  for (auto _ : state) benchmark::DoNotOptimize(build(r, 20000));
  state.SetItemsProcessed(state.iterations() * 20000);
}
BENCHMARK(BM_BuildSnapshot20k)->Unit(benchmark::kMillisecond);

void BM_Scrape20k(benchmark::State& state) {
  sp::MetricsRegistry r(25000);
  auto server = sp::HttpServer::start({"127.0.0.1:0", "", ""});
  if (!server) {
    state.SkipWithError("cannot start HTTP server");
    return;
  }
  const auto snapshot = build(r, 20000);
  size_t bytes = 0;
  for (auto _ : state) {
    // A new snapshot each time: the first scrape after a checkpoint renders (later ones reuse it).
    state.PauseTiming();
    (*server)->publish(std::make_shared<const sp::MetricsSnapshot>(*snapshot));
    state.ResumeTiming();
    const auto body = (*server)->render();
    bytes = body->size();
    benchmark::DoNotOptimize(body->data());
  }
  state.SetItemsProcessed(state.iterations() * 20000);
  state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_Scrape20k)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
