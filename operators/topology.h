#pragma once
// The runtime core, free of Kafka and storage: the operators, the watermark tracker, the output
// emitted since the last checkpoint and, per owned input partition, its dedup state, message
// accounting and next offset. The runner (pipeline/runner.cc) feeds it consumed messages and
// stores what checkpoint() writes; the test driver and bench_operators drive this same class, so
// there is one drive loop.
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "operators/counter_operator.h"
#include "operators/deduplicator.h"
#include "operators/keyed_state.h"
#include "operators/operator.h"
#include "operators/settings.h"
#include "operators/vocabulary.h"
#include "operators/watermark_tracker.h"

namespace sp {

// State owners besides the operators, and the KPI operators' names: a window may not be named so.
// "instance": the instance's own exported counters (pipeline/counter_continuity.h).
inline constexpr std::array<std::string_view, 7> kReservedStateOwners = {
    "input", "dedup", "tracker", "topology", "kpi_counters", "kpi_reputation", "instance"};

struct TopologySpec {
  Vocabulary vocabulary{{}, {}};
  std::vector<WindowSpec> windows;
  KpiSettings kpi;
  EmvSettings emv;
  SpendValues spend;
  // false: window operators only (the window golden tests isolate them from the KPI operators).
  bool kpi_operators = true;
  WatermarkSettings watermark;
  Millis dedup_horizon{15 * 60 * 1000};
};

// SPEC 1 accounting of one partition's consumed messages:
// consumed = accepted + duplicate + sum(rejected); every rejected message also goes to the DLQ.
struct MessageCounts {
  uint64_t consumed = 0;
  uint64_t accepted = 0;
  uint64_t duplicate = 0;
  uint64_t dlq = 0;
  std::array<uint64_t, kRejectReasonCount> rejected{};
  void add(const MessageCounts& other);
};

// Contract: assign() a partition (restoring it) before handing it messages; process()/reject()
// each consumed message once, in offset order (older offsets are ignored: librdkafka may re-deliver
// around seeks); checkpoint() then checkpoint_committed() once the store made it durable.
class Topology {
 public:
  // One owned partition. Stable address until revoke(): the runner keeps it per message batch.
  struct Partition {
    PartitionId id;
    std::optional<Offset> next_offset;  // nothing consumed yet: nullopt
    MessageCounts counts;
    Deduplicator dedup;
    bool dirty = true;  // changed since the last committed checkpoint
    // Restored from a position of format 1, whose clock and dedup header have keys of their
    // own: the next checkpoint removes them (format 2 holds both).
    bool separate_keys = false;
    explicit Partition(PartitionId p, Millis horizon) : id(p), dedup(horizon) {}
  };
  enum class Outcome { stale, accepted, duplicate, rejected };

  explicit Topology(TopologySpec spec);
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;

  // Instance-level state, once before the first assign(). `in` holds full keys (state_scope()).
  Status restore_global(StateReader& in);
  // Restores the partition from `in` (no keys: fresh) and owns it from now on.
  Result<Partition*> assign(PartitionId partition, StateReader& in);
  // Forgets the partition (after its final checkpoint). Advances the watermark when the partition
  // was holding it back.
  void revoke(PartitionId partition);
  Partition* find(PartitionId partition);
  const std::map<PartitionId, std::unique_ptr<Partition>>& partitions() const { return owned_; }

  // Hot path, one call per consumed message. `wall`: the caller's clock.
  Outcome process(Partition& p, Offset offset, const Event& event, const Deduplicator::Key& key,
                  WallTime wall);
  Outcome reject(Partition& p, Offset offset, RejectReason reason, WallTime wall);
  // Re-evaluates idleness (has_lag(p): unread messages or paused) and closes what is due.
  void on_idle(WallTime wall, const std::function<bool(PartitionId)>& has_lag);

