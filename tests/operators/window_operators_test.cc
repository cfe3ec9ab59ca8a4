#include "operators/window_operators.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <set>

#include "operators/byte_codec.h"
#include "operators/session_window_operator.h"
#include "operators/window_operator.h"
#include "tests/operators/allocation_counter.h"
#include "tests/operators/state_test_support.h"
#include "tests/operators/topology_driver.h"

namespace sp::testing {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

const EventTime kT0 = parse_time("2026-11-24T10:00:00Z").value();
const WallTime kWall0{kT0.time_since_epoch()};

Vocabulary test_vocabulary() {
  return Vocabulary({{"acme", true}, {"globex", false}}, {"twitter", "facebook", "linkedin"});
}

// A reproducible stream: mostly in order, some disorder, some events beyond grace (late).
std::vector<OwnedEvent> generate(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<OwnedEvent> out;
  int64_t clock_ms = to_epoch_ms(kT0);
  for (size_t i = 0; i < n; ++i) {
    OwnedEvent e;
    clock_ms += static_cast<int64_t>(rng() % 4000);
    int64_t t = clock_ms;
    const uint64_t r = rng() % 100;
    if (r < 15)
      t -= static_cast<int64_t>(rng() % 9000);  // within tolerance
    else if (r < 20)
      t -= static_cast<int64_t>(rng() % 200'000);  // often late
    e.partition = PartitionId{static_cast<int32_t>(rng() % 2)};
    e.event.time = from_epoch_ms(t);
    e.event.brand = static_cast<BrandIndex>(rng() % 3);
    e.event.channel = static_cast<ChannelIndex>(rng() % 4);
    e.event.type = static_cast<EventType>(rng() % kEventTypeCount);
    e.event.count = 1 + static_cast<int64_t>(rng() % 5);
    e.event.reach = static_cast<int64_t>(rng() % 1000);
    if (rng() % 3 != 0) {
      e.actor_id = "u" + std::to_string(rng() % 40);
      e.event.has_actor = true;
      e.event.actor_hash = XXH3_64bits(e.actor_id.data(), e.actor_id.size());
    }
    if (rng() % 2 == 0) {
      e.event.has_sentiment = true;
      e.event.sentiment = static_cast<double>(static_cast<int64_t>(rng() % 201) - 100) / 100.0;
    }
    if (e.event.type == EventType::lead) {
      e.event.has_value = true;
      e.event.value = static_cast<double>(rng() % 100000) / 100.0;
    }
    e.bind();
    out.push_back(e);
  }
  return out;
}

std::vector<WindowSpec> all_kinds() {
  auto specs = default_windows();
  specs.push_back({"minute_update", WindowKind::tumbling, minutes(1), minutes(1), Millis{0},
                   seconds(10), EmitMode::update});
  return specs;
}

std::string dump(const std::vector<OutputRecord>& records) {
  std::string out;
  for (const auto& r : records) out += r.key + " " + r.value + "\n";
  return out;
}

void run(TopologyDriver& d, const std::vector<OwnedEvent>& events, size_t from, size_t to) {
  for (size_t i = from; i < to; ++i) {
    d.pipe(events[i]);
    if (i % 97 == 0) d.checkpoint();
    if (i % 331 == 0) d.advance_wall_clock(seconds(1));
  }
}

class SnapshotRestore : public ::testing::TestWithParam<size_t> {};

TEST_P(SnapshotRestore, RestoredRunEqualsUninterruptedRun) {
  const auto events = generate(3000, 42);
  TopologyDriver straight(all_kinds(), test_vocabulary(), {}, kWall0);
  TopologyDriver restored(all_kinds(), test_vocabulary(), {}, kWall0);
  for (TopologyDriver* d : {&straight, &restored}) {
    d->assign({0});
    d->assign({1});
  }
  const size_t cut = GetParam();
  // Both write the same checkpoints, so their stores compare key for key (below).
  run(straight, events, 0, cut);
  straight.checkpoints_of_a_restore();
  run(straight, events, cut, events.size());
  run(restored, events, 0, cut);
  ASSERT_TRUE(restored.snapshot_and_restore());
  run(restored, events, cut, events.size());

  ASSERT_GT(straight.records().size(), 100u);
  EXPECT_EQ(dump(restored.records()), dump(straight.records()));
  EXPECT_EQ(restored.metrics_text(), straight.metrics_text());
  EXPECT_EQ(restored.snapshot_all(), straight.snapshot_all());
}

INSTANTIATE_TEST_SUITE_P(Cuts, SnapshotRestore, ::testing::Values(1, 500, 1499, 2999));

TEST(WindowOperator, StreamExercisesLateEvents) {
  // Guards the equivalence test above: it must cover late events, closes and sessions.
  const auto events = generate(3000, 42);
  TopologyDriver d(all_kinds(), test_vocabulary(), {}, kWall0);
  run(d, events, 0, events.size());
  const std::string m = d.metrics_text();
  EXPECT_EQ(m.find("socialpulse_late_events_total{window=\"minute\"} 0\n"), std::string::npos) << m;
  EXPECT_NE(m.find("socialpulse_actor_sessions_total{brand=\"acme\"}"), std::string::npos) << m;
}

// The partition scopes ("<8 hex pid>") written by one checkpoint of d's topology.
std::set<std::string> partitions_written(TopologyDriver& d) {
  d.checkpoint();
  std::set<std::string> scopes;
  for (const std::string& key : d.last_checkpoint_keys()) {
    const size_t slash = key.find('/');
    const std::string scope = key.substr(slash + 1, key.find('/', slash + 1) - slash - 1);
    if (scope != "global") scopes.insert(scope);
  }
  return scopes;
}

// Issue #20: a checkpoint writes what changed since the last one, not every partition's state.
TEST(IncrementalCheckpoint, OnlyPartitionsThatChangedAreWritten) {
  const auto events = generate(600, 7);
  TopologyDriver d(all_kinds(), test_vocabulary(), {}, kWall0);
  for (int32_t p = 0; p < 4; ++p) d.assign({p});
  for (const OwnedEvent& e : events) d.pipe(e);  // partitions 0 and 1
  // Every partition once after its assignment (its first position), with state or not.
  EXPECT_EQ(partitions_written(d),
            (std::set<std::string>{"00000000", "00000001", "00000002", "00000003"}));
  // Nothing happened since: nothing per partition is written.
  EXPECT_TRUE(partitions_written(d).empty());
  // Input on partition 1 only, within its open windows: only partition 1. (The watermark is held
  // by partitions 2 and 3, which never had input and are not idle on this wall clock.)
  OwnedEvent more = events.back();
  more.partition = PartitionId{1};
  d.pipe(more);
  EXPECT_EQ(partitions_written(d), (std::set<std::string>{"00000001"}));
}

// Issue #20: a partition's clock and dedup header are in its position key (format 2), not in keys
// of their own (two keys and changelog records fewer per busy partition and checkpoint).
TEST(IncrementalCheckpoint, APartitionsClockAndDedupHeaderAreInItsPositionKey) {
  const auto events = generate(600, 7);
  TopologyDriver d(all_kinds(), test_vocabulary(), {}, kWall0);
  d.assign({0});
  d.assign({1});
  for (const OwnedEvent& e : events) d.pipe(e);
  d.checkpoint();
  const auto& keys = d.last_checkpoint_keys();
  for (const std::string p : {"00000000", "00000001"}) {
    EXPECT_NE(std::find(keys.begin(), keys.end(), "input/" + p + "/position"), keys.end());
    EXPECT_EQ(std::find(keys.begin(), keys.end(), "tracker/" + p + "/clock"), keys.end());
    EXPECT_EQ(std::find(keys.begin(), keys.end(), "dedup/" + p + "/header"), keys.end());
  }
  // The clock and the dedup state come back (else the position written next would differ).
  EXPECT_TRUE(d.snapshot_and_restore());
}

// Format 1 of the position key: its partition's clock and dedup header in keys of their own.
void positions_as_format_1(MemoryState& store) {
  std::vector<std::pair<std::string, std::string>> positions;
  for (const auto& [key, value] : store.entries()) {
    if (key.starts_with("input/") && key.ends_with("/position")) positions.emplace_back(key, value);
  }
  ASSERT_FALSE(positions.empty());
  for (const auto& [key, value] : positions) {
    const std::string pid = key.substr(6, key.size() - 6 - 9);
    byte_codec::Reader in(value);
    ASSERT_EQ(in.u64(), 2u);
    (void)in.u64(), (void)in.i64();
    for (int count = 0; count < 4; ++count) (void)in.u64();
    const uint64_t reasons = in.u64();
    for (uint64_t r = 0; r < reasons; ++r) (void)in.str(), (void)in.u64();
    const size_t format_1_bytes = value.size() - in.remaining();
    const int64_t clock_ms = in.i64();
    const std::string header(in.str());
    ASSERT_TRUE(in.done());
    std::string v1;
    byte_codec::put_u64(v1, 1);
    v1.append(value, 8, format_1_bytes - 8);
    store.put(key, v1);
    std::string clock;
    byte_codec::put_u8(clock, 1);
    byte_codec::put_i64(clock, clock_ms);
    store.put("tracker/" + pid + "/clock", clock);
    store.put("dedup/" + pid + "/header", header);
  }
}

TEST(IncrementalCheckpoint, APositionOfFormat1IsReadAndRewrittenAtTheNextCheckpoint) {
  const auto events = generate(600, 7);
  TopologyDriver d(all_kinds(), test_vocabulary(), {}, kWall0);
  d.assign({0});
  d.assign({1});
  for (const OwnedEvent& e : events) d.pipe(e);
  // The restored state checkpoints to the same keys and bytes: format 2 positions, and the two
  // keys of format 1 removed.
  EXPECT_TRUE(d.snapshot_and_restore(positions_as_format_1));
  const auto& keys = d.last_checkpoint_keys();
  EXPECT_NE(std::find(keys.begin(), keys.end(), "tracker/00000001/clock"), keys.end());
  EXPECT_NE(std::find(keys.begin(), keys.end(), "dedup/00000001/header"), keys.end());
  // Removed once: the next checkpoints do not name them again.
  OwnedEvent more = events.back();
  more.partition = PartitionId{1};
  d.pipe(more);
  d.checkpoint();
  EXPECT_EQ(std::find(d.last_checkpoint_keys().begin(), d.last_checkpoint_keys().end(),
                      "tracker/00000001/clock"),
            d.last_checkpoint_keys().end());
}

// Panes that expire when the watermark passes are removed from the stored state of a partition
// that had no input meanwhile (issue #15: stored stale, a move would emit those windows again).
TEST(IncrementalCheckpoint, APartitionWhosePanesExpiredIsWrittenWithoutInput) {
  const auto events = generate(600, 7);
  TopologyDriver d(all_kinds(), test_vocabulary(), {}, kWall0);
  d.assign({0});
  d.assign({1});
  for (const OwnedEvent& e : events) d.pipe(e);
  (void)partitions_written(d);
  // Partition 0 moves the watermark far ahead: partition 1 is idle (no lag) and its panes expire.
  OwnedEvent later = events.back();
  later.partition = PartitionId{0};
  later.event.time = later.event.time + std::chrono::hours(30);
  d.pipe(later);
  d.set_lag(PartitionId{0}, true);  // still reading: never idle
  d.advance_wall_clock(minutes(5));
  EXPECT_TRUE(partitions_written(d).contains("00000001"));
  const auto& keys = d.last_checkpoint_keys();
  EXPECT_NE(std::find(keys.begin(), keys.end(), "minute/00000001/panes"), keys.end());
  EXPECT_TRUE(d.snapshot_and_restore());
}

Event like_at(EventTime t, BrandIndex brand, uint64_t actor) {
  Event e;
  e.time = t;
  e.brand = brand;
  e.type = EventType::like;
  e.has_actor = true;
  e.actor_hash = actor;
  e.actor_id = "x";
  return e;
}

class NullEmitter : public Emitter {
 public:
  void emit(OutputRecord) override { ++count; }
  size_t count = 0;
};

// Hands `e` to `op` in the context Topology::process would build for it.
void feed(Operator& op, const Event& e, PartitionId p = {0}, EventTime watermark = kMinEventTime) {
  op.process(make_process_context(p, watermark, watermark, e, KpiSettings{}, EmvSettings{}), e);
}

TEST(WindowOperator, HoppingEventUpdatesOnePaneNotEveryWindow) {
  WindowSpec hourly{"hourly",  WindowKind::hopping, minutes(60),    minutes(5),
                    Millis{0}, minutes(2),          EmitMode::final};
  WindowOperator op(hourly, test_vocabulary(), false);
  for (int i = 0; i < 100; ++i) feed(op, like_at(kT0 + seconds(i), 0, i));
  EXPECT_EQ(op.pane_count(), 1u);
  feed(op, like_at(kT0 + minutes(5), 0, 1));
  EXPECT_EQ(op.pane_count(), 2u);
}

TEST(WindowOperator, PaneFreedOnlyWhenItsLastWindowCloses) {
  WindowSpec hourly{"hourly",  WindowKind::hopping, minutes(60),    minutes(5),
                    Millis{0}, minutes(2),          EmitMode::final};
  WindowOperator op(hourly, test_vocabulary(), false);
  NullEmitter out;
  feed(op, like_at(kT0, 0, 1));
  // The pane 10:00-10:05 belongs to windows starting 09:05 ... 10:00; the last closes 11:02.
  op.on_watermark(kT0 + minutes(7), out);
  EXPECT_EQ(out.count, 1u);  // window 09:05-10:05 closes at 10:07
  op.on_watermark(kT0 + minutes(61), out);
  EXPECT_EQ(out.count, 11u);  // ... up to 09:55-10:55 (10:57)
  EXPECT_EQ(op.pane_count(), 1u);
  op.on_watermark(kT0 + minutes(62), out);
  EXPECT_EQ(out.count, 12u);
  EXPECT_EQ(op.pane_count(), 0u);
  EXPECT_EQ(op.records_emitted(), 12u);
}

class ValueEmitter : public Emitter {
 public:
  void emit(OutputRecord r) override { values.push_back(std::move(r.value)); }
  std::vector<std::string> values;
};

std::vector<std::string> snapshot_writes(const Operator& op, PartitionId p, MemoryState& store) {
  RecordingWriter w(store);
  op.snapshot(p, w);
  return w.writes;
}

// Issue #20: an hourly window keeps an hour of panes per partition, but a busy partition's
// checkpoint writes the pane its events went to (and removes the keys of expired panes), not the
// whole hour again. The store then restores to the same state.
TEST(WindowOperator, ACheckpointWritesOnlyThePanesThatChanged) {
  WindowSpec hourly{"hourly",  WindowKind::hopping, minutes(60),    minutes(5),
                    Millis{0}, minutes(2),          EmitMode::final};
  WindowOperator op(hourly, test_vocabulary(), false);
  NullEmitter out;
  const PartitionId p{3};
  for (int m = 0; m < 30; ++m) {
    for (BrandIndex b = 0; b < 2; ++b) feed(op, like_at(kT0 + minutes(m), b, 100 * m + b), p);
  }
  ASSERT_EQ(op.pane_count(), 12u);  // 6 pane starts x 2 brands
  MemoryState store;
  auto first = snapshot_writes(op, p, store);
  EXPECT_EQ(first.size(), 1u + 6u);  // the header and every start
  op.saved();
  EXPECT_FALSE(op.needs_snapshot(p, true));

  feed(op, like_at(kT0 + minutes(29), 1, 7), p);  // into the 10:25 pane
  EXPECT_TRUE(op.needs_snapshot(p, false));
  const std::string newest = "pane/" + [] {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx",
                  static_cast<unsigned long long>(
                      static_cast<uint64_t>(to_epoch_ms(kT0 + minutes(25))) ^ (uint64_t{1} << 63)));
    return std::string(hex);
  }();
  // Stored already: a delta with the changed pane, not the start's whole key again; no window
  // closed, so not the header either.
  EXPECT_EQ(snapshot_writes(op, p, store), (std::vector<std::string>{"put " + newest + "/0000"}));
  op.saved();

  // The 10:00 pane's last window (10:00-11:00) closes at 11:02: its key goes.
  op.on_watermark(kT0 + minutes(62), out);
  EXPECT_EQ(op.pane_count(), 10u);
  const auto expired = snapshot_writes(op, p, store);
  ASSERT_EQ(expired.size(), 2u);
  EXPECT_EQ(expired[0], "put panes");
  EXPECT_EQ(expired[1].rfind("remove pane/", 0), 0u) << expired[1];
  op.saved();
  EXPECT_EQ(store.entries().size(), 1u + 5u + 1u);  // the header, 5 starts, 10:25's delta

  // What the store holds is the whole state: a restored operator goes on exactly alike.
  WindowOperator restored(hourly, test_vocabulary(), false);
  restored.on_watermark(kT0 + minutes(62), out);
  ASSERT_TRUE(restored.restore(p, store));
  EXPECT_EQ(restored.pane_count(), op.pane_count());
  EXPECT_TRUE(snapshot_writes(restored, p, store) == std::vector<std::string>{"put panes"});
  ValueEmitter a, b;
  op.on_watermark(kT0 + minutes(120), a);
  restored.on_watermark(kT0 + minutes(120), b);
  ASSERT_EQ(a.values.size(), 2u * 5u);  // the windows starting 10:05 to 10:25, both brands
  EXPECT_EQ(b.values, a.values);
  EXPECT_EQ(snapshot_writes(op, p, store).size(), 1u + 5u + 1u);  // the header, every key removed
  EXPECT_EQ(store.entries().size(), 1u);
}

// The windows' records once the watermark passes every window: what a restored operator must
// reproduce.
std::vector<std::string> final_records(WindowOperator& op) {
  ValueEmitter out;
  op.on_watermark(kT0 + std::chrono::hours(3), out);
  return out.values;
}

// Distinct actors with hashes spread over every register, as XXH3's are.
uint64_t spread(uint64_t actor) { return actor * 0x9e3779b97f4a7c15ULL; }

std::vector<std::string> keys_of(const MemoryState& store) {
  std::vector<std::string> out;
  for (const auto& [key, value] : store.entries()) out.push_back(key);
  return out;
}

// Issue #20: a pane start already stored gets a delta per checkpoint (the changed panes'
// measures and the actor hashes that changed their sets), until the deltas would outweigh the
// base or number kMaxDeltas: then the base is rewritten with the next generation, the older
// deltas left in place (skipped). After every checkpoint the store restores to an operator that
// goes on exactly alike, sparse or dense.
TEST(WindowOperator, AStoredPaneStartGetsDeltasThenItsBaseIsRewritten) {
  WindowSpec hourly{"hourly",  WindowKind::tumbling, minutes(60),    minutes(60),
                    Millis{0}, minutes(2),           EmitMode::final};
  const PartitionId p{1};
  WindowOperator op(hourly, test_vocabulary(), false);
  uint64_t actor = 1;
  for (; actor <= 300; ++actor) feed(op, like_at(kT0 + seconds(actor), actor % 2, spread(actor)), p);
  MemoryState store;
  ASSERT_EQ(snapshot_writes(op, p, store).size(), 2u);  // the header, the 10:00 start
  op.saved();
  const std::string base = keys_of(store).front();
  ASSERT_EQ(base.rfind("pane/", 0), 0u);

  size_t deltas = 0, rewrites = 0;
  for (int checkpoint = 0; checkpoint < 30; ++checkpoint) {
    // A few new actors, a repeated one, and from checkpoint 10 on enough to densify brand 0's set.
    const uint64_t fresh = checkpoint >= 10 && checkpoint < 14 ? 200 : 5;
    for (uint64_t i = 0; i < fresh; ++i, ++actor) {
      feed(op, like_at(kT0 + seconds(400 + checkpoint), i % 2 == 0 ? 0 : 1, spread(actor)), p);
    }
    feed(op, like_at(kT0 + seconds(400 + checkpoint), 0, spread(1)), p);
    // No window closes: the header stays as stored.
    const auto writes = snapshot_writes(op, p, store);
    op.saved();
    ASSERT_GE(writes.size(), 1u);
    if (writes[0] == "put " + base) {
      ++rewrites;
      EXPECT_EQ(writes.size(), 1u);  // no delta removed
    } else {
      ++deltas;
      EXPECT_EQ(writes.size(), 1u);
      EXPECT_EQ(writes[0].rfind("put " + base + "/", 0), 0u) << writes[0];
    }
    WindowOperator restored(hourly, test_vocabulary(), false);
    ASSERT_TRUE(restored.restore(p, store)) << "checkpoint " << checkpoint;
    EXPECT_EQ(snapshot_writes(restored, p, store), std::vector<std::string>{"put panes"});
    WindowOperator copy(hourly, test_vocabulary(), false);
    ASSERT_TRUE(copy.restore(p, store));
    EXPECT_EQ(final_records(copy), final_records(restored));
    if (checkpoint == 29) {
      WindowOperator last(hourly, test_vocabulary(), false);
      ASSERT_TRUE(last.restore(p, store));
      const auto expected = final_records(op);
      ASSERT_EQ(expected.size(), 2u);
      EXPECT_NE(expected[0].find("\"unique_actors\":"), std::string::npos);
      EXPECT_EQ(final_records(last), expected);
    }
  }
  EXPECT_GE(deltas, 15u);
  EXPECT_GE(rewrites, 3u);  // the size rule, the densified sets' changes, kMaxDeltas
}

// A pane whose set changed by more than kFreshLimit hashes since the last checkpoint is not
// sent as a delta: its start is rewritten whole. And a start that expires takes every delta key
// it wrote along, those of the generation before its base too (also after a restore).
TEST(WindowOperator, ManyNewActorsRewriteTheStartAndExpiryRemovesItsDeltas) {
  WindowSpec minute{"minute",  WindowKind::tumbling, minutes(1),     minutes(1),
                    Millis{0}, seconds(0),           EmitMode::final};
  const PartitionId p{0};
  WindowOperator op(minute, test_vocabulary(), false);
  NullEmitter out;
  for (uint64_t a = 1; a <= 1000; ++a) feed(op, like_at(kT0 + seconds(1), 0, spread(a)), p);
  MemoryState store;
  snapshot_writes(op, p, store);
  op.saved();
  const std::string base = keys_of(store).front();
  feed(op, like_at(kT0 + seconds(2), 0, 3), p);
  EXPECT_EQ(snapshot_writes(op, p, store).back(), "put " + base + "/0000");
  op.saved();
  feed(op, like_at(kT0 + seconds(2), 0, 4), p);
  EXPECT_EQ(snapshot_writes(op, p, store).back(), "put " + base + "/0001");
  op.saved();
  for (uint64_t a = 2000; a < 2000 + 3000; ++a) feed(op, like_at(kT0 + seconds(3), 0, spread(a)), p);
  const auto rewrite = snapshot_writes(op, p, store);
  EXPECT_EQ(rewrite, std::vector<std::string>{"put " + base});
  // The pane's change log (full, then dropped at kFreshLimit) gives its memory back.
  const size_t before_saved = op.state_bytes();
  op.saved();
  EXPECT_LE(op.state_bytes() + 256 * sizeof(uint64_t), before_saved);
  feed(op, like_at(kT0 + seconds(4), 0, 5), p);
  EXPECT_EQ(snapshot_writes(op, p, store).back(), "put " + base + "/0000");
  op.saved();
  EXPECT_EQ(keys_of(store).size(), 4u);  // the header, the base and two deltas (one skipped)
  const std::vector<std::string> expiry{"put panes", "remove " + base, "remove " + base + "/0000",
                                        "remove " + base + "/0001"};
  WindowOperator restored(minute, test_vocabulary(), false);
  ASSERT_TRUE(restored.restore(p, store));
  MemoryState copy = store;
  restored.on_watermark(kT0 + minutes(2), out);
  EXPECT_EQ(snapshot_writes(restored, p, copy), expiry);
  op.on_watermark(kT0 + minutes(2), out);
  EXPECT_EQ(snapshot_writes(op, p, store), expiry);
  op.saved();
  EXPECT_EQ(keys_of(store), std::vector<std::string>{"panes"});
}

// Format 4's pane starts (a base and deltas without a generation, deltas removed with a rewrite):
// read as they are, the base rewritten with a generation at the next checkpoint, the older
// deltas then skipped.
TEST(WindowOperator, PaneStartsOfVersion4RestoreAndAreRewrittenWithAGeneration) {
  WindowSpec minute{"minute",  WindowKind::tumbling, minutes(1),     minutes(1),
                    Millis{0}, seconds(0),           EmitMode::final};
  const PartitionId p{0};
  WindowOperator op(minute, test_vocabulary(), false);
  for (uint64_t a = 1; a <= 300; ++a) feed(op, like_at(kT0 + seconds(1), a % 2, spread(a)), p);
  MemoryState store;
  snapshot_writes(op, p, store);
  op.saved();
  for (uint64_t round = 0; round < 2; ++round) {
    for (uint64_t a = 301; a <= 320; ++a)
      feed(op, like_at(kT0 + seconds(2), a % 2, spread(a + 20 * round)), p);
    ASSERT_EQ(snapshot_writes(op, p, store).size(), 1u);  // a delta
    op.saved();
  }
  MemoryState version_4;
  for (const auto& [key, value] : store.entries()) {
    if (key == "panes") {
      version_4.put(key, value);
      continue;
    }
    byte_codec::Reader in(value);
    const uint8_t version = in.u8();
    ASSERT_TRUE(version == 5 || version == 2) << key;
    ASSERT_EQ(in.var(), 1u);  // the first base's generation
    version_4.put(key, std::string(1, static_cast<char>(version == 5 ? 4 : 1)) + std::string(in.rest()));
  }
  WindowOperator restored(minute, test_vocabulary(), false);
  ASSERT_TRUE(restored.restore(p, version_4));
  EXPECT_TRUE(restored.needs_snapshot(p, false));
  const std::string base = keys_of(store).front();
  ASSERT_EQ(base.size(), std::string("pane/").size() + 16) << base;
  // The header too: a restore does not know its stored bytes.
  EXPECT_EQ(snapshot_writes(restored, p, version_4),
            (std::vector<std::string>{"put panes", "put " + base}));
  restored.saved();
  // A change the second old delta would undo if it were read after the new base's own first.
  for (WindowOperator* o : {&op, &restored}) feed(*o, like_at(kT0 + seconds(3), 0, spread(1)), p);
  snapshot_writes(restored, p, version_4);
  restored.saved();
  WindowOperator again(minute, test_vocabulary(), false);
  ASSERT_TRUE(again.restore(p, version_4));
  EXPECT_FALSE(again.needs_snapshot(p, false));
  const auto expected = final_records(op);
  EXPECT_EQ(final_records(restored), expected);
  EXPECT_EQ(final_records(again), expected);
}

// A pane of a start that is not stored yet keeps no change log: its start is written whole at
// the next checkpoint anyway. Once stored, its changes are logged for the delta.
TEST(WindowOperator, OnlyPanesOfStoredStartsLogTheirChanges) {
  WindowSpec minute{"minute",  WindowKind::tumbling, minutes(1),     minutes(1),
                    Millis{0}, seconds(0),           EmitMode::final};
  const PartitionId p{0};
  WindowOperator fresh(minute, test_vocabulary(), false);
  WindowOperator stored(minute, test_vocabulary(), false);
  for (uint64_t a = 1; a <= 300; ++a) {
    for (WindowOperator* op : {&fresh, &stored}) feed(*op, like_at(kT0, 0, spread(a)), p);
  }
  MemoryState store;
  snapshot_writes(stored, p, store);
  stored.saved();
  for (uint64_t a = 301; a <= 320; ++a) {
    for (WindowOperator* op : {&fresh, &stored}) {
      feed(*op, like_at(kT0 + seconds(1), 0, spread(a)), p);
    }
  }
  // The same panes; only the stored one logged its 20 new actors.
  EXPECT_GE(stored.state_bytes(), fresh.state_bytes() + 20 * sizeof(uint64_t));
  const auto writes = snapshot_writes(stored, p, store);
  ASSERT_EQ(writes.size(), 1u);
  EXPECT_EQ(writes[0].rfind("put pane/", 0), 0u);
  EXPECT_EQ(writes[0].substr(writes[0].size() - 5), "/0000");
}

// A failed commit (no saved()) loses nothing: the next snapshot writes what the failed one did.
TEST(WindowOperator, PanesNotSavedAreWrittenAgainAtTheNextCheckpoint) {
  WindowSpec minute{"minute",  WindowKind::tumbling, minutes(1),     minutes(1),
                    Millis{0}, seconds(0),           EmitMode::final};
  WindowOperator op(minute, test_vocabulary(), false);
  NullEmitter out;
  feed(op, like_at(kT0, 0, 1));
  feed(op, like_at(kT0 + minutes(1), 0, 2));
  MemoryState lost;
  EXPECT_EQ(snapshot_writes(op, {0}, lost).size(), 3u);
  op.on_watermark(kT0 + minutes(1), out);  // the 10:00 pane expires; no saved() in between
  feed(op, like_at(kT0 + minutes(2), 0, 3));
  MemoryState store;
  const auto again = snapshot_writes(op, {0}, store);
  EXPECT_EQ(again.size(), 4u) << "header, 10:00 removed, 10:01 and 10:02 put";
  EXPECT_EQ(std::count_if(again.begin(), again.end(),
                          [](const std::string& w) { return w.rfind("remove", 0) == 0; }),
            1);
}

// The `panes` header says where the partition's windows were emitted through: it is written
// when a window closes (or an event comes late), not each time the watermark moves, and written
// again when the commit that carried it failed. What it holds restores the same windows.
TEST(WindowOperator, ThePanesHeaderIsWrittenWhenAWindowClosesNotWithEveryWatermark) {
  WindowSpec minute{"minute",  WindowKind::tumbling, minutes(1),     minutes(1),
                    Millis{0}, seconds(10),          EmitMode::final};
  const PartitionId p{0};
  WindowOperator op(minute, test_vocabulary(), false);
  NullEmitter out;
  MemoryState store;
  auto header_written = [&] {
    const auto writes = snapshot_writes(op, p, store);
    return std::count(writes.begin(), writes.end(), "put panes") == 1;
  };
  op.on_watermark(kT0 + seconds(20), out);  // 09:59's window closed at 10:00:10
  feed(op, like_at(kT0 + seconds(5), 0, 1), p);
  EXPECT_TRUE(header_written());  // never stored
  op.saved();
  for (int s = 30; s <= 65; s += 5) {  // 10:00's window closes at 10:01:10
    op.on_watermark(kT0 + seconds(s), out);
    feed(op, like_at(kT0 + seconds(s + 1), 0, 2), p);
    EXPECT_FALSE(header_written()) << "watermark at +" << s << " s";
    op.saved();
  }
  op.on_watermark(kT0 + seconds(75), out);
  feed(op, like_at(kT0 + seconds(76), 0, 3), p);
  EXPECT_TRUE(header_written());  // 10:00 closed; this commit fails: no saved()
  op.on_watermark(kT0 + seconds(80), out);
  feed(op, like_at(kT0 + seconds(81), 0, 4), p);
  EXPECT_TRUE(header_written());
  op.saved();
  feed(op, like_at(kT0 + seconds(82), 1, 5), p);
  EXPECT_FALSE(header_written());
  op.saved();

  // Stored at 10:01:10, restored under watermark 10:01:20: the same windows still to come.
  WindowOperator restored(minute, test_vocabulary(), false);
  restored.on_watermark(kT0 + seconds(80), out);
  ASSERT_TRUE(restored.restore(p, store));
  const auto expected = final_records(op);
  ASSERT_EQ(expected.size(), 2u);  // 10:01 for both brands
  EXPECT_EQ(final_records(restored), expected);
}

// A pane of a hopping window outlives the windows that close over it: a partition without new
// events still writes its header when one of its windows closes, so that a next owner restoring
// it does not emit that window again.
TEST(WindowOperator, AnIdlePartitionWritesItsHeaderWhenOneOfItsWindowsCloses) {
  WindowSpec hourly{"hourly",  WindowKind::hopping, minutes(60),    minutes(5),
                    Millis{0}, minutes(2),          EmitMode::final};
  const PartitionId p{2};
  WindowOperator op(hourly, test_vocabulary(), false);
  NullEmitter out;
  op.on_watermark(kT0 + minutes(1), out);
  feed(op, like_at(kT0 + minutes(2), 0, 1), p);  // the 10:00 pane: windows 09:05 to 10:00
  MemoryState store;
  snapshot_writes(op, p, store);
  op.saved();
  op.on_watermark(kT0 + minutes(4), out);  // no window closes
  EXPECT_FALSE(op.needs_snapshot(p, true));
  op.on_watermark(kT0 + minutes(7), out);  // 09:05-10:05 closes (at 10:07), the pane stays
  EXPECT_EQ(op.pane_count(), 1u);
  ASSERT_TRUE(op.needs_snapshot(p, true));
  EXPECT_EQ(snapshot_writes(op, p, store), std::vector<std::string>{"put panes"});
  op.saved();

  WindowOperator next(hourly, test_vocabulary(), false);
  next.on_watermark(kT0 + minutes(7), out);
  ASSERT_TRUE(next.restore(p, store));
  ValueEmitter a, b;
  op.on_watermark(kT0 + minutes(12), a);
  next.on_watermark(kT0 + minutes(12), b);
  ASSERT_EQ(a.values.size(), 1u);  // 09:10-10:10
  EXPECT_EQ(b.values, a.values);
}

TEST(WindowOperator, EngagementRateGaugeFromLastClosedWindowOnly) {
  WindowSpec minute{"minute",  WindowKind::tumbling, minutes(1),     minutes(1),
                    Millis{0}, seconds(0),           EmitMode::final};
  WindowOperator op(minute, test_vocabulary(), true);
  NullEmitter out;
  Event imp = like_at(kT0, 0, 1);
  imp.type = EventType::impression;
  imp.count = 4;
  feed(op, imp);
  feed(op, like_at(kT0 + seconds(1), 0, 2));
  feed(op, like_at(kT0 + seconds(2), 1, 2));  // globex: no impressions
  op.on_watermark(kT0 + minutes(1), out);
  TopologyDriver probe({}, test_vocabulary(), {}, kWall0);
  struct Capture : MetricsWriter {
    std::string family_name;
    std::vector<std::pair<std::string, double>> rates;
    void family(std::string_view n, std::string_view, MetricType) override { family_name = n; }
    void add(std::span<const LabelPair> labels, double v) override {
      if (family_name == "socialpulse_engagement_rate") {
        rates.emplace_back(std::string(labels[0].second) + "/" + std::string(labels[1].second), v);
      }
    }
    void add_histogram(std::span<const LabelPair>, std::span<const double>,
                       std::span<const uint64_t>, double) override {}
  } capture;
  op.collect(capture);
  ASSERT_EQ(capture.rates.size(), 1u);  // globex/twitter absent: impressions = 0
  EXPECT_EQ(capture.rates[0].first, "acme/twitter");
  EXPECT_DOUBLE_EQ(capture.rates[0].second, 0.25);
}

// Engagement-rate samples of op, "brand/channel" -> rate.
std::map<std::string, double> engagement_rates(const WindowOperator& op) {
  struct Capture : MetricsWriter {
    std::string family_name;
    std::map<std::string, double> rates;
    void family(std::string_view n, std::string_view, MetricType) override { family_name = n; }
    void add(std::span<const LabelPair> labels, double v) override {
      if (family_name == "socialpulse_engagement_rate") {
        rates[std::string(labels[0].second) + "/" + std::string(labels[1].second)] = v;
      }
    }
    void add_histogram(std::span<const LabelPair>, std::span<const double>,
                       std::span<const uint64_t>, double) override {}
  } capture;
  op.collect(capture);
  return capture.rates;
}

TEST(WindowOperator, EngagementRateOfAQuietChannelIsAbsentNotStale) {
  // Issue #17: a channel that went quiet kept the rate of its last window that had events.
  WindowSpec minute{"minute",  WindowKind::tumbling, minutes(1),     minutes(1),
                    Millis{0}, seconds(30),          EmitMode::final};
  WindowOperator op(minute, test_vocabulary(), true);
  NullEmitter out;
  Event imp = like_at(kT0, 0, 1);
  imp.type = EventType::impression;
  imp.count = 10;
  feed(op, imp);
  feed(op, like_at(kT0 + seconds(1), 0, 1));
  Event globex_imp = like_at(kT0 + seconds(2), 1, 1);
  globex_imp.type = EventType::impression;
  feed(op, globex_imp);
  op.on_watermark(kT0 + minutes(1) + seconds(30), out);  // window 0 closed
  EXPECT_EQ(engagement_rates(op), (std::map<std::string, double>{{"acme/twitter", 0.1},
                                                                  {"globex/twitter", 0.0}}));
  Event later = globex_imp;
  later.time = kT0 + minutes(1) + seconds(40);
  feed(op, later, {0}, kT0 + minutes(1) + seconds(30));
  op.on_watermark(kT0 + minutes(2) + seconds(30), out);  // window 1: globex only
  EXPECT_EQ(engagement_rates(op), (std::map<std::string, double>{{"globex/twitter", 0.0}}));
  op.on_watermark(kT0 + minutes(3) + seconds(30), out);  // window 2: nobody
  EXPECT_TRUE(engagement_rates(op).empty());
}

TEST(WindowOperator, LateCountsMoveWithTheirPartition) {
  WindowSpec minute{"minute",  WindowKind::tumbling, minutes(1),     minutes(1),
                    Millis{0}, seconds(0),           EmitMode::final};
  WindowOperator a(minute, test_vocabulary(), false);
  NullEmitter out;
  a.on_watermark(kT0 + minutes(5), out);
  feed(a, like_at(kT0, 0, 1), {3}, kT0 + minutes(5));
  EXPECT_EQ(a.late_events(), 1u);
  MemoryState state;
  a.snapshot({3}, state);
  a.drop({3});
  EXPECT_EQ(a.late_events(), 0u);
  WindowOperator b(minute, test_vocabulary(), false);
  ASSERT_TRUE(b.restore({3}, state));
  EXPECT_EQ(b.late_events(), 1u);
  const std::string bytes = state.get("panes").value().value();
  MemoryState truncated;
  truncated.put("panes", bytes.substr(0, bytes.size() - 1));
  EXPECT_FALSE(b.restore({4}, truncated));
}

// Issue #15: a partition moves with the watermark its windows were emitted through. Found by
// ScaleOutTest: a new owner whose own watermark was behind re-emitted (and counted) the hourly
// windows its predecessor had emitted from the panes still open.
TEST(WindowOperator, AMovedPartitionDoesNotReEmitWhatItsPreviousOwnerEmitted) {
  WindowSpec hourly{"hourly",  WindowKind::hopping, minutes(60),    minutes(5),
                    Millis{0}, minutes(2),          EmitMode::final};
  WindowOperator a(hourly, test_vocabulary(), false);
  NullEmitter out;
  feed(a, like_at(kT0, 0, 1), {3});
  a.on_watermark(kT0 + minutes(7), out);
  ASSERT_EQ(out.count, 1u);  // 09:05-10:05
  MemoryState state;
  a.snapshot({3}, state);
  WindowOperator b(hourly, test_vocabulary(), false);  // a fresh instance: no watermark yet
  ASSERT_TRUE(b.restore({3}, state));
  NullEmitter moved;
  b.on_watermark(kT0 + minutes(8), moved);
  EXPECT_EQ(moved.count, 0u);
  b.on_watermark(kT0 + minutes(12), moved);
  EXPECT_EQ(moved.count, 1u);  // 09:10-10:10 only
}

// ... and a new owner whose watermark is ahead still emits the moved partition's due windows.
TEST(WindowOperator, AMovedPartitionBehindItsNewOwnerStillClosesItsWindows) {
  WindowSpec hourly{"hourly",  WindowKind::hopping, minutes(60),    minutes(5),
                    Millis{0}, minutes(2),          EmitMode::final};
  WindowOperator a(hourly, test_vocabulary(), false);
  NullEmitter out;
  feed(a, like_at(kT0, 0, 1), {3});
  a.on_watermark(kT0 + minutes(7), out);
  MemoryState state;
  a.snapshot({3}, state);
  WindowOperator b(hourly, test_vocabulary(), false);
  NullEmitter moved;
  feed(b, like_at(kT0 + minutes(1), 1, 2), {1});
  b.on_watermark(kT0 + minutes(20), moved);
  const size_t own = moved.count;
  ASSERT_TRUE(b.restore({3}, state));
  b.on_watermark(kT0 + minutes(21), moved);
  EXPECT_EQ(moved.count - own, 2u);  // 09:10-10:10 and 09:15-10:15 of partition 3
}

TEST(SessionWindowOperator, IgnoresEventsWithoutActor) {
  WindowSpec sessions{"sessions",  WindowKind::session, Millis{0},      Millis{0},
                      minutes(30), Millis{0},           EmitMode::final};
  SessionWindowOperator op(sessions, test_vocabulary());
  Event e = like_at(kT0, 0, 1);
  e.has_actor = false;
  feed(op, e);
  EXPECT_EQ(op.open_sessions(), 0u);
}

TEST(SessionWindowOperator, SameActorOfTwoBrandsHasTwoSessions) {
  WindowSpec sessions{"sessions",  WindowKind::session, Millis{0},      Millis{0},
                      minutes(30), Millis{0},           EmitMode::final};
  SessionWindowOperator op(sessions, test_vocabulary());
  feed(op, like_at(kT0, 0, 7));
  feed(op, like_at(kT0, 1, 7));
  EXPECT_EQ(op.open_sessions(), 2u);
  NullEmitter out;
  op.on_watermark(kT0 + minutes(30), out);
  EXPECT_EQ(out.count, 2u);
  EXPECT_EQ(op.open_sessions(), 0u);
}

const WindowSpec kSessions{"sessions",  WindowKind::session, Millis{0}, Millis{0},
                          minutes(30), Millis{0},           EmitMode::final};

// What a session operator holds, as far as anything outside can tell: the records and stats of
// every session once the watermark passes them all.
std::string session_outcome(SessionWindowOperator& op) {
  ValueEmitter out;
  const size_t open = op.open_sessions();
  const uint64_t late = op.late_events();
  op.on_watermark(kT0 + std::chrono::hours(24), out);
  std::string text = "open " + std::to_string(open) + " late " + std::to_string(late) + "\n";
  for (const std::string& v : out.values) text += v + "\n";
  return text;
}

// Issue #20: the `sessions` key holds every open session of a partition. After a few actors had
// events, a checkpoint writes a delta with those actors only; sessions that close write their
// actors' removal. The base and its deltas restore to the same state.
TEST(SessionWindowOperator, ACheckpointWritesOnlyTheActorsThatChanged) {
  const PartitionId p{2};
  SessionWindowOperator op(kSessions, test_vocabulary());
  for (uint64_t a = 1; a <= 200; ++a) feed(op, like_at(kT0 + seconds(a), a % 2, spread(a)), p);
  MemoryState store;
  EXPECT_EQ(snapshot_writes(op, p, store), std::vector<std::string>{"put sessions"});
  op.saved();
  EXPECT_FALSE(op.needs_snapshot(p, true));
  const size_t base_bytes = store.entries().at("sessions").size();

  for (const uint64_t a : {1, 2, 500}) feed(op, like_at(kT0 + minutes(10), a % 2, spread(a)), p);
  EXPECT_TRUE(op.needs_snapshot(p, false));
  EXPECT_EQ(snapshot_writes(op, p, store), std::vector<std::string>{"put sessions/0000"});
  EXPECT_LT(store.entries().at("sessions/0000").size() * 10, base_bytes);
  op.saved();

  // The sessions of actors 3 to 10 close (1 and 2 went on): their actors leave the store.
  NullEmitter out;
  op.on_watermark(kT0 + minutes(30) + seconds(10), out);
  EXPECT_EQ(out.count, 8u);
  EXPECT_EQ(op.open_sessions(), 193u);
  EXPECT_EQ(snapshot_writes(op, p, store), std::vector<std::string>{"put sessions/0001"});
  op.saved();

  SessionWindowOperator restored(kSessions, test_vocabulary());
  ASSERT_TRUE(restored.restore(p, store));
  EXPECT_EQ(restored.open_sessions(), 193u);
  EXPECT_FALSE(restored.needs_snapshot(p, false));
  EXPECT_EQ(session_outcome(restored), session_outcome(op));
}

// An operator restored from `store` holds what `op` holds (both are run to the end).
void expect_store_restores_it(SessionWindowOperator& op, PartitionId p, MemoryState& store) {
  SessionWindowOperator restored(kSessions, test_vocabulary());
  ASSERT_TRUE(restored.restore(p, store));
  EXPECT_EQ(session_outcome(restored), session_outcome(op));
}

// Stores `actors` actors' sessions in `store` (saved), then writes the first delta: one more
// event of actor 7 (not saved).
void store_actors_then_one_more(SessionWindowOperator& op, PartitionId p, uint64_t actors,
                                MemoryState& store) {
  for (uint64_t a = 1; a <= actors; ++a) feed(op, like_at(kT0 + seconds(a), 0, spread(a)), p);
  snapshot_writes(op, p, store);
  op.saved();
  feed(op, like_at(kT0 + minutes(1), 0, spread(7)), p);
  EXPECT_EQ(snapshot_writes(op, p, store), std::vector<std::string>{"put sessions/0000"});
}

// Once most actors changed (or left), the delta would not be smaller: the base is rewritten.
TEST(SessionWindowOperator, APartitionWhoseActorsAllChangedRewritesItsBase) {
  const PartitionId p{0};
  SessionWindowOperator op(kSessions, test_vocabulary());
  MemoryState store;
  store_actors_then_one_more(op, p, 100, store);
  op.saved();
  for (uint64_t a = 1; a <= 100; ++a) feed(op, like_at(kT0 + minutes(2), 0, spread(a)), p);
  // The next generation's base; the older delta stays, skipped by the restore below (it would
  // take actor 7 back to its minute-1 session).
  EXPECT_EQ(snapshot_writes(op, p, store), std::vector<std::string>{"put sessions"});
  EXPECT_TRUE(store.entries().contains("sessions/0000"));
  op.saved();
  NullEmitter out;
  op.on_watermark(kT0 + minutes(40), out);  // every session closes
  EXPECT_EQ(out.count, 100u);
  EXPECT_EQ(snapshot_writes(op, p, store), std::vector<std::string>{"put sessions"});
  op.saved();
  expect_store_restores_it(op, p, store);
}

// A brand removed from the configuration is dropped wherever it is stored (here in a delta only)
// and reported; the next checkpoint rewrites the base without it (the delta, of the generation
// before, is no longer read).
TEST(SessionWindowOperator, ABrandRemovedFromTheConfigurationLeavesBaseAndDeltas) {
  const PartitionId p{0};
  SessionWindowOperator op(kSessions, test_vocabulary());
  // The base holds acme's actors only; globex appears in the delta.
  for (uint64_t a = 1; a <= 100; ++a) feed(op, like_at(kT0 + seconds(a), 0, spread(a)), p);
  MemoryState store;
  snapshot_writes(op, p, store);
  op.saved();
  for (uint64_t a = 200; a < 204; ++a) feed(op, like_at(kT0 + minutes(1), a % 2, spread(a)), p);
  EXPECT_EQ(snapshot_writes(op, p, store), std::vector<std::string>{"put sessions/0000"});
  op.saved();

  const Vocabulary acme_only({{"acme", true}}, {"twitter", "facebook", "linkedin"});
  SessionWindowOperator restored(kSessions, acme_only);
  ASSERT_TRUE(restored.restore(p, store));
  EXPECT_FALSE(dropped_names(store).empty());
  for (const std::string& d : dropped_names(store)) EXPECT_EQ(d, "brand:globex");
  EXPECT_EQ(restored.open_sessions(), 102u);  // acme's 100 of the base and 2 of the delta
  EXPECT_TRUE(restored.needs_snapshot(p, false));
  EXPECT_EQ(snapshot_writes(restored, p, store), std::vector<std::string>{"put sessions"});
  restored.saved();
  store.clear_dropped();
  SessionWindowOperator again(kSessions, acme_only);
  ASSERT_TRUE(again.restore(p, store));
  EXPECT_TRUE(store.dropped().empty());
  EXPECT_EQ(again.open_sessions(), 102u);
}

// Format 3 (before generations): a base and its deltas, all read; the next checkpoint writes a
// format 4 base, and the format 3 deltas left beside it are no longer read (the second one would
// take actor 8 back to its minute-2 session).
TEST(SessionWindowOperator, Format3BaseAndDeltasRestoreAndAreRewritten) {
  const PartitionId p{0};
  SessionWindowOperator op(kSessions, test_vocabulary());
  MemoryState store;
  store_actors_then_one_more(op, p, 50, store);
  op.saved();
  feed(op, like_at(kT0 + minutes(2), 1, spread(8)), p);
  EXPECT_EQ(snapshot_writes(op, p, store), std::vector<std::string>{"put sessions/0001"});
  op.saved();
  MemoryState format_3;
  for (const auto& [key, value] : store.entries()) {
    byte_codec::Reader in(value);
    ASSERT_EQ(in.u8(), 4);
    ASSERT_EQ(in.var(), 1u);  // the first base's generation
    format_3.put(key, "\x03" + std::string(in.rest()));
  }
  SessionWindowOperator restored(kSessions, test_vocabulary());
  ASSERT_TRUE(restored.restore(p, format_3));
  EXPECT_TRUE(restored.needs_snapshot(p, false));
  EXPECT_EQ(snapshot_writes(restored, p, format_3), std::vector<std::string>{"put sessions"});
  restored.saved();
  for (SessionWindowOperator* o : {&op, &restored}) feed(*o, like_at(kT0 + minutes(3), 1, spread(8)), p);
  EXPECT_EQ(snapshot_writes(restored, p, format_3), std::vector<std::string>{"put sessions/0000"});
  restored.saved();
  SessionWindowOperator again(kSessions, test_vocabulary());
  ASSERT_TRUE(again.restore(p, format_3));
  EXPECT_FALSE(again.needs_snapshot(p, false));
  const std::string expected = session_outcome(op);
  EXPECT_EQ(session_outcome(restored), expected);
  EXPECT_EQ(session_outcome(again), expected);
}

// A failed commit (no saved()) loses nothing: the next snapshot writes the same delta key again,
// with the changes of both intervals.
TEST(SessionWindowOperator, ADeltaNotSavedIsWrittenAgainWithTheNextChanges) {
  const PartitionId p{0};
  SessionWindowOperator op(kSessions, test_vocabulary());
  MemoryState store;
  store_actors_then_one_more(op, p, 50, store);
  feed(op, like_at(kT0 + minutes(2), 1, spread(8)), p);  // the commit failed: no saved()
  EXPECT_EQ(snapshot_writes(op, p, store), std::vector<std::string>{"put sessions/0000"});
  op.saved();
  expect_store_restores_it(op, p, store);
}

// Over many checkpoints of new actors, extended and closing sessions and late events, the store
// restores after each one to what a run without checkpoints holds; the base is rewritten after
// kMaxDeltas deltas or once the deltas would outweigh it, and the deltas before it are skipped.
TEST(SessionWindowOperator, DeltasRestoreLikeAnUninterruptedRunAndTheBaseIsRewritten) {
  const PartitionId p{1};
  struct Step {
    std::optional<Event> event;
    EventTime watermark;
  };
  std::vector<Step> steps;
  auto replay = [&](SessionWindowOperator& op) {
    NullEmitter out;
    for (const Step& s : steps) {
      if (s.event) {
        feed(op, *s.event, p, s.watermark);
      } else {
        op.on_watermark(s.watermark, out);
      }
    }
  };
  SessionWindowOperator op(kSessions, test_vocabulary());
  MemoryState store;
  std::mt19937_64 rng(7);
  size_t deltas = 0, rewrites = 0;
  EventTime watermark = kT0;
  uint64_t next_actor = 1;
  size_t fed = 0;  // steps op has had
  for (int checkpoint = 0; checkpoint < 40; ++checkpoint) {
    const EventTime now = kT0 + minutes(4 * checkpoint);
    // New actors (a burst now and then), returning ones, and an event behind the watermark.
    const uint64_t fresh = checkpoint % 13 == 5 ? 150 : 4;
    for (uint64_t i = 0; i < fresh; ++i) {
      steps.push_back({like_at(now + seconds(i), i % 2, spread(next_actor++)), watermark});
    }
    for (int i = 0; i < 3; ++i) {
      const uint64_t back = 1 + rng() % next_actor;
      steps.push_back({like_at(now + seconds(30 + i), back % 2, spread(back)), watermark});
    }
    steps.push_back({like_at(watermark - minutes(45), 0, spread(1)), watermark});
    watermark = now - minutes(2);
    steps.push_back({std::nullopt, watermark});
    NullEmitter out;
    for (; fed < steps.size(); ++fed) {
      const Step& s = steps[fed];
      if (s.event) {
        feed(op, *s.event, p, s.watermark);
      } else {
        op.on_watermark(s.watermark, out);
      }
    }
    const auto writes = snapshot_writes(op, p, store);
    op.saved();
    ASSERT_GE(writes.size(), 1u);
    if (writes[0] == "put sessions") {
      ++rewrites;
      EXPECT_EQ(writes.size(), 1u);  // no key removed
    } else {
      ++deltas;
      ASSERT_EQ(writes.size(), 1u);
      EXPECT_EQ(writes[0].rfind("put sessions/", 0), 0u) << writes[0];
    }
    SessionWindowOperator restored(kSessions, test_vocabulary());
    restored.on_watermark(watermark, out);  // as the global scope's restore would
    ASSERT_TRUE(restored.restore(p, store)) << "checkpoint " << checkpoint;
    SessionWindowOperator straight(kSessions, test_vocabulary());
    replay(straight);
    ASSERT_EQ(session_outcome(restored), session_outcome(straight)) << "checkpoint " << checkpoint;
  }
  EXPECT_GE(deltas, 20u);
  EXPECT_GE(rewrites, 4u);  // the first, kMaxDeltas and the bursts' size rule
}

TEST(WindowOperators, FactoryMakesOneOperatorPerSpecInOrder) {
  const auto ops = make_window_operators(default_windows(), test_vocabulary());
  ASSERT_EQ(ops.size(), 3u);
  EXPECT_EQ(ops[0]->name(), "minute");
  EXPECT_EQ(ops[1]->name(), "hourly");
  EXPECT_EQ(ops[2]->name(), "sessions");
}

TEST(WindowOperators, SteadyStateProcessDoesNotAllocate) {
  auto ops = make_window_operators(default_windows(), test_vocabulary());
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) ids.push_back("actor-" + std::to_string(i));
  auto event_for = [&](int i) {
    Event e = like_at(kT0 + Millis{i}, static_cast<BrandIndex>(i % 2), 0);
    e.actor_id = ids[i % 20];
    e.actor_hash = XXH3_64bits(e.actor_id.data(), e.actor_id.size());
    e.has_sentiment = i % 3 == 0;
    e.sentiment = 0.4;
    return e;
  };
  auto feed_all = [&](int i) {
    const Event e = event_for(i);
    const ProcessContext ctx =
        make_process_context({0}, kMinEventTime, kMinEventTime, e, KpiSettings{}, EmvSettings{});
    for (auto& op : ops) op->process(ctx, e);
  };
  for (int i = 0; i < 1000; ++i) feed_all(i);
  const uint64_t before = allocation_count();
  for (int i = 1000; i < 20000; ++i) feed_all(i);
  EXPECT_EQ(allocation_count() - before, 0u);
  for (auto& op : ops) EXPECT_GT(op->state_bytes(), 0u);
}

}  // namespace
}  // namespace sp::testing
