#include "operators/session_window_operator.h"

#include <algorithm>
#include <functional>
#include <tuple>

#include "operators/byte_codec.h"
#include "operators/state_version.h"
#include "operators/window_record_format.h"

namespace sp {
namespace {

// 2: partition records packed (varints; actors grouped per brand, brand names once per group;
// sessions as start, length and events): about half the bytes of 1 (issue #20). 3: the same
// layout, with `sessions/<n>` deltas after it (an actor without sessions: removed); a build that
// reads 2 only would miss the deltas, so it refuses 3. 4: a generation after the version, in the
// base and in its deltas; a new base takes the next one and leaves the older deltas in place (a
// delta of another generation is not the base's: it is skipped, and overwritten by the base's own
// delta of that number), instead of removing them with one key each (half the keys a loaded
// partition wrote; issue #20). The global record keeps its layout. 1 to 3 are still read.
constexpr uint8_t kSnapshotVersion = 4;
constexpr uint8_t kUngenerationedVersion = 3;
constexpr std::string_view kDeltaPrefix = "sessions/";
constexpr size_t kDeltaDigits = 4;

// `sessions/<4 hex digits>`: delta n (key order = the order they were written).
void delta_key(uint32_t n, std::string& out) {
  byte_codec::numbered_key(out, kDeltaPrefix, n, static_cast<int>(kDeltaDigits));
}
constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

template <typename Sessions>
void erase_empty(Sessions& sessions) {
  sessions.erase(
      std::remove_if(sessions.begin(), sessions.end(), [](const auto& s) { return s.events == 0; }),
      sessions.end());
}

Status corrupt(std::string_view what) {
  return make_error(ErrorKind::fatal,
                    "session window operator: corrupt snapshot (" + std::string(what) + ")");
}

}  // namespace

SessionWindowOperator::SessionWindowOperator(WindowSpec spec, Vocabulary vocabulary)
    : spec_(std::move(spec)),
      vocabulary_(std::move(vocabulary)),
      gap_ms_(std::max<int64_t>(spec_.gap.count(), 1)),
      grace_ms_(std::max<int64_t>(spec_.grace.count(), 0)),
      watermark_(to_epoch_ms(kMinEventTime)) {}

SessionWindowOperator::PartitionState& SessionWindowOperator::state_for(PartitionId partition) {
  return partitions_.get_or_create(partition, [this] {
    PartitionState state;
    state.brands.resize(vocabulary_.brand_count());
    return state;
  });
}

void SessionWindowOperator::schedule(PartitionState& state, const SessionKey& key,
                                     ActorSessions& actor, int64_t close) {
  actor.timer = close;
  earliest_due_ = std::min(earliest_due_, close);
  state.timers.push_back(Timer{close, key});
  std::push_heap(state.timers.begin(), state.timers.end(), std::greater<>{});
}

void SessionWindowOperator::process(const ProcessContext& ctx, const Event& event) {
  if (!event.has_actor) return;
  const int64_t t = to_epoch_ms(event.time);
  PartitionState& state = state_for(ctx.partition);
  state.unsaved = true;
  const int64_t watermark = std::max(watermark_, to_epoch_ms(ctx.pipeline_watermark));
  const SessionKey key{event.actor_hash, event.brand};
  const bool starts_closed = t + gap_ms_ + grace_ms_ <= watermark;

  auto it = state.actors.find(key);
  if (it == state.actors.end()) {
    if (starts_closed) {
      ++state.late_events;
      return;
    }
    ActorSessions& actor = state.actors.try_emplace(key).first->second;
    actor.actor_id.assign(event.actor_id);
    mark_changed(state, key, actor);
    actor.sessions.push_back(Session{t, t, 1});
    schedule(state, key, actor, close_time(actor.sessions.back()));
    return;
  }

  ActorSessions& actor = it->second;
  auto& sessions = actor.sessions;
  // Sessions already due are frozen: they leave as they are at the next on_watermark.
  Session* joined = nullptr;
  bool merged_any = false;
  for (Session& s : sessions) {
    if (close_time(s) <= watermark) continue;
    if (!(s.start - gap_ms_ < t && t < s.end + gap_ms_)) continue;
    if (joined == nullptr) {
      joined = &s;
      s.start = std::min(s.start, t);
      s.end = std::max(s.end, t);
      s.events += 1;
    } else {
      // The event bridges two sessions: fold the later one into the first.
      joined->start = std::min(joined->start, s.start);
      joined->end = std::max(joined->end, s.end);
      joined->events += s.events;
      s.events = 0;
      merged_any = true;
    }
  }
  if (merged_any) erase_empty(sessions);
  if (joined != nullptr) {
    mark_changed(state, key, actor);
    return;  // closes only moved later: the pending timer still covers them
  }

  if (starts_closed) {
    ++state.late_events;
    return;
  }
  mark_changed(state, key, actor);
  const Session fresh{t, t, 1};
  sessions.insert(
      std::upper_bound(sessions.begin(), sessions.end(), fresh,
                       [](const Session& a, const Session& b) { return a.start < b.start; }),
      fresh);
  if (close_time(fresh) < actor.timer) schedule(state, key, actor, close_time(fresh));
}

void SessionWindowOperator::on_watermark(EventTime watermark, Emitter& out) {
  const int64_t wm = to_epoch_ms(watermark);
  if (wm <= watermark_) return;
  watermark_ = wm;
  // The watermark moves with nearly every event: without this, each move visited every
  // partition's timers (11 % of BM_AllDefaultOperators at 50 partitions).
  if (wm < earliest_due_) return;
  int64_t earliest = kNever;
  closed_.clear();
  for (auto& [partition, state] : partitions_) {
    auto& timers = state.timers;
    while (!timers.empty() && timers.front().close <= wm) {
      std::pop_heap(timers.begin(), timers.end(), std::greater<>{});
      const Timer timer = timers.back();
      timers.pop_back();
      auto it = state.actors.find(timer.key);
      if (it == state.actors.end()) continue;  // stale: the actor's sessions already closed
      ActorSessions& actor = it->second;
      int64_t next = kNever;
      bool closed_any = false;
      for (Session& s : actor.sessions) {
        const int64_t close = close_time(s);
        if (close <= wm) {
          closed_.push_back(Closed{close, timer.key.brand, actor.actor_id, s, partition});
          s.events = 0;
          closed_any = true;
        } else {
          next = std::min(next, close);
        }
      }
      if (closed_any) {
        state.unsaved = true;
        erase_empty(actor.sessions);
        mark_changed(state, timer.key, actor);  // listed before it goes: removed from the store
      }
      if (actor.sessions.empty()) {
        state.actors.erase(it);
        continue;
      }
      if (timer.close == actor.timer) schedule(state, timer.key, actor, next);
    }
    if (!timers.empty()) earliest = std::min(earliest, timers.front().close);
  }
  earliest_due_ = earliest;
  // Heap and hash orders are arbitrary: sort so every run emits the same sequence.
  std::sort(closed_.begin(), closed_.end(), [](const Closed& a, const Closed& b) {
    return std::tie(a.close, a.brand, a.actor_id, a.session.start, a.partition) <
           std::tie(b.close, b.brand, b.actor_id, b.session.start, b.partition);
  });
  for (const Closed& c : closed_) emit(c, out);
  closed_.clear();
}

void SessionWindowOperator::emit(const Closed& c, Emitter& out) {
  const std::string& brand = vocabulary_.brand_name(c.brand);
  OutputRecord record;
  record.topic = OutputRecord::Topic::windows;
  // One allocation per string: the sizes are known up to the escaping and the event count.
  constexpr size_t kTimeChars = 24;
  record.key.reserve(brand.size() + c.actor_id.size() + spec_.name.size() + 3 + kTimeChars);
  record.key.append(brand).append("|").append(c.actor_id).append("|").append(spec_.name);
  record.key.append("|");
  const size_t start_at = record.key.size();
  append_rfc3339_ms(record.key, from_epoch_ms(c.session.start));
  const std::string_view start(record.key.data() + start_at, record.key.size() - start_at);
  std::string& v = record.value;
  v.reserve(brand.size() + c.actor_id.size() + 2 * kTimeChars + 96);
  v += "{\"brand\":";
  append_json_string(v, brand);
  v += ",\"actor\":";
  append_json_string(v, c.actor_id);
  v += ",\"start\":\"";
  v += start;
  v += "\",\"end\":\"";
  append_rfc3339_ms(v, from_epoch_ms(c.session.end));
  v += "\",\"events\":";
  append_json_int(v, c.session.events);
  v += '}';
  ++records_total_;
  out.emit(std::move(record));

  BrandStats& stats = state_for(c.partition).brands[c.brand];
  const double seconds = static_cast<double>(c.session.end - c.session.start) / 1000.0;
  ++stats.sessions;
  stats.duration_sum += seconds;
  const auto bucket = std::lower_bound(kDurationBuckets.begin(), kDurationBuckets.end(), seconds) -
                      kDurationBuckets.begin();
  ++stats.buckets[static_cast<size_t>(bucket)];
}

void SessionWindowOperator::snapshot(PartitionId partition, StateWriter& writer) const {
  scratch_.clear();
  if (partition == kGlobalPartition) {
    byte_codec::put_u8(scratch_, kSnapshotVersion);
    byte_codec::put_i64(scratch_, watermark_);
    byte_codec::put_u64(scratch_, records_total_);
    writer.put("window", scratch_);
    return;
  }
  const PartitionState* state = partitions_.find(partition);
  if (state == nullptr) {
    byte_codec::put_u8(scratch_, kSnapshotVersion);
    for (int i = 0; i < 4; ++i) byte_codec::put_var(scratch_, 0);  // generation 0: no deltas
    writer.put("sessions", scratch_);
    return;
  }
  // Restored and not changed since: the store holds it already.
  if (!state->unsaved && state->stored.base) return;
  const Stored& was = state->stored;
  // As many listed as there are actors (a busy partition's every actor, each interval): the
  // delta could not be smaller than the base, so it is not encoded only to be thrown away.
  if (was.base && !state->rewrite && was.deltas < kMaxDeltas &&
      state->changed.size() < state->actors.size()) {
    entries_.clear();
    for (const SessionKey& key : state->changed) {
      const auto it = state->actors.find(key);
      entries_.push_back(it == state->actors.end() ? Entry{key, {}, nullptr}  // removed
                                                   : Entry{key, it->second.actor_id, &it->second});
    }
    encode_packed(*state, entries_, was.generation, scratch_);
    if (was.delta_bytes + scratch_.size() <= was.base_bytes) {
      delta_key(was.deltas, key_);
      writer.put(key_, scratch_);
      state->pending = Stored{true, was.deltas + 1, was.base_bytes,
                              was.delta_bytes + scratch_.size(), was.generation};
      return;
    }
    scratch_.clear();
  }
  entries_.clear();
  for (const auto& [key, actor] : state->actors)
    entries_.push_back(Entry{key, actor.actor_id, &actor});
  // The stored deltas stay: the next generation's own overwrite them one by one.
  const uint64_t generation = was.generation + 1;
  encode_packed(*state, entries_, generation, scratch_);
  writer.put("sessions", scratch_);
  state->pending = Stored{true, 0, scratch_.size(), 0, generation};
}

Status SessionWindowOperator::restore(PartitionId partition, StateReader& reader) {
  auto bytes = reader.get(partition == kGlobalPartition ? "window" : "sessions");
  if (!bytes) return tl::unexpected(bytes.error());
  if (!*bytes) {
    if (partition != kGlobalPartition) drop(partition);
    return {};
  }
  PartitionState state;
  state.brands.resize(vocabulary_.brand_count());
  bool rewrite = false;
  if (auto s = decode(partition, **bytes, reader, state, rewrite); !s) return s;
  if (partition == kGlobalPartition) return {};
  state.stored.base = true;
  state.stored.base_bytes = (*bytes)->size();
  const uint8_t base_version = static_cast<uint8_t>((**bytes)[0]);
  // Key order: the deltas in the order they were written. Beside a base of format 4, those of its
  // generation (numbered from 0 on); the others are an older base's, skipped. Beside format 3,
  // every delta (that format removed the older ones).
  auto scanned = reader.scan(kDeltaPrefix, [&](std::string_view key, std::string_view value) {
    const auto n = byte_codec::parse_hex(key.substr(kDeltaPrefix.size()), kDeltaDigits);
    if (!n) return corrupt("delta key '" + std::string(key) + "'");
    byte_codec::Reader in(value);
    const uint8_t version = in.u8();
    if (!in.ok() || (version != kSnapshotVersion && version != kUngenerationedVersion))
      return corrupt("delta version");
    if (base_version == kSnapshotVersion) {
      if (version != kSnapshotVersion) return Status{};  // written before the base
      const uint64_t generation = in.var();
      if (!in.ok()) return corrupt("delta generation");
      if (generation != state.stored.generation) return Status{};  // an older base's
      if (*n != state.stored.deltas) return corrupt("delta key '" + std::string(key) + "'");
    } else if (version != kUngenerationedVersion) {
      return corrupt("delta version");
    }
    state.stored.deltas = std::max(state.stored.deltas, static_cast<uint32_t>(*n) + 1);
    state.stored.delta_bytes += value.size();
    return decode_packed(in, state, reader, rewrite);
  });
  if (!scanned) return scanned;
  adopt(partition, std::move(state), rewrite);
  return {};
}

void SessionWindowOperator::encode_packed(const PartitionState& state, std::vector<Entry>& entries,
                                          uint64_t generation, std::string& out) const {
  using namespace byte_codec;
  put_u8(out, kSnapshotVersion);
  put_var(out, generation);
  put_var(out, state.late_events);
  uint64_t brands_with_sessions = 0;
  for (const BrandStats& b : state.brands) brands_with_sessions += b.sessions > 0 ? 1 : 0;
  put_var(out, brands_with_sessions);
  for (size_t i = 0; i < state.brands.size(); ++i) {
    const BrandStats& b = state.brands[i];
    if (b.sessions == 0) continue;
    // Names, not indexes: a reordered brand list must not move state between labels.
    put_vstr(out, vocabulary_.brand_name(static_cast<BrandIndex>(i)));
    put_var(out, b.sessions);
    uint64_t present = 0;
    for (size_t k = 0; k < b.buckets.size(); ++k) present |= b.buckets[k] != 0 ? 1u << k : 0;
    put_var(out, present);
    for (uint64_t n : b.buckets) {
      if (n != 0) put_var(out, n);
    }
    put_f64(out, b.duration_sum);
  }
  // The bytes depend on the state only, not on hash table order. A key listed twice (an actor
  // removed and back since the last checkpoint) sorts next to itself and is written once. By
  // hash before id: the ids are compared only for equal hashes (issue #20: this sort was a sixth
  // of a loaded checkpoint's build and write; the reader takes entries in any order).
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.key.brand, a.key.actor_hash, a.actor_id) <
           std::tie(b.key.brand, b.key.actor_hash, b.actor_id);
  });
  entries.erase(std::unique(entries.begin(), entries.end(),
                            [](const Entry& a, const Entry& b) { return a.key == b.key; }),
                entries.end());
  size_t groups = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    groups += i == 0 || entries[i].key.brand != entries[i - 1].key.brand ? 1 : 0;
  }
  put_var(out, groups);
  for (size_t i = 0; i < entries.size();) {
    const BrandIndex brand = entries[i].key.brand;
    size_t j = i;
    while (j < entries.size() && entries[j].key.brand == brand) ++j;
    put_vstr(out, vocabulary_.brand_name(brand));
    put_var(out, j - i);
    for (; i < j; ++i) {
      const Entry& entry = entries[i];
      put_vstr(out, entry.actor_id);
      put_u64(out, entry.key.actor_hash);
      if (entry.actor == nullptr) {
        put_var(out, 0);
        continue;
      }
      put_var(out, entry.actor->sessions.size());
      for (const Session& session : entry.actor->sessions) {
        put_svar(out, session.start);
        put_var(out, static_cast<uint64_t>(session.end - session.start));
        put_var(out, static_cast<uint64_t>(session.events));
      }
    }
  }
}

