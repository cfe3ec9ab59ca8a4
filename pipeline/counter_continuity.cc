#include "pipeline/counter_continuity.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>

#include "operators/byte_codec.h"
#include "operators/state_version.h"
#include "operators/topology.h"

namespace sp {
namespace {

constexpr char kFieldSep = '\x1f';
constexpr char kValueSep = '\x1e';
// Formats 2 and 3 (issue #20): the exported values and the copy of those last published, in
// segments: `continued/base` and the deltas written after it, `continued/delta/<8 hex digits>`,
// one key a checkpoint. Format 1 kept one key per series and kind (`counter/`, `histogram/`, and
// `published/` before either, the copy last published): at 256 partitions it was ~1 300 of a
// checkpoint's ~2 700 RocksDB inserts. Its keys are still read, and replaced by a base at the
// next checkpoint.
constexpr std::string_view kCounterPrefix = "counter/";
constexpr std::string_view kHistogramPrefix = "histogram/";
constexpr std::string_view kPublishedPrefix = "published/";
constexpr std::string_view kBaseKey = "continued/base";
constexpr std::string_view kDeltaPrefix = "continued/delta/";
constexpr int kDeltaDigits = 8;
// Format 3: a delta may name a series by its position among the base's exported values (kinds
// 2 and 3: the position, then the value) instead of by its encoded key and help text (~120 of
// an entry's ~130 bytes; every series changes under load, so a delta was the size of a base).
// A base lists every series whole.
constexpr uint8_t kSegmentVersion = 3;
constexpr uint8_t kOldestSegmentVersion = 2;
// A base is rewritten before the deltas since it would number more than kMaxDeltas or add up to
// more than kDeltaBytesPerBase times the base (a restore reads them all).
constexpr uint32_t kMaxDeltas = 64;
constexpr size_t kDeltaBytesPerBase = 4;
constexpr size_t kMinBaseBytes = 4096;
constexpr uint8_t kEntryCounter = 0;
constexpr uint8_t kEntryHistogram = 1;
constexpr uint8_t kEntryCounterAt = 2;    // format 3, deltas only
constexpr uint8_t kEntryHistogramAt = 3;  // format 3, deltas only

tl::unexpected<Error> corrupt_counters(std::string_view key) {
  return make_error(ErrorKind::fatal,
                    "instance counters: corrupt state key '" + std::string(key) + "'");
}

// One stored value of a segment (views into the segment's bytes, or into its base's).
struct StoredEntry {
  std::string_view series;
  std::string_view help;
  bool histogram = false;
  std::vector<double> bounds;
  std::vector<double> value;
  std::optional<size_t> base_position;  // a base's exported value: its position
};

// A complete entry.
void put_whole_entry(std::string& out, std::string_view series, std::string_view help,
                     bool histogram, std::span<const double> bounds,
                     std::span<const double> value) {
  using namespace byte_codec;
  put_u8(out, histogram ? kEntryHistogram : kEntryCounter);
  put_vstr(out, series);
  put_vstr(out, help);
  if (histogram) {
    put_var(out, bounds.size());
    for (double b : bounds) put_f64(out, b);
  }
  for (double v : value) put_f64(out, v);
}

// Reads a base, then the deltas written after it, in order: a delta's entries may name a series
// by its position among the base's exported values.
class SegmentReader {
 public:
  // Calls visit(published, entry) for each entry of a segment, exported ones first. A segment
  // of another version is refused by number; bytes that are not a whole segment are corrupt.
  Status read(std::string_view key, std::string_view bytes, bool is_base,
              const std::function<void(bool, const StoredEntry&)>& visit) {
    byte_codec::Reader r(bytes);
    const uint8_t version = r.u8();
    if (!r.ok()) return corrupt_counters(key);
    if (version < kOldestSegmentVersion || version > kSegmentVersion) {
      return unreadable_format("instance counters: state key '" + std::string(key) + "'", version,
                               kOldestSegmentVersion, kSegmentVersion);
    }
    if (is_base) base_.clear();
    StoredEntry e;
    for (const bool published : {false, true}) {
      const uint64_t n = r.var();
      for (uint64_t i = 0; i < n && r.ok(); ++i) {
        const uint8_t kind = r.u8();
        e.bounds.clear();
        e.value.clear();
        e.base_position.reset();
        if (kind == kEntryCounter || kind == kEntryHistogram) {
          e.series = r.vstr();
          e.help = r.vstr();
          e.histogram = kind == kEntryHistogram;
          if (e.histogram) {
            const uint64_t bounds = r.var();
            if (bounds > r.remaining() / 8) return corrupt_counters(key);
            for (uint64_t b = 0; b < bounds; ++b) e.bounds.push_back(r.f64());
          }
        } else if ((kind == kEntryCounterAt || kind == kEntryHistogramAt) && version >= 3 &&
                   !is_base) {
          const uint64_t position = r.var();
          if (!r.ok() || position >= base_.size()) return corrupt_counters(key);
          const Named& named = base_[position];
          if (named.histogram != (kind == kEntryHistogramAt)) return corrupt_counters(key);
          e.series = named.series;
          e.help = named.help;
          e.histogram = named.histogram;
          e.bounds = named.bounds;
        } else {
          return corrupt_counters(key);
        }
        const size_t values = e.histogram ? e.bounds.size() + 2 : 1;
        if (values > r.remaining() / 8) return corrupt_counters(key);
        for (size_t v = 0; v < values; ++v) e.value.push_back(r.f64());
        if (!r.ok()) return corrupt_counters(key);
        if (is_base && !published) {
          e.base_position = base_.size();
          base_.push_back({std::string(e.series), std::string(e.help), e.histogram, e.bounds});
        }
        visit(published, e);
      }
    }
    if (!r.done()) return corrupt_counters(key);
    return {};
  }

