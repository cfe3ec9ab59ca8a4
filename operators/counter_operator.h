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
  // Per partition `cells` (byte_codec, packed): every touched brand x channel pair and each
  // brand's ideas, brands, channels, types and roles by name; then (issue #20) `cells/<n>`, the
  // same layout holding only the cells counted since the previous checkpoint, which restore
  // applies over it in order. `cells` is rewritten (the deltas removed) after kMaxDeltas, once
  // they would outweigh it, or when half the touched cells changed. Written only after the
  // partition counted something. Format 3 (`cells` alone) and format 2 keys
  // (`cell/<brand>/<channel>`, `ideas/<brand>`) are still read, and rewritten.
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
  enum class Write : uint8_t { none, base, delta };
  struct PartitionState {
    std::vector<Cell> cells;               // brand * channel_count + channel
    std::vector<int64_t> ideas;            // brand * kRoleCount + role
    bool unsaved = true;                   // counted since the last saved()
    std::vector<std::string> legacy_keys;  // format 2 keys restored from: removed when rewritten
    // Cells counted since the last saved(): a flag per cell and their indexes.
    std::vector<uint8_t> changed;
    std::vector<uint32_t> changed_cells;
    bool rebase = true;          // the next snapshot writes `cells` whole (and removes the deltas)
    uint32_t stored_deltas = 0;  // cells/<n> beside the stored base, n < stored_deltas
    size_t stored_base_bytes = 0;
    size_t stored_delta_bytes = 0;
    // What the last snapshot wrote, applied by saved().
    mutable Write pending = Write::none;
    mutable size_t pending_bytes = 0;
  };

  PartitionState fresh_state() const;
  // Decodes a `cells` value or delta (`key` names it in errors) over `s`: the cells and ideas it
  // lists replace those of `s`. Sets s.unsaved when it dropped a brand or channel. Returns the
  // format version it read.
  Result<uint64_t> decode_packed(std::string_view key, std::string_view bytes, StateReader& in,
                                 PartitionState& s) const;
  // Appends the packed layout of `s`'s touched cells (or, `only_changed`, of those counted since
  // the last saved()) and its ideas.
  void encode_packed(const PartitionState& s, bool only_changed, std::string& out) const;
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
  // collect()'s sum over the partitions, kept until a partition's counts change (process(),
  // restore(), drop()): a checkpoint collects several times with nothing counted in between
  // (issue #20: at 256 partitions each sum merged 7 680 cells, the largest part of an idle
  // checkpoint). Same order of summation as before, so the same doubles.
  mutable PartitionState total_;
  mutable bool total_valid_ = false;
};

}  // namespace sp
