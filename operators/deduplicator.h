#pragma once
// Per-partition duplicate filter (SPEC 1 "Accounting"): an event is a duplicate when its
// (brand_name, id) was already seen within `horizon` of event time. One instance per input
// partition; single-threaded, like every operator's state.
#include <absl/container/flat_hash_map.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "operators/event.h"
#include "operators/result.h"
#include "operators/time.h"

namespace sp {

class Deduplicator {
 public:
  explicit Deduplicator(Millis horizon);

  // Returns true for a duplicate (and changes nothing); otherwise remembers the event and returns
  // false. An event older than (max event time seen - horizon) is never a duplicate of an expired
  // entry and is not remembered: it could only be matched by an equally late copy.
  bool is_duplicate(const Event& event);

  // Entries not yet reclaimed. Expiry is exact for is_duplicate(); memory is reclaimed in
  // buckets of horizon/64, so size() may include up to one bucket of already-expired ids.
  size_t size() const { return entries_.size(); }
  size_t memory_bytes() const;
  Millis horizon() const { return horizon_; }

  // Deterministic (entries sorted by key, expired entries left out); restore() replaces the
  // state. The horizon is not restored: the configured one applies to restored entries.
  void snapshot(std::string& out) const;
  Status restore(std::string_view bytes);

 private:
  struct Key {
    uint64_t low = 0;
    uint64_t high = 0;
    bool operator==(const Key&) const = default;
  };
  // Keys are already XXH3-128 outputs: re-hashing them would only cost time.
  struct KeyHash {
    size_t operator()(const Key& k) const { return static_cast<size_t>(k.low ^ (k.high >> 7)); }
  };
  struct Bucket {
    int64_t id = INT64_MIN;  // event time / bucket width; INT64_MIN = unused slot
    std::vector<Key> keys;   // cleared, never shrunk: steady state allocates nothing
  };

  static Key key_of(const Event& event);
  int64_t bucket_of(int64_t time_ms) const;
  int64_t cutoff_ms() const { return max_time_ms_ - horizon_.count(); }
  void remember(const Key& key, int64_t time_ms);
  void advance(int64_t time_ms);
  void expire_bucket(Bucket& bucket);
  void clear();

  Millis horizon_;
  int64_t bucket_width_ms_;
  bool seen_any_ = false;
  int64_t max_time_ms_ = 0;
  int64_t oldest_bucket_ = 0;  // every live entry's bucket is >= this
  absl::flat_hash_map<Key, int64_t, KeyHash> entries_;  // key -> event time (ms) first seen
  std::vector<Bucket> ring_;  // bucket b lives in slot b mod ring_.size()
};

}  // namespace sp
