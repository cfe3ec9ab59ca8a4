#include "pipeline/counter_continuity.h"

#include <functional>
#include <set>

#include "operators/byte_codec.h"
#include "operators/topology.h"

namespace sp {
namespace {

constexpr char kFieldSep = '\x1f';
constexpr char kValueSep = '\x1e';
constexpr std::string_view kCounterPrefix = "counter/";

// Counted by the instance itself, not summed from its partitions: a rebalance that moves them
// (state dropped while a partition is restored) is a real count, never absorbed.
bool instance_counted(std::string_view key) {
  return key.starts_with("socialpulse_state_dropped_keys_total");
}

std::string encode_series(std::string_view family, std::span<const LabelPair> labels) {
  std::string key(family);
  for (const auto& [k, v] : labels) {
    key += kFieldSep;
    key += k;
    key += kValueSep;
    key += v;
  }
  return key;
}

// The counters' samples of a collect pass, by encoded series; everything else is ignored.
class CounterCapture final : public MetricsWriter {
 public:
  using OnSample =
      std::function<void(const std::string& key, std::string_view family, std::string_view help,
                         std::span<const LabelPair> labels, double value)>;
  explicit CounterCapture(OnSample on) : on_(std::move(on)) {}
  void family(std::string_view name, std::string_view help, MetricType type) override {
    family_ = name;
    help_ = help;
    counter_ = type == MetricType::counter;
  }
  void add(std::span<const LabelPair> labels, double value) override {
    if (counter_) on_(encode_series(family_, labels), family_, help_, labels, value);
  }
  void add_histogram(std::span<const LabelPair>, std::span<const double>, std::span<const uint64_t>,
                     double) override {}

 private:
  OnSample on_;
  std::string family_;
  std::string help_;
  bool counter_ = false;
};

// Forwards everything, counters plus their offsets; remembers which series it saw.
class ContinuedWriter final : public MetricsWriter {
 public:
  ContinuedWriter(MetricsWriter& out, const std::map<std::string, double>& offsets)
      : out_(out), offsets_(offsets) {}
  void family(std::string_view name, std::string_view help, MetricType type) override {
    family_ = name;
    counter_ = type == MetricType::counter;
    out_.family(name, help, type);
  }
  void add(std::span<const LabelPair> labels, double value) override {
    if (counter_) {
      std::string key = encode_series(family_, labels);
      if (auto it = offsets_.find(key); it != offsets_.end()) value += it->second;
      seen_.insert(std::move(key));
    }
    out_.add(labels, value);
  }
  void add_histogram(std::span<const LabelPair> labels, std::span<const double> bounds,
                     std::span<const uint64_t> bucket_counts, double sum) override {
    out_.add_histogram(labels, bounds, bucket_counts, sum);
  }
  const std::set<std::string>& seen() const { return seen_; }

 private:
  MetricsWriter& out_;
  const std::map<std::string, double>& offsets_;
  std::string family_;
  bool counter_ = false;
  std::set<std::string> seen_;
};

}  // namespace

CounterContinuity::Values CounterContinuity::raw(const Topology& topology) {
  Values values;
  CounterCapture capture([&](const std::string& key, std::string_view family, std::string_view help,
                             std::span<const LabelPair> labels, double value) {
    values[key] += value;
    auto [it, added] = series_.try_emplace(key);
    if (added) {
      it->second.family = family;
      it->second.help = help;
      for (const auto& [k, v] : labels) it->second.labels.emplace_back(k, v);
    }
  });
  topology.collect_counts(capture);
  topology.collect(capture);
  return values;
}

Status CounterContinuity::restore(StateReader& in, const Topology& topology) {
  ScopedStateReader scoped(in, state_scope(kOwner, kGlobalPartition));
  auto scanned = scoped.scan(kCounterPrefix, [&](std::string_view key, std::string_view value) {
    byte_codec::Reader r(value);
    const double exported = r.f64();
    const std::string_view help = r.str();
    if (!r.done()) return Status{};  // unreadable: that series starts again from the Topology
    std::string series(key.substr(key.find(kCounterPrefix) + kCounterPrefix.size()));
    Series& s = series_[series];
    std::string_view rest = series;
    const size_t first = rest.find(kFieldSep);
    s.family = std::string(rest.substr(0, first));
    s.help = std::string(help);
    s.labels.clear();
    rest.remove_prefix(first == std::string_view::npos ? rest.size() : first + 1);
    while (!rest.empty()) {
      const size_t end = rest.find(kFieldSep);
      const std::string_view pair = rest.substr(0, end);
      const size_t sep = pair.find(kValueSep);
      s.labels.emplace_back(std::string(pair.substr(0, sep)),
                            sep == std::string_view::npos ? "" : std::string(pair.substr(sep + 1)));
      rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
    }
    // A brand or channel removed from the configuration: its counters go with its state.
    for (const auto& [k, v] : s.labels) {
      if ((k == "brand" && !topology.vocabulary().find_brand(v)) ||
          (k == "channel" && !topology.vocabulary().find_channel(v))) {
        series_.erase(series);
        return Status{};
      }
    }
    s.offset = exported;
    persisted_[series] = exported;
    return Status{};
  });
  if (!scanned) return scanned;
  // Whatever the Topology counts already (instance-level state) is part of what was exported.
  for (const auto& [key, value] : raw(topology)) {
    if (!instance_counted(key)) series_[key].offset -= value;
  }
  return {};
}

void CounterContinuity::before(const Topology& topology) { before_ = raw(topology); }

void CounterContinuity::after(const Topology& topology) {
  Values now = raw(topology);
  for (const auto& [key, value] : before_) {
    if (!instance_counted(key)) series_[key].offset += value;
  }
  for (const auto& [key, value] : now) {
    if (!instance_counted(key)) series_[key].offset -= value;
  }
  before_.clear();
}

void CounterContinuity::checkpoint(const Topology& topology, StateWriter& out) {
  Values now = raw(topology);
  ScopedStateWriter scoped(out, state_scope(kOwner, kGlobalPartition));
  std::string value;
  for (const auto& [key, s] : series_) {
    auto it = now.find(key);
    const double exported = s.offset + (it == now.end() ? 0.0 : it->second);
    auto [p, added] = persisted_.try_emplace(key, exported);
    if (!added && p->second == exported) continue;
    p->second = exported;
    value.clear();
    byte_codec::put_f64(value, exported);
    byte_codec::put_str(value, s.help);
    scoped.put(std::string(kCounterPrefix) + key, value);
  }
}

void CounterContinuity::collect(const Topology& topology, MetricsWriter& out,
                                const std::function<void()>& between) const {
  std::map<std::string, double> offsets;
  for (const auto& [key, s] : series_) {
    if (s.offset != 0) offsets.emplace(key, s.offset);
  }
  ContinuedWriter writer(out, offsets);
  topology.collect_counts(writer);
  between();
  topology.collect(writer);
  // Series whose partitions all left: the instance still exports what it counted.
  std::string family;
  for (const auto& [key, s] : series_) {
    if (s.offset == 0 || writer.seen().count(key) > 0) continue;
    if (s.family != family) {
      family = s.family;
      out.family(s.family, s.help, MetricType::counter);
    }
    std::vector<LabelPair> labels;
    for (const auto& [k, v] : s.labels) labels.emplace_back(k, v);
    out.add(labels, s.offset);
  }
}

}  // namespace sp
