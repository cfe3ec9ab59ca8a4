#include "pipeline/metrics_registry.h"

#include <algorithm>
#include <array>
#include <limits>
#include <set>
#include <unordered_map>

#include "operators/byte_codec.h"
#include "operators/state_version.h"

namespace sp {
namespace {
constexpr uint64_t kAdmittedVersion = 1;

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

void append_encoded(std::string& key, std::span<const LabelPair> labels) {
  for (const auto& [k, v] : labels) {
    key.append(k).push_back('\x1f');
    key.append(v).push_back('\x1e');
  }
}

void append_encoded(std::string& key, const std::vector<prometheus::ClientMetric::Label>& labels) {
  for (const auto& l : labels) {
    key.append(l.name).push_back('\x1f');
    key.append(l.value).push_back('\x1e');
  }
}

template <typename Labels>
std::string encode(const Labels& labels) {
  std::string key;
  append_encoded(key, labels);
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
  key_.clear();  // a buffer kept between calls: no allocation for a series already added
  append_encoded(key_, labels);
  auto it = current_->series.find(key_);
  if (it != current_->series.end()) return &fam.metric[it->second];
  prometheus::ClientMetric m;
  for (const auto& [k, v] : labels) m.label.push_back({std::string(k), std::string(v)});
  fam.metric.push_back(std::move(m));
  current_->series.emplace(key_, fam.metric.size() - 1);
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

namespace {

bool is_gauge(const prometheus::MetricFamily& f) { return f.type == prometheus::MetricType::Gauge; }

// Needs room under the cap: a brand/channel series other than a counter's own `other` (the
// series whose foldable labels all say "other": it always has room reserved, as it receives the
// folds).
bool takes_budget(const prometheus::MetricFamily& f, const prometheus::ClientMetric& m) {
  if (is_gauge(f)) return has_foldable(m);
  for (const auto& l : m.label) {
    if (foldable(l.name) && l.value != "other") return true;
  }
  return false;
}

void series_key_into(std::string& key, const prometheus::MetricFamily& f,
                     const prometheus::ClientMetric& m) {
  key.assign(f.name).push_back('\x1d');
  append_encoded(key, m.label);
}

std::string series_key(const prometheus::MetricFamily& f, const prometheus::ClientMetric& m) {
  std::string key;
  series_key_into(key, f, m);
  return key;
}

}  // namespace

void MetricsRegistry::admit_all() {
  for (const auto& fam : *building_) {
    for (const auto& m : fam.metric) {
      if (admitted_.size() >= max_series_) return;
      if (!takes_budget(fam, m)) continue;
      series_key_into(key_, fam, m);  // every series, every snapshot: no allocation when known
      if (admitted_set_.contains(key_)) continue;
      admitted_set_.insert(key_);
      admitted_.push_back(key_);
    }
  }
}

// Enforces the cap strictly: series without brand/channel labels always stay (they are few and
// fixed); room is reserved for every `other` series summing may need; the remaining budget keeps
// series in admission order (the first ever exposed first), then in exposition order; the rest
// are summed into their `other` series (counters, histograms) or dropped (gauges).
void MetricsRegistry::fold_to_cap() {
  size_t fixed = 2;  // socialpulse_series_folded_total{kind} itself
  size_t reserve = 0;
  for (const auto& fam : *building_) {
    std::set<std::string> others;
    for (const auto& m : fam.metric) {
      if (!has_foldable(m))
        fixed += weight(fam);
      else if (!is_gauge(fam))
        others.insert(encode(folded_labels(m).label));
    }
    reserve += others.size() * weight(fam);
  }
  size_t budget = max_series_ > fixed + reserve ? max_series_ - fixed - reserve : 0;

  std::unordered_map<std::string, std::pair<size_t, size_t>> candidates;  // key -> (family, i)
  std::vector<std::vector<char>> keep(building_->size());
  for (size_t f = 0; f < building_->size(); ++f) {
    const auto& fam = (*building_)[f];
    keep[f].assign(fam.metric.size(), 0);
    for (size_t i = 0; i < fam.metric.size(); ++i) {
      if (takes_budget(fam, fam.metric[i]))
        candidates.emplace(series_key(fam, fam.metric[i]), std::make_pair(f, i));
    }
  }
  for (const std::string& key : admitted_) {
    auto it = candidates.find(key);
    if (it == candidates.end()) continue;
    const auto [f, i] = it->second;
    const size_t w = weight((*building_)[f]);
    if (budget < w) continue;
    budget -= w;
    keep[f][i] = 1;
  }
  for (size_t f = 0; f < building_->size(); ++f) {
    const auto& fam = (*building_)[f];
    for (size_t i = 0; i < fam.metric.size(); ++i) {
      if (keep[f][i] || !takes_budget(fam, fam.metric[i]) || budget < weight(fam)) continue;
      budget -= weight(fam);
      keep[f][i] = 1;
    }
  }

  for (size_t f = 0; f < building_->size(); ++f) {
    auto& fam = (*building_)[f];
    std::vector<prometheus::ClientMetric> kept;
    std::map<std::string, size_t> other_index;
    std::vector<prometheus::ClientMetric> folded;
    for (size_t i = 0; i < fam.metric.size(); ++i) {
      auto& m = fam.metric[i];
      if (!has_foldable(m) || keep[f][i]) {
        kept.push_back(std::move(m));
        continue;
      }
      if (is_gauge(fam)) {
        dropped_keys_.insert(series_key(fam, m));
        continue;
      }
      prometheus::ClientMetric target = folded_labels(m);
      const std::string other_key = encode(target.label);
      if (encode(m.label) != other_key) summed_keys_.insert(series_key(fam, m));
      auto [it, inserted] = other_index.emplace(other_key, folded.size());
      if (inserted) folded.push_back(std::move(target));
      accumulate(folded[it->second], m);
    }
    for (auto& m : folded) kept.push_back(std::move(m));
    fam.metric = std::move(kept);
  }
}

std::shared_ptr<const MetricsSnapshot> MetricsRegistry::finish() {
  admit_all();
  size_t exposed = 2;  // socialpulse_series_folded_total{kind}
  for (const auto& fam : *building_) exposed += fam.metric.size() * weight(fam);
  if (exposed > max_series_) fold_to_cap();
  family("socialpulse_series_folded_total",
         "Series beyond the metrics.max_series cap: counters and histograms summed into "
         "brand/channel `other` (kind=summed), gauges dropped (kind=dropped)",
         MetricType::counter);
  const std::array<LabelPair, 1> summed{{{"kind", "summed"}}};
  const std::array<LabelPair, 1> dropped{{{"kind", "dropped"}}};
  series(summed)->counter.value = static_cast<double>(summed_keys_.size());
  series(dropped)->counter.value = static_cast<double>(dropped_keys_.size());
  std::shared_ptr<const MetricsSnapshot> out(std::move(building_));
  begin();
  return out;
}

std::string MetricsRegistry::encode_admitted_chunk(size_t chunk) const {
  const size_t begin = std::min(admitted_.size(), chunk * kAdmittedChunk);
  const size_t end = std::min(admitted_.size(), begin + kAdmittedChunk);
  std::string out;
  byte_codec::put_u64(out, kAdmittedVersion);
  byte_codec::put_u64(out, end - begin);
  for (size_t i = begin; i < end; ++i) byte_codec::put_str(out, admitted_[i]);
  return out;
}

Status MetricsRegistry::restore_admitted(const std::vector<std::string>& chunks) {
  std::vector<std::string> admitted;
  std::unordered_set<std::string> set;
  for (size_t c = 0; c < chunks.size(); ++c) {
    byte_codec::Reader in(chunks[c]);
    const uint64_t version = in.u64();
    if (in.ok() && version != kAdmittedVersion) {
      return unreadable_format("the admitted series", version, kAdmittedVersion, kAdmittedVersion);
    }
    const uint64_t n = in.u64();
    // Every chunk but the last is full: anything else is a chunk missing or out of order.
    if (!in.ok() || n > kAdmittedChunk || (c + 1 < chunks.size() && n != kAdmittedChunk)) {
      return make_error(ErrorKind::fatal, "corrupt admitted series chunk " + std::to_string(c));
    }
    for (uint64_t i = 0; i < n && in.ok(); ++i) {
      std::string key(in.str());
      if (in.ok() && set.insert(key).second) admitted.push_back(std::move(key));
    }
    if (!in.done()) {
      return make_error(ErrorKind::fatal, "corrupt admitted series chunk " + std::to_string(c));
    }
  }
  admitted_ = std::move(admitted);
  admitted_set_ = std::move(set);
  admitted_written_ = admitted_.size();
  return {};
}

}  // namespace sp
