#include "operators/spike_explainer.h"

#include <algorithm>

#include "operators/kpi_metrics.h"
#include "operators/window_record_format.h"

namespace sp {

void SpaceSaving::add(std::string_view key, double weight, int64_t reach) {
  for (Entry& e : entries_) {
    if (e.key == key) {
      e.weight += weight;
      e.reach = std::max(e.reach, reach);
      return;
    }
  }
  if (entries_.size() < capacity_) {
    entries_.push_back(Entry{std::string(key), weight, reach});
    return;
  }
  if (entries_.empty()) return;
  auto lightest =
      std::min_element(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
        return a.weight != b.weight ? a.weight < b.weight : a.key < b.key;
      });
  lightest->key.assign(key);
  lightest->weight += weight;
  lightest->reach = reach;
}

void SpaceSaving::merge(const SpaceSaving& other) {
  for (const Entry& e : other.entries_) add(e.key, e.weight, e.reach);
}

void SpaceSaving::scale(double factor) {
  for (Entry& e : entries_) e.weight *= factor;
}

double SpaceSaving::weight_of(std::string_view key) const {
  for (const Entry& e : entries_) {
    if (e.key == key) return e.weight;
  }
  return 0.0;
}

namespace {

// The two encodings of counts, strings and signed integers (SpaceSaving::serialize).
void put_count(std::string& out, uint64_t n, bool packed) {
  packed ? byte_codec::put_var(out, n) : byte_codec::put_u64(out, n);
}
void put_text(std::string& out, std::string_view s, bool packed) {
  packed ? byte_codec::put_vstr(out, s) : byte_codec::put_str(out, s);
}
uint64_t read_count(byte_codec::Reader& in, bool packed) { return packed ? in.var() : in.u64(); }
std::string_view read_text(byte_codec::Reader& in, bool packed) {
  return packed ? in.vstr() : in.str();
}

}  // namespace

void SpaceSaving::serialize(std::string& out, bool packed) const {
  std::vector<const Entry*> sorted;
  for (const Entry& e : entries_) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(),
            [](const Entry* a, const Entry* b) { return a->key < b->key; });
  put_count(out, sorted.size(), packed);
  for (const Entry* e : sorted) {
    put_text(out, e->key, packed);
    byte_codec::put_f64(out, e->weight);
    packed ? byte_codec::put_svar(out, e->reach) : byte_codec::put_i64(out, e->reach);
  }
}

bool SpaceSaving::deserialize(byte_codec::Reader& in, bool packed) {
  entries_.clear();
  const uint64_t n = read_count(in, packed);
  if (n > capacity_) return false;
  for (uint64_t i = 0; i < n && in.ok(); ++i) {
    Entry e;
    e.key.assign(read_text(in, packed));
    e.weight = in.f64();
    e.reach = packed ? in.svar() : in.i64();
    entries_.push_back(std::move(e));
  }
  return in.ok();
}

void ContributionSketch::add(const Event& e, double negative) {
  if (e.channel < channels.size()) channels[e.channel] += negative;
  types[static_cast<size_t>(e.type)] += negative;
  if (e.has_actor) authors.add(e.actor_id, negative, std::max(e.reach, e.followers));
  for (size_t i = 0; i < e.tag_count; ++i) tags.add(e.tags[i], negative);
}

void ContributionSketch::merge(const ContributionSketch& other) {
  if (channels.size() < other.channels.size()) channels.resize(other.channels.size(), 0.0);
  for (size_t c = 0; c < other.channels.size(); ++c) channels[c] += other.channels[c];
  for (size_t t = 0; t < types.size(); ++t) types[t] += other.types[t];
  authors.merge(other.authors);
  tags.merge(other.tags);
}

bool ContributionSketch::empty() const {
  return authors.entries().empty() && tags.entries().empty() &&
         std::all_of(channels.begin(), channels.end(), [](double v) { return v == 0.0; }) &&
         std::all_of(types.begin(), types.end(), [](double v) { return v == 0.0; });
}

void ContributionSketch::serialize(std::string& out, const Vocabulary& vocabulary,
                                   bool packed) const {
  using namespace byte_codec;
  size_t nonzero = 0;
  for (double v : channels) nonzero += v != 0.0;
  put_count(out, nonzero, packed);
  for (size_t c = 0; c < channels.size(); ++c) {
    if (channels[c] == 0.0) continue;
    put_text(out, vocabulary.channel_name(static_cast<ChannelIndex>(c)), packed);
    put_f64(out, channels[c]);
  }
  nonzero = 0;
  for (double v : types) nonzero += v != 0.0;
  put_count(out, nonzero, packed);
  for (size_t t = 0; t < types.size(); ++t) {
    if (types[t] == 0.0) continue;
    put_text(out, to_string(static_cast<EventType>(t)), packed);
    put_f64(out, types[t]);
  }
  authors.serialize(out, packed);
  tags.serialize(out, packed);
}

