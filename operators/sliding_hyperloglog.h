#pragma once
// Distinct counter over any window [lo, hi) of whole minutes within its retention: a "sliding
// HyperLogLog" (after Chabchoub & Hebrail, 2010). Exact while at most kSparseLimit distinct hashes
// are retained (each with the latest minute it was seen), then per HyperLogLog register the list
// of possible future maxima: (minute, rank) pairs, minutes ascending and ranks strictly
// descending. A pair is dropped when another has a minute >= and a rank >= (it can never again be
// a window's maximum that the other does not equal), so the max rank of a register over [lo, hi)
// is the rank of its first pair with minute >= lo, if that minute is < hi. The registers of a
// window are therefore exactly those of a plain HyperLogLog of the hashes seen in it, provided no
// pair is newer than hi: the owner adds only minutes that are closed, hi is the closed end.
//
// Size: a register holds the strict records of its ranks read from the newest minute back, ~3.6
// pairs for the 61 hashes a register sees of 1 M actors a day (7 for 100 M), 4 bytes each, plus
// 6 bytes of run header per register. Measured at 1 M actors a day: 435 KiB in memory (one pair
// of room per run, up to a quarter of the arena garbage) and 248 KiB serialized, against 592 KiB
// for the 37 dense 16 KiB HyperLogLogs of the 5-minute and 1-hour slices it replaces
// (SlidingHyperLogLog.MemoryOfADayOfAMillionActorsStaysBelowTheSlices). Pairs live in one arena,
// a run per register; a run that outgrows its capacity moves to the arena's end, and the arena is
// compacted when a quarter of it is garbage or an hour of minutes has expired since the last
// compaction (expired pairs are otherwise dropped lazily). Layout never shows in serialize(): the
// bytes depend on the retained pairs only, so a restored sketch serializes like the original.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "base/result.h"
#include "operators/hyperloglog.h"

namespace sp {

class SlidingHyperLogLog {
 public:
  static constexpr size_t kSparseLimit = HyperLogLog::kSparseLimit;
  static constexpr size_t kRegisters = HyperLogLog::kRegisters;

  // `hash` was seen at `minute`; any order. Ignored below the expiry floor.
  void add(int64_t minute, uint64_t hash);
  // Every hash of `seen` was seen at `minute` (a closed minute's sketch).
  void add_minute(int64_t minute, const HyperLogLog& seen);
  // Forgets every minute < `minute` (monotonic: an older floor is ignored). A dense sketch whose
  // pairs have all expired becomes an empty, exact one again.
  void expire_before(int64_t minute);
  // Adds the hashes seen in [lo, hi) to `into` (sparse: the hashes; dense: the register maxima).
  // Returns whether any was seen there.
  bool merge_window(int64_t lo, int64_t hi, HyperLogLog& into) const;

  bool empty() const { return latest_.empty() && !dense_; }
  bool is_dense() const { return dense_; }
  size_t memory_bytes() const;

  // Appends a self-delimiting, deterministic encoding of the retained observations.
  void serialize(std::string& out) const;
  static Result<SlidingHyperLogLog> deserialize(std::string_view& in);

 private:
  // A pair: (minute - base_) << kRankBits | rank.
  static constexpr int kRankBits = 6;
  static constexpr uint32_t kRankMask = (uint32_t{1} << kRankBits) - 1;
  static constexpr int64_t kOffsetSpan = int64_t{1} << (32 - kRankBits);
  static constexpr int64_t kNoMinute = INT64_MIN;
  static constexpr int64_t kCompactEveryMinutes = 60;

  int64_t minute_of(uint32_t pair) const { return base_ + static_cast<int64_t>(pair >> kRankBits); }
  static uint8_t rank_in(uint32_t pair) { return static_cast<uint8_t>(pair & kRankMask); }

  void densify();
  void insert(size_t reg, int64_t minute, uint8_t rank);
  // Rewrites the arena: runs packed in register order, expired pairs dropped; `new_base` re-bases
  // the pairs (those it cannot express, 2^26 minutes away, are dropped).
  void compact(int64_t new_base);
  void reset();

  int64_t floor_ = kNoMinute;  // minutes below are forgotten
  // Exact mode: hash -> latest minute seen.
  absl::flat_hash_map<uint64_t, int64_t> latest_;
  // Dense mode.
  bool dense_ = false;
  int64_t base_ = 0;
  int64_t newest_ = kNoMinute;  // newest minute of any retained pair
  int64_t compacted_floor_ = kNoMinute;
  std::vector<uint32_t> arena_;
  std::vector<uint32_t> run_offset_;  // per register
  std::vector<uint8_t> run_size_;
  std::vector<uint8_t> run_capacity_;
  size_t garbage_ = 0;  // arena slots of abandoned runs
};

}  // namespace sp
