#include "operators/deduplicator.h"

#include <charconv>
#include <cinttypes>
#include <cstdio>

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack for long keys
#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "operators/byte_codec.h"

namespace sp {
namespace {

// Reclaim granularity: 1/64 of the horizon keeps the ring small and the overshoot under 2%.
constexpr int64_t kBucketsPerHorizon = 64;
constexpr std::string_view kMagic = "SPDD";
constexpr uint8_t kSnapshotVersion = 1;
constexpr size_t kHeaderBytes = 4 + 1 + 1 + 8 + 8;
constexpr size_t kEntryBytes = 8 + 8 + 8;
// Incremental form: header = magic, version 2, seen_any, max event time, next segment number;
// segment = magic, version, count, entries. Version 1 entries have the full snapshot's layout (24
// bytes); version 2 (written since issue #20's checkpoint bytes work) keep the 16-byte key and
// store each time as a zigzag varint from the previous entry's (from 0 for the first): times are
// stream times in insertion order, so nearly every delta is 0 and an entry takes 17 bytes.
// Version 3 stores the key's 96 bits (low word, then the low half of the high word: 12 bytes)
// and the same time varint: 13 bytes an entry. The ids are most of a checkpoint's bytes under
// load (one per event), in RocksDB and the changelog.
constexpr uint8_t kIncrementalVersion = 2;
constexpr size_t kIncrementalHeaderBytes = 4 + 1 + 1 + 8 + 8;
constexpr std::string_view kSegmentMagic = "SPDS";
constexpr uint8_t kSegmentFixedVersion = 1;
constexpr uint8_t kSegmentWideVersion = 2;
constexpr uint8_t kSegmentVersion = 3;
constexpr size_t kSegmentHeaderBytes = 4 + 1 + 8;
constexpr size_t kKeyBytes = 8 + 4;
constexpr size_t kCompactEntryMinBytes = kKeyBytes + 1;
constexpr size_t kCompactEntryMaxBytes = kKeyBytes + 10;

// LEB128 of zigzag(v) at p; returns the end.
char* store_svar(char* p, int64_t v) {
  uint64_t u = byte_codec::zigzag(v);
  while (u >= 0x80) {
    *p++ = static_cast<char>((u & 0x7f) | 0x80);
    u >>= 7;
  }
  *p++ = static_cast<char>(u);
  return p;
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

using byte_codec::load_u64;
using byte_codec::put_u64;
using byte_codec::store_u64;

}  // namespace

Deduplicator::Deduplicator(Millis horizon)
    : horizon_(std::clamp(horizon, Millis{0}, kMaxHorizon)),
      bucket_width_ms_(
          std::max<int64_t>(1, (horizon_.count() + kBucketsPerHorizon - 1) / kBucketsPerHorizon)) {
  // Live buckets span [bucket(max - horizon), bucket(max)]: at most horizon/width + 2 of them.
  const int64_t slots = (horizon_.count() + bucket_width_ms_ - 1) / bucket_width_ms_ + 2;
  ring_.resize(static_cast<size_t>(slots));
}

Deduplicator::Key Deduplicator::key_of(const Event& event) {
  const std::string_view brand = event.brand_name;
  const std::string_view id = event.id;
  XXH128_hash_t h;
  // The '\0' separator keeps ("ab","c") and ("a","bc") apart; brands cannot contain NUL.
  char buf[256];
  if (brand.size() + 1 + id.size() <= sizeof(buf)) {
    std::memcpy(buf, brand.data(), brand.size());
    buf[brand.size()] = '\0';
    std::memcpy(buf + brand.size() + 1, id.data(), id.size());
    h = XXH3_128bits(buf, brand.size() + 1 + id.size());
  } else {
    XXH3_state_t state;
    XXH3_128bits_reset(&state);
    XXH3_128bits_update(&state, brand.data(), brand.size());
    XXH3_128bits_update(&state, "", 1);
    XXH3_128bits_update(&state, id.data(), id.size());
    h = XXH3_128bits_digest(&state);
  }
  return normalized(Key{h.low64, h.high64});
}

int64_t Deduplicator::bucket_of(int64_t time_ms) const {
  return floor_div(time_ms, bucket_width_ms_);
}

bool Deduplicator::is_duplicate(const Event& event, const Key& given) {
  const Key key = normalized(given);  // key_of's already are: one AND
  const int64_t t = to_epoch_ms(event.time);
  if (!seen_any_) {
    seen_any_ = true;
    max_time_ms_ = t;
    time_base_ms_ = cutoff_ms();
    oldest_bucket_ = bucket_of(cutoff_ms());
  } else if (t > max_time_ms_) {
    advance(t);
  }
  // Entries carry the stream time at which they were seen, not the event's own time: a late
  // event is remembered for a whole horizon of stream time like any other, so its retry is a
  // duplicate too (SPEC 1, dedup v2).
  const int64_t seen = max_time_ms_;
  auto [it, inserted] =
      entries_.insert(Entry{key.low, static_cast<uint32_t>(key.high), since_base(seen)});
  if (!inserted) {
    if (time_of(*it) >= cutoff_ms()) return true;
    it->since_base =
        since_base(seen);  // expired but not yet reclaimed (its bucket straddles the cutoff)
  }
  remember(key, seen);
  note_delta(key, seen);
  return false;
}

void Deduplicator::note_delta(const Key& key, int64_t time_ms) {
  delta_.push_back({key, time_ms});
  if (delta_.size() < delta_compact_at_) return;
  // Without checkpoints (or while they fail) the delta would grow forever: drop what expired,
  // which a checkpoint would leave out anyway. Amortised O(1) per id.
  const int64_t cutoff = cutoff_ms();
  std::erase_if(delta_, [cutoff](const Row& r) { return r.time < cutoff; });
  delta_compact_at_ = std::max<size_t>(kMinDeltaCompaction, 2 * delta_.size());
}

void Deduplicator::remember(const Key& key, int64_t time_ms) {
  const int64_t b = bucket_of(time_ms);
  const auto n = static_cast<int64_t>(ring_.size());
  Bucket& slot = ring_[static_cast<size_t>(((b % n) + n) % n)];
  if (slot.id != b) {
    // Cannot hold a live bucket (the ring spans the horizon), but never drop keys silently.
    if (slot.id != INT64_MIN) expire_bucket(slot);
    slot.id = b;
  }
  slot.keys.push_back({key.low, static_cast<uint32_t>(key.high)});
}

bool Deduplicator::put_entry(const Key& key, int64_t time_ms) {
  auto [it, inserted] =
      entries_.insert(Entry{key.low, static_cast<uint32_t>(key.high), since_base(time_ms)});
  if (!inserted && time_of(*it) < time_ms) it->since_base = since_base(time_ms);
  return inserted;
}

void Deduplicator::rebase_for(int64_t time_ms) {
  if (time_ms - time_base_ms_ <= int64_t{UINT32_MAX}) return;
  // Every 49 days of stream time or so, or after a jump: the entries older than the new cutoff
  // are expired (is_duplicate() would treat them as absent), the others fit from the cutoff on.
  const int64_t base = time_ms - horizon_.count();
  const int64_t shift = base - time_base_ms_;
  absl::erase_if(entries_, [&](const Entry& e) { return time_of(e) < base; });
  for (const Entry& e : entries_) e.since_base = static_cast<uint32_t>(e.since_base - shift);
  time_base_ms_ = base;
}

void Deduplicator::advance(int64_t time_ms) {
  rebase_for(time_ms);
  max_time_ms_ = time_ms;
  const int64_t live_from = bucket_of(cutoff_ms());
  if (live_from <= oldest_bucket_) return;
  const auto n = static_cast<int64_t>(ring_.size());
  if (live_from - oldest_bucket_ >= n) {
    // A jump longer than the horizon: every slot may be dead, visit each once.
    for (Bucket& slot : ring_) {
      if (slot.id != INT64_MIN && slot.id < live_from) expire_bucket(slot);
    }
  } else {
    for (int64_t b = oldest_bucket_; b < live_from; ++b) {
      Bucket& slot = ring_[static_cast<size_t>(((b % n) + n) % n)];
      if (slot.id == b) expire_bucket(slot);
    }
  }
  oldest_bucket_ = live_from;
}

void Deduplicator::expire_bucket(Bucket& bucket) {
  const int64_t cutoff = cutoff_ms();
  for (const PackedKey& packed : bucket.keys) {
    const Key key{packed.low, packed.high};
    // A key may have been refreshed into a newer bucket after it expired; keep it then.
    auto it = entries_.find(key);
    if (it != entries_.end() && time_of(*it) < cutoff) entries_.erase(it);
  }
  bucket.keys.clear();
  bucket.id = INT64_MIN;
}

void Deduplicator::clear() {
  entries_.clear();
  for (Bucket& slot : ring_) {
    slot.keys.clear();
    slot.id = INT64_MIN;
  }
  seen_any_ = false;
  max_time_ms_ = 0;
  time_base_ms_ = 0;
  oldest_bucket_ = 0;
  delta_.clear();
  segments_.clear();
  stale_segments_.clear();
  next_segment_ = 0;
}

size_t Deduplicator::memory_bytes() const {
  // flat_hash_set: one 16-byte entry plus one control byte per slot of capacity.
  size_t bytes = sizeof(*this) + entries_.capacity() * (sizeof(Entry) + 1);
  bytes += ring_.capacity() * sizeof(Bucket);
  for (const Bucket& slot : ring_) bytes += slot.keys.capacity() * sizeof(PackedKey);
  bytes += delta_.capacity() * sizeof(Row) + segments_.size() * sizeof(Segment);
  return bytes;
}

void Deduplicator::snapshot(std::string& out) const {
  std::vector<Row> rows;
  rows.reserve(entries_.size());
  const int64_t cutoff = cutoff_ms();
  for (const Entry& e : entries_) {
    const int64_t time = time_of(e);
    if (time >= cutoff) rows.push_back({Key{e.low, e.high}, time});
  }
  // Hash-map order depends on the process (absl seeds its tables); sorting makes bytes stable.
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.key.high != b.key.high ? a.key.high < b.key.high : a.key.low < b.key.low;
  });
  out.reserve(out.size() + kHeaderBytes + rows.size() * kEntryBytes);
  out.append(kMagic);
  out.push_back(static_cast<char>(kSnapshotVersion));
  out.push_back(seen_any_ ? 1 : 0);
  put_u64(out, static_cast<uint64_t>(max_time_ms_));
  put_u64(out, rows.size());
  for (const Row& r : rows) {
    put_u64(out, r.key.high);
    put_u64(out, r.key.low);
    put_u64(out, static_cast<uint64_t>(r.time));
  }
}

