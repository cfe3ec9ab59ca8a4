#pragma once
// The per-event derived quantities of SPEC 2, computed once per event and handed to every operator
// in its ProcessContext, so the window aggregates and the KPI counters always agree.
#include <algorithm>
#include <cmath>

#include "operators/event.h"
#include "operators/settings.h"

namespace sp {

struct Derived {
  int64_t impressions = 0;  // c on impression
  int64_t engagements = 0;  // c on kpi.engagement_types
  int64_t mentions = 0;     // c on mention
  int64_t web_visits = 0;   // c on click
  int64_t leads = 0;        // c on lead
  int64_t ideas = 0;        // c on idea
  int64_t reach = 0;        // the event's `reach` field (not multiplied by count)
  double lead_value = 0.0;  // `value` on lead events (the event's total, not multiplied by count)
  bool opinion = false;     // the event carries a sentiment (given or from rating)
  double opinion_weight = 0.0;  // w*c when opinion
  double positive = 0.0;        // w*s*c when s > 0.05
  double negative = 0.0;        // w*|s|*c when s < -0.05
  double emv = 0.0;
};

// Once per event, by whoever builds its ProcessContext (make_process_context, operator.h).
inline Derived derive(const Event& e, const KpiSettings& kpi, const EmvSettings& emv) {
  Derived d;
  const int64_t c = e.count;
  const auto t = static_cast<size_t>(e.type);
  d.impressions = e.type == EventType::impression ? c : 0;
  d.engagements = kpi.engagement_types[t] ? c : 0;
  d.mentions = e.type == EventType::mention ? c : 0;
  d.web_visits = e.type == EventType::click ? c : 0;
  d.leads = e.type == EventType::lead ? c : 0;
  d.ideas = e.type == EventType::idea ? c : 0;
  d.reach = e.reach;
  if (e.type == EventType::lead && e.has_value) d.lead_value = e.value;
  if (e.has_sentiment) {
    const double w = 1.0 + std::log1p(static_cast<double>(std::max(e.reach, e.followers)));
    const double cw = w * static_cast<double>(c);
    d.opinion = true;
    d.opinion_weight = cw;
    if (e.sentiment > 0.05) d.positive = cw * e.sentiment;
    if (e.sentiment < -0.05) d.negative = cw * -e.sentiment;
  }
  const bool exposes = e.type == EventType::mention || e.type == EventType::share;
  const double exposure =
      static_cast<double>(d.impressions) + (exposes ? static_cast<double>(e.reach) : 0.0);
  d.emv = static_cast<double>(c) * emv.action_value[t] + exposure / 1000.0 * emv.cpm;
  return d;
}

}  // namespace sp
