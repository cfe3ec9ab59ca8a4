#include "pipeline/event_generator.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

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
  } else if (opinionated) {
    const bool opening = since_origin >= Millis{0} && since_origin < Millis{60'000};
    const double mean = opening ? 0.2 - options_.opening_gloom : 0.2;
    const double s = std::clamp(std::normal_distribution<>(mean, 0.35)(rng_), -1.0, 1.0);
    v.append(",\"sentiment\":");
    append_number(v, s);
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

}  // namespace sp
