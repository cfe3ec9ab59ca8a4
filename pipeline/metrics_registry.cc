#include "pipeline/metrics_registry.h"

#include <limits>

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

bool foldable(std::string_view label) { return label == "brand" || label == "channel"; }

std::string encode(std::span<const LabelPair> labels) {
  std::string key;
  for (const auto& [k, v] : labels) {
    key.append(k).push_back('\x1f');
    key.append(v).push_back('\x1e');
  }
  return key;
}
}  // namespace

void MetricsRegistry::begin() {
  building_ = std::make_unique<MetricsSnapshot>();
  families_.clear();
  current_ = nullptr;
  series_count_ = 0;
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
  std::vector<LabelPair> folded;
  if (series_count_ >= max_series_) {
    bool changed = false;
    for (const auto& [k, v] : labels) {
      const bool fold = foldable(k) && v != "other";
      folded.emplace_back(k, fold ? std::string_view("other") : v);
      changed |= fold;
    }
    if (changed) {
      folded_keys_.insert(fam.name + key);
      labels = folded;
      key = encode(labels);
      it = current_->series.find(key);
      if (it != current_->series.end()) return &fam.metric[it->second];
    }
  }
  prometheus::ClientMetric m;
  for (const auto& [k, v] : labels) m.label.push_back({std::string(k), std::string(v)});
  fam.metric.push_back(std::move(m));
  current_->series.emplace(std::move(key), fam.metric.size() - 1);
  ++series_count_;
  return &fam.metric.back();
}

void MetricsRegistry::add(std::span<const LabelPair> labels, double value) {
  auto* m = series(labels);
  // Folded series accumulate; a gauge folded into `other` reports the sum of its parts.
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

std::shared_ptr<const MetricsSnapshot> MetricsRegistry::finish() {
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
