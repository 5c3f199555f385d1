#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

namespace executor_exporter {

/// The Prometheus type a catalog entry is exported as.
enum class MetricKind { counter, gauge, histogram };

/// One exported metric family. Every family also carries the labels `executor` and
/// `executor_type`; `extra_labels` lists any others (comma separated) so the generated
/// documentation can show them.
struct MetricSpec {
  std::string_view name;
  MetricKind kind;
  std::string_view help;
  std::string_view extra_labels;
};

/// Positions in metric_catalog; the code refers to families only through these, so a
/// metric cannot be exported under a name the documentation does not list.
enum class Metric : std::size_t {
  max_workers,
  workers,
  workers_started,
  tasks_submitted,
  tasks_rejected,
  tasks_cancelled,
  tasks_queued,
  tasks_running,
  task_wait,
  task_run,
  worker_busy,
  count_,
};

/// The single source of truth for what the library exports. The metrics tables in
/// README.md and docs/metrics.md are generated from it (metrics_table_markdown), and a
/// test fails when the committed tables differ. Help texts stay on one line because
/// prometheus-cpp writes HELP unescaped.
inline constexpr std::array<MetricSpec, static_cast<std::size_t>(Metric::count_)> metric_catalog{{
    {"executor_max_workers", MetricKind::gauge,
     "Configured worker count; executors sharing an id add up.", ""},
    {"executor_workers", MetricKind::gauge, "Worker threads or processes alive now.", ""},
    {"executor_workers_started_total", MetricKind::counter,
     "Workers started (initializer run), restarts included.", ""},
    {"executor_tasks_submitted_total", MetricKind::counter, "Tasks accepted by submit or map.", ""},
    {"executor_tasks_rejected_total", MetricKind::counter,
     "Submits refused, by reason (shutdown, queue_full).", "reason"},
    {"executor_tasks_cancelled_total", MetricKind::counter,
     "Tasks cancelled before they started.", ""},
    {"executor_tasks_queued", MetricKind::gauge, "Tasks accepted and not yet started.", ""},
    {"executor_tasks_running", MetricKind::gauge, "Tasks started and not yet finished.", ""},
    {"executor_task_wait_seconds", MetricKind::histogram,
     "Time from submit to the start of the task.", ""},
    {"executor_task_run_seconds", MetricKind::histogram,
     "Time from the start to the end of the task, by result (completed, failed).", "result"},
    {"executor_worker_busy_seconds_total", MetricKind::counter,
     "Time workers spent running tasks; rate divided by max_workers is utilization.", ""},
}};

/// The catalog entry of one metric.
constexpr const MetricSpec& spec(Metric m) {
  return metric_catalog[static_cast<std::size_t>(m)];
}

/// Renders the catalog as the Markdown table committed in README.md and docs/metrics.md.
std::string metrics_table_markdown();

}  // namespace executor_exporter
