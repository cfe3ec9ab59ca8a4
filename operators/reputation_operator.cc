#include "operators/reputation_operator.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>

#include "operators/byte_codec.h"
#include "operators/kpi_metrics.h"
#include "operators/state_version.h"

namespace sp {
namespace {

// 5: `brand/<name>` holds the minutes' range and the open minutes' actors; the buckets are in
// `chunks/<name>/<chunk>`, kMinutesPerChunk minutes a key, and the sliding sketch in
// `actors/<name>`, each written when it changed (issue #20: format 4 kept an hour of buckets a
// key, `minutes/<name>/<hour>`, so one changed minute rewrote up to 60 buckets; its keys are
// still read, and replaced at the next checkpoint). 3: `brand/<name>` held every bucket, the open
// minutes' actors and the sliding sketch (issue #17); 2 (the HLL slices) is still read too; 1
// (positional blob per partition) is not.
constexpr uint64_t kPartitionSnapshotVersion = 5;
// 6: `brand/<name>` also holds the open minutes' explanation sketches (issue #20: `explain/<name>`
// was a key of its own, written under the same condition, one more key and changelog record per
// busy partition and brand every checkpoint); its buckets are in chunks of format 5. 5's
// `explain/<name>` keys are read, and removed when the brand is next written. 7: it also holds
// the buckets of the newest chunk, whose own key is not written while it is the newest (an event
// rewrote `brand/` and that chunk, two keys and records per busy partition and brand every
// checkpoint); the chunk is written as a key once a newer one takes its place. 6 is read, and
// rewritten as 7 (its newest chunk's key removed).
constexpr uint64_t kBrandVersion = 7;
constexpr uint64_t kBrandVersionExplained = 6;
constexpr uint64_t kPartitionSnapshotVersionHours = 4;
// `actors/<name>`: 5 may have `folds/<name>/<n>` keys beside it (issue #20), which builds that read
// only 4 would ignore, so they refuse 5; 4 (the whole sketch) is still read, and rewritten as 5.
constexpr uint64_t kActorsVersion = 5;
constexpr uint64_t kActorsVersionWhole = 4;
// `folds/<name>/<n>` (n: kFoldDigits hex digits, from 0 after each base): a checkpoint's sketch
// steps, each the expiry floor, the number of minutes folded and those (minute, HyperLogLog).
constexpr uint64_t kFoldsVersion = 1;
constexpr int kFoldDigits = 4;
// The base is rewritten after kMinFolds to 2 * kMinFolds - 1 fold keys (by partition and brand,
// so that the partitions' bases are not all rewritten in the same checkpoint), or as soon as the
// folds would outweigh it.
constexpr uint32_t kMinFolds = 32;
constexpr uint64_t kPartitionSnapshotVersionWhole = 3;
constexpr uint64_t kPartitionSnapshotVersionSlices = 2;
constexpr int64_t kMinutesPerChunk = 10;    // `chunks/<name>/<chunk>`
constexpr int64_t kMinutesPerHourKey = 60;  // format 4's `minutes/<name>/<hour>`
constexpr size_t kBucketBytes = 8 * 8;
constexpr uint64_t kChunkBias = uint64_t{1} << 63;  // key order = chunk (hour) order
constexpr int64_t kShortSliceMinutes = 5;           // format 2's slices
constexpr int64_t kLongSliceMinutes = 60;
// Minute and slice numbers of any event time are far below this; a stored one above is corrupt
// (and index arithmetic on it could overflow).
constexpr int64_t kSaneMinute = int64_t{1} << 40;
// Format 4's bucket count is read before its buckets: above a year of minutes (or four horizons)
// it is corrupt.
constexpr uint64_t kSaneBuckets = 366 * 24 * 60;
constexpr uint64_t kGlobalSnapshotVersion = 2;
// 3: the v2 detector (warm-up, profile, sentiment baseline, episode). 2 is still read.
constexpr uint64_t kDetectorVersion = 3;
constexpr uint64_t kDetectorVersionEwmaOnly = 2;
// Keys `explain/<brand>` (partition) and `baseline/<brand>` (global), new with the detector v2: a
// state without them restores empty explanations. 2 (`explain/` only): the sketches packed,
// counts, lengths and reach as varints (issue #20: every checkpoint rewrites a busy partition's
// explanations, ~1.6 KB a brand in format 1); both are still read, and rewritten into
// `brand/<name>` format 6 (kBrandVersion), which holds them since.
constexpr uint64_t kExplainVersion = 1;
constexpr uint64_t kExplainPackedVersion = 2;
// Key `late` (partition), new with kpi.grace: a state without it restores 0.
constexpr uint64_t kLateVersion = 1;

int64_t minute_of(EventTime t) { return floor_div(to_epoch_ms(t), ReputationOperator::kBucketMs); }

// The chunk of a brand's newest minute (format 7 keeps its buckets in `brand/`); none without
// minutes.
template <typename Minutes>
std::optional<int64_t> newest_chunk(const Minutes& minutes) {
  if (minutes.items.empty()) return std::nullopt;
  return floor_div(minutes.end() - 1, kMinutesPerChunk);
}

void fold_key(std::string_view name, uint32_t n, std::string& out) {
  out.assign("folds/").append(name).push_back('/');
  byte_codec::put_hex(out, n, kFoldDigits);
}

constexpr std::string_view kChunkPrefix = "chunks/";
constexpr std::string_view kHourPrefix = "minutes/";  // format 4

// `chunks/<name>/<16 hex digits>` (or format 4's `minutes/<name>/<16 hex digits>`): the chunk
// (hour), biased so that the keys sort as the chunks do.
void bucket_key(std::string_view prefix, std::string_view name, int64_t chunk, std::string& out) {
  out.assign(prefix).append(name).push_back('/');
  byte_codec::put_hex(out, static_cast<uint64_t>(chunk) ^ kChunkBias, 16);
}

// The brand and chunk (hour) of a `chunks/` (`minutes/`) key relative to the scope; nullopt when
// malformed.
std::optional<std::pair<std::string_view, int64_t>> parse_bucket_key(std::string_view prefix,
                                                                     std::string_view key) {
  const size_t slash = key.rfind('/');
  if (key.substr(0, prefix.size()) != prefix || slash < prefix.size()) return std::nullopt;
  const auto biased = byte_codec::parse_hex(key.substr(slash + 1), 16);
  if (!biased) return std::nullopt;
  return std::pair(key.substr(prefix.size(), slash - prefix.size()),
                   static_cast<int64_t>(*biased ^ kChunkBias));
}

// A minute bucket's fixed layout (kBucketBytes): the same in formats 2 to 5.
template <typename Bucket>
void put_bucket(std::string& out, const Bucket& k) {
  byte_codec::put_f64(out, k.positive);
  byte_codec::put_f64(out, k.negative);
  byte_codec::put_f64(out, k.weight);
  byte_codec::put_i64(out, k.mentions);
  byte_codec::put_i64(out, k.engagements);
  byte_codec::put_i64(out, k.ideas);
  byte_codec::put_i64(out, k.opinion_events);
  byte_codec::put_i64(out, k.events);
}

template <typename Bucket>
void read_bucket(byte_codec::Reader& r, Bucket& k) {
  k.positive = r.f64();
  k.negative = r.f64();
  k.weight = r.f64();
  k.mentions = r.i64();
  k.engagements = r.i64();
  k.ideas = r.i64();
  k.opinion_events = r.i64();
  k.events = r.i64();
}

void put_hll_series(std::string& out, int64_t first, const std::deque<HyperLogLog>& items) {
  byte_codec::put_i64(out, first);
  byte_codec::put_u64(out, items.size());
  for (const HyperLogLog& h : items) h.serialize(out);
}

}  // namespace

template <typename T>
T& ReputationOperator::Series<T>::at(int64_t index) {
  if (items.empty()) {
    first = index;
    items.emplace_back();
  } else if (index < first) {
    items.insert(items.begin(), static_cast<size_t>(first - index), T{});
    first = index;
  } else if (index >= end()) {
    items.resize(static_cast<size_t>(index - first + 1));
  }
  return items[static_cast<size_t>(index - first)];
}

template <typename T>
void ReputationOperator::Series<T>::drop_before(int64_t index) {
  while (!items.empty() && first < index) {
    items.pop_front();
    ++first;
  }
}

ReputationOperator::ReputationOperator(Vocabulary vocabulary, KpiSettings kpi)
    : vocabulary_(std::move(vocabulary)),
      kpi_(std::move(kpi)),
      // Buckets are whole minutes; a horizon below one minute would keep nothing closed.
      horizon_minutes_(
          std::max<int64_t>(1, (kpi_.reputation_horizon.count() + kBucketMs - 1) / kBucketMs)),
      grace_ms_(std::max<int64_t>(0, kpi_.grace.count())),
      detectors_(vocabulary_.brand_count(), SpikeDetector(kpi_.spike)),
      spikes_(vocabulary_.brand_count(), 0),
      baselines_(vocabulary_.brand_count(), ExplainBaseline(vocabulary_.channel_count())) {}

ReputationOperator::PartitionState& ReputationOperator::state_for(PartitionId partition) {
  return partitions_.get_or_create(partition, [this] {
    PartitionState s;
    s.brands.resize(vocabulary_.brand_count());
    return s;
  });
}

int64_t ReputationOperator::closed_end_at(EventTime watermark) const {
  return floor_div(to_epoch_ms(watermark) - grace_ms_, kBucketMs);
}

void ReputationOperator::process(const ProcessContext& ctx, const Event& event) {
  const int64_t minute = minute_of(event.time);
  // The bucket is closed once the pipeline watermark passed its end + grace: such events only
  // count in the cumulative counters and in the late counter. ctx may be ahead of the last
  // on_watermark call; either closes it.
  const int64_t closed_end = std::max(closed_end_, closed_end_at(ctx.pipeline_watermark));
  PartitionState& state = state_for(ctx.partition);
  state.unsaved = true;
  if (minute < closed_end) {
    ++state.late_events;
    state.late_unsaved = true;
    return;
  }

  BrandState& brand = state.brands[event.brand];
  const Derived& d = ctx.derived;
  brand.unsaved = true;
  note_unsaved_minute(brand, minute);
  MinuteBucket& b = brand.minutes.at(minute);
  b.positive += d.positive;
  b.negative += d.negative;
  b.weight += d.opinion_weight;
  b.mentions += d.mentions;
  b.engagements += d.engagements;
  b.ideas += d.ideas;
  // A pre-aggregated event stands for `count` opinions, as in the weight w*c.
  if (d.opinion) b.opinion_events += event.count;
  ++b.events;
  if (d.negative > 0.0) {
    brand.explain.try_emplace(minute, vocabulary_.channel_count())
        .first->second.add(event, d.negative);
  }
  // Counted once the minute closes (fold_closed_actors): the gauges hold closed minutes only.
  if (event.has_actor) brand.open_actors.at(minute).add(event.actor_hash);
}

void ReputationOperator::on_watermark(EventTime watermark, Emitter& out) {
  const int64_t new_closed_end = closed_end_at(watermark);
  if (new_closed_end <= closed_end_) return;
  close_minutes(new_closed_end, out);
  closed_end_ = new_closed_end;

  const int64_t minute_floor = new_closed_end - horizon_minutes_;
  for (auto& [id, p] : partitions_) {
    p.unsaved = true;  // buckets leave the horizon, open minutes fold: once a minute
    for (BrandState& b : p.brands) {
      // The chunks that lose buckets are rewritten (or removed, once empty).
      for (int64_t m = b.minutes.first; m < std::min(minute_floor, b.minutes.end());
           m += kMinutesPerChunk) {
        note_unsaved_minute(b, m);
      }
      if (b.minutes.first < minute_floor && b.minutes.end() > b.minutes.first)
        note_unsaved_minute(b, std::min(minute_floor, b.minutes.end()) - 1);
      b.minutes.drop_before(minute_floor);
      b.unsaved = true;  // its range, open minutes and explanations move on
      const int64_t floor = new_closed_end - kLongHorizonMinutes;
      note_sketch_step(b, new_closed_end, floor);  // once a minute
      fold_closed_actors(b, new_closed_end);
      b.actors.expire_before(floor);
    }
  }
  ++actors_version_;
}

void ReputationOperator::fold_closed_actors(BrandState& brand, int64_t closed_end) {
  Series<HyperLogLog>& open = brand.open_actors;
  while (!open.items.empty() && open.first < closed_end) {
    if (!open.items.front().empty()) brand.actors.add_minute(open.first, open.items.front());
    open.items.pop_front();
    ++open.first;
  }
}

void ReputationOperator::note_sketch_step(BrandState& brand, int64_t closed_end, int64_t floor) {
  if (brand.actors_rebase) return;
  const Series<HyperLogLog>& open = brand.open_actors;
  size_t folded = 0;
  for (size_t i = 0; i < open.items.size() && open.first + static_cast<int64_t>(i) < closed_end;
       ++i) {
    folded += open.items[i].empty() ? 0 : 1;
  }
  // Nothing to fold into an empty sketch: the step changes nothing.
  if (folded == 0 && brand.actors.empty()) return;
  using namespace byte_codec;
  std::string& out = brand.unsaved_steps;
  put_svar(out, floor);
  put_var(out, folded);
  for (size_t i = 0; i < open.items.size() && open.first + static_cast<int64_t>(i) < closed_end;
       ++i) {
    if (open.items[i].empty()) continue;
    put_svar(out, open.first + static_cast<int64_t>(i));
    open.items[i].serialize(out);
  }
  ++brand.unsaved_step_count;
}

bool ReputationOperator::replay_sketch_steps(BrandState& brand, std::string_view steps) {
  byte_codec::Reader r(steps);
  const uint64_t count = r.var();
  for (uint64_t step = 0; step < count && r.ok(); ++step) {
    const int64_t floor = r.svar();
    const uint64_t folded = r.var();
    if (!r.ok() || std::abs(floor) > kSaneMinute || folded > r.remaining()) return false;
    for (uint64_t i = 0; i < folded; ++i) {
      const int64_t minute = r.svar();
      if (!r.ok() || std::abs(minute) > kSaneMinute) return false;
      auto seen = HyperLogLog::deserialize(r.rest());
      if (!seen) return false;
      brand.actors.add_minute(minute, *seen);
    }
    brand.actors.expire_before(floor);
  }
  return r.done();
}

void ReputationOperator::close_minutes(int64_t new_closed_end, Emitter& out) {
  const size_t brands = vocabulary_.brand_count();
  // Where each brand's closing starts: a started detector continues at closed_end_ (gap minutes
  // feed x = 0); an unstarted one at its earliest retained bucket, so that the first watermark
  // (from kMinEventTime) does not walk billions of empty minutes.
  std::vector<int64_t> begin(brands, kNothingClosed);
  int64_t loop_begin = new_closed_end;
  for (size_t b = 0; b < brands; ++b) {
    int64_t start = new_closed_end;
    if (detectors_[b].started()) {
      start = closed_end_;
    } else {
      for (const auto& [id, p] : partitions_) {
        const Series<MinuteBucket>& s = p.brands[b].minutes;
        if (!s.items.empty()) start = std::min(start, std::max(s.first, closed_end_));
      }
    }
    begin[b] = start;
    loop_begin = std::min(loop_begin, start);
  }
  // Minute-major so alerts leave in event-time order across brands.
  for (int64_t m = loop_begin; m < new_closed_end; ++m) {
    for (size_t b = 0; b < brands; ++b) {
      if (m < begin[b]) continue;
      BucketObservation obs;
      obs.minute = m;
      int64_t events = 0;
      for (const auto& [id, p] : partitions_) {
        if (const MinuteBucket* bucket = p.brands[b].minutes.find(m)) {
          obs.negative += bucket->negative;
          obs.positive += bucket->positive;
          obs.weight += bucket->weight;
          obs.opinion_events += bucket->opinion_events;
          events += bucket->events;
        }
      }
      if (!detectors_[b].started() && events == 0) continue;
      const SpikeVerdict v = detectors_[b].observe(obs);
      ContributionSketch contributions(vocabulary_.channel_count());
      for (const auto& [id, p] : partitions_) {
        const auto& explain = p.brands[b].explain;
        if (auto it = explain.find(m); it != explain.end()) contributions.merge(it->second);
      }
      if (v.transition == EpisodeTransition::started) ++spikes_[b];
      if (v.transition != EpisodeTransition::none) {
        emit_alert(static_cast<BrandIndex>(b), m, v, contributions, out);
      }
      // The baseline learns from ordinary minutes only, so a crisis stands out for its length.
      if (!v.anomalous) baselines_[b].update(contributions, kpi_.spike.alpha);
    }
  }
  for (auto& [id, p] : partitions_) {
    for (BrandState& brand : p.brands) {
      brand.explain.erase(brand.explain.begin(), brand.explain.lower_bound(new_closed_end));
    }
  }
}

bool ReputationOperator::is_replay(int64_t minute) const {
  if (wall_ == WallTime{}) return false;
  const auto wall_ms = std::chrono::duration_cast<Millis>(wall_.time_since_epoch()).count();
  return wall_ms - (minute + 1) * kBucketMs > kpi_.spike.max_lag.count();
}

bool ReputationOperator::catching_up() const {
  return closed_end_ != kNothingClosed && is_replay(closed_end_ - 1);
}

void ReputationOperator::emit_alert(BrandIndex brand, int64_t minute, const SpikeVerdict& v,
                                    const ContributionSketch& contributions, Emitter& out) const {
  const bool started = v.transition == EpisodeTransition::started;
  const std::string& name = vocabulary_.brand_name(brand);
  auto time_of = [](int64_t m) { return format_rfc3339_ms(from_epoch_ms(m * kBucketMs)); };
  const std::string episode_start = time_of(v.episode_start);
  OutputRecord r;
  r.topic = OutputRecord::Topic::alerts;
  r.key = name + "|" + episode_start + (started ? "|started" : "|ended");
  // Brand names match ^[a-z0-9][a-z0-9_.-]*$ (SPEC 1), so they need no JSON escaping.
  std::string& j = r.value;
  j = "{\"brand\":\"" + name + "\",\"bucket_start\":\"" + time_of(minute) + "\",\"value\":";
  append_double(j, v.value);
  j += ",\"mean\":";
  append_double(j, v.mean);
  j += ",\"stddev\":";
  append_double(j, v.stddev);
  j += ",\"zscore\":";
  append_double(j, v.zscore);
  j += ",\"sentiment\":";
  append_double(j, v.sentiment);
  j += ",\"sentiment_baseline\":";
  append_double(j, v.sentiment_mean);
  j += ",\"drop_zscore\":";
  append_double(j, v.drop_zscore);
  j.append(",\"kind\":\"").append(to_string(v.episode_kind)).append("\",\"severity\":");
  j += std::to_string(v.episode_severity);
  j.append(",\"episode\":\"").append(started ? "started" : "ended");
  j.append("\",\"episode_start\":\"").append(episode_start).append("\",\"episode_end\":");
  if (started) {
    j += "null";
  } else {
    j.append("\"").append(time_of(v.episode_end)).append("\"");
  }
  j.append(",\"replay\":").append(is_replay(minute) ? "true" : "false");
  // The bucket that opened the episode against the brand's usual minutes.
  j += ",\"explanation\":";
  if (started) {
    baselines_[brand].append_explanation(j, contributions, vocabulary_);
  } else {
    j += "null";
  }
  j += "}";
  out.emit(std::move(r));
}

const std::vector<std::array<ReputationOperator::ActorGauge, 2>>& ReputationOperator::actor_gauges()
    const {
  if (gauges_closed_end_ == closed_end_ && gauges_version_ == actors_version_) return actor_gauges_;
  const size_t brands = vocabulary_.brand_count();
  actor_gauges_.assign(brands, {});
  for (size_t b = 0; b < brands; ++b) {
    const int64_t horizons[] = {kShortHorizonMinutes, kLongHorizonMinutes};
    for (size_t h = 0; h < 2; ++h) {
      HyperLogLog merged;
      bool any = false;
      for (const auto& [id, p] : partitions_) {
        const SlidingHyperLogLog& actors = p.brands[b].actors;
        if (actors.empty()) continue;
        any |= actors.merge_window(closed_end_ - horizons[h], closed_end_, merged);
      }
      if (any) actor_gauges_[b][h] = {true, merged.estimate()};
    }
  }
  gauges_closed_end_ = closed_end_;
  gauges_version_ = actors_version_;
  return actor_gauges_;
}

void ReputationOperator::collect(MetricsWriter& out) const {
  {
    uint64_t late = 0;
    for (const auto& [id, p] : partitions_) late += p.late_events;
    const LabelPair labels[] = {{"window", "kpi"}};
    out.family("socialpulse_late_events_total",
               "Events that arrived after all their windows closed", MetricType::counter);
    out.add(labels, static_cast<double>(late));
  }
  const size_t brands = vocabulary_.brand_count();

  // MetricsWriter takes one family at a time: one pass per family.
  {
    LazyFamily family(out, "socialpulse_reputation_spikes_total",
                      "Negative-sentiment spikes detected per brand", MetricType::counter);
    for (size_t b = 0; b < brands; ++b) {
      if (!detectors_[b].started()) continue;
      const LabelPair labels[] = {{"brand", vocabulary_.brand_name(static_cast<BrandIndex>(b))}};
      family.add(labels, static_cast<double>(spikes_[b]));
    }
  }
  if (!out.wants_gauges()) return;  // the rest are gauges (the horizon's sums, actor sketches)
  {
    LazyFamily family(out, "socialpulse_reputation_anomaly_zscore",
                      "z-score of the last closed minute's negative score", MetricType::gauge);
    for (size_t b = 0; b < brands; ++b) {
      if (!detectors_[b].started()) continue;
      const LabelPair labels[] = {{"brand", vocabulary_.brand_name(static_cast<BrandIndex>(b))}};
      family.add(labels, detectors_[b].last_zscore());
    }
  }
  {
    // The detector's own verdict (one source of truth for the ReputationSpike rule). History
    // replayed while catching up never shows as an active alert.
    const bool live = !catching_up();
    LazyFamily active(out, "socialpulse_reputation_alert_active",
                      "1 while a live reputation alert episode of this kind is open",
                      MetricType::gauge);
    for (size_t b = 0; b < brands; ++b) {
      if (!detectors_[b].started()) continue;
      for (size_t k = 0; k < kSpikeKindCount; ++k) {
        const auto kind = static_cast<SpikeKind>(k);
        const bool on = live && detectors_[b].in_episode() && detectors_[b].episode_kind() == kind;
        const LabelPair labels[] = {{"brand", vocabulary_.brand_name(static_cast<BrandIndex>(b))},
                                    {"kind", to_string(kind)}};
        active.add(labels, on ? 1.0 : 0.0);
      }
    }
  }
  {
    const bool live = !catching_up();
    LazyFamily severity(out, "socialpulse_reputation_alert_severity",
                        "Severity 1-10 of the open live alert episode, 0 when none",
                        MetricType::gauge);
    for (size_t b = 0; b < brands; ++b) {
      if (!detectors_[b].started()) continue;
      for (size_t k = 0; k < kSpikeKindCount; ++k) {
        const auto kind = static_cast<SpikeKind>(k);
        const bool on = live && detectors_[b].in_episode() && detectors_[b].episode_kind() == kind;
        const LabelPair labels[] = {{"brand", vocabulary_.brand_name(static_cast<BrandIndex>(b))},
                                    {"kind", to_string(kind)}};
        severity.add(labels, on ? detectors_[b].episode_severity() : 0.0);
      }
    }
  }
  {
    LazyFamily family(out, "socialpulse_catching_up",
                      "1 while the pipeline watermark is more than alerts.max_lag behind the "
                      "wall clock (alerts are replayed history)",
                      MetricType::gauge);
    family.add({}, catching_up() ? 1.0 : 0.0);
  }
  if (closed_end_ == kNothingClosed) return;  // no closed bucket yet: horizon gauges are absent

  struct Totals {
    double positive = 0.0, negative = 0.0, weight = 0.0;
    int64_t mentions = 0, engagements = 0, ideas = 0;
  };
  std::vector<Totals> totals(brands);
  const int64_t lo = closed_end_ - horizon_minutes_;
  for (const auto& [id, p] : partitions_) {
    for (size_t b = 0; b < brands; ++b) {
      const Series<MinuteBucket>& s = p.brands[b].minutes;
      Totals& t = totals[b];
      for (int64_t m = std::max(lo, s.first); m < std::min(closed_end_, s.end()); ++m) {
        const MinuteBucket& k = s.items[static_cast<size_t>(m - s.first)];
        t.positive += k.positive;
        t.negative += k.negative;
        t.weight += k.weight;
        t.mentions += k.mentions;
        t.engagements += k.engagements;
        t.ideas += k.ideas;
      }
    }
  }
  int64_t tracked_mentions = 0;
  for (size_t b = 0; b < brands; ++b) {
    if (vocabulary_.brand_is_tracked(static_cast<BrandIndex>(b)))
      tracked_mentions += totals[b].mentions;
  }

  auto brand_labels = [this](size_t b) {
    return std::array<LabelPair, 1>{
        LabelPair{"brand", vocabulary_.brand_name(static_cast<BrandIndex>(b))}};
  };
  {
    LazyFamily family(out, "socialpulse_reputation_index",
                      "100*(P-N)/W over the reputation horizon, -100..100", MetricType::gauge);
    for (size_t b = 0; b < brands; ++b) {
      const Totals& t = totals[b];
      if (t.weight > 0.0) family.add(brand_labels(b), 100.0 * (t.positive - t.negative) / t.weight);
    }
  }
  {
    LazyFamily family(out, "socialpulse_share_of_voice_ratio",
                      "Mentions of the brand over mentions of all tracked brands (horizon)",
                      MetricType::gauge);
    for (size_t b = 0; b < brands && tracked_mentions > 0; ++b) {
      if (!vocabulary_.brand_is_tracked(static_cast<BrandIndex>(b))) continue;
      family.add(brand_labels(b),
                 static_cast<double>(totals[b].mentions) / static_cast<double>(tracked_mentions));
    }
  }
  {
    LazyFamily family(out, "socialpulse_innovation_rate",
                      "Ideas per 1000 engagements over the horizon", MetricType::gauge);
    for (size_t b = 0; b < brands; ++b) {
      const Totals& t = totals[b];
      if (t.engagements == 0) continue;
      family.add(brand_labels(b),
                 1000.0 * static_cast<double>(t.ideas) / static_cast<double>(t.engagements));
    }
  }
  {
    LazyFamily family(out, "socialpulse_unique_actors",
                      "Distinct actors (HyperLogLog) over 1h and 24h", MetricType::gauge);
    const auto& gauges = actor_gauges();
    for (size_t b = 0; b < brands; ++b) {
      for (size_t h = 0; h < 2; ++h) {
        if (!gauges[b][h].present) continue;
        const LabelPair labels[] = {{"brand", vocabulary_.brand_name(static_cast<BrandIndex>(b))},
                                    {"horizon", h == 0 ? "1h" : "24h"}};
        family.add(labels, gauges[b][h].value);
      }
    }
  }
}

void ReputationOperator::snapshot(PartitionId partition, StateWriter& out) const {
  using namespace byte_codec;
  std::string value;
  std::string key;
  if (partition == kGlobalPartition) {
    put_u64(value, kGlobalSnapshotVersion);
    put_i64(value, closed_end_);
    out.put("closed", value);
    for (size_t b = 0; b < detectors_.size(); ++b) {
      value.clear();
      put_u64(value, kDetectorVersion);
      detectors_[b].serialize(value);
      put_u64(value, spikes_[b]);
      out.put(key.assign("detector/").append(vocabulary_.brand_name(static_cast<BrandIndex>(b))),
              value);
      value.clear();
      put_u64(value, kExplainVersion);
      baselines_[b].serialize(value, vocabulary_);
      out.put(key.assign("baseline/").append(vocabulary_.brand_name(static_cast<BrandIndex>(b))),
              value);
    }
    return;
  }
  const PartitionState* state = partitions_.find(partition);
  if (state == nullptr) return;
  // A brand's `brand/` key is written after it changed (an event, a closing minute), an empty
  // one too: a brand whose minutes all left the horizon overwrites its old values instead of
  // leaving them behind.
  for (size_t index = 0; index < state->brands.size(); ++index) {
    snapshot_brand(partition, state->brands[index],
                   vocabulary_.brand_name(static_cast<BrandIndex>(index)), out);
  }
  if (!state->late_unsaved) return;  // most checkpoints: rewriting it was a key a partition
  value.clear();
  put_u64(value, kLateVersion);
  put_u64(value, state->late_events);
  out.put("late", value);
}

void ReputationOperator::snapshot_brand(PartitionId partition, const BrandState& b,
                                        const std::string& name, StateWriter& out) const {
  using namespace byte_codec;
  std::string value;
  std::string key;
  // The newest chunk, whose buckets `brand/` holds. Its buckets change only with the brand
  // (process(), on_watermark() and the restore's conversions mark both), so it is never due
  // without `brand/`.
  const std::optional<int64_t> tail = newest_chunk(b.minutes);
  std::vector<int64_t> chunks = b.unsaved_chunks;
  if (b.unsaved) {
    put_u64(value, kBrandVersion);
    put_i64(value, b.minutes.first);
    put_u64(value, b.minutes.items.size());
    put_hll_series(value, b.open_actors.first, b.open_actors.items);
    put_var(value, b.explain.size());
    for (const auto& [minute, sketch] : b.explain) {
      put_svar(value, minute);
      sketch.serialize(value, vocabulary_, /*packed=*/true);
    }
    put_var(value, tail ? 1 : 0);
    if (tail) {
      const int64_t from = std::max(b.minutes.first, *tail * kMinutesPerChunk);
      put_svar(value, from);
      put_var(value, static_cast<uint64_t>(b.minutes.end() - from));
      for (int64_t m = from; m < b.minutes.end(); ++m) put_bucket(value, *b.minutes.find(m));
    }
    out.put(key.assign("brand/").append(name), value);
    if (b.explain_key) out.remove(key.assign("explain/").append(name));
    b.pending_brand_chunk = tail;
    // The chunk `brand/` held until now gets a key of its own; the one it holds now has none.
    if (b.brand_chunk && b.brand_chunk != tail) chunks.push_back(*b.brand_chunk);
    if (tail) std::erase(chunks, *tail);
    if (tail && b.stale_chunk_key == tail) {
      bucket_key(kChunkPrefix, name, *tail, key);
      out.remove(key);
    }
  }
  std::sort(chunks.begin(), chunks.end());
  chunks.erase(std::unique(chunks.begin(), chunks.end()), chunks.end());
  for (const int64_t chunk : chunks) {
    bucket_key(kChunkPrefix, name, chunk, key);
    const int64_t from = std::max(b.minutes.first, chunk * kMinutesPerChunk);
    const int64_t to = std::min(b.minutes.end(), (chunk + 1) * kMinutesPerChunk);
    if (from >= to) {
      out.remove(key);
      continue;
    }
    value.clear();
    put_u64(value, kPartitionSnapshotVersion);
    put_i64(value, from);
    put_u64(value, static_cast<uint64_t>(to - from));
    for (int64_t m = from; m < to; ++m) put_bucket(value, *b.minutes.find(m));
    out.put(key, value);
  }
  // Format 4's hour keys, read at the restore: their buckets are in the chunks written above.
  for (const int64_t hour : b.hour_keys) {
    bucket_key(kHourPrefix, name, hour, key);
    out.remove(key);
  }
  snapshot_actors(partition, b, name, out);
}

void ReputationOperator::snapshot_actors(PartitionId partition, const BrandState& b,
                                         const std::string& name, StateWriter& out) const {
  using namespace byte_codec;
  b.pending_actors = ActorsWrite::none;
  if (!b.actors_rebase && b.unsaved_step_count == 0) return;
  std::string value;
  std::string key;
  if (!b.actors_rebase) {
    // Staggered: partition and brand name decide after how many fold keys the base is rewritten.
    const uint32_t limit =
        kMinFolds + (static_cast<uint32_t>(partition.value) * 31 +
                     static_cast<uint32_t>(name.size()) * 7 + static_cast<uint8_t>(name.back())) %
                        kMinFolds;
    put_u64(value, kFoldsVersion);
    put_var(value, b.unsaved_step_count);
    value += b.unsaved_steps;
    if (b.stored_folds < limit &&
        b.stored_fold_bytes + value.size() <= std::max<size_t>(b.stored_base_bytes, 1024)) {
      fold_key(name, b.stored_folds, key);
      out.put(key, value);
      b.pending_actors = ActorsWrite::folds;
      b.pending_actors_bytes = value.size();
      return;
    }
    value.clear();
  }
  put_u64(value, kActorsVersion);
  b.actors.serialize(value);
  out.put(key.assign("actors/").append(name), value);
  for (uint32_t n = 0; n < b.stored_folds; ++n) {
    fold_key(name, n, key);
    out.remove(key);
  }
  b.pending_actors = ActorsWrite::base;
  b.pending_actors_bytes = value.size();
}

void ReputationOperator::note_unsaved_chunk(BrandState& brand, int64_t minute) {
  const int64_t chunk = floor_div(minute, kMinutesPerChunk);
  std::vector<int64_t>& chunks = brand.unsaved_chunks;
  if (std::find(chunks.begin(), chunks.end(), chunk) == chunks.end()) chunks.push_back(chunk);
  brand.noted_begin = chunk * kMinutesPerChunk;
  brand.noted_end = brand.noted_begin + kMinutesPerChunk;
}

void ReputationOperator::note_all_buckets_unsaved(BrandState& brand) {
  for (int64_t m = brand.minutes.first; m < brand.minutes.end(); m += kMinutesPerChunk) {
    note_unsaved_minute(brand, m);
  }
  if (!brand.minutes.items.empty()) note_unsaved_minute(brand, brand.minutes.end() - 1);
  brand.unsaved = true;
}

void ReputationOperator::note_all_unsaved(BrandState& brand) {
  note_all_buckets_unsaved(brand);
  brand.actors_rebase = true;
}

namespace {

tl::unexpected<Error> corrupt_reputation(std::string_view key) {
  return make_error(ErrorKind::fatal,
                    "kpi_reputation: corrupt state key '" + std::string(key) + "'");
}

// The key's format version, one of [oldest, newest]; any other is refused by number.
Result<uint64_t> read_version(byte_codec::Reader& in, uint64_t oldest, uint64_t newest,
                              std::string_view key) {
  const uint64_t version = in.u64();
  if (!in.ok()) return corrupt_reputation(key);
  if (version >= oldest && version <= newest) return version;
  return unreadable_format("kpi_reputation: state key '" + std::string(key) + "'", version, oldest,
                           newest);
}

Status check_version(byte_codec::Reader& in, uint64_t expected, std::string_view key) {
  auto version = read_version(in, expected, expected, key);
  if (!version) return tl::unexpected(version.error());
  return {};
}

}  // namespace

Status ReputationOperator::restore(PartitionId partition, StateReader& in) {
  if (partition == kGlobalPartition) {
    int64_t closed_end = closed_end_;
    auto closed = in.get("closed");
    if (!closed) return tl::unexpected(closed.error());
    if (*closed) {
      byte_codec::Reader r(**closed);
      if (auto v = check_version(r, kGlobalSnapshotVersion, "closed"); !v) return v;
      closed_end = r.i64();
      if (!r.done()) return corrupt_reputation("closed");
    }
    std::vector<SpikeDetector> detectors(detectors_.size(), SpikeDetector(kpi_.spike));
    std::vector<uint64_t> spikes(detectors_.size());
    auto scanned =
        in.scan("detector/", [&](std::string_view key, std::string_view bytes) -> Status {
          const std::string_view name = key.substr(9);
          const auto brand = vocabulary_.find_brand(name);
          if (!brand) {
            in.drop(key, DroppedKind::brand, name);
            return {};
          }
          byte_codec::Reader r(bytes);
          const uint64_t version = r.u64();
          if (!r.ok()) return corrupt_reputation(key);
          if (version == kDetectorVersionEwmaOnly) {
            if (!detectors[*brand].deserialize_v2(r)) return corrupt_reputation(key);
          } else if (version == kDetectorVersion) {
            if (!detectors[*brand].deserialize(r)) return corrupt_reputation(key);
          } else {
            return unreadable_format(
                "kpi_reputation: state key '" + std::string(key) + "', its spike detector", version,
                kDetectorVersionEwmaOnly, kDetectorVersion);
          }
          spikes[*brand] = r.u64();
          if (!r.done()) return corrupt_reputation(key);
          return {};
        });
    if (!scanned) return scanned;
    std::vector<ExplainBaseline> baselines(detectors_.size(),
                                           ExplainBaseline(vocabulary_.channel_count()));
    scanned = in.scan("baseline/", [&](std::string_view key, std::string_view bytes) -> Status {
      const std::string_view name = key.substr(9);
      const auto brand = vocabulary_.find_brand(name);
      if (!brand) {
        in.drop(key, DroppedKind::brand, name);
        return {};
      }
      byte_codec::Reader r(bytes);
      if (auto v = check_version(r, kExplainVersion, key); !v) return v;
      if (!baselines[*brand].deserialize(r, vocabulary_) || !r.done())
        return corrupt_reputation(key);
      return {};
    });
    if (!scanned) return scanned;
    closed_end_ = closed_end;
    detectors_ = std::move(detectors);
    spikes_ = std::move(spikes);
    baselines_ = std::move(baselines);
    return {};
  }

  drop(partition);
  PartitionState s;
  s.unsaved = false;  // as stored, unless converted or folded below
  s.brands.resize(vocabulary_.brand_count());
  std::vector<uint8_t> split(s.brands.size(), 0);           // brands read from format 4 or 5
  std::vector<uint64_t> bucket_format(s.brands.size(), 0);  // 4 or 5: where their buckets are
  std::vector<uint8_t> explained(s.brands.size(), 0);       // format 6: explanations read
  bool any = false;
  // The open minutes' explanation sketches (format 6's `brand/` tail, `explain/` before).
  auto read_explain = [&](byte_codec::Reader& r, bool packed,
                          std::map<int64_t, ContributionSketch>& explain) {
    const uint64_t n = packed ? r.var() : r.u64();
    if (n > r.rest().size()) return false;
    for (uint64_t i = 0; i < n && r.ok(); ++i) {
      const int64_t minute = packed ? r.svar() : r.i64();
      ContributionSketch sketch(vocabulary_.channel_count());
      if (!sketch.deserialize(r, vocabulary_, packed)) return false;
      explain.emplace(minute, std::move(sketch));
    }
    return r.ok();
  };
  auto scanned = in.scan("brand/", [&](std::string_view key, std::string_view bytes) -> Status {
    const std::string_view name = key.substr(6);
    const auto brand = vocabulary_.find_brand(name);
    if (!brand) {
      in.drop(key, DroppedKind::brand, name);
      return {};
    }
    byte_codec::Reader r(bytes);
    const auto read = read_version(r, kPartitionSnapshotVersionSlices, kBrandVersion, key);
    if (!read) return tl::unexpected(read.error());
    const uint64_t version = *read;
    BrandState& b = s.brands[*brand];
    auto read_hll_series = [&r](Series<HyperLogLog>& series) {
      series.first = r.i64();
      const uint64_t n = r.u64();
      for (uint64_t i = 0; i < n && r.ok(); ++i) {
        auto h = HyperLogLog::deserialize(r.rest());
        if (!h) {
          r.fail();
          return;
        }
        series.items.push_back(std::move(*h));
      }
    };
    b.minutes.first = r.i64();
    const uint64_t n = r.u64();
    if (version >= kPartitionSnapshotVersionHours) {
      // The buckets are in `chunks/` (format 4: `minutes/`) keys, read below; the range is
      // bounded by the horizon.
      if (!r.ok() || std::abs(b.minutes.first) > kSaneMinute ||
          n > std::max<uint64_t>(kSaneBuckets, 4 * static_cast<uint64_t>(horizon_minutes_)))
        return corrupt_reputation(key);
      b.minutes.items.resize(n);
      read_hll_series(b.open_actors);
      if (!r.ok() || std::abs(b.open_actors.first) > kSaneMinute) return corrupt_reputation(key);
      if (version >= kBrandVersionExplained) {
        if (!read_explain(r, /*packed=*/true, b.explain)) return corrupt_reputation(key);
        explained[*brand] = 1;
      }
      if (version == kBrandVersion) {
        // The newest chunk's buckets: all of them up to the range's end, within one chunk.
        const uint64_t has_tail = r.var();
        if (!r.ok() || has_tail != (b.minutes.items.empty() ? 0u : 1u))
          return corrupt_reputation(key);
        if (has_tail == 1) {
          const int64_t from = r.svar();
          const uint64_t count = r.var();
          const int64_t chunk = floor_div(from, kMinutesPerChunk);
          if (!r.ok() || from < b.minutes.first || count == 0 ||
              count > static_cast<uint64_t>(kMinutesPerChunk) ||
              from + static_cast<int64_t>(count) != b.minutes.end() ||
              newest_chunk(b.minutes) != chunk) {
            return corrupt_reputation(key);
          }
          for (int64_t m = from; m < b.minutes.end(); ++m)
            read_bucket(r, b.minutes.items[static_cast<size_t>(m - b.minutes.first)]);
          b.brand_chunk = chunk;
        }
      }
      if (!r.done()) return corrupt_reputation(key);
      split[*brand] = 1;  // the sketch is in `actors/<name>` (a base to write until read)
      // Formats 6 and 7 keep their (other) buckets in format 5's chunks.
      bucket_format[*brand] =
          version >= kBrandVersionExplained ? kPartitionSnapshotVersion : version;
      b.unsaved = false;  // as stored
      if (version == kPartitionSnapshotVersionHours) {
        note_all_buckets_unsaved(b);  // the next checkpoint writes chunks, removes the hours
        s.unsaved = true;
      }
      if (version < kBrandVersion) {
        b.unsaved = true;  // rewritten as format 7 (with its `explain/` key's sketches)
        s.unsaved = true;
      }
      any = true;
      return {};
    }
    // Bound by the bytes present so a corrupt length cannot allocate without limit.
    if (n > r.rest().size() / kBucketBytes) return corrupt_reputation(key);
    b.minutes.items.resize(n);
    for (MinuteBucket& k : b.minutes.items) read_bucket(r, k);
    if (version == kPartitionSnapshotVersionWhole) {
      read_hll_series(b.open_actors);
      if (!r.ok() || std::abs(b.open_actors.first) > kSaneMinute) return corrupt_reputation(key);
      auto actors = SlidingHyperLogLog::deserialize(r.rest());
      if (!actors) return corrupt_reputation(key);
      b.actors = std::move(*actors);
    } else {
      Series<HyperLogLog> short_slices, long_slices;
      read_hll_series(short_slices);
      read_hll_series(long_slices);
      if (!r.ok() || std::abs(short_slices.first) > kSaneMinute ||
          std::abs(long_slices.first) > kSaneMinute) {
        return corrupt_reputation(key);
      }
      adopt_slices(b, short_slices, long_slices);
    }
    if (!r.done()) return corrupt_reputation(key);
    note_all_unsaved(b);  // rewritten in the current format
    s.unsaved = true;
    any = true;
    return {};
  });
  if (!scanned) return scanned;
  // The buckets, a chunk a key (format 4: an hour a key), into the ranges read above.
  auto read_buckets = [&](std::string_view prefix, uint64_t format, int64_t per_key) {
    return in.scan(
        prefix,
        [&, prefix, format, per_key](std::string_view key, std::string_view bytes) -> Status {
          const auto parsed = parse_bucket_key(prefix, key);
          if (!parsed) return corrupt_reputation(key);
          const auto [name, chunk] = *parsed;
          const auto brand = vocabulary_.find_brand(name);
          if (!brand) {
            in.drop(key, DroppedKind::brand, name);
            return {};
          }
          // Only beside a `brand/` key of the same format.
          if (bucket_format[*brand] != format) return corrupt_reputation(key);
          BrandState& b = s.brands[*brand];
          // Format 6 and before wrote the newest chunk as a key: `brand/` holds it since 7, and
          // the next snapshot removes the key. A format 7 `brand/`'s own buckets stand.
          if (format == kPartitionSnapshotVersion && newest_chunk(b.minutes) == chunk) {
            b.stale_chunk_key = chunk;
            if (b.brand_chunk) {
              b.unsaved = true;
              s.unsaved = true;
              return {};
            }
          }
          byte_codec::Reader r(bytes);
          if (auto v = check_version(r, format, key); !v) return v;
          const int64_t from = r.i64();
          const uint64_t n = r.u64();
          Series<MinuteBucket>& minutes = b.minutes;
          if (!r.ok() || n == 0 || n > static_cast<uint64_t>(per_key) || from < minutes.first ||
              from + static_cast<int64_t>(n) > minutes.end() || floor_div(from, per_key) != chunk ||
              floor_div(from + static_cast<int64_t>(n) - 1, per_key) != chunk) {
            return corrupt_reputation(key);
          }
          for (int64_t m = from; m < from + static_cast<int64_t>(n); ++m)
            read_bucket(r, minutes.items[static_cast<size_t>(m - minutes.first)]);
          if (!r.done()) return corrupt_reputation(key);
          if (format == kPartitionSnapshotVersionHours) b.hour_keys.push_back(chunk);
          return {};
        });
  };
  scanned = read_buckets(kChunkPrefix, kPartitionSnapshotVersion, kMinutesPerChunk);
  if (!scanned) return scanned;
  scanned = read_buckets(kHourPrefix, kPartitionSnapshotVersionHours, kMinutesPerHourKey);
  if (!scanned) return scanned;
  scanned = in.scan("actors/", [&](std::string_view key, std::string_view bytes) -> Status {
    const std::string_view name = key.substr(7);
    const auto brand = vocabulary_.find_brand(name);
    if (!brand) {
      in.drop(key, DroppedKind::brand, name);
      return {};
    }
    if (!split[*brand]) return corrupt_reputation(key);
    byte_codec::Reader r(bytes);
    const auto version = read_version(r, kActorsVersionWhole, kActorsVersion, key);
    if (!version) return tl::unexpected(version.error());
    auto actors = SlidingHyperLogLog::deserialize(r.rest());
    if (!actors || !r.done()) return corrupt_reputation(key);
    BrandState& b = s.brands[*brand];
    b.actors = std::move(*actors);
    b.stored_base_bytes = bytes.size();
    // Version 4 is rewritten as 5 before any fold key is written beside it.
    if (*version == kActorsVersionWhole) {
      s.unsaved = true;
    } else {
      b.actors_rebase = false;
      split[*brand] = 2;  // folds may follow
    }
    return {};
  });
  if (!scanned) return scanned;
  // The fold keys after each base, replayed in order (contiguous from 0, or corrupt).
  scanned = in.scan("folds/", [&](std::string_view key, std::string_view bytes) -> Status {
    const size_t slash = key.rfind('/');
    if (slash < 6) return corrupt_reputation(key);
    const std::string_view name = key.substr(6, slash - 6);
    const auto brand = vocabulary_.find_brand(name);
    if (!brand) {
      in.drop(key, DroppedKind::brand, name);
      return {};
    }
    const auto n = byte_codec::parse_hex(key.substr(slash + 1), kFoldDigits);
    BrandState& b = s.brands[*brand];
    if (split[*brand] != 2 || !n || *n != b.stored_folds) return corrupt_reputation(key);
    byte_codec::Reader r(bytes);
    if (auto v = check_version(r, kFoldsVersion, key); !v) return v;
    if (!replay_sketch_steps(b, r.rest())) return corrupt_reputation(key);
    ++b.stored_folds;
    b.stored_fold_bytes += bytes.size();
    return {};
  });
  if (!scanned) return scanned;
  for (BrandState& b : s.brands) {
    // Minutes this instance has closed already (a move from an instance behind it, or format 2).
    const size_t open_minutes = b.open_actors.items.size();
    if (closed_end_ != kNothingClosed) fold_closed_actors(b, closed_end_);
    if (b.open_actors.items.size() != open_minutes) {
      b.actors_rebase = true;
      b.unsaved = true;
      s.unsaved = true;
    }
  }
  scanned = in.scan("explain/", [&](std::string_view key, std::string_view bytes) -> Status {
    const std::string_view name = key.substr(8);
    const auto brand = vocabulary_.find_brand(name);
    if (!brand) {
      in.drop(key, DroppedKind::brand, name);
      return {};
    }
    BrandState& b = s.brands[*brand];
    b.explain_key = true;  // removed when `brand/<name>` is next written
    // Beside a format 6 `brand/` (which one checkpoint never writes: it removes this key), the
    // explanations read from that one stand; this key goes at the next checkpoint.
    if (explained[*brand]) {
      b.unsaved = true;
      s.unsaved = true;
      return {};
    }
    byte_codec::Reader r(bytes);
    auto version = read_version(r, kExplainVersion, kExplainPackedVersion, key);
    if (!version) return tl::unexpected(version.error());
    const bool packed = *version == kExplainPackedVersion;
    if (!read_explain(r, packed, b.explain) || !r.done()) return corrupt_reputation(key);
    // Format 1: rewritten packed at the next checkpoint.
    if (!packed) {
      b.unsaved = true;
      s.unsaved = true;
    }
    any = true;
    return {};
  });
  if (!scanned) return scanned;
  auto late = in.get("late");
  if (!late) return tl::unexpected(late.error());
  if (*late) {
    byte_codec::Reader r(**late);
    if (auto v = check_version(r, kLateVersion, "late"); !v) return v;
    s.late_events = r.u64();
    if (!r.done()) return corrupt_reputation("late");
    s.late_unsaved = false;
    any = true;
  }
  if (any) partitions_.assign(partition, std::move(s));
  ++actors_version_;
  return {};
}

void ReputationOperator::adopt_slices(BrandState& brand, const Series<HyperLogLog>& short_slices,
                                      const Series<HyperLogLog>& long_slices) const {
  // The 1-hour slices stand in only for minutes before the retained 5-minute slices.
  const int64_t short_start = short_slices.items.empty() ? std::numeric_limits<int64_t>::max()
                                                         : short_slices.first * kShortSliceMinutes;
  auto adopt = [&](int64_t start, int64_t last, const HyperLogLog& h) {
    if (h.empty()) return;
    int64_t stamp = last;
    if (closed_end_ != kNothingClosed && start < closed_end_ && stamp >= closed_end_) {
      stamp = closed_end_ - 1;  // holds the closed end: counted now, as the slice was
    }
    brand.open_actors.at(stamp).merge(h);
  };
  for (size_t i = 0; i < long_slices.items.size(); ++i) {
    const int64_t start = (long_slices.first + static_cast<int64_t>(i)) * kLongSliceMinutes;
    if (start >= short_start) break;
    adopt(start, std::min(start + kLongSliceMinutes, short_start) - 1, long_slices.items[i]);
  }
  for (size_t i = 0; i < short_slices.items.size(); ++i) {
    const int64_t start = (short_slices.first + static_cast<int64_t>(i)) * kShortSliceMinutes;
    adopt(start, start + kShortSliceMinutes - 1, short_slices.items[i]);
  }
  if (closed_end_ != kNothingClosed) {
    brand.actors.expire_before(closed_end_ - kLongHorizonMinutes);
  }
}

bool ReputationOperator::needs_snapshot(PartitionId partition, bool /*touched*/) const {
  return partitions_.unsaved(partition);
}

void ReputationOperator::saved() {
  for (auto& [id, p] : partitions_) {
    if (!p.unsaved) continue;  // every brand change marks its partition
    p.unsaved = false;
    p.late_unsaved = false;
    for (BrandState& b : p.brands) {
      if (b.unsaved) {  // the snapshot wrote `brand/`: what it holds, what it removed
        b.explain_key = false;
        b.brand_chunk = b.pending_brand_chunk;
        b.stale_chunk_key.reset();
      }
      b.unsaved = false;
      b.unsaved_chunks.clear();
      b.hour_keys.clear();
      b.noted_begin = b.noted_end = 0;
      switch (b.pending_actors) {
        case ActorsWrite::none:
          break;
        case ActorsWrite::base:
          b.stored_base_bytes = b.pending_actors_bytes;
          b.stored_folds = 0;
          b.stored_fold_bytes = 0;
          b.actors_rebase = false;
          break;
        case ActorsWrite::folds:
          ++b.stored_folds;
          b.stored_fold_bytes += b.pending_actors_bytes;
          break;
      }
      if (b.pending_actors != ActorsWrite::none) {
        b.unsaved_steps.clear();
        b.unsaved_step_count = 0;
      }
      b.pending_actors = ActorsWrite::none;
    }
  }
}

void ReputationOperator::drop(PartitionId partition) {
  partitions_.erase(partition);
  ++actors_version_;
}

size_t ReputationOperator::state_bytes() const {
  size_t bytes = 0;
  auto hll_bytes = [](const HyperLogLog& h) {
    return h.is_dense() ? HyperLogLog::kRegisters
                        : static_cast<size_t>(h.estimate()) * sizeof(uint64_t);
  };
  for (const auto& [id, p] : partitions_) {
    for (const BrandState& b : p.brands) {
      bytes += b.minutes.items.size() * sizeof(MinuteBucket);
      for (const HyperLogLog& h : b.open_actors.items) bytes += sizeof(HyperLogLog) + hll_bytes(h);
      bytes += b.actors.memory_bytes();
      // Open minutes' contributors: channels, types and two 8-key sketches (~64 B a key).
      bytes += b.explain.size() * (sizeof(ContributionSketch) + 16 * 64 +
                                   vocabulary_.channel_count() * sizeof(double));
    }
  }
  return bytes + detectors_.size() * (sizeof(SpikeDetector) + sizeof(uint64_t));
}

}  // namespace sp
