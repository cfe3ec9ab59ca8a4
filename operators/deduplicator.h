#pragma once
// Per-partition duplicate filter (SPEC 1 "Accounting", dedup v2): stream time is the partition's
// max event time seen; an event is a duplicate when its (brand_name, id) was seen while stream
// time was within `horizon` of the stream time now, whatever the events' own times. One instance
// per input partition; single-threaded, like every operator's state. Deterministic on replay (it
// depends on the partition's events in offset order only); memory holds the ids seen during one
// horizon of stream time.
#include <absl/container/flat_hash_set.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "operators/event.h"
#include "operators/keyed_state.h"
#include "operators/time.h"

namespace sp {

class Deduplicator {
 public:
  // Horizons longer than kMaxHorizon are held as kMaxHorizon (the configuration refuses them).
  explicit Deduplicator(Millis horizon);
  // In memory a remembered time is 32 bits of milliseconds from a base that moves with stream
  // time, so two remembered times can be at most this far apart.
  static constexpr Millis kMaxHorizon{49LL * 24 * 3600 * 1000};

  // Returns true for a duplicate (and changes nothing); otherwise remembers the event, stamped
  // with the stream time now, and returns false. The id stays remembered until stream time has
  // advanced more than `horizon` past that stamp: a late event's retry is a duplicate too.
  bool is_duplicate(const Event& event) { return is_duplicate(event, key_of(event)); }

  // The dedup key of (brand, id): XXH3-128 over the brand, a NUL and the id, cut to 96 bits (the
  // upper half of `high` is 0). Two different ids share a key with probability 2^-96: with 10^9
  // ids inside the horizon, one false duplicate is expected after ~10^19 events. 96 bits are
  // stored (13 bytes an id with its time), not 128 (17). Pure, so it can be computed ahead, on
  // another thread (the runner's source thread does).
  struct Key {
    uint64_t low = 0;
    uint64_t high = 0;
    bool operator==(const Key&) const = default;
  };
  static Key key_of(const Event& event);
  static constexpr Key normalized(Key k) { return Key{k.low, k.high & 0xffffffffu}; }
  // Same as is_duplicate(event) with key == key_of(event) (any key is normalized first).
  bool is_duplicate(const Event& event, const Key& key);
  // Starts loading the table slot of `key` into the cache (the table outgrows it at ~1 M ids).
  void prefetch(const Key& key) const { entries_.prefetch(key); }

  // Entries not yet reclaimed. Expiry is exact for is_duplicate(); memory is reclaimed in
  // buckets of horizon/64, so size() may include up to one bucket of already-expired ids.
  size_t size() const { return entries_.size(); }
  size_t memory_bytes() const;
  Millis horizon() const { return horizon_; }

  // Deterministic (entries sorted by key, expired entries left out); restore() replaces the
  // state. The horizon is not restored: the configured one applies to restored entries. Stored
  // times are the stream time at which each id was seen; state written before dedup v2 holds
  // event times there, which are <= that stream time, so such ids expire no later than the old
  // rule said: same bytes, read as before.
  void snapshot(std::string& out) const;
  Status restore(std::string_view bytes);

  // Incremental checkpoints: a small header plus segments, each holding the ids remembered
  // between two committed checkpoints, so that a checkpoint costs what changed. A segment can be
  // deleted once every id in it left the horizon. The store keeps bytes; this class decides.
  struct CheckpointDelta {
    std::string header;        // always written; replaces the previous header
    bool has_segment = false;  // no new ids: no segment
    uint64_t segment = 0;      // sequence number of the new segment
    std::string segment_bytes;
    std::vector<uint64_t> expired_segments;  // to delete in the same batch
    size_t delta_count = 0;  // ids covered by this delta (consumed by checkpoint_committed)
  };
  // Fills `out` from the state now; changes nothing, so a failed commit can simply be retried.
  void prepare_checkpoint(CheckpointDelta& out) const;
  // Call after `delta` (from the last prepare_checkpoint, with no event in between) is durable.
  void checkpoint_committed(const CheckpointDelta& delta);
  // Restore: begin_restore(header) — which also accepts a full snapshot() from before segments
  // existed, whose ids then go into the next segment — then restore_segment() for every stored
  // segment, then finish_restore(). Ids are exactly those of the last committed checkpoint: a
  // segment numbered at or past the header's next number was written ahead (write_ahead()) for a
  // checkpoint that never committed, and is left out.
  Status begin_restore(std::string_view header);
  Status restore_segment(uint64_t segment, std::string_view bytes);
  // Optional, between begin_restore() and the segments: sizes the table once (no rehashing).
  void reserve(size_t ids) { entries_.reserve(ids); }
  Status finish_restore();
  size_t segment_count() const { return segments_.size(); }

  // The keyed state contract (keyed_state.h) over the two calls above: `header` and
  // `seg/<16 hex digits>` keys. checkpoint() writes the delta prepared now (and keeps it);
  // checkpoint_committed() once the store committed it, with no event in between.
  void checkpoint(StateWriter& out);
  void checkpoint_committed() { checkpoint_committed(pending_delta_); }
  Status restore(StateReader& in);
  // The same with the header kept by the caller (the Topology stores it in the partition's
  // position key: one key fewer a checkpoint): checkpoint() without `header` writes the
  // segments only and returns the header to store; restore() takes it back (nullopt: none was
  // stored, no checkpoint committed) and reads only the segments from `in`.
  const std::string& checkpoint_segments(StateWriter& out);
  Status restore(StateReader& in, std::optional<std::string_view> header);

