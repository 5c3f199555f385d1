#include <executor_exporter/metrics/text_format.hpp>

#include <cmath>
#include <cstdint>
#include <iterator>
#include <string_view>

#include <fmt/format.h>

namespace executor_exporter {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// %.16g is what TextSerializer's stream (precision max_digits10 - 1, default float
// field, classic locale) prints; NaN and the infinities are spelled as it spells them.
void put_double(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "Nan";
  } else if (std::isinf(v)) {
    out += v < 0 ? "-Inf" : "+Inf";
  } else {
    fmt::format_to(std::back_inserter(out), "{:.16g}", v);
  }
}

template <class Int>
void put_int(std::string& out, Int v) {
  const fmt::format_int f(v);
  out.append(f.data(), f.size());
}

// Label values: backslash, double quote and newline are escaped (the format's rules).
void put_escaped(std::string& out, std::string_view s) {
  std::size_t from = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c != '\\' && c != '"' && c != '\n') continue;
    out.append(s.data() + from, i - from);
    out += c == '\n' ? "\\n" : c == '"' ? "\\\"" : "\\\\";
    from = i + 1;
  }
  out.append(s.data() + from, s.size() - from);
}

// HELP text: only backslash and newline are escaped.
void put_help(std::string& out, std::string_view s) {
  for (const char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

// The labels block of one line, built once per metric and reused for each of its lines
// (a histogram writes it bucket count + 2 times). Empty when the metric has no labels.
// Without the closing brace, so a line can add le="..." or quantile="..." after it.
std::string labels_of(const ClientMetric& metric) {
  std::string s;
  for (const auto& label : metric.label) {
    s += s.empty() ? "{" : ",";
    s += label.name;
    s += "=\"";
    put_escaped(s, label.value);
    s += '"';
  }
  return s;
}

// name + suffix + labels (+ extra label) + ' '.
void put_head(std::string& out, const std::string& name, std::string_view suffix,
              const std::string& labels) {
  out += name;
  out += suffix;
  if (!labels.empty()) {
    out += labels;
    out += '}';
  }
  out += ' ';
}
template <class Extra>
void put_head(std::string& out, const std::string& name, std::string_view suffix,
              const std::string& labels, std::string_view extra_name, Extra&& put_extra) {
  out += name;
  out += suffix;
  if (labels.empty()) {
    out += '{';
  } else {
    out += labels;
    out += ',';
  }
  out += extra_name;
  out += "=\"";
  put_extra();
  out += "\"} ";
}

void put_tail(std::string& out, const ClientMetric& metric) {
  if (metric.timestamp_ms != 0) {
    out += ' ';
    put_int(out, metric.timestamp_ms);
  }
  out += '\n';
}

// The _count and _sum lines that open a histogram or a summary.
void put_count_sum(std::string& out, const std::string& name, const ClientMetric& metric,
                   const std::string& labels, std::uint64_t count, double sum) {
  put_head(out, name, "_count", labels);
  put_int(out, count);
  put_tail(out, metric);
  put_head(out, name, "_sum", labels);
  put_double(out, sum);
  put_tail(out, metric);
}

void put_histogram(std::string& out, const std::string& name, const ClientMetric& metric,
                   const std::string& labels) {
  const auto& h = metric.histogram;
  put_count_sum(out, name, metric, labels, h.sample_count, h.sample_sum);
  bool has_inf = false;
  for (const auto& b : h.bucket) {
    has_inf = std::isinf(b.upper_bound) && b.upper_bound > 0;
    put_head(out, name, "_bucket", labels, "le", [&] { put_double(out, b.upper_bound); });
    put_int(out, b.cumulative_count);
    put_tail(out, metric);
  }
  // prometheus-cpp's histograms end with a +Inf bucket; a hand-made family might not.
  if (!has_inf) {
    put_head(out, name, "_bucket", labels, "le", [&] { out += "+Inf"; });
    put_int(out, h.sample_count);
    put_tail(out, metric);
  }
}

void put_summary(std::string& out, const std::string& name, const ClientMetric& metric,
                 const std::string& labels) {
  const auto& s = metric.summary;
  put_count_sum(out, name, metric, labels, s.sample_count, s.sample_sum);
  for (const auto& q : s.quantile) {
    put_head(out, name, "", labels, "quantile", [&] { put_double(out, q.quantile); });
    put_double(out, q.value);
    put_tail(out, metric);
  }
}

std::string_view type_name(MetricType type) {
  switch (type) {
    case MetricType::Counter:
      return "counter";
    case MetricType::Gauge:
      return "gauge";
    case MetricType::Summary:
      return "summary";
    case MetricType::Histogram:
      return "histogram";
    case MetricType::Untyped:
      break;
  }
  return "untyped";
}

void put_family(std::string& out, const MetricFamily& family) {
  if (!family.help.empty()) {
    out += "# HELP ";
    out += family.name;
    out += ' ';
    put_help(out, family.help);
    out += '\n';
  }
  out += "# TYPE ";
  out += family.name;
  out += ' ';
  out += type_name(family.type);
  out += '\n';
  for (const auto& metric : family.metric) {
    const std::string labels = labels_of(metric);
    switch (family.type) {
      case MetricType::Counter:
        put_head(out, family.name, "", labels);
        put_double(out, metric.counter.value);
        put_tail(out, metric);
        break;
      case MetricType::Gauge:
        put_head(out, family.name, "", labels);
        put_double(out, metric.gauge.value);
        put_tail(out, metric);
        break;
      case MetricType::Untyped:
        put_head(out, family.name, "", labels);
        put_double(out, metric.untyped.value);
        put_tail(out, metric);
        break;
      case MetricType::Summary:
        put_summary(out, family.name, metric, labels);
        break;
      case MetricType::Histogram:
        put_histogram(out, family.name, metric, labels);
        break;
    }
  }
}

}  // namespace

void write_text(std::string& out, const std::vector<prometheus::MetricFamily>& families) {
  for (const auto& family : families) put_family(out, family);
}

std::string scrape_text(const std::shared_ptr<prometheus::Registry>& registry) {
  std::string out;
  write_text(out, collect(registry));
  return out;
}

}  // namespace executor_exporter
