#pragma once

#include <memory>
#include <string>
#include <vector>

#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

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

/// The /metrics page of `registry` now: collect() (which folds every executor first)
/// written with write_text(). For programs that serve or ship the page themselves (their
/// own HTTP stack, a node-exporter textfile, a log line); MetricsServer and expose() go
/// through prometheus::Exposer, which always uses TextSerializer.
std::string scrape_text(const std::shared_ptr<prometheus::Registry>& registry = default_registry());

}  // namespace executor_exporter
