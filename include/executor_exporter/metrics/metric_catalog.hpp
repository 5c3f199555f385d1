#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace executor_exporter {

/// The Prometheus type a catalog entry is exported as.
enum class MetricKind { counter, gauge, histogram };

/// Where a family's values come from, which decides how the library builds and folds
/// its series (one loop over the catalog, see detail::ExecutorMetrics):
enum class MetricSource {
  /// The task lifecycle, counted in per-thread shards on the hot path and derived at
  /// the fold (submitted, started, ended, queued, running, wait and run times).
  task,
  /// A rare event counted with Recorder::count(metric, label): one atomic per series.
  event,
  /// A level set where it changes with Recorder::set_level(metric, value): executors
  /// that share an id add their contributions up.
  level,
  /// Read at scrape time by the executor from a fold hook, one series per worker
  /// (ExecutorMetrics::sample).
  sampled,
  /// Recorded per traced task (Trace::mark); histogram or summary as configured.
  trace,
  /// About the library itself, one series per registry, without executor labels.
  build,
  /// About an event sink (EventStream), one series per sink, without executor labels.
  sink,
  /// Computed at each fold from what the workers publish about the task they run now
  /// (and the queue's oldest task): the stuck-task gauges.
  scrape,
};

/// One exported metric family. Every family but the build and sink ones also
/// carries the labels `executor` and `executor_type`; `extra_labels` lists any others (comma
/// separated) so the generated documentation can show them. A family whose extra labels include
/// `task` also has one set of series per task name (submit_named). `label_values` lists the values
/// of the first extra label where the library fixes them (`reason`, `result`, `direction`), and
/// `second_label_values` those of the second one where it is enumerated too: one series per value
/// (per pair of values: the cross product) exists from the start, so a rate() over them never
/// starts from a missing series.
struct MetricSpec {
  std::string_view name;
  MetricKind kind;
  std::string_view help;
  std::string_view extra_labels;
  MetricSource source;
  std::string_view label_values = {};
  std::string_view second_label_values = {};
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
  tasks_completed,
  tasks_failed,
  tasks_queued,
  tasks_running,
  task_wait,
  task_run,
  worker_busy,
  queue_capacity,
  scale_events,
  tasks_expired,
  callback_errors,
  unhandled_errors,
  initializer_errors,
  task_names_overflow,
  task_trace,
  task_trace_overflow,
  worker_restarts,
  worker_resident,
  build_info,
  events_delivered,
  events_dropped,
  event_sink_errors,
  task_oldest_running,
  task_oldest_queued,
  tasks_stuck,
  tasks_queued_seconds,
  tasks_running_seconds,
  task_cpu,
  worker_cpu,
  tasks_queued_max,
  tasks_running_max,
  count_,
};

