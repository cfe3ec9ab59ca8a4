#pragma once
// Operator-level settings (SPEC 7 sections that operators need). pipeline/config.h embeds these
// in the full Config, so operators never depend on the pipeline layer.
#include <array>
#include <string>
#include <vector>

#include "operators/event.h"
#include "operators/time.h"

namespace sp {

enum class WindowKind { tumbling, hopping, session };
enum class EmitMode { final, update };

struct WindowSpec {
  std::string name;
  WindowKind kind = WindowKind::tumbling;
  Millis size{0};     // tumbling, hopping
  Millis advance{0};  // hopping (tumbling: == size)
  Millis gap{0};      // session
  Millis grace{0};
  EmitMode emit = EmitMode::final;
};

std::vector<WindowSpec> default_windows();

// kpi.spike.* and alerts.max_lag (SPEC 2, SPEC 5 v2; the detector's header explains each guard).
struct SpikeSettings {
  double alpha = 0.1;
  double z_threshold = 3.0;  // negative_surge
  int64_t min_events = 20;
  int64_t warmup = 60;              // buckets observed before any anomaly
  double stddev_floor = 0.25;       // negative-score stddev >= this share of its baseline mean
  double drop_threshold = 4.0;      // sentiment_drop z; 0 disables the kind
  double drop_stddev_floor = 0.05;  // net-sentiment stddev floor (sentiment units, -1..1)
  int64_t persistence = 3;          // consecutive anomalous buckets that open an episode
  Millis cooldown{15 * 60 * 1000};  // quiet time that ends an episode
  bool seasonal = true;             // hour-of-week profile beside the EWMA
  Millis max_lag{10 * 60 * 1000};   // alerts.max_lag: older buckets are replayed history
};

struct KpiSettings {
  Millis reputation_horizon{std::chrono::hours(24)};
  // The KPI minute buckets (reputation index, share of voice, innovation rate, unique actors,
  // spike detector) close when the watermark passes their end + grace, like a window's.
  Millis grace{30'000};
  std::array<bool, kEventTypeCount> engagement_types{};  // default: like comment share reply click
  SpikeSettings spike;
  KpiSettings();
};

struct EmvSettings {
  double cpm = 5.0;
  std::array<double, kEventTypeCount> action_value{};  // default per SPEC 2; config overrides keys
  EmvSettings();
};

struct WatermarkSettings {
  Millis max_out_of_orderness{10'000};
  Millis idle_timeout{30'000};
  Millis max_future{300'000};
};

}  // namespace sp
