#pragma once

#include <string>

#include <executor_exporter/metrics/metrics_server_options.hpp>

namespace executor_exporter {

/// The flight recorder's dump: the last tasks of every worker thread of every executor
/// alive in the process (ExporterOptions::flight_recorder_slices per thread and
/// executor), as Chrome trace-event JSON that chrome://tracing and ui.perfetto.dev open.
/// Each task is a complete event ("ph":"X", "ts" and "dur" in microseconds of the
/// steady clock, "pid" the process, "tid" the worker thread's kernel id) named after its
/// task name (or the executor id for an unnamed task), with "args": executor, task_id,
/// call_site ("file:line"), function, result ("completed" or "failed") and wait_us (its
/// time in the queue); "M" metadata events name the process and each thread. Events are
/// in start order per thread. The rings are always on and cost a few stores per task on
/// a cache line only the worker writes (see the benchmark suite's "stuck" block); this
/// call reads them without stopping anyone. Strings are escaped and made valid UTF-8, so
/// hostile task names cannot break the document. Only timed tasks are kept.
std::string flight_recorder_trace();

/// Serves flight_recorder_trace() at `path` of a MetricsServer (an entry of
/// MetricsServerOptions::pages), as application/json. Like /metrics it shows task names
/// and call sites: serve it on loopback, or set the server's basic auth.
void add_flight_recorder_page(MetricsServerOptions& options,
                              const std::string& path = "/debug/executor/trace");

}  // namespace executor_exporter
