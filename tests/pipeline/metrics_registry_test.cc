#include "pipeline/metrics_registry.h"

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <array>
#include <map>

namespace sp {
namespace {

const prometheus::MetricFamily* find(const MetricsSnapshot& s, const std::string& name) {
  for (const auto& f : s) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

TEST(MetricsRegistry, MergesSamplesWithTheSameLabels) {
  MetricsRegistry r(100);
  r.begin();
  const std::array<LabelPair, 1> acme{{{"brand", "acme"}}};
  r.family("x_total", "help", MetricType::counter);
  r.add(acme, 2);
  r.family("x_total", "help", MetricType::counter);  // a second operator/partition
  r.add(acme, 3);
  auto snap = r.finish();
  const auto* f = find(*snap, "x_total");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(f->metric.size(), 1u);
  EXPECT_EQ(f->metric[0].counter.value, 5);
}

size_t total_series(const MetricsSnapshot& s) {
  size_t n = 0;
  for (const auto& f : s) n += f.metric.size();
  return n;
}

TEST(MetricsRegistry, FoldsSeriesBeyondTheCapIntoOther) {
  MetricsRegistry r(5);
  r.begin();
  r.family("y_total", "help", MetricType::counter);
  for (const char* b : {"a", "b", "c", "d", "e"}) {
    const std::array<LabelPair, 2> labels{{{"brand", b}, {"type", "like"}}};
    r.add(labels, 1);
  }
  auto snap = r.finish();
  EXPECT_LE(total_series(*snap), 5u);
  const auto* f = find(*snap, "y_total");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(f->metric.size(), 3u);  // a, b and the `other` fold of c, d, e
  EXPECT_EQ(f->metric[2].label[0].value, "other");
  EXPECT_EQ(f->metric[2].label[1].value, "like");  // only brand/channel labels fold
  EXPECT_EQ(f->metric[2].counter.value, 3);
  const auto* folded = find(*snap, "socialpulse_series_folded_total");
  ASSERT_NE(folded, nullptr);
  ASSERT_EQ(folded->metric.size(), 2u);
  EXPECT_EQ(folded->metric[0].label[0].value, "summed");
  EXPECT_EQ(folded->metric[0].counter.value, 3);
  EXPECT_EQ(folded->metric[1].label[0].value, "dropped");
  EXPECT_EQ(folded->metric[1].counter.value, 0);
}

// A counter's own `other` series (every foldable label "other") has its room reserved: it never
// takes a place that a brand's series could keep, even when it was exposed first.
TEST(MetricsRegistry, ACountersOwnOtherSeriesTakesNoRoomFromTheBrands) {
  MetricsRegistry r(5);  // folded_total{kind} x 2, `other` reserved: two places for brands
  r.begin();
  r.family("y_total", "help", MetricType::counter);
  for (const char* b : {"a", "other", "b", "c"}) {
    const std::array<LabelPair, 1> labels{{{"brand", b}}};
    r.add(labels, 1);
  }
  auto snap = r.finish();
  const auto* f = find(*snap, "y_total");
  ASSERT_NE(f, nullptr);
  std::map<std::string, double> got;
  for (const auto& m : f->metric) got[m.label[0].value] = m.counter.value;
  EXPECT_EQ(got, (std::map<std::string, double>{{"a", 1}, {"b", 1}, {"other", 2}}));
}

// One snapshot of a counter and a gauge family over `brands`, in that exposition order.
std::shared_ptr<const MetricsSnapshot> brands_snapshot(MetricsRegistry& r,
                                                      const std::vector<std::string>& brands) {
  r.begin();
  r.family("c_total", "help", MetricType::counter);
  for (const auto& b : brands) {
    const std::array<LabelPair, 1> labels{{{"brand", b}}};
    r.add(labels, 1);
  }
  r.family("g_index", "help", MetricType::gauge);
  for (const auto& b : brands) {
    const std::array<LabelPair, 1> labels{{{"brand", b}}};
    r.add(labels, 50);
  }
  return r.finish();
}

std::vector<std::string> brands_of(const MetricsSnapshot& s, const std::string& family) {
  std::vector<std::string> out;
  for (const auto& m : find(s, family)->metric) out.push_back(m.label[0].value);
  return out;
}

TEST(MetricsRegistry, GaugesBeyondTheCapAreDroppedNeverSummed) {
  // Issue #17: an `other` reputation index summing several brands' indexes meant nothing.
  // Budget 8 - 2 (folded_total) - 1 (room for c_total's `other`) = 5: the four counters, one
  // gauge (admission order: first come, first kept).
  MetricsRegistry r(8);
  auto snap = brands_snapshot(r, {"a", "b", "c", "d"});
  EXPECT_LE(total_series(*snap), 8u);
  EXPECT_EQ(brands_of(*snap, "c_total"), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(brands_of(*snap, "g_index"), (std::vector<std::string>{"a"}));
  EXPECT_EQ(find(*snap, "g_index")->metric[0].gauge.value, 50);  // never a sum
  const auto* folded = find(*snap, "socialpulse_series_folded_total");
  EXPECT_EQ(folded->metric[0].counter.value, 0);  // summed
  EXPECT_EQ(folded->metric[1].counter.value, 3);  // dropped: g_index{b,c,d}
}

TEST(MetricsRegistry, KeptSeriesAreFirstComeFirstKeptWhateverTheExpositionOrder) {
  MetricsRegistry r(8);
  brands_snapshot(r, {"m", "n"});           // first seen: m and n, all kept (under the cap)
  auto snap = brands_snapshot(r, {"a", "b", "m", "n"});  // a, b sort first but came later
  // Budget 5: the four series seen first (m, n), then c_total{a}; c_total{b} is summed into
  // `other`, g_index{a}, g_index{b} dropped.
  EXPECT_EQ(brands_of(*snap, "c_total"), (std::vector<std::string>{"a", "m", "n", "other"}));
  EXPECT_EQ(brands_of(*snap, "g_index"), (std::vector<std::string>{"m", "n"}));
}

TEST(MetricsRegistry, AdmissionOrderSurvivesARestart) {
  MetricsRegistry before(8);
  brands_snapshot(before, {"m", "n"});
  EXPECT_TRUE(before.admitted_changed());
  ASSERT_EQ(before.admitted_chunks(), 1u);
  const std::string bytes = before.encode_admitted_chunk(0);
  before.mark_admitted_written();
  EXPECT_FALSE(before.admitted_changed());

  MetricsRegistry after(8);
  ASSERT_TRUE(after.restore_admitted({bytes}));
  EXPECT_FALSE(after.admitted_changed());
  auto snap = brands_snapshot(after, {"a", "b", "m", "n"});
  EXPECT_EQ(brands_of(*snap, "g_index"), (std::vector<std::string>{"m", "n"}));
  EXPECT_FALSE(after.restore_admitted({bytes.substr(0, bytes.size() - 1)}));
}

TEST(MetricsRegistry, AdmissionIsWrittenInChunksThatOnlyGrow) {
  constexpr size_t kChunk = MetricsRegistry::kAdmittedChunk;
  MetricsRegistry r(10 * kChunk);
  auto snapshot_of = [&r](size_t brands) {
    std::vector<std::string> names;
    for (size_t b = 0; b < brands; ++b) names.push_back("b" + std::to_string(b));
    return brands_snapshot(r, names);
  };
  snapshot_of(kChunk / 2 + 10);  // 2 families: kChunk + 20 series, two chunks
  ASSERT_EQ(r.admitted_chunks(), 2u);
  EXPECT_EQ(r.first_unwritten_chunk(), 0u);
  std::vector<std::string> stored = {r.encode_admitted_chunk(0), r.encode_admitted_chunk(1)};
  r.mark_admitted_written();
  snapshot_of(kChunk + 10);  // 1024 more: chunk 1 fills, chunk 2 starts
  EXPECT_EQ(r.first_unwritten_chunk(), 1u);  // chunk 0 is not rewritten
  ASSERT_EQ(r.admitted_chunks(), 3u);
  stored[1] = r.encode_admitted_chunk(1);
  stored.push_back(r.encode_admitted_chunk(2));
  MetricsRegistry restored(10 * kChunk);
  ASSERT_TRUE(restored.restore_admitted(stored));
  EXPECT_EQ(restored.admitted_chunks(), 3u);
  for (size_t c = 0; c < 3; ++c) EXPECT_EQ(restored.encode_admitted_chunk(c), stored[c]) << c;
  EXPECT_FALSE(restored.restore_admitted({stored[2], stored[0]}))
      << "a short chunk before the last: chunks missing or out of order";
  EXPECT_EQ(restored.admitted_chunks(), 3u);  // unchanged by the refused restore
}

TEST(MetricsRegistry, CapIsHardAcrossFamiliesAndKeepsTotals) {
  MetricsRegistry r(60);
  r.begin();
  double expected = 0;
  for (const char* family : {"a_total", "b_total", "c_total"}) {
    r.family(family, "help", MetricType::counter);
    for (int brand = 0; brand < 10; ++brand) {
      for (int channel = 0; channel < 10; ++channel) {
        const std::string b = "b" + std::to_string(brand), c = "c" + std::to_string(channel);
        const std::array<LabelPair, 2> labels{{{"brand", b}, {"channel", c}}};
        r.add(labels, brand * 10 + channel);
        if (std::string(family) == "a_total") expected += brand * 10 + channel;
      }
    }
  }
  r.family("unlabelled_total", "help", MetricType::counter);
  r.add({}, 1);
  auto snap = r.finish();
  EXPECT_LE(total_series(*snap), 60u);
  double sum = 0;
  for (const auto& m : find(*snap, "a_total")->metric) sum += m.counter.value;
  EXPECT_EQ(sum, expected);  // folding moves values, never drops them
  EXPECT_NE(find(*snap, "unlabelled_total"), nullptr);
}

TEST(MetricsRegistry, HistogramBucketsAreCumulative) {
  MetricsRegistry r(100);
  r.begin();
  r.family("h_seconds", "help", MetricType::histogram);
  const std::array<double, 2> bounds{1, 5};
  const std::array<uint64_t, 3> counts{2, 3, 1};
  r.add_histogram({}, bounds, counts, 20);
  auto snap = r.finish();
  const auto* f = find(*snap, "h_seconds");
  ASSERT_NE(f, nullptr);
  const auto& h = f->metric[0].histogram;
  ASSERT_EQ(h.bucket.size(), 3u);
  EXPECT_EQ(h.bucket[0].cumulative_count, 2u);
  EXPECT_EQ(h.bucket[1].cumulative_count, 5u);
  EXPECT_EQ(h.bucket[2].cumulative_count, 6u);
  EXPECT_EQ(h.sample_count, 6u);
  EXPECT_EQ(h.sample_sum, 20);
  const std::string text = prometheus::TextSerializer().Serialize(*snap);
  EXPECT_NE(text.find("h_seconds_bucket{le=\"+Inf\"} 6"), std::string::npos) << text;
}

}  // namespace
}  // namespace sp
