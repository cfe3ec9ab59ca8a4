#include "pipeline/event_generator.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace sp {
namespace {

std::vector<double> cumulative(std::initializer_list<double> weights) {
  std::vector<double> out;
  double total = 0;
  for (double w : weights) out.push_back(total += w);
  for (double& v : out) v /= total;
  return out;
}

constexpr const char* kTypes[] = {"impression", "like",     "comment", "share", "mention", "reply",
                                  "follow",     "unfollow", "click",   "lead",  "review",  "idea"};
constexpr const char* kRoles[] = {"customer", "prospect", "employee",
                                  "partner",  "manager",  "anonymous"};

void append_number(std::string& out, double v) {
  char buf[32];
  const int n = std::snprintf(buf, sizeof buf, "%.3f", v);
  out.append(buf, static_cast<size_t>(n));
}

}  // namespace

EventGenerator::EventGenerator(GeneratorOptions options)
    : options_(std::move(options)), rng_(options_.seed) {
  // Brands: the first dominates the conversation, the others trail (share of voice < 1).
  std::vector<double> bw;
  for (size_t i = 0; i < options_.brands.size(); ++i) bw.push_back(1.0 / (1.0 + 0.6 * i));
  double total = 0;
  for (double w : bw) brand_weights_.push_back(total += w);
  for (double& v : brand_weights_) v /= total;
  total = 0;
  for (size_t i = 0; i < options_.channels.size(); ++i) {
    channel_weights_.push_back(total += 1.0 / (1.0 + 0.3 * i));
  }
  for (double& v : channel_weights_) v /= total;
  type_weights_ = cumulative({30, 20, 8, 6, 10, 4, 3, 1, 10, 2, 3, 3});
  role_weights_ = cumulative({60, 15, 10, 5, 3, 7});
}

size_t EventGenerator::pick(const std::vector<double>& cum) {
  const double u = uniform();
  return static_cast<size_t>(std::lower_bound(cum.begin(), cum.end(), u) - cum.begin()) %
         cum.size();
}

