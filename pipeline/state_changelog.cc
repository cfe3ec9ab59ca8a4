#include "pipeline/state_changelog.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <set>
#include <thread>

#include "operators/byte_codec.h"
#include "operators/topology.h"
#include "pipeline/checkpoint_state.h"
#include "pipeline/embedded_broker.h"

namespace sp {
namespace {

using SteadyClock = std::chrono::steady_clock;

int remaining_ms(SteadyClock::time_point deadline) {
  const auto left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1'000'000));
}

std::string pid_hex(PartitionId pid) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", static_cast<uint32_t>(pid.value));
  return buf;
}

// Meta key: where this instance's changelog writes ended when it last gave pid up.
std::string end_key(PartitionId pid) { return "changelog_end/" + pid_hex(pid); }

int64_t wall_clock_ms() {
  return std::chrono::duration_cast<Millis>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Meta key: the partitions whose last checkpoints the changelog may lack (record_unconfirmed()).
constexpr std::string_view kUnconfirmedKey = "changelog_unconfirmed";
// 3: with the writer's run id and each partition's last marker seq; 2: partitions only (a
// restart cannot check those against the changelog); 1: never read.
constexpr uint64_t kUnconfirmedVersion = 3;
constexpr uint64_t kUnconfirmedVersionWithoutSeqs = 2;
// Slack under the dead member's session for the repair's own reads and writes.
constexpr int64_t kRepairMarginMs = 500;
// How long a restart may spend reading the changelog to check its unconfirmed checkpoints.
constexpr Millis kCheckTimeout{60'000};

}  // namespace

// The value of kUnconfirmedKey: when it was written (wall clock), by which run, and the
// partitions with the seq of their last marker produced (0: not known).
struct StateChangelog::Unconfirmed {
  int64_t wall_ms = 0;
  uint32_t run_id = 0;
  std::map<PartitionId, uint64_t> partitions;
};

namespace {

std::string encode_unconfirmed(const StateChangelog::Unconfirmed& u) {
  std::string value;
  byte_codec::put_u64(value, kUnconfirmedVersion);
  byte_codec::put_i64(value, u.wall_ms);
  byte_codec::put_u32(value, u.run_id);
  byte_codec::put_u32(value, static_cast<uint32_t>(u.partitions.size()));
  for (const auto& [pid, seq] : u.partitions) {
    byte_codec::put_u32(value, static_cast<uint32_t>(pid.value));
    byte_codec::put_u64(value, seq);
  }
  return value;
}

std::optional<StateChangelog::Unconfirmed> decode_unconfirmed(std::string_view value) {
  byte_codec::Reader r(value);
  const uint64_t version = r.u64();
  if (version != kUnconfirmedVersion && version != kUnconfirmedVersionWithoutSeqs)
    return std::nullopt;
  const bool with_seqs = version == kUnconfirmedVersion;
  StateChangelog::Unconfirmed u;
  u.wall_ms = r.i64();
  if (with_seqs) u.run_id = r.u32();
  const uint32_t count = r.u32();
  for (uint32_t i = 0; i < count && r.ok(); ++i) {
    const PartitionId pid{static_cast<int32_t>(r.u32())};
    u.partitions[pid] = with_seqs ? r.u64() : 0;
  }
  if (!r.done()) return std::nullopt;
  return u;
}

// The embedded broker answers no CreateTopics: its topics are created beside it.
Status wait_for_topic(rd_kafka_t* rk, const std::string& topic, SteadyClock::time_point deadline) {
  for (;;) {
    const rd_kafka_metadata_t* raw = nullptr;
    const rd_kafka_resp_err_t err = rd_kafka_metadata(
        rk, 1, nullptr, &raw, std::max(1, std::min(remaining_ms(deadline), 2000)));
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      bool found = false;
      for (int i = 0; i < raw->topic_cnt; ++i) {
        if (topic == raw->topics[i].topic && raw->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
          found = true;
      }
      rd_kafka_metadata_destroy(raw);
      if (found) return {};
      if (remaining_ms(deadline) == 0) {
        return make_error(ErrorKind::fatal,
                          "state topic '" + topic +
                              "' (kafka.state_topic) does not exist on the embedded broker: it is "
                              "created by `socialpulse broker` and `bootstrap_servers: embedded`");
      }
    } else if (remaining_ms(deadline) == 0) {
      return make_error(ErrorKind::retryable,
                        "state topic '" + topic + "': metadata: " + rd_kafka_err2str(err));
    }
    std::this_thread::sleep_for(Millis{100});
  }
}

// Where pid's input resumes: null when this instance does not own pid or has consumed nothing
// from it yet (no offset to resume from: its changelog is written once it has one, starting with
// a snapshot).
const Offset* resume_offset(const Topology& topology, PartitionId pid) {
  const auto owned = topology.partitions().find(pid);
  if (owned == topology.partitions().end() || !owned->second->next_offset) return nullptr;
  return &*owned->second->next_offset;
}

}  // namespace

class StateChangelog::Capture final : public StateWriter {
 public:
  using Captured = std::map<PartitionId, std::vector<Entry>>;
  void set(StateWriter& local, Captured& into) {
    local_ = &local;
    into_ = &into;
  }
  void put(std::string_view key, std::string_view value) override {
    local_->put(key, value);
    if (auto pid = state_key_partition(key))
      (*into_)[*pid].push_back({std::string(key), std::string(value), false});
  }
  void remove(std::string_view key) override {
    local_->remove(key);
    if (auto pid = state_key_partition(key)) (*into_)[*pid].push_back({std::string(key), {}, true});
  }

 private:
  StateWriter* local_ = nullptr;
  Captured* into_ = nullptr;
};

StateChangelog::StateChangelog(CheckpointStore& store, Options options)
    : store_(store), options_(std::move(options)), capture_(std::make_unique<Capture>()) {
  std::random_device random;
  while (run_id_ == 0) run_id_ = static_cast<uint32_t>(random());
  seq_ = uint64_t{run_id_} << 32;
}

StateChangelog::~StateChangelog() {
  if (producers_.empty()) return;
  // The writer must outlive every delivery report of its records: 2 s for all lanes together.
  const auto deadline = SteadyClock::now() + Millis{2000};
  int unacknowledged = 0;
  for (KafkaHandle& producer : producers_) {
    if (rd_kafka_flush(producer.get(), std::max(0, remaining_ms(deadline))) !=
        RD_KAFKA_RESP_ERR_NO_ERROR)
      unacknowledged += rd_kafka_outq_len(producer.get());
  }
  if (unacknowledged > 0) {
    spdlog::warn("msg=\"changelog records not acknowledged at exit\" unacknowledged={}",
                 unacknowledged);
    // Left to process exit: their reports would reach a dead writer.
    for (KafkaHandle& producer : producers_) (void)producer.release();
    (void)writer_.release();
  }
}

void StateChangelog::poll(Millis timeout) {
  if (producers_.empty()) return;
  // One lane may block for the wait; the others are served first without blocking.
  for (size_t i = 1; i < producers_.size(); ++i) rd_kafka_poll(producers_[i].get(), 0);
  const Millis wait = producers_.size() > 1 ? std::min(timeout, Millis{1}) : timeout;
  rd_kafka_poll(producers_[0].get(), static_cast<int>(wait.count()));
}

Result<std::unique_ptr<StateChangelog>> StateChangelog::open(CheckpointStore& store,
                                                             Options options) {
  std::unique_ptr<StateChangelog> self(new StateChangelog(store, std::move(options)));
  if (!self->options_.enabled) return self;
  auto settings = self->options_.properties;
  settings["bootstrap.servers"] = self->options_.bootstrap;
  settings.try_emplace("log_level", "4");
  // Records go out in two bursts a checkpoint (the deltas before the local write, the markers
  // after it) and /metrics waits for the markers' acknowledgement, which a long linger delays
  // (5 ms: 7.7-13 ms of wait after the snapshot at 64 partitions). 0 ms cut that wait further but
  // woke the producer's thread for nearly every record of the burst, which cost the checkpoint's
  // own build and write more than it saved (RESULTS.md, twenty-sixth session).
  settings.try_emplace("linger.ms", "1");
  settings.try_emplace("queue.buffering.max.messages", "1000000");
  self->restore_settings_ = settings;
  add_changelog_producer_settings(settings, self->options_.max_record_bytes);
  for (size_t lane = 0; lane < std::max<size_t>(1, self->options_.lanes); ++lane) {
    auto conf = make_kafka_conf(settings);
    if (!conf) return tl::unexpected(conf.error());
    rd_kafka_conf_set_opaque(conf->get(), self.get());
    rd_kafka_conf_set_dr_msg_cb(conf->get(), &StateChangelog::delivery_cb);
    auto producer = make_kafka_handle(RD_KAFKA_PRODUCER, std::move(*conf));
    if (!producer) return tl::unexpected(producer.error());
    self->producers_.push_back(std::move(*producer));
  }
  return self;
}

Status StateChangelog::connect_topic(SteadyClock::time_point deadline) {
  if (writer_) return {};
  const auto& topic = options_.topic;
  bool embedded = false;
  if (char* id =
          rd_kafka_clusterid(producers_.front().get(), std::max(1, remaining_ms(deadline)))) {
    // librdkafka's mock cluster (the embedded broker, also behind `socialpulse broker`) names
    // itself so.
    embedded = std::string_view(id).starts_with("mockCluster");
    embedded_ = embedded;
    rd_kafka_mem_free(producers_.front().get(), id);
  }
  if (!embedded) {
    std::map<std::string, std::string> admin = options_.properties;
    admin["bootstrap.servers"] = options_.bootstrap;
    if (auto s = ensure_state_topic(admin, topic, options_.input_topics,
                                    Millis{std::max(1, remaining_ms(deadline))},
                                    options_.max_record_bytes);
        !s) {
      return s;
    }
  } else if (auto s = wait_for_topic(producers_.front().get(), topic, deadline); !s) {
    return s;
  }

  // The embedded broker deletes the oldest records of a partition past its retention and never
  // compacts: snapshots must then come early enough that the last complete one survives.
  ChangelogWriter::Options writer_options;
  if (embedded) {
    writer_options.retention_bytes =
        kEmbeddedPartitionRetentionBytes / std::max<size_t>(1, options_.input_topics.size());
    spdlog::info(
        "msg=\"state topic on the embedded broker: not compacted, its retention not checked; "
        "snapshots are sized to fit its retention\" topic={} retention_bytes_per_writer={}",
        topic, writer_options.retention_bytes);
  }
  writer_options.key_prefix = changelog_key_prefix(options_.group_id);
  writer_options.max_record_bytes = options_.max_record_bytes;
  std::vector<rd_kafka_t*> lanes;
  for (const KafkaHandle& producer : producers_) lanes.push_back(producer.get());
  writer_ = std::make_unique<ChangelogWriter>(std::move(lanes), topic, writer_options);
  restorer_ = std::make_unique<ChangelogRestorer>(restore_settings_, topic,
                                                  changelog_key_prefix(options_.group_id));
  return {};
}

void StateChangelog::delivery_cb(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
  auto* self = static_cast<StateChangelog*>(opaque);
  if (self->writer_) (void)self->writer_->on_delivery(msg);  // every record here is the writer's
}

StateWriter& StateChangelog::capture(StateWriter& local) {
  captured_.clear();
  if (!options_.enabled) return local;
  capture_->set(local, captured_);
  return *capture_;
}

StateWriter& StateChangelog::capture_ahead(StateWriter& local) {
  ahead_captured_.clear();
  if (!options_.enabled) return local;
  capture_->set(local, ahead_captured_);
  return *capture_;
}

void StateChangelog::send_ahead(const Topology& topology) {
  if (!writer_) {  // no partition was ever assigned
    ahead_captured_.clear();
    return;
  }
  for (const auto& [pid, entries] : ahead_captured_) {
    // A partition not sent (no offset yet, or its next checkpoint must be a snapshot) is written
    // whole by the next checkpoint: its snapshot reads what this wrote back from the store. One
    // whose snapshot is only due may be put off (choose_snapshots()): sent now; should its
    // snapshot follow, the snapshot discards these records.
    if (writer_->snapshot_required(pid) || !send_entries(topology, pid, entries)) continue;
    if (!std::binary_search(ahead_sent_.begin(), ahead_sent_.end(), pid))
      ahead_sent_.insert(std::upper_bound(ahead_sent_.begin(), ahead_sent_.end(), pid), pid);
  }
  ahead_captured_.clear();
}

void StateChangelog::discard() {
  if (writer_) {
    for (PartitionId pid : deltas_sent_) writer_->abandon(pid);
    for (PartitionId pid : ahead_sent_) writer_->abandon(pid);
  }
  deltas_sent_.clear();
  ahead_sent_.clear();
  captured_.clear();
}

void StateChangelog::send_deltas(const Topology& topology) {
  ++seq_;
  deltas_sent_.clear();
  if (!writer_) return;  // no partition was ever assigned
  choose_snapshots(topology);
  for (auto& [pid, entries] : captured_) {
    if (std::binary_search(snapshots_.begin(), snapshots_.end(), pid)) continue;
    if (send_entries(topology, pid, entries)) deltas_sent_.push_back(pid);
  }
}

void StateChangelog::choose_snapshots(const Topology& topology) {
  std::vector<PartitionId> candidates;
  for (const auto& [pid, entries] : captured_) {
    if (resume_offset(topology, pid) != nullptr) candidates.push_back(pid);
  }
  snapshots_ = writer_->snapshots_to_take(candidates, kSnapshotSpread);
}

bool StateChangelog::send_entries(const Topology& topology, PartitionId pid,
                                  const std::vector<Entry>& entries) {
  if (resume_offset(topology, pid) == nullptr) return false;
  for (const auto& e : entries) {
    if (e.removed) {
      writer_->remove(e.key);
    } else {
      writer_->put(e.key, e.value);
    }
  }
  return true;
}

void StateChangelog::produce(const Topology& topology) {
  if (!writer_) {  // no partition was ever assigned
    captured_.clear();
    deltas_sent_.clear();
    ahead_sent_.clear();
    return;
  }
  // Write-ahead records are covered by their partition's marker below. A partition written ahead
  // is one with input, which this checkpoint captured; should one not be, its records are
  // abandoned (its next checkpoint is a snapshot) rather than left before a later marker.
  for (PartitionId pid : ahead_sent_) {
    if (!captured_.contains(pid)) writer_->abandon(pid);
  }
  ahead_sent_.clear();
  for (auto& [pid, entries] : captured_) {
    const Offset* next = resume_offset(topology, pid);
    if (next == nullptr) continue;
    // deltas_sent_ was filled in captured_'s order: sorted.
    if (!std::binary_search(deltas_sent_.begin(), deltas_sent_.end(), pid))
      write_snapshot(pid, topology.partition_state_owners());
    if (auto s = writer_->end_checkpoint(pid, seq_, *next); !s) {
      spdlog::warn("msg=\"changelog checkpoint not written\" pid={} error=\"{}\"", pid.value,
                   s.error().message);
    } else {
      last_marker_seq_[pid] = seq_;
    }
  }
  captured_.clear();
  deltas_sent_.clear();
}

void StateChangelog::write_snapshot(PartitionId pid, const std::vector<std::string>& owners) {
  writer_->begin_snapshot(pid);
  const std::string scope = pid_hex(pid);
  for (const auto& owner : owners) {
    auto rows = store_.scan(Column::state, owner + "/" + scope + "/");
    if (!rows) {
      spdlog::error("msg=\"changelog snapshot: local scan failed\" pid={} error=\"{}\"", pid.value,
                    rows.error().message);
      continue;  // the marker still goes out; the writer cannot tell: logged
    }
    for (const auto& [key, value] : *rows) writer_->put(key, value);
  }
}

void StateChangelog::record_unconfirmed(const Topology& topology, CheckpointStore::Batch& batch) {
  if (!options_.enabled || !writer_) return;
  Unconfirmed unconfirmed;
  for (const auto& [pid, p] : topology.partitions()) {
    // Written by this checkpoint (produce() skips a partition without an offset; its marker
    // gets this seq), or with records of an earlier one still unacknowledged.
    if (captured_.contains(pid) && p->next_offset) {
      unconfirmed.partitions[pid] = seq_;
    } else if (writer_->acked(pid) < writer_->produced(pid)) {
      auto last = last_marker_seq_.find(pid);
      unconfirmed.partitions[pid] = last == last_marker_seq_.end() ? 0 : last->second;
    }
  }
  if (unconfirmed.partitions.empty()) {
    batch.remove(Column::meta, kUnconfirmedKey);
    return;
  }
  unconfirmed.wall_ms = wall_clock_ms();
  unconfirmed.run_id = run_id_;
  batch.put(Column::meta, kUnconfirmedKey, encode_unconfirmed(unconfirmed));
}

std::vector<PartitionId> StateChangelog::repair_unconfirmed(const std::vector<std::string>& owners,
                                                            Millis session_timeout,
                                                            Millis heartbeat_interval) {
  if (!options_.enabled) return {};
  auto raw = store_.get(Column::meta, kUnconfirmedKey);
  if (!raw || !*raw) return {};
  const auto record = decode_unconfirmed(**raw);
  if (!record) {
    spdlog::warn("msg=\"unreadable record of unconfirmed changelog checkpoints, not repaired\"");
    return {};
  }
  const int64_t recorded_ms = record->wall_ms;
  std::vector<PartitionId> pids;
  for (const auto& [pid, seq] : record->partitions) pids.push_back(pid);
  const int64_t now_ms = wall_clock_ms();
  const int64_t safe_ms =
      recorded_ms + session_timeout.count() - heartbeat_interval.count() - kRepairMarginMs;
  if (now_ms >= safe_ms) return check_unconfirmed(*record, now_ms);
  const auto deadline = SteadyClock::now() + Millis{safe_ms - now_ms};
  if (auto s = connect_topic(deadline); !s) {
    spdlog::warn(
        "msg=\"changelog not reachable, unconfirmed checkpoints not repaired\" error=\"{}\"",
        s.error().message);
    return {};
  }
  StoreStateReader local(store_);
  std::vector<PartitionId> repaired;
  // Where the changelog ends for the partitions it has as new as the local store (end_key(), so
  // that prepare() takes the local state without reading the changelog a second time).
  std::map<PartitionId, int64_t> verified;
  auto record_verified = [&] {
    if (verified.empty()) return;
    auto batch = store_.batch();
    for (const auto& [pid, end] : verified)
      batch.put(Column::meta, end_key(pid), std::to_string(end));
    if (auto s = store_.commit(batch); !s)
      spdlog::warn("msg=\"changelog end not recorded\" error=\"{}\"", s.error().message);
  };
  for (PartitionId pid : pids) {
    auto local_next = Topology::stored_next_offset(pid, local);
    if (!local_next || !*local_next) continue;
    int64_t low = 0;
    int64_t high = 0;
    const bool empty =
        log_range(pid, deadline, low, high) == RD_KAFKA_RESP_ERR_NO_ERROR && high <= low;
    if (!empty) {
      // Handed over with every record acknowledged, and nothing written after it.
      auto end = store_.get(Column::meta, end_key(pid));
      if (end && *end && std::to_string(high) == **end) continue;
      auto restored = restorer_->restore(pid, deadline);
      if (!restored) {
        spdlog::warn("msg=\"unconfirmed checkpoint not checked\" pid={} error=\"{}\"", pid.value,
                     restored.error().message);
        continue;
      }
      if (*restored && (*restored)->next_offset.value >= (*local_next)->value) {
        // Nothing to repair. As new as the local store: the assignment need not read it again.
        if ((*restored)->next_offset.value == (*local_next)->value) verified[pid] = high;
        continue;
      }
    }
    // A snapshot of the local state: a later restore reads it, not the older checkpoint.
    writer_->release(pid);
    write_snapshot(pid, owners);
    if (writer_->end_checkpoint(pid, ++seq_, **local_next)) last_marker_seq_[pid] = seq_;
    repaired.push_back(pid);
  }
  if (repaired.empty()) {
    record_verified();
    return {};
  }
  const bool acked = writer_->wait_acked(repaired, deadline, [this](Millis wait) { poll(wait); });
  if (acked) {
    for (PartitionId pid : repaired) {
      if (auto end = writer_->acked_end(pid)) verified[pid] = *end;
    }
  }
  record_verified();
  // Whoever writes a partition next starts with a snapshot (another member may own it).
  for (PartitionId pid : repaired) writer_->release(pid);
  if (acked) {
    spdlog::info(
        "msg=\"changelog caught up with the local store after a crash\" partitions={} "
        "checked={}",
        repaired.size(), pids.size());
  } else {
    spdlog::warn(
        "msg=\"changelog repair not acknowledged in time; the next owner of these partitions may "
        "count their last checkpoint again\" partitions={}",
        repaired.size());
  }
  return {};
}

std::vector<PartitionId> StateChangelog::check_unconfirmed(const Unconfirmed& record,
                                                           int64_t now_ms) {
  const int64_t since_ms = now_ms - record.wall_ms;
  auto keep = [&](const std::string& why) {
    spdlog::warn(
        "msg=\"the changelog may lack the last checkpoint of partitions this instance owned when "
        "it stopped, and another member may own them by now; {}: local state and counters kept, "
        "their next owner may count that checkpoint's events again\" partitions={} since_ms={}",
        why, record.partitions.size(), since_ms);
    return std::vector<PartitionId>{};
  };
  if (options_.broker_in_process) {
    spdlog::info(
        "msg=\"unconfirmed changelog checkpoints kept: the embedded broker restarted with this "
        "process, so no other member restored them\" partitions={} since_ms={}",
        record.partitions.size(), since_ms);
    return {};
  }
  if (record.run_id == 0) return keep("recorded by an older version, cannot be checked");
  const auto deadline = SteadyClock::now() + kCheckTimeout;
  if (auto s = connect_topic(deadline); !s)
    return keep("changelog not reachable (" + s.error().message + ")");
  size_t confirmed = 0;
  std::vector<PartitionId> missing;
  for (const auto& [pid, seq] : record.partitions) {
    if (seq == 0) return keep("a partition's last marker is not known");
    int64_t low = 0;
    int64_t high = 0;
    if (const auto err = log_range(pid, deadline, low, high); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return keep(std::string("changelog offsets not known (") + rd_kafka_err2str(err) + ")");
    }
    bool last = false;  // this run's last marker of pid
    bool ours = false;  // any marker of this run
    if (high > low) {
      auto restored = restorer_->restore(pid, deadline, [&](const CheckpointMarker& m) {
        if ((m.seq >> 32) != record.run_id) return;
        ours = true;
        last = last || m.seq == seq;
      });
      if (!restored && !last) return keep("changelog not read (" + restored.error().message + ")");
    }
    if (last) {
      ++confirmed;
      continue;
    }
    // Records of one partition are acknowledged in order and removed oldest first (retention)
    // or older first (compaction): an earlier marker of this run there means the last one never
    // arrived. None at all means so only if nothing can have been removed since.
    const bool nothing_removed = embedded_ ? low == 0 : since_ms < kStateTopicMinCompactionLagMs;
    if (!ours && !nothing_removed)
      return keep("its records may have been removed since (compaction or retention)");
    missing.push_back(pid);
  }
  if (missing.empty()) {
    spdlog::info(
        "msg=\"the changelog has the last checkpoint of every partition this instance owned when "
        "it stopped\" partitions={} since_ms={}",
        confirmed, since_ms);
    return {};
  }
  if (confirmed > 0) {
    return keep("it has " + std::to_string(confirmed) + " of them and lacks " +
                std::to_string(missing.size()));
  }
  spdlog::warn(
      "msg=\"the changelog lacks the last checkpoint of partitions this instance owned when it "
      "stopped, and another member may own them by now: their local state is dropped (an "
      "assignment restores the changelog's) and the counters continue from the values last "
      "published, which never included that checkpoint\" partitions={} since_ms={}",
      missing.size(), since_ms);
  return missing;
}

Status StateChangelog::roll_back(const std::vector<PartitionId>& pids,
                                 const std::vector<std::string>& owners,
                                 CheckpointStore::Batch& batch) {
  for (PartitionId pid : pids) {
    if (auto s = remove_local(pid, owners, batch); !s) return s;
    if (writer_) writer_->release(pid);
  }
  batch.remove(Column::meta, kUnconfirmedKey);
  return {};
}

rd_kafka_resp_err_t StateChangelog::log_range(PartitionId pid, SteadyClock::time_point deadline,
                                              int64_t& low, int64_t& high) {
  return rd_kafka_query_watermark_offsets(producers_.front().get(), options_.topic.c_str(),
                                          changelog_partition(pid), &low, &high,
                                          std::max(1, std::min(remaining_ms(deadline), 5000)));
}

bool StateChangelog::settled() const { return !writer_ || writer_->settled(); }
uint64_t StateChangelog::failed_total() const { return writer_ ? writer_->failed_total() : 0; }

Result<StateChangelog::Source> StateChangelog::prepare(PartitionId pid,
                                                       const std::vector<std::string>& owners,
                                                       SteadyClock::time_point deadline) {
  if (!options_.enabled) return Source::local;
  if (auto s = connect_topic(std::min(deadline, SteadyClock::now() + Millis{60'000})); !s)
    return tl::unexpected(s.error());
  // Nothing written after this instance's own last writes: the local state is the newest.
  int64_t low = 0;
  int64_t high = 0;
  if (log_range(pid, deadline, low, high) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (high <= low) return Source::local;
    auto recorded = store_.get(Column::meta, end_key(pid));
    if (recorded && *recorded && std::to_string(high) == **recorded) return Source::local;
  }

  Result<std::optional<RestoredPartition>> restored = std::optional<RestoredPartition>{};
  for (;;) {
    restored = restorer_->restore(pid, deadline);
    if (restored || restored.error().kind != ErrorKind::retryable || remaining_ms(deadline) == 0)
      break;
    spdlog::warn("msg=\"changelog restore retried\" pid={} error=\"{}\"", pid.value,
                 restored.error().message);
  }
  if (!restored) return tl::unexpected(restored.error());
  if (!*restored) return Source::local;

  StoreStateReader local(store_);
  auto local_next = Topology::stored_next_offset(pid, local);
  if (!local_next) return tl::unexpected(local_next.error());
  const RestoredPartition& r = **restored;
  if (*local_next && (*local_next)->value >= r.next_offset.value) {
    spdlog::info(
        "msg=\"local state is as new as the changelog's\" pid={} local_next_offset={} "
        "changelog_next_offset={}",
        pid.value, (*local_next)->value, r.next_offset.value);
    return Source::local;
  }
  if (auto s = install(pid, r, owners); !s) return tl::unexpected(s.error());
  writer_->resume(pid, r);
  ++restored_partitions_;
  spdlog::info(
      "msg=\"partition restored from the changelog\" pid={} next_offset={} keys={} records={} "
      "bytes={} took_ms={}",
      pid.value, r.next_offset.value, r.state.entries().size(), r.records_read, r.bytes_read,
      r.took.count());
  return Source::changelog;
}

// Replaces pid's local state by the restored one, in one batch: no key of the older local state
// may survive among the restored keys.
Status StateChangelog::install(PartitionId pid, const RestoredPartition& restored,
                               const std::vector<std::string>& owners) {
  auto batch = store_.batch();
  if (auto s = remove_local(pid, owners, batch); !s) return s;
  for (const auto& [key, value] : restored.state.entries()) batch.put(Column::state, key, value);
  mark_state_format(batch);
  return store_.commit(batch);
}

Status StateChangelog::remove_local(PartitionId pid, const std::vector<std::string>& owners,
                                    CheckpointStore::Batch& batch) {
  const std::string scope = pid_hex(pid);
  for (const auto& owner : owners) {
    auto rows = store_.scan(Column::state, owner + "/" + scope + "/");
    if (!rows) return tl::unexpected(rows.error());
    for (const auto& [key, value] : *rows) batch.remove(Column::state, key);
  }
  batch.remove(Column::meta, end_key(pid));
  return {};
}

bool StateChangelog::handover(const std::vector<PartitionId>& pids,
                              SteadyClock::time_point deadline) {
  if (pids.empty() || !writer_) return true;
  const bool complete = writer_->wait_acked(pids, deadline, [this](Millis wait) { poll(wait); });
  auto batch = store_.batch();
  if (complete) {
    for (PartitionId pid : pids) {
      if (auto end = writer_->acked_end(pid))
        batch.put(Column::meta, end_key(pid), std::to_string(*end));
    }
  } else {
    spdlog::warn("msg=\"changelog not acknowledged before the partitions were given up\" count={}",
                 pids.size());
  }
  // Given up: a restart repairs nothing of them (repair_unconfirmed()). Acknowledged, there is
  // nothing to repair; if not, another member may restore them from now on, and a snapshot
  // written after that would come under its feet.
  if (auto raw = store_.get(Column::meta, kUnconfirmedKey); raw && *raw) {
    if (auto record = decode_unconfirmed(**raw)) {
      for (PartitionId pid : pids) record->partitions.erase(pid);
      if (record->partitions.empty()) {
        batch.remove(Column::meta, kUnconfirmedKey);
      } else {
        batch.put(Column::meta, kUnconfirmedKey, encode_unconfirmed(*record));
      }
    }
  }
  if (auto s = store_.commit(batch); !s) {
    spdlog::warn(
        "msg=\"changelog handover not recorded; the next restore reads the changelog\" "
        "error=\"{}\"",
        s.error().message);
  }
  for (PartitionId pid : pids) {
    writer_->release(pid);
    std::erase(ahead_sent_, pid);
  }
  return complete;
}

}  // namespace sp
