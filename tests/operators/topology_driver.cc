#include "tests/operators/topology_driver.h"

#include <xxhash.h>

#include <charconv>
#include <cstdlib>
#include <sstream>

#include "operators/window_operators.h"

namespace sp::testing {
namespace {

template <typename T>
bool parse_number(std::string_view s, T& out) {
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

bool parse_double(std::string_view s, double& out) {
  // std::from_chars for double is available in GCC 11+, but strtod keeps this portable.
  std::string copy(s);
  char* end = nullptr;
  out = std::strtod(copy.c_str(), &end);
  return end == copy.c_str() + copy.size() && !copy.empty();
}

// Sorted, merged text lines: families reported by several operators are summed, like the exporter.
class TextMetricsWriter : public MetricsWriter {
 public:
  void family(std::string_view name, std::string_view, MetricType) override { name_ = name; }
  void add(std::span<const LabelPair> labels, double value) override {
    lines_[name_ + render(labels, {})] += value;
  }
  void add_histogram(std::span<const LabelPair> labels, std::span<const double> bounds,
                     std::span<const uint64_t> counts, double sum) override {
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= bounds.size(); ++i) {
      cumulative += counts[i];
      std::ostringstream le;
      if (i < bounds.size()) {
        le << bounds[i];
      } else {
        le << "+Inf";
      }
      lines_[name_ + "_bucket" + render(labels, le.str())] += static_cast<double>(cumulative);
    }
    lines_[name_ + "_sum" + render(labels, {})] += sum;
    lines_[name_ + "_count" + render(labels, {})] += static_cast<double>(cumulative);
  }
  std::string text() const {
    std::string out;
    for (const auto& [key, value] : lines_) {
      std::ostringstream v;
      v.precision(17);
      v << value;
      out += key + " " + v.str() + "\n";
    }
    return out;
  }

 private:
  static std::string render(std::span<const LabelPair> labels, const std::string& le) {
    if (labels.empty() && le.empty()) return {};
    std::string out = "{";
    for (const auto& [k, v] : labels) {
      if (out.size() > 1) out += ",";
      out.append(k).append("=\"").append(v).append("\"");
    }
    if (!le.empty()) out += std::string(out.size() > 1 ? "," : "") + "le=\"" + le + "\"";
    return out + "}";
  }
  std::string name_;
  std::map<std::string, double> lines_;
};

}  // namespace

OwnedEvent& OwnedEvent::operator=(const OwnedEvent& o) {
  partition = o.partition;
  event = o.event;
  id = o.id;
  actor_id = o.actor_id;
  brand_name = o.brand_name;
  bind();
  return *this;
}

void OwnedEvent::bind() {
  event.id = id;
  event.actor_id = actor_id;
  event.brand_name = brand_name;
}

std::optional<EventTime> parse_time(std::string_view s) {
  // Fixed layout YYYY-MM-DDTHH:MM:SS[.mmm]Z: enough for test scripts.
  if (s.size() < 20 || s.back() != 'Z' || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
      s[13] != ':' || s[16] != ':') {
    return std::nullopt;
  }
  int y = 0;
  unsigned mo = 0, d = 0;
  int64_t h = 0, mi = 0, sec = 0, ms = 0;
  if (!parse_number(s.substr(0, 4), y) || !parse_number(s.substr(5, 2), mo) ||
      !parse_number(s.substr(8, 2), d) || !parse_number(s.substr(11, 2), h) ||
      !parse_number(s.substr(14, 2), mi) || !parse_number(s.substr(17, 2), sec)) {
    return std::nullopt;
  }
  if (s.size() == 24 && s[19] == '.') {
    if (!parse_number(s.substr(20, 3), ms)) return std::nullopt;
  } else if (s.size() != 20) {
    return std::nullopt;
  }
  using namespace std::chrono;
  const sys_days day{year{y} / month{mo} / std::chrono::day{d}};
  return EventTime{day} + hours{h} + minutes{mi} + seconds{sec} + Millis{ms};
}

std::optional<Millis> parse_duration(std::string_view s) {
  size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
  int64_t n = 0;
  if (digits == 0 || !parse_number(s.substr(0, digits), n)) return std::nullopt;
  const std::string_view unit = s.substr(digits);
  if (unit == "ms") return Millis{n};
  if (unit == "s") return std::chrono::seconds{n};
  if (unit == "m") return std::chrono::minutes{n};
  if (unit == "h") return std::chrono::hours{n};
  return std::nullopt;
}

Result<OwnedEvent> parse_event_line(std::string_view line, const Vocabulary& vocabulary) {
  OwnedEvent out;
  bool has_p = false, has_t = false, has_brand = false, has_type = false;
  std::string_view rest = line;
  auto bad = [&](std::string_view what) {
    return make_error(ErrorKind::invalid_input,
                      "bad event line (" + std::string(what) + "): " + std::string(line));
  };
  while (!rest.empty()) {
    const size_t sp = rest.find(' ');
    const std::string_view token = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp + 1);
    if (token.empty()) continue;
    const size_t eq = token.find('=');
    if (eq == std::string_view::npos) return bad(token);
    const std::string_view key = token.substr(0, eq), value = token.substr(eq + 1);
    Event& e = out.event;
    bool ok = true;
    if (key == "p") {
      ok = parse_number(value, out.partition.value);
      has_p = true;
    } else if (key == "t") {
      auto t = parse_time(value);
      ok = t.has_value();
      if (ok) e.time = *t;
      has_t = true;
    } else if (key == "brand") {
      out.brand_name = value;
      e.brand = vocabulary.brand(value);
      has_brand = true;
    } else if (key == "channel") {
      e.channel = vocabulary.channel(value);
    } else if (key == "type") {
      auto type = parse_event_type(value);
      ok = type.has_value();
      if (ok) e.type = *type;
      has_type = true;
    } else if (key == "count") {
      ok = parse_number(value, e.count);
    } else if (key == "actor") {
      out.actor_id = value;
      e.has_actor = true;
      e.actor_hash = XXH3_64bits(value.data(), value.size());
    } else if (key == "role") {
      auto role = parse_role(value);
      ok = role.has_value();
      if (ok) e.role = *role;
    } else if (key == "sentiment") {
      ok = parse_double(value, e.sentiment);
      e.has_sentiment = true;
    } else if (key == "rating") {
      int rating = 0;
      ok = parse_number(value, rating);
      if (!e.has_sentiment) e.sentiment = (rating - 3) / 2.0;  // SPEC 1
      e.has_sentiment = true;
    } else if (key == "reach") {
      ok = parse_number(value, e.reach);
    } else if (key == "followers") {
      ok = parse_number(value, e.followers);
    } else if (key == "value") {
      ok = parse_double(value, e.value);
      e.has_value = true;
    } else if (key == "id") {
      out.id = value;
    } else {
      return bad(key);
    }
    if (!ok) return bad(token);
  }
  if (!has_p || !has_t || !has_brand || !has_type) return bad("missing p, t, brand or type");
  out.bind();
  return out;
}

