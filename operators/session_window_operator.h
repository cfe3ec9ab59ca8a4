#pragma once
// Session windows keyed by brand + actor (SPEC 3, 5).
#include <absl/container/flat_hash_map.h>
#include <absl/container/inlined_vector.h>

#include <array>
#include <map>
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
  // One key per scope: `sessions` (a partition's open sessions and stats, brands by name) or
  // `window` (global).
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
  void encode(PartitionId partition, std::string& out) const;
  Status decode(PartitionId partition, std::string_view bytes, StateReader& reader);
  Status decode_packed(PartitionId partition, byte_codec::Reader& in, StateReader& reader);
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
    int64_t timer = 0;  // earliest pending timer; <= every session's close time
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
  struct PartitionState {
    absl::flat_hash_map<SessionKey, ActorSessions> actors;
    std::vector<Timer> timers;  // min-heap on close; stale entries are skipped when popped
    uint64_t late_events = 0;
    std::vector<BrandStats> brands;  // by BrandIndex
    bool unsaved = true;             // changed since the last saved()
  };
  struct Closed {
    int64_t close;
    BrandIndex brand;
    std::string actor_id;
    Session session;
    PartitionId partition;
  };

  PartitionState& state_for(PartitionId partition);
  // Owns `state` as the partition's (timers rebuilt); `unsaved`: to be written again.
  void adopt(PartitionId partition, PartitionState state, bool unsaved);
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

  std::vector<Closed> closed_;  // reused by on_watermark
};

}  // namespace sp
