#include "pipeline/changelog.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <thread>
#include <tuple>
#include <vector>

namespace sp {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr std::string_view kCheckpointPrefix = "checkpoint/";
constexpr std::string_view kSnapshotPrefix = "snapshot/";
constexpr std::string_view kChunkPrefix = "chunk/";
// "chunk/" + 8 hex pid + ":" + 8 hex index + "/" before the state key.
constexpr size_t kChunkKeyOverhead = kChunkPrefix.size() + 8 + 1 + 8 + 1;
// On the head: format, chunk count, total size, value id (writer id, value number).
constexpr const char* kChunksHeader = "sp.chunks";
constexpr size_t kChunksHeaderSize = 4 + 4 + 8 + 16;
// On every other chunk: format, value id.
constexpr const char* kChunkHeader = "sp.chunk";
constexpr size_t kChunkHeaderSize = 4 + 16;
// A record's bytes beyond key, value and header bytes (varints, attributes), kept out of a chunk.
constexpr size_t kRecordSlack = 64;
constexpr size_t kPidHexDigits = 8;
constexpr size_t kCheckpointMarkerSize = 4 + 8 + 8;

// Estimated bytes a record and a produce batch take on the broker (RecordBatch v2: a 61-byte
// batch header, 8 to 16 bytes of varints per record). The embedded broker's retention counts
// these bytes, and the writer's snapshot policy must not undercount them; the restorer counts
// the same way, so ChangelogWriter::resume() continues the writer's own estimate.
constexpr uint64_t kRecordOverhead = 16;
constexpr uint64_t kBatchOverhead = 64;

// A non-null pointer for empty values: librdkafka writes a null (tombstone) for a null payload.
constexpr char kEmpty[1] = {0};

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_le(std::string_view in, size_t at, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) {
    v |= uint64_t{static_cast<unsigned char>(in[at + i])} << (8 * i);
  }
  return v;
}

std::optional<uint32_t> parse_hex8(std::string_view s) {
  if (s.size() != kPidHexDigits) return std::nullopt;
  uint32_t v = 0;
  for (char c : s) {
    uint32_t d = 0;
    if (c >= '0' && c <= '9') {
      d = static_cast<uint32_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      d = static_cast<uint32_t>(c - 'a' + 10);
    } else {
      return std::nullopt;  // state_scope() writes lower case only
    }
    v = (v << 4) | d;
  }
  return v;
}

std::string hex8(PartitionId pid) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", static_cast<uint32_t>(pid.value));
  return buf;
}

// "<prefix><8 hex>" exactly: a state owner named like a marker still has a '/' after the pid.
std::optional<PartitionId> marker_partition(std::string_view key, std::string_view prefix) {
  if (key.size() != prefix.size() + kPidHexDigits || !key.starts_with(prefix)) return std::nullopt;
  auto v = parse_hex8(key.substr(prefix.size()));
  if (!v) return std::nullopt;
  return PartitionId{static_cast<int32_t>(*v)};
}

std::string snapshot_marker_value() {
  std::string out;
  put_u32(out, kChangelogFormat);
  return out;
}

int remaining_ms(SteadyClock::time_point deadline) {
  const auto left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1'000'000'000));
}

// Names one chunked value: the head and its chunks carry it, so a reader never assembles a
// head with a chunk of another value (an older, longer one, or an abandoned write). Cheaper than
// a checksum of the value (3 ms per 2.5 MB at every checkpoint); Kafka's CRCs cover the bytes.
struct ValueId {
  uint64_t writer = 0;
  uint64_t number = 0;
  bool operator==(const ValueId&) const = default;
};
void put_value_id(std::string& out, const ValueId& id) {
  put_u64(out, id.writer);
  put_u64(out, id.number);
}
ValueId get_value_id(std::string_view in, size_t at) {
  return {get_le(in, at, 8), get_le(in, at + 8, 8)};
}

std::string encode_chunk_header(const ValueId& id) {
  std::string out;
  out.reserve(kChunkHeaderSize);
  put_u32(out, kChangelogFormat);
  put_value_id(out, id);
  return out;
}
// nullopt: not a chunk header of this format (the chunk then matches no head).
std::optional<ValueId> decode_chunk_header(std::string_view value) {
  if (value.size() != kChunkHeaderSize || get_le(value, 0, 4) != kChangelogFormat) {
    return std::nullopt;
  }
  return get_value_id(value, 4);
}

void append_chunk_key(std::string& out, PartitionId pid, uint32_t index,
                      std::string_view state_key) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%08x:%08x/", static_cast<uint32_t>(pid.value), index);
  out.append(kChunkPrefix);
  out.append(buf);
  out.append(state_key);
}

struct ChunkKey {
  PartitionId pid;
  uint32_t index = 0;
  std::string_view state_key;
};
std::optional<ChunkKey> parse_chunk_key(std::string_view key) {
  if (key.size() <= kChunkKeyOverhead || !key.starts_with(kChunkPrefix)) return std::nullopt;
  const std::string_view rest = key.substr(kChunkPrefix.size());
  if (rest[8] != ':' || rest[17] != '/') return std::nullopt;
  auto pid = parse_hex8(rest.substr(0, 8));
  auto index = parse_hex8(rest.substr(9, 8));
  if (!pid || !index) return std::nullopt;
  return ChunkKey{PartitionId{static_cast<int32_t>(*pid)}, *index, rest.substr(18)};
}

struct ChunksHeader {
  uint32_t count = 0;
  uint64_t size = 0;
  ValueId id;
};
std::string encode_chunks_header(const ChunksHeader& h) {
  std::string out;
  out.reserve(kChunksHeaderSize);
  put_u32(out, kChangelogFormat);
  put_u32(out, h.count);
  put_u64(out, h.size);
  put_value_id(out, h.id);
  return out;
}
Result<ChunksHeader> decode_chunks_header(std::string_view value) {
  if (value.size() != kChunksHeaderSize || get_le(value, 0, 4) != kChangelogFormat) {
    return make_error(ErrorKind::invalid_input,
                      "changelog chunk header of " + std::to_string(value.size()) +
                          " bytes, format " +
                          (value.size() >= 4 ? std::to_string(get_le(value, 0, 4)) : "?") +
                          " (this version reads format " + std::to_string(kChangelogFormat) + ")");
  }
  ChunksHeader h;
  h.count = static_cast<uint32_t>(get_le(value, 4, 4));
  h.size = get_le(value, 8, 8);
  h.id = get_value_id(value, 16);
  if (h.count < 2) {
    return make_error(ErrorKind::invalid_input,
                      "changelog chunk header with " + std::to_string(h.count) + " chunks");
  }
  return h;
}

}  // namespace

size_t changelog_message_max_bytes(size_t max_record_bytes) {
  return max_record_bytes + kChangelogBatchSlack;
}

// ---- record format -----------------------------------------------------------------------------

int32_t changelog_partition(PartitionId pid) { return pid.value & 0xffff; }

std::optional<PartitionId> state_key_partition(std::string_view key) {
  const size_t slash = key.find('/');
  if (slash == std::string_view::npos || slash == 0) return std::nullopt;
  const size_t end = slash + 1 + kPidHexDigits;
  if (key.size() <= end || key[end] != '/') return std::nullopt;
  auto v = parse_hex8(key.substr(slash + 1, kPidHexDigits));
  if (!v) return std::nullopt;  // includes "global"
  return PartitionId{static_cast<int32_t>(*v)};
}

std::string checkpoint_marker_key(PartitionId pid) {
  return std::string(kCheckpointPrefix) + hex8(pid);
}