Status SessionWindowOperator::decode_packed(byte_codec::Reader& in, PartitionState& state,
                                            StateReader& reader, bool& rewrite) {
  state.late_events = in.var();
  const uint64_t n_brands = in.var();
  if (!in.ok()) return corrupt("partition header");
  std::fill(state.brands.begin(), state.brands.end(), BrandStats{});
  for (uint64_t i = 0; i < n_brands && in.ok(); ++i) {
    const std::string_view name = in.vstr();
    BrandStats b;
    b.sessions = in.var();
    const uint64_t present = in.var();
    if ((present >> b.buckets.size()) != 0) return corrupt("brand stats");
    for (size_t k = 0; k < b.buckets.size(); ++k) b.buckets[k] = (present >> k & 1) ? in.var() : 0;
    b.duration_sum = in.f64();
    if (!in.ok()) return corrupt("brand stats");
    const auto brand = vocabulary_.find_brand(name);
    if (!brand) {  // removed from the configuration: dropped, never folded into `other`
      reader.note_dropped(DroppedKind::brand, name);
      rewrite = true;
      continue;
    }
    state.brands[*brand] = b;
  }
  const uint64_t groups = in.var();
  for (uint64_t g = 0; g < groups && in.ok(); ++g) {
    const std::string_view brand_name = in.vstr();
    const uint64_t n_actors = in.var();
    if (!in.ok()) return corrupt("actors");
    const auto brand = vocabulary_.find_brand(brand_name);
    if (!brand) {
      reader.note_dropped(DroppedKind::brand, brand_name);
      rewrite = true;
    }
    for (uint64_t a = 0; a < n_actors && in.ok(); ++a) {
      const std::string_view actor_id = in.vstr();
      const uint64_t hash = in.u64();
      const uint64_t n_sessions = in.var();
      if (!in.ok()) return corrupt("actor");
      ActorSessions* actor = nullptr;
      if (brand && n_sessions == 0) {
        state.actors.erase(SessionKey{hash, *brand});  // removed since the base
      } else if (brand) {
        actor = &state.actors[SessionKey{hash, *brand}];
        actor->actor_id.assign(actor_id);
        actor->sessions.clear();
      }
      for (uint64_t k = 0; k < n_sessions && in.ok(); ++k) {
        Session session;
        session.start = in.svar();
        session.end = session.start + static_cast<int64_t>(in.var());
        session.events = static_cast<int64_t>(in.var());
        if (!in.ok()) return corrupt("session");
        if (actor != nullptr) actor->sessions.push_back(session);
      }
      if (actor != nullptr) {
        std::sort(actor->sessions.begin(), actor->sessions.end(),
                  [](const Session& x, const Session& y) { return x.start < y.start; });
      }
    }
  }
  if (!in.done()) return corrupt("trailing bytes");
  return {};
}

