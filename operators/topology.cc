#include "operators/topology.h"

#include <algorithm>

#include "operators/byte_codec.h"
#include "operators/kpi_metrics.h"
#include "operators/kpi_operators.h"
#include "operators/state_version.h"
#include "operators/window_operators.h"

namespace sp {
namespace {

// Owners of state next to the operators (kReservedStateOwners: windows cannot be named so).
constexpr std::string_view kInputOwner = "input";  // offset and message counts
constexpr std::string_view kDedupOwner = "dedup";
constexpr std::string_view kTrackerOwner = "tracker";
constexpr std::string_view kTopologyOwner = "topology";  // global: the operator list
// Format 2 also holds the partition's clock (was `tracker/<pid>/clock`) and its dedup header
// (was `dedup/<pid>/header`): the three were written together, whenever the partition had input,
// as three keys (and changelog records) of a busy partition's ~12 a checkpoint (issue #20).
// Format 1 is read (with those two keys) and rewritten at the partition's next checkpoint.
constexpr uint64_t kPositionVersion = 2;

// What a partition's position key holds besides the Partition's own fields (format 2), decoded.
struct PositionExtras {
  int64_t clock_ms = 0;
  std::string dedup_header;
};

void encode_position(const Topology::Partition& p, int64_t clock_ms, std::string_view dedup_header,
                     std::string& out) {
  using namespace byte_codec;
  out.clear();
  put_u64(out, kPositionVersion);
  put_u64(out, p.next_offset ? 1 : 0);
  put_i64(out, p.next_offset ? p.next_offset->value : 0);
  put_u64(out, p.counts.consumed);
  put_u64(out, p.counts.accepted);
  put_u64(out, p.counts.duplicate);
  put_u64(out, p.counts.dlq);
  put_u64(out, kRejectReasonCount);
  for (size_t r = 0; r < kRejectReasonCount; ++r) {
    put_str(out, to_string(static_cast<RejectReason>(r)));
    put_u64(out, p.counts.rejected[r]);
  }
  put_i64(out, clock_ms);
  put_str(out, dedup_header);
}

// Into `p`; `extras` is set for format 2 (format 1 keeps them under their own keys).
Status decode_position(std::string_view bytes, Topology::Partition& p,
                       std::optional<PositionExtras>& extras) {
  byte_codec::Reader in(bytes);
  const uint64_t version = in.u64();
  if (version < 1 || version > kPositionVersion) {
    return unreadable_format("input position", version, 1, kPositionVersion);
  }
  const bool has_offset = in.u64() != 0;
  const int64_t offset = in.i64();
  p.next_offset = has_offset ? std::optional<Offset>(Offset{offset}) : std::nullopt;
  p.counts.consumed = in.u64();
  p.counts.accepted = in.u64();
  p.counts.duplicate = in.u64();
  p.counts.dlq = in.u64();
  const uint64_t reasons = in.u64();
  for (uint64_t i = 0; i < reasons && in.ok(); ++i) {
    const std::string_view name = in.str();
    const uint64_t n = in.u64();
    for (size_t r = 0; r < kRejectReasonCount; ++r) {
      if (to_string(static_cast<RejectReason>(r)) == name) p.counts.rejected[r] = n;
    }
  }
  extras.reset();
  if (version >= 2) {
    PositionExtras e;
    e.clock_ms = in.i64();
    e.dedup_header = in.str();
    extras = e;
  }
  if (!in.done()) return make_error(ErrorKind::fatal, "corrupt input position");
  return {};
}

// The position key of p.id in `in` (full keys) decoded into `p` and `extras`; false when none is
// stored.
Result<bool> read_position(StateReader& in, Topology::Partition& p,
                           std::optional<PositionExtras>& extras) {
  ScopedStateReader input(in, state_scope(kInputOwner, p.id));
  auto stored = input.get("position");
  if (!stored) return tl::unexpected(stored.error());
  extras.reset();
  if (!*stored) return false;
  if (auto s = decode_position(**stored, p, extras); !s) return tl::unexpected(s.error());
  return true;
}

std::vector<std::unique_ptr<Operator>> make_operators(const TopologySpec& spec,
                                                      std::shared_ptr<const SpendTable> spend) {
  auto ops = make_window_operators(spec.windows, spec.vocabulary);
  if (spec.kpi_operators) {
    for (auto& op : make_kpi_operators_sharing_spend(spec.vocabulary, spec.kpi, std::move(spend))) {
      ops.push_back(std::move(op));
    }
  }
  return ops;
}

}  // namespace

void MessageCounts::add(const MessageCounts& other) {
  consumed += other.consumed;
  accepted += other.accepted;
  duplicate += other.duplicate;
  dlq += other.dlq;
  for (size_t r = 0; r < kRejectReasonCount; ++r) rejected[r] += other.rejected[r];
}

// Counts what a restore dropped (socialpulse_state_dropped_keys_total) on its way to the store's
// reader, which removes the keys and logs the names.
class Topology::DropCounter final : public StateReader {
 public:
  DropCounter(StateReader& inner, std::array<uint64_t, 4>& counts)
      : inner_(inner), counts_(counts) {}
  Result<std::optional<std::string>> get(std::string_view key) override { return inner_.get(key); }
  Status scan(std::string_view prefix, const Visitor& visit) override {
    return inner_.scan(prefix, visit);
  }
  void drop(std::string_view key, DroppedKind kind, std::string_view name) override {
    ++counts_[static_cast<size_t>(kind)];
    inner_.drop(key, kind, name);
  }
  void note_dropped(DroppedKind kind, std::string_view name) override {
    ++counts_[static_cast<size_t>(kind)];
    inner_.note_dropped(kind, name);
  }