std::string snapshot_marker_key(PartitionId pid) {
  return std::string(kSnapshotPrefix) + hex8(pid);
}

std::string encode_checkpoint_marker(const CheckpointMarker& marker) {
  std::string out;
  out.reserve(kCheckpointMarkerSize);
  put_u32(out, marker.chunked ? kChangelogChunkedFormat : kChangelogFormat);
  put_u64(out, marker.seq);
  put_u64(out, static_cast<uint64_t>(marker.next_offset.value));
  return out;
}

Result<CheckpointMarker> decode_checkpoint_marker(std::string_view value) {
  if (value.size() < 4) {
    return make_error(ErrorKind::invalid_input,
                      "changelog checkpoint marker of " + std::to_string(value.size()) + " bytes");
  }
  const auto format = static_cast<uint32_t>(get_le(value, 0, 4));
  if (format != kChangelogFormat && format != kChangelogChunkedFormat) {
    return make_error(ErrorKind::invalid_input,
                      "changelog checkpoint marker in format " + std::to_string(format) +
                          ", this version reads formats " + std::to_string(kChangelogFormat) +
                          " and " + std::to_string(kChangelogChunkedFormat));
  }
  if (value.size() != kCheckpointMarkerSize) {
    return make_error(ErrorKind::invalid_input,
                      "changelog checkpoint marker of " + std::to_string(value.size()) + " bytes");
  }
  CheckpointMarker marker;
  marker.seq = get_le(value, 4, 8);
  marker.next_offset = Offset{static_cast<int64_t>(get_le(value, 12, 8))};
  marker.chunked = format == kChangelogChunkedFormat;
  return marker;
}

void add_changelog_producer_settings(std::map<std::string, std::string>& settings,
                                     size_t max_record_bytes) {
  settings["enable.idempotence"] = "true";
  settings["acks"] = "all";
  // Records never exceed max_record_bytes (larger values are chunked), so a default broker
  // (max.message.bytes 1048588) takes them; a larger setting would only hide a writer bug.
  settings["message.max.bytes"] = std::to_string(changelog_message_max_bytes(max_record_bytes));
}

// ---- writer ------------------------------------------------------------------------------------

struct ChangelogWriter::Track {
  explicit Track(PartitionId p) : pid(p) {}
  const PartitionId pid;
  // Updated by delivery reports, possibly on another thread.
  std::atomic<uint64_t> produced{0};
  std::atomic<uint64_t> acked{0};
  std::atomic<uint64_t> failed{0};
  std::atomic<int64_t> acked_end{-1};  // one past the highest acknowledged offset
  // The writer's thread only.
  bool open = false;               // records since the last end_checkpoint()
  uint64_t not_enqueued = 0;       // records of the open checkpoint the producer refused
  bool snapshot_known = false;     // the changelog's last checkpoint of pid is this writer's
  bool abandoned = false;          // a checkpoint was abandoned since the last snapshot began
  uint64_t snapshot_began_at = 0;  // partition bytes when the last complete snapshot began
  uint64_t snapshot_bytes = 0;     // that snapshot's size
  uint64_t failed_before_snapshot = 0;
  uint64_t bytes = 0;        // estimated bytes of pid's records so far
  bool in_snapshot = false;  // begin_snapshot() without its end_checkpoint() yet
  uint64_t pending_began_at = 0;
  uint64_t pending_bytes = 0;
  uint64_t pending_failed = 0;
  bool warned_too_large = false;
  // Chunk counts (> 1) of the values this writer produced or restored: their stale chunks are
  // tombstoned when a value shrinks or is removed.
  std::map<std::string, uint32_t, std::less<>> chunked;
  // The state keys this writer knows to hold a value in the changelog (produced or restored, not
  // removed since), and those the open snapshot wrote: a snapshot tombstones the known keys it
  // did not write, so that a compacted topic does not keep a removed key forever (a snapshot
  // writes the partition's state as it is, without the removals that led there).
  std::set<std::string, std::less<>> present;
  std::set<std::string, std::less<>> snapshot_keys;
};

ChangelogWriter::ChangelogWriter(std::vector<rd_kafka_t*> producers, std::string topic,
                                 Options options)
    : topic_name_(std::move(topic)), options_(options) {
  for (rd_kafka_t* producer : producers) {
    lanes_.push_back(
        {producer, KafkaTopic(rd_kafka_topic_new(producer, topic_name_.c_str(), nullptr))});
  }
  std::random_device random;
  writer_id_ = (uint64_t{random()} << 32 | random()) ^
               static_cast<uint64_t>(SteadyClock::now().time_since_epoch().count());
}

ChangelogWriter::~ChangelogWriter() = default;

const ChangelogWriter::Lane& ChangelogWriter::lane_of(const Track& t) const {
  return lanes_[static_cast<size_t>(changelog_partition(t.pid)) % lanes_.size()];
}

void ChangelogWriter::note_key(Track& t, std::string_view state_key, bool has_value) {
  if (!has_value) {
    if (auto it = t.present.find(state_key); it != t.present.end()) t.present.erase(it);
    return;
  }
  if (t.present.find(state_key) == t.present.end()) t.present.emplace(state_key);
  if (t.in_snapshot) t.snapshot_keys.emplace(state_key);
}

ChangelogWriter::Track& ChangelogWriter::track(PartitionId pid) {
  auto it = tracks_.find(pid);
  if (it == tracks_.end()) it = tracks_.emplace(pid, std::make_unique<Track>(pid)).first;
  return *it->second;
}

const ChangelogWriter::Track* ChangelogWriter::find(PartitionId pid) const {
  auto it = tracks_.find(pid);
  return it == tracks_.end() ? nullptr : it->second.get();
}

void ChangelogWriter::produce(Track& t, std::string_view state_key, const std::string_view* value) {
  note_key(t, state_key, value != nullptr);
  const size_t prefixed_key = options_.key_prefix.size() + state_key.size();
  uint32_t count = value == nullptr ? 0 : 1;
  size_t chunk_bytes = 0;
  if (value != nullptr && prefixed_key + value->size() > options_.max_record_bytes) {
    // The head (prefixed state key, sp.chunks) or a chunk (its longer key, sp.chunk).
    const size_t overhead = prefixed_key + kChunkKeyOverhead + std::strlen(kChunksHeader) +
                            kChunksHeaderSize + kRecordSlack;
    if (overhead >= options_.max_record_bytes) {
      t.open = true;
      if (t.not_enqueued++ == 0) {
        spdlog::error(
            "msg=\"changelog record not enqueued, checkpoint abandoned: key too long for "
            "kafka.changelog_max_record_bytes\" topic={} pid={} key_bytes={} max_record_bytes={}",
            topic_name_, t.pid.value, prefixed_key, options_.max_record_bytes);
      }
      return;
    }
    chunk_bytes = options_.max_record_bytes - overhead;
    const size_t chunks = (value->size() + chunk_bytes - 1) / chunk_bytes;
    count = static_cast<uint32_t>(std::min<size_t>(chunks, UINT32_MAX));
  }
  // Chunks first, the head last: a reader assembles the value at its head.
  const ValueId id{writer_id_, count > 1 ? ++values_chunked_ : 0};
  const std::string chunk_header = count > 1 ? encode_chunk_header(id) : std::string();
  for (uint32_t i = 1; i < count; ++i) {
    const std::string_view part = value->substr(i * chunk_bytes, chunk_bytes);
    chunk_key_.clear();
    append_chunk_key(chunk_key_, t.pid, i, state_key);
    produce_record(t, chunk_key_, &part, kChunkHeader, chunk_header);
  }
  // The chunks the previous value had beyond this one's.
  auto known = t.chunked.find(state_key);
  if (known != t.chunked.end()) {
    for (uint32_t i = std::max<uint32_t>(count, 1); i < known->second; ++i) {
      chunk_key_.clear();
      append_chunk_key(chunk_key_, t.pid, i, state_key);
      produce_record(t, chunk_key_, nullptr);
    }
  }
  if (count > 1) {
    const std::string header = encode_chunks_header({count, value->size(), id});
    const std::string_view head = value->substr(0, chunk_bytes);
    produce_record(t, state_key, &head, kChunksHeader, header);
    if (known != t.chunked.end()) {
      known->second = count;
    } else {
      t.chunked.emplace(std::string(state_key), count);
    }
  } else {
    produce_record(t, state_key, value);
    if (known != t.chunked.end()) t.chunked.erase(known);
  }
}

