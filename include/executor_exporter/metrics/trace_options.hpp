#pragma once

#include <chrono>
#include <cstddef>
#include <vector>

#include <executor_exporter/metrics/exporter_options.hpp>

namespace executor_exporter {

/// How traced tasks (submit_traced, Trace::mark) record executor_task_trace_seconds.
/// A histogram by default: cheap to observe and aggregatable across instances. A
/// quantile summary, as worker.go's promworker exports, when `summary` is set; its
/// Observe costs tens of microseconds (a lock and a quantile stream), so use it for
/// coarse marks only. One registry holds the family as one type: the first traced
/// executor of a registry decides, and asking for the other type throws
/// std::invalid_argument at the first mark.
struct TraceOptions {
  /// One (quantile, allowed error) pair of the summary.
  struct Quantile {
    double quantile;
    double error;
  };
  /// Export a summary instead of a histogram.
  bool summary = false;
  /// Histogram upper bounds in seconds (increasing).
  std::vector<double> buckets = default_buckets();
  /// Summary quantiles: worker.go's 0.5, 0.9 and 0.99.
  std::vector<Quantile> quantiles = {{0.5, 0.05}, {0.9, 0.01}, {0.99, 0.001}};
  /// Summary sliding window: observations older than this drop out of the quantiles.
  std::chrono::milliseconds max_age = std::chrono::seconds(60);
  /// Summary window granularity (number of rotating buckets over max_age).
  int age_buckets = 5;
  /// Distinct (scope, action) pairs per executor that get their own series; later pairs
  /// share scope="other", action="other" and count in
  /// executor_task_trace_overflow_total, so marks named from user data cannot grow the
  /// page without bound.
  std::size_t max_series = 256;
};

}  // namespace executor_exporter
