// Detection quality of the reputation detector (issue #16), not a speed benchmark: the seeded
// `produce --scenario seasonal` history (8 weeks, 3 brands, 20 injected crises per seed) is
// decoded and bucketed per brand and minute exactly as the pipeline does, then scored through
// detector variants: v1 (plain EWMA, a record per bucket), v2 without the hour-of-week profile,
// v2 (default). Prints recall and false alerts per brand and week for each; the figures are in
// benchmarks/RESULTS.md. Usage: bench_spike_quality [--seeds N] [--weeks W]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "operators/derived.h"
#include "operators/spike_detector.h"
#include "pipeline/decoder.h"
#include "pipeline/event_generator.h"

namespace {

using namespace sp;

struct Variant {
  const char* name;
  SpikeSettings settings;
  bool per_bucket;  // v1: every bucket with z >= threshold is a record
};

struct Tally {
  int crises = 0;
  int detected = 0;
  int false_alerts = 0;
  int max_false_brand_week_total = 0;  // worst brand's false alerts over the run
  int alerts = 0;
};

}  // namespace

int main(int argc, char** argv) {
  int seeds = 3;
  int64_t weeks = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--seeds")) seeds = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--weeks")) weeks = std::atoll(argv[i + 1]);
  }
  SpikeSettings v1;
  v1.warmup = 0;
  v1.stddev_floor = 0.0;
  v1.drop_threshold = 0.0;
  v1.persistence = 1;
  v1.cooldown = Millis{0};
  v1.seasonal = false;
  SpikeSettings no_profile;
  no_profile.seasonal = false;
  SpikeSettings no_floor;
  no_floor.stddev_floor = 0.0;
  SpikeSettings persistence2;
  persistence2.persistence = 2;
  SpikeSettings persistence1;
  persistence1.persistence = 1;
  SpikeSettings no_drop;
  no_drop.drop_threshold = 0.0;
  const std::vector<Variant> variants = {{"v1 EWMA (per bucket)", v1, true},
                                         {"v2 persistence 1", persistence1, false},
                                         {"v2 persistence 2", persistence2, false},
                                         {"v2 without hour-of-week profile", no_profile, false},
                                         {"v2 without stddev floor", no_floor, false},
                                         {"v2 without sentiment_drop", no_drop, false},
                                         {"v2 (defaults)", SpikeSettings{}, false}};
  std::vector<Tally> tallies(variants.size());
  const std::vector<std::string> brands = {"acme", "globex", "initech"};
  const Vocabulary vocab({{"acme", true}, {"globex", false}, {"initech", false}}, {});
  const KpiSettings kpi;
  const EmvSettings emv;
  // A fixed end (Monday 2026-11-30 12:00 UTC) so that runs are comparable.
  const int64_t end = 1'764'504'000 / 60;
  for (int seed = 1; seed <= seeds; ++seed) {
    const int64_t first = end - weeks * 7 * 24 * 60;
    SeasonalOptions options;
    options.seed = static_cast<uint64_t>(seed);
    SeasonalScenario scenario(options, first, end);
    EventDecoder decoder(vocab, DecoderOptions{});
    std::vector<std::vector<BucketObservation>> buckets(
        brands.size(), std::vector<BucketObservation>(static_cast<size_t>(end - first)));
    std::vector<GeneratedEvent> batch;
    for (int64_t m = first; m < end; ++m) {
      batch.clear();
      scenario.minute(m, batch);
      for (const GeneratedEvent& ev : batch) {
        auto decoded = decoder.decode(ev.value, {}, kMaxEventTime);
        if (!decoded) {
          std::fprintf(stderr, "rejected: %s\n", ev.value.c_str());
          return 1;
        }
        const Event& e = **decoded;
        const Derived d = derive(e, kpi, emv);
        BucketObservation& o = buckets[e.brand][static_cast<size_t>(m - first)];
        o.negative += d.negative;
        o.positive += d.positive;
        o.weight += d.opinion_weight;
        if (d.opinion) o.opinion_events += e.count;
      }
    }
    for (size_t b = 0; b < brands.size(); ++b) {
      for (size_t i = 0; i < buckets[b].size(); ++i) buckets[b][i].minute = first + int64_t(i);
    }
    for (size_t v = 0; v < variants.size(); ++v) {
      std::vector<bool> hit(scenario.crises().size(), false);
      int worst = 0;
      for (size_t b = 0; b < brands.size(); ++b) {
        SpikeDetector detector(variants[v].settings);
        int false_alerts = 0;
        for (const BucketObservation& o : buckets[b]) {
          const SpikeVerdict verdict = detector.observe(o);
          int64_t start = 0;
          if (variants[v].per_bucket) {
            if (!(verdict.zscore >= variants[v].settings.z_threshold &&
                  o.opinion_events >= variants[v].settings.min_events))
              continue;
            start = o.minute;
          } else {
            if (verdict.transition != EpisodeTransition::started) continue;
            start = verdict.episode_start;
          }
          ++tallies[v].alerts;
          bool matched = false;
          for (size_t c = 0; c < scenario.crises().size(); ++c) {
            const InjectedCrisis& crisis = scenario.crises()[c];
            if (crisis.brand == brands[b] && start >= crisis.start_minute - 1 &&
                start <= crisis.start_minute + crisis.minutes) {
              hit[c] = true;
              matched = true;
            }
          }
          if (!matched) {
            ++false_alerts;
            if (std::getenv("SPIKE_QUALITY_VERBOSE") && !variants[v].per_bucket) {
              std::printf("false %s brand %zu week %lld how %lld kind %d sev %d z %.2f dz %.2f x %.1f mean %.1f n %lld\n",
                          variants[v].name, b, (long long)((start - first) / 10080),
                          (long long)(((start % 10080) + 10080) % 10080 / 60), (int)verdict.episode_kind,
                          verdict.episode_severity, verdict.zscore, verdict.drop_zscore, o.negative, verdict.mean,
                          (long long)o.opinion_events);
            }
          }
        }
        tallies[v].false_alerts += false_alerts;
        worst = std::max(worst, false_alerts);
      }
      tallies[v].max_false_brand_week_total += worst;
      tallies[v].crises += static_cast<int>(scenario.crises().size());
      for (bool h : hit) tallies[v].detected += h;
    }
  }
  std::printf("%d seeds x %lld weeks x 3 brands, %d crises per seed\n", seeds,
              static_cast<long long>(weeks), 20);
  std::printf("| detector | alerts | recall | false alerts per brand-week (mean) | worst brand "
              "(per week) |\n|---|---|---|---|---|\n");
  for (size_t v = 0; v < variants.size(); ++v) {
    const Tally& t = tallies[v];
    const double brand_weeks = static_cast<double>(seeds * weeks * 3);
    std::printf("| %s | %d | %.3f | %.2f | %.2f |\n", variants[v].name, t.alerts,
                static_cast<double>(t.detected) / t.crises, t.false_alerts / brand_weeks,
                static_cast<double>(t.max_false_brand_week_total) / (seeds * weeks));
  }
  return 0;
}
