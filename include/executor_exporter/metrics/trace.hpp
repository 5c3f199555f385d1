#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include <executor_exporter/detail/clock.hpp>
#include <executor_exporter/metrics/detail/executor_metrics.hpp>
#include <executor_exporter/metrics/trace_options.hpp>

namespace executor_exporter {

/// The stopwatch a traced task receives (ThreadPoolExecutor::submit_traced, worker.go's
/// RunTraced). Each mark("action") records the time since the previous mark, or since
/// the task started, in executor_task_trace_seconds{scope, action}. Marks from many
/// workers at once are exact (each observation lands in its series under a lock). A
/// Trace belongs to its task: use it on the task's thread, during the task.
class Trace {
 public:
  /// Starts the stopwatch now. Executors create traces; users receive them.
  /// `metrics` null: the executor's metrics are compiled out and marks record nothing.
  Trace(detail::ExecutorMetrics* metrics, std::string scope, const TraceOptions& options)
      : metrics_(metrics),
        options_(&options),
        scope_(std::move(scope)),
        last_ns_(detail::now_ns()) {}
  Trace(const Trace&) = delete;
  Trace& operator=(const Trace&) = delete;

  /// Records the time since the previous mark (or the start) as `action`, and restarts
  /// the stopwatch. Returns the recorded seconds.
  double mark(std::string_view action) {
    const std::uint64_t now = detail::now_ns();
    const double seconds = static_cast<double>(now - last_ns_) / 1e9;
    if (metrics_ != nullptr) {
      metrics_->observe_trace(scope_, action, seconds, *options_, last_ns_, now);
    }
    // The recording itself counts toward the next interval, as a stopwatch would.
    last_ns_ = now;
    return seconds;
  }

  /// The scope label of every mark of this trace.
  const std::string& scope() const noexcept { return scope_; }

 private:
  detail::ExecutorMetrics* metrics_;
  const TraceOptions* options_;
  std::string scope_;
  std::uint64_t last_ns_;
};

}  // namespace executor_exporter
