#include "operators/counter_operator.h"

#include <algorithm>
#include <optional>

#include "operators/byte_codec.h"
#include "operators/kpi_metrics.h"

namespace sp {
namespace {

// 2: keyed by brand/channel/type names (1: positional blob per partition, not read).
constexpr uint64_t kSnapshotVersion = 2;
// Format 2 cells keep no impressions or engagements: the counters export neither.
constexpr MeasureSet kCellMeasures =
    MeasureSet::all().without(Measure::impressions).without(Measure::engagements);
}  // namespace

CounterOperator::CounterOperator(std::shared_ptr<const SpendTable> spend, Vocabulary vocabulary)
    : vocabulary_(std::move(vocabulary)), spend_(std::move(spend)) {}

CounterOperator::CounterOperator(Vocabulary vocabulary, std::vector<SpendEntry> spend)
    : CounterOperator(std::make_shared<const SpendTable>(SpendValues{"EUR", std::move(spend)}),
                      std::move(vocabulary)) {}

CounterOperator::PartitionState CounterOperator::fresh_state() const {
  PartitionState s;
  s.cells.resize(vocabulary_.brand_count() * vocabulary_.channel_count());
  s.ideas.resize(vocabulary_.brand_count() * kRoleCount);
  return s;
}

void CounterOperator::process(const ProcessContext& ctx, const Event& event) {
  PartitionState& s = partitions_.get_or_create(ctx.partition, [this] { return fresh_state(); });
  const Derived& d = ctx.derived;
  Cell& cell = s.cells[cell_index(event.brand, event.channel)];
  cell.add(event, d);
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
  using namespace byte_codec;
  const PartitionState& s = *state;
  std::string key;
  std::string value;
  for (size_t b = 0; b < vocabulary_.brand_count(); ++b) {
    const auto brand = static_cast<BrandIndex>(b);
    for (size_t ch = 0; ch < vocabulary_.channel_count(); ++ch) {
      const auto channel = static_cast<ChannelIndex>(ch);
      const Cell& c = s.cells[cell_index(brand, channel)];
      if (!c.touched()) continue;  // counters only grow: an untouched cell was never written
      value.clear();
      put_u64(value, kSnapshotVersion);
      c.encode_named(value, kCellMeasures);
      for (uint64_t v : c.care_buckets) put_u64(value, v);
      put_f64(value, c.care_sum);
      key.assign("cell/").append(vocabulary_.brand_name(brand)).append("/");
      key.append(vocabulary_.channel_name(channel));
      out.put(key, value);
    }
    uint64_t roles = 0;
    for (size_t r = 0; r < kRoleCount; ++r) roles += s.ideas[b * kRoleCount + r] != 0 ? 1 : 0;
    if (roles == 0) continue;
    value.clear();
    put_u64(value, kSnapshotVersion);
    put_u64(value, roles);
    for (size_t r = 0; r < kRoleCount; ++r) {
      const int64_t v = s.ideas[b * kRoleCount + r];
      if (v == 0) continue;
      put_str(value, to_string(static_cast<Role>(r)));
      put_i64(value, v);
    }
    out.put(key.assign("ideas/").append(vocabulary_.brand_name(brand)), value);
  }
}

namespace {

std::optional<Role> role_named(std::string_view name) {
  for (size_t r = 0; r < kRoleCount; ++r) {
    if (to_string(static_cast<Role>(r)) == name) return static_cast<Role>(r);
  }
  return std::nullopt;
}

Status corrupt_counters(std::string_view key) {
  return make_error(ErrorKind::fatal, "kpi_counters: corrupt state key '" + std::string(key) + "'");
}

}  // namespace

Status CounterOperator::restore(PartitionId partition, StateReader& in) {
  drop(partition);
  PartitionState s = fresh_state();
  bool any = false;
  auto check_version = [](byte_codec::Reader& r, std::string_view key) -> Status {
    const uint64_t version = r.u64();
    if (!r.ok()) return corrupt_counters(key);
    if (version != kSnapshotVersion) {
      return make_error(ErrorKind::fatal, "kpi_counters: state key '" + std::string(key) +
                                              "' has format version " + std::to_string(version) +
                                              ", this build reads version " +
                                              std::to_string(kSnapshotVersion));
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
    return {};
  });
  if (!ideas) return ideas;
  if (any) partitions_.assign(partition, std::move(s));
  return {};
}

void CounterOperator::drop(PartitionId partition) { partitions_.erase(partition); }

void CounterOperator::collect(MetricsWriter& out) const {
  PartitionState total = fresh_state();
  for (const auto& [id, s] : partitions_) {
    for (size_t i = 0; i < s.cells.size(); ++i) {
      total.cells[i].merge(s.cells[i]);
    }
    for (size_t i = 0; i < s.ideas.size(); ++i) total.ideas[i] += s.ideas[i];
  }

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
