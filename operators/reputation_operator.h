#pragma once
// Horizon KPIs over closed 1-minute event-time buckets (SPEC 2): reputation index, share of voice,
// innovation rate, unique actors (1h/24h) and the per-brand negative-score spike detector.
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "operators/hyperloglog.h"
#include "operators/operator.h"
#include "operators/partition_states.h"
#include "operators/settings.h"
#include "operators/spike_detector.h"
#include "operators/spike_explainer.h"
#include "operators/vocabulary.h"

namespace sp {

// Alert records (SPEC 5 v2): one `started` record per detector episode and one `ended` record
// after its cooldown, keyed `brand|episode_start|started|ended`. Their bytes depend only on the
// input and on whether the bucket closed live or as history (`replay`); the record leaves with the
// checkpoint that produced it, so a re-send after a crash is the stored bytes.
//
// Keeps per-partition minute buckets and HLL slices for events whose bucket is still open when
// they arrive; closes buckets as the pipeline watermark passes their end + `kpi.grace` (the
// windows' rule), feeding the spike detector, and exposes gauges merged over partitions for the
// last `reputation_horizon` of closed buckets. An event whose bucket already closed is counted in
// socialpulse_late_events_total{window="kpi"} (SPEC 2: nothing is excluded silently).
//
// Unique actors use HLL slices instead of one HLL per minute: 5-minute slices for the 1h gauge and
// 1-hour slices for the 24h gauge. A gauge merges every slice that intersects the horizon
// [closed_end - H, closed_end), so it covers H rounded out to whole slices: up to one slice minus
// one minute more history at the old end (<= 4m for 1h, <= 59m for 24h), plus the events already
// seen in the not-yet-closed minutes of the newest slice.
class ReputationOperator final : public Operator {
 public:
  static constexpr int64_t kBucketMs = 60'000;
  static constexpr int64_t kShortSliceMinutes = 5;
  static constexpr int64_t kShortHorizonMinutes = 60;
  static constexpr int64_t kLongSliceMinutes = 60;
  static constexpr int64_t kLongHorizonMinutes = 24 * 60;

  ReputationOperator(Vocabulary vocabulary, KpiSettings kpi);
  ReputationOperator(const ReputationOperator&) = delete;  // used through Operator: never copied
  ReputationOperator& operator=(const ReputationOperator&) = delete;

  std::string_view name() const override { return "kpi_reputation"; }
  void process(const ProcessContext& ctx, const Event& event) override;
  void on_wall_clock(WallTime now) override { wall_ = now; }
  void on_watermark(EventTime watermark, Emitter& out) override;
  // Keys: per partition `brand/<name>`, `explain/<name>` and `late`; global `closed`,
  // `detector/<brand>` and `baseline/<brand>` (the explanation baseline).
  void snapshot(PartitionId partition, StateWriter& out) const override;
  Status restore(PartitionId partition, StateReader& in) override;
  void drop(PartitionId partition) override;
  void collect(MetricsWriter& out) const override;
  size_t state_bytes() const override;

  // For tests and diagnostics: the per-brand detector (instance-level state).
  const SpikeDetector& detector(BrandIndex brand) const { return detectors_[brand]; }

 private:
  struct MinuteBucket {
    double positive = 0.0;
    double negative = 0.0;
    double weight = 0.0;
    int64_t mentions = 0;
    int64_t engagements = 0;
    int64_t ideas = 0;
    int64_t opinion_events = 0;  // sum of count over events carrying a sentiment
    int64_t events = 0;          // events of any type: marks the brand's first bucket
  };
  // Dense sequence indexed by an absolute index (minute or slice number) that grows at either end
  // and is trimmed at the old end as the horizon slides.
  template <typename T>
  struct Series {
    int64_t first = 0;
    std::deque<T> items;
    int64_t end() const { return first + static_cast<int64_t>(items.size()); }
    const T* find(int64_t index) const {
      if (index < first || index >= end()) return nullptr;
      return &items[static_cast<size_t>(index - first)];
    }
    T& at(int64_t index);
    void drop_before(int64_t index);
  };
  struct BrandState {
    Series<MinuteBucket> minutes;
    Series<HyperLogLog> short_slices;  // 5-minute slices, 1h gauge
    Series<HyperLogLog> long_slices;   // 1-hour slices, 24h gauge
    // Who made the negative score of each still-open minute (alert explanations); erased when
    // the minute closes, so it holds the few open minutes only.
    std::map<int64_t, ContributionSketch> explain;
  };
  struct PartitionState {
    std::vector<BrandState> brands;
    uint64_t late_events = 0;  // events whose minute had closed (key `late`)
  };

  PartitionState& state_for(PartitionId partition);
  // Every minute before the returned one is closed at `watermark`: its end + grace has passed.
  int64_t closed_end_at(EventTime watermark) const;
  void close_minutes(int64_t new_closed_end, Emitter& out);
  void emit_alert(BrandIndex brand, int64_t minute, const SpikeVerdict& v,
                  const ContributionSketch& contributions, Emitter& out) const;
  // A bucket that closes more than alerts.max_lag behind the wall clock is replayed history.
  bool is_replay(int64_t minute) const;
  bool catching_up() const;
  HyperLogLog merged_actors(BrandIndex brand, bool long_horizon, bool* any) const;

  Vocabulary vocabulary_;
  KpiSettings kpi_;
  int64_t horizon_minutes_;
  int64_t grace_ms_;
  PartitionStates<PartitionState> partitions_;  // ordered: deterministic merge order

  // Instance-level (kGlobalPartition) state.
  static constexpr int64_t kNothingClosed = std::numeric_limits<int64_t>::min();
  int64_t closed_end_ = kNothingClosed;  // every minute < closed_end_ is closed
  std::vector<SpikeDetector> detectors_;
  std::vector<uint64_t> spikes_;  // episodes started (live or replayed)
  std::vector<ExplainBaseline> baselines_;
  WallTime wall_{};  // not state: epoch 0 (never told) means live
};

}  // namespace sp