/// The single source of truth for what the library exports. The metrics tables in
/// README.md and docs/metrics.md are generated from it (metrics_table_markdown), and a
/// test fails when the committed tables differ. Help texts stay on one line because
/// prometheus-cpp writes HELP unescaped.
inline constexpr std::array<MetricSpec, static_cast<std::size_t>(Metric::count_)> metric_catalog{{
    {"executor_max_workers", MetricKind::gauge,
     "Configured worker count; executors sharing an id add up.", "", MetricSource::level},
    {"executor_workers", MetricKind::gauge, "Worker threads or processes alive now.", "",
     MetricSource::level},
    {"executor_workers_started_total", MetricKind::counter,
     "Workers started (initializer run), restarts included.", "", MetricSource::event},
    {"executor_tasks_submitted_total", MetricKind::counter,
     "Tasks accepted by submit or map; a named task counts only in its task series.", "task",
     MetricSource::task},
    {"executor_tasks_rejected_total", MetricKind::counter,
     "Submits refused, by reason (shutdown, queue_full, broken; error: the submit threw another "
     "error).",
     "reason, task", MetricSource::task, "shutdown,queue_full,broken,error"},
    {"executor_tasks_cancelled_total", MetricKind::counter,
     "Tasks cancelled before they started (or dropped by a broken pool).", "task",
     MetricSource::task},
    {"executor_tasks_completed_total", MetricKind::counter,
     "Tasks that ran and returned normally; exact even when timing is sampled.", "task",
     MetricSource::task},
    {"executor_tasks_failed_total", MetricKind::counter,
     "Tasks that ran and threw; exact even when timing is sampled.", "task", MetricSource::task},
    {"executor_tasks_queued", MetricKind::gauge, "Tasks accepted and not yet started.", "task",
     MetricSource::task},
    {"executor_tasks_running", MetricKind::gauge, "Tasks started and not yet finished.", "task",
     MetricSource::task},
    {"executor_task_wait_seconds", MetricKind::histogram,
     "Time from submit to the start of the task; with timing_sample_rate N, 1 in N tasks.", "task",
     MetricSource::task},
    {"executor_task_run_seconds", MetricKind::histogram,
     "Time from the start to the end of the task, by result; with timing_sample_rate N, 1 in N "
     "tasks.",
     "result, task", MetricSource::task, "completed,failed"},
    {"executor_worker_busy_seconds_total", MetricKind::counter,
     "Time workers spent running tasks, running ones up to the scrape (scaled up from the timed "
     "ones when timing is sampled); rate / max_workers is utilization.",
     "", MetricSource::task},
    {"executor_queue_capacity", MetricKind::gauge,
     "Bound of the task queue (0 when unbounded); executors sharing an id add up.", "",
     MetricSource::level},
    {"executor_scale_events_total", MetricKind::counter,
     "Live resizes of the worker count, by direction (up, down) and reason (manual; the "
     "autoscaler's wait, utilization, idle).",
     "direction, reason", MetricSource::event, "up,down", "manual,wait,utilization,idle"},
    {"executor_tasks_expired_total", MetricKind::counter,
     "Tasks still queued past their deadline, failed without running.", "task", MetricSource::task},
    {"executor_callback_errors_total", MetricKind::counter,
     "Exceptions thrown by done or expire callbacks, handed to the error handler.", "",
     MetricSource::event},
    {"executor_unhandled_errors_total", MetricKind::counter,
     "Exceptions of posted (fire-and-forget) tasks, handed to the error handler.", "",
     MetricSource::event},
    {"executor_initializer_errors_total", MetricKind::counter,
     "Worker initializers that failed (threw, or the worker died in one); each breaks the pool.",
     "", MetricSource::event},
    {"executor_task_names_overflow_total", MetricKind::counter,
     "Named submits counted under task=other because the distinct-name limit was reached.", "",
     MetricSource::event},
    {"executor_task_trace_seconds", MetricKind::histogram,
     "Time between marks of a traced task, by scope and action (a summary if so configured).",
     "scope, action", MetricSource::trace},
    {"executor_task_trace_overflow_total", MetricKind::counter,
     "Trace marks counted under scope=other, action=other because the distinct-pair limit "
     "was reached.",
     "", MetricSource::event},
    {"executor_worker_restarts_total", MetricKind::counter,
     "Worker processes replaced, by reason (crashed, timeout, recycled).", "reason",
     MetricSource::event, "crashed,timeout,recycled"},
    {"executor_worker_resident_bytes", MetricKind::gauge,
     "Resident memory of each worker process, read from /proc at scrape.", "worker",
     MetricSource::sampled},
    {"executor_exporter_build_info", MetricKind::gauge,
     "Always 1; the version of executor-exporter that serves these metrics.", "version",
     MetricSource::build},
    {"executor_events_total", MetricKind::counter,
     "Task and worker events handed to an event sink (EventStream).", "sink", MetricSource::sink},
    {"executor_events_dropped_total", MetricKind::counter,
     "Events dropped because a sink's buffer was full (the oldest go first).", "sink",
     MetricSource::sink},
    {"executor_event_sink_errors_total", MetricKind::counter,
     "Exceptions thrown by an event sink, handed to the stream's error handler.", "sink",
     MetricSource::sink},
    {"executor_task_oldest_running_seconds", MetricKind::gauge,
     "Age of the oldest task running now (0 when none); timed tasks only.", "task",
     MetricSource::scrape},
    {"executor_task_oldest_queued_seconds", MetricKind::gauge,
     "Age of the oldest task waiting in the queue now (0 when none); timed tasks only.", "",
     MetricSource::scrape},
    {"executor_tasks_stuck", MetricKind::gauge,
     "Tasks running now for longer than the stuck threshold (ExporterOptions::stuck_after).", "",
     MetricSource::scrape},
    {"executor_tasks_queued_seconds_total", MetricKind::counter,
     "Integral of the queue depth over time (timed tasks, scaled as the busy seconds); rate() is "
     "the exact mean number queued.",
     "task", MetricSource::task},
    {"executor_tasks_running_seconds_total", MetricKind::counter,
     "Integral of the running count over time, running tasks up to the scrape; rate() is the "
     "exact mean number running.",
     "task", MetricSource::task},
    {"executor_task_cpu_seconds", MetricKind::histogram,
     "CPU time of each timed task, read at its start and end (a worker thread's clock; a "
     "process pool worker's process clock); only with the task_cpu_time option.",
     "task", MetricSource::task},
    {"executor_worker_cpu_seconds_total", MetricKind::counter,
     "CPU time of the workers (threads or processes, exited ones included, read at scrape; "
     "proxy: its tasks', with task_cpu_time); against busy seconds it shows tasks blocking.",
     "", MetricSource::task},
    {"executor_tasks_queued_max", MetricKind::gauge,
     "Most tasks queued at once within the last peak_window (ExporterOptions), so a burst "
     "between scrapes shows.",
     "", MetricSource::scrape},
    {"executor_tasks_running_max", MetricKind::gauge,
     "Most tasks running at once within the last peak_window (ExporterOptions).", "",
     MetricSource::scrape},
}};

