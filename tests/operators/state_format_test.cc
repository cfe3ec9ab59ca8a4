// Pins the checkpoint bytes of every stateful owner for one fixed stream. State written by the
// previous release must restore in the next one, so any change of these bytes has to come with a
// new format version (and a reader for the old one, or a documented reset): then update the digest.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "operators/byte_codec.h"
#include "operators/deduplicator.h"
#include "operators/hyperloglog.h"
#include "operators/measures.h"
#include "operators/reputation_operator.h"
#include "operators/spike_explainer.h"
#include "operators/kpi_operators.h"
#include "operators/watermark_tracker.h"
#include "operators/window_operators.h"
#include "tests/operators/kpi_test_support.h"
#include "tests/operators/state_test_support.h"

namespace sp {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

const EventTime kT0 = from_epoch_ms(1795478400000);  // 2026-11-24T00:00:00Z
const std::vector<PartitionId> kScopes = {kGlobalPartition, PartitionId{0}, PartitionId{1},
                                          PartitionId{2}};

Vocabulary vocabulary() {
  return Vocabulary({{"acme", true}, {"globex", false}}, {"twitter", "facebook"});
}

std::string digest(const MemoryState& state) {
  XXH3_state_t* h = XXH3_createState();
  XXH3_64bits_reset(h);
  for (const auto& [key, value] : state.entries()) {
    XXH3_64bits_update(h, key.data(), key.size() + 1);  // with the terminating NUL
    XXH3_64bits_update(h, value.data(), value.size() + 1);
  }
  char out[24];
  std::snprintf(out, sizeof out, "%016" PRIx64, XXH3_64bits_digest(h));
  XXH3_freeState(h);
  return out;
}

// 40 minutes of every event type, brand and channel over three partitions, with sentiments,
// actors (sparse and dense HLLs), lead values, response times and a few late events; the
// watermark trails by 10 s and the checkpoint is taken mid-stream with open windows.
MemoryState run_and_checkpoint(std::vector<std::unique_ptr<Operator>> ops,
                               WatermarkTracker* tracker, Deduplicator* dedup) {
  testing::RecordingEmitter out;
  const Vocabulary v = vocabulary();
  uint64_t rng = 12345;
  auto next = [&rng](uint64_t n) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (rng >> 33) % n;
  };
  const WallTime wall{std::chrono::milliseconds(1795478400000)};
  for (int i = 0; i < 24000; ++i) {
    testing::OwnedEvent o;
    Event& e = o.event;
    const auto disorder = static_cast<int64_t>(next(100) < 2 ? 200'000 : next(3000));
    e.time = kT0 + Millis{i * 100} - Millis{disorder};
    e.brand = static_cast<BrandIndex>(next(3));
    e.channel = static_cast<ChannelIndex>(next(3));
    e.type = static_cast<EventType>(next(kEventTypeCount));
    e.role = static_cast<Role>(next(kRoleCount));
    e.count = 1 + static_cast<int64_t>(next(4));
    e.reach = static_cast<int64_t>(next(5000));
    e.followers = static_cast<int64_t>(next(800));
    if (next(2) == 0) {
      e.has_sentiment = true;
      e.sentiment = static_cast<double>(next(201)) / 100.0 - 1.0;
    }
    if (e.type == EventType::lead) {
      e.has_value = true;
      e.value = static_cast<double>(next(10000)) / 7.0;
    }
    if (e.type == EventType::reply) {
      e.has_response_time = true;
      e.response_time_s = static_cast<double>(next(20000));
    }
    o.set_actor("actor-" + std::to_string(next(3000)));
    const std::string id = "id-" + std::to_string(next(20000));
    e.id = id;
    e.brand_name = v.brand_name(e.brand);
    const PartitionId p{static_cast<int32_t>(next(3))};
    const EventTime wm = tracker->pipeline_watermark();
    const ProcessContext ctx = make_process_context(p, wm, tracker->partition_watermark(p), e,
                                                    KpiSettings{}, EmvSettings{});
    for (auto& op : ops) op->process(ctx, e);
    dedup->is_duplicate(e);
    if (tracker->observe(p, e.time, wall)) {
      for (auto& op : ops) op->on_watermark(tracker->pipeline_watermark(), out);
    }
    if (i % 1000 == 999) {
      for (auto& op : ops) op->on_checkpoint(out);
    }
  }
  MemoryState state;
  for (const auto& op : ops) {
    for (PartitionId p : kScopes) testing::checkpoint_into(state, *op, p);
  }
  if (!ops.empty()) return state;
  for (PartitionId p : kScopes) {
    ScopedStateWriter w(state, state_scope("tracker", p));
    tracker->snapshot(p, w);
  }
  ScopedStateWriter w(state, state_scope("dedup", PartitionId{0}));
  dedup->checkpoint(w);
  return state;
}

MemoryState checkpoint_of(std::vector<std::unique_ptr<Operator>> ops) {
  WatermarkTracker tracker(WatermarkSettings{});
  Deduplicator dedup(minutes(15));
  return run_and_checkpoint(std::move(ops), &tracker, &dedup);
}

std::vector<WindowSpec> windows() {
  auto specs = default_windows();
  specs.push_back({"minute_update", WindowKind::tumbling, minutes(1), minutes(1), Millis{0},
                   seconds(10), EmitMode::update});
  return specs;
}

TEST(StateFormat, WindowOperatorBytesArePinned) {
  const MemoryState state = checkpoint_of(make_window_operators(windows(), vocabulary()));
  // Issue #20: sessions format 3, the same layout as 2 with deltas after it (1345be0954782823
  // was format 2; no deltas in a single checkpoint). Windows format 4, a partition's panes in one
  // key per pane start written when they change (e8d384603ead0525 was format 3). Before: windows format 3 and sessions format 2,
  // partition records packed (6ac9393238c93acf with sessions format 1); 5f9dfea09cf4f22a was
  // windows format 2 (issue #15: a partition's record ends with the watermark its windows were
  // emitted through) and df76adfb5a19105f format 1 (all still read).
  // The `panes` header holds where a partition's windows were emitted through as the close time
  // of the last window closed (the same windows as the watermark: older builds read it alike),
  // so that it changes when a window closes, not with every watermark (8251abcc384890b7 held
  // the watermark itself). Then sessions list their actors by brand, hash and id instead of
  // brand, id and hash (8cb2a0305ababd79; format 3 either way: the reader takes any order).
  // Sessions format 4: a generation in the base and its deltas, so that a new base leaves the
  // older deltas in place instead of removing them (0a277f996a050cb4 was format 3, still read:
  // SessionWindowOperator.Format3BaseAndDeltasRestoreAndAreRewritten), and window pane starts
  // likewise (bases version 5, deltas 2: a8608b125a3901ee was 4 and 1, still read:
  // WindowOperator.PaneStartsOfVersion4RestoreAndAreRewrittenWithAGeneration).
  EXPECT_EQ(digest(state), "6974131826bc4fac");
}

// Format 4's partition state (the `panes` header and its `pane/<start>` keys, version 5, relative to the
// scope) rewritten as format 3's one `panes` record: panes grouped by brand+channel (in
// configured order) with delta starts.
std::string window_partition_as_format_3(const std::map<std::string, std::string>& scope,
                                         const Vocabulary& v) {
  constexpr MeasureSet kPane = MeasureSet::all().without(Measure::web_visits);
  byte_codec::Reader header(scope.at("panes"));
  EXPECT_EQ(header.u8(), 4);
  const uint64_t late = header.var();
  const int64_t closed_through = header.svar();
  EXPECT_TRUE(header.done());
  struct Series {
    std::string brand, channel;
    std::vector<std::pair<int64_t, std::string>> panes;  // start, dirty + measures + actors
  };
  std::map<std::pair<BrandIndex, ChannelIndex>, Series> series;
  for (const auto& [key, value] : scope) {
    if (key.rfind("pane/", 0) != 0) continue;
    const int64_t start =
        static_cast<int64_t>(std::stoull(key.substr(5), nullptr, 16) ^ (uint64_t{1} << 63));
    byte_codec::Reader in(value);
    EXPECT_EQ(in.u8(), 5);
    (void)in.var();  // the base's generation (none before version 5)
    const uint64_t count = in.var();
    for (uint64_t k = 0; k < count; ++k) {
      const std::string brand(in.vstr());
      const std::string channel(in.vstr());
      const std::string_view at = in.rest();
      in.u8();  // dirty
      Measures m;
      EXPECT_TRUE(m.decode_packed(in, kPane));
      EXPECT_TRUE(HyperLogLog::deserialize(in.rest()).has_value());
      Series& s = series[{*v.find_brand(brand), *v.find_channel(channel)}];
      s.brand = brand;
      s.channel = channel;
      s.panes.emplace_back(start, std::string(at.substr(0, at.size() - in.rest().size())));
    }
    EXPECT_TRUE(in.done());
  }
  std::string out;
  byte_codec::put_u8(out, 3);
  byte_codec::put_var(out, late);
  byte_codec::put_svar(out, closed_through);
  byte_codec::put_var(out, series.size());
  for (const auto& [index, s] : series) {
    byte_codec::put_vstr(out, s.brand);
    byte_codec::put_vstr(out, s.channel);
    byte_codec::put_var(out, s.panes.size());
    int64_t previous = 0;
    for (const auto& [start, bytes] : s.panes) {
      byte_codec::put_svar(out, start - previous);
      previous = start;
      out += bytes;
    }
  }
  return out;
}

// Format 3's partition record rewritten as format 2 (the layout of the previous release): fixed
// width, panes sorted by (start, brand index, channel index), names per pane.
std::string window_record_as_format_2(std::string_view v3, const Vocabulary& v) {
  constexpr MeasureSet kPane = MeasureSet::all().without(Measure::web_visits);
  byte_codec::Reader in(v3);
  EXPECT_EQ(in.u8(), 3);
  const uint64_t late = in.var();
  const int64_t closed_through = in.svar();
  struct Entry {
    int64_t start;
    uint32_t bc;
    std::string brand, channel;
    uint8_t dirty;
    Measures m;
    std::string actors;
  };
  std::vector<Entry> entries;
  const uint64_t series = in.var();
  for (uint64_t k = 0; k < series; ++k) {
    const std::string brand(in.vstr());
    const std::string channel(in.vstr());
    const uint64_t panes = in.var();
    int64_t start = 0;
    for (uint64_t i = 0; i < panes; ++i) {
      Entry e;
      start += in.svar();
      e.start = start;
      e.brand = brand;
      e.channel = channel;
      e.bc = (uint32_t{*v.find_brand(brand)} << 16) | uint32_t{*v.find_channel(channel)};
      e.dirty = in.u8();
      EXPECT_TRUE(e.m.decode_packed(in, kPane));
      auto hll = HyperLogLog::deserialize(in.rest());
      EXPECT_TRUE(hll.has_value());
      hll->serialize(e.actors);
      entries.push_back(std::move(e));
    }
  }
  EXPECT_TRUE(in.done());
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::pair(a.start, a.bc) < std::pair(b.start, b.bc);
  });
  std::string out;
  byte_codec::put_u8(out, 2);
  byte_codec::put_u64(out, late);
  byte_codec::put_u64(out, entries.size());
  for (const Entry& e : entries) {
    byte_codec::put_i64(out, e.start);
    byte_codec::put_str(out, e.brand);
    byte_codec::put_str(out, e.channel);
    byte_codec::put_u8(out, e.dirty);
    e.m.encode_dense(out, kPane);
    out += e.actors;
  }
  byte_codec::put_i64(out, closed_through);
  return out;
}