Status Deduplicator::restore(std::string_view bytes) {
  auto corrupt = [](const char* why) {
    return make_error(ErrorKind::fatal, std::string("deduplicator snapshot: ") + why);
  };
  if (bytes.size() < kHeaderBytes || bytes.substr(0, 4) != kMagic) return corrupt("bad header");
  if (static_cast<uint8_t>(bytes[4]) != kSnapshotVersion) return corrupt("unsupported version");
  const bool seen_any = bytes[5] != 0;
  const auto max_time = static_cast<int64_t>(load_u64(bytes.data() + 6));
  const uint64_t count = load_u64(bytes.data() + 14);
  if (count > (bytes.size() - kHeaderBytes) / kEntryBytes ||
      bytes.size() != kHeaderBytes + count * kEntryBytes) {
    return corrupt("length does not match entry count");
  }
  if (!seen_any && count != 0) return corrupt("entries without a max event time");
  if (seen_any &&
      (max_time < to_epoch_ms(kMinEventTime) || max_time > to_epoch_ms(kMaxEventTime))) {
    return corrupt("max event time out of range");
  }
  clear();
  if (!seen_any) return {};
  seen_any_ = true;
  max_time_ms_ = max_time;
  time_base_ms_ = cutoff_ms();
  oldest_bucket_ = bucket_of(cutoff_ms());
  entries_.reserve(count);
  const int64_t cutoff = cutoff_ms();
  const char* p = bytes.data() + kHeaderBytes;
  for (uint64_t i = 0; i < count; ++i, p += kEntryBytes) {
    const Key key = normalized(Key{load_u64(p + 8), load_u64(p)});
    const auto time = static_cast<int64_t>(load_u64(p + 16));
    if (time > max_time) {
      clear();
      return corrupt("entry newer than the max event time");
    }
    // A shorter configured horizon than at snapshot time: those entries are already expired.
    if (time < cutoff) continue;
    if (!put_entry(key, time)) {
      clear();
      return corrupt("duplicate key");
    }
    remember(key, time);
    // No segment holds these ids yet: the next incremental checkpoint writes them all.
    delta_.push_back({key, time});
  }
  return {};
}

