#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <executor_exporter/process/detail/process_task.hpp>
#include <executor_exporter/process/process_pool_options.hpp>

namespace executor_exporter {
class ExecutorExporter;
}

namespace executor_exporter::detail {

/// The non-template part of ProcessPoolExecutor (src/process/, one file per process and
/// the parent split by concern; process_internal.hpp says who talks to whom): the zygote,
/// the workers, the parent's I/O thread and the thread that publishes results.
class ProcessEngine {
 public:
  /// Checks the thread count, forks the zygote, starts the I/O and completion threads
  /// and asks for options.max_workers workers.
  ProcessEngine(const ProcessPoolOptions& options, ExecutorExporter& exporter);
  ProcessEngine(const ProcessEngine&) = delete;
  ProcessEngine& operator=(const ProcessEngine&) = delete;
  /// shutdown(true, false), then releases everything.
  ~ProcessEngine();

  /// Queues a task (ownership passes to the engine). Counts it as submitted; throws
  /// ExecutorShutdownError or BrokenExecutorError (counted as rejected, the task deleted).
  void enqueue(ProcessTask* task);
  std::uint64_t next_task_id() noexcept { return next_id_.fetch_add(1, std::memory_order_relaxed); }

  void shutdown(bool wait, bool cancel_futures);
  /// Kills every worker now: pending and running tasks fail with BrokenExecutorError.
  void kill_workers();

  std::size_t max_workers() const noexcept;
  /// The zygote's pid, and the pids of the live workers (racy snapshot).
  pid_t zygote_pid() const noexcept;
  std::vector<pid_t> worker_pids() const;
  /// True once the pool is broken.
  bool broken() const;

  struct Impl;

 private:
  std::atomic<std::uint64_t> next_id_{1};
  std::unique_ptr<Impl> impl_;
};

/// Forks the process-wide zygote server early (see ProcessPoolExecutor::preinit).
void process_preinit();
/// Stops it (tests; pools created later fork their own zygote again).
void process_preinit_stop();

}  // namespace executor_exporter::detail
