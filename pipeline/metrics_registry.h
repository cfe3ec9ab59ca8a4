#pragma once
// Builds one immutable snapshot of every exported metric from the operators' collect() calls and
// enforces the `metrics.max_series` cap: beyond it, counter and histogram series are summed into
// their brand/channel `other` series and gauge series are dropped (a sum of several brands'
// gauges means nothing), both counted in socialpulse_series_folded_total{kind="summed"|"dropped"}.
// Which series are kept is stable: the first series ever exposed are kept first (admission
// order, part of the instance's checkpointed state), not whichever come first in exposition.
#include <prometheus/metric_family.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "base/result.h"
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

  // Admission order of the brand/channel series (at most max_series of them), stored in chunks of
  // kAdmittedChunk so that a checkpoint writes only the chunks that grew: chunks
  // [first_unwritten_chunk(), admitted_chunks()) then mark_admitted_written(). restore_admitted()
  // takes every stored chunk in order (a restart keeps the same series); it fails on bytes it
  // cannot read and then changes nothing.
  static constexpr size_t kAdmittedChunk = 1024;
  size_t admitted_chunks() const {
    return (admitted_.size() + kAdmittedChunk - 1) / kAdmittedChunk;
  }
  size_t first_unwritten_chunk() const { return admitted_written_ / kAdmittedChunk; }
  bool admitted_changed() const { return admitted_.size() != admitted_written_; }
  std::string encode_admitted_chunk(size_t chunk) const;
  void mark_admitted_written() { admitted_written_ = admitted_.size(); }
  Status restore_admitted(const std::vector<std::string>& chunks);

 private:
  prometheus::ClientMetric* series(std::span<const LabelPair> labels);
  void admit_all();
  void fold_to_cap();

  struct FamilyIndex {
    size_t position = 0;
    std::map<std::string, size_t> series;  // encoded label set -> metric index
  };
  size_t max_series_;
  std::unique_ptr<MetricsSnapshot> building_;
  std::map<std::string, FamilyIndex, std::less<>> families_;
  FamilyIndex* current_ = nullptr;
  // Every series ever summed / dropped: keeps the counters monotonic.
  std::unordered_set<std::string> summed_keys_;
  std::unordered_set<std::string> dropped_keys_;
  std::vector<std::string> admitted_;  // family + encoded labels, first seen first
  std::unordered_set<std::string> admitted_set_;
  size_t admitted_written_ = 0;
  std::string key_;  // series() and admit_all(): the key being looked up
};

}  // namespace sp