Status SessionWindowOperator::decode(PartitionId partition, std::string_view bytes,
                                     StateReader& reader, PartitionState& state, bool& rewrite) {
  byte_codec::Reader in(bytes);
  const uint8_t version = in.u8();
  if (!in.ok()) return corrupt("version");
  if (version < 1 || version > kSnapshotVersion) {
    return unreadable_format("session window operator '" + spec_.name + "': state key '" +
                                 (partition == kGlobalPartition ? "window" : "sessions") + "'",
                             version, 1, kSnapshotVersion);
  }
  if (partition == kGlobalPartition) {
    const int64_t watermark = in.i64();
    const uint64_t records = in.u64();
    if (!in.done()) return corrupt("global");
    watermark_ = std::max(watermark_, watermark);
    records_total_ = records;
    return {};
  }
  // Older formats are rewritten in the current one at the next checkpoint.
  if (version != kSnapshotVersion) rewrite = true;
  if (version >= 4) {
    state.stored.generation = in.var();
    if (!in.ok()) return corrupt("generation");
  }
  if (version >= 2) return decode_packed(in, state, reader, rewrite);
  return decode_format_1(in, state, reader);
}

Status SessionWindowOperator::decode_format_1(byte_codec::Reader& in, PartitionState& state,
                                              StateReader& reader) {
  state.late_events = in.u64();
  const uint64_t n_brands = in.u64();
  if (!in.ok()) return corrupt("partition header");
  for (uint64_t i = 0; i < n_brands; ++i) {
    const std::string_view name = in.str();
    BrandStats b;
    b.sessions = in.u64();
    for (uint64_t& n : b.buckets) n = in.u64();
    b.duration_sum = in.f64();
    if (!in.ok()) return corrupt("brand stats");
    const auto brand = vocabulary_.find_brand(name);
    if (!brand) {  // removed from the configuration: dropped, never folded into `other`
      reader.note_dropped(DroppedKind::brand, name);
      continue;
    }
    BrandStats& into = state.brands[*brand];
    into.sessions += b.sessions;
    for (size_t k = 0; k < b.buckets.size(); ++k) into.buckets[k] += b.buckets[k];
    into.duration_sum += b.duration_sum;
  }
  const uint64_t n_actors = in.u64();
  if (!in.ok()) return corrupt("actors");
  for (uint64_t i = 0; i < n_actors; ++i) {
    const std::string_view brand = in.str();
    const std::string_view actor_id = in.str();
    SessionKey key;
    key.actor_hash = in.u64();
    const uint64_t n_sessions = in.u64();
    if (!in.ok()) return corrupt("actor");
    const auto brand_index = vocabulary_.find_brand(brand);
    std::vector<Session> sessions;
    for (uint64_t k = 0; k < n_sessions; ++k) {
      Session s;
      s.start = in.i64();
      s.end = in.i64();
      s.events = in.i64();
      if (!in.ok()) return corrupt("session");
      sessions.push_back(s);
    }
    if (!brand_index) {
      reader.note_dropped(DroppedKind::brand, brand);
      continue;
    }
    key.brand = *brand_index;
    ActorSessions& actor = state.actors[key];
    actor.actor_id.assign(actor_id);
    actor.sessions.insert(actor.sessions.end(), sessions.begin(), sessions.end());
    std::sort(actor.sessions.begin(), actor.sessions.end(),
              [](const Session& a, const Session& b) { return a.start < b.start; });
  }
  if (!in.done()) return corrupt("trailing bytes");
  return {};
}

