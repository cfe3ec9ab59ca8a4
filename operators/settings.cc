#include "operators/settings.h"

namespace sp {

std::vector<WindowSpec> default_windows() {
  using std::chrono::minutes;
  using std::chrono::seconds;
  WindowSpec minute{"minute",  WindowKind::tumbling, minutes(1),     minutes(1),
                    Millis{0}, seconds(30),          EmitMode::final};
  WindowSpec hourly{"hourly",  WindowKind::hopping, minutes(60),    minutes(5),
                    Millis{0}, minutes(2),          EmitMode::final};
  WindowSpec sessions{"sessions",  WindowKind::session, Millis{0},      Millis{0},
                      minutes(30), Millis{0},           EmitMode::final};
  return {minute, hourly, sessions};
}

KpiSettings::KpiSettings() {
  for (EventType t : {EventType::like, EventType::comment, EventType::share, EventType::reply,
                      EventType::click}) {
    engagement_types[static_cast<size_t>(t)] = true;
  }
}

EmvSettings::EmvSettings() {
  auto set = [this](EventType t, double v) { action_value[static_cast<size_t>(t)] = v; };
  set(EventType::like, 0.10);
  set(EventType::comment, 0.50);
  set(EventType::share, 1.00);
  set(EventType::mention, 0.80);
  set(EventType::reply, 0.20);
  set(EventType::click, 0.30);
}

}  // namespace sp
