#pragma once
// Tumbling and hopping event-time windows (SPEC 3, 5).
#include <array>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "operators/derived.h"
#include "operators/hyperloglog.h"
#include "operators/measures.h"
#include "operators/operator.h"
#include "operators/partition_states.h"
#include "operators/settings.h"
#include "operators/vocabulary.h"

namespace sp {

// The SPEC 5 window aggregate of one brand+channel over some span of event time: the measures
// plus the distinct actors.
struct WindowAggregate : Measures {
  HyperLogLog actors;

  void add(const Event& event, const Derived& derived) {
    Measures::add(event, derived);
    if (event.has_actor) actors.add(event.actor_hash);
  }
  void merge(const WindowAggregate& other) {
    Measures::merge(other);
    actors.merge(other.actors);
  }
};

// Contract: one tumbling or hopping WindowSpec. Each event updates exactly one pane (gcd(size,
// advance) wide) of its partition's state; when the watermark passes end + grace, the panes of all
// owned partitions are merged (in partition order) into one record per window and brand+channel.
// Events whose windows are all closed are dropped and counted as late.
class WindowOperator final : public Operator {
 public:
  // engagement_rate_source: this operator exports socialpulse_engagement_rate (SPEC 2: "last
  // closed window"); the factory sets it on the first tumbling window.
  WindowOperator(WindowSpec spec, Vocabulary vocabulary, bool engagement_rate_source);
  WindowOperator(const WindowOperator&) = delete;  // used through Operator: never copied
  WindowOperator& operator=(const WindowOperator&) = delete;

  std::string_view name() const override { return spec_.name; }
  void process(const ProcessContext& ctx, const Event& event) override;
  void on_watermark(EventTime watermark, Emitter& out) override;
  void on_checkpoint(Emitter& out) override;
  // Global scope: one key `window` (watermark, record count, last closed rates). A partition: the
  // key `panes` (late events and the watermark its windows were emitted through) and one key
  // `pane/<start>` per pane start (every brand+channel's pane of that start, by name). Only what
  // changed since the last saved() is written (issue #20): the panes that had events, and the
  // keys of panes that expired are removed, so a busy partition's checkpoint costs its current
  // panes, not the hour of panes an hourly window keeps. A start already stored usually gets a
  // delta `pane/<start>/<n>` instead of a rewrite: the measures of its changed panes and only the
  // actor hashes that changed their sets since the last saved(); restore applies the deltas over
  // the base in order. The base is rewritten after kMaxDeltas of them, once they outweigh it, or
  // when a pane's changes outgrow kFreshLimit hashes, with the next generation: the older deltas
  // are skipped until overwritten, and removed with the start.
  void snapshot(PartitionId partition, StateWriter& out) const override;
  Status restore(PartitionId partition, StateReader& in) override;
  void drop(PartitionId partition) override;
  // A partition is written only after it changed: an event (late ones included), a pane that
  // expired, or its closed-through mark settling.
  bool needs_snapshot(PartitionId partition, bool touched) const override;
  void saved() override;
  void collect(MetricsWriter& out) const override;
  size_t state_bytes() const override;

  uint64_t late_events() const;
  uint64_t records_emitted() const { return records_total_; }
  size_t pane_count() const;

