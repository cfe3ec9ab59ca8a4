#include "pipeline/metrics_text.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>

namespace sp {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;

// As an ostream with precision max_digits10 - 1 (16) in the classic locale: %.16g.
void put_value(std::string& out, double v) {
  if (std::isnan(v)) {
    out.append("Nan");
  } else if (std::isinf(v)) {
    out.append(v < 0 ? "-Inf" : "+Inf");
  } else {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general,
                                 std::numeric_limits<double>::max_digits10 - 1);
    out.append(buf, r.ptr);
  }
}

void put_integer(std::string& out, uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void put_integer(std::string& out, int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Label values: backslash, double quote and newline escaped.
void put_escaped(std::string& out, std::string_view s) {
  size_t from = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c != '\\' && c != '"' && c != '\n') continue;
    out.append(s.substr(from, i - from));
    out.push_back('\\');
    out.push_back(c == '\n' ? 'n' : c);
    from = i + 1;
  }
  out.append(s.substr(from));
}

// The extra label of a histogram bucket or summary quantile.
struct ExtraLabel {
  std::string_view name;
  bool numeric = false;
  double number = 0;
  std::string_view text;
};

void put_head(std::string& out, const MetricFamily& family, const ClientMetric& metric,
              std::string_view suffix = {}, const ExtraLabel* extra = nullptr) {
  out.append(family.name).append(suffix);
  if (!metric.label.empty() || extra != nullptr) {
    out.push_back('{');
    const char* separator = "";
    for (const auto& label : metric.label) {
      out.append(separator).append(label.name).append("=\"");
      put_escaped(out, label.value);
      out.push_back('"');
      separator = ",";
    }
    if (extra != nullptr) {
      out.append(separator).append(extra->name).append("=\"");
      if (extra->numeric) {
        put_value(out, extra->number);
      } else {
        put_escaped(out, extra->text);
      }
      out.push_back('"');
    }
    out.push_back('}');
  }
  out.push_back(' ');
}

void put_tail(std::string& out, const ClientMetric& metric) {
  if (metric.timestamp_ms != 0) {
    out.push_back(' ');
    put_integer(out, static_cast<int64_t>(metric.timestamp_ms));
  }
  out.push_back('\n');
}

void put_simple(std::string& out, const MetricFamily& family, const ClientMetric& metric,
                double value) {
  put_head(out, family, metric);
  put_value(out, value);
  put_tail(out, metric);
}

// The _count and _sum lines of a summary or histogram.
void put_count_and_sum(std::string& out, const MetricFamily& family, const ClientMetric& metric,
                       uint64_t count, double sum) {
  put_head(out, family, metric, "_count");
  put_integer(out, count);
  put_tail(out, metric);
  put_head(out, family, metric, "_sum");
  put_value(out, sum);
  put_tail(out, metric);
}

void put_summary(std::string& out, const MetricFamily& family, const ClientMetric& metric) {
  const auto& summary = metric.summary;
  put_count_and_sum(out, family, metric, summary.sample_count, summary.sample_sum);
  for (const auto& q : summary.quantile) {
    const ExtraLabel extra{"quantile", true, q.quantile, {}};
    put_head(out, family, metric, {}, &extra);
    put_value(out, q.value);
    put_tail(out, metric);
  }
}

void put_histogram(std::string& out, const MetricFamily& family, const ClientMetric& metric) {
  const auto& histogram = metric.histogram;
  put_count_and_sum(out, family, metric, histogram.sample_count, histogram.sample_sum);
  double last = -std::numeric_limits<double>::infinity();
  for (const auto& bucket : histogram.bucket) {
    const ExtraLabel extra{"le", true, bucket.upper_bound, {}};
    put_head(out, family, metric, "_bucket", &extra);
    last = bucket.upper_bound;
    put_integer(out, static_cast<uint64_t>(bucket.cumulative_count));
    put_tail(out, metric);
  }
  if (last != std::numeric_limits<double>::infinity()) {
    const ExtraLabel extra{"le", false, 0, "+Inf"};
    put_head(out, family, metric, "_bucket", &extra);
    put_integer(out, static_cast<uint64_t>(histogram.sample_count));
    put_tail(out, metric);
  }
}