void Deduplicator::prepare_checkpoint(CheckpointDelta& out) const {
  out.header.clear();
  out.header.append(kMagic);
  out.header.push_back(static_cast<char>(kIncrementalVersion));
  out.header.push_back(seen_any_ ? 1 : 0);
  put_u64(out.header, static_cast<uint64_t>(max_time_ms_));
  const int64_t cutoff = cutoff_ms();
  out.expired_segments.clear();
  for (const Segment& seg : segments_) {
    if (seg.newest_ms < cutoff) out.expired_segments.push_back(seg.seq);
  }
  // Written ahead for a checkpoint that never committed (found by the last restore): deleted
  // with this header, which names segment numbers past theirs.
  out.expired_segments.insert(out.expired_segments.end(), stale_segments_.begin(),
                              stale_segments_.end());
  std::sort(out.expired_segments.begin(), out.expired_segments.end());
  out.delta_count = delta_.size();
  out.has_segment = build_segment(cutoff, out.segment_bytes);
  out.segment = next_segment_;
  // The header names the next free segment number, so a restore never reuses a stored one.
  put_u64(out.header, next_segment_ + (out.has_segment ? 1 : 0));
}

bool Deduplicator::build_segment(int64_t cutoff, std::string& bytes) const {
  bytes.clear();
  size_t live = 0;
  for (const Row& r : delta_) live += r.time >= cutoff ? 1 : 0;
  if (live == 0) return false;
  bytes.append(kSegmentMagic);
  bytes.push_back(static_cast<char>(kSegmentVersion));
  put_u64(bytes, live);
  // Insertion order: deterministic for a given input, and no sort on the checkpoint path. Sized
  // once for the longest entries, written in place, then trimmed: appends per id were most of
  // this function.
  const size_t at = bytes.size();
  bytes.resize(at + live * kCompactEntryMaxBytes);
  char* const begin = bytes.data();
  char* p = begin + at;
  int64_t previous = 0;
  for (const Row& r : delta_) {
    if (r.time < cutoff) continue;  // remembered and already expired: restore would skip it
    store_u64(p, r.key.low);
    byte_codec::store_u32(p + 8, static_cast<uint32_t>(r.key.high));
    // Wrapping difference: any two int64 times round-trip, whatever their distance.
    p = store_svar(p + kKeyBytes, static_cast<int64_t>(static_cast<uint64_t>(r.time) -
                                                       static_cast<uint64_t>(previous)));
    previous = r.time;
  }
  bytes.resize(static_cast<size_t>(p - begin));
  return true;
}

