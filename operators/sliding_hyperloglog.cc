#include "operators/sliding_hyperloglog.h"

#include <algorithm>
#include <array>

#include "operators/byte_codec.h"

namespace sp {

void SlidingHyperLogLog::add(int64_t minute, uint64_t hash) {
  if (minute < floor_) return;
  if (dense_) {
    insert(HyperLogLog::register_of(hash), minute, HyperLogLog::rank_of(hash));
    return;
  }
  auto [it, fresh] = latest_.try_emplace(hash, minute);
  if (!fresh) it->second = std::max(it->second, minute);
  if (latest_.size() > kSparseLimit) densify();
}

void SlidingHyperLogLog::add_minute(int64_t minute, const HyperLogLog& seen) {
  if (minute < floor_) return;
  if (const uint8_t* ranks = seen.registers()) {
    if (!dense_) densify();
    for (size_t i = 0; i < kRegisters; ++i) {
      if (ranks[i] != 0) insert(i, minute, ranks[i]);
    }
  } else {
    std::vector<uint64_t> hashes;
    seen.append_hashes(hashes);
    for (uint64_t h : hashes) add(minute, h);
  }
  if (dense_ && garbage_ * 4 > arena_.size()) compact(base_);
}

void SlidingHyperLogLog::expire_before(int64_t minute) {
  if (minute <= floor_) return;
  floor_ = minute;
  if (!dense_) {
    absl::erase_if(latest_, [minute](const auto& kv) { return kv.second < minute; });
    return;
  }
  if (newest_ < floor_) {
    reset();  // every pair expired: exact again
    return;
  }
  if (compacted_floor_ == kNoMinute || floor_ - compacted_floor_ >= kCompactEveryMinutes ||
      garbage_ * 4 > arena_.size()) {
    compact(base_);
  }
}

void SlidingHyperLogLog::reset() {
  latest_ = {};
  dense_ = false;
  base_ = 0;
  newest_ = kNoMinute;
  compacted_floor_ = kNoMinute;
  arena_ = {};
  run_offset_ = {};
  run_size_ = {};
  run_capacity_ = {};
  garbage_ = 0;
}

void SlidingHyperLogLog::densify() {
  dense_ = true;
  run_offset_.assign(kRegisters, 0);
  run_size_.assign(kRegisters, 0);
  run_capacity_.assign(kRegisters, 0);
  arena_.clear();
  garbage_ = 0;
  newest_ = kNoMinute;
  compacted_floor_ = floor_;
  base_ = latest_.empty() ? 0 : latest_.begin()->second - kOffsetSpan / 2;
  // Take the map first: insert() must see the dense state only.
  const auto latest = std::move(latest_);
  latest_ = {};
  for (const auto& [hash, minute] : latest) {
    insert(HyperLogLog::register_of(hash), minute, HyperLogLog::rank_of(hash));
  }
}

void SlidingHyperLogLog::insert(size_t reg, int64_t minute, uint8_t rank) {
  if (minute - base_ < 0 || minute - base_ >= kOffsetSpan) {
    compact(minute - kOffsetSpan / 2);  // 2^25 minutes (63 years) either side of this one
  }
  const auto pair = static_cast<uint32_t>(((minute - base_) << kRankBits) | rank);
  newest_ = std::max(newest_, minute);
  uint32_t* run = arena_.data() + run_offset_[reg];
  const size_t n = run_size_[reg];
  size_t skip = 0;  // expired pairs at the front, dropped on the way
  while (skip < n && minute_of(run[skip]) < floor_) ++skip;
  size_t p = n;  // first pair at or after `minute` (usually none: minutes close in order)
  while (p > skip && minute_of(run[p - 1]) >= minute) --p;
  if (p < n && rank_in(run[p]) >= rank) return;  // dominated: a pair as new and as high exists
  const size_t end = p < n && minute_of(run[p]) == minute ? p + 1 : p;  // same minute, lower rank
  size_t q = p;  // older pairs this one dominates
  while (q > skip && rank_in(run[q - 1]) <= rank) --q;

  const size_t kept_before = q - skip;
  const size_t size = kept_before + 1 + (n - end);
  if (skip == 0 && end == n && size <= run_capacity_[reg]) {
    run[q] = pair;  // the common case: a newer pair replaces the tail in place
    run_size_[reg] = static_cast<uint8_t>(size);
    return;
  }
  // Ranks strictly descend along a run and lie in 1..kMaxRank, so a run has at most kMaxRank pairs.
  std::array<uint32_t, 64> merged;
  std::copy(run + skip, run + q, merged.begin());
  merged[kept_before] = pair;
  std::copy(run + end, run + n, merged.begin() + static_cast<std::ptrdiff_t>(kept_before + 1));
  if (size > run_capacity_[reg]) {
    // One pair of room: a run grows by one at a time, and shrinks as often (dominance, expiry).
    garbage_ += run_capacity_[reg];
    const size_t capacity = size + 1;
    if (arena_.size() + capacity > arena_.capacity()) {
      arena_.reserve(std::max(arena_.size() + capacity, arena_.capacity() + arena_.capacity() / 4));
    }
    run_offset_[reg] = static_cast<uint32_t>(arena_.size());
    run_capacity_[reg] = static_cast<uint8_t>(capacity);
    arena_.resize(arena_.size() + capacity);
  }
  std::copy(merged.begin(), merged.begin() + static_cast<std::ptrdiff_t>(size),
            arena_.begin() + run_offset_[reg]);
  run_size_[reg] = static_cast<uint8_t>(size);
}

void SlidingHyperLogLog::compact(int64_t new_base) {
  std::vector<uint32_t> arena;
  arena.reserve((arena_.size() - garbage_) * 9 / 8);
  int64_t newest = kNoMinute;
  for (size_t reg = 0; reg < kRegisters; ++reg) {
    const uint32_t* run = arena_.data() + run_offset_[reg];
    const size_t offset = arena.size();
    for (size_t k = 0; k < run_size_[reg]; ++k) {
      const int64_t minute = minute_of(run[k]);
      if (minute < floor_ || minute - new_base < 0 || minute - new_base >= kOffsetSpan) continue;
      arena.push_back(static_cast<uint32_t>(((minute - new_base) << kRankBits) | rank_in(run[k])));
      newest = std::max(newest, minute);
    }
    run_offset_[reg] = static_cast<uint32_t>(offset);
    run_size_[reg] = static_cast<uint8_t>(arena.size() - offset);
    if (run_size_[reg] != 0) arena.push_back(0);  // one pair of room, as in insert()
    run_capacity_[reg] = static_cast<uint8_t>(arena.size() - offset);
  }
  arena_ = std::move(arena);
  base_ = new_base;
  newest_ = newest;
  garbage_ = 0;
  compacted_floor_ = floor_;
}

bool SlidingHyperLogLog::merge_window(int64_t lo, int64_t hi, HyperLogLog& into) const {
  lo = std::max(lo, floor_);
  bool any = false;
  if (!dense_) {
    for (const auto& [hash, minute] : latest_) {
      if (minute < lo || minute >= hi) continue;
      into.add(hash);
      any = true;
    }
    return any;
  }
  std::vector<uint8_t> ranks(kRegisters, 0);
  for (size_t reg = 0; reg < kRegisters; ++reg) {
    const uint32_t* run = arena_.data() + run_offset_[reg];
    const size_t n = run_size_[reg];
    // The first pair at or after lo holds the window's maximum (ranks descend along the run).
    for (size_t k = 0; k < n; ++k) {
      const int64_t minute = minute_of(run[k]);
      if (minute < lo) continue;
      if (minute < hi) {
        ranks[reg] = rank_in(run[k]);
        any = true;
      }
      break;
    }
  }
  if (any) into.merge_registers(ranks.data());
  return any;
}

size_t SlidingHyperLogLog::memory_bytes() const {
  if (!dense_) return latest_.capacity() * (sizeof(uint64_t) + sizeof(int64_t) + 1);
  return arena_.capacity() * sizeof(uint32_t) +
         kRegisters * (sizeof(uint32_t) + 2 * sizeof(uint8_t));
}

// Layout: floor (i64); exact: u32 count, then (hash u64, minute i64) by ascending hash; dense:
// u32 UINT32_MAX, the oldest retained minute (i64), then per register a u8 count and its pairs as
// u32 (minute - oldest) << 6 | rank, oldest first.
void SlidingHyperLogLog::serialize(std::string& out) const {
  using namespace byte_codec;
  put_i64(out, floor_);
  if (!dense_) {
    std::vector<std::pair<uint64_t, int64_t>> sorted(latest_.begin(), latest_.end());
    std::sort(sorted.begin(), sorted.end());
    put_u32(out, static_cast<uint32_t>(sorted.size()));
    for (const auto& [hash, minute] : sorted) {
      put_u64(out, hash);
      put_i64(out, minute);
    }
    return;
  }
  put_u32(out, UINT32_MAX);
  int64_t oldest = newest_;
  for (size_t reg = 0; reg < kRegisters; ++reg) {
    const uint32_t* run = arena_.data() + run_offset_[reg];
    for (size_t k = 0; k < run_size_[reg]; ++k) {
      const int64_t minute = minute_of(run[k]);
      if (minute >= floor_) {
        oldest = std::min(oldest, minute);
        break;
      }
    }
  }
  put_i64(out, oldest);
  for (size_t reg = 0; reg < kRegisters; ++reg) {
    const uint32_t* run = arena_.data() + run_offset_[reg];
    const size_t n = run_size_[reg];
    size_t skip = 0;
    while (skip < n && minute_of(run[skip]) < floor_) ++skip;
    put_u8(out, static_cast<uint8_t>(n - skip));
    for (size_t k = skip; k < n; ++k) {
      put_u32(out,
              static_cast<uint32_t>(((minute_of(run[k]) - oldest) << kRankBits) | rank_in(run[k])));
    }
  }
}

Result<SlidingHyperLogLog> SlidingHyperLogLog::deserialize(std::string_view& in) {
  auto corrupt = [](const char* what) {
    return make_error(ErrorKind::fatal, std::string("sliding hyperloglog: ") + what);
  };
  byte_codec::Reader r(in);
  SlidingHyperLogLog s;
  s.floor_ = r.i64();
  const uint32_t n = r.u32();
  if (!r.ok()) return corrupt("truncated header");
  if (n != UINT32_MAX) {
    if (n > kSparseLimit || r.remaining() < size_t{n} * 16) return corrupt("bad exact length");
    for (uint32_t i = 0; i < n; ++i) {
      const uint64_t hash = r.u64();
      const int64_t minute = r.i64();
      if (minute < s.floor_ || !s.latest_.emplace(hash, minute).second) {
        return corrupt("bad exact entry");
      }
    }
    in = r.rest();
    return s;
  }
  const int64_t oldest = r.i64();
  if (!r.ok() || r.remaining() < kRegisters) return corrupt("truncated dense");
  if (oldest < s.floor_ || oldest > INT64_MAX / 2 || oldest < INT64_MIN / 2) {
    return corrupt("bad dense origin");
  }
  s.dense_ = true;
  s.base_ = oldest;
  s.compacted_floor_ = s.floor_;
  s.run_offset_.assign(kRegisters, 0);
  s.run_size_.assign(kRegisters, 0);
  s.run_capacity_.assign(kRegisters, 0);
  for (size_t reg = 0; reg < kRegisters; ++reg) {
    const uint8_t count = r.u8();
    if (count > HyperLogLog::kMaxRank || r.remaining() < size_t{count} * 4) {
      return corrupt("bad dense run");
    }
    s.run_offset_[reg] = static_cast<uint32_t>(s.arena_.size());
    s.run_size_[reg] = count;
    s.run_capacity_[reg] = count;
    for (uint8_t k = 0; k < count; ++k) {
      const uint32_t pair = r.u32();
      const uint8_t rank = rank_in(pair);
      if (rank == 0 || rank > HyperLogLog::kMaxRank) return corrupt("bad rank");
      if (k > 0) {
        const uint32_t prev = s.arena_.back();
        if ((pair >> kRankBits) <= (prev >> kRankBits) || rank >= rank_in(prev)) {
          return corrupt("run out of order");
        }
      }
      s.arena_.push_back(pair);
      s.newest_ = std::max(s.newest_, s.minute_of(pair));
    }
  }
  if (!r.ok()) return corrupt("truncated dense");
  if (s.newest_ == kNoMinute) return corrupt("empty dense");
  in = r.rest();
  return s;
}

}  // namespace sp
