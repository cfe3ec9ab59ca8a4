#include "pipeline/query_api.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "operators/time.h"
#include "operators/window_record_format.h"

namespace sp {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr size_t kFirstCounter = 6;  // kpi_names(): gauges first, then counters
constexpr size_t kEmv = 7;
constexpr size_t kLeadValue = 9;
constexpr int64_t kMinuteMs = 60'000;

void append_number(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

std::string number(double v) {
  std::string s;
  append_number(s, v);
  return s;
}

std::string number(const std::optional<double>& v) { return v ? number(*v) : "null"; }

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string time_text(int64_t ms) { return json_string(format_rfc3339_ms(from_epoch_ms(ms))); }

std::string object(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string out = "{";
  for (const auto& [k, v] : fields) {
    if (out.size() > 1) out += ',';
    out.append(json_string(k)).append(":").append(v);
  }
  return out + "}";
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hex_digit(s[i + 1]) >= 0 &&
               hex_digit(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::map<std::string, std::string, std::less<>> parse_query(std::string_view q) {
  std::map<std::string, std::string, std::less<>> out;
  while (!q.empty()) {
    const auto amp = q.find('&');
    const std::string_view item = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    if (item.empty()) continue;
    const auto eq = item.find('=');
    out[percent_decode(item.substr(0, eq))] =
        eq == std::string_view::npos ? std::string() : percent_decode(item.substr(eq + 1));
  }
  return out;
}

std::optional<int64_t> parse_int(std::string_view s) {
  int64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

// Epoch milliseconds, or RFC 3339 (`2026-11-24T10:00:00Z`, fraction and offset allowed).
std::optional<int64_t> parse_time(std::string_view s) {
  if (auto ms = parse_int(s)) return ms;
  if (s.size() < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
      s[13] != ':' || s[16] != ':') {
    return std::nullopt;
  }
  auto field = [&](size_t pos, size_t len) { return parse_int(s.substr(pos, len)); };
  const auto year = field(0, 4), mon = field(5, 2), day = field(8, 2), hour = field(11, 2),
             min = field(14, 2), sec = field(17, 2);
  if (!year || !mon || !day || !hour || !min || !sec || *mon < 1 || *mon > 12 || *day < 1 ||
      *day > 31 || *hour > 23 || *min > 59 || *sec > 60) {
    return std::nullopt;
  }
  size_t i = 19;
  int64_t frac_ms = 0;
  if (i < s.size() && s[i] == '.') {
    int64_t scale = 100;
    size_t digits = 0;
    for (++i; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, ++digits) {
      frac_ms += (s[i] - '0') * scale;
      scale /= 10;
    }
    if (digits == 0) return std::nullopt;
  }
  int64_t offset_min = 0;
  const std::string_view zone = s.substr(i);
  if (zone == "Z" || zone == "z") {
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    const auto oh = parse_int(zone.substr(1, 2)), om = parse_int(zone.substr(4, 2));
    if (!oh || !om) return std::nullopt;
    offset_min = (*oh * 60 + *om) * (zone[0] == '-' ? -1 : 1);
  } else {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = static_cast<int>(*year - 1900);
  tm.tm_mon = static_cast<int>(*mon - 1);
  tm.tm_mday = static_cast<int>(*day);
  tm.tm_hour = static_cast<int>(*hour);
  tm.tm_min = static_cast<int>(*min);
  tm.tm_sec = static_cast<int>(*sec);
  const int64_t epoch_s = static_cast<int64_t>(::timegm(&tm));
  return (epoch_s - offset_min * 60) * 1000 + frac_ms;
}

// The fields the alerts topic record carries first (SPEC 5): "brand", then "bucket_start".
std::string json_string_field(std::string_view json, std::string_view name) {
  const std::string key = "\"" + std::string(name) + "\":\"";
  const auto at = json.find(key);
  if (at == std::string_view::npos) return {};
  const auto start = at + key.size();
  const auto end = json.find('"', start);
  return end == std::string_view::npos ? std::string()
                                       : std::string(json.substr(start, end - start));
}

}  // namespace

const std::vector<std::string_view>& QueryApi::kpi_names() {
  static const std::vector<std::string_view> names = {"reputation_index",
                                                      "share_of_voice",
                                                      "innovation_rate",
                                                      "unique_actors_1h",
                                                      "unique_actors_24h",
                                                      "zscore",
                                                      "interactions",
                                                      "emv",
                                                      "leads",
                                                      "lead_value",
                                                      "web_visits"};
  return names;
}

ApiResponse QueryApi::error(int status, std::string_view code, std::string_view message) {
  ApiResponse r;
  r.status = status;
  r.body = "{\"error\":" + json_string(code) + ",\"message\":" + json_string(message) + "}";
  if (status == 503) r.extra_headers = "Retry-After: 1\r\n";
  return r;
}

QueryApi::Point QueryApi::point_of(const BrandKpis& b, int64_t minute) {
  Point p;
  p.minute = minute;
  p.values = {b.reputation_index.value_or(kNaN),
              b.share_of_voice.value_or(kNaN),
              b.innovation_rate.value_or(kNaN),
              b.unique_actors_1h.value_or(kNaN),
              b.unique_actors_24h.value_or(kNaN),
              b.zscore.value_or(kNaN),
              b.totals.interactions,
              b.totals.emv,
              b.totals.leads,
              b.totals.lead_value,
              b.totals.web_visits};
  return p;
}

QueryApi::Window QueryApi::window(const BrandKpis& b, int64_t minutes) const {
  Window w;  // zero counters: a brand first seen after the first checkpoint
  if (!latest_->watermark_ms || !start_minute_) return w;
  const int64_t now = floor_div(*latest_->watermark_ms, kMinuteMs);
  if (auto ring = rings_.find(b.brand); ring != rings_.end()) {
    for (auto it = ring->second.points.rbegin(); it != ring->second.points.rend(); ++it) {
      if (it->minute <= now - minutes) {  // the end of the minute before the window
        w.base = *it;
        w.minutes = minutes;
        return w;
      }
    }
  }
  if (auto s = start_.find(b.brand); s != start_.end()) w.base = s->second;
  w.minutes = std::min(minutes, now - *start_minute_);
  return w;
}

std::string QueryApi::window_json(const BrandKpis& b, int64_t minutes) const {
  const Window w = window(b, minutes);
  const Point now = point_of(b, 0);
  std::vector<std::pair<std::string, std::string>> f;
  f.emplace_back("minutes", std::to_string(w.minutes));
  for (size_t i = kFirstCounter; i < kValues; ++i) {
    f.emplace_back(std::string(kpi_names()[i]), number(now.values[i] - w.base.values[i]));
  }
  return object(f);
}

std::vector<std::pair<std::string, std::string>> QueryApi::brand_fields(const BrandKpis& b) const {
  std::vector<std::pair<std::string, std::string>> f;
  f.emplace_back("reputation_index", number(b.reputation_index));
  // Change of the index over the last hour of closed minutes (or since the first one kept).
  std::optional<double> trend;
  if (auto ring = rings_.find(b.brand);
      ring != rings_.end() && b.reputation_index && latest_->watermark_ms) {
    const int64_t now = floor_div(*latest_->watermark_ms, kMinuteMs);
    for (const Point& p : ring->second.points) {
      if (p.minute >= now - 60 && std::isfinite(p.values[0])) {
        trend = *b.reputation_index - p.values[0];
        break;
      }
    }
  }
  f.emplace_back("reputation_trend_1h", number(trend));
  f.emplace_back("share_of_voice", number(b.share_of_voice));
  std::vector<std::pair<std::string, std::string>> er;
  for (const auto& [channel, v] : b.engagement_rate) er.emplace_back(channel, number(v));
  f.emplace_back("engagement_rate", object(er));
  f.emplace_back("unique_actors_1h", number(b.unique_actors_1h));
  f.emplace_back("unique_actors_24h", number(b.unique_actors_24h));
  f.emplace_back("innovation_rate", number(b.innovation_rate));
  f.emplace_back("last_1h", window_json(b, 60));
  f.emplace_back("last_24h", window_json(b, kSeriesMinutes));
  f.emplace_back("totals", object({{"interactions", number(b.totals.interactions)},
                                   {"mentions", number(b.totals.mentions)},
                                   {"emv", number(b.totals.emv)},
                                   {"leads", number(b.totals.leads)},
                                   {"lead_value", number(b.totals.lead_value)},
                                   {"web_visits", number(b.totals.web_visits)}}));
  f.emplace_back("daily_spend", number(b.daily_spend));
  // ROI over the last 24 h (or the part of it this process has seen), against the daily spend
  // prorated to the same minutes: (lead value + EMV - spend) / spend, as the roi recording rule.
  std::optional<double> roi;
  if (const Window w = window(b, kSeriesMinutes);
      b.daily_spend && *b.daily_spend > 0 && w.minutes > 0) {
    const double ret =
        (b.totals.lead_value - w.base.values[kLeadValue]) + (b.totals.emv - w.base.values[kEmv]);
    const double spend = *b.daily_spend * static_cast<double>(w.minutes) / kSeriesMinutes;
    roi = (ret - spend) / spend;
  }
  f.emplace_back("roi_24h", number(roi));
  f.emplace_back("spike", object({{"active", b.alert_active ? "true" : "false"},
                                  {"kind", b.alert_active ? json_string(b.alert_kind) : "null"},
                                  {"severity", number(b.alert_severity)},
                                  {"zscore", number(b.zscore)},
                                  {"spikes_total", number(b.totals.spikes)}}));
  return f;
}

std::string QueryApi::header_json(const KpiSnapshot& s) const {
  std::string h = "\"checkpoint\":" + std::to_string(s.checkpoint) +
                  ",\"checkpoint_time\":" + time_text(s.checkpoint_time_ms) +
                  ",\"watermark\":" + (s.watermark_ms ? time_text(*s.watermark_ms) : "null");
  h += ",\"pipeline\":" +
       object({{"events_per_second", number(events_per_second_)},
               {"consumed_total", number(s.pipeline.consumed_total)},
               {"accepted_total", number(s.pipeline.accepted_total)},
               {"lag_messages", number(s.pipeline.lag_messages)},
               {"watermark_delay_seconds", number(s.pipeline.watermark_delay_seconds)},
               {"dlq_total", number(s.pipeline.dlq_total)},
               {"dlq_per_second", number(dlq_per_second_)}});
  return h;
}

std::shared_ptr<const std::string> QueryApi::on_checkpoint(const MetricsSnapshot& metrics,
                                                           uint64_t checkpoint,
                                                           const std::vector<std::string>& alerts,
                                                           int64_t now_ms) {
  std::lock_guard lock(mu_);
  const uint64_t seq = checkpoint;
  auto snap = std::make_shared<const KpiSnapshot>(extract_kpis(metrics, seq, now_ms));
  previous_ = latest_;
  latest_ = snap;
  if (previous_) {
    const double dt = static_cast<double>(now_ms - previous_->checkpoint_time_ms) / 1000.0;
    if (dt > 0) {
      events_per_second_ =
          std::max(0.0, snap->pipeline.consumed_total - previous_->pipeline.consumed_total) / dt;
      dlq_per_second_ =
          std::max(0.0, snap->pipeline.dlq_total - previous_->pipeline.dlq_total) / dt;
    }
  }
  // Series: the watermark left minute p for minute c, so p is closed with the values of the
  // last checkpoint inside it (the previous one). Minutes skipped in one step have no point.
  if (snap->watermark_ms) {
    const int64_t c = floor_div(*snap->watermark_ms, kMinuteMs);
    for (const BrandKpis& b : snap->brands) {
      if (start_.contains(b.brand)) continue;
      start_[b.brand] = start_minute_ ? Point{} : point_of(b, c);
    }
    if (!start_minute_) start_minute_ = c;
    if (previous_ && previous_->watermark_ms) {
      const int64_t p = floor_div(*previous_->watermark_ms, kMinuteMs);
      if (c > p) {
        for (const BrandKpis& b : previous_->brands) {
          auto& points = rings_[b.brand].points;
          // After a restart the watermark may resume inside minutes already kept.
          while (!points.empty() && points.back().minute >= p) points.pop_back();
          points.push_back(point_of(b, p));
          while (!points.empty() && points.front().minute <= c - 1 - kSeriesMinutes) {
            points.pop_front();
          }
        }
        save_series();
      }
    }
  }
  std::string new_alerts;
  for (const std::string& json : alerts) {
    AlertEntry e;
    e.checkpoint = seq;
    e.brand = json_string_field(json, "brand");
    e.bucket_start_ms = parse_time(json_string_field(json, "bucket_start")).value_or(0);
    e.started = json_string_field(json, "episode") == "started";
    e.json = json;
    if (!new_alerts.empty()) new_alerts += ',';
    new_alerts += json;
    alerts_.push_back(std::move(e));
    if (alerts_.size() > kAlertCap) alerts_.pop_front();
  }

  header_ = header_json(*snap);
  std::string changed;
  std::string full;
  std::map<std::string, std::string, std::less<>> brand_json;
  for (const BrandKpis& b : snap->brands) {
    auto fields = brand_fields(b);
    std::vector<std::pair<std::string, std::string>> diff;
    const auto old = fields_.find(b.brand);
    for (size_t i = 0; i < fields.size(); ++i) {
      if (old == fields_.end() || i >= old->second.size() || old->second[i] != fields[i])
        diff.push_back(fields[i]);
    }
    const std::string json = object(fields);
    if (!diff.empty()) {
      if (!changed.empty()) changed += ',';
      changed += json_string(b.brand) + ":" + object(diff);
    }
    if (!full.empty()) full += ',';
    full += json_string(b.brand) + ":" + json;
    brand_json[b.brand] = json;
    fields_[b.brand] = std::move(fields);
  }
  brand_json_ = std::move(brand_json);
  auto frame = [&](bool is_full, const std::string& brands, const std::string& alert_list) {
    return "id: " + std::to_string(run_) + "-" + std::to_string(seq) +
           "\nevent: checkpoint\ndata: {" + header_ + ",\"full\":" + (is_full ? "true" : "false") +
           ",\"brands\":{" + brands + "},\"alerts\":[" + alert_list + "]}\n\n";
  };
  full_event_ = frame(true, full, "");
  auto event = std::make_shared<const std::string>(frame(false, changed, new_alerts));
  events_.emplace_back(seq, event);
  if (events_.size() > kEventCap) events_.pop_front();
  return event;
}

std::optional<ApiResponse> QueryApi::handle(std::string_view path, std::string_view query) const {
  if (!path.starts_with("/api/")) return std::nullopt;
  const auto params = parse_query(query);
  auto param = [&](std::string_view name) -> std::optional<std::string> {
    auto it = params.find(name);
    return it == params.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  const bool known_path =
      path == "/api/v1/kpis" || path == "/api/v1/series" || path == "/api/v1/alerts";
  if (!known_path) return error(404, "not_found", "no such endpoint: " + std::string(path));
  std::lock_guard lock(mu_);
  if (!latest_) return error(503, "no_checkpoint", "no checkpoint published yet");
  const auto brand = param("brand");
  if (brand && !known_brand(*brand))
    return error(400, "unknown_brand", "unknown brand '" + *brand + "'");
  ApiResponse r;
  if (path == "/api/v1/kpis") {
    r.body = "{" + header_ + ",\"brands\":{";
    bool first = true;
    for (const auto& [name, json] : brand_json_) {
      if (brand && name != *brand) continue;
      if (!first) r.body += ',';
      first = false;
      r.body += json_string(name) + ":" + json;
    }
    r.body += "}}";
    return r;
  }
  if (path == "/api/v1/series") {
    if (!brand) return error(400, "missing_parameter", "brand is required");
    const auto kpi = param("kpi");
    if (!kpi) return error(400, "missing_parameter", "kpi is required");
    const auto& names = kpi_names();
    if (std::find(names.begin(), names.end(), std::string_view(*kpi)) == names.end())
      return error(400, "unknown_kpi", "unknown kpi '" + *kpi + "'");
    int64_t minutes = 60;
    if (const auto m = param("minutes")) {
      const auto v = parse_int(*m);
      if (!v || *v < 1 || *v > kSeriesMinutes)
        return error(400, "bad_parameter", "minutes must be an integer from 1 to 1440");
      minutes = *v;
    }
    const size_t k = static_cast<size_t>(
        std::find(names.begin(), names.end(), std::string_view(*kpi)) - names.begin());
    r.body = "{\"checkpoint\":" + std::to_string(latest_->checkpoint) +
             ",\"brand\":" + json_string(*brand) + ",\"kpi\":" + json_string(*kpi) +
             ",\"minutes\":" + std::to_string(minutes) + ",\"points\":[";
    bool first = true;
    for (const auto& [t, v] : series_unlocked(*brand, k, minutes)) {
      if (!first) r.body += ',';
      first = false;
      r.body += "[" + std::to_string(t) + ",";
      append_number(r.body, v);
      r.body += "]";
    }
    r.body += "]}";
    return r;
  }
  // /api/v1/alerts
  int64_t since = std::numeric_limits<int64_t>::min();
  if (const auto s = param("since")) {
    const auto t = parse_time(*s);
    if (!t) {
      return error(400, "bad_parameter",
                   "since must be RFC 3339 (2026-11-24T10:00:00Z) or epoch milliseconds");
    }
    since = *t;
  }
  r.body = "{\"checkpoint\":" + std::to_string(latest_->checkpoint) + ",\"alerts\":[";
  bool first = true;
  for (const AlertEntry& e : alerts_) {
    if (e.bucket_start_ms < since || (brand && e.brand != *brand)) continue;
    if (!first) r.body += ',';
    first = false;
    r.body += e.json;
  }
  r.body += "]}";
  return r;
}

namespace {
constexpr std::string_view kSeriesMagic = "socialpulse-console-series 1";
}  // namespace

bool QueryApi::set_series_file(std::string path) {
  std::lock_guard lock(mu_);
  series_file_ = std::move(path);
  std::ifstream in(series_file_);
  if (!in) return false;
  std::string line;
  if (!std::getline(in, line) || line != kSeriesMagic) return false;
  std::optional<int64_t> start_minute;
  std::map<std::string, Point, std::less<>> start;
  std::map<std::string, Ring, std::less<>> rings;
  std::deque<AlertEntry> alerts;
  auto read_values = [](std::istringstream& fields, Point& p) {
    for (double& v : p.values) {
      std::string text;
      if (!(fields >> text)) return false;
      v = std::strtod(text.c_str(), nullptr);  // "nan" included
    }
    return true;
  };
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string kind, brand;
    fields >> kind;
    if (kind == "start") {
      int64_t m = 0;
      if (!(fields >> m)) return false;
      start_minute = m;
    } else if (kind == "base" || kind == "point") {
      Point p;
      if (!(fields >> brand)) return false;
      if (kind == "point" && !(fields >> p.minute)) return false;
      if (!read_values(fields, p)) return false;
      if (kind == "base") {
        start[brand] = p;
      } else {
        rings[brand].points.push_back(p);
      }
    } else if (kind == "alert") {
      AlertEntry e;  // checkpoint 0: before this process (the demo's story does not repeat it)
      int started = 0;
      if (!(fields >> e.brand >> e.bucket_start_ms >> started)) return false;
      e.started = started != 0;
      fields.get();  // the space before the record
      std::getline(fields, e.json);
      alerts.push_back(std::move(e));
    } else if (kind == "end") {
      start_minute_ = start_minute;
      start_ = std::move(start);
      rings_ = std::move(rings);
      alerts_ = std::move(alerts);
      return true;
    }
  }
  return false;  // cut short: keep nothing of it
}

void QueryApi::save_series() const {
  if (series_file_.empty()) return;
  std::string out(kSeriesMagic);
  out += '\n';
  char buf[64];
  auto values = [&](const Point& p) {
    for (double v : p.values) {
      std::snprintf(buf, sizeof buf, " %.17g", v);
      out += buf;
    }
    out += '\n';
  };
  if (start_minute_) out += "start " + std::to_string(*start_minute_) + "\n";
  for (const auto& [brand, p] : start_) {
    out += "base " + brand;
    values(p);
  }
  for (const auto& [brand, ring] : rings_) {
    for (const Point& p : ring.points) {
      out += "point " + brand + " " + std::to_string(p.minute);
      values(p);
    }
  }
  for (const AlertEntry& e : alerts_) {  // records are one-line JSON
    out += "alert " + e.brand + " " + std::to_string(e.bucket_start_ms) + " " +
           (e.started ? "1 " : "0 ") + e.json + "\n";
  }
  out += "end\n";
  // A display ring, not state: a failed write costs the series after a restart, nothing else.
  const std::string tmp = series_file_ + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    if (!f || !(f << out)) return;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, series_file_, ec);
}

void QueryApi::set_configured_brands(std::vector<std::string> brands) {
  std::lock_guard lock(mu_);
  configured_brands_ = std::move(brands);
}

bool QueryApi::known_brand(std::string_view brand) const {
  return brand_json_.contains(brand) ||
         std::find(configured_brands_.begin(), configured_brands_.end(), brand) !=
             configured_brands_.end();
}

std::string QueryApi::stream_start(std::string_view last_id) const {
  std::optional<uint64_t> last_event_id;
  if (const auto dash = last_id.find('-'); dash != std::string_view::npos) {
    const auto run = parse_int(last_id.substr(0, dash));
    const auto checkpoint = parse_int(last_id.substr(dash + 1));
    if (run && checkpoint && static_cast<uint64_t>(*run) == run_ && *checkpoint >= 0)
      last_event_id = static_cast<uint64_t>(*checkpoint);
  }
  std::lock_guard lock(mu_);
  std::string out = "retry: 2000\n\n";
  if (!latest_) return out;
  if (last_event_id && *last_event_id == latest_->checkpoint) return out;
  if (last_event_id && !events_.empty() && *last_event_id + 1 >= events_.front().first &&
      *last_event_id < latest_->checkpoint) {
    for (const auto& [id, text] : events_) {
      if (id > *last_event_id) out += *text;
    }
    return out;
  }
  return out + full_event_;
}

std::shared_ptr<const KpiSnapshot> QueryApi::latest() const {
  std::lock_guard lock(mu_);
  return latest_;
}

std::vector<AlertEntry> QueryApi::alerts_after(uint64_t checkpoint) const {
  std::lock_guard lock(mu_);
  std::vector<AlertEntry> out;
  for (const AlertEntry& e : alerts_) {
    if (e.checkpoint > checkpoint) out.push_back(e);
  }
  return out;
}

std::vector<std::pair<int64_t, double>> QueryApi::series(std::string_view brand,
                                                         std::string_view kpi,
                                                         int64_t minutes) const {
  const auto& names = kpi_names();
  const auto it = std::find(names.begin(), names.end(), kpi);
  if (it == names.end()) return {};
  std::lock_guard lock(mu_);
  return series_unlocked(brand, static_cast<size_t>(it - names.begin()), minutes);
}

std::vector<std::pair<int64_t, double>> QueryApi::series_unlocked(std::string_view brand, size_t k,
                                                                  int64_t minutes) const {
  std::vector<std::pair<int64_t, double>> out;
  auto ring = rings_.find(brand);
  if (ring == rings_.end() || !latest_ || !latest_->watermark_ms) return out;
  const int64_t now = floor_div(*latest_->watermark_ms, kMinuteMs);
  const auto start = start_.find(brand);
  const Point* before = nullptr;
  for (const Point& p : ring->second.points) {
    if (p.minute >= now - minutes) {
      double v = p.values[k];
      // Counters: the increase since the previous point (the first one: since the first
      // checkpoint).
      if (k >= kFirstCounter) {
        v -= before != nullptr       ? before->values[k]
             : start != start_.end() ? start->second.values[k]
                                     : kNaN;
      }
      out.emplace_back(p.minute * kMinuteMs, v);
    }
    before = &p;
  }
  return out;
}

}  // namespace sp
