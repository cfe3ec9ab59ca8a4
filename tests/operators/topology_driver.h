#pragma once
// Test harness in the spirit of Kafka Streams' TopologyTestDriver: drives the runtime core
// (operators/topology.h, window operators only) exactly as the runner does, with a virtual wall
// clock, per-partition offsets, dedup, and checkpoints into an in-memory store instead of Kafka and
// RocksDB.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "operators/keyed_state.h"
#include "operators/operator.h"
#include "operators/settings.h"
#include "operators/topology.h"
#include "operators/vocabulary.h"
#include "operators/watermark_tracker.h"

namespace sp::testing {

// An event plus the strings its views point into (Event only borrows them).
struct OwnedEvent {
  PartitionId partition;
  Event event;
  std::string id;
  std::string actor_id;
  std::string brand_name;

  OwnedEvent() = default;
  OwnedEvent(const OwnedEvent& o) { *this = o; }
  OwnedEvent& operator=(const OwnedEvent& o);
  // Re-points the views at this object's strings (after copies).
  void bind();
};

std::optional<EventTime> parse_time(std::string_view s);   // 2026-11-24T10:00:05[.123]Z
std::optional<Millis> parse_duration(std::string_view s);  // 500ms, 10s, 1m, 2h
// `p=0 t=2026-11-24T10:00:05Z brand=acme channel=twitter type=like count=1 actor=u1
//  sentiment=-0.5 rating=4 reach=100 followers=10 value=12.5 id=e1` (p, t, brand, type required).
Result<OwnedEvent> parse_event_line(std::string_view line, const Vocabulary& vocabulary);

// Contract: pipe() = one consumed message, handed to Topology::process as the runner does (next
// offset of its partition; an event without id gets a key of its own, so it is never a
// duplicate); the wall clock moves only on advance_wall_clock(); every emitted record is kept in
// records().
class TopologyDriver {
 public:
  TopologyDriver(std::vector<WindowSpec> windows, Vocabulary vocabulary,
                 WatermarkSettings watermark, WallTime start, KpiSettings kpi = {},
                 EmvSettings emv = {});

  void assign(PartitionId partition);
  void set_lag(PartitionId partition, bool lagging);
  void pipe(PartitionId partition, const Event& event);
  void pipe(const OwnedEvent& event) { pipe(event.partition, event.event); }
  void advance_wall_clock(Millis d);
  void checkpoint();  // before_checkpoint (emit mode `update`) + a checkpoint into the store
  // The keys the last checkpoint wrote or removed, in write order.
  const std::vector<std::string>& last_checkpoint_keys() const { return last_checkpoint_keys_; }

  // Checkpoints into the in-memory store, restores a freshly built Topology from it (replacing the
  // current one), and checks that the restored state checkpoints to the same keys and bytes.
  // `rewrite`, when given, changes the stored keys before the restore (an older format of them):
  // the restored state must still checkpoint to what was stored before it.
  ::testing::AssertionResult snapshot_and_restore(
      const std::function<void(MemoryState&)>& rewrite = {});
  // The checkpoints snapshot_and_restore() writes, without the restore: a run compared with a
  // restored one writes the same history of keys (a window's deltas depend on it).
  void checkpoints_of_a_restore();
  // Checkpoints, then every stored key but the dedup segments (whose boundaries follow the
  // checkpoint times): equal maps = equal state.
  std::map<std::string, std::string> snapshot_all();

  const std::vector<OutputRecord>& records() const { return records_; }
  // Every collect() of every operator as sorted Prometheus-like text lines.
  std::string metrics_text() const;
  WallTime now() const { return now_; }
  const WatermarkTracker& tracker() const { return topology_->tracker(); }
  const std::vector<std::unique_ptr<Operator>>& operators() const { return topology_->operators(); }
  Topology& topology() { return *topology_; }

 private:
  void build();
  void store_checkpoint();
  std::vector<std::string> last_checkpoint_keys_;
  void drain();  // moves the Topology's pending output to records_
  void on_idle();

  std::vector<WindowSpec> windows_;
  Vocabulary vocabulary_;
  WatermarkSettings watermark_settings_;
  KpiSettings kpi_;
  EmvSettings emv_;
  WallTime now_;
  std::set<PartitionId> assigned_;
  std::set<PartitionId> lagging_;
  std::unique_ptr<Topology> topology_;
  std::map<PartitionId, Offset> next_offset_;  // next to hand out, per partition
  uint64_t anonymous_events_ = 0;
  MemoryState store_;
  std::vector<OutputRecord> records_;
};

}  // namespace sp::testing