std::string_view type_name(prometheus::MetricType type, bool openmetrics) {
  switch (type) {
    case prometheus::MetricType::Counter:
      return "counter";
    case prometheus::MetricType::Gauge:
      return "gauge";
    case prometheus::MetricType::Summary:
      return "summary";
    case prometheus::MetricType::Untyped:
      return openmetrics ? "unknown" : "untyped";
    case prometheus::MetricType::Histogram:
      return "histogram";
  }
  return "unknown";
}

// OpenMetrics units: a family named for its unit declares it (the name must end with it).
std::string_view unit_of(std::string_view name) {
  for (std::string_view unit : {"seconds", "bytes", "ratio"}) {
    if (name.size() > unit.size() + 1 && name.ends_with(unit) &&
        name[name.size() - unit.size() - 1] == '_') {
      return unit;
    }
  }
  return {};
}

}  // namespace

void write_openmetrics_text(const MetricsSnapshot& snapshot, std::string& out) {
  for (const MetricFamily& family : snapshot) {
    // A counter's family is named without `_total`; its samples carry it.
    const bool counter = family.type == prometheus::MetricType::Counter;
    std::string_view name = family.name;
    std::string_view sample_suffix;
    if (counter) {
      if (name.ends_with("_total")) {
        name.remove_suffix(6);
      }
      sample_suffix = family.name.ends_with("_total") ? "" : "_total";
    }
    if (!family.help.empty()) {
      out.append("# HELP ").append(name).append(" ");
      put_escaped(out, family.help);
      out.append("\n");
    }
    out.append("# TYPE ").append(name).append(" ").append(type_name(family.type, true));
    out.append("\n");
    if (const auto unit = unit_of(name); !unit.empty()) {
      out.append("# UNIT ").append(name).append(" ").append(unit).append("\n");
    }
    for (const ClientMetric& metric : family.metric) {
      switch (family.type) {
        case prometheus::MetricType::Counter:
          put_head(out, family, metric, sample_suffix);
          put_value(out, metric.counter.value);
          put_tail(out, metric);
          break;
        case prometheus::MetricType::Gauge:
          put_simple(out, family, metric, metric.gauge.value);
          break;
        case prometheus::MetricType::Untyped:
          put_simple(out, family, metric, metric.untyped.value);
          break;
        case prometheus::MetricType::Summary:
          put_summary(out, family, metric);
          break;
        case prometheus::MetricType::Histogram:
          put_histogram(out, family, metric);
          break;
      }
    }
  }
  out.append("# EOF\n");
}

void write_metrics_text(const MetricsSnapshot& snapshot, std::string& out) {
  for (const MetricFamily& family : snapshot) {
    if (!family.help.empty())
      out.append("# HELP ").append(family.name).append(" ").append(family.help).append("\n");
    const std::string_view type = type_name(family.type, false);
    out.append("# TYPE ").append(family.name).append(" ").append(type).append("\n");
    for (const ClientMetric& metric : family.metric) {
      switch (family.type) {
        case prometheus::MetricType::Counter:
          put_simple(out, family, metric, metric.counter.value);
          break;
        case prometheus::MetricType::Gauge:
          put_simple(out, family, metric, metric.gauge.value);
          break;
        case prometheus::MetricType::Untyped:
          put_simple(out, family, metric, metric.untyped.value);
          break;
        case prometheus::MetricType::Summary:
          put_summary(out, family, metric);
          break;
        case prometheus::MetricType::Histogram:
          put_histogram(out, family, metric);
          break;
      }
    }
  }
}

}  // namespace sp