// Sessions format 4's base record as format 3: the same without its generation.
std::string session_record_as_format_3(std::string_view v4) {
  byte_codec::Reader in(v4);
  EXPECT_EQ(in.u8(), 4);
  (void)in.var();  // the generation
  return "\x03" + std::string(in.rest());
}

// Sessions format 4's base record as format 2: format 3's layout (2 had no deltas).
std::string session_record_as_format_2(std::string_view v4) {
  const std::string v3 = session_record_as_format_3(v4);
  return "\x02" + v3.substr(1);
}

// Sessions format 2's partition record rewritten as format 1.
std::string session_record_as_format_1(std::string_view v3) {
  constexpr size_t kBuckets = 10;  // kDurationBuckets + Inf
  const std::string v2 = session_record_as_format_2(v3);
  byte_codec::Reader in(v2);
  EXPECT_EQ(in.u8(), 2);
  std::string out;
  byte_codec::put_u8(out, 1);
  byte_codec::put_u64(out, in.var());  // late events
  const uint64_t brands = in.var();
  byte_codec::put_u64(out, brands);
  for (uint64_t b = 0; b < brands; ++b) {
    byte_codec::put_str(out, in.vstr());
    byte_codec::put_u64(out, in.var());  // sessions
    const uint64_t present = in.var();
    for (size_t k = 0; k < kBuckets; ++k) byte_codec::put_u64(out, (present >> k & 1) ? in.var() : 0);
    byte_codec::put_f64(out, in.f64());
  }
  std::string actors;
  uint64_t n_actors = 0;
  const uint64_t groups = in.var();
  for (uint64_t g = 0; g < groups; ++g) {
    const std::string brand(in.vstr());
    const uint64_t n = in.var();
    for (uint64_t a = 0; a < n; ++a, ++n_actors) {
      byte_codec::put_str(actors, brand);
      byte_codec::put_str(actors, in.vstr());
      byte_codec::put_u64(actors, in.u64());  // actor hash
      const uint64_t sessions = in.var();
      byte_codec::put_u64(actors, sessions);
      for (uint64_t k = 0; k < sessions; ++k) {
        const int64_t start = in.svar();
        byte_codec::put_i64(actors, start);
        byte_codec::put_i64(actors, start + static_cast<int64_t>(in.var()));
        byte_codec::put_i64(actors, static_cast<int64_t>(in.var()));
      }
    }
  }
  EXPECT_TRUE(in.done());
  byte_codec::put_u64(out, n_actors);
  return out + actors;
}

