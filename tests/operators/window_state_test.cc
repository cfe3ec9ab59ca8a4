// Window and session operator state under a changed configuration (issue #14: brands and channels
// added, removed, reordered between checkpoint and restore) and against values this build cannot
// read (unknown format version, corrupt bytes).
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "operators/session_window_operator.h"
#include "operators/window_operator.h"
#include "tests/operators/kpi_test_support.h"
#include "tests/operators/state_test_support.h"

namespace sp {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;
using testing::FakeMetricsWriter;
using testing::RecordingEmitter;

const EventTime kT0 = from_epoch_ms(1795478400000);  // 2026-11-24T00:00:00Z

Vocabulary before() {
  return Vocabulary({{"acme", true}, {"globex", false}}, {"twitter", "facebook"});
}
Vocabulary added() {
  return Vocabulary({{"acme", true}, {"globex", false}, {"initech", false}},
                    {"twitter", "facebook", "linkedin"});
}
Vocabulary removed() { return Vocabulary({{"acme", true}}, {"twitter"}); }
Vocabulary reordered() {
  return Vocabulary({{"globex", false}, {"acme", true}}, {"facebook", "twitter"});
}

enum class Kind { tumbling, hopping, session };

std::unique_ptr<Operator> make_operator(Kind kind, const Vocabulary& vocabulary) {
  switch (kind) {
    case Kind::tumbling:
      // The engagement-rate source: its global state holds the last closed rates by name.
      return std::make_unique<WindowOperator>(
          WindowSpec{"minute", WindowKind::tumbling, minutes(1), minutes(1), Millis{0}, seconds(5),
                     EmitMode::final},
          vocabulary, true);
    case Kind::hopping:
      return std::make_unique<WindowOperator>(
          WindowSpec{"hopping", WindowKind::hopping, minutes(4), minutes(2), Millis{0}, seconds(5),
                     EmitMode::final},
          vocabulary, false);
    case Kind::session:
      return std::make_unique<SessionWindowOperator>(
          // Actors of play() return every other minute: some sessions close within a run.
          WindowSpec{"sessions", WindowKind::session, Millis{0}, Millis{0}, minutes(1), seconds(5),
                     EmitMode::final},
          vocabulary);
  }
  return nullptr;
}

// Drives one operator as the runner does, with a watermark the test sets.
struct Driven {
  Driven(Kind kind, Vocabulary v) : vocabulary(std::move(v)), op(make_operator(kind, vocabulary)) {}

  void add(PartitionId p, EventTime t, std::string_view brand, std::string_view channel,
           EventType type, int64_t count, const std::string& actor) {
    testing::OwnedEvent e;
    e.event.time = t;
    e.event.brand = vocabulary.brand(brand);
    e.event.channel = vocabulary.channel(channel);
    e.event.type = type;
    e.event.count = count;
    e.event.reach = 10 * count;
    e.event.has_sentiment = count % 2 == 0;
    e.event.sentiment = 0.25 * static_cast<double>(count % 5) - 0.5;
    e.set_actor(actor);
    op->process(make_process_context(p, watermark, watermark, e.event, KpiSettings{}, {}), e.event);
  }
  // Minutes [from, to): every brand x channel (other included; names the vocabulary does not
  // know fold into other) on both partitions, each minute left open until the next one.
  void play(int from, int to) {
    for (int m = from; m < to; ++m) {
      int k = 0;
      for (const char* brand : {"acme", "globex", "other"}) {
        for (const char* channel : {"twitter", "facebook", "other"}) {
          const EventType type = k % 3 == 0 ? EventType::impression : EventType::like;
          const std::string actor =
              std::string(brand) + "-" + channel + "-" + std::to_string(m % 2);
          add(PartitionId{k % 2}, kT0 + minutes(m) + seconds(2 * k + 1), brand, channel, type,
              1 + (m + k) % 4, actor);
          ++k;
        }
      }
      advance(kT0 + minutes(m) + seconds(30));
    }
  }
  void advance(EventTime wm) {
    watermark = wm;
    op->on_watermark(wm, out);
  }
  std::map<std::string, double> metrics() const {
    FakeMetricsWriter w;
    op->collect(w);
    return w.samples;
  }
  std::vector<std::string> records(size_t first = 0) const {
    std::vector<std::string> lines;
    for (size_t i = first; i < out.records.size(); ++i) {
      lines.push_back(out.records[i].key + " " + out.records[i].value);
    }
    return lines;
  }

