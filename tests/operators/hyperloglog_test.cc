#include "operators/hyperloglog.h"

#include "operators/byte_codec.h"
#include "operators/sliding_hyperloglog.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace sp {
namespace {

uint64_t hash_of(uint64_t i) {
  const std::string s = "actor-" + std::to_string(i);
  return XXH3_64bits(s.data(), s.size());
}

std::string bytes_of(const HyperLogLog& h) {
  std::string out;
  h.serialize(out);
  return out;
}
std::string bytes_of_n(uint64_t n) {
  HyperLogLog h;
  for (uint64_t i = 0; i < n; ++i) h.add(hash_of(i));
  return bytes_of(h);
}

TEST(HyperLogLog, ExactWhileSparse) {
  HyperLogLog h;
  for (uint64_t i = 0; i < 300; ++i) {
    h.add(hash_of(i));
    h.add(hash_of(i));  // duplicates never count
  }
  EXPECT_FALSE(h.is_dense());
  EXPECT_EQ(h.estimate(), 300.0);
}

class HyperLogLogError : public ::testing::TestWithParam<uint64_t> {};

TEST_P(HyperLogLogError, WithinTwoPercent) {
  const uint64_t n = GetParam();
  HyperLogLog h;
  for (uint64_t i = 0; i < n; ++i) h.add(hash_of(i));
  const double rel = std::abs(h.estimate() - static_cast<double>(n)) / static_cast<double>(n);
  EXPECT_LE(rel, 0.02) << "n=" << n << " estimate=" << h.estimate();
}

INSTANTIATE_TEST_SUITE_P(Cardinalities, HyperLogLogError,
                         ::testing::Values(1000, 5000, 20000, 60000, 200000, 1000000));

TEST(HyperLogLog, MergeEqualsUnion) {
  HyperLogLog a, b, all;
  for (uint64_t i = 0; i < 50000; ++i) {
    (i % 2 ? a : b).add(hash_of(i));
    all.add(hash_of(i));
  }
  a.merge(b);
  EXPECT_DOUBLE_EQ(a.estimate(), all.estimate());
}

TEST(HyperLogLog, SerializeRoundTrip) {
  for (uint64_t n : {0, 10, 5000}) {
    HyperLogLog h;
    for (uint64_t i = 0; i < n; ++i) h.add(hash_of(i));
    std::string bytes;
    h.serialize(bytes);
    std::string_view in = bytes;
    auto back = HyperLogLog::deserialize(in);
    ASSERT_TRUE(back.has_value());
    EXPECT_TRUE(in.empty());
    EXPECT_EQ(back->estimate(), h.estimate());
  }
}

// Issue #20: a sketch with few registers set (just past the exact limit, as a partition's minute
// of a brand often is) is written as its set registers, not 16 KiB; one with many as every
// register. Both read back to the same registers, and the bytes depend on the registers only.
TEST(HyperLogLog, FewSetRegistersAreWrittenCompactly) {
  for (const uint64_t n : {600, 2000, 5000, 20000}) {
    HyperLogLog h;
    for (uint64_t i = 0; i < n; ++i) h.add(hash_of(i));
    ASSERT_TRUE(h.is_dense());
    std::string bytes;
    h.serialize(bytes);
    size_t set = 0;
    for (size_t i = 0; i < HyperLogLog::kRegisters; ++i) set += h.registers()[i] != 0 ? 1 : 0;
    if (set * 3 < HyperLogLog::kRegisters) {
      EXPECT_LE(bytes.size(), 4 + 3 + 3 * set) << n;
    } else {
      EXPECT_EQ(bytes.size(), 4 + HyperLogLog::kRegisters) << n;
    }
    std::string_view in = bytes;
    auto back = HyperLogLog::deserialize(in);
    ASSERT_TRUE(back.has_value()) << n;
    EXPECT_TRUE(in.empty());
    ASSERT_TRUE(back->is_dense());
    EXPECT_TRUE(std::equal(h.registers(), h.registers() + HyperLogLog::kRegisters,
                           back->registers()))
        << n;
    // Built another way (merged halves): the same registers, the same bytes.
    HyperLogLog a, b;
    for (uint64_t i = 0; i < n; ++i) (i % 2 == 0 ? a : b).add(hash_of(i));
    a.merge(b);
    EXPECT_EQ(bytes_of(a), bytes) << n;
  }
  EXPECT_LT(bytes_of_n(600).size(), 2000u);  // instead of 16 KiB
  // Stored state holds these bytes: a change needs a new marker and a reader for this one.
  const std::string pinned = bytes_of_n(600);
  EXPECT_EQ(XXH3_64bits(pinned.data(), pinned.size()), 295781630044934556ULL) << pinned.size();
}

TEST(HyperLogLog, StaysExactUpToTheSparseLimit) {
  HyperLogLog h;
  for (uint64_t i = 0; i < HyperLogLog::kSparseLimit; ++i) h.add(hash_of(i));
  EXPECT_FALSE(h.is_dense());
  EXPECT_EQ(h.estimate(), static_cast<double>(HyperLogLog::kSparseLimit));
  h.add(hash_of(0));  // a known hash at the limit does not densify
  EXPECT_FALSE(h.is_dense());
  h.add(hash_of(HyperLogLog::kSparseLimit));
  EXPECT_TRUE(h.is_dense());
}

TEST(HyperLogLog, ZeroHashCountsOnce) {
  HyperLogLog h;
  h.add(0);
  h.add(0);
  h.add(1);
  EXPECT_EQ(h.estimate(), 2.0);
  std::string bytes;
  h.serialize(bytes);
  std::string_view in = bytes;
  auto back = HyperLogLog::deserialize(in);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->estimate(), 2.0);
}