  // Output emitted since the last checkpoint (window records, alerts): the caller stores it with
  // the checkpoint and clears it once committed.
  std::vector<OutputRecord>& pending() { return pending_; }
  // Emit-mode `update` records of open windows; call before checkpoint().
  void before_checkpoint();
  // Writes what changed since the last committed checkpoint, as full keys (state_scope()): each
  // operator's partitions that need it (Operator::needs_snapshot), the tracker, dedup delta, offset
  // and counts of partitions that had input, and the instance-level state. Idle partitions cost
  // nothing once their operators' state settled (issue #20).
  void checkpoint(StateWriter& out);
  void checkpoint_committed();
  // Ahead of the next checkpoint (issue #20): the dedup ids of every partition with input since
  // the last committed checkpoint and at least `min_ids` of them, as segments that checkpoint's
  // headers will name (Deduplicator::write_ahead()), so that the checkpoint itself, which what
  // /metrics shows waits for, writes only the ids remembered after this. A partition with fewer
  // is left to the checkpoint: a segment of a few ids would cost a key (and a changelog record)
  // for the whole horizon. Returns the partitions written; write_ahead_committed() once `out`'s
  // batch is written, with no event in between.
  size_t write_ahead(StateWriter& out, size_t min_ids);
  void write_ahead_committed();
  // The dedup ids write_ahead(out, min_ids) would write.
  size_t dedup_unwritten_ids(size_t min_ids) const;
  // What the last checkpoint() wrote per owner, partition scopes only (diagnostics: bench_e2e's
  // debug log, benchmarks/RESULTS.md); the tracker and input rows count no bytes.
  struct WrittenState {
    std::string_view owner;
    size_t partitions = 0;  // partitions written (operators)
    size_t keys = 0;        // puts and removes
    size_t bytes = 0;       // key + value bytes
  };
  const std::vector<WrittenState>& checkpoint_profile() const { return profile_; }

  // socialpulse_events_*_total, socialpulse_dlq_messages_total, socialpulse_events_rejected_total.
  void collect_counts(MetricsWriter& out) const;
  // Every operator's metrics and socialpulse_state_dropped_keys_total.
  void collect(MetricsWriter& out) const;

  EventTime watermark() const { return tracker_.pipeline_watermark(); }
  EventTime partition_watermark(PartitionId p) const { return tracker_.partition_watermark(p); }
  MessageCounts total_counts() const;
  size_t state_bytes() const;  // in memory: operators + dedup
  const Vocabulary& vocabulary() const { return spec_.vocabulary; }
  const WatermarkTracker& tracker() const { return tracker_; }
  // roi.currency and roi.daily_spend as exported; thread-safe, so a SIGHUP reload may replace
  // them from another thread (the next collect() shows them).
  SpendTable& spend_table() { return *spend_table_; }
  const std::vector<std::unique_ptr<Operator>>& operators() const { return operators_; }
  // The owners of a partition's state keys (`<owner>/<8 hex pid>/...`): all of a partition's
  // state is under these prefixes.
  std::vector<std::string> partition_state_owners() const;
  // The next offset stored for `partition` in `in` (full keys); nullopt when none is.
  static Result<std::optional<Offset>> stored_next_offset(PartitionId partition, StateReader& in);
  // The dedup header stored for `partition` in `in` (full keys; in the position key, or its own
  // before format 2); nullopt when none is. For tools that read a partition's dedup segments.
  static Result<std::optional<std::string>> stored_dedup_header(PartitionId partition,
                                                                StateReader& in);

 private:
  class PendingEmitter final : public Emitter {
   public:
    explicit PendingEmitter(std::vector<OutputRecord>& out) : out_(out) {}
    void emit(OutputRecord record) override { out_.push_back(std::move(record)); }

   private:
    std::vector<OutputRecord>& out_;
  };
  class DropCounter;

  void advance_watermark();
  Status restore_partition(Partition& p, StateReader& in);

  TopologySpec spec_;
  std::shared_ptr<SpendTable> spend_table_;  // before operators_: the counters share it
  std::vector<std::unique_ptr<Operator>> operators_;
  WatermarkTracker tracker_;
  std::map<PartitionId, std::unique_ptr<Partition>> owned_;  // ordered: deterministic checkpoints
  std::vector<OutputRecord> pending_;
  PendingEmitter emitter_{pending_};
  EventTime last_watermark_ = kMinEventTime;
  bool watermark_moved_ = false;  // since the last committed checkpoint
  std::vector<WrittenState> profile_;
  std::vector<Partition*> written_ahead_;  // by the last write_ahead(), until committed
  // Whether write_ahead(out, min_ids) writes p's dedup ids.
  static bool writes_ahead(const Partition& p, size_t min_ids);
  WallTime wall_{};                         // the caller's clock at the last process()/on_idle()
  std::array<uint64_t, 4> dropped_keys_{};  // by DroppedKind
  std::string scratch_;
};

}  // namespace sp
