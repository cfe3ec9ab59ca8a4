#pragma once
// The KPIs of one published checkpoint, read out of that checkpoint's /metrics snapshot: the query
// API (query_api.h) and the console serve exactly what /metrics shows at the same checkpoint,
// because there is one source. Built on the HTTP thread (a scan of the snapshot's families, tens
// of microseconds for a few thousand series), so the pipeline thread only hands a pointer over.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/metrics_registry.h"

namespace sp {

// Cumulative counters of one brand (summed over channels), as /metrics shows them.
struct BrandTotals {
  double interactions = 0;
  double mentions = 0;
  double emv = 0;
  double leads = 0;
  double lead_value = 0;
  double web_visits = 0;
  double spikes = 0;
};

struct BrandKpis {
  std::string brand;
  std::optional<double> reputation_index;
  std::optional<double> share_of_voice;
  std::optional<double> innovation_rate;
  std::optional<double> unique_actors_1h;
  std::optional<double> unique_actors_24h;
  std::optional<double> zscore;
  std::map<std::string, double> engagement_rate;  // per channel
  BrandTotals totals;
  std::optional<double> daily_spend;  // sum over channels; absent when not configured
  bool alert_active = false;          // a live episode is open
  std::string alert_kind;             // its kind, when active
  double alert_severity = 0;
};

struct PipelineKpis {
  double consumed_total = 0;
  double accepted_total = 0;
  double dlq_total = 0;
  double lag_messages = 0;  // summed over owned partitions
  std::optional<double> watermark_delay_seconds;
};

// Contract: immutable once built; shared between the HTTP thread and readers of latest().
struct KpiSnapshot {
  uint64_t checkpoint = 0;         // publish sequence of this process, from 1
  int64_t checkpoint_time_ms = 0;  // wall clock at publication
  std::optional<int64_t> watermark_ms;
  std::vector<BrandKpis> brands;  // sorted by name
  PipelineKpis pipeline;

  const BrandKpis* find(std::string_view brand) const;
};

KpiSnapshot extract_kpis(const MetricsSnapshot& metrics, uint64_t checkpoint,
                         int64_t checkpoint_time_ms);

}  // namespace sp