void Deduplicator::checkpoint_committed(const CheckpointDelta& delta) {
  int64_t newest = INT64_MIN;
  const int64_t cutoff = cutoff_ms();
  const size_t n = std::min(delta.delta_count, delta_.size());
  for (size_t i = 0; i < n; ++i) {
    if (delta_[i].time >= cutoff) newest = std::max(newest, delta_[i].time);
  }
  delta_.erase(delta_.begin(), delta_.begin() + static_cast<std::ptrdiff_t>(n));
  if (!delta.expired_segments.empty()) {
    auto deleted = [&](uint64_t seq) {
      return std::binary_search(delta.expired_segments.begin(), delta.expired_segments.end(), seq);
    };
    std::erase_if(segments_, [&](const Segment& seg) { return deleted(seg.seq); });
    std::erase_if(stale_segments_, deleted);
  }
  if (delta.has_segment) {
    segments_.push_back({delta.segment, newest});
    next_segment_ = delta.segment + 1;
  }
}

Status Deduplicator::begin_restore(std::string_view header) {
  auto corrupt = [](const char* why) {
    return make_error(ErrorKind::fatal, std::string("deduplicator checkpoint header: ") + why);
  };
  if (header.size() >= 5 && header.substr(0, 4) == kMagic &&
      static_cast<uint8_t>(header[4]) == kSnapshotVersion) {
    return restore(header);  // written before incremental checkpoints: a full snapshot
  }
  if (header.size() != kIncrementalHeaderBytes || header.substr(0, 4) != kMagic ||
      static_cast<uint8_t>(header[4]) != kIncrementalVersion) {
    return corrupt("bad header");
  }
  const bool seen_any = header[5] != 0;
  const auto max_time = static_cast<int64_t>(load_u64(header.data() + 6));
  const uint64_t next_segment = load_u64(header.data() + 14);
  if (seen_any &&
      (max_time < to_epoch_ms(kMinEventTime) || max_time > to_epoch_ms(kMaxEventTime))) {
    return corrupt("max event time out of range");
  }
  clear();
  next_segment_ = next_segment;
  if (!seen_any) return {};
  seen_any_ = true;
  max_time_ms_ = max_time;
  time_base_ms_ = cutoff_ms();
  oldest_bucket_ = bucket_of(cutoff_ms());
  return {};
}

