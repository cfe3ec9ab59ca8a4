#include "operators/window_operator.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "operators/byte_codec.h"
#include "operators/state_version.h"
#include "operators/window_record_format.h"

namespace sp {
namespace {

// 2: a partition's record ends with the watermark its windows were emitted through (issue #15:
// a moved partition neither re-emits nor skips windows). 3: partition records packed (varints,
// non-zero measures only, panes grouped by brand+channel with delta starts: a quarter of the
// bytes, issue #20); the global record is unchanged. 4: a partition's panes split into one key
// per pane start, written only when they changed (issue #20: an hourly window rewrote its whole
// hour of panes per busy partition and checkpoint); the `panes` key keeps the header alone.
// 1 to 3 are still read, and written again as format 4 at the next checkpoint. A `pane/<start>/<n>`
// delta (its own version, kDeltaVersion) holds the changed panes of a start stored in format 4.
// A start's base (kSliceVersion 5) and its deltas (2) carry a generation: a new base takes the
// next one and leaves the older deltas in place, skipped by a restore and overwritten by the new
// base's own, instead of removing them with a key each (issue #20); the start's expiry removes
// every delta key it wrote. Bases of version 4 and deltas of version 1 are still read.
constexpr uint8_t kPartitionVersion = 4;
constexpr uint8_t kSliceVersion = 5;
constexpr uint8_t kSliceVersionUngenerationed = 4;
constexpr uint8_t kDeltaVersion = 2;
constexpr uint8_t kDeltaVersionUngenerationed = 1;
constexpr uint8_t kGlobalVersion = 3;
constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
constexpr std::string_view kPanePrefix = "pane/";
constexpr uint64_t kStartBias = uint64_t{1} << 63;  // key order = start order, negatives included

// `pane/<16 hex digits>`: the start, biased so that the keys sort as the starts do.
void pane_key(int64_t start, std::string& out) {
  out.assign(kPanePrefix);
  byte_codec::put_hex(out, static_cast<uint64_t>(start) ^ kStartBias, 16);
}

// `pane/<start>/<4 hex digits>`: delta n of a start (in key order after its base and before the
// next start's keys).
void delta_key(int64_t start, uint32_t n, std::string& out) {
  pane_key(start, out);
  out.push_back('/');
  byte_codec::put_hex(out, n, 4);
}

struct PaneKey {
  int64_t start = 0;
  std::optional<uint32_t> delta;  // none: the base key
};

std::optional<PaneKey> parse_pane_key(std::string_view key) {
  if (key.substr(0, kPanePrefix.size()) != kPanePrefix) return std::nullopt;
  const std::string_view rest = key.substr(kPanePrefix.size());
  const auto biased = byte_codec::parse_hex(rest.substr(0, 16), 16);
  if (!biased) return std::nullopt;
  PaneKey out{static_cast<int64_t>(*biased ^ kStartBias), std::nullopt};
  if (rest.size() == 16) return out;
  const auto n = rest[16] == '/' ? byte_codec::parse_hex(rest.substr(17), 4) : std::nullopt;
  if (!n) return std::nullopt;
  out.delta = static_cast<uint32_t>(*n);
  return out;
}

// Pane format version 1 predates web visits in the window aggregate: they are not stored.
constexpr MeasureSet kPaneMeasures = MeasureSet::all().without(Measure::web_visits);

bool get_aggregate(byte_codec::Reader& in, WindowAggregate& a) {
  if (!a.decode_dense(in, kPaneMeasures)) return false;
  auto hll = HyperLogLog::deserialize(in.rest());
  if (!hll) {
    in.fail();
    return false;
  }
  a.actors = std::move(*hll);
  return true;
}

Status corrupt(std::string_view what) {
  return make_error(ErrorKind::fatal,
                    "window operator: corrupt snapshot (" + std::string(what) + ")");
}

}  // namespace

WindowOperator::WindowOperator(WindowSpec spec, Vocabulary vocabulary, bool engagement_rate_source)
    : spec_(std::move(spec)),
      vocabulary_(std::move(vocabulary)),
      engagement_rate_source_(engagement_rate_source),
      size_ms_(std::max<int64_t>(spec_.size.count(), 1)),
      advance_ms_(spec_.kind == WindowKind::tumbling || spec_.advance.count() <= 0
                      ? size_ms_
                      : spec_.advance.count()),
      pane_ms_(std::gcd(size_ms_, advance_ms_)),
      grace_ms_(std::max<int64_t>(spec_.grace.count(), 0)),
      channel_count_(std::max<size_t>(vocabulary_.channel_count(), 1)),
      watermark_(to_epoch_ms(kMinEventTime)),
      earliest_due_(kNever) {}

int64_t WindowOperator::last_window_start(int64_t t) const {
  return floor_div(t, advance_ms_) * advance_ms_;
}

int64_t WindowOperator::first_window_start(int64_t t) const {
  // Smallest aligned start s with s > t - size.
  return floor_div(t - size_ms_, advance_ms_) * advance_ms_ + advance_ms_;
}

int64_t WindowOperator::next_close_after(int64_t pane_start, int64_t watermark) const {
  const int64_t first_close = first_window_start(pane_start) + size_ms_ + grace_ms_;
  if (first_close > watermark) return first_close;
  const int64_t steps = floor_div(watermark - first_close, advance_ms_) + 1;
  return first_close + steps * advance_ms_;
}

int64_t WindowOperator::close_boundary(int64_t wm) const {
  const int64_t lag = size_ms_ + grace_ms_;
  if (wm < std::numeric_limits<int64_t>::min() + lag + advance_ms_) return wm;  // no overflow
  return floor_div(wm - lag, advance_ms_) * advance_ms_ + lag;
}

WindowOperator::Pane& WindowOperator::pane_at(PartitionState& state, uint32_t bc,
                                              int64_t pane_start, bool& created) {
  const size_t index = series_index(bc);
  if (index >= state.series.size()) state.series.resize(index + 1);
  PaneSeries& series = state.series[index];
  // Newest first: in-order events hit the last pane (or append after it).
  size_t i = series.starts.size();
  while (i > 0 && series.starts[i - 1] > pane_start) --i;
  if (i > 0 && series.starts[i - 1] == pane_start) {
    created = false;
    return series.panes[i - 1];
  }
  created = true;
  series.starts.insert(series.starts.begin() + static_cast<std::ptrdiff_t>(i), pane_start);
  return *series.panes.emplace(series.panes.begin() + static_cast<std::ptrdiff_t>(i));
}

void WindowOperator::process(const ProcessContext& ctx, const Event& event) {
  const int64_t t = to_epoch_ms(event.time);
  const int64_t last_start = last_window_start(t);
  if (t >= last_start + size_ms_) return;  // advance > size: t falls between sampled windows
  PartitionState& state = partitions_.get_or_create(ctx.partition);
  // What was emitted for this partition decides; the context's watermark can only be ahead of
  // it if the runner has not delivered on_watermark yet.
  const int64_t watermark =
      std::max(state.closed_through.value_or(watermark_), to_epoch_ms(ctx.pipeline_watermark));
  state.unsaved = true;
  if (last_start + size_ms_ + grace_ms_ <= watermark) {
    ++state.late_events;  // every window holding t already closed (Flink drops these too)
    return;
  }
  const int64_t pane_start = floor_div(t, pane_ms_) * pane_ms_;
  bool created = false;
  Pane& pane = pane_at(state, pack(event.brand, event.channel), pane_start, created);
  if (created) {
    earliest_due_ = std::min(earliest_due_, next_close_after(pane_start, watermark_));
    pane.overflow = !state.stored.contains(pane_start);  // a new start: written whole, no log
  }
  pane.aggregate.Measures::add(event, ctx.derived);
  if (event.has_actor && pane.aggregate.actors.add(event.actor_hash)) {
    note_fresh(pane, event.actor_hash);
  }
  pane.dirty = true;
  pane.unsaved = true;
}

void WindowOperator::note_fresh(Pane& pane, uint64_t hash) {
  if (pane.overflow) return;
  if (pane.fresh.size() < kFreshLimit) {
    pane.fresh.push_back(hash);  // capacity kept across checkpoints: no allocation per event
    return;
  }
  pane.overflow = true;
  pane.fresh.clear();
}

WindowAggregate WindowOperator::merge_window(int64_t window_start, uint32_t bc) const {
  WindowAggregate merged;
  // Partition-major, then pane order: the float sums come out identical on every run.
  const size_t index = series_index(bc);
  const int64_t window_end = window_start + size_ms_;
  for (const auto& [partition, state] : partitions_) {
    if (index >= state.series.size()) continue;
    const PaneSeries& series = state.series[index];
    auto it = std::lower_bound(series.starts.begin(), series.starts.end(), window_start);
    for (; it != series.starts.end() && *it < window_end; ++it) {
      merged.merge(series.panes[static_cast<size_t>(it - series.starts.begin())].aggregate);
    }
  }
  return merged;
}

void WindowOperator::emit(int64_t window_start, uint32_t bc, const WindowAggregate& a, bool final,
                          Emitter& out) {
  const std::string& brand = vocabulary_.brand_name(brand_of(bc));
  const std::string& channel = vocabulary_.channel_name(channel_of(bc));
  const EventTime start = from_epoch_ms(window_start);
  const EventTime end = from_epoch_ms(window_start + size_ms_);

  OutputRecord record;
  record.topic = OutputRecord::Topic::windows;
  record.key.reserve(brand.size() + channel.size() + spec_.name.size() + 28);
  record.key.append(brand).append("|").append(channel).append("|").append(spec_.name).append("|");
  append_rfc3339_ms(record.key, start);

  std::string& v = record.value;
  v.reserve(512);
  v += "{\"window\":";
  append_json_string(v, spec_.name);
  v += ",\"kind\":";
  v += spec_.kind == WindowKind::tumbling ? "\"tumbling\"" : "\"hopping\"";
  v += ",\"brand\":";
  append_json_string(v, brand);
  v += ",\"channel\":";
  append_json_string(v, channel);
  v += ",\"start\":\"";
  append_rfc3339_ms(v, start);
  v += "\",\"end\":\"";
  append_rfc3339_ms(v, end);
  v += "\",\"counts\":{";
  bool first = true;
  for (size_t i = 0; i < kEventTypeCount; ++i) {
    if (a.interactions[i] == 0) continue;
    if (!first) v += ',';
    first = false;
    append_json_string(v, to_string(static_cast<EventType>(i)));
    v += ':';
    append_json_int(v, a.interactions[i]);
  }
  v += "},\"impressions\":";
  append_json_int(v, a.impressions);
  v += ",\"engagements\":";
  append_json_int(v, a.engagements);
  v += ",\"engagement_rate\":";
  if (a.impressions == 0) {
    v += "null";
  } else {
    append_json_double(v, static_cast<double>(a.engagements) / static_cast<double>(a.impressions));
  }
  v += ",\"reach\":";
  append_json_int(v, a.reach);
  v += ",\"opinion_weight\":";
  append_json_double(v, a.opinion_weight);
  v += ",\"positive\":";
  append_json_double(v, a.positive);
  v += ",\"negative\":";
  append_json_double(v, a.negative);
  v += ",\"emv\":";
  append_json_double(v, a.emv);
  v += ",\"leads\":";
  append_json_int(v, a.leads);
  v += ",\"lead_value\":";
  append_json_double(v, a.lead_value);
  v += ",\"unique_actors\":";
  append_json_int(v, std::llround(a.actors.estimate()));
  v += final ? ",\"final\":true}" : ",\"final\":false}";

  ++records_total_;
  out.emit(std::move(record));
}

void WindowOperator::on_watermark(EventTime watermark, Emitter& out) {
  const int64_t wm = to_epoch_ms(watermark);
  if (wm <= watermark_) return;  // watermarks are monotonic; a repeat changes nothing
  const int64_t previous = watermark_;
  watermark_ = wm;
  // A partition's windows are emitted through wm from now on, unless it is ahead of wm.
  auto settle = [&] {
    for (auto& [partition, state] : partitions_) {
      if (state.closed_through && *state.closed_through <= wm) {
        state.closed_through.reset();
        state.unsaved = true;
      }
    }
  };
  if (wm < earliest_due_) return settle();

  // Windows closing now, per partition: closed_through < start + size + grace <= wm.
  const int64_t hi = floor_div(wm - size_ms_ - grace_ms_, advance_ms_) * advance_ms_;
  std::set<WindowKey> closing;  // ordered: records leave in (start, brand, channel) order
  for (auto& [partition, state] : partitions_) {
    const int64_t closed = state.closed_through.value_or(previous);
    const int64_t lo =
        floor_div(closed - size_ms_ - grace_ms_, advance_ms_) * advance_ms_ + advance_ms_;
    if (lo <= hi) {
      for (size_t index = 0; index < state.series.size(); ++index) {
        const uint32_t bc = brand_channel_of(index);
        for (const int64_t pane_start : state.series[index].starts) {
          const int64_t from = std::max(lo, first_window_start(pane_start));
          const int64_t to = std::min(hi, last_window_start(pane_start));
          for (int64_t s = from; s <= to; s += advance_ms_) closing.emplace(s, bc);
          // Its header says what was emitted (a pane of a hopping window outlives the windows
          // that close now: without this an idle partition's stored header stayed behind, and
          // a next owner would emit those windows again).
          if (from <= to) state.unsaved = true;
        }
      }
    }
  }
  for (const auto& [start, bc] : closing) {
    const WindowAggregate merged = merge_window(start, bc);
    if (engagement_rate_source_) {
      auto [rate, fresh] = rates_.try_emplace(bc);
      if (fresh || start >= rate->second.window_start) {
        rate->second = RateSample{start, merged.engagements, merged.impressions};
      }
    }
    emit(start, bc, merged, /*final=*/true, out);
  }
  settle();
  sweep();
}

void WindowOperator::sweep() {
  // A pane is needed until the last window containing it has closed.
  earliest_due_ = kNever;
  for (auto& [partition, state] : partitions_) {
    for (PaneSeries& series : state.series) {
      // Ascending starts: the panes no open window needs are a prefix.
      size_t expired = 0;
      while (expired < series.starts.size() &&
             last_window_start(series.starts[expired]) + size_ms_ + grace_ms_ <= watermark_) {
        ++expired;
      }
      if (expired > 0) {
        for (size_t i = 0; i < expired; ++i) note_stale(state, series.starts[i]);
        series.starts.erase(series.starts.begin(),
                            series.starts.begin() + static_cast<std::ptrdiff_t>(expired));
        series.panes.erase(series.panes.begin(),
                           series.panes.begin() + static_cast<std::ptrdiff_t>(expired));
      }
      if (!series.starts.empty()) {
        earliest_due_ =
            std::min(earliest_due_, next_close_after(series.starts.front(), watermark_));
      }
    }
  }
}

void WindowOperator::on_checkpoint(Emitter& out) {
  if (spec_.emit != EmitMode::update) return;
  std::set<WindowKey> changed;
  for (const auto& [partition, state] : partitions_) {
    for (size_t index = 0; index < state.series.size(); ++index) {
      const PaneSeries& series = state.series[index];
      for (size_t i = 0; i < series.starts.size(); ++i) {
        if (!series.panes[i].dirty) continue;
        const int64_t ps = series.starts[i];
        const int64_t closed = state.closed_through.value_or(watermark_);
        for (int64_t s = first_window_start(ps); s <= last_window_start(ps); s += advance_ms_) {
          if (s + size_ms_ + grace_ms_ > closed) changed.emplace(s, brand_channel_of(index));
        }
      }
    }
  }
  for (const auto& [start, bc] : changed) emit(start, bc, merge_window(start, bc), false, out);
  for (auto& [partition, state] : partitions_) {
    for (PaneSeries& series : state.series) {
      for (Pane& pane : series.panes) pane.dirty = false;
    }
  }
}

void WindowOperator::snapshot(PartitionId partition, StateWriter& writer) const {
  scratch_.clear();
  if (partition == kGlobalPartition) {
    encode_global(scratch_);
    writer.put("window", scratch_);
    return;
  }
  const PartitionState* state = partitions_.find(partition);
  encode_header(state, scratch_);
  if (state == nullptr) {
    writer.put("panes", scratch_);
    return;
  }
  state->pending_header.reset();  // a failed commit's header is compared afresh
  if (scratch_ != state->stored_header) {
    writer.put("panes", scratch_);
    state->pending_header = scratch_;
  }
  // The starts whose key is stale: those of unsaved panes, and those noted stale.
  starts_.assign(state->stale_starts.begin(), state->stale_starts.end());
  for (const PaneSeries& series : state->series) {
    for (size_t i = 0; i < series.panes.size(); ++i) {
      if (series.panes[i].unsaved) starts_.push_back(series.starts[i]);
    }
  }
  std::sort(starts_.begin(), starts_.end());
  starts_.erase(std::unique(starts_.begin(), starts_.end()), starts_.end());
  state->pending.clear();
  for (const int64_t start : starts_) {
    const auto found = state->stored.find(start);
    const StoredStart* was = found == state->stored.end() ? nullptr : &found->second;
    const bool stale = std::find(state->stale_starts.begin(), state->stale_starts.end(), start) !=
                       state->stale_starts.end();
    scratch_.clear();
    if (was != nullptr && !stale && was->deltas < kMaxDeltas &&
        encode_delta(*state, start, was->generation, scratch_) &&
        was->delta_bytes + scratch_.size() <= was->base_bytes) {
      delta_key(start, was->deltas, delta_key_);
      writer.put(delta_key_, scratch_);
      StoredStart next = *was;
      ++next.deltas;
      next.delta_bytes += scratch_.size();
      next.written = std::max(next.written, next.deltas);
      state->pending.emplace_back(start, next);
      continue;
    }
    pane_key(start, key_);
    scratch_.clear();
    // A new base takes the next generation; the deltas of the one before stay until overwritten.
    const uint64_t generation = was == nullptr ? 1 : was->generation + 1;
    const bool any = encode_slice(*state, start, generation, scratch_);
    if (any) {
      writer.put(key_, scratch_);
      state->pending.emplace_back(
          start, StoredStart{0, scratch_.size(), 0, generation, was == nullptr ? 0 : was->written});
      continue;
    }
    writer.remove(key_);
    for (uint32_t n = 0; was != nullptr && n < was->written; ++n) {
      delta_key(start, n, delta_key_);
      writer.remove(delta_key_);
    }
    state->pending.emplace_back(start, std::nullopt);
  }
}

const WindowOperator::Pane* WindowOperator::pane_of(const PaneSeries& series, int64_t start) {
  const auto it = std::lower_bound(series.starts.begin(), series.starts.end(), start);
  if (it == series.starts.end() || *it != start) return nullptr;
  return &series.panes[static_cast<size_t>(it - series.starts.begin())];
}

void WindowOperator::encode_entry_head(size_t series_index, const Pane& pane,
                                       std::string& out) const {
  const uint32_t bc = brand_channel_of(series_index);
  byte_codec::put_vstr(out, vocabulary_.brand_name(brand_of(bc)));
  byte_codec::put_vstr(out, vocabulary_.channel_name(channel_of(bc)));
  byte_codec::put_u8(out, pane.dirty ? 1 : 0);
  pane.aggregate.encode_packed(out, kPaneMeasures);
}

bool WindowOperator::encode_delta(const PartitionState& state, int64_t start, uint64_t generation,
                                  std::string& out) const {
  size_t count = 0;
  for (const PaneSeries& series : state.series) {
    const Pane* pane = pane_of(series, start);
    if (pane == nullptr || !pane->unsaved) continue;
    if (pane->overflow) return false;
    ++count;
  }
  if (count == 0) return false;
  byte_codec::put_u8(out, kDeltaVersion);
  byte_codec::put_var(out, generation);
  byte_codec::put_var(out, count);
  for (size_t index = 0; index < state.series.size(); ++index) {
    const Pane* pane = pane_of(state.series[index], start);
    if (pane == nullptr || !pane->unsaved) continue;
    encode_entry_head(index, *pane, out);
    hashes_.assign(pane->fresh.begin(), pane->fresh.end());
    std::sort(hashes_.begin(), hashes_.end());  // the bytes depend on the state only
    byte_codec::put_var(out, hashes_.size());
    for (const uint64_t h : hashes_) byte_codec::put_u64(out, h);
  }
  return true;
}

void WindowOperator::encode_global(std::string& out) const {
  byte_codec::put_u8(out, kGlobalVersion);
  byte_codec::put_i64(out, watermark_);
  byte_codec::put_u64(out, records_total_);
  byte_codec::put_u64(out, rates_.size());
  for (const auto& [bc, r] : rates_) {
    // Names, not indexes: a reordered brand/channel list must not move state between labels.
    byte_codec::put_str(out, vocabulary_.brand_name(brand_of(bc)));
    byte_codec::put_str(out, vocabulary_.channel_name(channel_of(bc)));
    byte_codec::put_i64(out, r.window_start);
    byte_codec::put_i64(out, r.engagements);
    byte_codec::put_i64(out, r.impressions);
  }
}

void WindowOperator::encode_header(const PartitionState* state, std::string& out) const {
  byte_codec::put_u8(out, kPartitionVersion);
  byte_codec::put_var(out, state == nullptr ? 0 : state->late_events);
  // Where the windows were emitted through, as the close time of the last one closed: the same
  // windows as the watermark itself (close_boundary()), but the same bytes until the next window
  // closes (a watermark moved on rewrote the key of every busy partition each checkpoint).
  byte_codec::put_svar(
      out,
      close_boundary(state == nullptr ? watermark_ : state->closed_through.value_or(watermark_)));
}

bool WindowOperator::encode_slice(const PartitionState& state, int64_t start, uint64_t generation,
                                  std::string& out) const {
  // Series in index order: the bytes depend on the state only.
  size_t count = 0;
  for (const PaneSeries& series : state.series) count += pane_of(series, start) != nullptr ? 1 : 0;
  if (count == 0) return false;
  byte_codec::put_u8(out, kSliceVersion);
  byte_codec::put_var(out, generation);
  byte_codec::put_var(out, count);
  for (size_t index = 0; index < state.series.size(); ++index) {
    const Pane* pane = pane_of(state.series[index], start);
    if (pane == nullptr) continue;
    encode_entry_head(index, *pane, out);
    pane->aggregate.actors.serialize(out);
  }
  return true;
}

void WindowOperator::note_stale(PartitionState& state, int64_t start) {
  state.unsaved = true;
  // Few distinct starts expire between two checkpoints; each series reports the same ones.
  if (std::find(state.stale_starts.begin(), state.stale_starts.end(), start) ==
      state.stale_starts.end()) {
    state.stale_starts.push_back(start);
  }
}

Status WindowOperator::restore(PartitionId partition, StateReader& reader) {
  auto bytes = reader.get(partition == kGlobalPartition ? "window" : "panes");
  if (!bytes) return tl::unexpected(bytes.error());
  if (!*bytes) {
    if (partition != kGlobalPartition) drop(partition);
    return {};
  }
  return decode(partition, **bytes, reader);
}

std::optional<uint32_t> WindowOperator::resolve(std::string_view brand, std::string_view channel,
                                                StateReader& reader) const {
  const auto b = vocabulary_.find_brand(brand);
  const auto c = vocabulary_.find_channel(channel);
  if (!b) {
    reader.note_dropped(DroppedKind::brand, brand);
  } else if (!c) {
    reader.note_dropped(DroppedKind::channel, channel);
  }
  if (!b || !c) return std::nullopt;
  return pack(*b, *c);
}

Status WindowOperator::decode(PartitionId partition, std::string_view bytes, StateReader& reader) {
  byte_codec::Reader in(bytes);
  const uint8_t version = in.u8();
  if (!in.ok()) return corrupt("version");
  const uint8_t newest = partition == kGlobalPartition ? kGlobalVersion : kPartitionVersion;
  if (version < 1 || version > newest) {
    return unreadable_format("window operator '" + spec_.name + "': state key '" +
                                 (partition == kGlobalPartition ? "window" : "panes") + "'",
                             version, 1, newest);
  }
  // A brand or channel removed from the configuration: its entries are dropped (counted once per
  // entry), never folded into `other`. False for those and on a short read.
  auto read_bc = [&](uint32_t& bc) {
    const std::string_view brand = in.str();
    const std::string_view channel = in.str();
    if (!in.ok()) return false;
    const auto known = resolve(brand, channel, reader);
    if (known) bc = *known;
    return known.has_value();
  };
  if (partition == kGlobalPartition) {
    const int64_t watermark = in.i64();
    const uint64_t records = in.u64();
    const uint64_t n = in.u64();
    if (!in.ok()) return corrupt("global header");
    std::map<uint32_t, RateSample> rates;
    for (uint64_t i = 0; i < n && in.ok(); ++i) {
      uint32_t bc = 0;
      const bool known = read_bc(bc);
      RateSample r;
      r.window_start = in.i64();
      r.engagements = in.i64();
      r.impressions = in.i64();
      if (known && in.ok()) rates[bc] = r;
    }
    if (!in.ok()) return corrupt("rates");
    if (!in.done()) return corrupt("trailing bytes");
    watermark_ = std::max(watermark_, watermark);
    records_total_ = records;
    rates_ = std::move(rates);
    return {};
  }
  if (version >= 4) return decode_split(partition, in, reader);
  if (version == 3) return decode_packed(partition, in, reader);
  PartitionState state;  // unsaved: rewritten in the current format at the next checkpoint
  state.late_events = in.u64();
  const uint64_t n = in.u64();
  if (!in.ok()) return corrupt("partition header");
  for (uint64_t i = 0; i < n; ++i) {
    const int64_t pane_start = in.i64();
    uint32_t bc = 0;
    const bool known = read_bc(bc);
    const uint8_t dirty = in.u8();
    Pane pane;
    if (!in.ok() || !get_aggregate(in, pane.aggregate)) return corrupt("pane");
    if (!known) continue;
    bool created = false;
    Pane& into = pane_at(state, bc, pane_start, created);
    if (created) {
      into.aggregate = std::move(pane.aggregate);
      into.dirty = dirty != 0;
    } else {
      into.aggregate.merge(pane.aggregate);  // cannot happen with exact names; harmless
    }
    // Panes of windows this instance already closed are freed at the next watermark.
    earliest_due_ = std::min(earliest_due_, first_window_start(pane_start) + size_ms_ + grace_ms_);
  }
  if (version >= 2) {
    state.closed_through = in.i64();
    if (!in.ok()) return corrupt("closed_through");
  }
  if (!in.done()) return corrupt("trailing bytes");
  partitions_.assign(partition, std::move(state));
  return {};
}

Status WindowOperator::decode_packed(PartitionId partition, byte_codec::Reader& in,
                                     StateReader& reader) {
  PartitionState state;  // unsaved, its panes too: written as format 4 at the next checkpoint
  state.late_events = in.var();
  state.closed_through = in.svar();
  const uint64_t series_count = in.var();
  if (!in.ok()) return corrupt("partition header");
  for (uint64_t k = 0; k < series_count; ++k) {
    const std::string_view brand = in.vstr();
    const std::string_view channel = in.vstr();
    const uint64_t panes = in.var();
    if (!in.ok()) return corrupt("series");
    const auto known = resolve(brand, channel, reader);
    int64_t pane_start = 0;
    for (uint64_t i = 0; i < panes; ++i) {
      pane_start += in.svar();
      if (auto s = read_pane(in, state, known, pane_start); !s) return s;
    }
  }
  if (!in.done()) return corrupt("trailing bytes");
  partitions_.assign(partition, std::move(state));
  return {};
}

Status WindowOperator::decode_split(PartitionId partition, byte_codec::Reader& in,
                                    StateReader& reader) {
  PartitionState state;
  state.unsaved = false;  // as stored
  state.late_events = in.var();
  state.closed_through = in.svar();
  if (!in.ok()) return corrupt("partition header");
  if (!in.done()) return corrupt("trailing bytes");
  // Emitted through the watermark restored for the operator (the same windows closed): the same
  // as following it, which is also how an uninterrupted run holds it (its stored keys then
  // compare equal).
  if (close_boundary(*state.closed_through) == close_boundary(watermark_))
    state.closed_through.reset();
  // Key order: each start's base, then its deltas in the order they were written. Beside a base
  // with a generation, the deltas of that generation (numbered from 0 on); the others are an
  // older base's, skipped (and removed with the start). Beside a base of version 4, every delta.
  // A start's deltas follow its base in key order: the last base read is theirs, if any.
  std::optional<std::pair<int64_t, uint8_t>> last_base;  // start, version
  auto scanned = reader.scan(kPanePrefix, [&](std::string_view key, std::string_view bytes) {
    const auto parsed = parse_pane_key(key);
    if (!parsed) return corrupt("pane key '" + std::string(key) + "'");
    StoredStart& stored = state.stored[parsed->start];
    const uint8_t version = bytes.empty() ? 0 : static_cast<uint8_t>(bytes[0]);
    if (!parsed->delta) {
      stored.base_bytes = bytes.size();
      last_base.emplace(parsed->start, version);
      // A base without a generation is rewritten with one before any delta is written for it.
      if (version == kSliceVersionUngenerationed) note_stale(state, parsed->start);
      return decode_slice(state, parsed->start, bytes, stored.generation, reader);
    }
    stored.written = std::max(stored.written, *parsed->delta + 1);
    if (last_base == std::pair<int64_t, uint8_t>(parsed->start, kSliceVersion)) {
      if (version != kDeltaVersion) return Status{};  // written before the base
      byte_codec::Reader in(bytes);
      in.u8();
      const uint64_t generation = in.var();
      if (!in.ok()) return corrupt("pane delta generation");
      if (generation != stored.generation) return Status{};  // an older base's
      if (*parsed->delta != stored.deltas) return corrupt("pane key '" + std::string(key) + "'");
    } else if (version != kDeltaVersionUngenerationed) {
      // Beside no base or one of version 4 (never written so): skipped, its start rewritten
      // whole and every delta key of it removed when it expires.
      if (version == kDeltaVersion) {
        note_stale(state, parsed->start);
        return Status{};
      }
      return Status{unreadable_format("window operator '" + spec_.name + "': a pane delta key",
                                      version, kDeltaVersionUngenerationed, kDeltaVersion)};
    }
    // A delta without its base (never written so) makes delta_bytes exceed base_bytes: the next
    // checkpoint of the start rewrites it whole.
    stored.deltas = std::max(stored.deltas, *parsed->delta + 1);
    stored.delta_bytes += bytes.size();
    return decode_delta(state, parsed->start, bytes, reader);
  });
  if (!scanned) return scanned;
  partitions_.assign(partition, std::move(state));
  return {};
}

Status WindowOperator::read_entries(PartitionState& state, int64_t start, std::string_view bytes,
                                    uint8_t version, uint8_t older, uint64_t& generation,
                                    std::string_view what, StateReader& reader,
                                    const EntryReader& entry) {
  byte_codec::Reader in(bytes);
  const uint8_t stored_version = in.u8();
  if (in.ok() && stored_version != version && stored_version != older) {
    return unreadable_format(
        "window operator '" + spec_.name + "': a " + std::string(what) + " key", stored_version,
        older, version);
  }
  generation = stored_version == version ? in.var() : 0;
  const uint64_t count = in.var();
  if (!in.ok()) return corrupt(std::string(what) + " header");
  for (uint64_t k = 0; k < count; ++k) {
    const std::string_view brand = in.vstr();
    const std::string_view channel = in.vstr();
    if (!in.ok()) return corrupt(std::string(what) + " names");
    const auto known = resolve(brand, channel, reader);
    if (!known) note_stale(state, start);  // the dropped series leaves the stored value
    if (auto s = entry(in, known); !s) return s;
  }
  if (!in.done()) return corrupt("trailing bytes");
  return {};
}

Status WindowOperator::decode_slice(PartitionState& state, int64_t start, std::string_view bytes,
                                    uint64_t& generation, StateReader& reader) {
  return read_entries(state, start, bytes, kSliceVersion, kSliceVersionUngenerationed, generation,
                      "pane", reader,
                      [&](byte_codec::Reader& in, std::optional<uint32_t> known) -> Status {
                        Pane* pane = nullptr;
                        if (auto s = read_pane(in, state, known, start, &pane); !s) return s;
                        if (pane != nullptr) pane->unsaved = false;  // as stored
                        return {};
                      });
}

Status WindowOperator::decode_delta(PartitionState& state, int64_t start, std::string_view bytes,
                                    StateReader& reader) {
  uint64_t generation = 0;
  return read_entries(
      state, start, bytes, kDeltaVersion, kDeltaVersionUngenerationed, generation, "pane delta",
      reader, [&](byte_codec::Reader& in, std::optional<uint32_t> known) -> Status {
        const uint8_t dirty = in.u8();
        Measures measures;
        if (!in.ok() || !measures.decode_packed(in, kPaneMeasures)) return corrupt("pane delta");
        const uint64_t n = in.var();
        if (!in.ok() || n > in.remaining() / 8) return corrupt("pane delta actors");
        bool created = false;
        Pane* pane = known ? &pane_at(state, *known, start, created) : nullptr;
        for (uint64_t i = 0; i < n; ++i) {
          const uint64_t h = in.u64();
          if (pane != nullptr) pane->aggregate.actors.add(h);
        }
        if (!in.ok()) return corrupt("pane delta actors");
        if (pane == nullptr) return {};  // dropped: read past it
        static_cast<Measures&>(pane->aggregate) = measures;
        pane->dirty = dirty != 0;
        pane->unsaved = false;  // as stored
        earliest_due_ = std::min(earliest_due_, first_window_start(start) + size_ms_ + grace_ms_);
        return {};
      });
}

Status WindowOperator::read_pane(byte_codec::Reader& in, PartitionState& state,
                                 std::optional<uint32_t> brand_channel, int64_t start,
                                 Pane** placed) {
  const uint8_t dirty = in.u8();
  Pane pane;
  if (!in.ok() || !pane.aggregate.decode_packed(in, kPaneMeasures)) return corrupt("pane");
  auto hll = HyperLogLog::deserialize(in.rest());
  if (!hll) return corrupt("pane actors");
  if (!brand_channel) return {};  // dropped: read past it
  pane.aggregate.actors = std::move(*hll);
  bool created = false;
  Pane& into = pane_at(state, *brand_channel, start, created);
  if (!created) return corrupt("pane repeated");
  into.aggregate = std::move(pane.aggregate);
  into.dirty = dirty != 0;
  // Panes of windows this instance already closed are freed at the next watermark.
  earliest_due_ = std::min(earliest_due_, first_window_start(start) + size_ms_ + grace_ms_);
  if (placed != nullptr) *placed = &into;
  return {};
}

void WindowOperator::drop(PartitionId partition) { partitions_.erase(partition); }

bool WindowOperator::needs_snapshot(PartitionId partition, bool /*touched*/) const {
  return partitions_.unsaved(partition);
}

void WindowOperator::saved() {
  for (auto& [partition, state] : partitions_) {
    if (!state.unsaved) continue;  // every unsaved pane's partition is unsaved
    state.unsaved = false;
    state.stale_starts.clear();
    for (const auto& [start, stored] : state.pending) {
      if (stored) {
        state.stored[start] = *stored;
      } else {
        state.stored.erase(start);
      }
    }
    state.pending.clear();
    if (state.pending_header) {
      state.stored_header = std::move(*state.pending_header);
      state.pending_header.reset();
    }
    for (PaneSeries& series : state.series) {
      for (Pane& pane : series.panes) {
        pane.unsaved = false;
        pane.overflow = false;
        // A pane that had no change to log (no new actor, or past kFreshLimit) gives its log's
        // memory back: only the panes events go to keep one (up to 2 KiB each), not the hour of
        // older panes an hourly window holds.
        if (pane.fresh.empty()) {
          std::vector<uint64_t>().swap(pane.fresh);
        } else {
          pane.fresh.clear();
        }
      }
    }
  }
}

uint64_t WindowOperator::late_events() const {
  uint64_t total = 0;
  for (const auto& [partition, state] : partitions_) total += state.late_events;
  return total;
}

size_t WindowOperator::pane_count() const {
  size_t n = 0;
  for (const auto& [partition, state] : partitions_) {
    for (const PaneSeries& series : state.series) n += series.starts.size();
  }
  return n;
}

void WindowOperator::collect(MetricsWriter& out) const {
  const LabelPair window_label[] = {{"window", spec_.name}};
  out.family("socialpulse_late_events_total", "Events that arrived after all their windows closed",
             MetricType::counter);
  out.add(window_label, static_cast<double>(late_events()));
  out.family("socialpulse_window_records_total", "Window records emitted", MetricType::counter);
  out.add({}, static_cast<double>(records_total_));
  if (!engagement_rate_source_) return;
  out.family("socialpulse_engagement_rate", "Engagements per impression in the last closed window",
             MetricType::gauge);
  // The last closed window: the latest start with start + size + grace <= watermark. A pair whose
  // sample is older had no event in it, so no impressions: absent, not the rate of a window
  // long gone (issue #17: a quiet channel showed a stale rate).
  const int64_t last_closed =
      floor_div(watermark_ - size_ms_ - grace_ms_, advance_ms_) * advance_ms_;
  for (const auto& [bc, r] : rates_) {
    if (r.window_start != last_closed) continue;
    if (r.impressions == 0) continue;  // SPEC 2: absent when impressions = 0
    const LabelPair labels[] = {{"brand", vocabulary_.brand_name(brand_of(bc))},
                                {"channel", vocabulary_.channel_name(channel_of(bc))}};
    out.add(labels, static_cast<double>(r.engagements) / static_cast<double>(r.impressions));
  }
}

size_t WindowOperator::state_bytes() const {
  size_t bytes = sizeof(*this) + rates_.size() * (sizeof(RateSample) + 48);
  for (const auto& [partition, state] : partitions_) {
    bytes += state.series.capacity() * sizeof(PaneSeries);
    for (const PaneSeries& series : state.series) {
      bytes += series.starts.capacity() * sizeof(int64_t) + series.panes.capacity() * sizeof(Pane);
      for (const Pane& pane : series.panes) {
        bytes += pane.fresh.capacity() * sizeof(uint64_t);
        const HyperLogLog& h = pane.aggregate.actors;
        bytes += h.is_dense() ? HyperLogLog::kRegisters
                              : static_cast<size_t>(h.estimate()) * sizeof(uint64_t);
      }
    }
  }
  return bytes;
}

}  // namespace sp