// Issue #20 packed the window partitions (format 3) and the sessions (format 2), then split the
// window partitions into a key per pane start (format 4) and gave the sessions deltas (format 3):
// state written by the previous releases restores to the same state, and is rewritten in the
// current format at the next checkpoint.
TEST(StateFormat, WindowFormats2And3StillRestoreToTheSameState) {
  const MemoryState current = checkpoint_of(make_window_operators(windows(), vocabulary()));
  for (const int format : {3, 2}) {
    SCOPED_TRACE("window format " + std::to_string(format));
    MemoryState previous;
    size_t converted = 0;
    size_t sessions_converted = 0;
    for (const auto& [key, value] : current.entries()) {
      const bool header = key.size() > 6 && key.compare(key.size() - 6, 6, "/panes") == 0;
      const bool pane = key.find("/pane/") != std::string::npos;
      const bool session_record = key.size() > 9 && key.compare(key.size() - 9, 9, "/sessions") == 0;
      if (header) {
        const std::string scope = key.substr(0, key.size() - 5);
        const std::string v3 =
            window_partition_as_format_3(testing::entries_under(current, scope), vocabulary());
        previous.put(key, format == 3 ? v3 : window_record_as_format_2(v3, vocabulary()));
        ++converted;
      } else if (pane) {
        continue;  // in the header's record
      } else if (session_record) {
        // Both older sessions formats, one with each older windows format.
        previous.put(key, format == 3 ? session_record_as_format_2(value)
                                      : session_record_as_format_1(value));
        ++sessions_converted;
      } else {
        previous.put(key, value);
      }
    }
    ASSERT_GT(sessions_converted, 2u);
    ASSERT_GT(converted, 6u);
    auto ops = make_window_operators(windows(), vocabulary());
    MemoryState again = previous;
    for (auto& op : ops) {
      for (PartitionId p : kScopes) {
        ASSERT_TRUE(testing::restore_from(previous, *op, p).has_value()) << op->name();
        // Read from an old format: written again even if nothing else changes.
        if (p != kGlobalPartition) {
          EXPECT_TRUE(op->needs_snapshot(p, false)) << op->name();
        }
        testing::checkpoint_into(again, *op, p);
      }
    }
    EXPECT_EQ(again.entries(), current.entries());
  }
}

