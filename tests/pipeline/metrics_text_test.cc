#include "pipeline/metrics_text.h"

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <array>
#include <cmath>
#include <limits>
#include <sstream>

namespace sp {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;


std::string reference(const MetricsSnapshot& snapshot) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, snapshot);
  return std::move(out).str();
}

std::string ours(const MetricsSnapshot& snapshot) {
  std::string out;
  write_metrics_text(snapshot, out);
  return out;
}

ClientMetric labelled(std::vector<ClientMetric::Label> labels) {
  ClientMetric m;
  m.label = std::move(labels);
  return m;
}

TEST(MetricsText, ValuesAreWrittenExactlyLikePrometheusCpp) {
  const double values[] = {0.0, -0.0, 1.0, 1.5, -2.25, 0.1, 1.0 / 3.0, 123456789.0, 1234567890123456789.0,
                           1e-300, 5e-324, 1e300, std::numeric_limits<double>::max(), 42e9, 0.000123,
                           std::nan(""), std::numeric_limits<double>::infinity(),
                           -std::numeric_limits<double>::infinity()};
  MetricFamily gauge{"socialpulse_test_gauge", "values of every shape", prometheus::MetricType::Gauge, {}};
  int i = 0;
  for (double v : values) {
    ClientMetric m = labelled({{"i", std::to_string(i++)}});
    m.gauge.value = v;
    gauge.metric.push_back(m);
  }
  const MetricsSnapshot snapshot{gauge};
  EXPECT_EQ(ours(snapshot), reference(snapshot));
}

TEST(MetricsText, LabelValuesAreEscapedLikePrometheusCpp) {
  MetricFamily counter{"socialpulse_test_total", "", prometheus::MetricType::Counter, {}};  // no HELP line
  ClientMetric m = labelled({{"brand", "a\"b\\c\nd"}, {"channel", ""}, {"type", "caf\xc3\xa9"}});
  m.counter.value = 7;
  counter.metric.push_back(m);
  ClientMetric bare;  // no labels at all
  bare.counter.value = 3;
  bare.timestamp_ms = 1764590400123;
  counter.metric.push_back(bare);
  const MetricsSnapshot snapshot{counter};
  EXPECT_EQ(ours(snapshot), reference(snapshot));
}

TEST(MetricsText, HistogramsSummariesAndUntypedLikePrometheusCpp) {
  MetricFamily histogram{"socialpulse_test_seconds", "a histogram", prometheus::MetricType::Histogram, {}};
  ClientMetric h = labelled({{"brand", "acme"}});
  h.histogram.sample_count = 12;
  h.histogram.sample_sum = 3.75;
  for (double b : {0.005, 0.1, 1.0, 60.0, 86400.0}) {
    h.histogram.bucket.push_back({static_cast<uint64_t>(b * 2) + 1, b});
  }
  histogram.metric.push_back(h);
  ClientMetric with_inf;  // last bucket already +Inf: no extra bucket line
  with_inf.histogram.sample_count = 2;
  with_inf.histogram.bucket.push_back({1, 0.5});
  with_inf.histogram.bucket.push_back({2, std::numeric_limits<double>::infinity()});
  histogram.metric.push_back(with_inf);
  MetricFamily summary{"socialpulse_test_summary", "a summary", prometheus::MetricType::Summary, {}};
  ClientMetric s = labelled({{"k", "v"}});
  s.summary.sample_count = 5;
  s.summary.sample_sum = 10.5;
  s.summary.quantile = {{0.5, 2.0}, {0.99, 4.5}};
  summary.metric.push_back(s);
  MetricFamily untyped{"socialpulse_test_untyped", "untyped", prometheus::MetricType::Untyped, {}};
  ClientMetric u;
  u.untyped.value = -1.25;
  untyped.metric.push_back(u);
  const MetricsSnapshot snapshot{histogram, summary, untyped};
  EXPECT_EQ(ours(snapshot), reference(snapshot));
}

TEST(MetricsText, ARegistrySnapshotMatchesPrometheusCpp) {
  MetricsRegistry r(1000);
  r.begin();
  r.family("socialpulse_interactions_total", "Interactions", sp::MetricType::counter);
  for (int b = 0; b < 5; ++b) {
    for (int t = 0; t < 12; ++t) {
      const std::array<LabelPair, 2> labels{{{"brand", "brand" + std::to_string(b)}, {"type", "t" + std::to_string(t)}}};
      r.add(labels, b * 1000.5 + t / 7.0);
    }
  }
  r.family("socialpulse_checkpoint_duration_seconds", "Checkpoints", sp::MetricType::histogram);
  const std::array<double, 4> bounds{0.001, 0.01, 0.1, 1};
  const std::array<uint64_t, 5> counts{1, 2, 3, 4, 5};
  r.add_histogram({}, bounds, counts, 1.2345);
  const auto snapshot = r.finish();
  EXPECT_EQ(ours(*snapshot), reference(*snapshot));
}

}  // namespace
}  // namespace sp
