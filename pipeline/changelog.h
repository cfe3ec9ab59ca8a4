#pragma once
// The state changelog (SPEC 6 v2, issue #15): every input partition's checkpointed state, also
// produced to a Kafka topic (kafka.state_topic) so that another instance can take the partition
// over. Local RocksDB stays the working copy; this is the copy that moves.
//
// Records, on state-topic partition = input partition number (pid & 0xffff; the upper 16 bits of
// a PartitionId are the input topic's index, so the pids of several input topics share one
// changelog partition and are told apart by their keys):
//   "<owner>/<8 hex pid>/<rest>"  the state key as Topology::checkpoint writes it; value = the
//                                 bytes, null = removed (a tombstone for compaction)
//   "snapshot/<8 hex pid>"        the pid's state restarts here: a full copy follows, then a
//                                 tombstone for each key the writer knows of (written or
//                                 restored) that the copy no longer has
//   "checkpoint/<8 hex pid>"      everything of the pid before it is one complete checkpoint;
//                                 value = format, checkpoint seq, next input offset (LE)
// Instance-scope keys (`<owner>/global/...`) are the instance's own (its counters): never produced.
//
// A value too large for one record (Options::max_record_bytes) is split: its chunks 1..n-1 under
// "chunk/<8 hex pid>:<8 hex index>/<state key>" (not a state key: ':' where a state key has '/'),
// each with a Kafka header `sp.chunk` (format, value id), then the head under the state key
// itself, carrying chunk 0 and a header `sp.chunks` (format, n, total size, value id; the id is
// the writer's random id and a count). A reader assembles the value at its head from the chunks
// read since the pid's last marker that carry the head's id, and refuses a missing one, so a
// chunk left over from an older, longer value or an abandoned write never shows. The
// writer tombstones the chunks it knows became stale (a shorter value, a removed key) so that
// compaction reclaims them; those it cannot know (written by an earlier owner) stay harmless.
// Records without the header are whole values: changelogs written before chunking still restore.
//
// Exactly-once without transactions: a checkpoint counts only once its marker is read, and the
// records of one pid keep their order (idempotent producer: add_changelog_producer_settings()). A
// writer that did not itself write the changelog's last complete checkpoint (a new owner, a
// restart, a failed record) starts with a snapshot, so records of an abandoned checkpoint are
// always followed by a snapshot marker that discards them.
#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "operators/keyed_state.h"
#include "operators/time.h"
#include "pipeline/kafka.h"

