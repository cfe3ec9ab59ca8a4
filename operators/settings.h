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

struct SpikeSettings {
  double alpha = 0.1;
  double z_threshold = 3.0;
  int64_t min_events = 20;
};

struct KpiSettings {
  Millis reputation_horizon{std::chrono::hours(24)};
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