void EventGenerator::next(EventTime t, GeneratedEvent& out) {
  ++produced_;
  const Millis since_origin = t - origin_;
  const bool in_crisis = options_.crisis && since_origin >= options_.crisis_start &&
                         since_origin < options_.crisis_start + options_.crisis_length &&
                         uniform() < options_.crisis_intensity;
  const std::string& brand =
      in_crisis ? options_.crisis_brand : options_.brands[pick(brand_weights_)];
  const size_t type = in_crisis ? 4 /* mention */ : pick(type_weights_);
  const size_t channel = in_crisis ? 0 : pick(channel_weights_);
  const size_t role = pick(role_weights_);
  const int actor = static_cast<int>(uniform() * options_.actors_per_brand);
  // Log-normal audience: most actors are small, a few are influencers.
  const auto followers =
      static_cast<int64_t>(std::exp(4.0 + 2.0 * std::normal_distribution<>(0, 1)(rng_)));

  out.key = brand;
  std::string& v = out.value;
  v.clear();
  v.append("{\"id\":\"gen-")
      .append(std::to_string(options_.seed))
      .append("-")
      .append(std::to_string(produced_));
  v.append("\",\"time\":\"").append(format_rfc3339_ms(t));
  v.append("\",\"brand\":\"").append(brand);
  v.append("\",\"channel\":\"").append(options_.channels[channel]);
  v.append("\",\"type\":\"").append(kTypes[type]).append("\"");
  if (type == 0) {
    v.append(",\"count\":").append(std::to_string(10 + static_cast<int>(uniform() * 2000)));
  }
  v.append(",\"actor\":{\"id\":\"").append(brand).append("-u").append(std::to_string(actor));
  v.append("\",\"role\":\"").append(kRoles[role]);
  v.append("\",\"followers\":")
      .append(std::to_string(std::min<int64_t>(followers, 50'000'000)))
      .append("}");
  const bool opinionated = type == 2 || type == 4 || type == 5 || type == 3;
  if (type == 4 || type == 3) {
    v.append(",\"reach\":")
        .append(std::to_string(static_cast<int64_t>(followers * (0.5 + uniform()))));
  }
  if (in_crisis) {
    v.append(",\"sentiment\":");
    append_number(v, -0.6 - 0.4 * uniform());
    v.append(",\"text\":\"never buying from ").append(brand).append(" again\"");
    v.append(",\"tags\":[\"outage\"]");
  } else if (opinionated) {
    const bool opening = since_origin >= Millis{0} && since_origin < Millis{60'000};
    const double mean = opening ? 0.2 - options_.opening_gloom : 0.2;
    const double s = std::clamp(std::normal_distribution<>(mean, 0.35)(rng_), -1.0, 1.0);
    v.append(",\"sentiment\":");
    append_number(v, s);
    // Everyday topics (no RNG draw, so the rest of the stream is unchanged).
    static constexpr const char* kEveryday[] = {"pricing", "support", "delivery", "quality"};
    v.append(",\"tags\":[\"").append(kEveryday[produced_ % 4]).append("\"]");
  }
  if (type == 10)
    v.append(",\"rating\":").append(std::to_string(1 + static_cast<int>(uniform() * 5)));
  if (type == 5) {
    v.append(",\"response_time_s\":");
    append_number(v, 30.0 + std::exp(6.0 + 1.2 * std::normal_distribution<>(0, 1)(rng_)));
  }
  if (type == 9) {
    v.append(",\"value\":");
    append_number(v, 50.0 + uniform() * 4950.0);
    v.append(",\"campaign\":\"winter-launch\"");
  }
  if (type == 8) v.append(",\"url\":\"https://www.").append(brand).append(".example/landing\"");
  v.push_back('}');
}

namespace {

constexpr int64_t kMinutesPerDay = 24 * 60;
constexpr int64_t kMinutesPerWeek = 7 * kMinutesPerDay;
constexpr const char* kTopics[] = {"pricing", "support", "delivery", "quality", "app", "ads"};
constexpr const char* kCrisisTopics[] = {"outage", "recall", "data-breach", "layoffs", "scandal"};

}  // namespace

SeasonalScenario::SeasonalScenario(SeasonalOptions options, int64_t first_minute,
                                   int64_t end_minute)
    : options_(std::move(options)), first_(first_minute), end_(end_minute), rng_(options_.seed) {
  // Crises: spread over the range after the first day, at least 6 hours apart for a brand (an
  // episode and its cooldown never merge two of them), any hour of any day.
  const int64_t live_end = options_.live_crisis_before_end.count() / 60'000;
  const int scheduled = options_.crises - (live_end > 0 ? 1 : 0);
  const int64_t lo = first_ + kMinutesPerDay;
  const int64_t hi = end_ - 2 * 60;
  for (int i = 0; i < scheduled && hi > lo; ++i) {
    for (int attempt = 0; attempt < 1000; ++attempt) {
      InjectedCrisis c;
      c.brand = options_.brands[static_cast<size_t>(i) % options_.brands.size()];
      c.start_minute = lo + static_cast<int64_t>(uniform() * static_cast<double>(hi - lo));
      c.minutes = 4 + static_cast<int64_t>(uniform() * 12);
      const bool clash = std::any_of(crises_.begin(), crises_.end(), [&](const InjectedCrisis& o) {
        return o.brand == c.brand && std::abs(o.start_minute - c.start_minute) < 6 * 60;
      });
      if (clash) continue;
      c.channel = options_.channels[static_cast<size_t>(uniform() * 4)];
      c.tag = kCrisisTopics[static_cast<size_t>(uniform() * 5)];
      crises_.push_back(std::move(c));
      break;
    }
  }
  if (live_end > 0) {
    InjectedCrisis c;
    c.brand = options_.brands.front();
    c.minutes = 6;
    c.start_minute = end_ - live_end - c.minutes;
    c.channel = options_.channels.front();
    c.tag = kCrisisTopics[0];
    crises_.push_back(std::move(c));
  }
  std::sort(crises_.begin(), crises_.end(), [](const InjectedCrisis& a, const InjectedCrisis& b) {
    return a.start_minute < b.start_minute;
  });
}

double SeasonalScenario::expected_opinions(size_t b, int64_t minute) const {
  // Epoch minute 0 is a Thursday 00:00 UTC: day 0 = Thursday.
  const int64_t in_week = (minute % kMinutesPerWeek + kMinutesPerWeek) % kMinutesPerWeek;
  const int64_t day = in_week / kMinutesPerDay;  // 0 Thu, 1 Fri, 2 Sat, 3 Sun, 4 Mon, ...
  const double hour = static_cast<double>(in_week % kMinutesPerDay) / 60.0;
  constexpr double kPi = 3.14159265358979323846;
  const double daytime = hour >= 7.0 && hour < 22.0 ? std::sin(kPi * (hour - 7.0) / 15.0) : 0.0;
  double rate = 0.15 + 0.85 * daytime;
  if (day == 2 || day == 3) rate *= 0.5;
  if (day == 4 && hour >= 8.0 && hour < 10.0) rate *= 1.8;  // the Monday-morning rise
  return options_.peak_opinions * rate / (1.0 + 0.5 * static_cast<double>(b));
}

void SeasonalScenario::append_event(std::vector<GeneratedEvent>& out, const std::string& brand,
                                    int64_t time_ms, const std::string& channel, const char* type,
                                    int64_t count, const std::string& actor, int64_t reach,
                                    double sentiment, const std::string& tag) {
  GeneratedEvent& e = out.emplace_back();
  e.key = brand;
  std::string& v = e.value;
  v.append("{\"id\":\"s")
      .append(std::to_string(options_.seed))
      .append("-")
      .append(std::to_string(++produced_));
  v.append("\",\"time\":").append(std::to_string(time_ms));
  v.append(",\"brand\":\"").append(brand);
  v.append("\",\"channel\":\"").append(channel);
  v.append("\",\"type\":\"").append(type).append("\"");
  if (count != 1) v.append(",\"count\":").append(std::to_string(count));
  v.append(",\"actor\":{\"id\":\"").append(actor).append("\"}");
  v.append(",\"reach\":").append(std::to_string(reach));
  v.append(",\"sentiment\":");
  append_number(v, sentiment);
  if (!tag.empty()) v.append(",\"tags\":[\"").append(tag).append("\"]");
  v.push_back('}');
}

void SeasonalScenario::minute(int64_t minute, std::vector<GeneratedEvent>& out) {
  const size_t begin = out.size();
  const int64_t base_ms = minute * 60'000;
  auto when = [&] { return base_ms + static_cast<int64_t>(uniform() * 59'999); };
  auto reach = [&](double mu, double sigma) {
    return static_cast<int64_t>(std::exp(mu + sigma * std::normal_distribution<>(0, 1)(rng_)));
  };
  auto channel = [&] {
    return options_
        .channels[static_cast<size_t>(uniform() * static_cast<double>(options_.channels.size()))];
  };
  auto topic = [&] { return std::string(kTopics[static_cast<size_t>(uniform() * 6)]); };
  for (size_t b = 0; b < options_.brands.size(); ++b) {
    const std::string& brand = options_.brands[b];
    const double lambda = expected_opinions(b, minute);
    auto actor = [&] { return brand + "-u" + std::to_string(static_cast<int>(uniform() * 5000)); };
    // Praise and neutral talk, each pre-aggregated into one event.
    if (const int64_t n = poisson(0.55 * lambda); n > 0) {
      append_event(out, brand, when(), channel(), "mention", n, actor(), reach(4.0, 1.5),
                   0.3 + 0.5 * uniform(), topic());
    }
    if (const int64_t n = poisson(0.3 * lambda); n > 0) {
      append_event(out, brand, when(), channel(), "comment", n, actor(), reach(3.0, 1.5), 0.0,
                   topic());
    }
    // Everyday complaints: three groups, each one author's audience and tone.
    for (int g = 0; g < 3; ++g) {
      if (const int64_t n = poisson(0.05 * lambda); n > 0) {
        append_event(out, brand, when(), channel(), g == 0 ? "review" : "mention", n, actor(),
                     reach(4.0, 1.5), -0.3 - 0.5 * uniform(), topic());
      }
    }
    for (const InjectedCrisis& c : crises_) {
      if (c.brand != brand || minute < c.start_minute || minute >= c.start_minute + c.minutes)
        continue;
      // At least 30 angry opinions a minute, more at busy hours; a few from influencers.
      const double volume = std::max(30.0, 0.6 * lambda) * (0.8 + 0.8 * uniform());
      for (int g = 0; g < 3; ++g) {
        const int64_t n = poisson(volume / 3.0);
        if (n == 0) continue;
        const std::string author =
            brand + "-crisis-" + std::to_string(c.start_minute) + "-" + std::to_string(g);
        append_event(out, brand, when(), c.channel, "mention", n, author,
                     g == 0 ? reach(9.0, 1.0) : reach(5.0, 1.5), -0.7 - 0.3 * uniform(), c.tag);
      }
    }
  }
  // Time order within the minute (a few seconds of disorder would be fine, too).
  std::stable_sort(out.begin() + static_cast<std::ptrdiff_t>(begin), out.end(),
                   [](const GeneratedEvent& a, const GeneratedEvent& b) {
                     auto time_of = [](const std::string& v) {
                       const size_t p = v.find("\"time\":") + 7;
                       return std::strtoll(v.c_str() + p, nullptr, 10);
                     };
                     return time_of(a.value) < time_of(b.value);
                   });
}

}  // namespace sp
