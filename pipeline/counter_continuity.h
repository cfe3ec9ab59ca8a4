#pragma once
// Counters that mean "counted by this instance" (issue #15 item 4). The Topology's counters (and
// histograms: their buckets and sums are counters to Prometheus) are sums over the partitions an
// instance owns, so they jump when a partition arrives with its history and drop when it leaves.
// Prometheus keeps one series per instance: each exported counter is the Topology's value plus an
// offset per series that absorbs every such jump (a rebalance changes the sums by exactly what
// moved), and the exported values are durable state of the instance, so a restart continues from
// them. No exported counter ever goes down; summed over instances, increase() counts each event
// once, wherever its partition went.
#include <absl/container/flat_hash_map.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "operators/keyed_state.h"
#include "operators/metrics_writer.h"

namespace sp {

class Topology;

// Contract: one thread; rebalance() around every Topology::assign()/revoke() batch.
class CounterContinuity {
 public:
  CounterContinuity() = default;
  // Its index points into its own series: never copied.
  CounterContinuity(const CounterContinuity&) = delete;
  CounterContinuity& operator=(const CounterContinuity&) = delete;

  // Instance-scope state owner of the exported values (kReservedStateOwners).
  static constexpr std::string_view kOwner = "instance";

  // Once, after Topology::restore_global() and before the first assign(): the values exported
  // before the restart are where the counters continue.
  Status restore(StateReader& in, const Topology& topology);
  // Call before() then change the owned partitions then after(): the change is absorbed.
  void before(const Topology& topology);
  void after(const Topology& topology);
  // The exported values that changed since the last checkpoint (full keys, instance scope): one
  // key a checkpoint, a delta, or now and then a base with every value (issue #20: one key per
  // changed series was half of a checkpoint's RocksDB inserts).
  void checkpoint(const Topology& topology, StateWriter& out);
  // The keys of the last checkpoint() were written: they are now what the store holds. Without
  // it (a failed write) the next checkpoint() writes the same changes again.
  void committed();

  // Writes the Topology's counts and metrics (collect_counts, then `between`, then collect) into
  // `out`, counters continued; series that only the offsets still know (their partitions left)
  // included. Remembers the counters' values written, for published().
  void collect(const Topology& topology, MetricsWriter& out,
               const std::function<void()>& between) const;
  // The values of the last collect() are now on /metrics. Every checkpoint also stores the values
  // last published, so that a restart which finds its last checkpoints missing from the
  // changelog continues from those (roll_back_to_published()).
  void published();

  // Into `out`: the exported values a restart continues from become the values last published
  // (a restart whose last checkpoints another member will count again; StateChangelog::
  // roll_back()). Before restore().
  static Status roll_back_to_published(StateReader& in, StateWriter& out);

 private:
  // A counter is one value; a histogram its bucket counts (per bucket, +Inf last), then its sum.
  using Value = std::vector<double>;
  // One series and what is known of it. The working values are fields, not maps rebuilt each
  // pass (issue #20: at 64 partitions the maps' allocations and string comparisons cost more
  // than the Topology's own collect); a pass number says which of them the last pass set.
  struct Series {
    std::string family;
    std::string help;
    std::vector<std::pair<std::string, std::string>> labels;
    bool histogram = false;
    std::vector<double> bounds;  // histograms
    Value offset;
    // The highest value the series was exported with: offsets absorb a moved partition's sums
    // exactly only in exact arithmetic, and a real sum recomputed in another order may come out
    // an ulp lower, which a scraper reads as a reset.
    Value floor;
    Value now;  // the Topology's value, when now_pass is the last gather()'s
    uint64_t now_pass = 0;
    Value collected;  // exported by the collect() numbered collected_pass
    uint64_t collected_pass = 0;
    uint64_t seen_pass = 0;  // written by the Topology in that collect()
    Value published;         // on /metrics (empty: not published)
    Value persisted;         // exported value as last written (when is_persisted)
    bool is_persisted = false;
    Value persisted_published;  // published as last written (when is_persisted_published)
    bool is_persisted_published = false;
    // Its position among the stored base's exported values (a delta names it by that), and in
    // the base the last checkpoint() wrote.
    size_t base_position = kNoPosition;
    size_t pending_position = kNoPosition;
  };
  static constexpr size_t kNoPosition = SIZE_MAX;
  using Values = std::map<std::string, Value>;  // encoded series -> value
  // Series and their new values, in key order.
  struct Change {
    const std::string* key;
    Series* series;
    Value value;
  };
  using Changes = std::vector<Change>;
  // What a segment lists, in key order.
  struct EntryRef {
    const std::string* key;
    Series* series;
    const Value* value;
  };
  using EntryRefs = std::vector<EntryRef>;
  // The series of `key`, added (unknown so far) with nothing but its key; true when added.
  std::pair<Series&, bool> find_or_add(const std::string& key) const;
  Series& series_at(const std::string& key) const;
  void erase_series(const std::string& key);
  // One Topology pass (collect_counts, then collect, gauges skipped): each series' `now`.
  void gather(const Topology& topology) const;
  // gather(), as a map (restore and rebalances, not every checkpoint).
  Values raw(const Topology& topology);
  // One series' value as stored in a segment (after `out`), by its base position when
  // `by_position` and it has one; false, and nothing appended, when it cannot be stored (a
  // histogram whose bounds changed).
  static bool put_entry(std::string& out, const std::string& key, const Series& s,
                        const Value& value, bool by_position);
  // A segment: the exported values, then the published ones. A base lists every series whole
  // and numbers its exported ones (pending_position); a delta names them by base position.
  static void put_segment(std::string& out, const EntryRefs& exported, const EntryRefs& published,
                          bool base);
  // What a delta lists: the changes alone.
  static void refs_of(const Changes& changes, EntryRefs& out);
  // What a base lists: every stored value (`Series::*stored` of each series whose
  // `Series::*stored_flag` is set) with the changes applied.
  void refs_after(const Changes& changes, Value Series::*stored, bool Series::*stored_flag,
                  EntryRefs& out) const;
  // Where the stored values are: a base key and the deltas written after it.
  struct Stored {
    bool base = false;
    uint32_t deltas = 0;
    size_t base_bytes = 0;
    size_t delta_bytes = 0;
  };

  // Encoded series; collect() adds the series it meets first (const: its passes are bookkeeping).
  mutable std::map<std::string, Series> series_;
  mutable absl::flat_hash_map<std::string_view, Series*> index_;  // series_ by key
  mutable uint64_t pass_ = 0;                                     // gather() passes
  mutable uint64_t collect_pass_ = 1;  // collect() calls (published() ends one)
  Values before_;
  Stored stored_;
  // What the last checkpoint() wrote, for committed().
  Stored pending_stored_;
  Changes pending_exported_;
  Changes pending_published_;
  // Format 1 keys (one per series) read by restore(): the next checkpoint writes a base and
  // removes them.
  std::vector<std::string> legacy_keys_;
  bool legacy_pending_ = false;  // the last checkpoint() removed legacy_keys_
  bool pending_base_ = false;    // the last checkpoint() wrote a base
  std::string segment_;
  EntryRefs exported_refs_;
  EntryRefs published_refs_;
  Value scratch_;
};

}  // namespace sp