  Vocabulary vocabulary;
  std::unique_ptr<Operator> op;
  EventTime watermark = kMinEventTime;
  RecordingEmitter out;
};

const std::vector<PartitionId> kScopes = {kGlobalPartition, PartitionId{0}, PartitionId{1}};

void move_state(const Driven& from, Driven& to, MemoryState& state) {
  for (PartitionId p : kScopes) testing::checkpoint_into(state, *from.op, p);
  for (PartitionId p : kScopes) ASSERT_TRUE(testing::restore_from(state, *to.op, p)) << p.value;
  to.watermark = from.watermark;
}

bool mentions_any(const std::string& s, const std::vector<std::string>& names) {
  return std::any_of(names.begin(), names.end(),
                     [&](const std::string& n) { return s.find("\"" + n + "\"") != s.npos; });
}

std::vector<std::string> without(std::vector<std::string> lines,
                                 const std::vector<std::string>& names) {
  std::erase_if(lines, [&](const std::string& l) { return mentions_any(l, names); });
  return lines;
}

std::map<std::string, double> without(std::map<std::string, double> series,
                                      const std::vector<std::string>& names) {
  std::erase_if(series, [&](const auto& kv) { return mentions_any(kv.first, names); });
  return series;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

const std::string kRecordsTotal = "socialpulse_window_records_total{}";
const EventTime kEnd = kT0 + minutes(60);  // closes every window and session of play(0, 6)

class WindowVocabularyChange : public ::testing::TestWithParam<Kind> {};

TEST_P(WindowVocabularyChange, AddedBrandAndChannelRestoreAndStartFromZero) {
  Driven a(GetParam(), before());
  a.play(0, 3);
  Driven b(GetParam(), added());
  MemoryState state;
  move_state(a, b, state);
  EXPECT_TRUE(state.dropped().empty());
  const size_t cut = a.out.records.size();
  ASSERT_GT(cut, 0u);

  a.play(3, 6);
  b.play(3, 6);
  b.add(PartitionId{1}, kT0 + minutes(5) + seconds(50), "initech", "linkedin", EventType::like, 5,
        "newcomer");
  a.advance(kEnd);
  b.advance(kEnd);

  EXPECT_EQ(without(b.records(), {"initech", "linkedin"}), a.records(cut));
  const std::vector<std::string> fresh = b.records();
  const auto n_new = std::count_if(fresh.begin(), fresh.end(), [](const std::string& r) {
    return mentions_any(r, {"initech"});
  });
  ASSERT_GE(n_new, 1);
  for (const std::string& r : fresh) {
    if (!mentions_any(r, {"initech"})) continue;
    if (GetParam() == Kind::session) {
      EXPECT_NE(r.find(R"("events":1})"), std::string::npos) << r;
    } else {
      EXPECT_NE(r.find(R"("counts":{"like":5})"), std::string::npos) << r;
    }
  }
  auto b_metrics = without(b.metrics(), {"initech", "linkedin"});
  auto a_metrics = a.metrics();
  EXPECT_EQ(b_metrics.at(kRecordsTotal), a_metrics.at(kRecordsTotal) + static_cast<double>(n_new));
  b_metrics.erase(kRecordsTotal);
  a_metrics.erase(kRecordsTotal);
  EXPECT_EQ(b_metrics, a_metrics);
}

TEST_P(WindowVocabularyChange, RemovedBrandAndChannelAreDroppedAndReported) {
  Driven a(GetParam(), before());
  a.play(0, 3);
  Driven b(GetParam(), removed());
  MemoryState state;
  move_state(a, b, state);
  const size_t cut = a.out.records.size();

  // Entries inside values the owner rewrites at its next checkpoint: noted, no key removed.
  ASSERT_FALSE(state.dropped().empty());
  std::set<std::string> kinds;
  for (const MemoryState::Dropped& d : state.dropped()) {
    EXPECT_TRUE(d.key.empty()) << d.key;
    kinds.insert(std::string(to_string(d.kind)) + ":" + d.name);
  }
  // Sessions are keyed by brand and actor only: no channel to drop.
  const std::set<std::string> want =
      GetParam() == Kind::session ? std::set<std::string>{"brand:globex"}
                                  : std::set<std::string>{"brand:globex", "channel:facebook"};
  EXPECT_EQ(kinds, want);

  a.advance(kEnd);
  b.advance(kEnd);
  const std::vector<std::string> kept = b.records();
  ASSERT_FALSE(kept.empty());
  EXPECT_EQ(kept, without(a.records(cut), {"globex", "facebook"}));
  for (const std::string& r : kept) EXPECT_FALSE(mentions_any(r, {"globex", "facebook"})) << r;
  auto b_metrics = b.metrics();
  auto a_metrics = without(a.metrics(), {"globex", "facebook"});
  b_metrics.erase(kRecordsTotal);  // counts the records of the dropped brands emitted before
  a_metrics.erase(kRecordsTotal);
  EXPECT_EQ(b_metrics, a_metrics);

  // What b checkpoints into the store no longer holds them: a second restore drops nothing.
  state.clear_dropped();
  for (PartitionId p : kScopes) testing::checkpoint_into(state, *b.op, p);
  Driven c(GetParam(), removed());
  for (PartitionId p : kScopes) ASSERT_TRUE(testing::restore_from(state, *c.op, p));
  EXPECT_TRUE(state.dropped().empty());
}

TEST_P(WindowVocabularyChange, ReorderedListsGiveIdenticalResults) {
  Driven a(GetParam(), before());
  a.play(0, 3);
  Driven b(GetParam(), reordered());
  MemoryState state;
  move_state(a, b, state);
  EXPECT_TRUE(state.dropped().empty());
  EXPECT_EQ(b.metrics(), a.metrics());
  const size_t cut = a.out.records.size();
  a.play(3, 6);
  b.play(3, 6);
  a.advance(kEnd);
  b.advance(kEnd);
  // Records closing together leave in configured (index) order: compare as sets.
  EXPECT_EQ(sorted(b.records()), sorted(a.records(cut)));
  EXPECT_EQ(b.metrics(), a.metrics());
}

INSTANTIATE_TEST_SUITE_P(Kinds, WindowVocabularyChange,
                         ::testing::Values(Kind::tumbling, Kind::hopping, Kind::session),
                         [](const ::testing::TestParamInfo<Kind>& info) {
                           switch (info.param) {
                             case Kind::tumbling:
                               return std::string("Tumbling");
                             case Kind::hopping:
                               return std::string("Hopping");
                             case Kind::session:
                               return std::string("Session");
                           }
                           return std::string("Unknown");
                         });

class WindowStateValues : public ::testing::TestWithParam<Kind> {
 protected:
  // The checkpoint of a run with open state in every scope.
  static MemoryState checkpoint(Kind kind) {
    Driven a(kind, before());
    a.play(0, 3);
    MemoryState state;
    for (PartitionId p : kScopes) testing::checkpoint_into(state, *a.op, p);
    return state;
  }
  static PartitionId scope_of(const std::string& key) {
    return key.find("/global/") != std::string::npos     ? kGlobalPartition
           : key.find("/00000000/") != std::string::npos ? PartitionId{0}
                                                         : PartitionId{1};
  }
};

TEST_P(WindowStateValues, UnknownFormatVersionIsRefusedByName) {
  const MemoryState good = checkpoint(GetParam());
  // Every scope's key; the tumbling and hopping windows also hold a key per pane start.
  ASSERT_GE(good.entries().size(), 3u);
  for (const auto& [key, value] : good.entries()) {
    MemoryState state = good;
    std::string bumped = value;
    bumped[0] = 9;  // the version byte, 1 today
    state.put(key, bumped);
    Driven fresh(GetParam(), before());
    const auto refused = testing::restore_from(state, *fresh.op, scope_of(key));
    ASSERT_FALSE(refused) << key;
    EXPECT_EQ(refused.error().kind, ErrorKind::fatal);
    EXPECT_NE(refused.error().message.find("version 9"), std::string::npos)
        << refused.error().message;
  }
}

TEST_P(WindowStateValues, CorruptBytesAreErrorsNotCrashes) {
  const MemoryState good = checkpoint(GetParam());
  for (const auto& [key, value] : good.entries()) {
    const size_t step = std::max<size_t>(1, value.size() / 97);
    for (size_t cut = 0; cut < value.size(); cut += step) {
      MemoryState state = good;
      state.put(key, value.substr(0, cut));
      Driven fresh(GetParam(), before());
      EXPECT_FALSE(testing::restore_from(state, *fresh.op, scope_of(key))) << key << " " << cut;
    }
    MemoryState state = good;
    state.put(key, value + "x");
    Driven fresh(GetParam(), before());
    EXPECT_FALSE(testing::restore_from(state, *fresh.op, scope_of(key))) << key << " + x";
    // Every count field set to "huge" in turn: an error, never an allocation of that size.
    for (size_t at = 1; at + 8 <= value.size(); at += 8) {
      std::string huge = value;
      huge[at + 7] = '\x7f';
      MemoryState s = good;
      s.put(key, huge);
      Driven r(GetParam(), before());
      (void)testing::restore_from(s, *r.op, scope_of(key));  // may succeed (not a count): no crash
    }
  }
}

TEST_P(WindowStateValues, RestoreOfTheSameConfigurationIsAFixedPoint) {
  Driven a(GetParam(), before());
  a.play(0, 3);
  MemoryState good;
  for (PartitionId p : kScopes) testing::checkpoint_into(good, *a.op, p);
  a.op->saved();
  Driven b(GetParam(), before());
  MemoryState state = good;
  for (PartitionId p : kScopes) ASSERT_TRUE(testing::restore_from(state, *b.op, p));
  b.watermark = a.watermark;
  // The next checkpoint into the same store leaves it as it was, and both go on alike.
  for (PartitionId p : kScopes) testing::checkpoint_into(state, *b.op, p);
  EXPECT_EQ(state.entries(), good.entries());
  const size_t cut = a.out.records.size();
  a.play(3, 6);
  b.play(3, 6);
  a.advance(kEnd);
  b.advance(kEnd);
  EXPECT_EQ(b.records(), a.records(cut));
  EXPECT_EQ(b.metrics(), a.metrics());
  MemoryState after_a = good;
  MemoryState after_b = good;
  for (PartitionId p : kScopes) {
    testing::checkpoint_into(after_a, *a.op, p);
    testing::checkpoint_into(after_b, *b.op, p);
  }
  EXPECT_EQ(after_b.entries(), after_a.entries());
}

INSTANTIATE_TEST_SUITE_P(Kinds, WindowStateValues,
                         ::testing::Values(Kind::tumbling, Kind::hopping, Kind::session),
                         [](const ::testing::TestParamInfo<Kind>& info) {
                           switch (info.param) {
                             case Kind::tumbling:
                               return std::string("Tumbling");
                             case Kind::hopping:
                               return std::string("Hopping");
                             case Kind::session:
                               return std::string("Session");
                           }
                           return std::string("Unknown");
                         });

}  // namespace
}  // namespace sp