bool ContributionSketch::deserialize(byte_codec::Reader& in, const Vocabulary& vocabulary,
                                     bool packed) {
  channels.assign(vocabulary.channel_count(), 0.0);
  types.fill(0.0);
  const uint64_t n_channels = read_count(in, packed);
  for (uint64_t i = 0; i < n_channels && in.ok(); ++i) {
    const std::string_view name = read_text(in, packed);
    const double v = in.f64();
    // A channel no longer configured: its share of the baseline is forgotten.
    if (auto c = vocabulary.find_channel(name)) channels[*c] += v;
  }
  const uint64_t n_types = read_count(in, packed);
  for (uint64_t i = 0; i < n_types && in.ok(); ++i) {
    const std::string_view name = read_text(in, packed);
    const double v = in.f64();
    const auto t = parse_event_type(name);
    if (!t) return false;
    types[static_cast<size_t>(*t)] = v;
  }
  return authors.deserialize(in, packed) && tags.deserialize(in, packed);
}

void ExplainBaseline::update(const ContributionSketch& minute, double alpha) {
  if (mean_.channels.size() < minute.channels.size())
    mean_.channels.resize(minute.channels.size(), 0.0);
  for (size_t c = 0; c < mean_.channels.size(); ++c) {
    const double x = c < minute.channels.size() ? minute.channels[c] : 0.0;
    mean_.channels[c] += alpha * (x - mean_.channels[c]);
  }
  for (size_t t = 0; t < mean_.types.size(); ++t) {
    mean_.types[t] += alpha * (minute.types[t] - mean_.types[t]);
  }
  tag_mean_.scale(1.0 - alpha);
  for (const SpaceSaving::Entry& e : minute.tags.entries()) tag_mean_.add(e.key, alpha * e.weight);
}

namespace {

struct Ranked {
  std::string name;
  double negative;
  double baseline;
};

// The top 3 by excess over the baseline (only positive excess), ties by name.
void append_ranked(std::string& out, std::vector<Ranked> items) {
  std::erase_if(items, [](const Ranked& r) { return r.negative - r.baseline <= 0.0; });
  std::sort(items.begin(), items.end(), [](const Ranked& a, const Ranked& b) {
    const double ea = a.negative - a.baseline;
    const double eb = b.negative - b.baseline;
    return ea != eb ? ea > eb : a.name < b.name;
  });
  if (items.size() > 3) items.resize(3);
  out += '[';
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += "{\"name\":";
    append_json_string(out, items[i].name);
    out += ",\"negative\":";
    append_double(out, items[i].negative);
    out += ",\"baseline\":";
    append_double(out, items[i].baseline);
    out += '}';
  }
  out += ']';
}

}  // namespace

void ExplainBaseline::append_explanation(std::string& out, const ContributionSketch& minute,
                                         const Vocabulary& vocabulary) const {
  std::vector<Ranked> items;
  for (size_t c = 0; c < minute.channels.size(); ++c) {
    items.push_back({vocabulary.channel_name(static_cast<ChannelIndex>(c)), minute.channels[c],
                     c < mean_.channels.size() ? mean_.channels[c] : 0.0});
  }
  out += "{\"channels\":";
  append_ranked(out, std::move(items));
  items.clear();
  for (size_t t = 0; t < minute.types.size(); ++t) {
    items.push_back(
        {std::string(to_string(static_cast<EventType>(t))), minute.types[t], mean_.types[t]});
  }
  out += ",\"types\":";
  append_ranked(out, std::move(items));
  items.clear();
  for (const SpaceSaving::Entry& e : minute.tags.entries()) {
    items.push_back({e.key, e.weight, tag_mean_.weight_of(e.key)});
  }
  out += ",\"tags\":";
  append_ranked(out, std::move(items));
  std::vector<const SpaceSaving::Entry*> authors;
  for (const SpaceSaving::Entry& e : minute.authors.entries()) authors.push_back(&e);
  std::sort(authors.begin(), authors.end(), [](const auto* a, const auto* b) {
    return a->reach != b->reach ? a->reach > b->reach : a->key < b->key;
  });
  if (authors.size() > 3) authors.resize(3);
  out += ",\"authors\":[";
  for (size_t i = 0; i < authors.size(); ++i) {
    if (i) out += ',';
    out += "{\"id\":";
    append_json_string(out, authors[i]->key);
    out += ",\"reach\":";
    append_json_int(out, authors[i]->reach);
    out += ",\"negative\":";
    append_double(out, authors[i]->weight);
    out += '}';
  }
  out += "]}";
}

void ExplainBaseline::serialize(std::string& out, const Vocabulary& vocabulary) const {
  mean_.serialize(out, vocabulary);
  tag_mean_.serialize(out);
}

bool ExplainBaseline::deserialize(byte_codec::Reader& in, const Vocabulary& vocabulary) {
  return mean_.deserialize(in, vocabulary) && tag_mean_.deserialize(in);
}

}  // namespace sp
