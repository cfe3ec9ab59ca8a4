#pragma once
// Builds one immutable snapshot of every exported metric from the operators' collect() calls and
// enforces the `metrics.max_series` cap by folding excess series into brand/channel `other`.
#include <prometheus/metric_family.h>

#include <map>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "operators/metrics_writer.h"

namespace sp {

using MetricsSnapshot = std::vector<prometheus::MetricFamily>;

class MetricsRegistry final : public MetricsWriter {
 public:
  explicit MetricsRegistry(size_t max_series) : max_series_(max_series) {}

  void begin();  // starts a new snapshot
  void family(std::string_view name, std::string_view help, MetricType type) override;
  void add(std::span<const LabelPair> labels, double value) override;
  void add_histogram(std::span<const LabelPair> labels, std::span<const double> bounds,
                     std::span<const uint64_t> bucket_counts, double sum) override;
  // Finishes the snapshot (adds socialpulse_series_folded_total) and hands it over.
  std::shared_ptr<const MetricsSnapshot> finish();

 private:
  prometheus::ClientMetric* series(std::span<const LabelPair> labels);
  void fold_to_cap();

  struct FamilyIndex {
    size_t position = 0;
    std::map<std::string, size_t> series;  // encoded label set -> metric index
  };
  size_t max_series_;
  std::unique_ptr<MetricsSnapshot> building_;
  std::map<std::string, FamilyIndex, std::less<>> families_;
  FamilyIndex* current_ = nullptr;
  std::unordered_set<std::string>
      folded_keys_;  // every series ever folded: keeps the counter monotonic
};

}  // namespace sp