  // Write-ahead (issue #20): the ids remembered since the last segment go into a segment of their
  // own now, ahead of the checkpoint whose header will name it, so that the checkpoint itself
  // writes only the ids remembered since. Nothing else is written: a restore from an earlier
  // header finds the segment numbered past that header and leaves it out (its ids came after
  // that checkpoint's offsets); the next checkpoint deletes it. False when there is nothing to
  // write. Call write_ahead_committed() once `out`'s batch is written, with no event in between;
  // after a failed write, simply not (the ids stay for the next segment).
  bool write_ahead(StateWriter& out);
  void write_ahead_committed() { checkpoint_committed(pending_delta_); }
  // Ids not yet in any segment (what write_ahead() or the next checkpoint would write, expired
  // ones included).
  size_t unwritten_ids() const { return delta_.size(); }

 private:
  // One remembered id: the key's 96 bits and the stream time it was seen at, as milliseconds
  // from time_base_ms_. 16 bytes a slot, not the 24 of a Key -> int64 map: the table is most of
  // the state's memory under load, and growing it (fresh pages, every slot moved) was a fifth of
  // the pipeline thread in bench_e2e.
  struct Entry {
    uint64_t low = 0;
    uint32_t high = 0;
    mutable uint32_t since_base = 0;  // not part of the key: updated in place
  };
  // Keys are already XXH3-128 outputs: re-hashing them would only cost time. Entries and keys
  // hash and compare alike (lookups by Key build no Entry).
  struct EntryHash {
    using is_transparent = void;
    static size_t mix(uint64_t low, uint64_t high) {
      return static_cast<size_t>(low ^ (high >> 7));
    }
    size_t operator()(const Entry& e) const { return mix(e.low, e.high); }
    size_t operator()(const Key& k) const { return mix(k.low, k.high); }
  };
  struct EntryEq {
    using is_transparent = void;
    bool operator()(const Entry& a, const Entry& b) const {
      return a.low == b.low && a.high == b.high;
    }
    bool operator()(const Entry& a, const Key& b) const {
      return a.low == b.low && a.high == b.high;
    }
    bool operator()(const Key& a, const Entry& b) const {
      return b.low == a.low && b.high == a.high;
    }
  };
  // A key's 96 bits in 12 bytes, for the expiry ring (one per remembered id).
  struct __attribute__((packed)) PackedKey {
    uint64_t low;
    uint32_t high;
  };
  static_assert(sizeof(PackedKey) == 12);
  struct Bucket {
    int64_t id = INT64_MIN;       // stream time / bucket width; INT64_MIN = unused slot
    std::vector<PackedKey> keys;  // cleared, never shrunk: steady state allocates nothing
  };

  int64_t bucket_of(int64_t time_ms) const;
  int64_t cutoff_ms() const { return max_time_ms_ - horizon_.count(); }
  int64_t time_of(const Entry& e) const { return time_base_ms_ + e.since_base; }
  uint32_t since_base(int64_t time_ms) const {
    return static_cast<uint32_t>(time_ms - time_base_ms_);
  }
  // Remembers (key, time) when absent, or sets its time when it is later: true if inserted.
  bool put_entry(const Key& key, int64_t time_ms);
  // Moves time_base_ms_ so that `time_ms` (the new max) is representable; drops the entries
  // that are expired at that max (the representable span is longer than the horizon).
  void rebase_for(int64_t time_ms);
  void remember(const Key& key, int64_t time_ms);
  void advance(int64_t time_ms);
  void expire_bucket(Bucket& bucket);
  void note_delta(const Key& key, int64_t time_ms);
  // The segment of delta_'s ids not expired at `cutoff` into `bytes`; false (bytes empty) when
  // there is none.
  bool build_segment(int64_t cutoff, std::string& bytes) const;
  void clear();

  Millis horizon_;
  int64_t bucket_width_ms_;
  bool seen_any_ = false;
  int64_t max_time_ms_ = 0;
  int64_t oldest_bucket_ = 0;  // every live entry's bucket is >= this
  int64_t time_base_ms_ = 0;   // <= every remembered time; max_time_ms_ - base < 2^32
  absl::flat_hash_set<Entry, EntryHash, EntryEq> entries_;
  std::vector<Bucket> ring_;  // bucket b lives in slot b mod ring_.size()

  struct Row {
    Key key;
    int64_t time;
  };
  struct Segment {
    uint64_t seq;
    int64_t newest_ms;  // deletable once the cutoff passes it
  };
  std::vector<Row> delta_;        // remembered since the last committed checkpoint, in order
  std::deque<Segment> segments_;  // stored segments, by sequence number
  uint64_t next_segment_ = 0;
  // Segments the last restore found numbered past its header (written ahead for a checkpoint
  // that never committed): deleted by the next checkpoint.
  std::vector<uint64_t> stale_segments_;
  CheckpointDelta pending_delta_;  // written by checkpoint(), applied by checkpoint_committed()
  static constexpr size_t kMinDeltaCompaction = 4096;
  size_t delta_compact_at_ = kMinDeltaCompaction;
};

}  // namespace sp
