#pragma once
// A uniform sample of at most `capacity` timestamps out of a stream of unknown length (reservoir
// sampling, Li's "Algorithm L", ACM TOMS 20(4), 1994). Once the reservoir is full, how many offers
// to pass over before the next one replaces a random slot is drawn at once, so an offer passed over
// costs an increment and a compare (its timestamp is not even computed). The runner offers every
// consumed message (RunnerProbe::sample_latency, on the pipeline thread), where a random number and
// a division by the count per message were, with the read of the append time, 4-8 % of that
// thread (issue #20).
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace sp {

// Contract: one thread.
class TimestampSample {
 public:
  TimestampSample(size_t capacity, uint64_t seed) : capacity_(capacity), rng_(seed) {}

  // `timestamp()` is called only when the offer is kept; a value <= 0 (no timestamp) keeps
  // nothing.
  template <typename Timestamp>
  void offer(Timestamp&& timestamp) {
    ++seen_;
    if (samples_.size() < capacity_) {
      if (const int64_t ts = timestamp(); ts > 0) samples_.push_back(ts);
      return;
    }
    if (next_ == 0) start_skipping();  // full since the previous offer
    if (seen_ < next_) return;
    if (const int64_t ts = timestamp(); ts > 0) {
      samples_[std::uniform_int_distribution<size_t>(0, capacity_ - 1)(rng_)] = ts;
    }
    w_ *= std::exp(std::log(unit()) / static_cast<double>(capacity_));
    next_ += skip();
  }

  // The sample so far; the next offers start a new one.
  std::vector<int64_t> take() {
    std::vector<int64_t> out = std::move(samples_);
    samples_.clear();
    seen_ = 0;
    next_ = 0;
    return out;
  }
  // Puts taken samples back (they were not used): the sample goes on with them in it, beyond
  // the capacity if need be.
  void put_back(const std::vector<int64_t>& samples) {
    samples_.insert(samples_.end(), samples.begin(), samples.end());
  }
  size_t size() const { return samples_.size(); }
  uint64_t offered() const { return seen_; }

 private:
  double unit() { return 1.0 - std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }  // (0, 1]
  void start_skipping() {
    w_ = std::exp(std::log(unit()) / static_cast<double>(capacity_));
    next_ = seen_ - 1 + skip();
  }
  // Offers up to and including the next one kept, >= 1.
  uint64_t skip() {
    const double s = std::floor(std::log(unit()) / std::log1p(-w_));
    constexpr double kMax = static_cast<double>(uint64_t{1} << 62);
    return 1 + (s >= 0.0 && s < kMax ? static_cast<uint64_t>(s) : s > 0.0 ? uint64_t{1} << 62 : 0);
  }

  size_t capacity_;
  std::mt19937_64 rng_;
  std::vector<int64_t> samples_;
  uint64_t seen_ = 0;  // offers since the last take()
  uint64_t next_ = 0;  // the offer that is kept next (0: not skipping yet)
  double w_ = 1.0;
};

}  // namespace sp
