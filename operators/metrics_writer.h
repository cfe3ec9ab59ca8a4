#pragma once
// Library-neutral sink for metric values: operators describe what they expose, the pipeline's
// exporter turns it into Prometheus families. Called once per checkpoint, never per event.
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sp {

enum class MetricType { counter, gauge, histogram };

using LabelPair = std::pair<std::string_view, std::string_view>;

class MetricsWriter {
 public:
  virtual ~MetricsWriter() = default;
  // Starts a family; following add_* calls belong to it. A family may be started more than once
  // (by several operators): samples are merged by label set.
  virtual void family(std::string_view name, std::string_view help, MetricType type) = 0;
  virtual void add(std::span<const LabelPair> labels, double value) = 0;
  // bucket_counts are per bucket (not cumulative), one per upper bound, plus +Inf last.
  virtual void add_histogram(std::span<const LabelPair> labels, std::span<const double> bounds,
                             std::span<const uint64_t> bucket_counts, double sum) = 0;
  // False for a writer that ignores gauges (one that reads the counters only): gauges that cost
  // work to compute may then be left out.
  virtual bool wants_gauges() const { return true; }
};

}  // namespace sp
