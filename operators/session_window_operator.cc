#include "operators/session_window_operator.h"

#include <algorithm>
#include <functional>
#include <tuple>

#include "operators/byte_codec.h"
#include "operators/window_record_format.h"

namespace sp {
namespace {

// 2: partition records packed (varints; actors grouped per brand, brand names once per group;
// sessions as start, length and events): about half the bytes of 1 (issue #20). The global
// record keeps its layout. 1 is still read.
constexpr uint8_t kSnapshotVersion = 2;
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
  if (joined != nullptr) return;  // closes only moved later: the pending timer still covers them

  if (starts_closed) {
    ++state.late_events;
    return;
  }
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
      for (Session& s : actor.sessions) {
        const int64_t close = close_time(s);
        if (close <= wm) {
          closed_.push_back(Closed{close, timer.key.brand, actor.actor_id, s, partition});
          state.unsaved = true;
          s.events = 0;
        } else {
          next = std::min(next, close);
        }
      }
      erase_empty(actor.sessions);
      if (actor.sessions.empty()) {
        state.actors.erase(it);
        continue;
      }
      if (timer.close == actor.timer) schedule(state, timer.key, actor, next);
    }
  }
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
  std::string out;
  encode(partition, out);
  writer.put(partition == kGlobalPartition ? "window" : "sessions", out);
}

Status SessionWindowOperator::restore(PartitionId partition, StateReader& reader) {
  auto bytes = reader.get(partition == kGlobalPartition ? "window" : "sessions");
  if (!bytes) return tl::unexpected(bytes.error());
  if (!*bytes) {
    if (partition != kGlobalPartition) drop(partition);
    return {};
  }
  return decode(partition, **bytes, reader);
}

void SessionWindowOperator::encode(PartitionId partition, std::string& out) const {
  byte_codec::put_u8(out, kSnapshotVersion);
  if (partition == kGlobalPartition) {
    byte_codec::put_i64(out, watermark_);
    byte_codec::put_u64(out, records_total_);
    return;
  }
  const PartitionState* found = partitions_.find(partition);
  if (found == nullptr) {
    for (int i = 0; i < 3; ++i) byte_codec::put_var(out, 0);
    return;
  }
  const PartitionState& state = *found;
  using namespace byte_codec;
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
  std::vector<const std::pair<const SessionKey, ActorSessions>*> sorted;
  sorted.reserve(state.actors.size());
  for (const auto& entry : state.actors) sorted.push_back(&entry);
  std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) {
    return std::tie(a->first.brand, a->second.actor_id, a->first.actor_hash) <
           std::tie(b->first.brand, b->second.actor_id, b->first.actor_hash);
  });
  size_t groups = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    groups += i == 0 || sorted[i]->first.brand != sorted[i - 1]->first.brand ? 1 : 0;
  }
  put_var(out, groups);
  for (size_t i = 0; i < sorted.size();) {
    const BrandIndex brand = sorted[i]->first.brand;
    size_t j = i;
    while (j < sorted.size() && sorted[j]->first.brand == brand) ++j;
    put_vstr(out, vocabulary_.brand_name(brand));
    put_var(out, j - i);
    for (; i < j; ++i) {
      const auto& [key, actor] = *sorted[i];
      put_vstr(out, actor.actor_id);
      put_u64(out, key.actor_hash);
      put_var(out, actor.sessions.size());
      for (const Session& session : actor.sessions) {
        put_svar(out, session.start);
        put_var(out, static_cast<uint64_t>(session.end - session.start));
        put_var(out, static_cast<uint64_t>(session.events));
      }
    }
  }
}

Status SessionWindowOperator::decode_packed(PartitionId partition, byte_codec::Reader& in,
                                            StateReader& reader) {
  PartitionState state;
  bool dropped = false;
  state.brands.resize(vocabulary_.brand_count());
  state.late_events = in.var();
  const uint64_t n_brands = in.var();
  if (!in.ok()) return corrupt("partition header");
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
      dropped = true;
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
      dropped = true;
    }
    for (uint64_t a = 0; a < n_actors && in.ok(); ++a) {
      const std::string_view actor_id = in.vstr();
      const uint64_t hash = in.u64();
      const uint64_t n_sessions = in.var();
      if (!in.ok()) return corrupt("actor");
      ActorSessions* actor = nullptr;
      if (brand) {
        const SessionKey key{hash, *brand};
        actor = &state.actors[key];
        actor->actor_id.assign(actor_id);
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
  adopt(partition, std::move(state), dropped);
  return {};
}

Status SessionWindowOperator::decode(PartitionId partition, std::string_view bytes,
                                     StateReader& reader) {
  byte_codec::Reader in(bytes);
  const uint8_t version = in.u8();
  if (!in.ok()) return corrupt("version");
  if (version != kSnapshotVersion && version != 1) {
    return make_error(ErrorKind::fatal,
                      "session window operator '" + spec_.name + "': state key '" +
                          (partition == kGlobalPartition ? "window" : "sessions") +
                          "' has format version " + std::to_string(version) +
                          ", this build reads version " + std::to_string(kSnapshotVersion));
  }
  if (partition == kGlobalPartition) {
    const int64_t watermark = in.i64();
    const uint64_t records = in.u64();
    if (!in.done()) return corrupt("global");
    watermark_ = std::max(watermark_, watermark);
    records_total_ = records;
    return {};
  }
  if (version == kSnapshotVersion) return decode_packed(partition, in, reader);
  PartitionState state;  // format 1
  state.brands.resize(vocabulary_.brand_count());
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
  adopt(partition, std::move(state), /*unsaved=*/true);  // rewritten in the current format
  return {};
}

void SessionWindowOperator::adopt(PartitionId partition, PartitionState state, bool unsaved) {
  for (auto& [key, actor] : state.actors) {
    int64_t first = kNever;
    for (const Session& s : actor.sessions) first = std::min(first, close_time(s));
    actor.timer = first;
    state.timers.push_back(Timer{first, key});
  }
  std::make_heap(state.timers.begin(), state.timers.end(), std::greater<>{});
  state.unsaved = unsaved;
  partitions_.assign(partition, std::move(state));
}

void SessionWindowOperator::drop(PartitionId partition) { partitions_.erase(partition); }

bool SessionWindowOperator::needs_snapshot(PartitionId partition, bool /*touched*/) const {
  return partitions_.unsaved(partition);
}

void SessionWindowOperator::saved() { partitions_.mark_all_saved(); }

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
    for (const auto& [key, actor] : state.actors) {
      if (actor.sessions.capacity() > 1) bytes += actor.sessions.capacity() * sizeof(Session);
      if (actor.actor_id.capacity() > 15) bytes += actor.actor_id.capacity();
    }
  }
  return bytes;
}

}  // namespace sp