void SessionWindowOperator::adopt(PartitionId partition, PartitionState state, bool rewrite) {
  for (auto& [key, actor] : state.actors) {
    int64_t first = kNever;
    for (const Session& s : actor.sessions) first = std::min(first, close_time(s));
    actor.timer = first;
    earliest_due_ = std::min(earliest_due_, first);
    state.timers.push_back(Timer{first, key});
  }
  std::make_heap(state.timers.begin(), state.timers.end(), std::greater<>{});
  state.unsaved = rewrite;
  state.rewrite = rewrite;
  partitions_.assign(partition, std::move(state));
}

void SessionWindowOperator::drop(PartitionId partition) { partitions_.erase(partition); }

bool SessionWindowOperator::needs_snapshot(PartitionId partition, bool /*touched*/) const {
  return partitions_.unsaved(partition);
}

void SessionWindowOperator::saved() {
  for (auto& [partition, state] : partitions_) {
    if (!state.unsaved) continue;
    state.unsaved = false;
    state.rewrite = false;
    if (state.pending) state.stored = *state.pending;
    state.pending.reset();
    for (const SessionKey& key : state.changed) {
      const auto it = state.actors.find(key);
      if (it != state.actors.end()) it->second.unsaved = false;
    }
    state.changed.clear();
  }
}

