#include "pipeline/demo_narrator.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>

#include "operators/time.h"
#include "operators/window_record_format.h"
#include "pipeline/thread_policy.h"

namespace sp {
namespace {

// A number field of the alert record (SPEC 5 alerts: flat fields before "explanation").
double number_field(const std::string& json, std::string_view name) {
  const std::string key = "\"" + std::string(name) + "\":";
  const auto at = json.find(key);
  return at == std::string::npos ? NAN : std::strtod(json.c_str() + at + key.size(), nullptr);
}

std::string string_field(const std::string& json, std::string_view name) {
  const std::string key = "\"" + std::string(name) + "\":\"";
  const auto at = json.find(key);
  if (at == std::string::npos) return {};
  const auto end = json.find('"', at + key.size());
  return json.substr(at + key.size(), end - at - key.size());
}

// "HH:MM" of an RFC 3339 field; "?" when the record lacks it (never throws on the narrator thread).
std::string minute_of(const std::string& rfc3339) {
  return rfc3339.size() >= 16 ? rfc3339.substr(11, 5) : "?";
}

std::string clock_text(int64_t ms) {
  return format_rfc3339_ms(from_epoch_ms(ms)).substr(11, 8);  // HH:MM:SS
}

}  // namespace

DemoNarrator::DemoNarrator(const QueryApi& api, std::FILE* out, std::chrono::milliseconds interval)
    : api_(api), out_(out), interval_(interval), color_(::isatty(::fileno(out)) == 1) {
  thread_ = std::thread([this] {
    name_thread("sp-narrator");
    run();
  });
}

DemoNarrator::~DemoNarrator() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string DemoNarrator::brand_lines(const QueryApi& api) {
  const auto snapshot = api.latest();
  if (!snapshot) return {};
  std::string out;
  const std::string when = clock_text(snapshot->checkpoint_time_ms);
  for (const BrandKpis& b : snapshot->brands) {
    const auto minute = api.series(b.brand, "interactions", 1);
    const double per_minute = minute.empty() ? NAN : minute.back().second;
    char line[160];
    char ri[16] = "   -";
    if (b.reputation_index) std::snprintf(ri, sizeof ri, "%5.1f", *b.reputation_index);
    char sov[16] = "   -";
    if (b.share_of_voice) std::snprintf(sov, sizeof sov, "%5.1f%%", *b.share_of_voice * 100);
    char epm[24] = "-";
    if (std::isfinite(per_minute)) std::snprintf(epm, sizeof epm, "%.0f", per_minute);
    std::snprintf(line, sizeof line, "%s  %-10s RI %s  SoV %s  interactions/min %s%s\n",
                  when.c_str(), b.brand.c_str(), ri, sov, epm, b.alert_active ? "  [ALERT]" : "");
    out += line;
  }
  return out;
}

std::string DemoNarrator::alert_line(const AlertEntry& alert, bool color) {
  const std::string& j = alert.json;
  const std::string minute = minute_of(string_field(j, "bucket_start"));
  const bool replay = j.find("\"replay\":true") != std::string::npos;
  std::string text;
  char buf[256];
  if (alert.started) {
    std::snprintf(buf, sizeof buf, "ALERT %s: %s started at %s UTC, severity %.0f, z = %.1f%s",
                  alert.brand.c_str(), string_field(j, "kind").c_str(), minute.c_str(),
                  number_field(j, "severity"), number_field(j, "zscore"),
                  replay ? " (replayed history)" : "");
  } else {
    std::snprintf(buf, sizeof buf, "ALERT %s: episode ended at %s UTC%s", alert.brand.c_str(),
                  minute_of(string_field(j, "episode_end")).c_str(),
                  replay ? " (replayed history)" : "");
  }
  text = buf;
  if (!color) return ">>> " + text + " <<<\n";
  return (alert.started ? "\033[1;97;41m " : "\033[1;97;42m ") + text + " \033[0m\n";
}

void DemoNarrator::run() {
  uint64_t alerts_seen = 0;
  auto next_lines = std::chrono::steady_clock::now() + interval_;
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; });
    if (stop_) break;
    std::string out;
    for (const AlertEntry& a : api_.alerts_after(alerts_seen)) {
      out += alert_line(a, color_);
      alerts_seen = a.checkpoint;
    }
    if (std::chrono::steady_clock::now() >= next_lines) {
      next_lines += interval_;
      out += brand_lines(api_);
    }
    if (!out.empty()) {
      std::fputs(out.c_str(), out_);
      std::fflush(out_);
    }
  }
}

}  // namespace sp