 private:
  StateReader& inner_;
  std::array<uint64_t, 4>& counts_;
};

Topology::Topology(TopologySpec spec)
    : spec_(std::move(spec)),
      spend_table_(std::make_shared<SpendTable>(spec_.spend)),
      operators_(make_operators(spec_, spend_table_)),
      tracker_(spec_.watermark) {}

Status Topology::restore_global(StateReader& store) {
  DropCounter in(store, dropped_keys_);
  for (auto& op : operators_) {
    ScopedStateReader scoped(in, state_scope(op->name(), kGlobalPartition));
    if (auto s = op->restore(kGlobalPartition, scoped); !s) return s;
  }
  ScopedStateReader tracker(in, state_scope(kTrackerOwner, kGlobalPartition));
  if (auto s = tracker_.restore(kGlobalPartition, tracker); !s) return s;
  last_watermark_ = tracker_.pipeline_watermark();

  // A window removed from the configuration: all its keys go, once, named in the log.
  ScopedStateReader topology(in, state_scope(kTopologyOwner, kGlobalPartition));
  auto owners = topology.get("operators");
  if (!owners) return tl::unexpected(owners.error());
  if (!*owners) return {};
  std::string_view list = **owners;
  while (!list.empty()) {
    const size_t nl = list.find('\n');
    const std::string_view name = list.substr(0, nl);
    list.remove_prefix(nl == std::string_view::npos ? list.size() : nl + 1);
    const bool known = std::any_of(operators_.begin(), operators_.end(),
                                   [&](const auto& op) { return op->name() == name; });
    if (known || name.empty()) continue;
    const std::string prefix = std::string(name) + "/";
    std::vector<std::string> keys;
    auto scanned = in.scan(prefix, [&](std::string_view key, std::string_view) -> Status {
      keys.emplace_back(key);
      return {};
    });
    if (!scanned) return scanned;
    for (const auto& key : keys) in.drop(key, DroppedKind::window, name);
  }
  return {};
}

std::vector<std::string> Topology::partition_state_owners() const {
  std::vector<std::string> owners{std::string(kInputOwner), std::string(kDedupOwner),
                                  std::string(kTrackerOwner)};
  for (const auto& op : operators_) owners.emplace_back(op->name());
  return owners;
}

Result<std::optional<Offset>> Topology::stored_next_offset(PartitionId partition, StateReader& in) {
  Partition p(partition, Millis{0});
  std::optional<PositionExtras> extras;
  auto found = read_position(in, p, extras);
  if (!found) return tl::unexpected(found.error());
  return p.next_offset;  // nullopt when none is stored
}

Result<std::optional<std::string>> Topology::stored_dedup_header(PartitionId partition,
                                                                 StateReader& in) {
  Partition p(partition, Millis{0});
  std::optional<PositionExtras> extras;
  auto found = read_position(in, p, extras);
  if (!found) return tl::unexpected(found.error());
  if (extras) return std::optional<std::string>(std::move(extras->dedup_header));
  ScopedStateReader dedup(in, state_scope(kDedupOwner, partition));
  return dedup.get("header");
}

Result<Topology::Partition*> Topology::assign(PartitionId partition, StateReader& store) {
  auto p = std::make_unique<Partition>(partition, spec_.dedup_horizon);
  DropCounter in(store, dropped_keys_);
  if (auto s = restore_partition(*p, in); !s) {
    for (auto& op : operators_) op->drop(partition);
    tracker_.revoke(partition);
    return tl::unexpected(s.error());
  }
  Partition* raw = p.get();
  owned_[partition] = std::move(p);
  return raw;
}

Status Topology::restore_partition(Partition& p, StateReader& in) {
  std::optional<PositionExtras> extras;
  auto found = read_position(in, p, extras);
  if (!found) return tl::unexpected(found.error());
  for (auto& op : operators_) {
    ScopedStateReader scoped(in, state_scope(op->name(), p.id));
    if (auto s = op->restore(p.id, scoped); !s) return s;
  }
  ScopedStateReader dedup(in, state_scope(kDedupOwner, p.id));
  if (extras) {
    tracker_.restore_clock(p.id, extras->clock_ms);  // also assigns
    return p.dedup.restore(dedup, extras->dedup_header);
  }
  // Format 1 (or nothing stored): the clock and the dedup header under keys of their own,
  // removed by the partition's next checkpoint (which writes format 2).
  p.separate_keys = *found;
  ScopedStateReader tracker(in, state_scope(kTrackerOwner, p.id));
  if (auto s = tracker_.restore(p.id, tracker); !s) return s;  // also assigns
  return p.dedup.restore(dedup);
}

void Topology::revoke(PartitionId partition) {
  for (auto& op : operators_) op->drop(partition);
  tracker_.revoke(partition);
  owned_.erase(partition);
  advance_watermark();
}

Topology::Partition* Topology::find(PartitionId partition) {
  auto it = owned_.find(partition);
  return it == owned_.end() ? nullptr : it->second.get();
}

Topology::Outcome Topology::process(Partition& p, Offset offset, const Event& event,
                                    const Deduplicator::Key& key, WallTime wall) {
  if (p.next_offset && offset < *p.next_offset) return Outcome::stale;
  p.next_offset = Offset{offset.value + 1};
  p.dirty = true;
  ++p.counts.consumed;
  if (p.dedup.is_duplicate(event, key)) {
    tracker_.observe_activity(p.id, wall);
    ++p.counts.duplicate;
    return Outcome::duplicate;
  }
  ++p.counts.accepted;
  wall_ = wall;
  const ProcessContext ctx =
      make_process_context(p.id, tracker_.pipeline_watermark(), tracker_.partition_watermark(p.id),
                           event, spec_.kpi, spec_.emv);
  for (auto& op : operators_) op->process(ctx, event);
  tracker_.observe(p.id, event.time, wall);
  advance_watermark();
  return Outcome::accepted;
}

Topology::Outcome Topology::reject(Partition& p, Offset offset, RejectReason reason,
                                   WallTime wall) {
  if (p.next_offset && offset < *p.next_offset) return Outcome::stale;
  p.next_offset = Offset{offset.value + 1};
  p.dirty = true;
  ++p.counts.consumed;
  tracker_.observe_activity(p.id, wall);
  ++p.counts.rejected[static_cast<size_t>(reason)];
  ++p.counts.dlq;
  return Outcome::rejected;
}

void Topology::on_idle(WallTime wall, const std::function<bool(PartitionId)>& has_lag) {
  wall_ = wall;
  tracker_.update_idle(wall, has_lag);
  advance_watermark();
}

void Topology::advance_watermark() {
  const EventTime wm = tracker_.pipeline_watermark();
  if (wm <= last_watermark_) return;
  last_watermark_ = wm;
  // Closing windows and buckets changes the state of partitions that received nothing (their
  // panes expire, their windows are emitted through wm): stored stale, a partition moved or
  // restored from it would emit its closed windows again (issue #15). Operators that track their
  // changes write only those (needs_snapshot); the others write every partition after this.
  watermark_moved_ = true;
  for (auto& op : operators_) {
    op->on_wall_clock(wall_);
    op->on_watermark(wm, emitter_);
  }
}

void Topology::before_checkpoint() {
  for (auto& op : operators_) op->on_checkpoint(emitter_);
}

namespace {

// Counts what passes through into `written` (keys, key + value bytes) for checkpoint_profile().
class CountingWriter final : public StateWriter {
 public:
  CountingWriter(StateWriter& inner, Topology::WrittenState& written)
      : inner_(inner), written_(written) {}
  void put(std::string_view key, std::string_view value) override {
    ++written_.keys;
    written_.bytes += key.size() + value.size();
    inner_.put(key, value);
  }
  void remove(std::string_view key) override {
    ++written_.keys;
    written_.bytes += key.size();
    inner_.remove(key);
  }

