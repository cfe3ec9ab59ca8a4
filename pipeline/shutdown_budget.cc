#include "pipeline/shutdown_budget.h"

#include <algorithm>
#include <cstdint>

namespace sp {

ShutdownBudget::ShutdownBudget(Millis shutdown_timeout) {
  const auto margin = std::min<Millis>(Millis{2500}, shutdown_timeout / 2);
  deadline_ = std::chrono::steady_clock::now() + shutdown_timeout - margin;
}

Millis ShutdownBudget::remaining() const {
  return Millis{std::max<int64_t>(
      0, std::chrono::duration_cast<Millis>(deadline_ - std::chrono::steady_clock::now()).count())};
}

}  // namespace sp