void ChangelogWriter::produce_record(Track& t, std::string_view unprefixed,
                                     const std::string_view* value, const char* header_name,
                                     std::string_view header) {
  t.open = true;
  std::string_view key = unprefixed;
  if (!options_.key_prefix.empty()) {
    prefixed_.assign(options_.key_prefix);
    prefixed_.append(unprefixed);
    key = prefixed_;
  }
  if (t.not_enqueued > 0) {  // the checkpoint is lost already: do not queue more of it
    ++t.not_enqueued;
    return;
  }
  void* payload = nullptr;
  size_t len = 0;
  if (value != nullptr) {
    payload = const_cast<char*>(value->empty() ? kEmpty : value->data());
    len = value->size();
  }
  size_t header_bytes = 0;
  rd_kafka_headers_t* headers = nullptr;
  if (header_name != nullptr) {
    headers = rd_kafka_headers_new(1);
    rd_kafka_header_add(headers, header_name, -1, header.data(),
                        static_cast<ssize_t>(header.size()));
    header_bytes = std::strlen(header_name) + header.size();
  }
  const Lane& lane = lane_of(t);
  const auto deadline = SteadyClock::now() + options_.queue_full_timeout;
  for (;;) {
    // librdkafka takes the headers only on success: each attempt gets a copy.
    rd_kafka_headers_t* attempt = headers ? rd_kafka_headers_copy(headers) : nullptr;
    rd_kafka_resp_err_t err;
    if (attempt != nullptr) {
      err = rd_kafka_producev(lane.producer, RD_KAFKA_V_RKT(lane.topic.get()),
                              RD_KAFKA_V_PARTITION(changelog_partition(t.pid)),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()),
                              RD_KAFKA_V_VALUE(payload, len), RD_KAFKA_V_HEADERS(attempt),
                              RD_KAFKA_V_OPAQUE(&t), RD_KAFKA_V_END);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) rd_kafka_headers_destroy(attempt);
    } else {
      err =
          rd_kafka_producev(lane.producer, RD_KAFKA_V_RKT(lane.topic.get()),
                            RD_KAFKA_V_PARTITION(changelog_partition(t.pid)),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()),
                            RD_KAFKA_V_VALUE(payload, len), RD_KAFKA_V_OPAQUE(&t), RD_KAFKA_V_END);
    }
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && SteadyClock::now() < deadline) {
      rd_kafka_poll(lane.producer, 10);  // serves delivery reports: the queue drains
      continue;
    }
    spdlog::error(
        "msg=\"changelog record not enqueued, checkpoint abandoned\" topic={} pid={} "
        "error=\"{}\"",
        topic_name_, t.pid.value, rd_kafka_err2str(err));
    ++t.not_enqueued;
    if (headers) rd_kafka_headers_destroy(headers);
    return;
  }
  if (headers) rd_kafka_headers_destroy(headers);
  t.produced.fetch_add(1, std::memory_order_relaxed);
  bytes_total_.fetch_add(key.size() + len + header_bytes, std::memory_order_relaxed);
  const uint64_t estimate = key.size() + len + header_bytes + kRecordOverhead;
  partition_bytes_[changelog_partition(t.pid)] += estimate;
  t.bytes += estimate;
}

void ChangelogWriter::put(std::string_view key, std::string_view value) {
  if (auto pid = state_key_partition(key)) produce(track(*pid), key, &value);
}

void ChangelogWriter::remove(std::string_view key) {
  if (auto pid = state_key_partition(key)) produce(track(*pid), key, nullptr);
}

void ChangelogWriter::begin_snapshot(PartitionId pid) {
  Track& t = track(pid);
  if (t.in_snapshot) return;
  uint64_t& partition_bytes = partition_bytes_[changelog_partition(pid)];
  t.in_snapshot = true;
  t.snapshot_keys.clear();
  t.pending_began_at = partition_bytes;
  t.pending_bytes = t.bytes;
  t.pending_failed = t.failed.load(std::memory_order_relaxed);
  partition_bytes += kBatchOverhead;
  const std::string value = snapshot_marker_value();
  const std::string_view v = value;
  produce_record(t, snapshot_marker_key(pid), &v);
}

Status ChangelogWriter::end_checkpoint(PartitionId pid, uint64_t checkpoint_seq,
                                       Offset next_offset) {
  Track& t = track(pid);
  if (t.in_snapshot && t.not_enqueued == 0) {
    // Keys this writer knows of that the snapshot did not write no longer exist.
    std::vector<std::string> gone;
    for (const std::string& k : t.present) {
      if (!t.snapshot_keys.contains(k)) gone.push_back(k);
    }
    for (const std::string& k : gone) produce(t, k, nullptr);
    t.snapshot_keys.clear();
  }
  if (t.not_enqueued == 0) {
    const std::string value =
        encode_checkpoint_marker({checkpoint_seq, next_offset, !t.chunked.empty()});
    const std::string_view v = value;
    produce_record(t, checkpoint_marker_key(pid), &v);
    partition_bytes_[changelog_partition(pid)] += kBatchOverhead;
  }
  t.open = false;
  if (t.not_enqueued > 0) {
    const uint64_t lost = t.not_enqueued;
    t.not_enqueued = 0;
    t.in_snapshot = false;
    t.snapshot_known = false;  // the next checkpoint of pid must be a full snapshot
    t.abandoned = true;
    return make_error(ErrorKind::retryable,
                      "changelog checkpoint " + std::to_string(checkpoint_seq) + " of partition " +
                          std::to_string(pid.value) + " not written: " + std::to_string(lost) +
                          " records could not be enqueued; the next one is a full snapshot");
  }
  if (t.in_snapshot) {
    t.in_snapshot = false;
    t.snapshot_known = true;
    t.abandoned = false;
    t.snapshot_began_at = t.pending_began_at;
    t.snapshot_bytes = t.bytes - t.pending_bytes;
    t.failed_before_snapshot = t.pending_failed;
    const uint64_t budget = options_.retention_bytes - options_.retention_bytes / 10;
    if (options_.retention_bytes > 0 && 2 * t.snapshot_bytes > budget && !t.warned_too_large) {
      t.warned_too_large = true;
      spdlog::warn(
          "msg=\"partition state too large for the changelog's retention: a restore may find no "
          "complete snapshot\" topic={} pid={} snapshot_bytes={} retention_bytes={}",
          topic_name_, pid.value, t.snapshot_bytes, options_.retention_bytes);
    }
  }
  return {};
}

std::vector<PartitionId> ChangelogWriter::open_partitions() const {
  std::vector<PartitionId> out;
  for (const auto& [pid, t] : tracks_) {
    if (t->open) out.push_back(pid);
  }
  return out;
}