 private:
  struct Pane {
    WindowAggregate aggregate;
    bool dirty = false;   // changed since the last checkpoint (emit mode `update`)
    bool unsaved = true;  // changed since the last saved(): its start's key is rewritten
    // The actor hashes that changed aggregate.actors since the last saved(), in order, up to
    // kFreshLimit. `overflow`: nothing is logged, the start's base is rewritten at the next
    // checkpoint (the changes outgrew kFreshLimit, or the start was not stored when the pane was
    // created: no delta could be written for it anyway).
    bool overflow = false;
    std::vector<uint64_t> fresh;
  };
  // What the store holds for one pane start: the base key and the deltas written after it.
  struct StoredStart {
    uint32_t deltas = 0;  // of the base's generation, numbered from 0
    size_t base_bytes = 0;
    size_t delta_bytes = 0;
    uint64_t generation = 0;  // the base's: its deltas carry it
    uint32_t written = 0;     // delta keys stored, of any generation (removed with the start)
  };
  // The live panes of one brand+channel in one partition, by ascending pane start. Panes are
  // created in (nearly) event-time order and expire from the front, so a short sorted vector
  // searched from the newest end replaces a hash map of ~230-byte values that were moved on every
  // rehash and tombstone cleanup.
  struct PaneSeries {
    std::vector<int64_t> starts;  // epoch ms, ascending, unique
    std::vector<Pane> panes;      // parallel to starts
  };
  struct PartitionState {
    std::vector<PaneSeries> series;  // by brand * channel_count + channel
    uint64_t late_events = 0;
    // The watermark through which this partition's windows were emitted, when it is not
    // watermark_: a partition restored from another owner (issue #15) may be ahead (its windows
    // up to here were emitted there: not again) or behind (its windows after it are still due,
    // even those this instance closed for its other partitions).
    std::optional<int64_t> closed_through;
    bool unsaved = true;  // changed since the last saved() (a new partition: never stored)
    // Pane starts whose stored key is stale although no live pane of that start is unsaved (its
    // panes expired, or a restore dropped a brand or channel from it): rewritten or removed.
    std::vector<int64_t> stale_starts;
    std::map<int64_t, StoredStart> stored;  // by start: what the store holds
    // What the last snapshot() wrote, applied to `stored` by saved() (a commit that failed leaves
    // `stored` as it was, and the next snapshot() writes the same keys again).
    mutable std::vector<std::pair<int64_t, std::optional<StoredStart>>> pending;
    // The `panes` header as stored (empty: unknown, written at the next snapshot), and the one
    // the last snapshot() wrote, which saved() makes the stored one. The header changes when a
    // window closes or an event comes late, not with every watermark (encode_header()), so most
    // checkpoints leave it as it is.
    std::string stored_header;
    mutable std::optional<std::string> pending_header;
  };
  struct RateSample {  // the last closed window of a brand+channel
    int64_t window_start = 0;
    int64_t engagements = 0;
    int64_t impressions = 0;
  };
  using WindowKey = std::pair<int64_t, uint32_t>;  // (window start, brand_channel)
  static constexpr size_t kFreshLimit = 256;       // 2 KiB of hashes per pane between checkpoints
  static constexpr uint32_t kMaxDeltas = 8;

