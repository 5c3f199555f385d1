#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <executor_exporter/metrics/registry.hpp>

namespace executor_exporter {

/// An OpenMetrics exemplar: one observation that stands for a histogram bucket, shown
/// after the bucket's count as `# {labels} value timestamp`. The library's are a recent
/// task of the bucket: labels task, task_id, call_site and, where the task had them,
/// trace_id and span_id; the value is its wait or run time in seconds.
struct Exemplar {
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
  /// Seconds since the Unix epoch when it was observed; 0 for none.
  double timestamp = 0;
};

/// OpenMetrics' bound on an exemplar's label set: names plus values, in characters
/// (code points). write_openmetrics leaves out an exemplar that exceeds it.
inline constexpr std::size_t exemplar_label_limit = 128;

/// The exemplar of each bucket of a histogram series (indexed as
/// `metric.histogram.bucket`), or an empty vector when the series has none.
using ExemplarLookup = std::function<std::vector<std::optional<Exemplar>>(
    const prometheus::MetricFamily& family, const prometheus::ClientMetric& metric)>;

/// The exemplars the library's executors keep in `registry` (ExporterOptions::exemplars),
/// as picked by the last collect: the newest per bucket across threads. Labels are cut
/// to fit exemplar_label_limit (docs/exemplars.md says how).
ExemplarLookup exemplar_lookup(
    const std::shared_ptr<prometheus::Registry>& registry = default_registry());

}  // namespace executor_exporter