TopologyDriver::TopologyDriver(std::vector<WindowSpec> windows, Vocabulary vocabulary,
                               WatermarkSettings watermark, WallTime start, KpiSettings kpi,
                               EmvSettings emv)
    : windows_(std::move(windows)),
      vocabulary_(std::move(vocabulary)),
      watermark_settings_(watermark),
      kpi_(kpi),
      emv_(emv),
      now_(start) {
  build();
}

void TopologyDriver::build() {
  TopologySpec spec;
  spec.vocabulary = vocabulary_;
  spec.windows = windows_;
  spec.kpi = kpi_;
  spec.emv = emv_;
  spec.kpi_operators = false;
  spec.watermark = watermark_settings_;
  topology_ = std::make_unique<Topology>(std::move(spec));
}

void TopologyDriver::drain() {
  auto& pending = topology_->pending();
  for (auto& r : pending) records_.push_back(std::move(r));
  pending.clear();
}

void TopologyDriver::on_idle() {
  topology_->on_idle(now_, [this](PartitionId p) { return lagging_.contains(p); });
  drain();
}

void TopologyDriver::assign(PartitionId partition) {
  assigned_.insert(partition);
  MemoryState none;
  auto assigned = topology_->assign(partition, none);
  EXPECT_TRUE(assigned.has_value()) << assigned.error().message;
  // The runner evaluates idleness right after an assignment: that starts the idle timer.
  on_idle();
}