TEST(StateFormat, KpiOperatorBytesArePinned) {
  KpiSettings kpi;
  kpi.reputation_horizon = minutes(20);
  kpi.spike.min_events = 2;
  kpi.grace = Millis{0};  // the buckets close as before kpi.grace: same stream, same state
  MemoryState state = checkpoint_of(make_kpi_operators(vocabulary(), kpi, {}));
  // Issue #20: kpi_counters writes one packed key `cells` per partition (format 3) instead of
  // format 2's key per cell and per brand's ideas (still read). Issue #17 item 5:
  // `brand/<name>` format 3 (the open minutes' actors and the sliding sketch instead of HLL
  // slices; format 2 still read, converted: ReputationOperator.RestoresUniqueActorsOfTheSliceFormat).
  // ab7afc8e90731208 had both in format 2. Issue #20: `brand/<name>` format 4 (the buckets in
  // `minutes/<name>/<hour>` keys and the sketch in `actors/<name>`, written when they change;
  // format 3 still read: KpiFormat3StillRestoresToTheSameState) instead of 08bf71842ab5d465.
  // Issue #20: `actors/<name>` version 5 (fold keys may follow it; a first checkpoint writes
  // none): only that number differs from d9cde8814704e715 (version 4, still read). Then
  // kpi_counters `cells` version 4 (deltas `cells/<n>` may follow; a first checkpoint writes
  // none): only that number differs from f2cf74ce47f63eaa (version 3, still read). Then
  // `brand/<name>` format 5: the buckets ten minutes a key in `chunks/<name>/<chunk>` instead of
  // an hour a key in `minutes/<name>/<hour>` (9e66b3605c09e187; format 4 still read:
  // KpiFormat4StillRestoresToTheSameState). Then `explain/<name>` format 2, the sketches packed
  // (c6991a08a1727097 with format 1, still read: KpiExplainFormat1StillRestoresToTheSameState).
  // Then `brand/<name>` format 6, holding those sketches, no `explain/<name>` key
  // (4258ca0ae71d2d26 with format 5, still read: KpiFormat5StillRestoresToTheSameState). Then
  // format 7, also holding the newest chunk's buckets, which have no key of their own
  // (e7d473eb070187ef with format 6, still read: KpiFormat6StillRestoresToTheSameState).
  EXPECT_EQ(digest(state), "01b739374ea3d7c8");
  for (PartitionId p : kScopes) {
    if (p != kGlobalPartition) state.remove(state_scope("kpi_reputation", p) + "late");
  }
  // Issue #17: the per-partition key `late` (format 1) is all the digest above adds to this one
  // (9136508a533abf72 with counters and brand format 2). Issue #16: detector/<brand> format 3 and
  // the new explain/<brand>, baseline/<brand> keys (format 1); 244a5f360e19609b was detector
  // format 2.
  // abf93b0dc2286aaa before format 4, 83397a098e515f6e with `actors/<name>` version 4,
  // 2be65b57bd329129 with `cells` version 3, 330e5faefa26e5b6 with `brand/<name>` format 4,
  // fddfa3df78227a8b with `explain/<name>` format 1, 3848c50adb0786ad with `brand/<name>`
  // format 5 and `explain/<name>` format 2, ed6279c31c41bcf6 with `brand/<name>` format 6.
  EXPECT_EQ(digest(state), "f9a43431539fe73a");
}