uint64_t ChangelogWriter::snapshot_limit(uint64_t snapshot_bytes) const {
  if (options_.retention_bytes == 0) return std::numeric_limits<uint64_t>::max();
  // The last complete snapshot must survive until the next one is complete: it, the records
  // after it and the next snapshot (about as large, after one more checkpoint of changes) must
  // fit in the retention, with a margin for the estimate.
  const uint64_t budget = options_.retention_bytes - options_.retention_bytes / 10;
  return budget > 2 * snapshot_bytes ? budget - 2 * snapshot_bytes : 0;
}

uint64_t ChangelogWriter::snapshot_interval(uint64_t snapshot_bytes) const {
  const uint64_t interval = std::max(options_.min_snapshot_interval_bytes,
                                     options_.snapshot_growth_factor * snapshot_bytes);
  // Due a quarter of the limit early: room for the checkpoints a snapshot may be put off.
  const uint64_t limit = snapshot_limit(snapshot_bytes);
  return std::min(interval, limit - limit / 4);
}

uint64_t ChangelogWriter::bytes_since_snapshot(const Track& t) const {
  const auto it = partition_bytes_.find(changelog_partition(t.pid));
  const uint64_t now = it == partition_bytes_.end() ? 0 : it->second;
  return now - t.snapshot_began_at;
}

bool ChangelogWriter::snapshot_required(PartitionId pid) const {
  const Track* t = find(pid);
  if (t == nullptr || !t->snapshot_known) return true;
  if (t->failed.load(std::memory_order_relaxed) > t->failed_before_snapshot) return true;
  return bytes_since_snapshot(*t) > snapshot_limit(t->snapshot_bytes);
}

bool ChangelogWriter::snapshot_due(PartitionId pid) const {
  if (snapshot_required(pid)) return true;
  const Track& t = *find(pid);
  return bytes_since_snapshot(t) > snapshot_interval(t.snapshot_bytes);
}

double ChangelogWriter::snapshot_overdue(PartitionId pid) const {
  const Track* t = find(pid);
  if (t == nullptr || !t->snapshot_known) return std::numeric_limits<double>::infinity();
  const uint64_t interval = snapshot_interval(t->snapshot_bytes);
  const uint64_t grown = bytes_since_snapshot(*t);
  if (interval == 0) return grown > 0 ? std::numeric_limits<double>::infinity() : 0;
  return static_cast<double>(grown) / static_cast<double>(interval);
}

std::vector<PartitionId> ChangelogWriter::snapshots_to_take(
    const std::vector<PartitionId>& candidates, size_t spread) const {
  std::vector<PartitionId> take;
  std::vector<std::pair<double, PartitionId>> due;  // (how overdue, pid)
  for (PartitionId pid : candidates) {
    if (snapshot_required(pid)) {
      take.push_back(pid);
    } else if (const double overdue = snapshot_overdue(pid); overdue > 1) {
      due.emplace_back(overdue, pid);
    }
  }
  const size_t n = (due.size() + spread - 1) / std::max<size_t>(spread, 1);
  std::partial_sort(due.begin(), due.begin() + static_cast<std::ptrdiff_t>(n), due.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = 0; i < n; ++i) take.push_back(due[i].second);
  std::sort(take.begin(), take.end());
  return take;
}

void ChangelogWriter::resume(PartitionId pid, const RestoredPartition& restored) {
  Track& t = track(pid);
  t.in_snapshot = false;
  t.open = false;
  t.not_enqueued = 0;
  t.abandoned = false;
  if (restored.pid == pid) {
    t.chunked = restored.chunk_counts;
    t.present.clear();
    for (const auto& [key, value] : restored.state.entries()) t.present.emplace(key);
  }
  // Records of an abandoned checkpoint follow the restored one: deltas written after them would
  // be applied on top of them by a later restore. Only a snapshot discards them.
  if (restored.pid != pid || restored.records_after_checkpoint > 0) {
    t.snapshot_known = false;
    return;
  }
  uint64_t& partition_bytes = partition_bytes_[changelog_partition(pid)];
  partition_bytes = std::max(partition_bytes, restored.partition_bytes_since_snapshot);
  t.snapshot_known = true;
  t.snapshot_bytes = restored.snapshot_bytes;
  t.snapshot_began_at = partition_bytes - restored.partition_bytes_since_snapshot;
  t.failed_before_snapshot = t.failed.load(std::memory_order_relaxed);
}

void ChangelogWriter::abandon(PartitionId pid) {
  Track& t = track(pid);
  if (!t.open && !t.in_snapshot) return;
  t.open = false;
  t.in_snapshot = false;
  t.not_enqueued = 0;
  t.snapshot_known = false;
  t.abandoned = true;
}

void ChangelogWriter::release(PartitionId pid) {
  auto it = tracks_.find(pid);
  if (it == tracks_.end()) return;
  Track& t = *it->second;
  t.snapshot_known = false;
  t.chunked.clear();  // the next owner may rewrite the values: what we wrote says nothing then
  t.abandoned = false;
  t.in_snapshot = false;
  t.open = false;
  t.not_enqueued = 0;
}

bool ChangelogWriter::on_delivery(const rd_kafka_message_t* msg) {
  if (msg->rkt == nullptr || topic_name_ != rd_kafka_topic_name(msg->rkt)) return false;
  auto* t = static_cast<Track*>(msg->_private);
  if (t == nullptr) return true;
  if (msg->err) {
    // Logged at the 1st, 2nd, 4th, 8th... failure of the partition: a broker outage fails every
    // record in flight, and one line each would flood the log.
    const uint64_t failed = t->failed.fetch_add(1, std::memory_order_relaxed) + 1;
    if ((failed & (failed - 1)) == 0) {
      spdlog::warn(
          "msg=\"changelog record not delivered; the next checkpoint of the partition is a "
          "full snapshot\" topic={} pid={} error=\"{}\" failed_records={}",
          topic_name_, t->pid.value, rd_kafka_err2str(msg->err), failed);
    }
  } else {
    t->acked.fetch_add(1, std::memory_order_relaxed);
    int64_t end = t->acked_end.load(std::memory_order_relaxed);
    while (msg->offset + 1 > end &&
           !t->acked_end.compare_exchange_weak(end, msg->offset + 1, std::memory_order_relaxed)) {
    }
  }
  return true;
}

std::optional<int64_t> ChangelogWriter::acked_end(PartitionId pid) const {
  const int32_t partition = changelog_partition(pid);
  int64_t end = -1;
  for (const auto& [other, t] : tracks_) {
    if (changelog_partition(other) == partition)
      end = std::max(end, t->acked_end.load(std::memory_order_relaxed));
  }
  if (end < 0) return std::nullopt;
  return end;
}

bool ChangelogWriter::settled() const {
  for (const auto& [pid, t] : tracks_) {
    if (t->acked.load() + t->failed.load() < t->produced.load()) return false;
  }
  return true;
}

uint64_t ChangelogWriter::failed_total() const {
  uint64_t n = 0;
  for (const auto& [pid, t] : tracks_) n += t->failed.load(std::memory_order_relaxed);
  return n;
}

uint64_t ChangelogWriter::produced(PartitionId pid) const {
  const Track* t = find(pid);
  return t ? t->produced.load(std::memory_order_relaxed) : 0;
}

uint64_t ChangelogWriter::acked(PartitionId pid) const {
  const Track* t = find(pid);
  return t ? t->acked.load(std::memory_order_relaxed) : 0;
}

uint64_t ChangelogWriter::failed(PartitionId pid) const {
  const Track* t = find(pid);
  return t ? t->failed.load(std::memory_order_relaxed) : 0;
}