Status Deduplicator::restore_segment(uint64_t segment, std::string_view bytes) {
  auto corrupt = [this](const char* why) {
    clear();
    return make_error(ErrorKind::fatal, std::string("deduplicator segment: ") + why);
  };
  if (segment >= next_segment_) {
    // Written ahead for a checkpoint that never committed: its ids came after this header's
    // offsets, so they are not restored (nor read); the next checkpoint deletes it.
    stale_segments_.push_back(segment);
    return {};
  }
  if (bytes.size() < kSegmentHeaderBytes || bytes.substr(0, 4) != kSegmentMagic) {
    return corrupt("bad header");
  }
  const auto version = static_cast<uint8_t>(bytes[4]);
  if (version != kSegmentFixedVersion && version != kSegmentWideVersion &&
      version != kSegmentVersion) {
    return corrupt("bad header");
  }
  const bool fixed = version == kSegmentFixedVersion;
  const bool wide = version != kSegmentVersion;  // 16-byte keys, high word first
  const uint64_t count = load_u64(bytes.data() + 5);
  const size_t body = bytes.size() - kSegmentHeaderBytes;
  if (fixed ? count > body / kEntryBytes || body != count * kEntryBytes
            : count > body / kCompactEntryMinBytes) {
    return corrupt("length does not match entry count");
  }
  if (!seen_any_ && count != 0) return corrupt("entries without a max event time");
  const int64_t cutoff = cutoff_ms();
  int64_t newest = INT64_MIN;
  byte_codec::Reader in(bytes.substr(kSegmentHeaderBytes));
  int64_t previous = 0;
  for (uint64_t i = 0; i < count; ++i) {
    const std::string_view k = in.bytes(wide ? 16 : kKeyBytes);
    int64_t time = 0;
    if (fixed) {
      time = in.i64();
    } else {
      // Wrapping sum, the inverse of prepare_checkpoint's wrapping difference.
      time =
          static_cast<int64_t>(static_cast<uint64_t>(previous) + static_cast<uint64_t>(in.svar()));
      previous = time;
    }
    if (!in.ok()) return corrupt("length does not match entry count");
    const Key key = wide ? normalized(Key{load_u64(k.data() + 8), load_u64(k.data())})
                         : Key{load_u64(k.data()), byte_codec::load_u32(k.data() + 8)};
    if (time > max_time_ms_) return corrupt("entry newer than the max event time");
    newest = std::max(newest, time);
    if (time < cutoff) continue;
    // A key re-seen after it expired is in a later segment with a later time: the latest wins.
    put_entry(key, time);
  }
  if (!in.done()) return corrupt("length does not match entry count");
  // Kept even when expired (a shorter horizon than at write time): the next checkpoint deletes it.
  segments_.push_back({segment, newest});
  return {};
}

