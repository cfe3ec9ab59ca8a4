#pragma once
// Cumulative KPI counters of SPEC 4 (interactions, reach, opinion, EMV, web visits, leads, ideas,
// care response histogram) plus the configured daily-spend gauge.
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "operators/measures.h"
#include "operators/operator.h"
#include "operators/partition_states.h"
#include "operators/settings.h"
#include "operators/spend_table.h"
#include "operators/vocabulary.h"

namespace sp {

// Counts every event handed to process() (late ones included) into dense per-partition arrays;
// collect() sums the partitions. Never allocates per event once a partition is known.
class CounterOperator final : public Operator {
 public:
  static constexpr std::array<double, 7> kCareBounds = {60, 300, 900, 1800, 3600, 14400, 86400};
  static constexpr size_t kCareBuckets = kCareBounds.size() + 1;  // + Inf

  // Fixed spend in roi.currency EUR (tests, benchmarks).
  CounterOperator(Vocabulary vocabulary, std::vector<SpendEntry> spend);
  // `spend` is shared with whoever reloads it (Topology::spend_table()).
  CounterOperator(std::shared_ptr<const SpendTable> spend, Vocabulary vocabulary);
  CounterOperator(const CounterOperator&) = delete;  // used through Operator: never copied
  CounterOperator& operator=(const CounterOperator&) = delete;

  std::string_view name() const override { return "kpi_counters"; }
  void process(const ProcessContext& ctx, const Event& event) override;
  // One key per partition, `cells` (byte_codec, packed): every touched brand x channel pair and
  // each brand's ideas, brands, channels, types and roles by name. Written only after the
  // partition counted something. Format 2 keys (`cell/<brand>/<channel>`, `ideas/<brand>`) are
  // still read, and removed when `cells` replaces them.
  void snapshot(PartitionId partition, StateWriter& out) const override;
  Status restore(PartitionId partition, StateReader& in) override;
  bool needs_snapshot(PartitionId partition, bool touched) const override;
  void saved() override;
  void drop(PartitionId partition) override;
  void collect(MetricsWriter& out) const override;
  size_t state_bytes() const override;

 private:
  // All counters of one brand x channel pair: the measures plus the care-response histogram.
  struct Cell : Measures {
    std::array<uint64_t, kCareBuckets> care_buckets{};
    double care_sum = 0.0;

    void merge(const Cell& other) {
      Measures::merge(other);
      for (size_t k = 0; k < kCareBuckets; ++k) care_buckets[k] += other.care_buckets[k];
      care_sum += other.care_sum;
    }
  };
  struct PartitionState {
    std::vector<Cell> cells;               // brand * channel_count + channel
    std::vector<int64_t> ideas;            // brand * kRoleCount + role
    bool unsaved = true;                   // counted since the last saved()
    std::vector<std::string> legacy_keys;  // format 2 keys restored from: removed when rewritten
  };

  PartitionState fresh_state() const;
  Status decode_packed(std::string_view bytes, StateReader& in, PartitionState& s) const;
  size_t cell_index(BrandIndex b, ChannelIndex c) const {
    return static_cast<size_t>(b) * vocabulary_.channel_count() + c;
  }

  Vocabulary vocabulary_;
  std::shared_ptr<const SpendTable> spend_;
  // Ordered so that collect() sums partitions in a fixed order: identical doubles on every run.
  PartitionStates<PartitionState> partitions_;
  std::vector<size_t> brands_by_name_;  // brand indexes in name order
  std::vector<size_t> cells_by_name_;   // cell indexes in (brand name, channel name) order
  mutable std::string scratch_;         // snapshot buffer
};

}  // namespace sp