void SessionWindowOperator::mark_changed(PartitionState& state, const SessionKey& key,
                                         ActorSessions& actor) {
  if (actor.unsaved) return;
  actor.unsaved = true;
  state.changed.push_back(key);
}

uint64_t SessionWindowOperator::late_events() const {
  uint64_t total = 0;
  for (const auto& [partition, state] : partitions_) total += state.late_events;
  return total;
}

size_t SessionWindowOperator::open_sessions() const {
  size_t n = 0;
  for (const auto& [partition, state] : partitions_) {
    for (const auto& [key, actor] : state.actors) n += actor.sessions.size();
  }
  return n;
}

void SessionWindowOperator::collect(MetricsWriter& out) const {
  const LabelPair window_label[] = {{"window", spec_.name}};
  out.family("socialpulse_late_events_total", "Events that arrived after all their windows closed",
             MetricType::counter);
  out.add(window_label, static_cast<double>(late_events()));
  out.family("socialpulse_window_records_total", "Window records emitted", MetricType::counter);
  out.add({}, static_cast<double>(records_total_));

  std::vector<BrandStats> totals(vocabulary_.brand_count());
  for (const auto& [partition, state] : partitions_) {
    for (size_t b = 0; b < state.brands.size() && b < totals.size(); ++b) {
      const BrandStats& s = state.brands[b];
      totals[b].sessions += s.sessions;
      for (size_t k = 0; k < s.buckets.size(); ++k) totals[b].buckets[k] += s.buckets[k];
      totals[b].duration_sum += s.duration_sum;
    }
  }
  out.family("socialpulse_actor_sessions_total", "Closed actor sessions", MetricType::counter);
  for (size_t b = 0; b < totals.size(); ++b) {
    if (totals[b].sessions == 0) continue;
    const LabelPair labels[] = {{"brand", vocabulary_.brand_name(static_cast<BrandIndex>(b))}};
    out.add(labels, static_cast<double>(totals[b].sessions));
  }
  out.family("socialpulse_actor_session_duration_seconds",
             "Duration of closed actor sessions (last - first event)", MetricType::histogram);
  for (size_t b = 0; b < totals.size(); ++b) {
    if (totals[b].sessions == 0) continue;
    const LabelPair labels[] = {{"brand", vocabulary_.brand_name(static_cast<BrandIndex>(b))}};
    out.add_histogram(labels, kDurationBuckets, totals[b].buckets, totals[b].duration_sum);
  }
}

size_t SessionWindowOperator::state_bytes() const {
  size_t bytes = sizeof(*this);
  for (const auto& [partition, state] : partitions_) {
    bytes += state.actors.capacity() * (sizeof(SessionKey) + sizeof(ActorSessions) + 1);
    bytes += state.timers.capacity() * sizeof(Timer);
    bytes += state.changed.capacity() * sizeof(SessionKey);
    for (const auto& [key, actor] : state.actors) {
      if (actor.sessions.capacity() > 1) bytes += actor.sessions.capacity() * sizeof(Session);
      if (actor.actor_id.capacity() > 15) bytes += actor.actor_id.capacity();
    }
  }
  return bytes;
}

}  // namespace sp
