#pragma once
// What /readyz answers: "this instance serves fresh values". The pipeline thread reports facts
// (partitions, restoring, broker loss, checkpoint failures, progress against lag) as they change;
// the HTTP thread judges them against a clock when probed, so that a pipeline thread that is
// itself stuck cannot keep an old "ready" in place.
#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include "operators/time.h"

namespace sp {

// Contract: any thread may call any method; the setters are cheap (relaxed atomics).
class Readiness {
 public:
  using Clock = std::chrono::steady_clock;

  // `timeout`: how long the broker may be lost, or partitions with lag may make no progress,
  // before the instance stops being ready (`kafka.ready_timeout`).
  explicit Readiness(Millis timeout = Millis{30'000}) : timeout_(timeout) {}

  void set_restoring(bool restoring) { restoring_.store(restoring); }
  bool restoring() const { return restoring_.load(); }
  void set_assigned_partitions(size_t n) { assigned_.store(n); }
  void set_checkpoint_failing(bool failing) { checkpoint_failing_.store(failing); }
  void set_stopping() { stopping_.store(true); }
  void set_failed() { failed_.store(true); }
  // The consumer reported that every broker is unreachable; cleared by broker_reachable().
  void broker_lost(Clock::time_point now);
  // Anything that needed a broker succeeded (a message, an assignment).
  void broker_reachable() { broker_lost_since_.store(kNever); }
  bool is_broker_lost() const { return broker_lost_since_.load() != kNever; }
  // Some assigned partition has messages left to consume (true) or none has (false).
  void note_lag(bool has_lag, Clock::time_point now);
  // Messages were consumed.
  void note_progress(Clock::time_point now) { progress_at_.store(ticks(now)); }

  struct Verdict {
    bool ready = false;
    std::vector<std::string> reasons;  // why not ready; empty when ready
  };
  Verdict evaluate(Clock::time_point now) const;
  // {"ready":false,"reasons":["..."]}
  static std::string to_json(const Verdict& verdict);

  Millis timeout() const { return timeout_; }

 private:
  static constexpr int64_t kNever = INT64_MIN;
  static int64_t ticks(Clock::time_point t) {
    return std::chrono::duration_cast<Millis>(t.time_since_epoch()).count();
  }

  const Millis timeout_;
  std::atomic<bool> restoring_{false};
  std::atomic<size_t> assigned_{0};
  std::atomic<bool> checkpoint_failing_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> failed_{false};
  std::atomic<int64_t> broker_lost_since_{kNever};
  std::atomic<int64_t> lag_since_{kNever};  // when lag appeared; kNever while there is none
  std::atomic<int64_t> progress_at_{kNever};
};

}  // namespace sp
