#include <executor_exporter/metrics/metric_catalog.hpp>

#include <fmt/format.h>

namespace executor_exporter {

namespace {
std::string_view kind_name(MetricKind kind) {
  switch (kind) {
    case MetricKind::counter:
      return "counter";
    case MetricKind::gauge:
      return "gauge";
    case MetricKind::histogram:
      return "histogram";
  }
  return "?";
}
}  // namespace

std::string_view library_version() { return EXECUTOR_EXPORTER_VERSION; }

std::string metrics_table_markdown() {
  std::string out =
      "| metric | type | labels | meaning |\n"
      "|---|---|---|---|\n";
  for (const auto& m : metric_catalog) {
    const bool per_executor = m.source != MetricSource::build && m.source != MetricSource::sink;
    std::string labels = per_executor ? "executor, executor_type" : "";
    if (!m.extra_labels.empty()) {
      labels += fmt::format("{}{}", labels.empty() ? "" : ", ", m.extra_labels);
    }
    out += fmt::format("| `{}` | {} | {} | {} |\n", m.name, kind_name(m.kind), labels, m.help);
  }
  return out;
}

}  // namespace executor_exporter