 private:
  struct Named {
    std::string series;
    std::string help;
    bool histogram = false;
    std::vector<double> bounds;
  };
  std::vector<Named> base_;  // the base's exported values' series, by position
};

// The segments (formats 2 and 3) in the order they were written: visit(key, bytes, n) for the base
// (n nullopt), then for each delta n.
Status scan_segments(StateReader& in, const std::function<Status(std::string_view, std::string_view,
                                                                 std::optional<uint32_t>)>& visit) {
  auto base = in.get(kBaseKey);
  if (!base) return tl::unexpected(base.error());
  if (*base) {
    if (auto s = visit(kBaseKey, **base, std::nullopt); !s) return s;
  }
  return in.scan(kDeltaPrefix, [&](std::string_view key, std::string_view bytes) {
    const auto n = byte_codec::parse_hex(key.substr(kDeltaPrefix.size()), kDeltaDigits);
    if (!n) return Status(corrupt_counters(key));
    return visit(key, bytes, static_cast<uint32_t>(*n));
  });
}

// Counted by the instance itself, not summed from its partitions: a rebalance that moves them
// (state dropped while a partition is restored) is a real count, never absorbed.
bool instance_counted(std::string_view key) {
  return key.starts_with("socialpulse_state_dropped_keys_total");
}

// Into `key` (a buffer kept by the caller: no allocation per sample once it is large enough).
void encode_series(std::string& key, std::string_view family, std::span<const LabelPair> labels) {
  key.assign(family);
  for (const auto& [k, v] : labels) {
    key += kFieldSep;
    key += k;
    key += kValueSep;
    key += v;
  }
}

// into += sign x v, element by element (into grows to v's size).
void add_scaled(std::vector<double>& into, std::span<const double> v, double sign) {
  if (into.size() < v.size()) into.resize(v.size(), 0.0);
  for (size_t i = 0; i < v.size(); ++i) into[i] += sign * v[i];
}

bool all_zero(const std::vector<double>& v) {
  for (double x : v) {
    if (x != 0) return false;
  }
  return true;
}

void histogram_value(std::span<const uint64_t> bucket_counts, double sum, std::vector<double>& v) {
  v.clear();
  for (uint64_t c : bucket_counts) v.push_back(static_cast<double>(c));
  v.push_back(sum);
}

// The inverse: a histogram value's bucket counts (every element but the last, the sum), rounded
// and never negative.
void bucket_counts_of(const std::vector<double>& value, std::vector<uint64_t>& counts) {
  counts.clear();
  for (size_t i = 0; i + 1 < value.size(); ++i)
    counts.push_back(static_cast<uint64_t>(std::max<long long>(0, std::llround(value[i]))));
}

// The counters' and histograms' samples of a collect pass, by encoded series; gauges ignored.
class CounterCapture final : public MetricsWriter {
 public:
  using OnSample =
      std::function<void(const std::string& key, std::string_view family, std::string_view help,
                         std::span<const LabelPair> labels, std::span<const double> bounds,
                         std::span<const double> value)>;
  explicit CounterCapture(OnSample on) : on_(std::move(on)) {}
  bool wants_gauges() const override { return false; }
  void family(std::string_view name, std::string_view help, MetricType type) override {
    family_ = name;
    help_ = help;
    type_ = type;
  }
  void add(std::span<const LabelPair> labels, double value) override {
    if (type_ != MetricType::counter) return;
    encode_series(key_, family_, labels);
    const double v[] = {value};
    on_(key_, family_, help_, labels, {}, v);
  }
  void add_histogram(std::span<const LabelPair> labels, std::span<const double> bounds,
                     std::span<const uint64_t> bucket_counts, double sum) override {
    encode_series(key_, family_, labels);
    histogram_value(bucket_counts, sum, value_);
    on_(key_, family_, help_, labels, bounds, value_);
  }