namespace sp {

// The key prefix of one application's records: its consumer group, length-prefixed so that no
// group's prefix starts another's ("5:group|").
std::string changelog_key_prefix(const std::string& group_id);

// Version of the marker values; a reader refuses markers of another version.
inline constexpr uint32_t kChangelogFormat = 1;
// The checkpoint marker's version when the pid's state holds a chunked value (as far as the
// writer knows): versions before chunking read format 1 only, so they refuse the partition
// (logged, the instance stops) instead of restoring a value's first chunk as the whole value,
// e.g. in a rolling upgrade or a downgrade. This version reads both.
inline constexpr uint32_t kChangelogChunkedFormat = 2;
// The largest changelog record by default (key + value + headers;
// kafka.changelog_max_record_bytes): a default broker takes batches up to max.message.bytes =
// 1048588, and the batch around one record needs the slack below. Larger values are split into
// chunks of this size.
inline constexpr size_t kChangelogDefaultMaxRecordBytes = 1'000'000;
// The range kafka.changelog_max_record_bytes accepts: below the minimum, keys and headers leave
// little for the value; the maximum is the largest record the changelog ever wrote unsplit.
inline constexpr size_t kChangelogMinRecordBytes = 4096;
inline constexpr size_t kChangelogMaxRecordBytesLimit = size_t{64} << 20;
// Room for the record batch (header, record varints) around one record.
inline constexpr size_t kChangelogBatchSlack = 1024;
// The created state topic's min.compaction.lag.ms: a record stays at least this long, so a
// restart within it still finds its own last checkpoint markers (or knows they never arrived).
inline constexpr int64_t kStateTopicMinCompactionLagMs = 3'600'000;
// The producer's message.max.bytes and the created state topic's max.message.bytes.
size_t changelog_message_max_bytes(size_t max_record_bytes);

// The changelog partition of an input partition: its partition number within its topic.
int32_t changelog_partition(PartitionId pid);
// The partition scope of a full state key (`<owner>/<8 hex pid>/...`); nullopt for instance
// scope (`<owner>/global/...`) and for anything else.
std::optional<PartitionId> state_key_partition(std::string_view key);
std::string checkpoint_marker_key(PartitionId pid);
std::string snapshot_marker_key(PartitionId pid);

struct CheckpointMarker {
  uint64_t seq = 0;      // the caller's checkpoint sequence number
  Offset next_offset;    // the first input offset this state has not seen
  bool chunked = false;  // written as kChangelogChunkedFormat
};
std::string encode_checkpoint_marker(const CheckpointMarker& marker);
Result<CheckpointMarker> decode_checkpoint_marker(std::string_view value);

// What the changelog needs from the producer it shares (added to the owner's settings): the
// idempotent producer keeps each partition's records in order and without duplicates across
// retries, so a checkpoint marker is never acknowledged ahead of a record it covers.
// message.max.bytes follows max_record_bytes (kafka.properties cannot raise it past the chunk
// size).
void add_changelog_producer_settings(std::map<std::string, std::string>& settings,
                                     size_t max_record_bytes = kChangelogDefaultMaxRecordBytes);

// Producers (lanes) a StateChangelog writes through. librdkafka puts one partition in a
// ProduceRequest, and an idempotent producer keeps at most 5 requests in flight per broker
// connection: a checkpoint's records for 64 partitions queued behind each other, 32-38 ms on
// average before they were even sent (librdkafka's int_latency) at 380 k ev/s, the largest part of
// the wait before /metrics could show the checkpoint. Each lane is a connection of its own.
inline constexpr size_t kChangelogLanes = 4;

// One partition's last complete checkpoint, read back from the changelog.
struct RestoredPartition {
  PartitionId pid;
  MemoryState state;  // full state keys, as Topology::checkpoint wrote them
  uint64_t checkpoint_seq = 0;
  Offset next_offset;
  // For ChangelogWriter::resume(): records of pid after the last complete checkpoint (an
  // abandoned checkpoint), the last complete snapshot's size (0: the history starts at offset
  // 0 without one) and the partition's bytes since that snapshot began (estimates, as the
  // writer counts them).
  uint64_t records_after_checkpoint = 0;
  uint64_t snapshot_bytes = 0;
  uint64_t partition_bytes_since_snapshot = 0;
  // The chunk count of each restored value written in more than one record: the writer that
  // continues tombstones their stale chunks when a value shrinks or goes.
  std::map<std::string, uint32_t, std::less<>> chunk_counts;
  // Progress: what was read to get here.
  uint64_t records_read = 0;
  uint64_t bytes_read = 0;
  Millis took{0};
};

// Produces checkpointed state to the changelog through a producer owned elsewhere.
//
// Use per checkpoint: for each dirty partition, begin_snapshot(pid) first when snapshot_due(pid)
// and then, before its end_checkpoint(), the partition's full state (the writer cannot check
// that: a snapshot with only the changes silently loses the rest); Topology::checkpoint(writer);
// end_checkpoint(pid, ...) for every pid of open_partitions().
//
// Delivery reports: the producer's dr_msg_cb belongs to its owner, which must hand every report
// to on_delivery() first and stop there when it returns true (the writer's records are those of
// its topic; their msg opaque is the writer's, not the owner's). Counters are atomics, so the
// reports may come from whichever thread polls the producer; everything else is for one thread.
// Destroy it before the producer (it holds a topic handle of it) and only once none of its
// records is in flight (wait_acked(), rd_kafka_flush()): the owner recognises their reports only
// through the writer.
class ChangelogWriter final : public StateWriter {
 public:
  struct Options {
    // A snapshot is due once the changelog partition grew by max(min_snapshot_interval_bytes,
    // snapshot_growth_factor x the last snapshot) since that snapshot began: restore reads at
    // most about that much, and snapshots cost at most 1/factor of the changelog's bytes.
    uint64_t min_snapshot_interval_bytes = uint64_t{1} << 20;
    uint64_t snapshot_growth_factor = 4;
    // A broker that deletes old records instead of compacting them (the embedded broker keeps
    // kEmbeddedPartitionRetentionBytes per partition): this writer's share of one partition's
    // retention (divide by the number of input topics, whose pids share the partition). Snapshots
    // come early enough that the last complete one is never deleted. 0 = compacted topic.
    uint64_t retention_bytes = 0;
    // How long put() waits for room in a full producer queue before it gives up on the record
    // (the checkpoint is then not completed: end_checkpoint() says so).
    Millis queue_full_timeout{10'000};
    // Put before every key (changelog_key_prefix()): several applications (consumer groups) may
    // share one state topic without reading each other's state.
    std::string key_prefix;
    // The largest record produced (key + value + headers); larger values are split into chunks.
    // At most the producer's message.max.bytes (add_changelog_producer_settings()).
    size_t max_record_bytes = kChangelogDefaultMaxRecordBytes;
  };