// Format 7's `brand/<name>` keys of one partition scope (relative keys) as format 6 wrote them:
// the newest chunk's buckets at its end in a `chunks/<name>/<chunk>` key of their own, the rest
// with version 6; every other key as it is.
std::map<std::string, std::string> reputation_as_format_6(
    const std::map<std::string, std::string>& scope) {
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : scope) {
    if (key.rfind("brand/", 0) != 0) {
      out.emplace(key, value);
      continue;
    }
    byte_codec::Reader in(value);
    EXPECT_EQ(in.u64(), 7u);
    const std::string_view body = in.rest();
    in.i64();  // the minutes' first and count
    in.u64();
    in.i64();  // the open minutes' actors: their first minute, count and sketches
    for (uint64_t n = in.u64(); n > 0; --n)
      EXPECT_TRUE(HyperLogLog::deserialize(in.rest()).has_value());  // consumes it
    for (uint64_t n = in.var(); n > 0; --n) {  // the explanations
      in.svar();
      ContributionSketch sketch(vocabulary().channel_count());
      EXPECT_TRUE(sketch.deserialize(in, vocabulary(), /*packed=*/true));
    }
    std::string v6;
    byte_codec::put_u64(v6, 6);
    v6 += body.substr(0, body.size() - in.rest().size());
    out.emplace(key, std::move(v6));
    if (in.var() == 0) continue;  // no minutes, no chunk
    const int64_t from = in.svar();
    const uint64_t count = in.var();
    std::string chunk;
    byte_codec::put_u64(chunk, 5);
    byte_codec::put_i64(chunk, from);
    byte_codec::put_u64(chunk, count);
    chunk += in.rest();
    EXPECT_EQ(in.rest().size(), count * 64);
    char hex[17];
    const int64_t index = from >= 0 ? from / 10 : (from - 9) / 10;
    std::snprintf(hex, sizeof hex, "%016llx",
                  static_cast<unsigned long long>(static_cast<uint64_t>(index) ^ (uint64_t{1} << 63)));
    out.emplace("chunks/" + key.substr(6) + "/" + hex, std::move(chunk));
  }
  return out;
}

// The current keys of one partition scope (relative keys) as format 5 wrote them: format 6's
// (reputation_as_format_6) with the explanation sketches at the end of `brand/<name>` in
// `explain/<name>` (format 2, packed), the rest with version 5; every other key as it is.
std::map<std::string, std::string> reputation_as_format_5(
    const std::map<std::string, std::string>& scope) {
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : reputation_as_format_6(scope)) {
    if (key.rfind("brand/", 0) != 0) {
      out.emplace(key, value);
      continue;
    }
    byte_codec::Reader in(value);
    EXPECT_EQ(in.u64(), 6u);
    std::string v5;
    byte_codec::put_u64(v5, 5);
    byte_codec::put_i64(v5, in.i64());
    byte_codec::put_u64(v5, in.u64());
    const std::string_view actors_at = in.rest();
    in.i64();  // the open minutes' actors: their first minute, count and sketches
    for (uint64_t n = in.u64(); n > 0; --n)
      EXPECT_TRUE(HyperLogLog::deserialize(in.rest()).has_value());  // consumes it
    v5 += actors_at.substr(0, actors_at.size() - in.rest().size());
    std::string explain;
    byte_codec::put_u64(explain, 2);
    explain += in.rest();
    out.emplace(key, std::move(v5));
    out.emplace("explain/" + key.substr(6), std::move(explain));
  }
  return out;
}

