#include "operators/deduplicator.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack for long keys
#include <xxhash.h>

#include <algorithm>
#include <cstring>

namespace sp {
namespace {

// Reclaim granularity: 1/64 of the horizon keeps the ring small and the overshoot under 2%.
constexpr int64_t kBucketsPerHorizon = 64;
constexpr std::string_view kMagic = "SPDD";
constexpr uint8_t kSnapshotVersion = 1;
constexpr size_t kHeaderBytes = 4 + 1 + 1 + 8 + 8;
constexpr size_t kEntryBytes = 8 + 8 + 8;

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

void put_u64(std::string& out, uint64_t v) {
  char bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(v >> (8 * i));
  out.append(bytes, 8);
}

uint64_t get_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

}  // namespace

Deduplicator::Deduplicator(Millis horizon)
    : horizon_(std::max(horizon, Millis{0})),
      bucket_width_ms_(std::max<int64_t>(1, (horizon_.count() + kBucketsPerHorizon - 1) / kBucketsPerHorizon)) {
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
  return Key{h.low64, h.high64};
}

int64_t Deduplicator::bucket_of(int64_t time_ms) const { return floor_div(time_ms, bucket_width_ms_); }

bool Deduplicator::is_duplicate(const Event& event) {
  const int64_t t = to_epoch_ms(event.time);
  const Key key = key_of(event);
  if (!seen_any_) {
    seen_any_ = true;
    max_time_ms_ = t;
    oldest_bucket_ = bucket_of(cutoff_ms());
  } else if (t > max_time_ms_) {
    advance(t);
  }
  const int64_t cutoff = cutoff_ms();
  auto [it, inserted] = entries_.try_emplace(key, t);
  if (!inserted) {
    if (it->second >= cutoff) return true;
    // Expired but not yet reclaimed (its bucket straddles the cutoff): a new sighting.
    if (t < cutoff) {
      entries_.erase(it);
      return false;
    }
    it->second = t;
    remember(key, t);
    return false;
  }
  if (t < cutoff) {
    entries_.erase(it);
    return false;
  }
  remember(key, t);
  return false;
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
  slot.keys.push_back(key);
}

void Deduplicator::advance(int64_t time_ms) {
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
  for (const Key& key : bucket.keys) {
    // A key may have been refreshed into a newer bucket after it expired; keep it then.
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second < cutoff) entries_.erase(it);
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
  oldest_bucket_ = 0;
}

size_t Deduplicator::memory_bytes() const {
  // flat_hash_map: one slot plus one control byte per bucket of capacity.
  size_t bytes = sizeof(*this) + entries_.capacity() * (sizeof(std::pair<const Key, int64_t>) + 1);
  bytes += ring_.capacity() * sizeof(Bucket);
  for (const Bucket& slot : ring_) bytes += slot.keys.capacity() * sizeof(Key);
  return bytes;
}

void Deduplicator::snapshot(std::string& out) const {
  struct Row {
    Key key;
    int64_t time;
  };
  std::vector<Row> rows;
  rows.reserve(entries_.size());
  const int64_t cutoff = cutoff_ms();
  for (const auto& [key, time] : entries_) {
    if (time >= cutoff) rows.push_back({key, time});
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
  const auto max_time = static_cast<int64_t>(get_u64(bytes.data() + 6));
  const uint64_t count = get_u64(bytes.data() + 14);
  if (count > (bytes.size() - kHeaderBytes) / kEntryBytes ||
      bytes.size() != kHeaderBytes + count * kEntryBytes) {
    return corrupt("length does not match entry count");
  }
  if (!seen_any && count != 0) return corrupt("entries without a max event time");
  if (seen_any && (max_time < to_epoch_ms(kMinEventTime) || max_time > to_epoch_ms(kMaxEventTime))) {
    return corrupt("max event time out of range");
  }
  clear();
  if (!seen_any) return {};
  seen_any_ = true;
  max_time_ms_ = max_time;
  oldest_bucket_ = bucket_of(cutoff_ms());
  entries_.reserve(count);
  const int64_t cutoff = cutoff_ms();
  const char* p = bytes.data() + kHeaderBytes;
  for (uint64_t i = 0; i < count; ++i, p += kEntryBytes) {
    const Key key{get_u64(p + 8), get_u64(p)};
    const auto time = static_cast<int64_t>(get_u64(p + 16));
    if (time > max_time) {
      clear();
      return corrupt("entry newer than the max event time");
    }
    // A shorter configured horizon than at snapshot time: those entries are already expired.
    if (time < cutoff) continue;
    if (!entries_.try_emplace(key, time).second) {
      clear();
      return corrupt("duplicate key");
    }
    remember(key, time);
  }
  return {};
}

}  // namespace sp