void TopologyDriver::set_lag(PartitionId partition, bool lagging) {
  if (lagging) {
    lagging_.insert(partition);
  } else {
    lagging_.erase(partition);
  }
}

void TopologyDriver::pipe(PartitionId partition, const Event& event) {
  if (!assigned_.contains(partition)) assign(partition);
  Topology::Partition* p = topology_->find(partition);
  Deduplicator::Key key{++anonymous_events_, 0x5eed};
  if (!event.id.empty()) key = Deduplicator::key_of(event);
  Offset& offset = next_offset_[partition];
  topology_->process(*p, offset, event, key, now_);
  offset = Offset{offset.value + 1};
  drain();
}

void TopologyDriver::advance_wall_clock(Millis d) {
  now_ += d;
  on_idle();
}

void TopologyDriver::checkpoint() {
  topology_->before_checkpoint();
  drain();
  store_checkpoint();
}

void TopologyDriver::store_checkpoint() {
  // Records the keys one checkpoint writes (puts and removes) on their way into the store.
  class Recording final : public StateWriter {
   public:
    Recording(MemoryState& store, std::vector<std::string>& keys) : store_(store), keys_(keys) {}
    void put(std::string_view key, std::string_view value) override {
      keys_.emplace_back(key);
      store_.put(key, value);
    }
    void remove(std::string_view key) override {
      keys_.emplace_back(key);
      store_.remove(key);
    }

   private:
    MemoryState& store_;
    std::vector<std::string>& keys_;
  };
  last_checkpoint_keys_.clear();
  Recording out(store_, last_checkpoint_keys_);
  topology_->checkpoint(out);
  topology_->checkpoint_committed();
}

std::map<std::string, std::string> TopologyDriver::snapshot_all() {
  store_checkpoint();
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : store_.entries()) {
    if (key.rfind("dedup/", 0) != 0) out.emplace(key, value);
  }
  return out;
}

::testing::AssertionResult TopologyDriver::snapshot_and_restore(
    const std::function<void(MemoryState&)>& rewrite) {
  store_checkpoint();
  const auto before = store_.entries();
  if (rewrite) rewrite(store_);
  build();
  if (auto s = topology_->restore_global(store_); !s) {
    return ::testing::AssertionFailure() << "global restore: " << s.error().message;
  }
  for (PartitionId p : assigned_) {
    if (auto s = topology_->assign(p, store_); !s) {
      return ::testing::AssertionFailure() << "partition restore: " << s.error().message;
    }
  }
  if (!store_.dropped().empty()) {
    return ::testing::AssertionFailure() << "restore dropped " << store_.dropped().front().key;
  }
  on_idle();
  store_checkpoint();
  for (const auto& [key, value] : before) {
    const auto it = store_.entries().find(key);
    if (it == store_.entries().end() || it->second != value) {
      return ::testing::AssertionFailure() << "state key " << key << " changed after restore";
    }
  }
  if (store_.entries().size() != before.size()) {
    auto failure = ::testing::AssertionFailure() << "restore added state keys:";
    for (const auto& [key, value] : store_.entries()) {
      if (before.find(key) == before.end()) failure << " " << key;
    }
    return failure;
  }
  return ::testing::AssertionSuccess();
}

void TopologyDriver::checkpoints_of_a_restore() {
  store_checkpoint();
  store_checkpoint();  // the restored topology's (its idle timers start afresh: no on_idle here)
}

std::string TopologyDriver::metrics_text() const {
  TextMetricsWriter writer;
  for (const auto& op : topology_->operators()) op->collect(writer);
  return writer.text();
}

}  // namespace sp::testing
