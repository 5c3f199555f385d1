#include <executor_exporter/metrics/text_format.hpp>

#include <executor_exporter/metrics/detail/registry_state.hpp>

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

// The two formats share everything but a few spellings, chosen here.
struct Format {
  bool openmetrics = false;
  const CreatedTime* created = nullptr;       // OpenMetrics only
  const ExemplarLookup* exemplars = nullptr;  // OpenMetrics only
};

// %.16g is what TextSerializer's stream (precision max_digits10 - 1, default float
// field, classic locale) prints; NaN and the infinities are spelled as it spells them.
void put_double(std::string& out, double v, bool openmetrics = false) {
  if (std::isnan(v)) {
    out += openmetrics ? "NaN" : "Nan";
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

// HELP text: backslash and newline are escaped, and in OpenMetrics the double quote.
void put_help(std::string& out, std::string_view s, bool openmetrics) {
  for (const char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && openmetrics) {
      out += "\\\"";
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

void put_exemplar(std::string& out, const Exemplar& e);

void put_tail(std::string& out, const ClientMetric& metric, const Format& f = {},
              const Exemplar* exemplar = nullptr) {
  if (metric.timestamp_ms != 0) {
    out += ' ';
    if (f.openmetrics) {
      // OpenMetrics timestamps are seconds.
      put_double(out, static_cast<double>(metric.timestamp_ms) / 1e3, true);
    } else {
      put_int(out, metric.timestamp_ms);
    }
  }
  if (exemplar != nullptr) put_exemplar(out, *exemplar);
  out += '\n';
}

// OpenMetrics' name_created line: when the series started from zero, where known.
void put_created(std::string& out, const std::string& name, const ClientMetric& metric,
                 const std::string& labels, const Format& f) {
  if (!f.openmetrics || f.created == nullptr || !*f.created) return;
  const std::optional<double> t = (*f.created)(metric);
  if (!t) return;
  put_head(out, name, "_created", labels);
  put_double(out, *t, true);
  out += '\n';
}

// The _count and _sum lines of a histogram or a summary.
void put_count_sum(std::string& out, const std::string& name, const ClientMetric& metric,
                   const std::string& labels, std::uint64_t count, double sum, const Format& f) {
  put_head(out, name, "_count", labels);
  put_int(out, count);
  put_tail(out, metric, f);
  put_head(out, name, "_sum", labels);
  put_double(out, sum, f.openmetrics);
  put_tail(out, metric, f);
}

std::size_t code_points(std::string_view s) {
  std::size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) == 0x80 ? 0 : 1;
  return n;
}

// ` # {labels} value timestamp` after a bucket's count. An exemplar whose label set
// exceeds OpenMetrics' bound, or whose label names are not names, is left out: it would
// make Prometheus refuse the whole page.
void put_exemplar(std::string& out, const Exemplar& e) {
  std::size_t length = 0;
  for (const auto& [k, v] : e.labels) {
    if (k.empty()) return;
    for (std::size_t i = 0; i < k.size(); ++i) {
      const char c = k[i];
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                      (i > 0 && c >= '0' && c <= '9');
      if (!ok) return;
    }
    length += code_points(k) + code_points(v);
  }
  if (length > exemplar_label_limit || !std::isfinite(e.value)) return;
  out += " # {";
  bool first = true;
  for (const auto& [k, v] : e.labels) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    put_escaped(out, v);
    out += '"';
  }
  out += "} ";
  put_double(out, e.value, true);
  if (e.timestamp > 0) fmt::format_to(std::back_inserter(out), " {:.3f}", e.timestamp);
}

void put_histogram(std::string& out, const std::string& name, const ClientMetric& metric,
                   const std::string& labels, const Format& f, const MetricFamily& family) {
  const auto& h = metric.histogram;
  std::vector<std::optional<Exemplar>> exemplars;
  if (f.openmetrics && f.exemplars != nullptr && *f.exemplars) {
    exemplars = (*f.exemplars)(family, metric);
  }
  // The text format opens with _count and _sum (as TextSerializer does); OpenMetrics
  // lists the buckets first.
  if (!f.openmetrics) put_count_sum(out, name, metric, labels, h.sample_count, h.sample_sum, f);
  bool has_inf = false;
  for (std::size_t i = 0; i < h.bucket.size(); ++i) {
    const auto& b = h.bucket[i];
    has_inf = std::isinf(b.upper_bound) && b.upper_bound > 0;
    put_head(out, name, "_bucket", labels, "le",
             [&] { put_double(out, b.upper_bound, f.openmetrics); });
    put_int(out, b.cumulative_count);
    if (i < exemplars.size() && exemplars[i] && b.cumulative_count > 0) {
      put_tail(out, metric, f, &*exemplars[i]);
    } else {
      put_tail(out, metric, f);
    }
  }
  // prometheus-cpp's histograms end with a +Inf bucket; a hand-made family might not.
  if (!has_inf) {
    put_head(out, name, "_bucket", labels, "le", [&] { out += "+Inf"; });
    put_int(out, h.sample_count);
    put_tail(out, metric, f);
  }
  if (f.openmetrics) put_count_sum(out, name, metric, labels, h.sample_count, h.sample_sum, f);
  put_created(out, name, metric, labels, f);
}

void put_summary(std::string& out, const std::string& name, const ClientMetric& metric,
                 const std::string& labels, const Format& f) {
  const auto& s = metric.summary;
  put_count_sum(out, name, metric, labels, s.sample_count, s.sample_sum, f);
  for (const auto& q : s.quantile) {
    put_head(out, name, "", labels, "quantile",
             [&] { put_double(out, q.quantile, f.openmetrics); });
    put_double(out, q.value, f.openmetrics);
    put_tail(out, metric, f);
  }
  put_created(out, name, metric, labels, f);
}

std::string_view type_name(MetricType type, bool openmetrics) {
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
  return openmetrics ? "unknown" : "untyped";
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() > suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

void put_family(std::string& out, const MetricFamily& family, const Format& f) {
  // OpenMetrics names a counter family without its _total, which only its samples carry.
  const bool om_counter = f.openmetrics && family.type == MetricType::Counter;
  const std::string name = om_counter && ends_with(family.name, "_total")
                               ? family.name.substr(0, family.name.size() - 6)
                               : family.name;
  const std::string_view sample_suffix = om_counter ? "_total" : "";
  if (!family.help.empty()) {
    out += "# HELP ";
    out += name;
    out += ' ';
    put_help(out, family.help, f.openmetrics);
    out += '\n';
  }
  out += "# TYPE ";
  out += name;
  out += ' ';
  out += type_name(family.type, f.openmetrics);
  out += '\n';
  if (f.openmetrics) {
    // The units this library's names end with; OpenMetrics wants the unit as a suffix.
    for (const std::string_view unit : {"seconds", "bytes"}) {
      if (ends_with(name, std::string("_") + std::string(unit))) {
        out += "# UNIT ";
        out += name;
        out += ' ';
        out += unit;
        out += '\n';
      }
    }
  }
  for (const auto& metric : family.metric) {
    const std::string labels = labels_of(metric);
    switch (family.type) {
      case MetricType::Counter:
        put_head(out, name, sample_suffix, labels);
        put_double(out, metric.counter.value, f.openmetrics);
        put_tail(out, metric, f);
        put_created(out, name, metric, labels, f);
        break;
      case MetricType::Gauge:
        put_head(out, name, "", labels);
        put_double(out, metric.gauge.value, f.openmetrics);
        put_tail(out, metric, f);
        break;
      case MetricType::Untyped:
        put_head(out, name, "", labels);
        put_double(out, metric.untyped.value, f.openmetrics);
        put_tail(out, metric, f);
        break;
      case MetricType::Summary:
        put_summary(out, name, metric, labels, f);
        break;
      case MetricType::Histogram:
        put_histogram(out, name, metric, labels, f, family);
        break;
    }
  }
}

}  // namespace

void write_text(std::string& out, const std::vector<prometheus::MetricFamily>& families) {
  for (const auto& family : families) put_family(out, family, Format{});
}

void write_openmetrics(std::string& out, const std::vector<prometheus::MetricFamily>& families,
                       const CreatedTime& created, const ExemplarLookup& exemplars) {
  const Format f{true, &created, &exemplars};
  for (const auto& family : families) put_family(out, family, f);
  out += "# EOF\n";
}

std::string scrape_text(const std::shared_ptr<prometheus::Registry>& registry) {
  std::string out;
  write_text(out, collect(registry));
  return out;
}

std::string scrape_openmetrics(const std::shared_ptr<prometheus::Registry>& registry) {
  std::string out;
  write_openmetrics(out, collect(registry), created_time(registry), exemplar_lookup(registry));
  return out;
}

}  // namespace executor_exporter