TEST(HyperLogLog, SparseBytesDependOnTheSetOnly) {
  HyperLogLog forward, backward, merged, left, right;
  for (uint64_t i = 0; i < 400; ++i) {
    forward.add(hash_of(i));
    backward.add(hash_of(399 - i));
    (i % 3 ? left : right).add(hash_of(i));
  }
  merged.merge(left);
  merged.merge(right);
  std::string a, b, c;
  forward.serialize(a);
  backward.serialize(b);
  merged.serialize(c);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
  // Ascending 64-bit hashes after the 4-byte count.
  ASSERT_EQ(a.size(), 4 + 400 * sizeof(uint64_t));
  for (size_t k = 1; k < 400; ++k) {
    uint64_t prev = 0, cur = 0;
    std::memcpy(&prev, a.data() + 4 + (k - 1) * 8, 8);
    std::memcpy(&cur, a.data() + 4 + k * 8, 8);
    EXPECT_LT(prev, cur);
  }
}

TEST(HyperLogLog, DensifiedEqualsDirectlyDense) {
  // The dense registers do not depend on when the sparse phase ended or in what order hashes came.
  HyperLogLog a, b, sparse_part;
  for (uint64_t i = 0; i < 3000; ++i) a.add(hash_of(i));
  for (uint64_t i = 0; i < 300; ++i) sparse_part.add(hash_of(2999 - i));
  for (uint64_t i = 300; i < 3000; ++i) b.add(hash_of(2999 - i));
  b.merge(sparse_part);
  std::string x, y;
  a.serialize(x);
  b.serialize(y);
  EXPECT_EQ(x, y);
}

// The estimate as first written: a double sum of 2^-rank in register order.
double reference_estimate(const HyperLogLog& h) {
  const uint8_t* registers = h.registers();
  EXPECT_NE(registers, nullptr);
  const double m = static_cast<double>(HyperLogLog::kRegisters);
  double sum = 0.0;
  size_t zeros = 0;
  for (size_t i = 0; i < HyperLogLog::kRegisters; ++i) {
    const int r = registers[i];
    sum += std::ldexp(1.0, -r);
    zeros += r == 0;
  }
  const double raw = 0.7213 / (1.0 + 1.079 / m) * m * m / sum;
  if (zeros != 0) {
    const double linear = m * std::log(m / static_cast<double>(zeros));
    if (linear <= 3.0 * m) return linear;
  }
  return raw;
}

TEST(HyperLogLog, DenseEstimateIsTheRegisterOrderSum) {
  for (uint64_t n : {600, 20000, 60000, 300000}) {
    HyperLogLog h;
    for (uint64_t i = 0; i < n; ++i) h.add(hash_of(i));
    ASSERT_TRUE(h.is_dense());
    EXPECT_EQ(h.estimate(), reference_estimate(h)) << n;
  }
}

TEST(HyperLogLog, DenseEstimateWithARankAboveTheExactRange) {
  HyperLogLog h;
  for (uint64_t i = 0; i < 300000; ++i) h.add(hash_of(i));
  h.add(uint64_t{7} << (64 - HyperLogLog::kPrecision));  // register 7 gets the maximum rank, 51
  EXPECT_EQ(h.estimate(), reference_estimate(h));
}

