#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace executor_exporter {

/// Default histogram bounds in seconds, shared by wait and run: 10 µs to 30 min, because
/// queues back up for minutes while most tasks take micro- to milliseconds.
inline std::vector<double> default_buckets() {
  return {1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1,
          0.25, 0.5,    1,    2.5,  5,      10,   30,   60,     120,  300,  600,   1800};
}

/// Per-exporter settings. Bucket bounds are fixed when the first exporter of an id is
/// created; a later exporter of the same id and type must ask for the same bounds (or
/// leave them at their defaults) so that the series they share stay one histogram.
struct ExporterOptions {
  /// Upper bounds (seconds, increasing) of executor_task_wait_seconds.
  std::vector<double> wait_buckets = default_buckets();
  /// Upper bounds (seconds, increasing) of executor_task_run_seconds.
  std::vector<double> run_buckets = default_buckets();
  /// Time only about 1 task in N (N = this value; 1, the default, times every task). For
  /// micro-tasks, where two clock reads are a visible share of the task: every task is
  /// still counted exactly in the executor_tasks_* counters and gauges, but only the
  /// timed ones feed the wait and run histograms, and busy seconds are scaled up from
  /// them. Which tasks are timed is decided at submit, per submitting thread, with
  /// randomised gaps averaging N. Exporters sharing an id must use one rate (else
  /// std::invalid_argument, as for buckets), and 0 is refused likewise. The process pool
  /// times every task whatever the rate.
  std::uint32_t timing_sample_rate = 1;
  /// A task running longer than this counts in executor_tasks_stuck, and the Watchdog
  /// (metrics/watchdog.hpp) reports it. Only timed tasks are seen running (all of them
  /// at the default timing_sample_rate).
  std::chrono::nanoseconds stuck_after = std::chrono::seconds(60);
  /// The flight recorder: how many finished tasks each worker thread keeps (a ring of
  /// 64-byte slices, overwritten oldest first), served as a Chrome/Perfetto trace by
  /// flight_recorder_trace() and /debug/executor/trace (metrics/flight_recorder.hpp).
  /// 0 turns it off. Fixed by the first exporter of an id.
  std::size_t flight_recorder_slices = 256;
  /// Read the thread CPU clock at the start and end of each timed task, for
  /// executor_task_cpu_seconds (and, for the proxy, executor_worker_cpu_seconds_total).
  /// Off by default: on Linux that clock is a system call, not a vDSO read, and two of
  /// them cost several times what the rest of a task's accounting does (see the
  /// "averages" block of the benchmarks). The thread pool's worker CPU seconds are read
  /// at scrape and need no option. Exporters sharing an id should agree on it.
  bool task_cpu_time = false;
  /// Keep exemplars for the wait and run histograms: per bucket, a recent task that
  /// landed in it (its name, id, call site and trace ids), which OpenMetrics pages show
  /// after the bucket's count (docs/exemplars.md). The text format 0.0.4 never carries
  /// them. Each thread keeps its own, refreshed at most once per
  /// `exemplar_refresh_ms` per bucket (0: at every observation), so most observations
  /// pay one compare. Fixed by the first exporter of an id, like the buckets.
  bool exemplars = true;
  std::uint32_t exemplar_refresh_ms = 100;
  /// executor_tasks_queued_max and executor_tasks_running_max are the most tasks queued
  /// (running) at once within this window before the scrape, so that a burst between
  /// two scrapes shows on the next one. A rolling window, not "since the last scrape":
  /// a registry may be scraped by two servers, or collected by a plain Exposer that the
  /// library does not see, and neither may hide a peak from the other. Set it to at
  /// least the scrape interval (Prometheus' default is one minute); a longer one keeps
  /// each peak on more scrapes. Fixed by the first exporter of an id.
  std::chrono::milliseconds peak_window = std::chrono::seconds(60);
  /// The thread pool and the process pool count those peaks where tasks move, under the
  /// queue locks they take anyway, so that a burst between two folds is seen (no cost on
  /// submit; benchmark block "peaks"). Off, or for an executor whose queue the library
  /// does not own (the proxy), the peaks are the most the queued and running gauges
  /// showed at any fold (each scrape, and the background fold).
  bool exact_peaks = true;
};

}  // namespace executor_exporter