 private:
  OnSample on_;
  std::string key_;            // the sample's series
  std::vector<double> value_;  // a histogram's value
  std::string family_;
  std::string help_;
  MetricType type_ = MetricType::gauge;
};

// value = max(value, floor), element by element; the floor follows.
void never_below(std::vector<double>& value, std::vector<double>& floor) {
  if (floor.size() != value.size()) {
    floor = value;
    return;
  }
  for (size_t i = 0; i < value.size(); ++i) {
    value[i] = std::max(value[i], floor[i]);
    floor[i] = value[i];
  }
}

// Forwards everything; a counter or histogram series is written whole with its first sample
// (its exported value) and as zero by the later ones (samples of one label set are summed:
// several operators may write one series), so the total is the exported value exactly.
// `look_up(key)` gives a series' exported value (null: none) and whether this is its first
// sample.
class ContinuedWriter final : public MetricsWriter {
 public:
  using LookUp = std::function<std::pair<const std::vector<double>*, bool>(const std::string&)>;
  ContinuedWriter(MetricsWriter& out, LookUp look_up) : out_(out), look_up_(std::move(look_up)) {}
  void family(std::string_view name, std::string_view help, MetricType type) override {
    family_ = name;
    counter_ = type == MetricType::counter;
    out_.family(name, help, type);
  }
  void add(std::span<const LabelPair> labels, double value) override {
    if (counter_) {
      encode_series(key_, family_, labels);
      const auto [exported, first] = look_up_(key_);
      if (exported != nullptr && !exported->empty()) value = first ? (*exported)[0] : 0.0;
    }
    out_.add(labels, value);
  }
  void add_histogram(std::span<const LabelPair> labels, std::span<const double> bounds,
                     std::span<const uint64_t> bucket_counts, double sum) override {
    encode_series(key_, family_, labels);
    const auto [exported, first] = look_up_(key_);
    if (exported == nullptr || exported->size() != bucket_counts.size() + 1) {
      out_.add_histogram(labels, bounds, bucket_counts, sum);
      return;
    }
    if (!first) {
      counts_.assign(bucket_counts.size(), 0);
      return out_.add_histogram(labels, bounds, counts_, 0.0);
    }
    bucket_counts_of(*exported, counts_);
    out_.add_histogram(labels, bounds, counts_, exported->back());
  }