bool ChangelogWriter::wait_acked(const std::vector<PartitionId>& pids,
                                 SteadyClock::time_point deadline,
                                 const std::function<void(Millis max_wait)>& poll) {
  auto settled = [&] {
    for (PartitionId pid : pids) {
      const Track* t = find(pid);
      if (t && t->acked.load() + t->failed.load() < t->produced.load()) return false;
    }
    return true;
  };
  while (!settled()) {
    const auto now = SteadyClock::now();
    if (now >= deadline) return false;
    poll(std::min(Millis{10}, std::chrono::ceil<Millis>(deadline - now)));
  }
  for (PartitionId pid : pids) {
    const Track* t = find(pid);
    if (t == nullptr) continue;  // nothing produced
    if (t->abandoned || t->failed.load() > t->failed_before_snapshot) return false;
  }
  return true;
}

// ---- restorer ----------------------------------------------------------------------------------

namespace {

// Destroying a consumer normally closes it, which waits for its group coordinator: a restore
// consumer never joined, and must not wait on a broker that is gone.
struct RestoreConsumerDeleter {
  void operator()(rd_kafka_t* rk) const {
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  }
};
using RestoreConsumer = std::unique_ptr<rd_kafka_t, RestoreConsumerDeleter>;

struct MetadataDeleter {
  void operator()(const rd_kafka_metadata_t* m) const { rd_kafka_metadata_destroy(m); }
};
using KafkaMetadata = std::unique_ptr<const rd_kafka_metadata_t, MetadataDeleter>;

// Replays one pid's records in log order. Changes are staged per checkpoint and applied to the
// restored state only at the checkpoint's marker, so an abandoned checkpoint never shows.
class Replay {
 public:
  Replay(PartitionId pid, bool history_complete, const ChangelogRestorer::MarkerObserver& on_marker)
      : pid_(pid), base_complete_(history_complete), on_marker_(on_marker) {}

  // `header`: the record's sp.chunks (on a head) or sp.chunk (on a chunk) header, if any;
  // `header_bytes`: what the record's headers add to its size.
  Status apply(std::string_view key, const std::string_view* value, const std::string_view* header,
               uint64_t header_bytes) {
    const uint64_t size = key.size() + (value ? value->size() : 0) + header_bytes + kRecordOverhead;
    const std::string_view* chunks_header = header;
    if (auto p = marker_partition(key, kCheckpointPrefix)) {
      partition_bytes_ += kBatchOverhead + size;
      if (*p != pid_) return {};
      pid_bytes_ += size;
      if (value == nullptr) return {};  // never written so; a compaction leftover at most
      auto marker = decode_checkpoint_marker(*value);
      if (!marker) return tl::unexpected(marker.error());
      if (on_marker_) on_marker_(*marker);
      return commit(*marker);
    }
    if (auto p = marker_partition(key, kSnapshotPrefix)) {
      const uint64_t before = partition_bytes_;
      partition_bytes_ += kBatchOverhead + size;
      if (*p != pid_) return {};
      staged_.clear();
      staged_chunk_counts_.clear();
      broken_.clear();
      chunks_.clear();
      staged_clears_ = true;
      staged_records_ = 1;
      staged_snapshot_at_ = before;
      staged_snapshot_pid_bytes_ = pid_bytes_;
      pid_bytes_ += size;
      return {};
    }
    partition_bytes_ += size;
    if (auto chunk = parse_chunk_key(key)) {
      if (chunk->pid != pid_) return {};
      pid_bytes_ += size;
      ++staged_records_;
      auto slot = chunks_.find(chunk->state_key);
      if (value) {
        if (slot == chunks_.end())
          slot = chunks_.emplace(std::string(chunk->state_key), Parts{}).first;
        Part& part = slot->second[chunk->index];
        part.id = header ? decode_chunk_header(*header) : std::nullopt;
        part.bytes = std::string(*value);
      } else if (slot != chunks_.end()) {
        slot->second.erase(chunk->index);
      }
      return {};
    }
    auto p = state_key_partition(key);
    if (!p || *p != pid_) return {};
    pid_bytes_ += size;
    ++staged_records_;
    std::string k(key);
    auto& slot = staged_[k];
    broken_.erase(k);
    staged_chunk_counts_.erase(k);
    if (!value) {
      slot.reset();
    } else if (!chunks_header) {
      slot = std::string(*value);
    } else {
      auto head = decode_chunks_header(*chunks_header);
      if (!head) return tl::unexpected(head.error());
      std::string whole;
      whole.reserve(std::min<uint64_t>(head->size, uint64_t{value->size()} * head->count));
      whole.append(*value);
      auto parts = chunks_.find(key);
      std::string missing;
      for (uint32_t i = 1; i < head->count && missing.empty(); ++i) {
        const Part* part = nullptr;
        if (parts != chunks_.end()) {
          if (auto it = parts->second.find(i); it != parts->second.end()) part = &it->second;
        }
        if (part == nullptr) {
          missing =
              "chunk " + std::to_string(i) + " of " + std::to_string(head->count) + " missing";
        } else if (part->id != head->id) {
          missing = "chunk " + std::to_string(i) + " of " + std::to_string(head->count) +
                    " belongs to another value (stale or abandoned)";
        } else {
          whole += part->bytes;
        }
      }
      if (missing.empty() && whole.size() != head->size) {
        missing = "its chunks add up to " + std::to_string(whole.size()) + " bytes, not " +
                  std::to_string(head->size);
      }
      if (parts != chunks_.end()) chunks_.erase(parts);
      if (!missing.empty()) {
        // Fatal only if a usable checkpoint includes it: a head the snapshot after it discards,
        // or that a later record of the key replaces, does no harm.
        broken_[k] = std::move(missing);
        slot.reset();
      } else {
        slot = std::move(whole);
        staged_chunk_counts_[k] = head->count;
      }
    }
    return {};
  }

  bool found() const { return found_; }
  uint64_t unusable_markers() const { return unusable_markers_; }

  RestoredPartition result() {
    RestoredPartition r;
    r.pid = pid_;
    r.state = std::move(state_);
    r.checkpoint_seq = marker_.seq;
    r.next_offset = marker_.next_offset;
    r.records_after_checkpoint = staged_records_;
    r.snapshot_bytes = snapshot_bytes_;
    r.partition_bytes_since_snapshot = partition_bytes_ - snapshot_at_;
    r.chunk_counts = std::move(chunk_counts_);
    return r;
  }

 private:
  Status commit(const CheckpointMarker& marker) {
    if (base_complete_ || staged_clears_) {
      if (!broken_.empty()) {
        return make_error(ErrorKind::fatal, "changelog value of key '" + broken_.begin()->first +
                                                "' in checkpoint " + std::to_string(marker.seq) +
                                                " cannot be assembled: " + broken_.begin()->second);
      }
    }
    if (staged_clears_) {
      state_ = MemoryState{};
      chunk_counts_.clear();
      base_complete_ = true;
      snapshot_at_ = staged_snapshot_at_;
      snapshot_bytes_ = pid_bytes_ - staged_snapshot_pid_bytes_;
    }
    for (auto& [key, value] : staged_) {
      if (value) {
        state_.put(key, *value);
      } else {
        state_.remove(key);
      }
      if (auto c = staged_chunk_counts_.find(key); c != staged_chunk_counts_.end()) {
        chunk_counts_[key] = c->second;
      } else {
        chunk_counts_.erase(key);
      }
    }
    staged_.clear();
    staged_chunk_counts_.clear();
    broken_.clear();
    chunks_.clear();  // a value's chunks precede its head in the same checkpoint
    staged_clears_ = false;
    staged_records_ = 0;
    if (base_complete_) {
      found_ = true;
      marker_ = marker;
    } else {
      ++unusable_markers_;  // the log starts inside the history of pid, after its snapshot
    }
    return {};
  }

