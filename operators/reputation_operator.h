#pragma once
// Horizon KPIs over closed 1-minute event-time buckets (SPEC 2): reputation index, share of voice,
// innovation rate, unique actors (1h/24h) and the per-brand negative-score spike detector.
#include <array>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "operators/hyperloglog.h"
#include "operators/operator.h"
#include "operators/partition_states.h"
#include "operators/settings.h"
#include "operators/sliding_hyperloglog.h"
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
// Unique actors count over exactly the last 60 and 1440 closed minutes, [closed_end - H,
// closed_end) in minute indexes (issue #17): per partition and brand, the actors of each open
// minute go to that minute's HyperLogLog (exact up to 512 ids); when the minute closes it is folded
// into one SlidingHyperLogLog (sliding_hyperloglog.h) that keeps, per register, the pairs (minute,
// rank) that can still be a window's maximum and forgets minutes older than 24h of closed minutes.
// Both gauges are windows of that one sketch, so they hold closed minutes only, the boundaries
// exactly, and the count within HLL error (exact while a partition's brand has at most 512 actors
// in the last day). Folding at close keeps every pair older than the closed end, which is what
// makes the dominance pruning exact for every later window. One sketch per partition and brand
// replaces the 5-minute slices (1h) and 1-hour slices (24h) of state format 2, whose gauges
// covered up to 64 min and 24 h 59 min plus the open minutes of the newest slice; a format-2 state
// is converted on restore (see restore()). Memory: the sketch (435 KiB at 1 M actors a day, where
// the slices took 592 KiB) plus one HyperLogLog (<= 16 KiB) per open minute: usually two
// (out-of-orderness + grace), but one per minute a partition runs ahead of the pipeline watermark,
// where the slices took one per 5 minutes; state_bytes() counts both, for back-pressure.
class ReputationOperator final : public Operator {
 public:
  static constexpr int64_t kBucketMs = 60'000;
  static constexpr int64_t kShortHorizonMinutes = 60;
  static constexpr int64_t kLongHorizonMinutes = 24 * 60;

  ReputationOperator(Vocabulary vocabulary, KpiSettings kpi);
  ReputationOperator(const ReputationOperator&) = delete;  // used through Operator: never copied
  ReputationOperator& operator=(const ReputationOperator&) = delete;

  std::string_view name() const override { return "kpi_reputation"; }
  void process(const ProcessContext& ctx, const Event& event) override;
  void on_wall_clock(WallTime now) override { wall_ = now; }
  void on_watermark(EventTime watermark, Emitter& out) override;
  // Keys: per partition `brand/<name>` (the minutes' range, the open minutes' actors and their
  // explanations, the newest chunk's buckets), `chunks/<name>/<chunk>` (the buckets of ten
  // minutes, the older chunks), `actors/<name>` (the sliding sketch) and `late`; global `closed`,
  // `detector/<brand>` and `baseline/<brand>` (the explanation baseline). Only what changed since
  // the last saved() is written (issue #20): the chunks whose buckets had events or left the
  // horizon, and the sketch once a minute closes, not a day of buckets per busy partition and
  // checkpoint.
  void snapshot(PartitionId partition, StateWriter& out) const override;
  // Reads `brand/<name>` formats 7, 6, 5, 4, 3 and 2 (6 and before kept the newest chunk in a
  // key of its own, 5 and before the explanations in `explain/<name>`, both removed when the
  // brand is next written; 4 kept its buckets in hour keys,
  // `minutes/<name>/<hour>`; 3 and 2 held every bucket and the sketch in the one key; those are
  // rewritten at the next checkpoint). Format 2 held HLL slices (5-minute
  // and 1-hour, see the class comment): each slice's actors are dated to the slice's last minute
  // (the last closed minute for the slice that holds the closed end; the 1-hour slices only for the
  // minutes the retained 5-minute slices do not cover). For the first hour after an upgrade the 1h
  // gauge may thus still count up to 4 minutes of older actors, and for the first day the 24h gauge
  // up to 59 minutes, as the slices did; actors of open minutes inside a closed slice count at
  // once. A partition restored on an instance whose closed end is behind the writer's brings pairs
  // of minutes this instance has not closed: windows end at this closed end and skip them, and an
  // older pair they had pruned is missing from the gauges until this instance closes them too.
  Status restore(PartitionId partition, StateReader& in) override;
  void drop(PartitionId partition) override;
  // A partition is rewritten after an event or a closing minute, not at every watermark.
  bool needs_snapshot(PartitionId partition, bool touched) const override;
  void saved() override;
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
  enum class ActorsWrite : uint8_t { none, base, folds };
  struct BrandState {
    Series<MinuteBucket> minutes;
    Series<HyperLogLog> open_actors;  // per open minute (>= closed end)
    SlidingHyperLogLog actors;        // closed minutes of the last 24h
    // Who made the negative score of each still-open minute (alert explanations); erased when
    // the minute closes, so it holds the few open minutes only.
    std::map<int64_t, ContributionSketch> explain;
    // `brand/<name>` changed since the last saved() (an event, a closing minute, a conversion).
    bool unsaved = true;
    // An `explain/<name>` key of format 5 or before is stored: the next `brand/<name>` (which
    // holds the explanations since format 6) removes it.
    bool explain_key = false;
    // Changed since the last saved() (format 5): chunks (minute / kMinutesPerChunk) whose stored
    // buckets are stale.
    std::vector<int64_t> unsaved_chunks;
    // Format 7: the newest chunk's buckets are in `brand/<name>`, not in a key of their own.
    // `brand_chunk`: the chunk the stored `brand/<name>` holds (none: every chunk is a key), and
    // what the last snapshot wrote there, applied by saved(). `stale_chunk_key`: a restore read
    // a key of its own for the chunk now in `brand/` (format 6 and before): removed by the next
    // snapshot.
    std::optional<int64_t> brand_chunk;
    mutable std::optional<int64_t> pending_brand_chunk;
    std::optional<int64_t> stale_chunk_key;
    // Format 4's hour keys the restore read: removed by the next snapshot, which writes their
    // buckets as chunks.
    std::vector<int64_t> hour_keys;
    // The minutes [begin, end) of the chunk noted last: an event there needs no bookkeeping.
    int64_t noted_begin = 0;
    int64_t noted_end = 0;
    // The sliding sketch as stored (issue #20): a base `actors/<name>` and after it a key
    // `folds/<name>/<n>` per checkpoint whose watermarks changed the sketch, holding those
    // watermarks' steps (the minutes folded, the expiry floor) to replay on restore, instead of
    // the whole sketch (up to ~250 KiB) per partition and brand every minute.
    std::string unsaved_steps;  // encoded steps since saved()
    uint32_t unsaved_step_count = 0;
    uint32_t stored_folds = 0;  // folds/<name>/0 .. n-1 beside the base
    size_t stored_fold_bytes = 0;
    size_t stored_base_bytes = 0;
    bool actors_rebase = true;  // the next snapshot writes the base (and removes the folds)
    // What the last snapshot wrote of the sketch, applied by saved().
    mutable ActorsWrite pending_actors = ActorsWrite::none;
    mutable size_t pending_actors_bytes = 0;
  };
  struct PartitionState {
    std::vector<BrandState> brands;
    uint64_t late_events = 0;  // events whose minute had closed (key `late`)
    bool unsaved = true;       // changed since the last saved()
    bool late_unsaved = true;  // late_events too (`late` is written only then)
  };