 private:
  MetricsWriter& out_;
  LookUp look_up_;
  std::string family_;
  bool counter_ = false;
  std::string key_;               // the sample's series
  std::vector<uint64_t> counts_;  // a histogram's bucket counts
};

// family and labels of an encoded series.
void decode_series(std::string_view series, std::string& family,
                   std::vector<std::pair<std::string, std::string>>& labels) {
  const size_t first = series.find(kFieldSep);
  family = std::string(series.substr(0, first));
  labels.clear();
  series.remove_prefix(first == std::string_view::npos ? series.size() : first + 1);
  while (!series.empty()) {
    const size_t end = series.find(kFieldSep);
    const std::string_view pair = series.substr(0, end);
    const size_t sep = pair.find(kValueSep);
    labels.emplace_back(std::string(pair.substr(0, sep)),
                        sep == std::string_view::npos ? "" : std::string(pair.substr(sep + 1)));
    series.remove_prefix(end == std::string_view::npos ? series.size() : end + 1);
  }
}

}  // namespace

std::pair<CounterContinuity::Series&, bool> CounterContinuity::find_or_add(
    const std::string& key) const {
  if (auto it = index_.find(key); it != index_.end()) return {*it->second, false};
  auto [it, added] = series_.try_emplace(key);
  index_.emplace(it->first, &it->second);
  return {it->second, true};
}

CounterContinuity::Series& CounterContinuity::series_at(const std::string& key) const {
  return find_or_add(key).first;
}

void CounterContinuity::erase_series(const std::string& key) {
  index_.erase(key);
  series_.erase(key);
}

void CounterContinuity::gather(const Topology& topology) const {
  ++pass_;
  CounterCapture capture([&](const std::string& key, std::string_view family, std::string_view help,
                             std::span<const LabelPair> labels, std::span<const double> bounds,
                             std::span<const double> value) {
    auto [s, added] = find_or_add(key);
    if (added) {
      s.family = family;
      s.help = help;
      for (const auto& [k, v] : labels) s.labels.emplace_back(k, v);
    }
    if (!bounds.empty() && s.bounds.empty()) {
      s.histogram = true;
      s.bounds.assign(bounds.begin(), bounds.end());
    }
    if (s.now_pass != pass_) {
      s.now.clear();
      s.now_pass = pass_;
    }
    add_scaled(s.now, value, 1.0);
  });
  topology.collect_counts(capture);
  topology.collect(capture);
}

CounterContinuity::Values CounterContinuity::raw(const Topology& topology) {
  gather(topology);
  Values values;
  for (const auto& [key, s] : series_) {
    if (s.now_pass == pass_) values.emplace(key, s.now);
  }
  return values;
}

Status CounterContinuity::restore(StateReader& in, const Topology& topology) {
  ScopedStateReader scoped(in, state_scope(kOwner, kGlobalPartition));
  // One persisted series: its exported value is where it continues, unless a brand or channel
  // it is labelled with left the configuration (its counters go with its state).
  auto restore_one = [&](std::string series, Series loaded, Value exported) {
    decode_series(series, loaded.family, loaded.labels);
    for (const auto& [k, v] : loaded.labels) {
      if ((k == "brand" && !topology.vocabulary().find_brand(v)) ||
          (k == "channel" && !topology.vocabulary().find_channel(v))) {
        erase_series(series);
        return;
      }
    }
    loaded.offset = exported;
    loaded.floor = exported;
    loaded.persisted = std::move(exported);
    loaded.is_persisted = true;
    series_at(series) = std::move(loaded);
  };
  legacy_keys_.clear();
  auto counters = scoped.scan(kCounterPrefix, [&](std::string_view key, std::string_view value) {
    legacy_keys_.emplace_back(key);
    byte_codec::Reader r(value);
    const double exported = r.f64();
    Series s;
    s.help = std::string(r.str());
    if (!r.done()) return Status{};  // unreadable: that series starts again from the Topology
    restore_one(std::string(key.substr(kCounterPrefix.size())), std::move(s), {exported});
    return Status{};
  });
  if (!counters) return counters;
  auto histograms =
      scoped.scan(kHistogramPrefix, [&](std::string_view key, std::string_view value) {
        legacy_keys_.emplace_back(key);
        byte_codec::Reader r(value);
        Series s;
        s.histogram = true;
        s.help = std::string(r.str());
        const uint32_t bounds = r.u32();
        for (uint32_t i = 0; i < bounds && r.ok(); ++i) s.bounds.push_back(r.f64());
        Value exported;
        for (uint32_t i = 0; i < bounds + 2 && r.ok(); ++i) exported.push_back(r.f64());
        if (!r.done()) return Status{};
        restore_one(std::string(key.substr(kHistogramPrefix.size())), std::move(s),
                    std::move(exported));
        return Status{};
      });
  if (!histograms) return histograms;
  auto published = scoped.scan(kPublishedPrefix, [&](std::string_view key, std::string_view) {
    legacy_keys_.emplace_back(key);
    return Status{};
  });
  if (!published) return published;
  // Formats 2 and 3: the base, then the deltas in the order they were written; the last value of a
  // series wins.
  std::map<std::string, std::pair<Series, Value>> loaded;
  std::map<std::string, size_t> base_positions;  // what later deltas may name series by
  SegmentReader segment_reader;
  auto load = [&](std::string_view key, std::string_view bytes, bool is_base) {
    return segment_reader.read(key, bytes, is_base, [&](bool is_published, const StoredEntry& e) {
      if (is_published) return;  // what continues counts as published (below)
      auto& [series, value] = loaded[std::string(e.series)];
      series.help = std::string(e.help);
      series.histogram = e.histogram;
      series.bounds = e.bounds;
      value = e.value;
      if (e.base_position) base_positions[std::string(e.series)] = *e.base_position;
    });
  };
  stored_ = Stored{};
  auto segments = scan_segments(
      scoped, [&](std::string_view key, std::string_view bytes, std::optional<uint32_t> delta) {
        if (auto s = load(key, bytes, !delta); !s) return s;
        if (!delta) {
          stored_.base = true;
          stored_.base_bytes = bytes.size();
        } else {
          stored_.deltas = std::max(stored_.deltas, *delta + 1);
          stored_.delta_bytes += bytes.size();
        }
        return Status{};
      });
  if (!segments) return segments;
  for (auto& [series, entry] : loaded) {
    restore_one(series, std::move(entry.first), std::move(entry.second));
  }
  for (auto& [key, s] : series_) {
    const auto position = base_positions.find(key);
    s.base_position = position == base_positions.end() ? kNoPosition : position->second;
  }
  // What continues counts as published: the first checkpoint stores it as such.
  for (auto& [key, s] : series_) {
    if (s.is_persisted) {
      s.published = s.persisted;
    } else {
      s.published.clear();
    }
    s.persisted_published.clear();
    s.is_persisted_published = false;
  }
  // Whatever the Topology counts already (instance-level state) is part of what was exported.
  for (const auto& [key, value] : raw(topology)) {
    if (!instance_counted(key)) add_scaled(series_at(key).offset, value, -1.0);
  }
  return {};
}

void CounterContinuity::before(const Topology& topology) { before_ = raw(topology); }

void CounterContinuity::after(const Topology& topology) {
  Values now = raw(topology);
  for (const auto& [key, value] : before_) {
    if (!instance_counted(key)) add_scaled(series_at(key).offset, value, 1.0);
  }
  for (const auto& [key, value] : now) {
    if (!instance_counted(key)) add_scaled(series_at(key).offset, value, -1.0);
  }
  before_.clear();
}

bool CounterContinuity::put_entry(std::string& out, const std::string& key, const Series& s,
                                  const Value& value, bool by_position) {
  using namespace byte_codec;
  if (s.histogram ? value.size() != s.bounds.size() + 2 : value.empty()) {
    return false;  // a histogram whose bounds changed: not continued
  }
  const std::span<const double> values =
      s.histogram ? std::span<const double>(value) : std::span<const double>(value.data(), 1);
  if (by_position && s.base_position != kNoPosition) {
    put_u8(out, s.histogram ? kEntryHistogramAt : kEntryCounterAt);
    put_var(out, s.base_position);
    for (double v : values) put_f64(out, v);
    return true;
  }
  put_whole_entry(out, key, s.help, s.histogram, s.bounds, values);
  return true;
}

void CounterContinuity::put_segment(std::string& out, const EntryRefs& exported,
                                    const EntryRefs& published, bool base) {
  byte_codec::put_u8(out, kSegmentVersion);
  std::string entries;
  for (const EntryRefs* list : {&exported, &published}) {
    entries.clear();
    uint64_t n = 0;
    for (const EntryRef& e : *list) {
      if (!put_entry(entries, *e.key, *e.series, *e.value, /*by_position=*/!base)) continue;
      if (base && list == &exported) e.series->pending_position = n;
      ++n;
    }
    byte_codec::put_var(out, n);
    out += entries;
  }
}

void CounterContinuity::refs_of(const Changes& changes, EntryRefs& out) {
  out.clear();
  for (const Change& c : changes) out.push_back({c.key, c.series, &c.value});
}

void CounterContinuity::refs_after(const Changes& changes, Value Series::*stored,
                                   bool Series::*stored_flag, EntryRefs& out) const {
  out.clear();
  // Both in key order: a change replaces the stored value of its series.
  size_t i = 0;
  for (auto& [key, s] : series_) {
    if (i < changes.size() && changes[i].series == &s) {
      out.push_back({&key, &s, &changes[i].value});
      ++i;
    } else if (s.*stored_flag) {
      out.push_back({&key, &s, &(s.*stored)});
    }
  }
}

void CounterContinuity::checkpoint(const Topology& topology, StateWriter& out) {
  gather(topology);
  pending_exported_.clear();
  pending_published_.clear();
  for (auto& [key, s] : series_) {
    Value& exported = scratch_;
    exported = s.offset;
    if (s.now_pass == pass_) add_scaled(exported, s.now, 1.0);
    if (exported.empty()) continue;
    never_below(exported, s.floor);  // what a restart continues from was exported
    if (s.is_persisted && s.persisted == exported) continue;
    pending_exported_.push_back({&key, &s, exported});
  }
  for (auto& [key, s] : series_) {
    if (s.published.empty()) continue;
    if (s.is_persisted_published && s.persisted_published == s.published) continue;
    pending_published_.push_back({&key, &s, s.published});
  }
  pending_stored_ = stored_;
  legacy_pending_ = false;
  pending_base_ = false;
  if (pending_exported_.empty() && pending_published_.empty() && legacy_keys_.empty()) return;
  ScopedStateWriter scoped(out, state_scope(kOwner, kGlobalPartition));
  bool rebase = !legacy_keys_.empty() || !stored_.base || stored_.deltas >= kMaxDeltas;
  if (!rebase) {  // a delta, unless it would make the deltas outweigh the base
    segment_.clear();
    refs_of(pending_exported_, exported_refs_);
    refs_of(pending_published_, published_refs_);
    put_segment(segment_, exported_refs_, published_refs_, /*base=*/false);
    rebase = stored_.delta_bytes + segment_.size() >
             kDeltaBytesPerBase * std::max(stored_.base_bytes, kMinBaseBytes);
  }
  std::string key;
  if (!rebase) {
    byte_codec::numbered_key(key, kDeltaPrefix, stored_.deltas, kDeltaDigits);
    scoped.put(key, segment_);
    pending_stored_.deltas = stored_.deltas + 1;
    pending_stored_.delta_bytes = stored_.delta_bytes + segment_.size();
    return;
  }
  // A base: every value as it is after this checkpoint.
  refs_after(pending_exported_, &Series::persisted, &Series::is_persisted, exported_refs_);
  refs_after(pending_published_, &Series::persisted_published, &Series::is_persisted_published,
             published_refs_);
  for (auto& [key, s] : series_) s.pending_position = kNoPosition;
  segment_.clear();
  put_segment(segment_, exported_refs_, published_refs_, /*base=*/true);
  scoped.put(kBaseKey, segment_);
  for (uint32_t n = 0; n < stored_.deltas; ++n) {
    byte_codec::numbered_key(key, kDeltaPrefix, n, kDeltaDigits);
    scoped.remove(key);
  }
  for (const std::string& legacy : legacy_keys_) scoped.remove(legacy);
  legacy_pending_ = true;
  pending_stored_ = Stored{true, 0, segment_.size(), 0};
  pending_base_ = true;
}

void CounterContinuity::committed() {
  for (Change& c : pending_exported_) {
    c.series->persisted = std::move(c.value);
    c.series->is_persisted = true;
  }
  for (Change& c : pending_published_) {
    c.series->persisted_published = std::move(c.value);
    c.series->is_persisted_published = true;
  }
  pending_exported_.clear();
  pending_published_.clear();
  stored_ = pending_stored_;
  if (legacy_pending_) legacy_keys_.clear();
  legacy_pending_ = false;
  if (pending_base_) {  // the positions later deltas name series by
    for (auto& [key, s] : series_) s.base_position = s.pending_position;
  }
  pending_base_ = false;
}

void CounterContinuity::published() {
  for (auto& [key, s] : series_) {
    if (s.collected_pass == collect_pass_) {
      s.published = s.collected;
    } else {
      s.published.clear();
    }
  }
  ++collect_pass_;  // published once
}

Status CounterContinuity::roll_back_to_published(StateReader& in, StateWriter& out) {
  ScopedStateReader reader(in, state_scope(kOwner, kGlobalPartition));
  ScopedStateWriter writer(out, state_scope(kOwner, kGlobalPartition));
  // Removes first: a series first counted after the last publish goes (the batch applies in
  // order, so a key removed and then put again keeps the put).
  for (std::string_view prefix : {kCounterPrefix, kHistogramPrefix}) {
    auto removed = reader.scan(prefix, [&](std::string_view key, std::string_view) {
      writer.remove(key);
      return Status{};
    });
    if (!removed) return removed;
  }
  const std::string published_counters =
      std::string(kPublishedPrefix) + std::string(kCounterPrefix);
  const std::string published_histograms =
      std::string(kPublishedPrefix) + std::string(kHistogramPrefix);
  for (const std::string& prefix : {published_counters, published_histograms}) {
    auto copied = reader.scan(prefix, [&](std::string_view key, std::string_view value) {
      writer.put(key.substr(kPublishedPrefix.size()), value);
      return Status{};
    });
    if (!copied) return copied;
  }
  // Formats 2 and 3: a new base whose exported values are the published ones; the deltas go.
  std::map<std::string, std::string> published;  // series -> its entry, whole
  auto keep_published = [&](bool is_published, const StoredEntry& e) {
    if (!is_published) return;
    std::string& entry = published[std::string(e.series)];
    entry.clear();
    put_whole_entry(entry, e.series, e.help, e.histogram, e.bounds, e.value);
  };
  bool any = false;
  std::vector<std::string> deltas;
  SegmentReader segment_reader;
  auto segments = scan_segments(
      reader, [&](std::string_view key, std::string_view bytes, std::optional<uint32_t> delta) {
        any = true;
        if (delta) deltas.emplace_back(key);
        return segment_reader.read(key, bytes, !delta, keep_published);
      });
  if (!segments) return segments;
  if (!any) return {};
  std::string segment;
  byte_codec::put_u8(segment, kSegmentVersion);
  for (int list = 0; list < 2; ++list) {  // exported, then published: the same values
    byte_codec::put_var(segment, published.size());
    for (const auto& [series, entry] : published) segment += entry;
  }
  writer.put(kBaseKey, segment);
  for (const std::string& key : deltas) writer.remove(key);
  return {};
}

void CounterContinuity::collect(const Topology& topology, MetricsWriter& out,
                                const std::function<void()>& between) const {
  // The Topology's totals per series first: the exported value is total + offset, never below
  // what was exported before. Remembered for published().
  gather(topology);
  const uint64_t pass = ++collect_pass_;
  for (auto& [key, s] : series_) {
    if (s.now_pass != pass_) continue;
    s.collected = s.now;
    add_scaled(s.collected, s.offset, 1.0);
    never_below(s.collected, s.floor);
    s.collected_pass = pass;
  }
  ContinuedWriter writer(out, [&](const std::string& key) {
    const auto it = index_.find(key);
    if (it == index_.end()) return std::pair<const Value*, bool>(nullptr, false);
    Series& s = *it->second;
    const bool first = s.seen_pass != pass;
    s.seen_pass = pass;
    return std::pair<const Value*, bool>(s.collected_pass == pass ? &s.collected : nullptr, first);
  });
  topology.collect_counts(writer);
  between();
  topology.collect(writer);
  // Series whose partitions all left: the instance still exports what it counted.
  std::string family;
  std::vector<LabelPair> labels;
  std::vector<uint64_t> counts;
  for (auto& [key, s] : series_) {
    if (all_zero(s.offset) || s.seen_pass == pass) continue;
    if (s.histogram && s.offset.size() != s.bounds.size() + 2) continue;
    if (s.family != family) {
      family = s.family;
      out.family(s.family, s.help, s.histogram ? MetricType::histogram : MetricType::counter);
    }
    labels.clear();
    for (const auto& [k, v] : s.labels) labels.emplace_back(k, v);
    s.collected = s.offset;
    never_below(s.collected, s.floor);
    s.collected_pass = pass;
    const Value& v = s.collected;
    if (!s.histogram) {
      out.add(labels, v[0]);
      continue;
    }
    bucket_counts_of(v, counts);
    out.add_histogram(labels, s.bounds, counts, v.back());
  }
}

}  // namespace sp