  struct Part {
    std::optional<ValueId> id;  // nullopt: no valid sp.chunk header, matches no head
    std::string bytes;
  };
  using Parts = std::map<uint32_t, Part>;
  const PartitionId pid_;
  bool base_complete_;  // the state holds everything from the beginning or from a snapshot
  const ChangelogRestorer::MarkerObserver& on_marker_;
  MemoryState state_;
  std::map<std::string, std::optional<std::string>, std::less<>> staged_;
  std::map<std::string, uint32_t, std::less<>> staged_chunk_counts_;
  std::map<std::string, std::string, std::less<>> broken_;  // staged heads that did not assemble
  std::map<std::string, Parts, std::less<>> chunks_;        // chunks read since the last marker
  std::map<std::string, uint32_t, std::less<>> chunk_counts_;
  bool staged_clears_ = false;
  uint64_t staged_records_ = 0;
  uint64_t staged_snapshot_at_ = 0;
  uint64_t staged_snapshot_pid_bytes_ = 0;
  bool found_ = false;
  CheckpointMarker marker_;
  uint64_t unusable_markers_ = 0;
  uint64_t partition_bytes_ = 0;  // estimated bytes read from the partition (all pids)
  uint64_t pid_bytes_ = 0;        // the same for pid's records
  uint64_t snapshot_at_ = 0;
  uint64_t snapshot_bytes_ = 0;
};

// The partition's [log start, log end), nullopt when the topic or partition does not exist;
// errors (no leader, no answer in time) are worth retrying.
Result<std::optional<std::pair<int64_t, int64_t>>> log_range(rd_kafka_t* rk,
                                                             const std::string& topic,
                                                             int32_t partition,
                                                             SteadyClock::time_point deadline) {
  KafkaTopic rkt(rd_kafka_topic_new(rk, topic.c_str(), nullptr));
  const rd_kafka_metadata_t* raw = nullptr;
  const rd_kafka_resp_err_t err =
      rd_kafka_metadata(rk, 0, rkt.get(), &raw, std::max(remaining_ms(deadline), 1));
  if (err)
    return make_error(ErrorKind::retryable, std::string("metadata: ") + rd_kafka_err2str(err));
  KafkaMetadata md(raw);
  const rd_kafka_metadata_topic_t* found = nullptr;
  for (int i = 0; i < md->topic_cnt; ++i) {
    if (topic == md->topics[i].topic) found = &md->topics[i];
  }
  if (found == nullptr || found->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
      (!found->err && partition >= found->partition_cnt)) {
    return std::optional<std::pair<int64_t, int64_t>>{};
  }
  if (found->err) {
    return make_error(ErrorKind::retryable,
                      std::string("metadata: ") + rd_kafka_err2str(found->err));
  }
  int64_t low = 0;
  int64_t high = 0;
  const rd_kafka_resp_err_t werr = rd_kafka_query_watermark_offsets(
      rk, topic.c_str(), partition, &low, &high, std::max(remaining_ms(deadline), 1));
  if (werr)
    return make_error(ErrorKind::retryable, std::string("offsets: ") + rd_kafka_err2str(werr));
  return std::optional<std::pair<int64_t, int64_t>>{std::pair{low, high}};
}

}  // namespace

ChangelogRestorer::ChangelogRestorer(std::map<std::string, std::string> settings, std::string topic,
                                     std::string key_prefix)
    : settings_(std::move(settings)),
      topic_(std::move(topic)),
      key_prefix_(std::move(key_prefix)) {}

std::string changelog_key_prefix(const std::string& group_id) {
  return std::to_string(group_id.size()) + ":" + group_id + "|";
}