  PartitionState& state_for(PartitionId partition);
  // The per-event check is inline; note_unsaved_chunk() runs once per chunk and checkpoint.
  static void note_unsaved_minute(BrandState& brand, int64_t minute) {
    if (minute >= brand.noted_begin && minute < brand.noted_end) return;
    note_unsaved_chunk(brand, minute);
  }
  static void note_unsaved_chunk(BrandState& brand, int64_t minute);
  // Every chunk of the brand's buckets (restored from format 4's hour keys).
  static void note_all_buckets_unsaved(BrandState& brand);
  // Every chunk of the brand's buckets and its sketch (restored from an older format).
  static void note_all_unsaved(BrandState& brand);
  // The brand's format 5 keys into `out` (`name`: the brand's; `partition` staggers the sketch's
  // rebases).
  void snapshot_brand(PartitionId partition, const BrandState& brand, const std::string& name,
                      StateWriter& out) const;
  // The sketch's keys: its base, or the steps since saved() as the next fold key.
  void snapshot_actors(PartitionId partition, const BrandState& brand, const std::string& name,
                       StateWriter& out) const;
  // Records the step a watermark is about to take on the brand's sketch (fold the open minutes
  // below `closed_end`, then expire before `floor`), unless the base is rewritten anyway.
  static void note_sketch_step(BrandState& brand, int64_t closed_end, int64_t floor);
  // Replays one `folds/` key's steps onto the restored sketch.
  static bool replay_sketch_steps(BrandState& brand, std::string_view steps);
  // Every minute before the returned one is closed at `watermark`: its end + grace has passed.
  int64_t closed_end_at(EventTime watermark) const;
  void close_minutes(int64_t new_closed_end, Emitter& out);
  void emit_alert(BrandIndex brand, int64_t minute, const SpikeVerdict& v,
                  const ContributionSketch& contributions, Emitter& out) const;
  // A bucket that closes more than alerts.max_lag behind the wall clock is replayed history.
  bool is_replay(int64_t minute) const;
  bool catching_up() const;
  // Folds the open minutes' actors below `closed_end` into the sliding sketch, oldest first.
  static void fold_closed_actors(BrandState& brand, int64_t closed_end);
  // Converts format 2's HLL slices (see restore()).
  void adopt_slices(BrandState& brand, const Series<HyperLogLog>& short_slices,
                    const Series<HyperLogLog>& long_slices) const;
  struct ActorGauge {
    bool present = false;
    double value = 0.0;
  };
  // Per brand, 1h then 24h, merged over partitions in PartitionId order; cached until a minute
  // closes or partition state changes (collect() runs at every metrics publish).
  const std::vector<std::array<ActorGauge, 2>>& actor_gauges() const;

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

  // Not state: actor_gauges()'s cache, valid for (closed_end_, actors_version_). collect() is
  // const and runs on the runner's thread, like every other call.
  uint64_t actors_version_ = 0;  // bumped when a sketch changes (fold, restore, drop)
  mutable std::vector<std::array<ActorGauge, 2>> actor_gauges_;
  mutable int64_t gauges_closed_end_ = kNothingClosed;
  mutable uint64_t gauges_version_ = UINT64_MAX;
};

}  // namespace sp
