#include "operators/counter_operator.h"

#include <algorithm>
#include <optional>

#include "operators/byte_codec.h"
#include "operators/kpi_metrics.h"
#include "operators/state_version.h"

namespace sp {
namespace {

// 2: keyed by brand/channel/type names (1: positional blob per partition, not read), one key per
// cell (`cell/<brand>/<channel>`) and per brand's ideas (`ideas/<brand>`); still read.
constexpr uint64_t kSnapshotVersion = 2;
// 3: one packed key `cells` per partition (issue #20: a key costs a checkpoint ~2 us in RocksDB
// and a changelog record; format 2 wrote ~33 keys of ~380 bytes per partition). 4: the same
// layout, and `cells/<n>` deltas may follow it (builds that read 3 only would miss them, so they
// refuse 4); 3 is still read, and rewritten as 4.
constexpr uint64_t kPackedVersion = 4;
constexpr uint64_t kPackedVersionAlone = 3;
constexpr size_t kDeltaDigits = 4;
constexpr uint32_t kMaxDeltas = 8;

void delta_key(uint32_t n, std::string& out) {
  byte_codec::numbered_key(out, "cells/", n, static_cast<int>(kDeltaDigits));
}
// Format 2 cells keep no impressions or engagements: the counters export neither.
constexpr MeasureSet kCellMeasures =
    MeasureSet::all().without(Measure::impressions).without(Measure::engagements);
}  // namespace

CounterOperator::CounterOperator(std::shared_ptr<const SpendTable> spend, Vocabulary vocabulary)
    : vocabulary_(std::move(vocabulary)), spend_(std::move(spend)) {
  // The packed snapshot lists brands and cells by name: the same bytes whatever the order of
  // the configured lists.
  const size_t channels = vocabulary_.channel_count();
  for (size_t b = 0; b < vocabulary_.brand_count(); ++b) brands_by_name_.push_back(b);
  std::sort(brands_by_name_.begin(), brands_by_name_.end(), [this](size_t x, size_t y) {
    return vocabulary_.brand_name(static_cast<BrandIndex>(x)) <
           vocabulary_.brand_name(static_cast<BrandIndex>(y));
  });
  for (size_t i = 0; i < vocabulary_.brand_count() * channels; ++i) cells_by_name_.push_back(i);
  std::sort(cells_by_name_.begin(), cells_by_name_.end(), [&](size_t x, size_t y) {
    const auto key = [&](size_t i) {
      return std::pair(vocabulary_.brand_name(static_cast<BrandIndex>(i / channels)),
                       vocabulary_.channel_name(static_cast<ChannelIndex>(i % channels)));
    };
    return key(x) < key(y);
  });
}

CounterOperator::CounterOperator(Vocabulary vocabulary, std::vector<SpendEntry> spend)
    : CounterOperator(std::make_shared<const SpendTable>(SpendValues{"EUR", std::move(spend)}),
                      std::move(vocabulary)) {}

CounterOperator::PartitionState CounterOperator::fresh_state() const {
  PartitionState s;
  s.cells.resize(vocabulary_.brand_count() * vocabulary_.channel_count());
  s.ideas.resize(vocabulary_.brand_count() * kRoleCount);
  s.changed.resize(s.cells.size());
  return s;
}

void CounterOperator::process(const ProcessContext& ctx, const Event& event) {
  PartitionState& s = partitions_.get_or_create(ctx.partition, [this] { return fresh_state(); });
  s.unsaved = true;
  total_valid_ = false;
  const Derived& d = ctx.derived;
  const size_t index = cell_index(event.brand, event.channel);
  Cell& cell = s.cells[index];
  cell.add(event, d);
  if (s.changed[index] == 0) {
    s.changed[index] = 1;
    s.changed_cells.push_back(static_cast<uint32_t>(index));  // capacity kept: no allocation
  }
  if (d.ideas != 0)
    s.ideas[static_cast<size_t>(event.brand) * kRoleCount + static_cast<size_t>(event.role)] +=
        d.ideas;
  // One observation per reply event, not per count: a response time is one measurement.
  if (event.type == EventType::reply && event.has_response_time) {
    const size_t bucket = static_cast<size_t>(
        std::lower_bound(kCareBounds.begin(), kCareBounds.end(), event.response_time_s) -
        kCareBounds.begin());  // le semantics: value == bound falls in that bound's bucket
    ++cell.care_buckets[bucket];
    cell.care_sum += event.response_time_s;
  }
}

void CounterOperator::snapshot(PartitionId partition, StateWriter& out) const {
  const PartitionState* state = partitions_.find(partition);
  if (state == nullptr) return;  // no state: nothing to restore
  const PartitionState& s = *state;
  std::string& value = scratch_;
  std::string key;
  s.pending = Write::none;
  if (!s.rebase && s.changed_cells.empty()) return;  // stored as it is
  if (!s.rebase && s.stored_deltas < kMaxDeltas) {
    size_t touched = 0;
    for (const Cell& c : s.cells) touched += c.touched() ? 1 : 0;
    if (s.changed_cells.size() * 2 < touched) {
      value.clear();
      encode_packed(s, /*only_changed=*/true, value);
      if (s.stored_delta_bytes + value.size() <= s.stored_base_bytes) {
        delta_key(s.stored_deltas, key);
        out.put(key, value);
        s.pending = Write::delta;
        s.pending_bytes = value.size();
        return;
      }
    }
  }
  value.clear();
  encode_packed(s, /*only_changed=*/false, value);
  out.put("cells", value);
  for (uint32_t n = 0; n < s.stored_deltas; ++n) {
    delta_key(n, key);
    out.remove(key);
  }
  for (const std::string& legacy : s.legacy_keys) out.remove(legacy);
  s.pending = Write::base;
  s.pending_bytes = value.size();
}

void CounterOperator::encode_packed(const PartitionState& s, bool only_changed,
                                    std::string& value) const {
  using namespace byte_codec;
  put_var(value, kPackedVersion);
  const size_t channels = vocabulary_.channel_count();
  auto listed = [&](size_t index) {
    return only_changed ? s.changed[index] != 0 : s.cells[index].touched();
  };
  size_t cells = 0;
  for (size_t i = 0; i < s.cells.size(); ++i) cells += listed(i) ? 1 : 0;
  put_var(value, cells);
  for (const size_t index : cells_by_name_) {
    const Cell& c = s.cells[index];
    if (!listed(index)) continue;  // counters only grow: an untouched cell was never written
    put_vstr(value, vocabulary_.brand_name(static_cast<BrandIndex>(index / channels)));
    put_vstr(value, vocabulary_.channel_name(static_cast<ChannelIndex>(index % channels)));
    c.encode_packed(value, kCellMeasures);
    uint64_t buckets = 0;
    for (size_t k = 0; k < kCareBuckets; ++k) buckets |= c.care_buckets[k] != 0 ? 1u << k : 0;
    put_var(value, buckets);
    for (uint64_t v : c.care_buckets) {
      if (v != 0) put_var(value, v);
    }
    if (buckets != 0) put_f64(value, c.care_sum);
  }
  // Every brand's ideas, deltas too: a few bytes, and restore just assigns what it reads.
  size_t brands = 0;
  for (size_t b = 0; b < vocabulary_.brand_count(); ++b) {
    for (size_t r = 0; r < kRoleCount; ++r) {
      if (s.ideas[b * kRoleCount + r] != 0) {
        ++brands;
        break;
      }
    }
  }
  put_var(value, brands);
  for (const size_t b : brands_by_name_) {
    uint64_t roles = 0;
    for (size_t r = 0; r < kRoleCount; ++r) roles += s.ideas[b * kRoleCount + r] != 0 ? 1 : 0;
    if (roles == 0) continue;
    put_vstr(value, vocabulary_.brand_name(static_cast<BrandIndex>(b)));
    put_var(value, roles);
    for (size_t r = 0; r < kRoleCount; ++r) {
      const int64_t v = s.ideas[b * kRoleCount + r];
      if (v == 0) continue;
      put_vstr(value, to_string(static_cast<Role>(r)));
      put_svar(value, v);
    }
  }
}

bool CounterOperator::needs_snapshot(PartitionId partition, bool /*touched*/) const {
  return partitions_.unsaved(partition);
}

void CounterOperator::saved() {
  for (auto& [id, s] : partitions_) {
    switch (s.pending) {
      case Write::none:
        continue;  // not written since the last saved(): nothing counted
      case Write::base:
        s.stored_base_bytes = s.pending_bytes;
        s.stored_deltas = 0;
        s.stored_delta_bytes = 0;
        s.rebase = false;
        s.legacy_keys.clear();
        break;
      case Write::delta:
        ++s.stored_deltas;
        s.stored_delta_bytes += s.pending_bytes;
        break;
    }
    s.pending = Write::none;
    for (const uint32_t index : s.changed_cells) s.changed[index] = 0;
    s.changed_cells.clear();
  }
  partitions_.mark_all_saved();
}

namespace {

std::optional<Role> role_named(std::string_view name) {
  for (size_t r = 0; r < kRoleCount; ++r) {
    if (to_string(static_cast<Role>(r)) == name) return static_cast<Role>(r);
  }
  return std::nullopt;
}

tl::unexpected<Error> corrupt_counters(std::string_view key) {
  return make_error(ErrorKind::fatal, "kpi_counters: corrupt state key '" + std::string(key) + "'");
}

}  // namespace

Status CounterOperator::restore(PartitionId partition, StateReader& in) {
  drop(partition);
  PartitionState s = fresh_state();
  auto packed = in.get("cells");
  if (!packed) return tl::unexpected(packed.error());
  if (*packed) {
    s.unsaved = false;  // as stored, unless an entry is dropped or the format is older
    const auto base = decode_packed("cells", **packed, in, s);
    if (!base) return tl::unexpected(base.error());
    s.stored_base_bytes = (*packed)->size();
    const bool alone = *base == kPackedVersionAlone;
    if (alone) s.unsaved = true;
    // The deltas, in order: each replaces the cells it lists (contiguous from 0, or corrupt).
    auto deltas = in.scan("cells/", [&](std::string_view key, std::string_view bytes) -> Status {
      const auto n = byte_codec::parse_hex(key.substr(6), kDeltaDigits);
      if (alone || !n || *n != s.stored_deltas) return corrupt_counters(key);
      const auto delta = decode_packed(key, bytes, in, s);
      if (!delta) return tl::unexpected(delta.error());
      if (*delta != kPackedVersion) return corrupt_counters(key);
      ++s.stored_deltas;
      s.stored_delta_bytes += bytes.size();
      return {};
    });
    if (!deltas) return deltas;
    // Rewritten whole at the next checkpoint when something was dropped or the format is 3.
    s.rebase = s.unsaved;
    partitions_.assign(partition, std::move(s));
    return {};
  }
  // Format 2 (one key per cell and per brand's ideas): read, then rewritten as `cells` at the
  // next checkpoint, which removes these keys.
  bool any = false;
  auto check_version = [](byte_codec::Reader& r, std::string_view key) -> Status {
    const uint64_t version = r.u64();
    if (!r.ok()) return corrupt_counters(key);
    if (version != kSnapshotVersion) {
      return unreadable_format("kpi_counters: state key '" + std::string(key) + "'", version,
                               kSnapshotVersion, kSnapshotVersion);
    }
    return {};
  };
  auto cells = in.scan("cell/", [&](std::string_view key, std::string_view bytes) -> Status {
    const std::string_view names = key.substr(5);
    const size_t slash = names.find('/');
    if (slash == std::string_view::npos) return corrupt_counters(key);
    const std::string_view brand_name = names.substr(0, slash);
    const std::string_view channel_name = names.substr(slash + 1);
    const auto brand = vocabulary_.find_brand(brand_name);
    if (!brand) {
      in.drop(key, DroppedKind::brand, brand_name);
      return {};
    }
    const auto channel = vocabulary_.find_channel(channel_name);
    if (!channel) {
      in.drop(key, DroppedKind::channel, channel_name);
      return {};
    }
    byte_codec::Reader r(bytes);
    if (auto v = check_version(r, key); !v) return v;
    Cell& c = s.cells[cell_index(*brand, *channel)];
    // An event type this build does not know is corruption (the types are the schema's enum).
    if (!c.decode_named(r, kCellMeasures)) return corrupt_counters(key);
    for (uint64_t& v : c.care_buckets) v = r.u64();
    c.care_sum = r.f64();
    if (!r.done()) return corrupt_counters(key);
    any = true;
    s.legacy_keys.emplace_back(key);
    return {};
  });
  if (!cells) return cells;
  auto ideas = in.scan("ideas/", [&](std::string_view key, std::string_view bytes) -> Status {
    const std::string_view brand_name = key.substr(6);
    const auto brand = vocabulary_.find_brand(brand_name);
    if (!brand) {
      in.drop(key, DroppedKind::brand, brand_name);
      return {};
    }
    byte_codec::Reader r(bytes);
    if (auto v = check_version(r, key); !v) return v;
    const uint64_t roles = r.u64();
    for (uint64_t i = 0; i < roles && r.ok(); ++i) {
      const std::string_view role_name = r.str();
      const int64_t v = r.i64();
      if (!r.ok()) break;
      const auto role = role_named(role_name);
      if (!role) return corrupt_counters(key);
      s.ideas[size_t{*brand} * kRoleCount + static_cast<size_t>(*role)] = v;
    }
    if (!r.done()) return corrupt_counters(key);
    any = true;
    s.legacy_keys.emplace_back(key);
    return {};
  });
  if (!ideas) return ideas;
  if (any) partitions_.assign(partition, std::move(s));
  return {};
}

Result<uint64_t> CounterOperator::decode_packed(std::string_view key, std::string_view bytes,
                                                StateReader& in, PartitionState& s) const {
  byte_codec::Reader r(bytes);
  const uint64_t version = r.var();
  if (!r.ok()) return corrupt_counters(key);
  if (version != kPackedVersion && version != kPackedVersionAlone) {
    return unreadable_format("kpi_counters: state key '" + std::string(key) + "'", version,
                             kPackedVersionAlone, kPackedVersion);
  }
  const uint64_t cells = r.var();
  for (uint64_t i = 0; i < cells && r.ok(); ++i) {
    const std::string_view brand_name = r.vstr();
    const std::string_view channel_name = r.vstr();
    Cell c;
    if (!r.ok() || !c.decode_packed(r, kCellMeasures)) return corrupt_counters(key);
    const uint64_t buckets = r.var();
    if ((buckets >> kCareBuckets) != 0) return corrupt_counters(key);
    for (size_t k = 0; k < kCareBuckets; ++k) c.care_buckets[k] = (buckets >> k & 1) ? r.var() : 0;
    if (buckets != 0) c.care_sum = r.f64();
    if (!r.ok()) break;
    const auto brand = vocabulary_.find_brand(brand_name);
    const auto channel = vocabulary_.find_channel(channel_name);
    if (!brand || !channel) {
      // A brand or channel no longer configured: dropped, and gone from `cells` when rewritten.
      if (!brand) {
        in.note_dropped(DroppedKind::brand, brand_name);
      } else {
        in.note_dropped(DroppedKind::channel, channel_name);
      }
      s.unsaved = true;
      continue;
    }
    s.cells[cell_index(*brand, *channel)] = c;
  }
  const uint64_t brands = r.var();
  for (uint64_t i = 0; i < brands && r.ok(); ++i) {
    const std::string_view brand_name = r.vstr();
    const uint64_t roles = r.var();
    const auto brand = vocabulary_.find_brand(brand_name);
    if (r.ok() && !brand) {
      in.note_dropped(DroppedKind::brand, brand_name);
      s.unsaved = true;
    }
    for (uint64_t k = 0; k < roles && r.ok(); ++k) {
      const std::string_view role_name = r.vstr();
      const int64_t v = r.svar();
      if (!r.ok()) break;
      const auto role = role_named(role_name);
      if (!role) return corrupt_counters(key);
      if (brand) s.ideas[size_t{*brand} * kRoleCount + static_cast<size_t>(*role)] = v;
    }
  }
  if (!r.done()) return corrupt_counters(key);
  return version;
}

void CounterOperator::drop(PartitionId partition) {
  partitions_.erase(partition);
  total_valid_ = false;
}

void CounterOperator::collect(MetricsWriter& out) const {
  if (!total_valid_) {
    total_ = fresh_state();
    for (const auto& [id, s] : partitions_) {
      for (size_t i = 0; i < s.cells.size(); ++i) {
        total_.cells[i].merge(s.cells[i]);
      }
      for (size_t i = 0; i < s.ideas.size(); ++i) total_.ideas[i] += s.ideas[i];
    }
    total_valid_ = true;
  }
  const PartitionState& total = total_;

  // MetricsWriter takes one family at a time, so each family gets its own pass over the cells.
  // A brand x channel series is exported once that pair has seen an event: series start at 0
  // only where there is activity (bounded, and rate() works from the first sample).
  auto for_each_cell = [&](auto&& fn) {
    for (size_t b = 0; b < vocabulary_.brand_count(); ++b) {
      for (size_t ch = 0; ch < vocabulary_.channel_count(); ++ch) {
        const auto brand = static_cast<BrandIndex>(b);
        const auto channel = static_cast<ChannelIndex>(ch);
        fn(vocabulary_.brand_name(brand), vocabulary_.channel_name(channel),
           total.cells[cell_index(brand, channel)]);
      }
    }
  };
  // One family per counter of the cell that needs only brand and channel labels.
  auto cell_family = [&](std::string_view name, std::string_view help, auto value) {
    LazyFamily family(out, name, help, MetricType::counter);
    for_each_cell([&](const std::string& brand, const std::string& channel, const Cell& c) {
      if (!c.touched()) return;
      const LabelPair labels[] = {{"brand", brand}, {"channel", channel}};
      family.add(labels, value(c));
    });
  };

  {
    LazyFamily family(out, "socialpulse_interactions_total",
                      "Interactions (sum of event count) by brand, channel and type",
                      MetricType::counter);
    for_each_cell([&](const std::string& brand, const std::string& channel, const Cell& c) {
      for (size_t k = 0; k < kEventTypeCount; ++k) {
        if (c.interactions[k] == 0) continue;
        const LabelPair labels[] = {
            {"brand", brand}, {"channel", channel}, {"type", to_string(static_cast<EventType>(k))}};
        family.add(labels, static_cast<double>(c.interactions[k]));
      }
    });
  }
  cell_family("socialpulse_reach_total", "Sum of the events' reach field",
              [](const Cell& c) { return static_cast<double>(c.reach); });
  cell_family("socialpulse_opinion_weight_total",
              "Opinion weight w*count of events carrying a sentiment",
              [](const Cell& c) { return c.opinion_weight; });
  {
    LazyFamily family(out, "socialpulse_sentiment_score_total",
                      "Weighted sentiment score by polarity", MetricType::counter);
    for_each_cell([&](const std::string& brand, const std::string& channel, const Cell& c) {
      if (!c.touched()) return;
      const LabelPair pos[] = {{"brand", brand}, {"channel", channel}, {"polarity", "positive"}};
      const LabelPair neg[] = {{"brand", brand}, {"channel", channel}, {"polarity", "negative"}};
      family.add(pos, c.positive);
      family.add(neg, c.negative);
    });
  }
  cell_family("socialpulse_earned_media_value_total",
              "Earned media value in the configured currency (roi.currency)",
              [](const Cell& c) { return c.emv; });
  cell_family("socialpulse_web_visits_total", "Web visits from social (click events)",
              [](const Cell& c) { return static_cast<double>(c.web_visits); });
  cell_family("socialpulse_leads_total", "Leads (sum of count of lead events)",
              [](const Cell& c) { return static_cast<double>(c.leads); });
  cell_family("socialpulse_lead_value_total",
              "Lead value in the configured currency (roi.currency)",
              [](const Cell& c) { return c.lead_value; });
  {
    LazyFamily family(out, "socialpulse_care_response_seconds",
                      "Customer-care response time of reply events", MetricType::histogram);
    for_each_cell([&](const std::string& brand, const std::string& channel, const Cell& c) {
      uint64_t observations = 0;
      for (uint64_t v : c.care_buckets) observations += v;
      if (observations == 0) return;
      const LabelPair labels[] = {{"brand", brand}, {"channel", channel}};
      family.add_histogram(labels, kCareBounds, c.care_buckets, c.care_sum);
    });
  }

  LazyFamily ideas(out, "socialpulse_ideas_total", "Ideas by brand and author role",
                   MetricType::counter);
  for (size_t b = 0; b < vocabulary_.brand_count(); ++b) {
    for (size_t r = 0; r < kRoleCount; ++r) {
      const int64_t v = total.ideas[b * kRoleCount + r];
      if (v == 0) continue;
      const LabelPair labels[] = {{"brand", vocabulary_.brand_name(static_cast<BrandIndex>(b))},
                                  {"role", to_string(static_cast<Role>(r))}};
      ideas.add(labels, static_cast<double>(v));
    }
  }

  // The currency is in the HELP text, not a label: one series per brand/channel whatever it is.
  const SpendValues spend_values = spend_->get();
  const std::string help = "Configured daily spend (roi.daily_spend) by brand and channel, in " +
                           spend_values.currency + " (roi.currency)";
  LazyFamily spend(out, "socialpulse_daily_spend", help, MetricType::gauge);
  for (const SpendEntry& e : spend_values.entries) {
    const LabelPair labels[] = {{"brand", e.brand}, {"channel", e.channel}};
    spend.add(labels, e.spend);
  }
}

size_t CounterOperator::state_bytes() const {
  const size_t per_partition =
      vocabulary_.brand_count() * vocabulary_.channel_count() * sizeof(Cell) +
      vocabulary_.brand_count() * kRoleCount * sizeof(int64_t);
  return partitions_.size() * per_partition;
}

}  // namespace sp
