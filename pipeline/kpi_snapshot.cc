#include "pipeline/kpi_snapshot.h"

#include <algorithm>
#include <string_view>

namespace sp {
namespace {

std::string_view label_of(const prometheus::ClientMetric& m, std::string_view name) {
  for (const auto& l : m.label) {
    if (l.name == name) return l.value;
  }
  return {};
}

double value_of(const prometheus::MetricFamily& f, const prometheus::ClientMetric& m) {
  switch (f.type) {
    case prometheus::MetricType::Counter:
      return m.counter.value;
    case prometheus::MetricType::Gauge:
      return m.gauge.value;
    default:
      return m.untyped.value;
  }
}

}  // namespace

const BrandKpis* KpiSnapshot::find(std::string_view brand) const {
  auto it = std::lower_bound(brands.begin(), brands.end(), brand,
                             [](const BrandKpis& b, std::string_view n) { return b.brand < n; });
  return it != brands.end() && it->brand == brand ? &*it : nullptr;
}

KpiSnapshot extract_kpis(const MetricsSnapshot& metrics, uint64_t checkpoint,
                         int64_t checkpoint_time_ms) {
  KpiSnapshot out;
  out.checkpoint = checkpoint;
  out.checkpoint_time_ms = checkpoint_time_ms;
  std::map<std::string, BrandKpis, std::less<>> brands;
  auto brand = [&](std::string_view name) -> BrandKpis& {
    auto it = brands.find(name);
    if (it == brands.end()) {
      it = brands.emplace(std::string(name), BrandKpis{}).first;
      it->second.brand = std::string(name);
    }
    return it->second;
  };
  for (const auto& f : metrics) {
    const std::string_view name = f.name;
    for (const auto& m : f.metric) {
      const double v = value_of(f, m);
      const std::string_view b = label_of(m, "brand");
      if (name == "socialpulse_events_consumed_total") {
        out.pipeline.consumed_total = v;
      } else if (name == "socialpulse_events_accepted_total") {
        out.pipeline.accepted_total = v;
      } else if (name == "socialpulse_dlq_messages_total") {
        out.pipeline.dlq_total = v;
      } else if (name == "socialpulse_consumer_lag_messages") {
        out.pipeline.lag_messages += v;
      } else if (name == "socialpulse_watermark_delay_seconds") {
        out.pipeline.watermark_delay_seconds = v;
      } else if (name == "socialpulse_watermark_timestamp_seconds") {
        out.watermark_ms = static_cast<int64_t>(v * 1000.0 + 0.5);
      } else if (b.empty()) {
        continue;
      } else if (name == "socialpulse_interactions_total") {
        brand(b).totals.interactions += v;
        if (label_of(m, "type") == "mention") brand(b).totals.mentions += v;
      } else if (name == "socialpulse_earned_media_value_total") {
        brand(b).totals.emv += v;
      } else if (name == "socialpulse_leads_total") {
        brand(b).totals.leads += v;
      } else if (name == "socialpulse_lead_value_total") {
        brand(b).totals.lead_value += v;
      } else if (name == "socialpulse_web_visits_total") {
        brand(b).totals.web_visits += v;
      } else if (name == "socialpulse_reputation_spikes_total") {
        brand(b).totals.spikes += v;
      } else if (name == "socialpulse_reputation_index") {
        brand(b).reputation_index = v;
      } else if (name == "socialpulse_share_of_voice_ratio") {
        brand(b).share_of_voice = v;
      } else if (name == "socialpulse_innovation_rate") {
        brand(b).innovation_rate = v;
      } else if (name == "socialpulse_reputation_anomaly_zscore") {
        brand(b).zscore = v;
      } else if (name == "socialpulse_unique_actors") {
        const std::string_view horizon = label_of(m, "horizon");
        if (horizon == "1h") brand(b).unique_actors_1h = v;
        if (horizon == "24h") brand(b).unique_actors_24h = v;
      } else if (name == "socialpulse_engagement_rate") {
        brand(b).engagement_rate[std::string(label_of(m, "channel"))] = v;
      } else if (name == "socialpulse_daily_spend") {
        auto& spend = brand(b).daily_spend;
        spend = spend.value_or(0) + v;
      } else if (name == "socialpulse_reputation_alert_active") {
        if (v > 0) {
          brand(b).alert_active = true;
          brand(b).alert_kind = std::string(label_of(m, "kind"));
        }
      } else if (name == "socialpulse_reputation_alert_severity") {
        brand(b).alert_severity = std::max(brand(b).alert_severity, v);
      }
    }
  }
  out.brands.reserve(brands.size());
  for (auto& [name, kpis] : brands) out.brands.push_back(std::move(kpis));
  return out;
}

}  // namespace sp
