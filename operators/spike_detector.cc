#include "operators/spike_detector.h"

#include <cmath>

namespace sp {

SpikeVerdict SpikeDetector::observe(double x, int64_t opinion_events) {
  SpikeVerdict v;
  v.value = x;
  if (!started_) {
    // The first bucket seeds the mean; with zero variance nothing can be scored yet.
    started_ = true;
    mean_ = x;
    var_ = 0.0;
    v.mean = x;
    last_z_ = 0.0;
    return v;
  }
  v.mean = mean_;
  v.stddev = std::sqrt(var_);
  // Scored against the state *before* folding x in, otherwise a spike would dampen its own z.
  v.zscore = v.stddev > 0.0 ? (x - mean_) / v.stddev : 0.0;
  v.spike = v.zscore >= settings_.z_threshold && opinion_events >= settings_.min_events;
  last_z_ = v.zscore;
  // Incremental exponentially weighted mean and variance (Finch 2009, "Incremental calculation of
  // weighted mean and variance", eq. 140-143): with d = x - mean,
  //   mean <- mean + alpha*d,  var <- (1 - alpha) * (var + alpha*d^2).
  // It is the EWMA analogue of Welford's update and needs no window of past values.
  const double alpha = settings_.alpha;
  const double d = x - mean_;
  mean_ += alpha * d;
  var_ = (1.0 - alpha) * (var_ + alpha * d * d);
  return v;
}

void SpikeDetector::serialize(std::string& out) const {
  byte_codec::put_u64(out, started_ ? 1 : 0);
  byte_codec::put_f64(out, mean_);
  byte_codec::put_f64(out, var_);
  byte_codec::put_f64(out, last_z_);
}

bool SpikeDetector::deserialize(byte_codec::Reader& in) {
  started_ = in.u64() != 0;
  mean_ = in.f64();
  var_ = in.f64();
  last_z_ = in.f64();
  return in.ok();
}

}  // namespace sp
