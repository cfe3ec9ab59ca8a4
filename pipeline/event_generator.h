#pragma once
// Synthetic but realistic social traffic for `produce` and `demo`: all event types, several
// brands and channels, actors with roles and follower counts, sentiment, and an optional scripted
// reputation crisis (a burst of negative mentions for one brand). Deterministic for a seed.
//
// The first minute after the origin is gloomier than the rest (lower mean sentiment, so more
// negative score). It exists for the SPEC 2 spike detector, whose EWMA variance starts at 0: a
// first bucket far above the baseline scores z < 0 on the way down and seeds the variance far
// above its steady state, so a calm brand's early minutes stay near |z| <= 1 instead of firing
// on the detector's tiny early variance. The seeded variance decays by 0.9 a minute; after about
// an hour a calm brand crosses z = 3 as often as a 3-sigma EWMA detector does on noise (about
// 0.5% of minutes), which only a change of the detector (SPEC) could avoid.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "operators/time.h"
#include "operators/window_record_format.h"

namespace sp {

struct GeneratorOptions {
  std::vector<std::string> brands{"acme", "globex", "initech"};
  std::vector<std::string> channels{"twitter", "facebook", "instagram", "linkedin", "youtube",
                                    "tiktok",  "blog",     "forum",     "reviews",  "web"};
  uint64_t seed = 42;
  int actors_per_brand = 2000;
  bool crisis = false;
  std::string crisis_brand = "acme";
  Millis crisis_start{20 * 60 * 1000};  // event time offset from the generator's start
  Millis crisis_length{4 * 60 * 1000};
  double crisis_intensity = 0.6;  // share of events that are crisis mentions while it lasts
  double opening_gloom = 0.4;     // mean sentiment is this much lower in the first minute
};

struct GeneratedEvent {
  std::string key;    // the brand, so each brand's events share a partition
  std::string value;  // JSON per SPEC 1
};

class EventGenerator {
 public:
  explicit EventGenerator(GeneratorOptions options);
  // Fills `out` with the next event at event time `t`; reuses out's buffers.
  void next(EventTime t, GeneratedEvent& out);
  // Event time of the start of the scenario (set by the caller before the first event).
  void set_origin(EventTime origin) { origin_ = origin; }
  uint64_t produced() const { return produced_; }

 private:
  double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }
  size_t pick(const std::vector<double>& cumulative);

  GeneratorOptions options_;
  std::mt19937_64 rng_;
  std::vector<double> brand_weights_;
  std::vector<double> channel_weights_;
  std::vector<double> type_weights_;
  std::vector<double> role_weights_;
  EventTime origin_{};
  uint64_t produced_ = 0;
};

// One crisis injected by SeasonalScenario: a burst of very negative opinions on one channel,
// tagged with one topic, some from high-reach authors.
struct InjectedCrisis {
  std::string brand;
  int64_t start_minute = 0;  // epoch minute
  int64_t minutes = 0;
  std::string channel;
  std::string tag;
};

struct SeasonalOptions {
  std::vector<std::string> brands{"acme", "globex", "initech"};
  std::vector<std::string> channels{"twitter", "facebook", "instagram", "linkedin", "youtube",
                                    "tiktok",  "blog",     "forum",     "reviews",  "web"};
  uint64_t seed = 42;
  // Opinions per minute at the weekday afternoon peak for the first brand; the others get less.
  double peak_opinions = 60.0;
  int crises = 20;
  // The last crisis (of the first brand) ends this long before the end of the scenario, so a
  // replay of the history ends with it live; 0 puts no crisis at the end.
  Millis live_crisis_before_end{0};
};

// `produce --scenario seasonal` (issue #16): weeks of opinions with a daily and weekly rhythm
// (quiet nights, an afternoon peak, half-volume weekends and a Monday 08:00-10:00 surge that is
// *not* a crisis) and `crises` injected crises spread over the brands and the weeks. A few
// pre-aggregated events (`count`) per brand and minute keep 8 weeks at about 1 M messages.
// Deterministic for a seed and a [first, end) minute range.
class SeasonalScenario {
 public:
  SeasonalScenario(SeasonalOptions options, int64_t first_minute, int64_t end_minute);
  const std::vector<InjectedCrisis>& crises() const { return crises_; }
  // Appends the events of `minute` (every brand, in time order); minutes in increasing order.
  void minute(int64_t minute, std::vector<GeneratedEvent>& out);
  // The rhythm: expected opinions per minute of brand `b`.
  double expected_opinions(size_t b, int64_t minute) const;

 private:
  double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }
  int64_t poisson(double mean) { return std::poisson_distribution<int64_t>(mean)(rng_); }
  void append_event(std::vector<GeneratedEvent>& out, const std::string& brand, int64_t time_ms,
                    const std::string& channel, const char* type, int64_t count,
                    const std::string& actor, int64_t reach, double sentiment,
                    const std::string& tag);

  SeasonalOptions options_;
  int64_t first_;
  int64_t end_;
  std::mt19937_64 rng_;
  std::vector<InjectedCrisis> crises_;
  uint64_t produced_ = 0;
};

}  // namespace sp