TEST(HyperLogLog, DenseEstimateOfArbitraryRegisters) {
  // Restored registers need not come from add(): every rank pattern, including out-of-range bytes.
  for (int modulus : {1, 2, 17, 40, 41, 60, 256}) {
    std::string bytes;
    const uint32_t dense_marker = UINT32_MAX;
    bytes.append(reinterpret_cast<const char*>(&dense_marker), 4);
    for (size_t i = 0; i < HyperLogLog::kRegisters; ++i) {
      bytes.push_back(static_cast<char>((i * 7) % static_cast<size_t>(modulus)));
    }
    std::string_view in = bytes;
    auto h = HyperLogLog::deserialize(in);
    ASSERT_TRUE(h.has_value());
    EXPECT_EQ(h->estimate(), reference_estimate(*h)) << modulus;
  }
}

// Issue #20's checkpoint deltas: the hashes add() reports as changes, replayed onto the state as
// it was, give the state as it is, across the switch to registers and while dense.
TEST(HyperLogLog, ReplayingTheReportedChangesRebuildsTheState) {
  std::mt19937_64 rng(7);
  HyperLogLog live;
  std::string saved_bytes;
  live.serialize(saved_bytes);
  for (const size_t step : {100u, 300u, 400u, 5000u, 50000u}) {
    std::vector<uint64_t> changed;
    size_t repeats = 0;
    for (size_t i = 0; i < step; ++i) {
      // A third of the adds repeat a hash seen before: never reported once the set has it.
      const uint64_t h = i % 3 == 2 ? hash_of(rng() % (i + 1)) : rng();
      if (live.add(h)) {
        changed.push_back(h);
      } else {
        ++repeats;
      }
    }
    EXPECT_GT(repeats, 0u);
    std::string_view in(saved_bytes);
    auto replayed = HyperLogLog::deserialize(in);
    ASSERT_TRUE(replayed.has_value());
    for (const uint64_t h : changed) replayed->add(h);
    std::string live_bytes, replayed_bytes;
    live.serialize(live_bytes);
    replayed->serialize(replayed_bytes);
    EXPECT_EQ(replayed_bytes, live_bytes) << "after " << step << " adds";
    EXPECT_EQ(replayed->estimate(), live.estimate());
    saved_bytes = live_bytes;
  }
  EXPECT_TRUE(live.is_dense());
  EXPECT_FALSE(live.add(0) && live.add(0));  // the second add of a hash never changes anything
}

TEST(HyperLogLog, RejectsTruncatedBytes) {
  for (const uint64_t n : {600, 5000, 20000}) {  // compact and every register
    const std::string bytes = bytes_of_n(n);
    std::string_view in(bytes.data(), bytes.size() / 2);
    EXPECT_FALSE(HyperLogLog::deserialize(in).has_value()) << n;
  }
}

TEST(HyperLogLog, RejectsCorruptCompactRegisters) {
  auto compact = [](std::initializer_list<uint8_t> body) {
    std::string bytes;
    byte_codec::put_u32(bytes, UINT32_MAX - 1);
    for (uint8_t b : body) bytes.push_back(static_cast<char>(b));
    return bytes;
  };
  // Count, then (gap, rank) pairs as varints and bytes.
  const std::vector<std::string> bad = {
      compact({0x81, 0x80, 0x01}),     // more registers than there are
      compact({1, 0x80, 0x80, 1, 3}),  // past the last register
      compact({1, 5, 0}),              // a set register of rank 0
      compact({1, 5, 60}),             // a rank above kMaxRank
      compact({2, 5, 3}),              // fewer pairs than counted
  };
  for (const std::string& bytes : bad) {
    std::string_view in = bytes;
    EXPECT_FALSE(HyperLogLog::deserialize(in).has_value());
  }
  const std::string good = compact({2, 5, 3, 0, 7});  // registers 5 and 6
  std::string_view in = good;
  auto h = HyperLogLog::deserialize(in);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->registers()[5], 3);
  EXPECT_EQ(h->registers()[6], 7);
}

// --- SlidingHyperLogLog ---

std::string bytes_of(const SlidingHyperLogLog& s) {
  std::string out;
  s.serialize(out);
  return out;
}
double window_estimate(const SlidingHyperLogLog& s, int64_t lo, int64_t hi) {
  HyperLogLog h;
  s.merge_window(lo, hi, h);
  return h.estimate();
}