  // `producers`: the lanes (at least one), all configured alike (add_changelog_producer_settings).
  // A pid's records all go through one lane (its changelog partition modulo their number), which
  // keeps them in order; more lanes only add requests in flight (see kChangelogLanes).
  ChangelogWriter(std::vector<rd_kafka_t*> producers, std::string topic, Options options);
  ChangelogWriter(rd_kafka_t* producer, std::string topic, Options options)
      : ChangelogWriter(std::vector<rd_kafka_t*>{producer}, std::move(topic), options) {}
  ChangelogWriter(rd_kafka_t* producer, std::string topic)
      : ChangelogWriter(producer, std::move(topic), Options{}) {}
  ~ChangelogWriter() override;
  ChangelogWriter(const ChangelogWriter&) = delete;
  ChangelogWriter& operator=(const ChangelogWriter&) = delete;

  // StateWriter: full state keys; instance-scope keys are ignored.
  void put(std::string_view key, std::string_view value) override;
  void remove(std::string_view key) override;

  // Produces the snapshot marker: the caller then writes the pid's full state, and
  // end_checkpoint() completes the snapshot.
  void begin_snapshot(PartitionId pid);
  // Produces the checkpoint marker of pid. Fails (kind retryable, no marker produced) when a
  // record of this checkpoint could not be enqueued: the changelog then keeps the previous
  // checkpoint and the next one must be a snapshot (snapshot_due() says so).
  Status end_checkpoint(PartitionId pid, uint64_t checkpoint_seq, Offset next_offset);
  // Pids with records produced since their last end_checkpoint().
  std::vector<PartitionId> open_partitions() const;
  // Due: required, or the partition's changelog grew by a snapshot interval (Options) since its
  // last snapshot began. A snapshot that is due but not required may wait for a later checkpoint
  // (StateChangelog spreads the snapshots of partitions that come due together).
  bool snapshot_due(PartitionId pid) const;
  // Nothing of pid written by this writer yet, a record since its last snapshot failed, or (with
  // retention_bytes) its last complete snapshot would be deleted before the next is complete.
  bool snapshot_required(PartitionId pid) const;
  // How far pid's changelog grew since its last snapshot began, in snapshot intervals (> 1: due).
  double snapshot_overdue(PartitionId pid) const;
  // Of `candidates` (the partitions a checkpoint writes), those it writes whole, sorted: every
  // one whose snapshot is required and, of those whose snapshot is only due, the most overdue
  // 1/spread (at least one). Partitions with the same input come due together, and each
  // snapshot reads the partition's whole state back: all in one checkpoint, they held it up
  // (23 at once, 68 ms, at 450 k ev/s over 64 partitions). One put off sends deltas until its
  // turn, which comes before its snapshot is required (snapshot_interval(): due a quarter of
  // the limit early).
  std::vector<PartitionId> snapshots_to_take(const std::vector<PartitionId>& candidates,
                                             size_t spread) const;

  // After a restore from the changelog (ChangelogRestorer) that this writer continues: its
  // next checkpoint can be a delta when the restored checkpoint was the changelog's last record
  // of pid. Not after a restore from local state: the changelog may be behind it.
  void resume(PartitionId pid, const RestoredPartition& restored);
  // The partition left this instance: whatever it writes next for pid starts with a snapshot
  // (another owner may have written in between).
  void release(PartitionId pid);
  // The checkpoint open for pid (records produced, no marker yet) will never be ended (the local
  // commit it belonged to failed): its records stay without a marker, so the next checkpoint of
  // pid must be a snapshot, which discards them.
  void abandon(PartitionId pid);

  // The delivery report hook (see the class comment): true when msg was the writer's.
  bool on_delivery(const rd_kafka_message_t* msg);
  uint64_t produced(PartitionId pid) const;
  uint64_t acked(PartitionId pid) const;
  uint64_t failed(PartitionId pid) const;
  // One past the highest offset acknowledged in pid's changelog partition for this writer (any
  // pid sharing the partition); nullopt before the first acknowledgement.
  std::optional<int64_t> acked_end(PartitionId pid) const;
  // Every record produced so far has its delivery report.
  bool settled() const;
  uint64_t failed_total() const;
  // Polls (poll(max_wait) should call rd_kafka_poll on the producer) until every record of pids
  // has its delivery report or the deadline passes. True when all arrived and none of the pids
  // lost a record (not delivered, or an abandoned checkpoint) since its last snapshot began:
  // the changelog then holds the last checkpoint each pid ended. Call it before release().
  bool wait_acked(const std::vector<PartitionId>& pids,
                  std::chrono::steady_clock::time_point deadline,
                  const std::function<void(Millis max_wait)>& poll);

  // Keys and values produced (socialpulse_changelog_bytes_total).
  uint64_t bytes_total() const { return bytes_total_.load(std::memory_order_relaxed); }
  const std::string& topic() const { return topic_name_; }

