#pragma once
// The time the shutdown sequence may take: shutdown_timeout less a margin kept for what follows
// the runner (civetweb's mg_stop takes up to ~2 s, measured), since the process must exit within
// shutdown_timeout.
#include <chrono>

#include "operators/time.h"

namespace sp {

// Contract: a value; the clock starts at construction.
class ShutdownBudget {
 public:
  explicit ShutdownBudget(Millis shutdown_timeout);

  // Everything, leaving the group included, ends by then.
  std::chrono::steady_clock::time_point deadline() const { return deadline_; }
  // Until deadline(); zero once past it.
  Millis remaining() const;

 private:
  std::chrono::steady_clock::time_point deadline_;
};

}  // namespace sp