/// The version of the library, as in its CMake project (and the build_info metric).
std::string_view library_version();

/// The catalog entry of one metric.
constexpr const MetricSpec& spec(Metric m) { return metric_catalog[static_cast<std::size_t>(m)]; }

/// A comma-separated list of label values, split, in order.
inline std::vector<std::string_view> split_label_values(std::string_view rest) {
  std::vector<std::string_view> out;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    out.push_back(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
  }
  return out;
}

/// The values of the entry's enumerated label (MetricSpec::label_values), in order;
/// empty when it has none.
inline std::vector<std::string_view> label_values(const MetricSpec& s) {
  return split_label_values(s.label_values);
}

/// The values of the entry's second enumerated label (MetricSpec::second_label_values).
inline std::vector<std::string_view> second_label_values(const MetricSpec& s) {
  return split_label_values(s.second_label_values);
}

/// The first of the entry's extra labels (the enumerated one, where it has values).
constexpr std::string_view first_label(const MetricSpec& s) {
  return s.extra_labels.substr(0, s.extra_labels.find(','));
}

/// The second of the entry's extra labels (empty when it has fewer).
constexpr std::string_view second_label(const MetricSpec& s) {
  const auto comma = s.extra_labels.find(',');
  if (comma == std::string_view::npos) return {};
  std::string_view rest = s.extra_labels.substr(comma + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  return rest.substr(0, rest.find(','));
}

/// How many series of the entry an executor has before any task name or worker label: one
/// per value of its enumerated label times one per value of its second one (at least 1 each).
/// The series of values (i, j) is number i * (second values, at least 1) + j.
inline std::size_t enumerated_series(const MetricSpec& s) {
  return std::max<std::size_t>(1, label_values(s).size()) *
         std::max<std::size_t>(1, second_label_values(s).size());
}

/// Whether `label` is one of the entry's extra labels.
constexpr bool has_label(const MetricSpec& s, std::string_view label) {
  std::string_view rest = s.extra_labels;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    if (item == label) return true;
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
  }
  return false;
}

/// Renders the catalog as the Markdown table committed in README.md and docs/metrics.md.
std::string metrics_table_markdown();

}  // namespace executor_exporter