Status Deduplicator::finish_restore() {
  std::sort(segments_.begin(), segments_.end(),
            [](const Segment& a, const Segment& b) { return a.seq < b.seq; });
  std::sort(stale_segments_.begin(), stale_segments_.end());
  const bool twice =
      std::adjacent_find(segments_.begin(), segments_.end(),
                         [](const Segment& a, const Segment& b) { return a.seq == b.seq; }) !=
          segments_.end() ||
      std::adjacent_find(stale_segments_.begin(), stale_segments_.end()) != stale_segments_.end();
  if (twice) {
    clear();
    return make_error(ErrorKind::fatal, "deduplicator segment: stored twice");
  }
  // New segments are numbered past the stale ones: the checkpoint that deletes those may write
  // a segment in the same batch.
  if (!stale_segments_.empty()) next_segment_ = std::max(next_segment_, stale_segments_.back() + 1);
  // Bucket contents only steer reclamation, so hash-map order here is harmless.
  for (const Entry& e : entries_) remember(Key{e.low, e.high}, time_of(e));
  return {};
}

namespace {

std::string segment_key(uint64_t seq) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "seg/%016" PRIx64, seq);
  return buf;
}

}  // namespace

void Deduplicator::checkpoint(StateWriter& out) { out.put("header", checkpoint_segments(out)); }

const std::string& Deduplicator::checkpoint_segments(StateWriter& out) {
  // Only the ids remembered since the last checkpoint: rewriting the whole set every second was
  // 40-55 % of the runner thread at 1 M ids.
  prepare_checkpoint(pending_delta_);
  if (pending_delta_.has_segment) {
    out.put(segment_key(pending_delta_.segment), pending_delta_.segment_bytes);
  }
  for (uint64_t seq : pending_delta_.expired_segments) out.remove(segment_key(seq));
  return pending_delta_.header;
}

bool Deduplicator::write_ahead(StateWriter& out) {
  pending_delta_.header.clear();
  pending_delta_.expired_segments.clear();
  pending_delta_.delta_count = delta_.size();
  pending_delta_.has_segment = build_segment(cutoff_ms(), pending_delta_.segment_bytes);
  pending_delta_.segment = next_segment_;
  if (!pending_delta_.has_segment) return false;
  out.put(segment_key(pending_delta_.segment), pending_delta_.segment_bytes);
  return true;
}

Status Deduplicator::restore(StateReader& in) {
  auto header = in.get("header");
  if (!header) return tl::unexpected(header.error());
  return restore(in, *header ? std::optional<std::string_view>(**header) : std::nullopt);
}

Status Deduplicator::restore(StateReader& in, std::optional<std::string_view> header) {
  clear();
  // Without a header no checkpoint of this partition committed: any segment found was written
  // ahead of one that did not, and is stale.
  if (header) {
    if (auto s = begin_restore(*header); !s) return s;
  }
  // Segments are collected first to size the table once (24 bytes an id, an upper bound: some
  // may have expired): no rehash while restoring 1 M ids.
  std::vector<std::pair<uint64_t, std::string>> segments;
  size_t ids = 0;
  auto scanned = in.scan("seg/", [&](std::string_view key, std::string_view bytes) -> Status {
    uint64_t seq = 0;
    const std::string_view hex = key.substr(4);
    const auto parsed = std::from_chars(hex.data(), hex.data() + hex.size(), seq, 16);
    if (hex.size() != 16 || parsed.ptr != hex.data() + hex.size()) {
      return make_error(ErrorKind::fatal, "dedup: corrupt segment key '" + std::string(key) + "'");
    }
    if (seq >= next_segment_) {  // stale (restore_segment()): neither read nor kept
      segments.emplace_back(seq, std::string());
      return {};
    }
    // The entry count of either segment version, bounded by what the bytes can hold.
    if (bytes.size() >= kSegmentHeaderBytes)
      ids += std::min<uint64_t>(load_u64(bytes.data() + 5), bytes.size() / kCompactEntryMinBytes);
    segments.emplace_back(seq, std::string(bytes));
    return {};
  });
  if (!scanned) return scanned;
  reserve(ids);
  for (const auto& [seq, bytes] : segments) {
    if (auto s = restore_segment(seq, bytes); !s) return s;
  }
  return finish_restore();
}

}  // namespace sp