Result<std::optional<RestoredPartition>> ChangelogRestorer::restore(
    PartitionId pid, SteadyClock::time_point deadline, const MarkerObserver& on_marker) {
  const auto started = SteadyClock::now();
  const int32_t partition = changelog_partition(pid);
  auto where = [&] {
    return "topic=" + topic_ + " partition=" + std::to_string(partition) +
           " pid=" + std::to_string(pid.value);
  };
  auto timed_out = [&](const std::string& what) {
    return make_error(ErrorKind::retryable,
                      "changelog restore " + where() + ": deadline passed " + what);
  };
  if (remaining_ms(deadline) == 0) return timed_out("before it began");

  auto settings = settings_;
  settings.try_emplace("log_level", "4");
  // assign() needs a group.id; the consumer never joins the group nor commits to it.
  settings.try_emplace("group.id", "socialpulse.changelog-restore");
  settings.erase("group.instance.id");
  settings["enable.auto.commit"] = "false";
  settings["enable.auto.offset.store"] = "false";
  // Records deleted under the read are an error, not a silent jump to the new log start.
  settings["auto.offset.reset"] = "error";
  // Compaction may remove the last offsets below the high watermark: the end is where the
  // partition ends.
  settings["enable.partition.eof"] = "true";
  auto conf = make_kafka_conf(settings);
  if (!conf) return tl::unexpected(conf.error());
  auto handle = make_kafka_handle(RD_KAFKA_CONSUMER, std::move(*conf));
  if (!handle) return tl::unexpected(handle.error());
  RestoreConsumer consumer(handle->release());
  rd_kafka_t* rk = consumer.get();

  // Where the partition's log starts and ends. A partition without a leader (an election, a
  // broker restarting) is retried until the deadline.
  int64_t low = 0;
  int64_t high = 0;
  for (;;) {
    auto range = log_range(rk, topic_, partition, deadline);
    if (range && !*range) {
      spdlog::info("msg=\"nothing to restore: no such changelog partition\" {}", where());
      return std::optional<RestoredPartition>{};
    }
    if (range) {
      std::tie(low, high) = **range;
      break;
    }
    const int left = remaining_ms(deadline);
    if (left == 0) return timed_out("locating the partition (" + range.error().message + ")");
    spdlog::debug("msg=\"changelog restore: partition not readable yet\" {} error=\"{}\"", where(),
                  range.error().message);
    std::this_thread::sleep_for(Millis{std::min(left, 100)});
  }
  if (high <= low) {
    spdlog::info("msg=\"nothing to restore: empty changelog partition\" {} log_start={}", where(),
                 low);
    return std::optional<RestoredPartition>{};
  }
  spdlog::info("msg=\"restoring partition from the changelog\" {} log_start={} log_end={}", where(),
               low, high);

  KafkaPartitionList assignment(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(assignment.get(), topic_.c_str(), partition)->offset = low;
  if (auto err = rd_kafka_assign(rk, assignment.get()); err) {
    return make_error(ErrorKind::retryable,
                      "changelog restore " + where() + ": assign: " + rd_kafka_err2str(err));
  }

  // Offset 0 still there: the whole history is (compaction keeps the log start where it was).
  Replay replay(pid, low == 0, on_marker);
  uint64_t records = 0;
  uint64_t bytes = 0;
  int64_t position = low;
  auto next_progress = started + std::chrono::seconds(2);
  for (;;) {
    const int wait = std::min(remaining_ms(deadline), 100);
    if (wait == 0) {
      return timed_out("after " + std::to_string(records) + " records, at offset " +
                       std::to_string(position) + " of " + std::to_string(high));
    }
    KafkaMessage msg(rd_kafka_consumer_poll(rk, wait));
    if (SteadyClock::now() >= next_progress) {
      next_progress += std::chrono::seconds(2);
      spdlog::info("msg=\"restore progress\" {} records={} bytes={} offset={} log_end={}", where(),
                   records, bytes, position, high);
    }
    if (!msg) continue;
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) break;
    if (msg->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
        msg->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
      return make_error(ErrorKind::retryable, "changelog restore " + where() +
                                                  ": records deleted under the read at offset " +
                                                  std::to_string(position) + " (retention): retry");
    }
    if (msg->err) {
      char reason[256];
      if (rd_kafka_fatal_error(rk, reason, sizeof reason)) {
        return make_error(ErrorKind::fatal, "changelog restore " + where() + ": " + reason);
      }
      spdlog::debug("msg=\"changelog restore: consumer error\" {} error=\"{}\"", where(),
                    rd_kafka_message_errstr(msg.get()));
      continue;
    }
    if (msg->partition != partition) continue;
    position = msg->offset + 1;
    std::string_view key(static_cast<const char*>(msg->key), msg->key ? msg->key_len : 0);
    if (!key.starts_with(key_prefix_)) {  // another application's record in a shared topic
      if (msg->offset >= high - 1) break;
      continue;
    }
    key.remove_prefix(key_prefix_.size());
    ++records;
    const std::string_view value(static_cast<const char*>(msg->payload),
                                 msg->payload ? msg->len : 0);
    bytes += key.size() + value.size();
    // The sp.chunks header of a head, the sp.chunk header of a chunk.
    std::optional<std::string_view> header;
    uint64_t header_bytes = 0;
    rd_kafka_headers_t* headers = nullptr;
    // Most records carry no header: asking librdkafka about those allocates (may_carry_headers).
    if (may_carry_headers(*msg) &&
        rd_kafka_message_headers(msg.get(), &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* name = nullptr;
      const void* h = nullptr;
      size_t h_size = 0;
      for (size_t i = 0;
           rd_kafka_header_get_all(headers, i, &name, &h, &h_size) == RD_KAFKA_RESP_ERR_NO_ERROR;
           ++i) {
        header_bytes += std::strlen(name) + h_size;
        const std::string_view n(name);
        if (n == kChunksHeader || n == kChunkHeader)
          header.emplace(h ? static_cast<const char*>(h) : kEmpty, h ? h_size : 0);
      }
    }
    bytes += header_bytes;
    if (auto s = replay.apply(key, msg->payload ? &value : nullptr, header ? &*header : nullptr,
                              header_bytes);
        !s) {
      return make_error(ErrorKind::fatal, "changelog restore " + where() + " at offset " +
                                              std::to_string(msg->offset) + ": " +
                                              s.error().message);
    }
    if (msg->offset >= high - 1) break;
  }

  const auto took = std::chrono::duration_cast<Millis>(SteadyClock::now() - started);
  if (!replay.found()) {
    if (replay.unusable_markers() > 0) {
      return make_error(ErrorKind::fatal, "changelog restore " + where() +
                                              ": the partition's first records were deleted (log " +
                                              "start " + std::to_string(low) +
                                              ") and no complete snapshot of pid follows: its " +
                                              "state is lost from the changelog");
    }
    spdlog::info("msg=\"nothing to restore: no complete checkpoint\" {} records={} bytes={} ms={}",
                 where(), records, bytes, took.count());
    return std::optional<RestoredPartition>{};
  }
  RestoredPartition r = replay.result();
  r.records_read = records;
  r.bytes_read = bytes;
  r.took = took;
  spdlog::info(
      "msg=\"partition restored from the changelog\" {} keys={} checkpoint_seq={} "
      "next_offset={} records={} bytes={} abandoned_records={} ms={}",
      where(), r.state.entries().size(), r.checkpoint_seq, r.next_offset.value, records, bytes,
      r.records_after_checkpoint, took.count());
  return std::optional<RestoredPartition>{std::move(r)};
}

// ---- the state topic on a real Kafka -----------------------------------------------------------

StateTopicSpec state_topic_spec(const std::string& topic, int partitions, size_t max_record_bytes) {
  StateTopicSpec spec;
  spec.topic = topic;
  spec.partitions = partitions;
  spec.configs["cleanup.policy"] = "compact";
  // A record of an abandoned checkpoint (its writer died before the marker) supersedes the
  // value the last complete checkpoint still needs; the cleaner only uses keys of records older
  // than this lag, so the next owner's snapshot (written right after its restore) always comes
  // first.
  spec.configs["min.compaction.lag.ms"] = std::to_string(kStateTopicMinCompactionLagMs);
  spec.configs["max.message.bytes"] = std::to_string(changelog_message_max_bytes(max_record_bytes));
  return spec;
}

Result<KafkaNewTopic> make_new_topic(const StateTopicSpec& spec) {
  // librdkafka takes 0 and -1 (the broker's default); the changelog needs one partition per
  // input partition number, so the count is always explicit.
  if (spec.partitions < 1) {
    return make_error(ErrorKind::invalid_input, "state topic " + spec.topic + ": " +
                                                    std::to_string(spec.partitions) +
                                                    " partitions (at least 1)");
  }
  char err[512];
  KafkaNewTopic topic(rd_kafka_NewTopic_new(spec.topic.c_str(), spec.partitions,
                                            spec.replication_factor, err, sizeof err));
  if (!topic) {
    return make_error(ErrorKind::invalid_input, "state topic " + spec.topic + ": " + err);
  }
  for (const auto& [name, value] : spec.configs) {
    if (auto e = rd_kafka_NewTopic_set_config(topic.get(), name.c_str(), value.c_str()); e) {
      return make_error(ErrorKind::invalid_input, "state topic " + spec.topic + ": config " + name +
                                                      ": " + rd_kafka_err2str(e));
    }
  }
  return topic;
}

Status check_state_topic(const std::string& topic, std::string_view cleanup_policy, int partitions,
                         int input_partitions) {
  bool compacted = false;
  std::string_view rest = cleanup_policy;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    compacted = compacted || item == "compact";
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
  }
  if (!compacted) {
    return make_error(
        ErrorKind::invalid_input,
        "kafka.state_topic '" + topic + "' has cleanup.policy=" + std::string(cleanup_policy) +
            ": the changelog must be compacted, or the state of a partition that did not change "
            "for the retention time is deleted (kafka-configs.sh --alter --entity-type topics "
            "--entity-name " +
            topic + " --add-config cleanup.policy=compact)");
  }
  if (partitions < input_partitions) {
    return make_error(
        ErrorKind::invalid_input,
        "kafka.state_topic '" + topic + "' has " + std::to_string(partitions) +
            " partitions, the input topics up to " + std::to_string(input_partitions) +
            ": input partition n keeps its state in partition n (kafka-topics.sh --alter --topic " +
            topic + " --partitions " + std::to_string(input_partitions) + ")");
  }
  return {};
}