// Format 5's `brand/<name>`, `chunks/<name>/<chunk>` and `actors/<name>` keys of one partition
// scope (relative keys) rewritten as format 3's one `brand/<name>` value per brand.
std::map<std::string, std::string> reputation_as_format_3(
    const std::map<std::string, std::string>& scope) {
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : scope) {
    if (key.rfind("brand/", 0) != 0) continue;
    const std::string name = key.substr(6);
    byte_codec::Reader in(value);
    EXPECT_EQ(in.u64(), 5u);
    const int64_t first = in.i64();
    const uint64_t count = in.u64();
    const std::string open_actors(in.rest());
    std::string buckets(count * 64, '\0');
    for (const auto& [k, chunk] : scope) {
      if (k.rfind("chunks/" + name + "/", 0) != 0) continue;
      byte_codec::Reader c(chunk);
      EXPECT_EQ(c.u64(), 5u);
      const int64_t from = c.i64();
      const uint64_t n = c.u64();
      EXPECT_EQ(c.rest().size(), n * 64);
      buckets.replace(static_cast<size_t>(from - first) * 64, n * 64, c.rest());
    }
    std::string v3;
    byte_codec::put_u64(v3, 3);
    byte_codec::put_i64(v3, first);
    byte_codec::put_u64(v3, count);
    v3 += buckets;
    v3 += open_actors;
    v3 += scope.at("actors/" + name).substr(8);  // after its version
    out.emplace(key, std::move(v3));
  }
  return out;
}

// The KPI settings of the older-format tests below.
KpiSettings older_format_kpi() {
  KpiSettings kpi;
  kpi.reputation_horizon = minutes(20);
  kpi.spike.min_events = 2;
  return kpi;
}

// The kpi_reputation keys of `state` with `part` in them.
size_t reputation_keys_with(const MemoryState& state, std::string_view part) {
  size_t n = 0;
  for (const auto& [key, value] : state.entries())
    n += key.rfind("kpi_reputation/", 0) == 0 && key.find(part) != std::string::npos ? 1 : 0;
  return n;
}

// Every KPI operator restored from `previous` (an older format) and checkpointed over it leaves
// exactly `current` (the state the current format wrote).
void expect_restores_and_rewrites_as(MemoryState& previous, const MemoryState& current,
                                     const KpiSettings& kpi) {
  auto ops = make_kpi_operators(vocabulary(), kpi, {});
  MemoryState again = previous;
  for (auto& op : ops) {
    for (PartitionId p : kScopes) {
      ASSERT_TRUE(testing::restore_from(previous, *op, p).has_value()) << op->name();
      testing::checkpoint_into(again, *op, p);
    }
  }
  EXPECT_EQ(again.entries(), current.entries());
}

// Issue #20 split `brand/<name>` (format 4): state of the previous release restores to the same
// state, and is rewritten as format 4 at the next checkpoint.
TEST(StateFormat, KpiFormat3StillRestoresToTheSameState) {
  const KpiSettings kpi = older_format_kpi();
  const MemoryState current = checkpoint_of(make_kpi_operators(vocabulary(), kpi, {}));
  MemoryState previous;
  size_t converted = 0;
  for (PartitionId p : kScopes) {
    const std::string scope = state_scope("kpi_reputation", p);
    if (p == kGlobalPartition) continue;
    const auto format_5 = reputation_as_format_5(testing::entries_under(current, scope));
    for (const auto& [key, value] : reputation_as_format_3(format_5)) {
      previous.put(scope + key, value);
      ++converted;
    }
    for (const auto& [key, value] : format_5) {
      if (key.rfind("explain/", 0) == 0) previous.put(scope + key, value);
    }
  }
  ASSERT_GT(converted, 6u);
  for (const auto& [key, value] : current.entries()) {
    const bool split = key.find("/chunks/") != std::string::npos ||
                       key.find("/actors/") != std::string::npos ||
                       key.find("/brand/") != std::string::npos;
    if (key.rfind("kpi_reputation/", 0) == 0 && split) continue;
    previous.put(key, value);
  }
  expect_restores_and_rewrites_as(previous, current, kpi);
}

