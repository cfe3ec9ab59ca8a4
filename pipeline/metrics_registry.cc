#include "pipeline/metrics_registry.h"

#include <limits>
#include <set>

namespace sp {
namespace {
prometheus::MetricType to_prometheus(MetricType t) {
  switch (t) {
    case MetricType::counter:
      return prometheus::MetricType::Counter;
    case MetricType::gauge:
      return prometheus::MetricType::Gauge;
    case MetricType::histogram:
      return prometheus::MetricType::Histogram;
  }
  return prometheus::MetricType::Untyped;
}

// Only the unbounded-by-configuration labels fold; type, role, reason... are fixed small sets.
bool foldable(const std::string& label) { return label == "brand" || label == "channel"; }

std::string encode(std::span<const LabelPair> labels) {
  std::string key;
  for (const auto& [k, v] : labels) {
    key.append(k).push_back('\x1f');
    key.append(v).push_back('\x1e');
  }
  return key;
}

std::string encode(const std::vector<prometheus::ClientMetric::Label>& labels) {
  std::string key;
  for (const auto& l : labels) {
    key.append(l.name).push_back('\x1f');
    key.append(l.value).push_back('\x1e');
  }
  return key;
}

// Prometheus counts every exposed sample line as a series: a histogram is its buckets + sum +
// count.
size_t weight(const prometheus::MetricFamily& f) {
  if (f.type != prometheus::MetricType::Histogram || f.metric.empty()) return 1;
  return f.metric.front().histogram.bucket.size() + 2;
}

bool has_foldable(const prometheus::ClientMetric& m) {
  for (const auto& l : m.label) {
    if (foldable(l.name)) return true;
  }
  return false;
}

prometheus::ClientMetric folded_labels(const prometheus::ClientMetric& m) {
  prometheus::ClientMetric out;
  out.label = m.label;
  for (auto& l : out.label) {
    if (foldable(l.name)) l.value = "other";
  }
  return out;
}

void accumulate(prometheus::ClientMetric& into, const prometheus::ClientMetric& from) {
  into.counter.value += from.counter.value;
  into.gauge.value += from.gauge.value;
  auto& h = into.histogram;
  if (h.bucket.empty())
    h.bucket = from.histogram.bucket;
  else {
    for (size_t i = 0; i < h.bucket.size() && i < from.histogram.bucket.size(); ++i) {
      h.bucket[i].cumulative_count += from.histogram.bucket[i].cumulative_count;
    }
  }
  h.sample_count += from.histogram.sample_count;
  h.sample_sum += from.histogram.sample_sum;
}
}  // namespace

void MetricsRegistry::begin() {
  building_ = std::make_unique<MetricsSnapshot>();
  families_.clear();
  current_ = nullptr;
}

void MetricsRegistry::family(std::string_view name, std::string_view help, MetricType type) {
  auto it = families_.find(name);
  if (it == families_.end()) {
    prometheus::MetricFamily f;
    f.name = std::string(name);
    f.help = std::string(help);
    f.type = to_prometheus(type);
    building_->push_back(std::move(f));
    it = families_.emplace(std::string(name), FamilyIndex{building_->size() - 1, {}}).first;
  }
  current_ = &it->second;
}

prometheus::ClientMetric* MetricsRegistry::series(std::span<const LabelPair> labels) {
  auto& fam = (*building_)[current_->position];
  std::string key = encode(labels);
  auto it = current_->series.find(key);
  if (it != current_->series.end()) return &fam.metric[it->second];
  prometheus::ClientMetric m;
  for (const auto& [k, v] : labels) m.label.push_back({std::string(k), std::string(v)});
  fam.metric.push_back(std::move(m));
  current_->series.emplace(std::move(key), fam.metric.size() - 1);
  return &fam.metric.back();
}

void MetricsRegistry::add(std::span<const LabelPair> labels, double value) {
  auto* m = series(labels);
  // Samples with equal labels (several partitions or operators) accumulate.
  m->counter.value += value;
  m->gauge.value += value;
}

void MetricsRegistry::add_histogram(std::span<const LabelPair> labels,
                                    std::span<const double> bounds,
                                    std::span<const uint64_t> bucket_counts, double sum) {
  auto* m = series(labels);
  auto& h = m->histogram;
  if (h.bucket.empty()) {
    for (double b : bounds) {
      prometheus::ClientMetric::Bucket bucket;
      bucket.upper_bound = b;
      h.bucket.push_back(bucket);
    }
    prometheus::ClientMetric::Bucket inf;
    inf.upper_bound = std::numeric_limits<double>::infinity();
    h.bucket.push_back(inf);
  }
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bucket_counts.size() && i < h.bucket.size(); ++i) {
    cumulative += bucket_counts[i];
    h.bucket[i].cumulative_count += cumulative;
  }
  h.sample_count += cumulative;
  h.sample_sum += sum;
}

// Enforces the cap strictly: series without brand/channel labels always stay (they are few and
// fixed); room is reserved for every `other` series folding may need; the remaining budget keeps
// series unfolded in exposition order, and the rest are summed into their `other` series.
void MetricsRegistry::fold_to_cap() {
  size_t fixed = 1;  // socialpulse_series_folded_total itself
  size_t reserve = 0;
  for (const auto& fam : *building_) {
    std::set<std::string> others;
    for (const auto& m : fam.metric) {
      if (!has_foldable(m))
        fixed += weight(fam);
      else
        others.insert(encode(folded_labels(m).label));
    }
    reserve += others.size() * weight(fam);
  }
  size_t budget = max_series_ > fixed + reserve ? max_series_ - fixed - reserve : 0;
  for (auto& fam : *building_) {
    std::vector<prometheus::ClientMetric> kept;
    std::map<std::string, size_t> other_index;
    std::vector<prometheus::ClientMetric> folded;
    for (auto& m : fam.metric) {
      if (!has_foldable(m)) {
        kept.push_back(std::move(m));
        continue;
      }
      prometheus::ClientMetric target = folded_labels(m);
      const std::string other_key = encode(target.label);
      const bool is_other = encode(m.label) == other_key;
      if (!is_other && budget >= weight(fam)) {
        budget -= weight(fam);
        kept.push_back(std::move(m));
        continue;
      }
      if (!is_other) folded_keys_.insert(fam.name + encode(m.label));
      auto [it, inserted] = other_index.emplace(other_key, folded.size());
      if (inserted) folded.push_back(std::move(target));
      accumulate(folded[it->second], m);
    }
    for (auto& m : folded) kept.push_back(std::move(m));
    fam.metric = std::move(kept);
  }
}

std::shared_ptr<const MetricsSnapshot> MetricsRegistry::finish() {
  size_t exposed = 1;  // socialpulse_series_folded_total
  for (const auto& fam : *building_) exposed += fam.metric.size() * weight(fam);
  if (exposed > max_series_) fold_to_cap();
  family("socialpulse_series_folded_total",
         "Series folded into brand/channel `other` by the metrics.max_series cap",
         MetricType::counter);
  auto& fam = (*building_)[current_->position];
  if (fam.metric.empty()) fam.metric.emplace_back();
  fam.metric.front().counter.value = static_cast<double>(folded_keys_.size());
  std::shared_ptr<const MetricsSnapshot> out(std::move(building_));
  begin();
  return out;
}

}  // namespace sp
