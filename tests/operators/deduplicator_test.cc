#include "operators/deduplicator.h"

#include "operators/byte_codec.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <map>
#include <random>
#include <string>
#include <vector>

namespace sp {
namespace {

constexpr Millis kHorizon{15 * 60 * 1000};

struct Owned {
  std::string brand;
  std::string id;
  int64_t time_ms;
  Event view() const {
    Event e;
    e.brand_name = brand;
    e.id = id;
    e.time = from_epoch_ms(time_ms);
    return e;
  }
};

bool dup(Deduplicator& d, const std::string& brand, const std::string& id, int64_t t) {
  return d.is_duplicate(Owned{brand, id, t}.view());
}

TEST(Deduplicator, SecondSightingIsDuplicate) {
  Deduplicator d(kHorizon);
  EXPECT_FALSE(dup(d, "acme", "e1", 1000));
  EXPECT_TRUE(dup(d, "acme", "e1", 1000));
  EXPECT_TRUE(dup(d, "acme", "e1", 5000));  // same id, other time: still the same event
  EXPECT_EQ(d.size(), 1u);
}

TEST(Deduplicator, KeyIsBrandAndId) {
  Deduplicator d(kHorizon);
  EXPECT_FALSE(dup(d, "acme", "e1", 0));
  EXPECT_FALSE(dup(d, "globex", "e1", 0));
  EXPECT_FALSE(dup(d, "acme", "e2", 0));
  // The separator keeps concatenations apart.
  EXPECT_FALSE(dup(d, "ab", "c", 0));
  EXPECT_FALSE(dup(d, "a", "bc", 0));
  EXPECT_EQ(d.size(), 5u);
}

TEST(Deduplicator, LongIdsUseTheStreamingHashConsistently) {
  Deduplicator d(kHorizon);
  const std::string long_id(300, 'x');
  EXPECT_FALSE(dup(d, "acme", long_id, 0));
  EXPECT_TRUE(dup(d, "acme", long_id, 0));
  EXPECT_FALSE(dup(d, "acme", long_id + "y", 0));
}

TEST(Deduplicator, ExpiresExactlyAtTheHorizon) {
  Deduplicator d(kHorizon);
  const int64_t h = kHorizon.count();
  EXPECT_FALSE(dup(d, "acme", "old", 0));
  EXPECT_FALSE(dup(d, "acme", "tick", h));       // max = h: cutoff 0, "old" (t=0) still live
  EXPECT_TRUE(dup(d, "acme", "old", 0));
  EXPECT_FALSE(dup(d, "acme", "tick2", h + 1));  // cutoff 1: "old" expired
  EXPECT_FALSE(dup(d, "acme", "old", h + 1));    // a new sighting, remembered again
  EXPECT_TRUE(dup(d, "acme", "old", h + 1));
}

TEST(Deduplicator, RetryOfAnEventOlderThanTheHorizonIsADuplicate) {
  // Issue #17: crawlers deliver late; a late event's immediate retry must not count twice.
  Deduplicator d(kHorizon);
  EXPECT_FALSE(dup(d, "acme", "now", 10 * kHorizon.count()));
  EXPECT_FALSE(dup(d, "acme", "late", 0));
  EXPECT_TRUE(dup(d, "acme", "late", 0));
  EXPECT_TRUE(dup(d, "acme", "late", 5));  // a retry with another time is the same event
  EXPECT_EQ(d.size(), 2u);
}

TEST(Deduplicator, LateIdIsRememberedForOneHorizonOfStreamTime) {
  Deduplicator d(kHorizon);
  const int64_t h = kHorizon.count();
  const int64_t now = 10 * h;
  EXPECT_FALSE(dup(d, "acme", "now", now));
  EXPECT_FALSE(dup(d, "acme", "late", 0));  // seen at stream time `now`
  EXPECT_FALSE(dup(d, "acme", "tick", now + h));
  EXPECT_TRUE(dup(d, "acme", "late", 0));  // stream time advanced exactly one horizon: still held
  EXPECT_FALSE(dup(d, "acme", "tick2", now + h + 1));
  EXPECT_FALSE(dup(d, "acme", "late", 0));  // retry after the horizon: accepted, remembered again
  EXPECT_TRUE(dup(d, "acme", "late", 0));
}

// Remembered times are 32-bit offsets from a base that moves with stream time: crossing the
// point where the base moves keeps what is within the horizon, exactly, and drops only what
// expired; a snapshot taken after it restores to the same bytes.
TEST(Deduplicator, StreamTimeRunningPastThe32BitSpanKeepsTheHorizonExact) {
  const int64_t h = 30'000;
  Deduplicator d(Millis{h});
  const int64_t t0 = 1'000'000;
  EXPECT_FALSE(dup(d, "acme", "old", t0));
  // The base starts one horizon before the first event; the span ends 2^32 ms after it.
  const int64_t end_of_span = t0 - h + int64_t{UINT32_MAX};
  const int64_t t1 = end_of_span - 100;
  EXPECT_FALSE(dup(d, "acme", "x", t1));
  EXPECT_FALSE(dup(d, "acme", "y", end_of_span + 100));  // past the span: the base moves
  EXPECT_TRUE(dup(d, "acme", "x", 0));                     // 200 ms old: still held
  EXPECT_FALSE(dup(d, "acme", "old", 0));                  // expired long ago
  std::string before;
  d.snapshot(before);
  Deduplicator restored(Millis{h});
  ASSERT_TRUE(restored.restore(before));
  std::string after;
  restored.snapshot(after);
  EXPECT_EQ(after, before);
  for (Deduplicator* each : {&d, &restored}) {
    EXPECT_FALSE(dup(*each, "acme", "tick", t1 + h));
    EXPECT_TRUE(dup(*each, "acme", "x", 0));  // exactly one horizon after it was seen
    EXPECT_FALSE(dup(*each, "acme", "tick2", t1 + h + 1));
    EXPECT_FALSE(dup(*each, "acme", "x", 0));  // one millisecond more: expired
  }
  // A jump of many spans at once.
  EXPECT_FALSE(dup(d, "acme", "far", t1 + 40 * int64_t{UINT32_MAX}));
  EXPECT_TRUE(dup(d, "acme", "far", 0));
  EXPECT_FALSE(dup(d, "acme", "y", 0));
  EXPECT_EQ(d.size(), 2u);
}

TEST(Deduplicator, RetryAfterTheHorizonOfStreamTimeIsAccepted) {
  Deduplicator d(Millis{60'000});
  EXPECT_FALSE(dup(d, "acme", "a", 1'000'000));
  EXPECT_FALSE(dup(d, "acme", "b", 1'000'000 + 60'001));
  EXPECT_FALSE(dup(d, "acme", "a", 1'000'000));
}

TEST(Deduplicator, LateIdsSurviveARestore) {
  Deduplicator live(kHorizon);
  EXPECT_FALSE(dup(live, "acme", "now", 10 * kHorizon.count()));
  EXPECT_FALSE(dup(live, "acme", "late", 0));
  std::string bytes;
  live.snapshot(bytes);
  Deduplicator restored(kHorizon);
  ASSERT_TRUE(restored.restore(bytes).has_value());
  EXPECT_TRUE(dup(restored, "acme", "late", 0));
}

TEST(Deduplicator, OutOfOrderWithinHorizonIsRemembered) {
  Deduplicator d(kHorizon);
  EXPECT_FALSE(dup(d, "acme", "a", 1'000'000));
  EXPECT_FALSE(dup(d, "acme", "b", 1'000'000 - kHorizon.count() + 1));
  EXPECT_TRUE(dup(d, "acme", "b", 0));
}

TEST(Deduplicator, MemoryIsBoundedByTheHorizon) {
  // One event per second for 10 horizons: the live set is ~one horizon of ids, and memory stops
  // growing once the ring, table and (never checkpointed here) delta have reached their
  // steady-state capacity; the delta first compacts after 4096 ids, ~4.6 horizons.
  Deduplicator d(kHorizon);
  const int64_t per_horizon = kHorizon.count() / 1000;
  size_t memory_after_five_horizons = 0;
  for (int64_t s = 0; s < 10 * per_horizon; ++s) {
    ASSERT_FALSE(dup(d, "acme", "id-" + std::to_string(s), s * 1000));
    if (s == 5 * per_horizon) memory_after_five_horizons = d.memory_bytes();
    if (s > per_horizon) {
      ASSERT_LE(d.size(), static_cast<size_t>(per_horizon + per_horizon / 64 + 2)) << s;
    }
  }
  EXPECT_GE(d.size(), static_cast<size_t>(per_horizon));
  EXPECT_EQ(d.memory_bytes(), memory_after_five_horizons);
  EXPECT_LT(d.memory_bytes(), size_t{200} * 1024);
}

TEST(Deduplicator, TimeJumpBeyondTheHorizonExpiresEverything) {
  Deduplicator d(kHorizon);
  for (int i = 0; i < 1000; ++i) dup(d, "acme", std::to_string(i), i);
  EXPECT_EQ(d.size(), 1000u);
  EXPECT_FALSE(dup(d, "acme", "future", 365LL * 24 * 3600 * 1000));
  EXPECT_EQ(d.size(), 1u);
  EXPECT_FALSE(dup(d, "acme", "0", 365LL * 24 * 3600 * 1000));
}

TEST(Deduplicator, NegativeTimes) {
  Deduplicator d(Millis{1000});
  EXPECT_FALSE(dup(d, "acme", "a", -5000));
  EXPECT_TRUE(dup(d, "acme", "a", -5000));
  EXPECT_FALSE(dup(d, "acme", "b", -3999));
  EXPECT_FALSE(dup(d, "acme", "a", -3999));  // cutoff -4999 > -5000: expired
}

TEST(Deduplicator, ZeroHorizonOnlyCatchesSameMaxTime) {
  Deduplicator d(Millis{0});
  EXPECT_FALSE(dup(d, "acme", "a", 10));
  EXPECT_TRUE(dup(d, "acme", "a", 10));
  EXPECT_FALSE(dup(d, "acme", "b", 11));
  EXPECT_FALSE(dup(d, "acme", "a", 11));
}

std::vector<Owned> random_stream(size_t n, uint32_t seed) {
  // Mostly increasing time with jitter, ~20% repeats drawn from recent ids.
  std::mt19937 rng(seed);
  std::vector<Owned> out;
  int64_t t = 1'700'000'000'000;
  for (size_t i = 0; i < n; ++i) {
    t += std::uniform_int_distribution<int64_t>(0, 2000)(rng);
    const int64_t jitter = std::uniform_int_distribution<int64_t>(-60'000, 0)(rng);
    if (!out.empty() && std::uniform_int_distribution<int>(0, 4)(rng) == 0) {
      const size_t back = std::uniform_int_distribution<size_t>(0, std::min<size_t>(out.size() - 1, 2000))(rng);
      Owned again = out[out.size() - 1 - back];
      again.time_ms = t + jitter;
      out.push_back(again);
    } else {
      out.push_back({i % 3 ? "acme" : "globex", "id-" + std::to_string(i), t + jitter});
    }
  }
  return out;
}

TEST(Deduplicator, RestoreIsEquivalentToNeverStopping) {
  const auto stream = random_stream(20000, 7);
  Deduplicator uninterrupted(kHorizon);
  std::vector<bool> expected;
  for (const auto& o : stream) expected.push_back(uninterrupted.is_duplicate(o.view()));
  ASSERT_GT(std::count(expected.begin(), expected.end(), true), 1000);

  for (size_t cut : {size_t{0}, size_t{1}, size_t{5000}, size_t{13333}, stream.size()}) {
    SCOPED_TRACE(cut);
    Deduplicator before(kHorizon);
    for (size_t i = 0; i < cut; ++i) ASSERT_EQ(before.is_duplicate(stream[i].view()), expected[i]);
    std::string bytes;
    before.snapshot(bytes);
    Deduplicator after(kHorizon);
    ASSERT_TRUE(after.restore(bytes).has_value());
    std::string again;
    after.snapshot(again);
    EXPECT_EQ(again, bytes);  // restore(snapshot) is a fixed point
    for (size_t i = cut; i < stream.size(); ++i) {
      ASSERT_EQ(after.is_duplicate(stream[i].view()), expected[i]) << i;
    }
  }
}

TEST(Deduplicator, SnapshotIsDeterministicAcrossInsertionOrder) {
  Deduplicator a(kHorizon), b(kHorizon);
  for (int i = 0; i < 500; ++i) dup(a, "acme", std::to_string(i), 1000);
  for (int i = 499; i >= 0; --i) dup(b, "acme", std::to_string(i), 1000);
  std::string sa, sb;
  a.snapshot(sa);
  b.snapshot(sb);
  EXPECT_EQ(sa, sb);
}

TEST(Deduplicator, SnapshotLeavesExpiredEntriesOut) {
  Deduplicator d(Millis{64'000});
  dup(d, "acme", "old", 0);
  dup(d, "acme", "new", 64'500);  // cutoff 500: "old" expired, its bucket not yet reclaimed
  std::string bytes;
  d.snapshot(bytes);
  Deduplicator restored(Millis{64'000});
  ASSERT_TRUE(restored.restore(bytes).has_value());
  EXPECT_EQ(restored.size(), 1u);
}

TEST(Deduplicator, RestoreRejectsCorruptBytes) {
  Deduplicator d(kHorizon);
  dup(d, "acme", "a", 1000);
  dup(d, "acme", "b", 1000);
  std::string good;
  d.snapshot(good);
  Deduplicator r(kHorizon);
  EXPECT_FALSE(r.restore("").has_value());
  EXPECT_FALSE(r.restore("XXXX").has_value());
  EXPECT_FALSE(r.restore(good.substr(0, good.size() - 1)).has_value());
  EXPECT_FALSE(r.restore(good + "x").has_value());
  std::string bad_version = good;
  bad_version[4] = 9;
  EXPECT_FALSE(r.restore(bad_version).has_value());
  std::string huge_count = good;
  huge_count.replace(14, 8, std::string(8, '\xff'));
  EXPECT_FALSE(r.restore(huge_count).has_value());
  std::string dup_key = good;
  dup_key.replace(22 + 24, 16, good.substr(22, 16));
  EXPECT_FALSE(r.restore(dup_key).has_value());
  ASSERT_TRUE(r.restore(good).has_value());
  EXPECT_EQ(r.size(), 2u);
}

TEST(Deduplicator, RestoreReplacesState) {
  Deduplicator empty(kHorizon);
  std::string nothing;
  empty.snapshot(nothing);
  Deduplicator d(kHorizon);
  dup(d, "acme", "a", 1000);
  ASSERT_TRUE(d.restore(nothing).has_value());
  EXPECT_EQ(d.size(), 0u);
  EXPECT_FALSE(dup(d, "acme", "a", 1000));
}

// What the runner keeps in RocksDB for one partition: the header key and the segment keys.
struct SegmentStore {
  std::string header;
  std::map<uint64_t, std::string> segments;

  void apply(const Deduplicator::CheckpointDelta& d) {
    header = d.header;
    if (d.has_segment) segments[d.segment] = d.segment_bytes;
    for (uint64_t seq : d.expired_segments) segments.erase(seq);
  }
  Status restore_into(Deduplicator& d) const {
    if (auto s = d.begin_restore(header); !s) return s;
    for (const auto& [seq, bytes] : segments) {
      if (auto s = d.restore_segment(seq, bytes); !s) return s;
    }
    return d.finish_restore();
  }
};

// A store's batch: applied, or dropped as a failed write.
struct Batch final : StateWriter {
  struct Op {
    std::string key, value;
    bool removed;
  };
  std::vector<Op> ops;
  void put(std::string_view key, std::string_view value) override {
    ops.push_back({std::string(key), std::string(value), false});
  }
  void remove(std::string_view key) override { ops.push_back({std::string(key), {}, true}); }
  void apply(MemoryState& store) const {
    for (const Op& op : ops) {
      if (op.removed) {
        store.remove(op.key);
      } else {
        store.put(op.key, op.value);
      }
    }
  }
};

size_t segment_keys(const MemoryState& store) {
  size_t n = 0;
  for (const auto& [key, value] : store.entries()) n += key.starts_with("seg/") ? 1 : 0;
  return n;
}

// A checkpoint, or a write-ahead, of `d` committed to `store`.
void commit_checkpoint(Deduplicator& d, MemoryState& store) {
  Batch batch;
  d.checkpoint(batch);
  batch.apply(store);
  d.checkpoint_committed();
}
bool commit_write_ahead(Deduplicator& d, MemoryState& store) {
  Batch batch;
  if (!d.write_ahead(batch)) return false;
  batch.apply(store);
  d.write_ahead_committed();
  return true;
}

std::string snapshot_of(const Deduplicator& d) {
  std::string out;
  d.snapshot(out);
  return out;
}

TEST(Deduplicator, IncrementalCheckpointsRestoreExactlyTheCommittedIds) {
  const auto stream = random_stream(20000, 11);
  // The short horizon makes ids expire and come back within one checkpoint interval.
  for (Millis horizon : {kHorizon, Millis{30'000}}) {
    SCOPED_TRACE(horizon.count());
    Deduplicator live(horizon);
    SegmentStore store;
    std::string committed = snapshot_of(Deduplicator(horizon));
    std::mt19937 rng(3);
    size_t checkpoints = 0;
    for (size_t i = 0; i < stream.size(); ++i) {
      live.is_duplicate(stream[i].view());
      if (std::uniform_int_distribution<int>(0, 99)(rng) != 0) continue;
      Deduplicator::CheckpointDelta delta;
      live.prepare_checkpoint(delta);
      // One commit in four fails: nothing may be lost, the next checkpoint carries it.
      if (std::uniform_int_distribution<int>(0, 3)(rng) != 0) {
        store.apply(delta);
        live.checkpoint_committed(delta);
        committed = snapshot_of(live);
        ++checkpoints;
      }
      // A crash now restores the last committed checkpoint, whatever happened since.
      Deduplicator restored(horizon);
      ASSERT_TRUE(store.restore_into(restored).has_value()) << i;
      ASSERT_EQ(snapshot_of(restored), committed) << i;
      EXPECT_EQ(restored.segment_count(), store.segments.size());
    }
    EXPECT_GT(checkpoints, 100u);
    // Expired segments were deleted: the store spans about one horizon, not the whole stream.
    EXPECT_LT(store.segments.size(), checkpoints / 3);
  }
}

TEST(Deduplicator, RestoredFromSegmentsBehavesLikeNeverStopping) {
  const auto stream = random_stream(20000, 5);
  Deduplicator uninterrupted(kHorizon);
  std::vector<bool> expected;
  for (const auto& o : stream) expected.push_back(uninterrupted.is_duplicate(o.view()));
  Deduplicator live(kHorizon);
  SegmentStore store;
  const size_t cut = 12345;
  for (size_t i = 0; i < cut; ++i) {
    ASSERT_EQ(live.is_duplicate(stream[i].view()), expected[i]);
    if (i % 500 == 0 || i + 1 == cut) {
      Deduplicator::CheckpointDelta delta;
      live.prepare_checkpoint(delta);
      store.apply(delta);
      live.checkpoint_committed(delta);
    }
  }
  Deduplicator after(kHorizon);
  ASSERT_TRUE(store.restore_into(after).has_value());
  // Checkpoints keep going after the restore, into new segment numbers.
  for (size_t i = cut; i < stream.size(); ++i) {
    ASSERT_EQ(after.is_duplicate(stream[i].view()), expected[i]) << i;
    if (i % 700 == 0) {
      Deduplicator::CheckpointDelta delta;
      after.prepare_checkpoint(delta);
      EXPECT_EQ(store.segments.count(delta.segment), 0u);
      store.apply(delta);
      after.checkpoint_committed(delta);
    }
  }
}

TEST(Deduplicator, CheckpointWithoutNewIdsWritesNoSegment) {
  Deduplicator d(kHorizon);
  dup(d, "acme", "a", 1000);
  Deduplicator::CheckpointDelta delta;
  d.prepare_checkpoint(delta);
  ASSERT_TRUE(delta.has_segment);
  d.checkpoint_committed(delta);
  EXPECT_TRUE(dup(d, "acme", "a", 2000));  // duplicate: moves max time, remembers nothing
  d.prepare_checkpoint(delta);
  EXPECT_FALSE(delta.has_segment);
  EXPECT_TRUE(delta.expired_segments.empty());
}

TEST(Deduplicator, FullSnapshotFromBeforeSegmentsIsRestoredAndRewritten) {
  Deduplicator old(kHorizon);
  for (int i = 0; i < 100; ++i) dup(old, "acme", std::to_string(i), 1000 + i);
  SegmentStore store;
  store.header = snapshot_of(old);  // what `dedup/<pid>` held before
  Deduplicator d(kHorizon);
  ASSERT_TRUE(store.restore_into(d).has_value());
  EXPECT_EQ(snapshot_of(d), snapshot_of(old));
  Deduplicator::CheckpointDelta delta;
  d.prepare_checkpoint(delta);
  ASSERT_TRUE(delta.has_segment);  // every id goes into the first segment
  store.apply(delta);
  d.checkpoint_committed(delta);
  Deduplicator again(kHorizon);
  ASSERT_TRUE(store.restore_into(again).has_value());
  EXPECT_EQ(snapshot_of(again), snapshot_of(old));
}

TEST(Deduplicator, RestoreRejectsCorruptSegments) {
  Deduplicator d(kHorizon);
  dup(d, "acme", "a", 1000);
  Deduplicator::CheckpointDelta delta;
  d.prepare_checkpoint(delta);
  Deduplicator r(kHorizon);
  ASSERT_TRUE(r.begin_restore(delta.header).has_value());
  EXPECT_FALSE(r.restore_segment(delta.segment, delta.segment_bytes + "x").has_value());
  // Numbered past the header: written ahead for a checkpoint that never committed, left out.
  ASSERT_TRUE(r.begin_restore(delta.header).has_value());
  ASSERT_TRUE(r.restore_segment(delta.segment + 1, delta.segment_bytes).has_value());
  ASSERT_TRUE(r.finish_restore().has_value());
  EXPECT_EQ(r.size(), 0u);
  ASSERT_TRUE(r.begin_restore(delta.header).has_value());
  ASSERT_TRUE(r.restore_segment(delta.segment, delta.segment_bytes).has_value());
  ASSERT_TRUE(r.restore_segment(delta.segment, delta.segment_bytes).has_value());
  EXPECT_FALSE(r.finish_restore().has_value());  // the same segment twice
  EXPECT_FALSE(r.begin_restore("SPDD").has_value());
}

// The full XXH3-128 key of (brand, id), as builds before the 96-bit keys stored it.
Deduplicator::Key wide_key(const std::string& brand, const std::string& id) {
  std::string bytes = brand;
  bytes.push_back('\0');
  bytes += id;
  const XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  return {h.low64, h.high64};
}

TEST(Deduplicator, SegmentsOfTheWideLayoutsWrittenBeforeStillRestore) {
  // Version 1 segments (24 bytes an id: key high, key low, time) and version 2 (the same 16-byte
  // key, then the time as a varint from the previous one) hold full 128-bit keys: restored, they
  // match the 96-bit keys of the same ids.
  Deduplicator live(kHorizon);
  std::string v1 = "SPDS";
  v1.push_back('\x01');
  std::string v2 = "SPDS";
  v2.push_back('\x02');
  const int count = 300;
  byte_codec::put_u64(v1, count);
  byte_codec::put_u64(v2, count);
  int64_t stream_time = 0;
  int64_t previous = 0;
  std::vector<Owned> ids;
  for (int i = 0; i < count; ++i) {
    const Owned o{"acme", "id-" + std::to_string(i), i % 7 == 0 ? 500 : 1000 + 10 * i};
    ASSERT_FALSE(live.is_duplicate(o.view()));
    ids.push_back(o);
    stream_time = std::max(stream_time, o.time_ms);
    const auto key = wide_key(o.brand, o.id);
    ASSERT_NE(key.high >> 32, 0u) << "the test needs keys wider than 96 bits";
    for (std::string* v : {&v1, &v2}) {
      byte_codec::put_u64(*v, key.high);
      byte_codec::put_u64(*v, key.low);
    }
    byte_codec::put_u64(v1, static_cast<uint64_t>(stream_time));
    byte_codec::put_svar(v2, stream_time - previous);
    previous = stream_time;
  }
  Deduplicator::CheckpointDelta delta;
  live.prepare_checkpoint(delta);
  ASSERT_TRUE(delta.has_segment);
  for (const std::string* bytes : {&v1, &v2, &delta.segment_bytes}) {
    Deduplicator restored(kHorizon);
    ASSERT_TRUE(restored.begin_restore(delta.header).has_value());
    ASSERT_TRUE(restored.restore_segment(delta.segment, *bytes).has_value());
    ASSERT_TRUE(restored.finish_restore().has_value());
    EXPECT_EQ(snapshot_of(restored), snapshot_of(live));
    for (const Owned& o : ids) EXPECT_TRUE(restored.is_duplicate(o.view())) << o.id;
  }
}

TEST(Deduplicator, ASegmentTakesThirteenBytesAnIdAndRejectsATruncatedOne) {
  Deduplicator d(kHorizon);
  const int count = 1000;
  for (int i = 0; i < count; ++i) dup(d, "acme", std::to_string(i), 1'700'000'000'000 + i / 10);
  Deduplicator::CheckpointDelta delta;
  d.prepare_checkpoint(delta);
  // Header 13 bytes, the first time in full (a varint of up to 10 bytes), then 12 + 1 an id.
  EXPECT_LE(delta.segment_bytes.size(), 13u + 10 + count * 13u);
  Deduplicator r(kHorizon);
  ASSERT_TRUE(r.begin_restore(delta.header).has_value());
  EXPECT_FALSE(
      r.restore_segment(delta.segment, delta.segment_bytes.substr(0, delta.segment_bytes.size() - 1))
          .has_value());
  std::string wrong_count = delta.segment_bytes;
  wrong_count[5] = static_cast<char>(wrong_count[5] - 1);  // one entry left over
  ASSERT_TRUE(r.begin_restore(delta.header).has_value());
  EXPECT_FALSE(r.restore_segment(delta.segment, wrong_count).has_value());
}

TEST(Deduplicator, KeyedCheckpointsRestoreTheCommittedIdsAndRemoveExpiredSegments) {
  const auto stream = random_stream(20000, 17);
  const Millis horizon{30'000};
  Deduplicator uninterrupted(horizon);
  std::vector<bool> expected;
  for (const auto& o : stream) expected.push_back(uninterrupted.is_duplicate(o.view()));
  Deduplicator live(horizon);
  MemoryState state;
  const size_t cut = 12000;
  for (size_t i = 0; i < cut; ++i) {
    ASSERT_EQ(live.is_duplicate(stream[i].view()), expected[i]);
    if (i % 500 == 499) {
      live.checkpoint(state);
      live.checkpoint_committed();
    }
  }
  const size_t segments = segment_keys(state);
  EXPECT_EQ(segments, live.segment_count());
  EXPECT_LT(segments, cut / 500);  // expired segments were removed, not only forgotten

  Deduplicator restored(horizon);
  ASSERT_TRUE(restored.restore(state));
  EXPECT_EQ(snapshot_of(restored), snapshot_of(live));
  for (size_t i = cut; i < stream.size(); ++i) {
    ASSERT_EQ(restored.is_duplicate(stream[i].view()), expected[i]) << i;
  }
}

// Issue #20: the runner writes a partition's new ids ahead of its checkpoint. Those segments
// count once a committed checkpoint's header names them; until then a restore (a crash at any
// moment, a failed write either way) gives exactly the last committed checkpoint's ids, and a
// run continued from there decides every event as one that never stopped.
TEST(Deduplicator, SegmentsWrittenAheadCountOnlyOnceACommittedHeaderNamesThem) {
  const auto stream = random_stream(20000, 23);
  for (Millis horizon : {kHorizon, Millis{30'000}}) {
    SCOPED_TRACE(horizon.count());
    Deduplicator uninterrupted(horizon);
    std::vector<bool> expected;
    for (const auto& o : stream) expected.push_back(uninterrupted.is_duplicate(o.view()));
    Deduplicator live(horizon);
    MemoryState store;
    std::string committed = snapshot_of(Deduplicator(horizon));
    size_t committed_at = 0;  // events in the last committed checkpoint
    std::mt19937 rng(5);
    auto chance = [&](int in) { return std::uniform_int_distribution<int>(0, in - 1)(rng) == 0; };
    size_t written_ahead = 0, checkpoints = 0, crashes = 0;
    for (size_t i = 0; i < stream.size(); ++i) {
      ASSERT_EQ(live.is_duplicate(stream[i].view()), expected[i]) << i;
      if (!chance(40)) continue;
      Batch batch;
      const bool ok = !chance(4);  // one write in four fails
      if (chance(2)) {
        if (!live.write_ahead(batch)) continue;
        if (ok) {
          batch.apply(store);
          live.write_ahead_committed();
          ++written_ahead;
        }
      } else {
        live.checkpoint(batch);
        if (ok) {
          batch.apply(store);
          live.checkpoint_committed();
          committed = snapshot_of(live);
          committed_at = i + 1;
          ++checkpoints;
        }
      }
      Deduplicator restored(horizon);
      ASSERT_TRUE(restored.restore(store)) << i;
      ASSERT_EQ(snapshot_of(restored), committed) << i;
      if (!chance(10)) continue;
      // A crash now: the restored instance goes on from the committed offset, checkpointing
      // into its own copy of the store, then a later restore of that copy goes on again.
      ++crashes;
      MemoryState after = store;
      const size_t until = std::min(stream.size(), committed_at + 3000);
      for (size_t j = committed_at; j < until; ++j) {
        ASSERT_EQ(restored.is_duplicate(stream[j].view()), expected[j]) << i << " " << j;
        if (j % 500 == 0 || j + 1 == until) {
          if (j % 1000 == 0) commit_write_ahead(restored, after);
          commit_checkpoint(restored, after);
          // Stale segments are gone once a checkpoint committed.
          ASSERT_EQ(segment_keys(after), restored.segment_count()) << i << " " << j;
        }
      }
      Deduplicator again(horizon);
      ASSERT_TRUE(again.restore(after)) << i;
      ASSERT_EQ(snapshot_of(again), snapshot_of(restored)) << i;
    }
    EXPECT_GT(written_ahead, 50u);
    EXPECT_GT(checkpoints, 50u);
    EXPECT_GT(crashes, 5u);
  }
}

// Segments written ahead of a checkpoint that never committed are numbered past the restored
// header. The next checkpoint deletes them in the batch that may also write a new segment: the
// new one is numbered past them, or the deletion would take it too.
TEST(Deduplicator, StaleSegmentsAreDeletedAndNeverTakeANewSegmentWithThem) {
  Deduplicator live(kHorizon);
  MemoryState store;
  for (int i = 0; i < 10; ++i) dup(live, "acme", "a" + std::to_string(i), 1000 + i);
  commit_checkpoint(live, store);
  const std::string committed = snapshot_of(live);
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 10; ++i) dup(live, "acme", "b" + std::to_string(round * 10 + i), 2000 + i);
    ASSERT_TRUE(commit_write_ahead(live, store));
  }
  ASSERT_EQ(segment_keys(store), 3u);  // then a crash: the checkpoint naming two of them is lost

  Deduplicator restored(kHorizon);
  ASSERT_TRUE(restored.restore(store));
  EXPECT_EQ(snapshot_of(restored), committed);
  EXPECT_EQ(restored.segment_count(), 1u);
  EXPECT_FALSE(dup(restored, "acme", "b0", 3000)) << "an id of a segment written ahead";
  commit_checkpoint(restored, store);
  EXPECT_EQ(segment_keys(store), 2u);
  Deduplicator again(kHorizon);
  ASSERT_TRUE(again.restore(store));
  EXPECT_EQ(snapshot_of(again), snapshot_of(restored));
  EXPECT_TRUE(dup(again, "acme", "b0", 3001));
  EXPECT_FALSE(dup(again, "acme", "b1", 3001));
}

// A partition whose first checkpoint never committed has segments written ahead and no header:
// nothing is restored, and its first checkpoint deletes them.
TEST(Deduplicator, SegmentsWrittenAheadOfAFirstCheckpointThatNeverCommittedAreStale) {
  Deduplicator live(kHorizon);
  MemoryState store;
  dup(live, "acme", "a", 1000);
  ASSERT_TRUE(commit_write_ahead(live, store));
  Batch nothing;
  EXPECT_FALSE(live.write_ahead(nothing)) << "no id left to write ahead";
  EXPECT_TRUE(nothing.ops.empty());

  Deduplicator restored(kHorizon);
  ASSERT_TRUE(restored.restore(store));
  EXPECT_EQ(restored.size(), 0u);
  EXPECT_EQ(restored.segment_count(), 0u);
  EXPECT_FALSE(dup(restored, "acme", "a", 2000));
  commit_checkpoint(restored, store);
  EXPECT_EQ(segment_keys(store), 1u);
  Deduplicator again(kHorizon);
  ASSERT_TRUE(again.restore(store));
  EXPECT_TRUE(dup(again, "acme", "a", 2001));
}

TEST(Deduplicator, KeyedRestoreOfNothingIsEmptyAndBadKeysAreErrors) {
  Deduplicator d(kHorizon);
  dup(d, "acme", "a", 1000);
  MemoryState empty;
  ASSERT_TRUE(d.restore(empty));
  EXPECT_EQ(d.size(), 0u);

  Deduplicator live(kHorizon);
  dup(live, "acme", "a", 1000);
  MemoryState state;
  live.checkpoint(state);
  live.checkpoint_committed();
  MemoryState bad_key = state;
  bad_key.put("seg/not-hex", "x");
  EXPECT_FALSE(Deduplicator(kHorizon).restore(bad_key));
  MemoryState bad_header = state;
  bad_header.put("header", "SPDD");
  EXPECT_FALSE(Deduplicator(kHorizon).restore(bad_header));
  for (const auto& [key, value] : state.entries()) {
    for (size_t cut = 0; cut < value.size(); ++cut) {
      MemoryState truncated = state;
      truncated.put(key, value.substr(0, cut));
      EXPECT_FALSE(Deduplicator(kHorizon).restore(truncated)) << key << " " << cut;
    }
  }
  Deduplicator back(kHorizon);
  ASSERT_TRUE(back.restore(state));
  EXPECT_TRUE(dup(back, "acme", "a", 2000));
}

}  // namespace
}  // namespace sp
