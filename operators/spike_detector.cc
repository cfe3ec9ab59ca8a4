#include "operators/spike_detector.h"

#include <algorithm>
#include <cmath>

#include "operators/window_record_format.h"

namespace sp {
namespace {

// A profile slot sees 60 buckets a week; 1/60 gives this week's hour ~63% of the weight, so the
// profile follows last week's rhythm and forgets an old one within a few weeks.
constexpr double kProfileAlpha = 1.0 / 60.0;
// A slot is trusted once it saw one whole hour.
constexpr int64_t kProfileTrusted = 60;
constexpr int64_t kObservedCap = int64_t{1} << 40;

}  // namespace

std::string_view to_string(SpikeKind kind) {
  return kind == SpikeKind::negative_surge ? "negative_surge" : "sentiment_drop";
}

int severity_of(double z, double threshold) {
  if (!(z >= threshold) || threshold <= 0.0) return 0;
  const double steps = 3.0 * std::log2(z / threshold);
  return static_cast<int>(std::clamp(1.0 + std::floor(steps), 1.0, 10.0));
}

void SpikeDetector::Moments::update(double x, double alpha) {
  if (n == 0) {
    mean = x;
    var = 0.0;
  } else {
    // Incremental exponentially weighted mean and variance (Finch 2009, "Incremental calculation
    // of weighted mean and variance", eq. 140-143): with d = x - mean,
    //   mean <- mean + alpha*d,  var <- (1 - alpha) * (var + alpha*d^2).
    const double d = x - mean;
    mean += alpha * d;
    var = (1.0 - alpha) * (var + alpha * d * d);
  }
  n = std::min(n + 1, kObservedCap);
}

size_t SpikeDetector::slot_of(int64_t minute) {
  return static_cast<size_t>(floor_div(minute, 60) % static_cast<int64_t>(kSlots) + kSlots) %
         kSlots;
}

SpikeVerdict SpikeDetector::observe(const BucketObservation& b) {
  SpikeVerdict v;
  const double x = b.negative;
  v.value = x;
  v.sentiment = b.weight > 0.0 ? (b.positive - b.negative) / b.weight : 0.0;
  const bool enough = b.opinion_events >= settings_.min_events;
  const bool warm = observed_ >= settings_.warmup;
  const double thr = settings_.z_threshold;
  const double dthr = settings_.drop_threshold;

  // negative_surge, scored against the state *before* folding x in, otherwise a spike would
  // dampen its own z.
  double ewma_sd = 0.0;
  if (observed_ == 0) {
    v.mean = x;
  } else {
    ewma_sd = std::max(std::sqrt(var_), settings_.stddev_floor * std::abs(mean_));
    v.mean = mean_;
    v.stddev = ewma_sd;
    v.zscore = ewma_sd > 0.0 ? (x - mean_) / ewma_sd : 0.0;
  }
  Moments& slot = profile_[slot_of(b.minute)];
  double slot_sd = 0.0;
  if (slot.n > 0) slot_sd = std::max(std::sqrt(slot.var), settings_.stddev_floor * slot.mean);
  if (settings_.seasonal && slot.n >= kProfileTrusted && observed_ > 0) {
    const double slot_z = slot_sd > 0.0 ? (x - slot.mean) / slot_sd : 0.0;
    if (slot_z < v.zscore) {
      v.mean = slot.mean;
      v.stddev = slot_sd;
      v.zscore = slot_z;
    }
  }
  last_z_ = v.zscore;

  // sentiment_drop: only buckets with enough opinions have a meaningful ratio.
  double sentiment_sd = 0.0;
  if (sentiment_.n > 0 && enough) {
    sentiment_sd = std::max(std::sqrt(sentiment_.var), settings_.drop_stddev_floor);
    v.sentiment_mean = sentiment_.mean;
    v.drop_zscore = (sentiment_.mean - v.sentiment) / sentiment_sd;
  }

  const bool surge = warm && enough && observed_ > 0 && v.zscore >= thr;
  const bool drop =
      dthr > 0.0 && enough && sentiment_.n >= settings_.warmup && v.drop_zscore >= dthr;
  v.anomalous = surge || drop;
  if (v.anomalous) {
    const int surge_severity = surge ? severity_of(v.zscore, thr) : 0;
    const int drop_severity = drop ? severity_of(v.drop_zscore, dthr) : 0;
    v.kind = drop_severity > surge_severity ? SpikeKind::sentiment_drop : SpikeKind::negative_surge;
    v.severity = std::max(surge_severity, drop_severity);
  }

  // Baselines. An anomalous bucket is folded in clipped at one stddev above (below) the baseline:
  // with alpha 0.1, (1 - alpha)(1 + alpha c^2) ~ 1 for c = 1, so a crisis neither inflates the
  // variance (clipping at the threshold would grow the stddev ~30% a minute and hide the rest of
  // the crisis and the next one) nor is learned as normal, while a lasting shift of the level is
  // still absorbed, at 0.1 stddev a minute.
  double x_ewma = x;
  double x_slot = x;
  if (surge) {
    x_ewma = std::min(x, mean_ + ewma_sd);
    if (slot.n > 0) x_slot = std::min(x, slot.mean + slot_sd);
  }
  if (observed_ == 0) {
    mean_ = x;
    var_ = 0.0;
  } else {
    const double alpha = settings_.alpha;
    const double d = x_ewma - mean_;
    mean_ += alpha * d;
    var_ = (1.0 - alpha) * (var_ + alpha * d * d);
  }
  slot.update(x_slot, kProfileAlpha);
  observed_ = std::min(observed_ + 1, kObservedCap);
  if (enough) {
    const double s = drop ? std::max(v.sentiment, sentiment_.mean - sentiment_sd) : v.sentiment;
    sentiment_.update(s, settings_.alpha);
  }

  // Episodes: `persistence` anomalous buckets in a row open one; `cooldown` without one ends it.
  if (v.anomalous) {
    if (run_ == 0) {
      run_kind_ = v.kind;
      run_severity_ = v.severity;
    } else {
      run_severity_ = std::max(run_severity_, v.severity);
    }
    run_ = std::min(run_ + 1, kObservedCap);
  } else {
    run_ = 0;
  }
  const int64_t cooldown_minutes = (settings_.cooldown.count() + 59'999) / 60'000;
  if (in_episode_) {
    if (v.anomalous) {
      last_anomalous_ = b.minute;
      episode_severity_ = std::max(episode_severity_, v.severity);
    } else if (b.minute - last_anomalous_ >= cooldown_minutes) {
      in_episode_ = false;
      v.transition = EpisodeTransition::ended;
      v.episode_end = last_anomalous_ + 1;
    }
  } else if (v.anomalous && run_ >= std::max<int64_t>(1, settings_.persistence)) {
    in_episode_ = true;
    v.transition = EpisodeTransition::started;
    episode_start_ = b.minute - run_ + 1;
    episode_kind_ = run_kind_;
    episode_severity_ = run_severity_;
    last_anomalous_ = b.minute;
  }
  v.episode_start = episode_start_;
  v.episode_kind = episode_kind_;
  v.episode_severity = episode_severity_;
  return v;
}

void SpikeDetector::serialize(std::string& out) const {
  using namespace byte_codec;
  put_i64(out, observed_);
  put_f64(out, mean_);
  put_f64(out, var_);
  put_f64(out, last_z_);
  auto put_moments = [&out](const Moments& m) {
    put_f64(out, m.mean);
    put_f64(out, m.var);
    put_i64(out, m.n);
  };
  put_moments(sentiment_);
  put_u64(out, kSlots);
  for (const Moments& m : profile_) put_moments(m);
  put_i64(out, run_);
  put_u8(out, in_episode_ ? 1 : 0);
  put_u8(out, static_cast<uint8_t>(episode_kind_));
  put_i64(out, episode_severity_);
  put_i64(out, episode_start_);
  put_i64(out, last_anomalous_);
  put_u8(out, static_cast<uint8_t>(run_kind_));
  put_i64(out, run_severity_);
}

bool SpikeDetector::deserialize(byte_codec::Reader& in) {
  auto kind = [&in](SpikeKind& k) {
    const uint8_t v = in.u8();
    if (v >= kSpikeKindCount) in.fail();
    k = static_cast<SpikeKind>(v);
  };
  auto moments = [&in](Moments& m) {
    m.mean = in.f64();
    m.var = in.f64();
    m.n = in.i64();
  };
  observed_ = in.i64();
  mean_ = in.f64();
  var_ = in.f64();
  last_z_ = in.f64();
  moments(sentiment_);
  if (in.u64() != kSlots) return false;
  for (Moments& m : profile_) moments(m);
  run_ = in.i64();
  in_episode_ = in.u8() != 0;
  kind(episode_kind_);
  episode_severity_ = static_cast<int>(in.i64());
  episode_start_ = in.i64();
  last_anomalous_ = in.i64();
  kind(run_kind_);
  run_severity_ = static_cast<int>(in.i64());
  return in.ok();
}

bool SpikeDetector::deserialize_v2(byte_codec::Reader& in) {
  *this = SpikeDetector(settings_);
  const bool started = in.u64() != 0;
  mean_ = in.f64();
  var_ = in.f64();
  last_z_ = in.f64();
  observed_ = started ? std::max<int64_t>(1, settings_.warmup) : 0;
  return in.ok();
}

}  // namespace sp
