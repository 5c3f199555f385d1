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

/// ProcessPoolOptions::max_message_bytes as the pool applies it: 0 is the default,
/// and the limit stays where every error and hello message still fits (1 KiB) and
/// where the frame's 32-bit length field can say it.
inline std::size_t message_limit(std::size_t requested) noexcept {
  constexpr std::size_t kMin = 1024;
  constexpr std::size_t kMax = 0xFFFF'FFFF;
  if (requested == 0) return std::size_t{64} << 20;
  return requested < kMin ? kMin : (requested > kMax ? kMax : requested);
}

/// Every frame that carries a task or a result spends 16 bytes of its payload before
/// the encoded arguments or value (function pointers, timestamps).
inline constexpr std::size_t kMessageOverhead = 16;

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