  size_t series_index(uint32_t brand_channel) const {
    return size_t{brand_of(brand_channel)} * channel_count_ + channel_of(brand_channel);
  }
  uint32_t brand_channel_of(size_t series_index) const {
    return pack(static_cast<BrandIndex>(series_index / channel_count_),
                static_cast<ChannelIndex>(series_index % channel_count_));
  }
  static uint32_t pack(BrandIndex brand, ChannelIndex channel) {
    return (uint32_t{brand} << 16) | uint32_t{channel};
  }
  static BrandIndex brand_of(uint32_t bc) { return static_cast<BrandIndex>(bc >> 16); }
  static ChannelIndex channel_of(uint32_t bc) { return static_cast<ChannelIndex>(bc & 0xffff); }
  // The pane starting at pane_start, created (empty) if absent; `created` tells which.
  Pane& pane_at(PartitionState& state, uint32_t brand_channel, int64_t pane_start, bool& created);
  int64_t first_window_start(int64_t t) const;  // earliest window containing t
  int64_t last_window_start(int64_t t) const;   // latest window containing t
  int64_t next_close_after(int64_t pane_start, int64_t watermark) const;
  // The close time (start + size + grace) of the last window closed at watermark `wm`: for every
  // window, closed at wm exactly when closed at this (only window starts on the grid exist).
  int64_t close_boundary(int64_t wm) const;
  WindowAggregate merge_window(int64_t window_start, uint32_t brand_channel) const;
  void emit(int64_t window_start, uint32_t brand_channel, const WindowAggregate& agg, bool final,
            Emitter& out);
  void sweep();
  void encode_global(std::string& out) const;
  void encode_header(const PartitionState* state, std::string& out) const;
  // Every brand+channel's pane starting at `start`, as a base of `generation`; false when there
  // is none.
  bool encode_slice(const PartitionState& state, int64_t start, uint64_t generation,
                    std::string& out) const;
  // The pane of `series` that starts at `start`, or null.
  static const Pane* pane_of(const PaneSeries& series, int64_t start);
  // What base and delta entries begin with: names, dirty flag, measures.
  void encode_entry_head(size_t series_index, const Pane& pane, std::string& out) const;
  // The unsaved panes of `start` as a delta; false when one of them overflowed (or none is
  // unsaved): the base is rewritten instead.
  bool encode_delta(const PartitionState& state, int64_t start, uint64_t generation,
                    std::string& out) const;
  static void note_fresh(Pane& pane, uint64_t hash);
  Status decode(PartitionId partition, std::string_view bytes, StateReader& reader);
  Status decode_packed(PartitionId partition, byte_codec::Reader& in, StateReader& reader);
  // Format 4: the header's fields, then every `pane/` key.
  Status decode_split(PartitionId partition, byte_codec::Reader& in, StateReader& reader);
  // A `pane/` key's header (its version `version`, followed by its generation, or `older`,
  // without one: 0) and each entry's names, resolved; `entry` reads the rest of the entry
  // (nullopt: a dropped brand or channel, read past it).
  using EntryReader = std::function<Status(byte_codec::Reader&, std::optional<uint32_t>)>;
  Status read_entries(PartitionState& state, int64_t start, std::string_view bytes, uint8_t version,
                      uint8_t older, uint64_t& generation, std::string_view what,
                      StateReader& reader, const EntryReader& entry);
  Status decode_slice(PartitionState& state, int64_t start, std::string_view bytes,
                      uint64_t& generation, StateReader& reader);
  Status decode_delta(PartitionState& state, int64_t start, std::string_view bytes,
                      StateReader& reader);
  // One pane's fields (dirty flag, measures, actors) at `in`, placed at `start` in the series of
  // brand_channel, or read past when that is nullopt (a dropped brand or channel).
  Status read_pane(byte_codec::Reader& in, PartitionState& state,
                   std::optional<uint32_t> brand_channel, int64_t start, Pane** placed = nullptr);
  static void note_stale(PartitionState& state, int64_t start);
  // The brand+channel of stored names; nullopt (reported as dropped) when either is no longer
  // configured.
  std::optional<uint32_t> resolve(std::string_view brand, std::string_view channel,
                                  StateReader& reader) const;

  WindowSpec spec_;
  Vocabulary vocabulary_;
  bool engagement_rate_source_;
  int64_t size_ms_;
  int64_t advance_ms_;
  int64_t pane_ms_;
  int64_t grace_ms_;

  size_t channel_count_;

  PartitionStates<PartitionState> partitions_;  // ordered: deterministic merges

  // Global (kGlobalPartition) state.
  int64_t watermark_;  // last watermark acted on: windows closing at or before it are emitted
  uint64_t records_total_ = 0;
  std::map<uint32_t, RateSample> rates_;

  int64_t earliest_due_;           // no window with data closes before this: on_watermark fast path
  mutable std::string scratch_;    // snapshot and record buffer
  mutable std::string key_;        // snapshot: `pane/<start>`
  mutable std::string delta_key_;  // snapshot: `pane/<start>/<n>`
  mutable std::vector<uint64_t> hashes_;  // snapshot: a pane's fresh hashes, sorted
  mutable std::vector<int64_t> starts_;   // snapshot: the starts to write
};

}  // namespace sp
