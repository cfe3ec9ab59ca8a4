#pragma once
// The runner's side of the state changelog (issue #15): after every local checkpoint, what it
// changed in each input partition goes to kafka.state_topic (pipeline/changelog.h); on assign,
// the partition's newest complete checkpoint, local or from the changelog, is what the local
// store holds before the Topology restores it; on revoke, the changelog has the partition's last
// checkpoint before another instance may take it.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "operators/keyed_state.h"
#include "operators/time.h"
#include "pipeline/changelog.h"
#include "pipeline/kafka.h"
#include "state/checkpoint_store.h"

namespace sp {

class Topology;

// Contract: one thread (the pipeline's) calls everything; delivery reports are served by poll().
class StateChangelog {
 public:
  struct Options {
    std::string bootstrap;
    std::map<std::string, std::string> properties;  // kafka.properties
    std::string topic;                              // kafka.state_topic
    std::string group_id;                           // kafka.group_id: whose records
    // Input topics (kafka.topics): their partitions of one number share a changelog partition.
    std::vector<std::string> input_topics;
    // kafka.changelog_max_record_bytes: larger state values are split into chunks.
    size_t max_record_bytes = kChangelogDefaultMaxRecordBytes;
    // false: no changelog at all (no producer, nothing produced, every partition keeps its local
    // state). Only for RunnerTestHooks::without_changelog (bench_e2e's A/B of the changelog's
    // cost): without it a partition cannot move with its state.
    bool enabled = true;
    // Producers the changelog is written through (ChangelogWriter's lanes). Only
    // RunnerTestHooks::changelog_lanes changes it (bench_e2e --changelog-lanes, an A/B).
    size_t lanes = kChangelogLanes;
    // `bootstrap_servers: embedded`: the broker runs in this process, so it started afresh with
    // it and no other member can have taken a partition over from it in between.
    bool broker_in_process = false;
  };
  enum class Source { local, changelog };
  struct Unconfirmed;  // what record_unconfirmed() stores

  // Creates the producer. The topic is made sure of at the first assignment (the broker may be
  // unreachable at start): on a real Kafka created compacted when missing and checked when present
  // (ensure_state_topic()); on the embedded broker (librdkafka's mock cluster, which answers
  // neither request) it must exist already and is not checked.
  static Result<std::unique_ptr<StateChangelog>> open(CheckpointStore& store, Options options);
  ~StateChangelog();
  StateChangelog(const StateChangelog&) = delete;
  StateChangelog& operator=(const StateChangelog&) = delete;

  // ---- checkpoint -----------------------------------------------------------------------
  // A writer for Topology::checkpoint(): writes through to `local` and remembers the partition
  // keys, which send_deltas() and produce() send.
  StateWriter& capture(StateWriter& local);
  // Before the local commit: the changes of each partition written that this checkpoint does
  // not write whole (choose_snapshots()), without their checkpoint markers, so that the broker
  // takes them while the local store commits. Without its marker a checkpoint does not count in
  // the changelog.
  void send_deltas(const Topology& topology);
  // After the local commit: each partition chosen for one as a full snapshot read back from the
  // store, then every partition's checkpoint marker. The checkpoint is then complete in the
  // changelog once the markers are acknowledged: a short wait after the commit (one small record
  // per partition), which is the window in which a kill -9 leaves the changelog behind the local
  // store (README "Scaling out").
  void produce(const Topology& topology);
  // Forgets what capture() recorded (the local commit failed; the next checkpoint rewrites it)
  // and abandons the deltas send_deltas() and send_ahead() produced: their partitions' next
  // checkpoint is a snapshot.
  void discard();

  // ---- write-ahead (Topology::write_ahead()) ----------------------------------------------
  // A writer for Topology::write_ahead(): writes through to `local` and remembers the partition
  // keys for send_ahead().
  StateWriter& capture_ahead(StateWriter& local);
  // Once the local batch is written: its records go out now, without markers, as part of the
  // next checkpoint (whose markers cover them: a restore leaves them out until then). Partitions
  // whose snapshot is required send nothing: the next checkpoint's snapshot reads them from the
  // store.
  void send_ahead(const Topology& topology);
  // The local write failed: forgets what capture_ahead() recorded.
  void drop_ahead() { ahead_captured_.clear(); }
  // Serves every lane's delivery reports, waiting up to `timeout` (with several lanes 1 ms at
  // most: a caller that waits longer loops).
  void poll(Millis timeout);
  // Every record produced so far has its delivery report; failed_total() counts the records
  // that were not delivered.
  bool settled() const;
  uint64_t failed_total() const;

  // ---- assign / revoke ------------------------------------------------------------------
  // Makes the local store hold pid's newest complete checkpoint: kept when the changelog has
  // nothing newer, replaced by the changelog's otherwise. `owners`: the prefixes of pid's keys.
  Result<Source> prepare(PartitionId pid, const std::vector<std::string>& owners,
                         std::chrono::steady_clock::time_point deadline);
  // Waits (until deadline) for every record of pids, remembers where this instance's writes end
  // (a restart that finds nothing after them skips the read) and gives the pids up. True when
  // the changelog holds their last checkpoints.
  bool handover(const std::vector<PartitionId>& pids,
                std::chrono::steady_clock::time_point deadline);

