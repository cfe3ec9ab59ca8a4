#pragma once
// Prometheus text exposition format (0.0.4) of a metrics snapshot, byte for byte what
// prometheus-cpp's TextSerializer writes, written into one string with std::to_chars instead of
// an ostringstream (which took 18-30 ms for 20 000 series: most of a scrape).
#include <string>

#include "pipeline/metrics_registry.h"

namespace sp {

// Appends the exposition of `snapshot` to `out`.
void write_metrics_text(const MetricsSnapshot& snapshot, std::string& out);
// Appends the OpenMetrics 1.0 exposition of `snapshot` to `out`: counter families named without
// `_total` (their samples keep it), `# UNIT` for families named for a unit, `unknown` for
// untyped, and the closing `# EOF`. No `_created` samples: counters are restored from
// checkpoints, so this process does not know when a series was created.
void write_openmetrics_text(const MetricsSnapshot& snapshot, std::string& out);

}  // namespace sp