 private:
  struct Track;
  Track& track(PartitionId pid);
  const Track* find(PartitionId pid) const;
  // Keeps Track::present (and the open snapshot's keys) up to date for one produced state key.
  static void note_key(Track& t, std::string_view state_key, bool has_value);
  // One state key's value (null: removed), in one record or as chunks.
  void produce(Track& t, std::string_view state_key, const std::string_view* value);
  // One record, with one header when header_name is set (a chunked value's head or chunk).
  void produce_record(Track& t, std::string_view key, const std::string_view* value,
                      const char* header_name = nullptr, std::string_view header = {});
  // Growth of the changelog partition after which a snapshot is due, and (retention_bytes) after
  // which it is required; UINT64_MAX: none.
  uint64_t snapshot_interval(uint64_t snapshot_bytes) const;
  uint64_t snapshot_limit(uint64_t snapshot_bytes) const;
  uint64_t bytes_since_snapshot(const Track& t) const;

  struct Lane {
    rd_kafka_t* producer;
    KafkaTopic topic;  // of producer
  };
  const Lane& lane_of(const Track& t) const;

  std::string topic_name_;
  std::vector<Lane> lanes_;
  Options options_;
  // Stable addresses: each in-flight record's opaque points at its Track.
  std::map<PartitionId, std::unique_ptr<Track>> tracks_;
  // Estimated bytes this writer added to each changelog partition (records + batch overhead).
  std::map<int32_t, uint64_t> partition_bytes_;
  std::atomic<uint64_t> bytes_total_{0};
  // Names this writer's chunked values (random per writer, and a count): a head is assembled
  // only from chunks that carry its id.
  uint64_t writer_id_ = 0;
  uint64_t values_chunked_ = 0;
  std::string prefixed_;   // scratch for prefixed keys
  std::string chunk_key_;  // scratch for chunk keys
};

// Reads a changelog partition with a consumer of its own (assigned, never joining a group, never
// committing) from its first retained record to the end it had when the read began.
class ChangelogRestorer {
 public:
  // `settings`: bootstrap.servers and the security properties (kafka.properties); group.id, when
  // given, only satisfies librdkafka's assign() (the consumer never joins that group).
  ChangelogRestorer(std::map<std::string, std::string> settings, std::string topic,
                    std::string key_prefix = {});

  // Sees every checkpoint marker of the pid read, in log order, usable or not (a restart checks
  // whether its own last markers reached the changelog: StateChangelog::repair_unconfirmed()).
  using MarkerObserver = std::function<void(const CheckpointMarker&)>;

  // nullopt: pid has no complete checkpoint in the changelog (or the partition or topic does
  // not exist). Errors: retryable when the deadline passed or the log moved under the read;
  // fatal when its first records were deleted and no complete snapshot of pid remains.
  Result<std::optional<RestoredPartition>> restore(PartitionId pid,
                                                   std::chrono::steady_clock::time_point deadline,
                                                   const MarkerObserver& on_marker = {});

 private:
  std::map<std::string, std::string> settings_;
  std::string topic_;
  std::string key_prefix_;  // records without it are skipped
};

// ---- the state topic on a real Kafka -----------------------------------------------------------

// What a missing state topic is created with.
struct StateTopicSpec {
  std::string topic;
  int partitions = 0;
  int replication_factor = -1;  // -1: the broker's default.replication.factor
  std::map<std::string, std::string> configs;
};
StateTopicSpec state_topic_spec(const std::string& topic, int partitions,
                                size_t max_record_bytes = kChangelogDefaultMaxRecordBytes);

struct NewTopicDeleter {
  void operator()(rd_kafka_NewTopic_t* t) const { rd_kafka_NewTopic_destroy(t); }
};
using KafkaNewTopic = std::unique_ptr<rd_kafka_NewTopic_t, NewTopicDeleter>;
// The CreateTopics request entry for `spec`.
Result<KafkaNewTopic> make_new_topic(const StateTopicSpec& spec);

// A present state topic must be compacted (the changelog relies on the last record per key
// staying) and have a partition for every input partition number.
Status check_state_topic(const std::string& topic, std::string_view cleanup_policy, int partitions,
                         int input_partitions);

// Creates the state topic (compacted, as many partitions as the largest input topic) when
// missing and checks it when present, within `timeout`. Real Kafka only: the embedded broker
// answers neither request (EmbeddedBroker::create_state_topic()).
Status ensure_state_topic(const std::map<std::string, std::string>& settings,
                          const std::string& topic, const std::vector<std::string>& input_topics,
                          Millis timeout,
                          size_t max_record_bytes = kChangelogDefaultMaxRecordBytes);

}  // namespace sp