TEST(SlidingHyperLogLog, ExactWindowBoundariesWhileSparse) {
  SlidingHyperLogLog s;
  s.add(100, hash_of(1));
  s.add(101, hash_of(2));
  s.add(101, hash_of(2));
  EXPECT_FALSE(s.is_dense());
  EXPECT_EQ(window_estimate(s, 100, 160), 2.0);
  EXPECT_EQ(window_estimate(s, 101, 161), 1.0);  // minute 100 is before the window
  EXPECT_EQ(window_estimate(s, 100, 101), 1.0);  // minute 101 is the window's end, excluded
  HyperLogLog none;
  EXPECT_FALSE(s.merge_window(102, 200, none));
  EXPECT_TRUE(none.empty());
}

TEST(SlidingHyperLogLog, AnActorCountsAtTheLatestMinuteItWasSeen) {
  SlidingHyperLogLog s;
  s.add(150, hash_of(1));
  s.add(100, hash_of(1));  // older sighting, arriving later
  EXPECT_EQ(window_estimate(s, 120, 170), 1.0);
  s.expire_before(120);
  EXPECT_EQ(window_estimate(s, 120, 170), 1.0);
  EXPECT_EQ(window_estimate(s, 0, 150), 0.0);
}

// Per minute, 400 sightings from a population that drifts by 20 actors a minute (churn: the day's
// actors are not the hour's), folded as closed minutes are; at several closed ends the 1h and 24h
// windows must have exactly the registers of a plain HyperLogLog of the hashes seen in them, and an
// estimate within 2% of the exact distinct count. (5-minute / 1-hour slices would count up to 4 /
// 59 extra minutes of departed actors: ~6% over at 1h here.)
TEST(SlidingHyperLogLog, DenseWindowsAreExactlyThePlainSketchOfTheirMinutesUnderChurn) {
  constexpr int64_t kMinutes = 1700;
  std::vector<std::vector<uint64_t>> seen(kMinutes);
  std::mt19937_64 rng(42);
  for (int64_t m = 0; m < kMinutes; ++m) {
    for (int k = 0; k < 400; ++k) seen[static_cast<size_t>(m)].push_back(m * 20 + rng() % 3000);
  }
  SlidingHyperLogLog s;
  for (int64_t closed_end = 1; closed_end <= kMinutes; ++closed_end) {
    const int64_t m = closed_end - 1;
    HyperLogLog minute;
    for (uint64_t id : seen[static_cast<size_t>(m)]) minute.add(hash_of(id));
    s.add_minute(m, minute);
    s.expire_before(closed_end - 1440);
    if (closed_end != 61 && closed_end != 1443 && closed_end != kMinutes) continue;
    for (int64_t horizon : {60, 1440}) {
      HyperLogLog want;
      std::set<uint64_t> exact;
      for (int64_t w = std::max<int64_t>(0, closed_end - horizon); w < closed_end; ++w) {
        for (uint64_t id : seen[static_cast<size_t>(w)]) {
          want.add(hash_of(id));
          exact.insert(id);
        }
      }
      HyperLogLog got;
      ASSERT_TRUE(s.merge_window(closed_end - horizon, closed_end, got));
      ASSERT_TRUE(want.is_dense());
      EXPECT_EQ(bytes_of(got), bytes_of(want)) << closed_end << " " << horizon;
      const double n = static_cast<double>(exact.size());
      EXPECT_LE(std::abs(got.estimate() - n) / n, 0.02) << closed_end << " " << horizon;
    }
  }
  EXPECT_TRUE(s.is_dense());
}

TEST(SlidingHyperLogLog, OutOfOrderMinutesGiveTheSameSketch) {
  for (size_t actors : {300, 5000}) {  // exact and dense
    std::vector<std::pair<int64_t, uint64_t>> sightings;
    std::mt19937_64 rng(7);
    for (size_t i = 0; i < actors * 3; ++i) {
      sightings.emplace_back(static_cast<int64_t>(rng() % 200), hash_of(rng() % actors));
    }
    SlidingHyperLogLog in_order, shuffled;
    std::vector<std::pair<int64_t, uint64_t>> sorted = sightings;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t m = 0; m < 200; ++m) {
      HyperLogLog minute;
      for (const auto& [t, h] : sorted) {
        if (t == m) minute.add(h);
      }
      in_order.add_minute(m, minute);
    }
    std::shuffle(sightings.begin(), sightings.end(), rng);
    for (const auto& [t, h] : sightings) shuffled.add(t, h);
    EXPECT_EQ(in_order.is_dense(), actors > HyperLogLog::kSparseLimit);
    EXPECT_EQ(bytes_of(in_order), bytes_of(shuffled)) << actors;
    in_order.expire_before(150);
    shuffled.expire_before(150);
    EXPECT_EQ(bytes_of(in_order), bytes_of(shuffled)) << actors;
    for (int64_t lo : {0, 37, 150, 199}) {
      EXPECT_EQ(window_estimate(in_order, lo, 200), window_estimate(shuffled, lo, 200)) << lo;
    }
  }
}