 private:
  StateWriter& inner_;
  Topology::WrittenState& written_;
};

}  // namespace

void Topology::checkpoint(StateWriter& out) {
  // Per owner: operators in order, then tracker, dedup, input (partition scopes only).
  profile_.assign(operators_.size() + 3, WrittenState{});
  for (size_t i = 0; i < operators_.size(); ++i) profile_[i].owner = operators_[i]->name();
  profile_[operators_.size()].owner = kTrackerOwner;
  profile_[operators_.size() + 1].owner = kDedupOwner;
  profile_[operators_.size() + 2].owner = kInputOwner;
  for (auto& [id, p] : owned_) {
    const bool touched = p->dirty || watermark_moved_;
    for (size_t i = 0; i < operators_.size(); ++i) {
      Operator& op = *operators_[i];
      if (!op.needs_snapshot(id, touched)) continue;
      CountingWriter counted(out, profile_[i]);
      ScopedStateWriter scoped(counted, state_scope(op.name(), id));
      op.snapshot(id, scoped);
      ++profile_[i].partitions;
    }
    // The clock, the dedup delta and the position change with input only.
    if (!p->dirty) continue;
    CountingWriter dedup_counted(out, profile_[operators_.size() + 1]);
    ScopedStateWriter dedup(dedup_counted, state_scope(kDedupOwner, id));
    const std::string& header = p->dedup.checkpoint_segments(dedup);
    encode_position(*p, tracker_.clock_ms(id), header, scratch_);
    CountingWriter input_counted(out, profile_[operators_.size() + 2]);
    ScopedStateWriter input(input_counted, state_scope(kInputOwner, id));
    input.put("position", scratch_);
    if (p->separate_keys) {  // restored from format 1
      dedup.remove("header");
      ScopedStateWriter tracker(out, state_scope(kTrackerOwner, id));
      tracker.remove("clock");
    }
  }
  scratch_.clear();
  for (auto& op : operators_) {
    ScopedStateWriter scoped(out, state_scope(op->name(), kGlobalPartition));
    op->snapshot(kGlobalPartition, scoped);
    scratch_.append(op->name()).push_back('\n');
  }
  ScopedStateWriter tracker(out, state_scope(kTrackerOwner, kGlobalPartition));
  tracker_.snapshot(kGlobalPartition, tracker);
  ScopedStateWriter topology(out, state_scope(kTopologyOwner, kGlobalPartition));
  topology.put("operators", scratch_);
}

void Topology::checkpoint_committed() {
  for (auto& [id, p] : owned_) {
    if (p->dirty) {
      p->dedup.checkpoint_committed();
      p->separate_keys = false;
    }
    p->dirty = false;
  }
  for (auto& op : operators_) op->saved();
  watermark_moved_ = false;
}

bool Topology::writes_ahead(const Partition& p, size_t min_ids) {
  // Only partitions the next checkpoint writes (dirty): their headers name the segment.
  return p.dirty && p.dedup.unwritten_ids() >= std::max<size_t>(min_ids, 1);
}

size_t Topology::write_ahead(StateWriter& out, size_t min_ids) {
  written_ahead_.clear();
  for (auto& [id, p] : owned_) {
    if (!writes_ahead(*p, min_ids)) continue;
    ScopedStateWriter dedup(out, state_scope(kDedupOwner, id));
    if (p->dedup.write_ahead(dedup)) written_ahead_.push_back(p.get());
  }
  return written_ahead_.size();
}

void Topology::write_ahead_committed() {
  for (Partition* p : written_ahead_) p->dedup.write_ahead_committed();
  written_ahead_.clear();
}

size_t Topology::dedup_unwritten_ids(size_t min_ids) const {
  size_t ids = 0;
  for (const auto& [id, p] : owned_)
    ids += writes_ahead(*p, min_ids) ? p->dedup.unwritten_ids() : 0;
  return ids;
}

MessageCounts Topology::total_counts() const {
  MessageCounts total;
  for (const auto& [id, p] : owned_) total.add(p->counts);
  return total;
}

void Topology::collect_counts(MetricsWriter& out) const {
  const MessageCounts total = total_counts();
  auto counter = [&out](std::string_view name, std::string_view help, uint64_t v) {
    out.family(name, help, MetricType::counter);
    out.add({}, static_cast<double>(v));
  };
  counter("socialpulse_events_consumed_total", "Messages read from the input topics",
          total.consumed);
  counter("socialpulse_events_accepted_total", "Valid, non-duplicate events", total.accepted);
  counter("socialpulse_events_duplicate_total",
          "Events whose (brand, id) was seen within dedup.horizon", total.duplicate);
  counter("socialpulse_dlq_messages_total", "Messages written to the dead-letter topic", total.dlq);
  out.family("socialpulse_events_rejected_total", "Rejected messages by reason",
             MetricType::counter);
  for (size_t r = 0; r < kRejectReasonCount; ++r) {
    const LabelPair labels[] = {{"reason", to_string(static_cast<RejectReason>(r))}};
    out.add(labels, static_cast<double>(total.rejected[r]));
  }
}

void Topology::collect(MetricsWriter& out) const {
  for (const auto& op : operators_) op->collect(out);
  out.family("socialpulse_state_dropped_keys_total",
             "Stored state keys of brands, channels, windows or types no longer configured, "
             "dropped at restore",
             MetricType::counter);
  for (size_t k = 0; k < dropped_keys_.size(); ++k) {
    const LabelPair labels[] = {{"kind", to_string(static_cast<DroppedKind>(k))}};
    out.add(labels, static_cast<double>(dropped_keys_[k]));
  }
}

size_t Topology::state_bytes() const {
  size_t bytes = 0;
  for (const auto& op : operators_) bytes += op->state_bytes();
  for (const auto& [id, p] : owned_) bytes += p->dedup.memory_bytes();
  return bytes;
}

}  // namespace sp
