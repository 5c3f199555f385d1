#pragma once

#include <cstdint>
#include <exception>
#include <source_location>
#include <string_view>

#include <executor_exporter/detail/clock.hpp>
#include <executor_exporter/metrics/reject_reason.hpp>

namespace executor_exporter {

/// The library's monotonic clock in nanoseconds: the clock of every timestamp it
/// records (a calibrated TSC where the CPU has an invariant one, else steady_clock).
/// Compare only with other now_ns() readings.
inline std::uint64_t now_ns() noexcept { return detail::now_ns(); }

/// One task as an observer sees it at one transition. Plain data, valid only during the
/// call: copy what you keep. Timestamps are nanoseconds of the library's monotonic clock
/// (executor_exporter::now_ns(), the clock of the wait and run histograms), except for
/// the process pool, whose times are the worker's CLOCK_MONOTONIC (steady_clock)
/// readings, which now_ns() approximates (within its calibration error, ~1e-4); 0 means
/// not measured: a stage not reached yet, or a task not picked for timing when
/// ExporterOptions::timing_sample_rate is above 1.
struct TaskInfo {
  std::string_view executor;       ///< the `executor` label (the executor id)
  std::string_view executor_type;  ///< the `executor_type` label
  std::string_view task;           ///< the task's name (submit_named); empty when unnamed
  /// Unique among the tasks of this process while an observer is attached to the
  /// executor at submit; 0 for a task submitted before any observer was attached.
  std::uint64_t task_id = 0;
  std::uint64_t submit_ns = 0;  ///< when submit accepted it
  std::uint64_t start_ns = 0;   ///< when a worker started it
  std::uint64_t end_ns = 0;     ///< when it returned or threw
  /// How many tasks this event stands for: more than 1 only where tasks of one batch
  /// change state together without being told apart (a cancel of what is queued).
  std::uint64_t count = 1;
  /// Where the task was submitted: the submitting code's file, line and function;
  /// empty (line() == 0) where the executor did not capture it.
  std::source_location call_site{};

  /// Time in the queue, or 0 when either end was not measured.
  std::uint64_t wait_ns() const noexcept {
    return submit_ns != 0 && start_ns > submit_ns ? start_ns - submit_ns : 0;
  }
  /// Time running, or 0 when either end was not measured.
  std::uint64_t run_ns() const noexcept {
    return start_ns != 0 && end_ns > start_ns ? end_ns - start_ns : 0;
  }
};

/// A worker thread or process of an executor as an observer sees it.
struct WorkerInfo {
  std::string_view executor;
  std::string_view executor_type;
  /// Why a worker went away: empty for a normal exit, else the reason label of
  /// executor_worker_restarts_total (crashed, timeout, recycled).
  std::string_view reason;
  std::uint64_t at_ns = 0;  ///< when it happened (now_ns())
};

/// Receives every transition of every task of the executors it is attached to
/// (ExecutorExporter::add_observer, or an executor's add_observer): the seam through
/// which event streams, histories and watchdogs plug into the library. The metrics are
/// updated before a hook runs, so a hook that scrapes sees its own transition. Hooks
/// are noexcept and run on the thread of the transition (a submitter, a worker, the
/// process pool's I/O thread), sometimes while the executor holds its queue lock: keep
/// them short, never block, and never call back into the executor. Hand anything slow
/// to a thread of your own. With no observer attached, each transition costs one
/// predictable branch. Override only the hooks you need.
class TaskObserver {
 public:
  virtual ~TaskObserver() = default;

  /// Accepted by submit (or map), before any worker can start it.
  virtual void on_submitted(const TaskInfo& /*task*/) noexcept {}
  /// Refused by submit; nothing was queued.
  virtual void on_rejected(const TaskInfo& /*task*/, RejectReason /*reason*/) noexcept {}
  /// A worker starts running it.
  virtual void on_started(const TaskInfo& /*task*/) noexcept {}
  /// It ran: `error` is null when it returned normally, else what it threw (rethrow it
  /// to read the type and message).
  virtual void on_finished(const TaskInfo& /*task*/, std::exception_ptr /*error*/) noexcept {}
  /// It left the queue without running: cancelled, or dropped by a broken pool.
  virtual void on_cancelled(const TaskInfo& /*task*/) noexcept {}
  /// It was still queued past its deadline and was failed without running.
  virtual void on_expired(const TaskInfo& /*task*/) noexcept {}
  /// A worker came up (after its initializer).
  virtual void on_worker_started(const WorkerInfo& /*worker*/) noexcept {}
  /// A worker went away (scaled down, shut down, crashed, recycled).
  virtual void on_worker_stopped(const WorkerInfo& /*worker*/) noexcept {}
};

}  // namespace executor_exporter