// `current` with each kpi_reputation partition scope (relative keys) passed through `convert`;
// the global scope and the other owners as they are.
template <typename Convert>
MemoryState with_reputation_scopes(const MemoryState& current, Convert convert) {
  MemoryState previous;
  for (const auto& [key, value] : current.entries()) {
    if (key.rfind("kpi_reputation/", 0) != 0) previous.put(key, value);
  }
  for (PartitionId p : kScopes) {
    const std::string scope = state_scope("kpi_reputation", p);
    const auto entries = testing::entries_under(current, scope);
    for (const auto& [key, value] : p == kGlobalPartition ? entries : convert(entries))
      previous.put(scope + key, value);
  }
  return previous;
}

// Format 5's `brand/<name>` and `chunks/<name>/<chunk>` keys of one partition scope (relative
// keys) as format 4 wrote them: the same `brand/<name>` with version 4, the buckets an hour a key
// in `minutes/<name>/<hour>`; every other key as it is.
std::map<std::string, std::string> reputation_as_format_4(
    const std::map<std::string, std::string>& scope) {
  std::map<std::string, std::string> out;
  struct Hour {
    int64_t from = 0;
    uint64_t n = 0;
    std::string buckets;
  };
  std::map<std::string, Hour> hours;  // hour key -> its buckets, in order
  for (const auto& [key, value] : scope) {
    if (key.rfind("brand/", 0) == 0) {
      byte_codec::Reader in(value);
      EXPECT_EQ(in.u64(), 5u);
      std::string v4;
      byte_codec::put_u64(v4, 4);
      v4 += in.rest();
      out.emplace(key, std::move(v4));
      continue;
    }
    if (key.rfind("chunks/", 0) != 0) {
      out.emplace(key, value);
      continue;
    }
    const size_t slash = key.rfind('/');
    const std::string name = key.substr(7, slash - 7);
    const uint64_t chunk = std::stoull(key.substr(slash + 1), nullptr, 16) ^ (uint64_t{1} << 63);
    const int64_t hour = static_cast<int64_t>(chunk) * 10 / 60;
    byte_codec::Reader c(value);
    EXPECT_EQ(c.u64(), 5u);
    const int64_t from = c.i64();
    const uint64_t n = c.u64();
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx",
                  static_cast<unsigned long long>(static_cast<uint64_t>(hour) ^ (uint64_t{1} << 63)));
    Hour& h = hours["minutes/" + name + "/" + hex];  // chunks come in key order: minute order
    if (h.n == 0) h.from = from;
    EXPECT_EQ(h.from + static_cast<int64_t>(h.n), from);
    h.n += n;
    h.buckets += c.rest();
  }
  for (const auto& [key, h] : hours) {
    std::string v4;
    byte_codec::put_u64(v4, 4);
    byte_codec::put_i64(v4, h.from);
    byte_codec::put_u64(v4, h.n);
    v4 += h.buckets;
    out.emplace(key, std::move(v4));
  }
  return out;
}

// Issue #20 keeps the buckets ten minutes a key (format 5): state written with an hour a key
// (format 4) restores to the same state, and the next checkpoint writes it as format 5 and
// removes the hour keys.
TEST(StateFormat, KpiFormat4StillRestoresToTheSameState) {
  const KpiSettings kpi = older_format_kpi();
  const MemoryState current = checkpoint_of(make_kpi_operators(vocabulary(), kpi, {}));
  MemoryState previous = with_reputation_scopes(current, [](const auto& scope) {
    return reputation_as_format_4(reputation_as_format_5(scope));
  });
  ASSERT_GT(reputation_keys_with(previous, "/minutes/"), 2u);
  expect_restores_and_rewrites_as(previous, current, kpi);
}

// Issue #20 keeps the explanation sketches in `brand/<name>` (format 6): state written with
// them in `explain/<name>` (format 5) restores to the same state, and the next checkpoint
// rewrites each brand as format 6 and removes its `explain/` key.
TEST(StateFormat, KpiFormat5StillRestoresToTheSameState) {
  const KpiSettings kpi = older_format_kpi();
  const MemoryState current = checkpoint_of(make_kpi_operators(vocabulary(), kpi, {}));
  MemoryState previous = with_reputation_scopes(current, reputation_as_format_5);
  ASSERT_GT(reputation_keys_with(previous, "/explain/"), 2u);
  expect_restores_and_rewrites_as(previous, current, kpi);
}

// Issue #20 keeps the newest chunk's buckets in `brand/<name>` (format 7): state written with
// them in a chunk key (format 6) restores to the same state, and the next checkpoint rewrites
// each brand as format 7 and removes that chunk's key.
TEST(StateFormat, KpiFormat6StillRestoresToTheSameState) {
  const KpiSettings kpi = older_format_kpi();
  const MemoryState current = checkpoint_of(make_kpi_operators(vocabulary(), kpi, {}));
  MemoryState previous = with_reputation_scopes(current, reputation_as_format_6);
  ASSERT_GT(reputation_keys_with(previous, "/chunks/"), reputation_keys_with(current, "/chunks/"));
  expect_restores_and_rewrites_as(previous, current, kpi);
}

