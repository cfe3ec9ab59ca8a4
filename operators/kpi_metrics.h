#pragma once
// Small formatting helpers shared by the KPI operators (internal to operators/).
#include <string>
#include <string_view>

#include "operators/metrics_writer.h"
#include "operators/time.h"
#include "operators/window_record_format.h"

namespace sp {

// Starts its family on the first sample, so a metric without samples is absent rather than an
// empty family (SPEC 4: "absent when ...").
class LazyFamily {
 public:
  LazyFamily(MetricsWriter& out, std::string_view name, std::string_view help, MetricType type)
      : out_(out), name_(name), help_(help), type_(type) {}
  void add(std::span<const LabelPair> labels, double value) {
    start();
    out_.add(labels, value);
  }
  void add_histogram(std::span<const LabelPair> labels, std::span<const double> bounds,
                     std::span<const uint64_t> bucket_counts, double sum) {
    start();
    out_.add_histogram(labels, bounds, bucket_counts, sum);
  }

 private:
  void start() {
    if (!started_) out_.family(name_, help_, type_);
    started_ = true;
  }
  MetricsWriter& out_;
  std::string_view name_;
  std::string_view help_;
  MetricType type_;
  bool started_ = false;
};

// Shortest round-trip decimal (std::to_chars), so JSON records are byte-identical across runs.
void append_double(std::string& out, double v);
// RFC 3339 UTC with milliseconds: 2026-11-24T10:00:00.000Z (SPEC 5).

}  // namespace sp
