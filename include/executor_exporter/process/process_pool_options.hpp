#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <executor_exporter/metrics/exporter_options.hpp>
#include <executor_exporter/metrics/task_observer.hpp>

namespace prometheus {
class Registry;
}

namespace executor_exporter {

/// What ProcessPoolExecutor's constructor does when the process already runs other
/// threads (fork() copies only the calling thread; a lock another thread holds stays
/// locked forever in the zygote and its workers).
enum class ThreadCheck {
  allow,  ///< fork anyway, silently
  warn,   ///< fork anyway and print one line to stderr (the default)
  throw_  ///< throw ForkSafetyError
};

/// Settings of a ProcessPoolExecutor; every field has a default.
struct ProcessPoolOptions {
  /// Worker processes (the hardware thread count when 0).
  std::size_t max_workers = 0;
  /// Runs in each worker process after it is forked, before it takes tasks. If it throws
  /// (or the worker dies before it finishes) the pool is broken: pending and later tasks
  /// fail with BrokenExecutorError.
  void (*initializer)() = nullptr;
  /// A worker exits and is replaced after this many tasks (0: never). Counted as
  /// executor_worker_restarts_total{reason="recycled"}.
  std::uint64_t max_tasks_per_child = 0;
  /// A task running longer than this in its worker (measured from its start in the
  /// child) gets TaskTimeoutError; its worker is killed and replaced (0: no limit).
  std::chrono::nanoseconds task_timeout{0};
  /// Address space a worker may add to what it had when forked (setrlimit RLIMIT_AS).
  /// A task that breaches it fails with WorkerCrashedError and the worker is replaced
  /// (0: no limit).
  std::uint64_t memory_limit_bytes = 0;
  /// More than crash_loop_limit crashes within crash_loop_window break the pool.
  std::size_t crash_loop_limit = 5;
  std::chrono::nanoseconds crash_loop_window = std::chrono::seconds(10);
  /// Python's behaviour: the first crash of a worker breaks the pool.
  bool break_on_first_crash = false;
  /// Tasks sent ahead to one worker (several tasks share one write; a task waiting in a
  /// worker cannot go to another worker). At least 1.
  std::size_t max_inflight_per_worker = 16;
  /// The largest message between the pool and a worker, in bytes: a task's encoded
  /// arguments (plus 16 bytes) one way, its encoded result (plus 16 bytes) the other.
  /// Both sides read with this limit, so it bounds what a worker or the pool ever
  /// buffers for one message. submit(), submit_named() and map() refuse a task whose
  /// arguments encode to more with MessageTooLargeError, before anything is sent
  /// (counted in executor_tasks_rejected_total{reason="error"}); a result that encodes
  /// to more fails only its task, with a ProcessTaskError whose type_name() is
  /// "executor_exporter::MessageTooLargeError", and the worker carries on. 0 means the
  /// default (64 MiB); values below 1 KiB count as 1 KiB, above 4 GiB - 1 as 4 GiB - 1
  /// (the frame's length field).
  std::size_t max_message_bytes = std::size_t{64} << 20;
  /// What to do when the process already runs threads at construction.
  ThreadCheck thread_check = ThreadCheck::warn;
  /// The `executor` label; executors sharing an id add up in the metrics.
  std::string id;
  /// Where the metrics are registered; the default registry when null.
  std::shared_ptr<prometheus::Registry> registry;
  /// Histogram buckets of this executor's metrics.
  ExporterOptions exporter;
  /// Distinct task names (submit_named) that get their own task label; later names
  /// count under task="other", as in ThreadPoolOptions.
  std::size_t max_task_names = 64;
  /// Attached to the pool's id before its workers start (see TaskObserver).
  std::vector<std::shared_ptr<TaskObserver>> observers;
};

}  // namespace executor_exporter
