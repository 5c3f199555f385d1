#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <executor_exporter/metrics/exemplar.hpp>
#include <executor_exporter/metrics/registry.hpp>

namespace executor_exporter {

/// Appends `families` to `out` in the Prometheus text exposition format 0.0.4, the
/// same bytes prometheus::TextSerializer writes (numbers as printf's %.16g in the C
/// locale, label values escaped) but several times faster: it formats numbers with fmt
/// into one growing string instead of going through a locale-aware std::ostream, which
/// is what dominates a scrape of many executors. The one deliberate difference is that
/// HELP text is escaped as the format requires (backslash, newline), where
/// TextSerializer writes it raw and a newline would break the page.
void write_text(std::string& out, const std::vector<prometheus::MetricFamily>& families);

/// When a series started from zero, in seconds since the Unix epoch, or nullopt where
/// unknown: OpenMetrics' `_created` samples.
using CreatedTime = std::function<std::optional<double>(const prometheus::ClientMetric&)>;

/// Appends `families` in OpenMetrics 1.0.0 text (`application/openmetrics-text;
/// version=1.0.0`): counter families named without `_total` (their samples keep it),
/// `# UNIT` for names ending in `_seconds` or `_bytes`, `_created` samples where
/// `created` knows the time, exemplars after the histogram buckets (of a non-zero
/// count) where `exemplars` has one, and the closing `# EOF`. Prometheus asks for this
/// format first when it scrapes.
void write_openmetrics(std::string& out, const std::vector<prometheus::MetricFamily>& families,
                       const CreatedTime& created = {}, const ExemplarLookup& exemplars = {});

/// When the library's series in `registry` started: the first time an executor of that
/// id and type (and task name) reported into it. Series of other origins are unknown.
CreatedTime created_time(
    const std::shared_ptr<prometheus::Registry>& registry = default_registry());

/// The /metrics page of `registry` now: collect() (which folds every executor first)
/// written with write_text(). For programs that serve or ship the page themselves (their
/// own HTTP stack, a node-exporter textfile, a log line). MetricsServer serves it (or
/// the OpenMetrics page below); expose() goes through prometheus::Exposer, which always
/// uses TextSerializer.
std::string scrape_text(const std::shared_ptr<prometheus::Registry>& registry = default_registry());

/// The same page in OpenMetrics 1.0.0 (write_openmetrics, with created_time(registry)
/// and exemplar_lookup(registry)).
std::string scrape_openmetrics(
    const std::shared_ptr<prometheus::Registry>& registry = default_registry());

}  // namespace executor_exporter
