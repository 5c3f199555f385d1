#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <executor_exporter/detail/clock.hpp>
#include <executor_exporter/metrics/detail/executor_metrics.hpp>
#include <executor_exporter/metrics/exporter_options.hpp>
#include <executor_exporter/metrics/registry.hpp>

namespace executor_exporter {

/// The metrics of one executor, identified by an id and a type (the `executor` and
/// `executor_type` labels), registered in a prometheus-cpp Registry. Exporters created
/// with the same registry, id and type share one set of series, so several executors
/// can report as one; different ids stay apart. The recording calls are what an
/// executor (or InstrumentedExecutorProxy) calls around each task: they are lock-free
/// and write only the calling thread's own shard, and they may be called from any
/// thread. Timestamps are nanoseconds from detail::now_ns().
class ExecutorExporter {
 public:
  /// Registers (or joins) the series of `id`/`executor_type` in `registry` (the default
  /// registry when null). Throws std::invalid_argument when bucket bounds are not
  /// increasing and positive, or differ from those of an exporter already sharing the id.
  ExecutorExporter(std::string id, std::string executor_type,
                   std::shared_ptr<prometheus::Registry> registry = nullptr,
                   const ExporterOptions& options = {});
  ExecutorExporter(ExecutorExporter&& other) noexcept
      : metrics_(std::move(other.metrics_)), max_workers_(other.max_workers_) {
    other.max_workers_ = 0;
  }
  ExecutorExporter& operator=(ExecutorExporter&& other) noexcept {
    if (this != &other) {
      release();
      metrics_ = std::move(other.metrics_);
      max_workers_ = other.max_workers_;
      other.max_workers_ = 0;
    }
    return *this;
  }
  ExecutorExporter(const ExecutorExporter&) = delete;
  ExecutorExporter& operator=(const ExecutorExporter&) = delete;
  /// Withdraws this instance's share of executor_max_workers and folds its last counts.
  ~ExecutorExporter() { release(); }

  /// This instance's contribution to executor_max_workers.
  void set_max_workers(std::int64_t n) noexcept {
    metrics_->add_max_workers(n - max_workers_);
    max_workers_ = n;
  }
  std::int64_t max_workers() const noexcept { return max_workers_; }

  /// A task was accepted; returns its submit time, or 0 when timing is sampled
  /// (ExporterOptions::timing_sample_rate) and this task is not to be timed. Pass the
  /// result on to task_started, which then counts the task without timing it.
  std::uint64_t task_submitted() {
    auto& shard = metrics_->local_shard();
    const std::uint64_t now = shard.sample() ? detail::now_ns() : 0;
    shard.task_submitted();
    return now;
  }
  /// A submit was refused.
  void task_rejected(RejectReason reason) { metrics_->local_shard().task_rejected(reason); }
  /// Queued tasks were cancelled before they started.
  void task_cancelled(std::uint64_t n = 1) { metrics_->local_shard().task_cancelled(n); }
  /// A task submitted at `submitted_ns` starts now; returns the start time (0, and no
  /// clock read, for an untimed task: `submitted_ns` 0). Until task_finished, on this
  /// same thread, the task's time so far counts in the busy seconds at every scrape (one
  /// running task per thread and executor: a nested start takes over).
  std::uint64_t task_started(std::uint64_t submitted_ns) {
    auto& shard = metrics_->local_shard();
    if (submitted_ns == 0) {
      shard.task_started_untimed();
      return 0;
    }
    const std::uint64_t now = detail::now_ns();
    shard.task_started(now > submitted_ns ? now - submitted_ns : 0);
    shard.set_running_since(now);  // its time so far counts as busy while it runs
    return now;
  }
  /// A task started at `started_ns` (task_started's result) ends now, successfully or
  /// with an exception.
  void task_finished(std::uint64_t started_ns, bool ok) {
    auto& shard = metrics_->local_shard();
    if (started_ns == 0) {
      shard.task_finished_untimed(ok);
      return;
    }
    const std::uint64_t now = detail::now_ns();
    shard.set_running_since(0);
    shard.task_finished(now > started_ns ? now - started_ns : 0, ok, shard.sample_rate());
  }
  /// A worker came up (after its initializer) or went away.
  void worker_started() noexcept { metrics_->worker_started(); }
  void worker_stopped() noexcept { metrics_->worker_stopped(); }

  const std::string& id() const { return metrics_->id(); }
  const std::string& executor_type() const { return metrics_->type(); }

  /// The shared metrics object, for executors that cache their worker's shard.
  detail::ExecutorMetrics& metrics() { return *metrics_; }
  /// The same object as a shared reference, for a worker that must be able to finish
  /// its bookkeeping after its executor (and so this exporter) is gone.
  std::shared_ptr<detail::ExecutorMetrics> metrics_handle() const { return metrics_; }

 private:
  void release() noexcept {
    if (metrics_) {
      metrics_->add_max_workers(-max_workers_);
      max_workers_ = 0;
      metrics_->fold();
      metrics_.reset();
    }
  }

  std::shared_ptr<detail::ExecutorMetrics> metrics_;
  std::int64_t max_workers_ = 0;
};

}  // namespace executor_exporter