// A format 5 brand is rewritten at the first checkpoint after the restore, whatever else
// happens: its explanations move into `brand/<name>` and its `explain/<name>` key goes.
TEST(StateFormat, AFormat5BrandIsRewrittenWithItsExplanationsAtTheNextCheckpoint) {
  const KpiSettings kpi = older_format_kpi();
  const MemoryState current = checkpoint_of(make_kpi_operators(vocabulary(), kpi, {}));
  MemoryState previous = with_reputation_scopes(current, reputation_as_format_5);
  // Without the global scope nothing closes at the restore (which would rewrite the brand too).
  ReputationOperator op(vocabulary(), kpi);
  const PartitionId p{1};
  ASSERT_TRUE(testing::restore_from(previous, op, p));
  ASSERT_TRUE(op.needs_snapshot(p, false));
  MemoryState again = previous;
  testing::RecordingWriter writes(again);
  ScopedStateWriter scoped(writes, state_scope(op.name(), p));
  op.snapshot(p, scoped);
  for (const char* name : {"acme", "globex"}) {
    const std::string key = state_scope(op.name(), p) + "brand/" + name;
    ASSERT_TRUE(previous.entries().contains(key)) << key;
    EXPECT_TRUE(writes.wrote("put " + key)) << key;
    EXPECT_EQ(again.entries().at(key), current.entries().at(key)) << key;
    EXPECT_TRUE(writes.wrote("remove " + state_scope(op.name(), p) + "explain/" + name)) << name;
  }
}

// Format 2's packed `explain/<name>` values of one partition scope as format 1 wrote them (8-byte
// counts, lengths, minutes and reach); every other key as it is.
std::map<std::string, std::string> explain_as_format_1(
    const std::map<std::string, std::string>& scope, size_t& converted) {
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : scope) {
    if (key.rfind("explain/", 0) != 0) {
      out.emplace(key, value);
      continue;
    }
    byte_codec::Reader in(value);
    EXPECT_EQ(in.u64(), 2u);
    const uint64_t n = in.var();
    std::string v1;
    byte_codec::put_u64(v1, 1);
    byte_codec::put_u64(v1, n);
    for (uint64_t i = 0; i < n; ++i) {
      byte_codec::put_i64(v1, in.svar());
      ContributionSketch sketch(vocabulary().channel_count());
      EXPECT_TRUE(sketch.deserialize(in, vocabulary(), /*packed=*/true));
      sketch.serialize(v1, vocabulary(), /*packed=*/false);
      ++converted;
    }
    EXPECT_TRUE(in.done());
    out.emplace(key, std::move(v1));
  }
  return out;
}

// Issue #20 packs the explanation sketches (`explain/<name>` format 2): state written with format
// 1 restores to the same state, and the next checkpoint rewrites it packed.
TEST(StateFormat, KpiExplainFormat1StillRestoresToTheSameState) {
  const KpiSettings kpi = older_format_kpi();
  const MemoryState current = checkpoint_of(make_kpi_operators(vocabulary(), kpi, {}));
  size_t sketches = 0;
  MemoryState previous = with_reputation_scopes(current, [&](const auto& scope) {
    return explain_as_format_1(reputation_as_format_5(scope), sketches);
  });
  ASSERT_GT(sketches, 0u);
  expect_restores_and_rewrites_as(previous, current, kpi);
}

TEST(StateFormat, TrackerAndDeduplicatorBytesArePinned) {
  WatermarkTracker tracker(WatermarkSettings{});
  Deduplicator dedup(minutes(15));
  const MemoryState all = run_and_checkpoint({}, &tracker, &dedup);
  // Issue #17: same layout, but the dedup entries hold the stream time at which each id was seen
  // instead of its event time (state written before reads as ids seen earlier: they expire no
  // later than the old rule said). 223068237fca7b49 stored event times. Issue #20: dedup
  // segments version 2 (17 bytes an id: each time as a varint from the previous one; version 1,
  // f29725bf0d623cbf here, is still read: Deduplicator.SegmentsOfTheWideLayoutsWrittenBefore...).
  // Issue #20: 96-bit keys, segments version 3 (13 bytes an id; a9b652d25d9b208e was version 2,
  // still read, its 128-bit keys cut to 96 bits).
  EXPECT_EQ(digest(all), "cc906882903eb096");
}

}  // namespace
}  // namespace sp