namespace {

struct AdminOptionsDeleter {
  void operator()(rd_kafka_AdminOptions_t* o) const { rd_kafka_AdminOptions_destroy(o); }
};
struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
struct EventDeleter {
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
};
struct ConfigResourceDeleter {
  void operator()(rd_kafka_ConfigResource_t* r) const { rd_kafka_ConfigResource_destroy(r); }
};
using AdminOptions = std::unique_ptr<rd_kafka_AdminOptions_t, AdminOptionsDeleter>;
using Queue = std::unique_ptr<rd_kafka_queue_t, QueueDeleter>;
using Event = std::unique_ptr<rd_kafka_event_t, EventDeleter>;

Result<AdminOptions> admin_options(rd_kafka_t* rk, rd_kafka_admin_op_t op, int timeout_ms) {
  AdminOptions options(rd_kafka_AdminOptions_new(rk, op));
  char err[512];
  if (rd_kafka_AdminOptions_set_request_timeout(options.get(), timeout_ms, err, sizeof err)) {
    return make_error(ErrorKind::fatal, std::string("admin request timeout: ") + err);
  }
  if (op == RD_KAFKA_ADMIN_OP_CREATETOPICS &&
      rd_kafka_AdminOptions_set_operation_timeout(options.get(), timeout_ms, err, sizeof err)) {
    return make_error(ErrorKind::fatal, std::string("admin operation timeout: ") + err);
  }
  return options;
}

// The event answering the request on `queue`, or a retryable error at the deadline.
Result<Event> await_admin(rd_kafka_queue_t* queue, SteadyClock::time_point deadline,
                          const std::string& what) {
  Event ev(rd_kafka_queue_poll(queue, std::max(remaining_ms(deadline), 1)));
  if (!ev) return make_error(ErrorKind::retryable, what + ": no answer before the deadline");
  if (rd_kafka_event_error(ev.get())) {
    return make_error(ErrorKind::retryable, what + ": " + rd_kafka_event_error_string(ev.get()));
  }
  return ev;
}

// Returns whether the topic was created (false: it appeared meanwhile).
Result<bool> create_state_topic(rd_kafka_t* rk, const StateTopicSpec& spec,
                                SteadyClock::time_point deadline) {
  auto topic = make_new_topic(spec);
  if (!topic) return tl::unexpected(topic.error());
  auto options = admin_options(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS, remaining_ms(deadline));
  if (!options) return tl::unexpected(options.error());
  Queue queue(rd_kafka_queue_new(rk));
  rd_kafka_NewTopic_t* topics[] = {topic->get()};
  rd_kafka_CreateTopics(rk, topics, 1, options->get(), queue.get());
  const std::string what = "create state topic " + spec.topic;
  auto ev = await_admin(queue.get(), deadline, what);
  if (!ev) return tl::unexpected(ev.error());
  const rd_kafka_CreateTopics_result_t* result = rd_kafka_event_CreateTopics_result(ev->get());
  size_t count = 0;
  const rd_kafka_topic_result_t** results =
      result ? rd_kafka_CreateTopics_result_topics(result, &count) : nullptr;
  if (count != 1) return make_error(ErrorKind::retryable, what + ": no result for the topic");
  const rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[0]);
  if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) return false;
  if (err) {
    const char* message = rd_kafka_topic_result_error_string(results[0]);
    return make_error(ErrorKind::fatal, what + ": " + (message ? message : rd_kafka_err2str(err)));
  }
  return true;
}

Result<std::string> describe_cleanup_policy(rd_kafka_t* rk, const std::string& topic,
                                            SteadyClock::time_point deadline) {
  std::unique_ptr<rd_kafka_ConfigResource_t, ConfigResourceDeleter> resource(
      rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str()));
  auto options = admin_options(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, remaining_ms(deadline));
  if (!options) return tl::unexpected(options.error());
  Queue queue(rd_kafka_queue_new(rk));
  rd_kafka_ConfigResource_t* resources[] = {resource.get()};
  rd_kafka_DescribeConfigs(rk, resources, 1, options->get(), queue.get());
  const std::string what = "describe state topic " + topic;
  auto ev = await_admin(queue.get(), deadline, what);
  if (!ev) return tl::unexpected(ev.error());
  const rd_kafka_DescribeConfigs_result_t* result =
      rd_kafka_event_DescribeConfigs_result(ev->get());
  size_t count = 0;
  const rd_kafka_ConfigResource_t** described =
      result ? rd_kafka_DescribeConfigs_result_resources(result, &count) : nullptr;
  if (count != 1) return make_error(ErrorKind::retryable, what + ": no result for the topic");
  if (auto err = rd_kafka_ConfigResource_error(described[0]); err) {
    const char* message = rd_kafka_ConfigResource_error_string(described[0]);
    return make_error(ErrorKind::retryable,
                      what + ": " + (message ? message : rd_kafka_err2str(err)));
  }
  size_t entries = 0;
  const rd_kafka_ConfigEntry_t** configs = rd_kafka_ConfigResource_configs(described[0], &entries);
  for (size_t i = 0; i < entries; ++i) {
    if (std::strcmp(rd_kafka_ConfigEntry_name(configs[i]), "cleanup.policy") == 0) {
      const char* value = rd_kafka_ConfigEntry_value(configs[i]);
      return std::string(value ? value : "");
    }
  }
  return make_error(ErrorKind::retryable, what + ": the broker did not report cleanup.policy");
}

}  // namespace

Status ensure_state_topic(const std::map<std::string, std::string>& settings,
                          const std::string& topic, const std::vector<std::string>& input_topics,
                          Millis timeout, size_t max_record_bytes) {
  const auto deadline = SteadyClock::now() + timeout;
  auto admin_settings = settings;
  admin_settings.try_emplace("log_level", "4");
  auto conf = make_kafka_conf(admin_settings);
  if (!conf) return tl::unexpected(conf.error());
  auto admin = make_kafka_handle(RD_KAFKA_PRODUCER, std::move(*conf));
  if (!admin) return tl::unexpected(admin.error());
  rd_kafka_t* rk = admin->get();

  // All topics: a request naming the state topic could create it with the broker's defaults
  // (auto.create.topics.enable), which are not compacted.
  const rd_kafka_metadata_t* raw = nullptr;
  if (auto err = rd_kafka_metadata(rk, 1, nullptr, &raw, std::max(remaining_ms(deadline), 1));
      err) {
    return make_error(ErrorKind::retryable,
                      "state topic " + topic + ": metadata: " + rd_kafka_err2str(err));
  }
  KafkaMetadata md(raw);
  int input_partitions = 0;
  int state_partitions = -1;  // missing
  for (int i = 0; i < md->topic_cnt; ++i) {
    const rd_kafka_metadata_topic_t& t = md->topics[i];
    if (t.err) continue;
    if (topic == t.topic) state_partitions = t.partition_cnt;
    if (std::find(input_topics.begin(), input_topics.end(), t.topic) != input_topics.end()) {
      input_partitions = std::max(input_partitions, t.partition_cnt);
    }
  }
  if (input_partitions == 0) {
    return make_error(ErrorKind::retryable, "state topic " + topic +
                                                ": none of the input topics exists yet, so its "
                                                "partition count is unknown");
  }
  if (state_partitions < 0) {
    auto created = create_state_topic(
        rk, state_topic_spec(topic, input_partitions, max_record_bytes), deadline);
    if (!created) return tl::unexpected(created.error());
    if (*created) {
      spdlog::info("msg=\"state topic created\" topic={} partitions={} cleanup.policy=compact",
                   topic, input_partitions);
      return {};
    }
    // Created meanwhile by another instance, by the same rule: check its policy like any
    // present topic's (its partition count is that rule's).
    state_partitions = input_partitions;
  }
  auto policy = describe_cleanup_policy(rk, topic, deadline);
  if (!policy) return tl::unexpected(policy.error());
  if (auto s = check_state_topic(topic, *policy, state_partitions, input_partitions); !s) return s;
  if (policy->find("delete") != std::string::npos) {
    spdlog::warn(
        "msg=\"state topic also deletes by retention: the state of a partition without "
        "checkpoints for longer than its retention.ms cannot be restored\" topic={} "
        "cleanup.policy={}",
        topic, *policy);
  }
  spdlog::info("msg=\"state topic checked\" topic={} partitions={} cleanup.policy={}", topic,
               state_partitions, *policy);
  return {};
}

}  // namespace sp
