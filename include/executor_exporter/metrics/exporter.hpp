#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <executor_exporter/detail/clock.hpp>
#include <executor_exporter/metrics/detail/manual_running.hpp>
#include <executor_exporter/metrics/detail/recorder.hpp>
#include <executor_exporter/metrics/exporter_options.hpp>
#include <executor_exporter/metrics/registry.hpp>
#include <executor_exporter/metrics/task_observer.hpp>

namespace executor_exporter {

/// The metrics of one executor, identified by an id and a type (the `executor` and
/// `executor_type` labels), registered in a prometheus-cpp Registry. Exporters created
/// with the same registry, id and type share one set of series, so several executors
/// can report as one; different ids stay apart. The recording calls are what an
/// executor (or InstrumentedExecutorProxy) calls around each task: they are lock-free
/// and write only the calling thread's own shard, and they may be called from any
/// thread. Timestamps are nanoseconds from now_ns().
class ExecutorExporter {
 public:
  /// Registers (or joins) the series of `id`/`executor_type` in `registry` (the default
  /// registry when null). Throws std::invalid_argument when bucket bounds are not
  /// increasing and positive, or differ from those of an exporter already sharing the id.
  ExecutorExporter(std::string id, std::string executor_type,
                   std::shared_ptr<prometheus::Registry> registry = nullptr,
                   const ExporterOptions& options = {});

  /// This instance's contribution to executor_max_workers.
  void set_max_workers(std::int64_t n) noexcept { recorder_.set_level(Metric::max_workers, n); }
  std::int64_t max_workers() const noexcept { return recorder_.level(Metric::max_workers); }

  /// A task was accepted; returns its submit time, or 0 when timing is sampled
  /// (ExporterOptions::timing_sample_rate) and this task is not to be timed. Pass the
  /// result on to task_started, which then counts the task without timing it.
  std::uint64_t task_submitted() {
    detail::TaskRef t = recorder_.prepare();
    t.queue_tracked = false;  // as ref() below
    // The manual calls pass only the submit time from one to the next, so none of a
    // task's events carries an id: its submit event must not carry one either.
    t.id = 0;
    detail::Recorder::submitted(t);
    return t.submit_ns;
  }
  /// A submit was refused.
  void task_rejected(RejectReason reason) { detail::Recorder::rejected(ref(0), reason); }
  /// Queued tasks were cancelled before they started.
  void task_cancelled(std::uint64_t n = 1) { detail::Recorder::cancelled(ref(0), n); }
  /// A task submitted at `submitted_ns` starts now; returns the start time (0, and no
  /// clock read, for an untimed task: `submitted_ns` 0). Until task_finished, called on
  /// this thread or any other, the task's time so far counts in the busy seconds at every
  /// scrape (up to ManualRunning::kSlots tasks of this exporter running at once; more are
  /// counted when they end). The first call may throw std::bad_alloc, recording nothing.
  std::uint64_t task_started(std::uint64_t submitted_ns) {
    if (submitted_ns != 0) manual_->ready();  // may throw: before anything is counted
    const std::uint64_t start =
        detail::Recorder::started(ref(submitted_ns), detail::Recorder::Mark::none);
    if (start != 0) manual_->add(start);
    return start;
  }
  /// A task started at `started_ns` (task_started's result) ends now, successfully or
  /// with an exception; on any thread, not only the one that started it.
  void task_finished(std::uint64_t started_ns, bool ok) {
    if (started_ns != 0) manual_->remove(started_ns);  // before its busy time is added
    detail::Recorder::finished(ref(0), started_ns, ok, nullptr, detail::Recorder::Mark::none);
  }
  /// A worker came up (after its initializer) or went away.
  void worker_started() noexcept { recorder_.worker_started(); }
  void worker_stopped() noexcept { recorder_.worker_stopped(); }

  /// Attaches an observer to every executor of this id (see TaskObserver); it stays
  /// alive while attached. Tasks recorded through the calls above carry no task id.
  void add_observer(std::shared_ptr<TaskObserver> observer) {
    recorder_.metrics().add_observer(std::move(observer));
  }
  /// Detaches it; a hook already running on another thread may still finish.
  void remove_observer(const TaskObserver* observer) {
    recorder_.metrics().remove_observer(observer);
  }

  const std::string& id() const { return recorder_.id(); }
  const std::string& executor_type() const { return recorder_.type(); }

  /// The recorder behind this exporter, for executors built on it.
  detail::Recorder& recorder() noexcept { return recorder_; }

 private:
  detail::TaskRef ref(std::uint64_t submit_ns) const noexcept {
    detail::TaskRef t{&recorder_.metrics(), submit_ns, 0};
    t.queue_tracked = false;  // a manual cancel does not say when its task was submitted
    return t;
  }

  detail::Recorder recorder_;
  // After recorder_: built from it by every constructor, gone before it.
  std::unique_ptr<detail::ManualRunning> manual_ =
      std::make_unique<detail::ManualRunning>(recorder_.handle());
};

}  // namespace executor_exporter
