#pragma once
// Reputation anomaly detector for one brand's closed 1-minute buckets (SPEC 2 "spike detector",
// v2 of issue #16). Two kinds of anomaly, each against its own baseline and threshold:
// - negative_surge: the bucket's negative score x against an EWMA mean/variance (kpi.spike.alpha)
//   and, once a full week was seen, against the same hour-of-week's profile; the bucket is scored
//   against the *lower* of the two z-scores, so a Monday-morning rise that the profile expects is
//   not a crisis, and a brand whose level moved since last week is judged by its recent level.
// - sentiment_drop: the bucket's net sentiment (P - N) / W far below its EWMA baseline.
// Guards against false starts: no anomaly before `warmup` buckets, a stddev floor (a share of the
// baseline mean, so a calm brand does not spike on noise), `min_events` opinions in the bucket,
// and `persistence` consecutive anomalous buckets before an episode opens. One alert per episode:
// the episode ends after `cooldown` without an anomalous bucket, which yields an `ended`
// transition. Anomalous buckets update the baselines clipped at mean + 1 stddev, so a crisis
// neither teaches the baseline that it is normal nor hides the next one.
// Memory: O(1) per brand apart from the 168-slot hour-of-week profile (~4 KB).
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "operators/byte_codec.h"
#include "operators/settings.h"

namespace sp {

enum class SpikeKind : uint8_t { negative_surge, sentiment_drop };
inline constexpr size_t kSpikeKindCount = 2;
std::string_view to_string(SpikeKind kind);

// One closed 1-minute bucket of one brand, merged over partitions.
struct BucketObservation {
  int64_t minute = 0;  // epoch minute of the bucket start
  double negative = 0.0;
  double positive = 0.0;
  double weight = 0.0;
  int64_t opinion_events = 0;
};

enum class EpisodeTransition : uint8_t { none, started, ended };

struct SpikeVerdict {
  double value = 0.0;      // x, the bucket's negative score
  double mean = 0.0;       // negative-score baseline the bucket was scored against (before update)
  double stddev = 0.0;     // its stddev, floor applied
  double zscore = 0.0;     // (x - mean) / stddev, 0 while the baseline has no spread
  double sentiment = 0.0;  // net sentiment (P - N) / W of the bucket, 0 when W = 0
  double sentiment_mean = 0.0;  // its baseline (before update)
  double drop_zscore = 0.0;     // (sentiment_mean - sentiment) / stddev, 0 without a baseline
  bool anomalous = false;       // this bucket passes a threshold with every guard
  SpikeKind kind = SpikeKind::negative_surge;  // the stronger anomaly of the bucket
  int severity = 0;                            // 1-10 while anomalous, else 0
  // `started`: an episode opened with this bucket (the alert); `ended`: the cooldown passed.
  EpisodeTransition transition = EpisodeTransition::none;
  int64_t episode_start = 0;  // minute of the episode's first anomalous bucket
  int64_t episode_end = 0;    // minute after its last anomalous bucket (on `ended`)
  SpikeKind episode_kind = SpikeKind::negative_surge;
  int episode_severity = 0;  // highest severity of the episode so far
};

// Severity 1-10 of a z-score at or above `threshold`: +1 per factor 2^(1/3) above the threshold
// (z = 3 -> 1, 6 -> 4, 12 -> 7, >= 24 -> 10 with the default threshold).
int severity_of(double z, double threshold);

// Deterministic: the same bucket series in gives the same verdicts and bytes out.
class SpikeDetector {
 public:
  static constexpr size_t kSlots = 168;  // hours of a week

  explicit SpikeDetector(SpikeSettings settings = {}) : settings_(settings) {}

  SpikeVerdict observe(const BucketObservation& bucket);

  bool started() const { return observed_ > 0; }
  int64_t observed() const { return observed_; }
  double mean() const { return mean_; }
  double variance() const { return var_; }
  double last_zscore() const { return last_z_; }
  bool in_episode() const { return in_episode_; }
  SpikeKind episode_kind() const { return episode_kind_; }
  int episode_severity() const { return episode_severity_; }

  // Format 3 (this build). `deserialize_v2` reads the EWMA-only format 2 (started, mean,
  // variance, last z): the baseline carries over and, having run, it counts as warmed up.
  void serialize(std::string& out) const;
  bool deserialize(byte_codec::Reader& in);
  bool deserialize_v2(byte_codec::Reader& in);

 private:
  struct Moments {
    double mean = 0.0;
    double var = 0.0;
    int64_t n = 0;
    // Finch (2009) eq. 140-143, seeded by the first value.
    void update(double x, double alpha);
  };
  static size_t slot_of(int64_t minute);

  SpikeSettings settings_;
  int64_t observed_ = 0;  // buckets seen, capped (warm-up)
  double mean_ = 0.0;     // EWMA of the negative score
  double var_ = 0.0;
  double last_z_ = 0.0;
  Moments sentiment_;  // EWMA of net sentiment over buckets with >= min_events opinions
  std::array<Moments, kSlots> profile_{};
  int64_t run_ = 0;  // consecutive anomalous buckets
  bool in_episode_ = false;
  SpikeKind episode_kind_ = SpikeKind::negative_surge;
  int episode_severity_ = 0;
  int64_t episode_start_ = 0;
  int64_t last_anomalous_ = 0;  // minute of the episode's last anomalous bucket
  SpikeKind run_kind_ = SpikeKind::negative_surge;
  int run_severity_ = 0;
};

}  // namespace sp
