#pragma once
// Session windows keyed by brand + actor (SPEC 3, 5).
#include <absl/container/flat_hash_map.h>
#include <absl/container/inlined_vector.h>

#include <array>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "operators/byte_codec.h"
#include "operators/operator.h"
#include "operators/partition_states.h"
#include "operators/settings.h"
#include "operators/vocabulary.h"

namespace sp {

// Contract: per input partition, an actor's events less than `gap` apart form one session (an
// event bridging two sessions merges them); a session closes when the watermark reaches
// last_event + gap + grace and emits one record. Events without an actor are ignored; an event
// that could only start an already closed session is dropped and counted as late.
class SessionWindowOperator final : public Operator {
 public:
  static constexpr std::array<double, 9> kDurationBuckets = {60,   300,   900,   1800, 3600,
                                                             7200, 14400, 43200, 86400};

  SessionWindowOperator(WindowSpec spec, Vocabulary vocabulary);
  SessionWindowOperator(const SessionWindowOperator&) = delete;  // used through Operator
  SessionWindowOperator& operator=(const SessionWindowOperator&) = delete;

  std::string_view name() const override { return spec_.name; }
  void process(const ProcessContext& ctx, const Event& event) override;
  void on_watermark(EventTime watermark, Emitter& out) override;
  // Global scope: one key `window`. A partition: the key `sessions` (its open sessions and stats,
  // brands by name) and, written after it, deltas `sessions/<n>` (issue #20): the stats and only
  // the actors whose sessions changed since the last saved(), an actor without sessions meaning
  // removed. Restore applies the deltas over `sessions` in order; `sessions` is rewritten after
  // kMaxDeltas of them or once they would outweigh it, with the next generation (format 4): the
  // older deltas are not removed but skipped, until the new generation's overwrite them.
  void snapshot(PartitionId partition, StateWriter& out) const override;
  Status restore(PartitionId partition, StateReader& in) override;
  void drop(PartitionId partition) override;
  // A partition's `sessions` is rewritten only after an event of an actor or a session closed.
  bool needs_snapshot(PartitionId partition, bool touched) const override;
  void saved() override;
  void collect(MetricsWriter& out) const override;
  size_t state_bytes() const override;

  uint64_t late_events() const;
  size_t open_sessions() const;

 private:
  static constexpr uint32_t kMaxDeltas = 8;
  struct SessionKey {
    uint64_t actor_hash = 0;
    BrandIndex brand = 0;
    bool operator==(const SessionKey&) const = default;
    template <typename H>
    friend H AbslHashValue(H h, const SessionKey& k) {
      return H::combine(std::move(h), k.actor_hash, k.brand);
    }
  };
  struct Session {
    int64_t start = 0;  // first event time, epoch ms
    int64_t end = 0;    // last event time
    int64_t events = 0;
  };
  struct ActorSessions {
    std::string actor_id;
    // Sorted by start, disjoint; usually one, kept inline: no allocation per actor and no second
    // cache miss per event.
    absl::InlinedVector<Session, 1> sessions;
    int64_t timer = 0;     // earliest pending timer; <= every session's close time
    bool unsaved = false;  // changed since the last saved(): listed in PartitionState::changed
  };
  struct Timer {
    int64_t close = 0;
    SessionKey key;
    bool operator>(const Timer& o) const { return close > o.close; }
  };
  struct BrandStats {
    uint64_t sessions = 0;
    std::array<uint64_t, kDurationBuckets.size() + 1> buckets{};  // per bucket, +Inf last
    double duration_sum = 0.0;
  };
  // What the store holds for a partition: the base `sessions` key and the deltas after it.
  struct Stored {
    bool base = false;
    uint32_t deltas = 0;  // of the base's generation, numbered from 0
    size_t base_bytes = 0;
    size_t delta_bytes = 0;
    uint64_t generation = 0;  // the base's (format 4): its deltas carry it
  };
  struct PartitionState {
    absl::flat_hash_map<SessionKey, ActorSessions> actors;
    std::vector<Timer> timers;  // min-heap on close; stale entries are skipped when popped
    uint64_t late_events = 0;
    std::vector<BrandStats> brands;  // by BrandIndex
    bool unsaved = true;             // changed since the last saved()
    // The actors changed since the last saved(), once each while flagged; an actor removed since
    // is listed too (a key may repeat when it was removed and came back).
    std::vector<SessionKey> changed;
    bool rewrite = false;  // the stored base is stale (an older format, a dropped brand)
    Stored stored;
    // What the last snapshot() wrote, applied to `stored` by saved() (a failed commit leaves
    // `stored` as it was: the next snapshot() writes the same key again).
    mutable std::optional<Stored> pending;
  };
  // One actor of an encoded record; `actor` null: removed (deltas only).
  struct Entry {
    SessionKey key;
    std::string_view actor_id;
    const ActorSessions* actor = nullptr;
  };
  struct Closed {
    int64_t close;
    BrandIndex brand;
    std::string actor_id;
    Session session;
    PartitionId partition;
  };

  // The partition's stats and `entries` (sorted and deduplicated here) in the packed layout.
  void encode_packed(const PartitionState& state, std::vector<Entry>& entries, uint64_t generation,
                     std::string& out) const;
  Status decode(PartitionId partition, std::string_view bytes, StateReader& reader,
                PartitionState& state, bool& rewrite);
  // A packed record (after its version) into `state`: the stats replace state's, each actor
  // replaces its sessions (none: the actor is removed). `rewrite` is set when a brand was dropped.
  Status decode_packed(byte_codec::Reader& in, PartitionState& state, StateReader& reader,
                       bool& rewrite);
  Status decode_format_1(byte_codec::Reader& in, PartitionState& state, StateReader& reader);
  static void mark_changed(PartitionState& state, const SessionKey& key, ActorSessions& actor);
  PartitionState& state_for(PartitionId partition);
  // Owns `state` as the partition's (timers rebuilt); `rewrite`: its stored base is stale.
  void adopt(PartitionId partition, PartitionState state, bool rewrite);
  int64_t close_time(const Session& s) const { return s.end + gap_ms_ + grace_ms_; }
  void schedule(PartitionState& state, const SessionKey& key, ActorSessions& actor, int64_t close);
  void emit(const Closed& closed, Emitter& out);

  WindowSpec spec_;
  Vocabulary vocabulary_;
  int64_t gap_ms_;
  int64_t grace_ms_;

  PartitionStates<PartitionState> partitions_;  // ordered: deterministic merges

  // Global (kGlobalPartition) state.
  int64_t watermark_;
  uint64_t records_total_ = 0;
  // No timer of any partition closes before this (a lower bound): on_watermark's fast path.
  int64_t earliest_due_ = std::numeric_limits<int64_t>::max();

  std::vector<Closed> closed_;          // reused by on_watermark
  mutable std::string scratch_;         // snapshot: a record
  mutable std::string key_;             // snapshot: `sessions/<n>`
  mutable std::vector<Entry> entries_;  // snapshot: the actors to write
};

}  // namespace sp
