#pragma once
// EWMA anomaly detector for one brand's per-minute negative score (SPEC 2 "spike detector").
#include <cstdint>
#include <string>

#include "operators/byte_codec.h"
#include "operators/settings.h"

namespace sp {

struct SpikeVerdict {
  double value = 0.0;   // x, the observation
  double mean = 0.0;    // EWMA mean before the update
  double stddev = 0.0;  // EWMA stddev before the update
  double zscore = 0.0;  // (x - mean) / stddev, 0 while stddev == 0
  bool spike = false;
};

// Scores each observation against the exponentially weighted mean/variance of the previous ones,
// then folds it in. Deterministic: same series in, same verdicts and state out.
class SpikeDetector {
 public:
  explicit SpikeDetector(SpikeSettings settings = {}) : settings_(settings) {}

  // `opinion_events` guards against firing on a handful of opinions (kpi.spike.min_events).
  SpikeVerdict observe(double x, int64_t opinion_events);

  bool started() const { return started_; }
  double mean() const { return mean_; }
  double variance() const { return var_; }
  double last_zscore() const { return last_z_; }

  void serialize(std::string& out) const;
  bool deserialize(byte_codec::Reader& in);

 private:
  SpikeSettings settings_;
  bool started_ = false;
  double mean_ = 0.0;
  double var_ = 0.0;
  double last_z_ = 0.0;
};

}  // namespace sp