  // ---- a restart after a crash (kill -9) --------------------------------------------------
  // Into a checkpoint's local batch, after send_deltas(): the owned partitions whose changelog
  // records will not all be acknowledged once this checkpoint's are produced (this checkpoint's
  // and any still in flight), with the wall clock. A crash leaves the local store ahead of the
  // changelog for exactly these.
  void record_unconfirmed(const Topology& topology, CheckpointStore::Batch& batch);
  // At start, before the counters are restored and before joining the group: the partitions
  // the last run recorded whose changelog is behind the local store get a snapshot of the local
  // state, acknowledged before this returns. Otherwise their next owner would restore the older
  // checkpoint and count its events again, while this instance's restored counters already hold
  // them. Only while the dead member still holds them in the group (session.timeout.ms less
  // heartbeat.interval.ms since the recorded time, less a margin).
  //
  // Later, another member may have restored them already, and a snapshot then would come under
  // its feet. The changelog is read instead: when it lacks this instance's last checkpoint of
  // every recorded partition, those are returned, to be rolled back (roll_back()): the next
  // owner counts their last checkpoints' events again, so this instance must not. When it has
  // all of them, nothing is to be done. When it cannot tell (unreachable, records compacted or
  // deleted, a record of an older version) or has some and not others, it is logged and the
  // local state kept.
  std::vector<PartitionId> repair_unconfirmed(const std::vector<std::string>& owners,
                                              Millis session_timeout, Millis heartbeat_interval);
  // Into `batch`: drops the local state of pids (an assignment restores the changelog's) and the
  // record of unconfirmed checkpoints. The caller rolls the counters back in the same batch
  // (CounterContinuity::roll_back_to_published()).
  Status roll_back(const std::vector<PartitionId>& pids, const std::vector<std::string>& owners,
                   CheckpointStore::Batch& batch);

  uint64_t bytes_total() const { return writer_ ? writer_->bytes_total() : 0; }
  // Partitions restored from the changelog since start.
  uint64_t restored_partitions() const { return restored_partitions_; }

 private:
  class Capture;
  StateChangelog(CheckpointStore& store, Options options);
  static void delivery_cb(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque);
  Status connect_topic(std::chrono::steady_clock::time_point deadline);
  Status install(PartitionId pid, const RestoredPartition& restored,
                 const std::vector<std::string>& owners);
  // Into `batch`: removes every local key of pid and where this instance's writes of it ended.
  Status remove_local(PartitionId pid, const std::vector<std::string>& owners,
                      CheckpointStore::Batch& batch);
  // Where pid's changelog partition starts and ends (asked of the broker, at most 5 s).
  rd_kafka_resp_err_t log_range(PartitionId pid, std::chrono::steady_clock::time_point deadline,
                                int64_t& low, int64_t& high);
  // repair_unconfirmed() after the dead member's session: which of `record`'s partitions to
  // roll back (all or none).
  std::vector<PartitionId> check_unconfirmed(const Unconfirmed& record, int64_t now_ms);
  // Produces the snapshot marker and pid's state as the local store holds it (its marker is the
  // caller's: end_checkpoint()).
  void write_snapshot(PartitionId pid, const std::vector<std::string>& owners);

  CheckpointStore& store_;
  Options options_;
  // The writer's lanes (ChangelogWriter): each an idempotent producer of its own.
  std::vector<KafkaHandle> producers_;
  std::unique_ptr<ChangelogWriter> writer_;
  std::unique_ptr<ChangelogRestorer> restorer_;
  std::map<std::string, std::string> restore_settings_;
  std::unique_ptr<Capture> capture_;
  struct Entry {
    std::string key;
    std::string value;
    bool removed = false;
  };
  // Produces pid's captured entries without a marker, unless pid has no offset yet (then false:
  // a later checkpoint writes it whole).
  bool send_entries(const Topology& topology, PartitionId pid, const std::vector<Entry>& entries);
  // The captured partitions (with an offset) this checkpoint writes whole, into snapshots_:
  // ChangelogWriter::snapshots_to_take(), at most an eighth of those merely due.
  void choose_snapshots(const Topology& topology);
  static constexpr size_t kSnapshotSpread = 8;
  std::vector<PartitionId> snapshots_;
  std::map<PartitionId, std::vector<Entry>> captured_;
  std::map<PartitionId, std::vector<Entry>> ahead_captured_;  // by capture_ahead()
  // Partitions whose write-ahead records went out since their last marker: the next
  // checkpoint's marker covers them (or discard() abandons them).
  std::vector<PartitionId> ahead_sent_;
  // Partitions whose deltas send_deltas() produced (their markers follow in produce()); the
  // others of captured_ are written as snapshots by produce().
  std::vector<PartitionId> deltas_sent_;
  // Checkpoint markers carry (this run's random id << 32) + a counter: a restart tells its own
  // markers from any other writer's.
  uint32_t run_id_ = 0;
  uint64_t seq_ = 0;
  std::map<PartitionId, uint64_t> last_marker_seq_;  // the seq of each pid's last marker produced
  bool embedded_ = false;  // the state topic is on the embedded broker (connect_topic())
  uint64_t restored_partitions_ = 0;
};

}  // namespace sp