TEST(SlidingHyperLogLog, SerializeRoundTripIsByteIdenticalAndContinuesIdentically) {
  for (size_t actors : {0, 40, 20000}) {
    SlidingHyperLogLog s;
    for (size_t i = 0; i < actors; ++i) s.add(static_cast<int64_t>(i % 90), hash_of(i));
    s.expire_before(10);
    const std::string bytes = bytes_of(s);
    std::string_view in = bytes;
    auto back = SlidingHyperLogLog::deserialize(in);
    ASSERT_TRUE(back.has_value()) << back.error().message;
    EXPECT_TRUE(in.empty());
    EXPECT_EQ(bytes_of(*back), bytes);
    for (size_t i = 0; i < 3000; ++i) {
      s.add(static_cast<int64_t>(90 + i % 80), hash_of(actors + i));
      back->add(static_cast<int64_t>(90 + i % 80), hash_of(actors + i));
    }
    s.expire_before(100);
    back->expire_before(100);
    EXPECT_EQ(bytes_of(*back), bytes_of(s)) << actors;
  }
}

TEST(SlidingHyperLogLog, ADenseSketchWhoseMinutesAllExpiredIsExactAgain) {
  SlidingHyperLogLog s;
  for (uint64_t i = 0; i < 2000; ++i) s.add(10, hash_of(i));
  ASSERT_TRUE(s.is_dense());
  s.expire_before(10);
  EXPECT_TRUE(s.is_dense());
  s.expire_before(11);
  EXPECT_FALSE(s.is_dense());
  EXPECT_TRUE(s.empty());
  s.add(20, hash_of(1));
  EXPECT_EQ(window_estimate(s, 0, 30), 1.0);
}

// A day of 1 M distinct actors in one partition and brand: smaller than the 37 dense 16 KiB
// slices (592 KiB) it replaces.
TEST(SlidingHyperLogLog, MemoryOfADayOfAMillionActorsStaysBelowTheSlices) {
  SlidingHyperLogLog s;
  uint64_t next = 0;
  for (int64_t m = 0; m < 1440; ++m) {
    HyperLogLog minute;
    for (int k = 0; k < 700; ++k) minute.add(hash_of(next++));
    s.add_minute(m, minute);
    s.expire_before(m + 1 - 1440);
  }
  EXPECT_LT(s.memory_bytes(), 37u * 16 * 1024) << s.memory_bytes();
  std::string bytes;
  s.serialize(bytes);
  EXPECT_LT(bytes.size(), 37u * 16 * 1024) << bytes.size();
}

TEST(SlidingHyperLogLog, RejectsCorruptBytes) {
  for (size_t actors : {40, 5000}) {
    SlidingHyperLogLog s;
    for (size_t i = 0; i < actors; ++i) s.add(static_cast<int64_t>(i % 30), hash_of(i));
    const std::string bytes = bytes_of(s);
    for (size_t cut = 0; cut < bytes.size(); cut += std::max<size_t>(1, bytes.size() / 50)) {
      std::string_view in(bytes.data(), cut);
      EXPECT_FALSE(SlidingHyperLogLog::deserialize(in).has_value()) << actors << " " << cut;
    }
  }
  SlidingHyperLogLog dense;
  for (uint64_t i = 0; i < 5000; ++i) dense.add(0, hash_of(i));
  std::string bytes = bytes_of(dense);
  // The first non-empty run: its pair's rank set to 0.
  size_t at = 8 + 4 + 8;
  while (bytes[at] == 0) ++at;
  bytes[at + 1] = static_cast<char>(bytes[at + 1] & ~0x3f);
  std::string_view in = bytes;
  EXPECT_FALSE(SlidingHyperLogLog::deserialize(in).has_value());
}

}  // namespace
}  // namespace sp
