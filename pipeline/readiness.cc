#include "pipeline/readiness.h"

#include <algorithm>

namespace sp {

void Readiness::broker_lost(Clock::time_point now) {
  int64_t expected = kNever;
  broker_lost_since_.compare_exchange_strong(expected, ticks(now));  // keep the first loss
}

void Readiness::note_lag(bool has_lag, Clock::time_point now) {
  if (!has_lag) {
    lag_since_.store(kNever);
    return;
  }
  int64_t expected = kNever;
  lag_since_.compare_exchange_strong(expected, ticks(now));
}

Readiness::Verdict Readiness::evaluate(Clock::time_point now) const {
  Verdict v;
  const int64_t t = ticks(now);
  const int64_t limit = timeout_.count();
  auto seconds = [](int64_t ms) { return std::to_string(ms / 1000) + "s"; };
  if (stopping_.load()) v.reasons.emplace_back("shutting down");
  if (failed_.load()) v.reasons.emplace_back("pipeline stopped on a fatal error");
  if (restoring_.load()) v.reasons.emplace_back("restoring state");
  if (assigned_.load() == 0) v.reasons.emplace_back("no partitions assigned");
  if (const int64_t lost = broker_lost_since_.load(); lost != kNever && t - lost >= limit) {
    v.reasons.push_back("broker unreachable for " + seconds(t - lost) + " (kafka.ready_timeout " +
                        seconds(limit) + ")");
  }
  if (checkpoint_failing_.load()) v.reasons.emplace_back("checkpoints failing");
  // Stuck: there is lag, and nothing was consumed since it appeared (or for `timeout`).
  if (const int64_t lag = lag_since_.load(); lag != kNever) {
    const int64_t since = std::max(lag, progress_at_.load());
    if (t - since >= limit) {
      v.reasons.push_back("partitions with lag consumed nothing for " + seconds(t - since) +
                          " (kafka.ready_timeout " + seconds(limit) + ")");
    }
  }
  v.ready = v.reasons.empty();
  return v;
}

std::string Readiness::to_json(const Verdict& verdict) {
  std::string out =
      verdict.ready ? "{\"ready\":true,\"reasons\":[" : "{\"ready\":false,\"reasons\":[";
  for (size_t i = 0; i < verdict.reasons.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : verdict.reasons[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += "]}\n";
  return out;
}

}  // namespace sp
