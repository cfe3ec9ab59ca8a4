#pragma once
// Test doubles for the KPI operator tests: a MetricsWriter that flattens samples to Prometheus-like
// series names, an Emitter that keeps records, and an event builder that owns its strings.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "operators/event.h"
#include "operators/metrics_writer.h"
#include "operators/operator.h"

namespace sp::testing {

// Series key: name{k="v",...} with labels sorted by key; histograms expand to cumulative
// name_bucket{...,le="..."}, name_count and name_sum as in the Prometheus text format.
class FakeMetricsWriter final : public MetricsWriter {
 public:
  std::map<std::string, double> samples;
  std::map<std::string, MetricType> types;  // of each sample's family
  bool gauges = true;                        // wants_gauges()

  bool wants_gauges() const override { return gauges; }
  void family(std::string_view name, std::string_view, MetricType type) override {
    name_ = name;
    type_ = type;
  }
  void add(std::span<const LabelPair> labels, double value) override {
    EXPECT_NE(type_, MetricType::histogram) << name_;
    put(key(name_, labels, {}), value);
  }
  void add_histogram(std::span<const LabelPair> labels, std::span<const double> bounds,
                     std::span<const uint64_t> bucket_counts, double sum) override {
    EXPECT_EQ(type_, MetricType::histogram) << name_;
    ASSERT_EQ(bucket_counts.size(), bounds.size() + 1);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bucket_counts.size(); ++i) {
      cumulative += bucket_counts[i];
      char le[32];
      if (i < bounds.size()) {
        std::snprintf(le, sizeof(le), "%g", bounds[i]);
      } else {
        std::snprintf(le, sizeof(le), "+Inf");
      }
      put(key(name_ + "_bucket", labels, le), static_cast<double>(cumulative));
    }
    put(key(name_ + "_count", labels, {}), static_cast<double>(cumulative));
    put(key(name_ + "_sum", labels, {}), sum);
  }

  bool has(const std::string& k) const { return samples.count(k) != 0; }
  double at(const std::string& k) const {
    const auto it = samples.find(k);
    EXPECT_NE(it, samples.end()) << "missing series " << k;
    return it == samples.end() ? -1e300 : it->second;
  }

 private:
  static std::string key(const std::string& name, std::span<const LabelPair> labels,
                         std::string_view le) {
    std::vector<std::pair<std::string, std::string>> sorted;
    for (const auto& [k, v] : labels) sorted.emplace_back(std::string(k), std::string(v));
    if (!le.empty()) sorted.emplace_back("le", std::string(le));
    std::sort(sorted.begin(), sorted.end());
    std::string out = name + "{";
    for (size_t i = 0; i < sorted.size(); ++i) {
      if (i) out += ",";
      out += sorted[i].first + "=\"" + sorted[i].second + "\"";
    }
    return out + "}";
  }
  void put(const std::string& k, double v) {
    // Several operators may share a family, but one series must be written once per collect.
    EXPECT_EQ(samples.count(k), 0u) << "series written twice: " << k;
    samples[k] = v;
    types[k] = type_;
  }
  std::string name_;
  MetricType type_ = MetricType::counter;
};

class RecordingEmitter final : public Emitter {
 public:
  std::vector<OutputRecord> records;
  void emit(OutputRecord record) override { records.push_back(std::move(record)); }
};

// An Event together with the strings its views point into.
struct OwnedEvent {
  Event event;
  std::string actor;
  void set_actor(std::string id) {
    actor = std::move(id);
    event.actor_id = actor;
    event.has_actor = true;
    event.actor_hash = XXH3_64bits(actor.data(), actor.size());
  }
};

inline uint64_t actor_hash(std::string_view id) { return XXH3_64bits(id.data(), id.size()); }

// Feeds one event to every operator, in the context Topology::process would build for it.
inline void feed(std::vector<std::unique_ptr<Operator>>& ops, PartitionId p, EventTime watermark,
                 const Event& e, const KpiSettings& kpi = {}) {
  const ProcessContext ctx = make_process_context(p, watermark, watermark, e, kpi, EmvSettings{});
  for (auto& op : ops) op->process(ctx, e);
}

inline void advance(std::vector<std::unique_ptr<Operator>>& ops, EventTime watermark,
                    Emitter& out) {
  for (auto& op : ops) op->on_watermark(watermark, out);
}

inline FakeMetricsWriter collect_all(const std::vector<std::unique_ptr<Operator>>& ops) {
  FakeMetricsWriter w;
  for (const auto& op : ops) op->collect(w);
  return w;
}

}  // namespace sp::testing
