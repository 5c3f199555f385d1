#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <source_location>
#include <string>
#include <string_view>
#include <utility>

#include <ctime>

#include <executor_exporter/detail/clock.hpp>
#include <executor_exporter/detail/hot_path.hpp>
#include <executor_exporter/metrics/detail/executor_metrics.hpp>
#include <executor_exporter/metrics/detail/trace_ids.hpp>
#include <executor_exporter/metrics/exporter_options.hpp>
#include <executor_exporter/metrics/metric_catalog.hpp>
#include <executor_exporter/metrics/reject_reason.hpp>
#include <executor_exporter/metrics/task_observer.hpp>

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace executor_exporter::detail {

/// What the recorder needs to know of a task at each of its transitions. Executors keep
/// the three values in their task nodes (wherever they fit) and hand them back; they
/// never look inside `series`. On a per-task path, build one in place (initialised from
/// a call, or filled by Recorder::prepare(TaskRef&, ...)) rather than assign one over
/// another: GCC copies it through the stack in 8-byte stores and 16-byte loads, and each
/// such load waits for the stores to drain (a store-forwarding stall, ~3 per task).
struct TaskRef {
  /// The series the task counts in: its name's (submit_named) or the executor's.
  ExecutorMetrics* series = nullptr;
  /// When submit accepted it, or 0 when it is not timed (timing_sample_rate).
  std::uint64_t submit_ns = 0;
  /// Its id for observers; 0 when none was attached at submit.
  std::uint64_t id = 0;
  /// Where it was submitted (the caller's std::source_location); empty (line 0) where
  /// the executor did not capture it.
  std::source_location where{};
  /// Whether its time in the queue counts in the queued seconds from its submit on. False
  /// where no leave of the task is sure to carry its submit time (manual recording, the
  /// process pool's futures): its wait is then added when it starts, as if it had
  /// entered and left the queue at that moment, so nothing is left counted as queued.
  bool queue_tracked = true;
  /// Its trace and span ids, for its exemplars; null when it has none.
  const TraceIds* trace = nullptr;
};

/// The calling thread's CPU clock in nanoseconds. On Linux a system call, not a vDSO
/// read: called only with ExporterOptions::task_cpu_time.
inline std::uint64_t thread_cpu_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000U +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

/// The CPU clock reading at the start of the task the proxy runs on this thread (see
/// Recorder::started); a task run inline inside another overwrites it, so the outer
/// one's CPU time then counts from the inner one's start.
inline thread_local std::uint64_t proxy_cpu_start_ns = 0;

/// A process-unique task id for observers, from a per-thread block: no shared write.
inline std::uint64_t next_task_id() noexcept {
  static std::atomic<std::uint64_t> next_thread{1};
  thread_local const std::uint64_t thread = next_thread.fetch_add(1, std::memory_order_relaxed);
  thread_local std::uint64_t count = 0;
  return (thread << 40) | (++count & ((std::uint64_t{1} << 40) - 1));
}

/// Calls `hook(observer, info)` for every observer of the task's executor. The one
/// branch every transition pays when nobody observes.
template <class Hook>
inline void notify(const TaskRef& t, std::uint64_t start_ns, std::uint64_t end_ns,
                   std::uint64_t count, Hook&& hook) noexcept {
  const ObserverList* observers = t.series->observers();
  if (observers == nullptr) [[likely]]
    return;
  const ExecutorMetrics& s = *t.series;
  TaskInfo info;
  info.executor = s.id();
  info.executor_type = s.type();
  info.task = s.task();
  info.task_id = t.id;
  info.submit_ns = t.submit_ns;
  info.start_ns = start_ns;
  info.end_ns = end_ns;
  info.count = count;
  info.call_site = t.where;
  for (const auto& o : *observers) hook(*o, info);
}

/// The only thing executors call for accounting. One Recorder is one executor's share
/// of the metrics of its id: it decides which tasks are timed (sampling), where a task
/// counts (its name's series or the executor's), writes the calling thread's shard,
/// counts rare events and levels by catalog entry, and tells the observers. Submit,
/// start and end take no lock and write only the calling thread's shard. The levels it
/// set (worker count, queue capacity) are withdrawn when it goes, and its last counts
/// folded, so executors sharing an id add up and leave nothing behind.
class Recorder {
 public:
  Recorder(std::string id, std::string type, std::shared_ptr<prometheus::Registry> registry,
           const ExporterOptions& options = {});
  Recorder(Recorder&& other) noexcept
      : metrics_(std::move(other.metrics_)), own_levels_(std::exchange(other.own_levels_, {})) {}
  Recorder& operator=(Recorder&& other) noexcept {
    if (this != &other) {
      release();
      metrics_ = std::move(other.metrics_);
      own_levels_ = std::exchange(other.own_levels_, {});
    }
    return *this;
  }
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;
  ~Recorder() { release(); }

  const std::string& id() const { return metrics_->id(); }
  const std::string& type() const { return metrics_->type(); }
  /// The executor-level storage, as an opaque handle for what outlives a task's
  /// transition (a future's cancel, a worker that outlives its pool, a Trace).
  ExecutorMetrics& metrics() const { return *metrics_; }
  std::shared_ptr<ExecutorMetrics> handle() const { return metrics_; }
  /// The same as a pointer; never null here (NullRecorder's is).
  ExecutorMetrics* storage() const noexcept { return metrics_.get(); }

  // ---- Levels and rare events ---------------------------------------------------

  /// This executor's contribution to level `m` (max_workers, queue_capacity) is now
  /// `value`; executors sharing an id add up.
  void set_level(Metric m, std::int64_t value) noexcept {
    auto& own = own_levels_[static_cast<std::size_t>(m)];
    metrics_->adjust(m, value - own);
    own = value;
  }
  std::int64_t level(Metric m) const noexcept { return own_levels_[static_cast<std::size_t>(m)]; }
  /// A rare event of catalog entry `m` (MetricSource::event), for the `label`-th value
  /// of its enumerated label.
  void count(Metric m, std::size_t label = 0, std::uint64_t n = 1) const noexcept {
    metrics_->count(m, label, n);
  }
  /// A worker came up (after its initializer) or went away (`reason`: empty, or the
  /// label of executor_worker_restarts_total). Static so a worker that outlives its
  /// executor can still say it left.
  static void worker_started(ExecutorMetrics& m) noexcept {
    m.adjust(Metric::workers, 1);
    m.count(Metric::workers_started, 0, 1);
    notify_worker(m, {}, true);
  }
  static void worker_stopped(ExecutorMetrics& m, std::string_view reason = {}) noexcept {
    m.adjust(Metric::workers, -1);
    notify_worker(m, reason, false);
  }
  void worker_started() const noexcept { worker_started(*metrics_); }
  void worker_stopped(std::string_view reason = {}) const noexcept {
    worker_stopped(*metrics_, reason);
  }

  // ---- Submit side -----------------------------------------------------------------

  /// The series of tasks named `name` (null for an empty name: the executor's own).
  ExecutorMetrics* named(std::string_view name, std::size_t max_names) const {
    return name.empty() ? nullptr : &metrics_->named(name, max_names);
  }
  /// Before a task is offered to the queue: where it counts, whether it is timed (its
  /// submit time, read now, or 0), and an id when someone observes.
  EXECUTOR_EXPORTER_HOT TaskRef prepare(ExecutorMetrics* named = nullptr) const noexcept {
    TaskRef t;
    prepare(t, named);
    return t;
  }
  /// prepare() into a default-constructed `t`, field by field: the submit path's form,
  /// where copying a returned TaskRef cost three store-forwarding stalls per task.
  EXECUTOR_EXPORTER_HOT void prepare(TaskRef& t, ExecutorMetrics* named) const noexcept {
    t.series = named != nullptr ? named : metrics_.get();
    if (t.series->local_shard().sample()) t.submit_ns = now_ns();
    if (t.series->observers() != nullptr) [[unlikely]]
      t.id = next_task_id();
  }
  /// The queue accepted `t` (n tasks of one batch: a map chunk counts once).
  EXECUTOR_EXPORTER_HOT static void submitted(const TaskRef& t, std::uint64_t n = 1) noexcept {
    MetricShard& shard = t.series->local_shard();
    if (t.submit_ns != 0 && t.queue_tracked) shard.task_submitted_timed(n, t.submit_ns);
    shard.task_submitted(n);
    notify(t, 0, 0, n, [](TaskObserver& o, const TaskInfo& i) { o.on_submitted(i); });
  }
  /// The submit of `t` was refused.
  static void rejected(const TaskRef& t, RejectReason reason) noexcept {
    t.series->local_shard().task_rejected(reason);
    notify(t, 0, 0, 1, [reason](TaskObserver& o, const TaskInfo& i) { o.on_rejected(i, reason); });
  }

  // ---- Leaving the queue without running (any thread) ------------------------------

  /// `n` queued tasks were cancelled, or dropped by a broken pool.
  static void cancelled(const TaskRef& t, std::uint64_t n = 1) noexcept {
    MetricShard& shard = t.series->local_shard();
    if (t.submit_ns != 0 && t.queue_tracked) shard.task_dropped_timed(n, t.submit_ns, now_ns());
    shard.task_cancelled(n);
    notify(t, 0, 0, n, [](TaskObserver& o, const TaskInfo& i) { o.on_cancelled(i); });
  }
  /// A queued task passed its deadline and is failed without running.
  static void expired(const TaskRef& t) noexcept {
    MetricShard& shard = t.series->local_shard();
    if (t.submit_ns != 0 && t.queue_tracked) shard.task_dropped_timed(1, t.submit_ns, now_ns());
    shard.task_expired();
    notify(t, 0, 0, 1, [](TaskObserver& o, const TaskInfo& i) { o.on_expired(i); });
  }

  // ---- Running, on any thread (the proxy, manual recording) ------------------------

  /// Where a running timed task is marked for the busy seconds. `thread`: in the calling
  /// thread's shard, which only that thread can clear, so started() and finished() must
  /// run on the same thread (the proxy's tickets). `none`: the caller tracks it itself,
  /// because its start and end may happen on different threads (manual recording: see
  /// ManualRunning).
  enum class Mark : bool { thread, none };

  /// `t` starts now; returns its start time (0, and no clock read, when untimed). With
  /// Mark::thread, until finished() on this same thread, its time so far counts in the
  /// busy seconds.
  static std::uint64_t started(const TaskRef& t, Mark mark = Mark::thread) noexcept {
    MetricShard& shard = t.series->local_shard();
    std::uint64_t start = 0;
    if (t.submit_ns == 0) {
      shard.task_started_untimed();
    } else {
      start = now_ns();
      start_timed(shard, t, start);
      if (mark == Mark::thread) {
        shard.set_series_running_since(start);
        t.series->root().local_shard().begin_task(start, t.series, t.where, t.id);
        if (shard.cpu_time()) [[unlikely]]
          proxy_cpu_start_ns = thread_cpu_ns();
      }
    }
    notify(t, start, 0, 1, [](TaskObserver& o, const TaskInfo& i) { o.on_started(i); });
    return start;
  }
  /// `t`, started at `start_ns` (started()'s result), ends now; `error` is what it threw.
  /// `mark` as given to started().
  static void finished(const TaskRef& t, std::uint64_t start_ns, bool ok,
                       const std::exception_ptr& error = nullptr,
                       Mark mark = Mark::thread) noexcept {
    std::uint64_t end = 0;
    if (start_ns == 0) {
      t.series->local_shard().task_finished_untimed(ok);
    } else {
      end = now_ns();
      MetricShard& own = t.series->root().local_shard();
      if (mark == Mark::thread) {
        MetricShard& series = t.series->local_shard();
        if (series.cpu_time()) [[unlikely]] {
          const std::uint64_t cpu_now = thread_cpu_ns();
          const std::uint64_t cpu = cpu_now - std::min(cpu_now, proxy_cpu_start_ns);
          series.task_cpu(cpu);
          own.add_foreign_cpu(cpu);
        }
        // Before the busy time and the run histogram (see set_running_since).
        series.set_series_running_since(0);
        own.set_running_since(0);
      }
      end_timed(t, own, end - std::min(end, start_ns), ok, end);
      if (mark == Mark::thread)
        own.record_slice({t.submit_ns, start_ns, end, t.series, t.where, t.id, ok});
    }
    notify(t, start_ns, end, 1,
           [&](TaskObserver& o, const TaskInfo& i) { o.on_finished(i, error); });
  }

  /// `t` ran where no shard saw it start (a process pool's worker): its start and end
  /// were measured there and are counted together now.
  static void ran(const TaskRef& t, std::uint64_t start_ns, std::uint64_t end_ns, bool ok,
                  const std::exception_ptr& error) noexcept {
    start_timed(t.series->local_shard(), t, start_ns);
    end_timed(t, t.series->root().local_shard(), end_ns > start_ns ? end_ns - start_ns : 0, ok,
              end_ns);
    if (t.series->observers() != nullptr) [[unlikely]] {
      notify(t, start_ns, 0, 1, [](TaskObserver& o, const TaskInfo& i) { o.on_started(i); });
      notify(t, start_ns, end_ns, 1,
             [&](TaskObserver& o, const TaskInfo& i) { o.on_finished(i, error); });
    }
  }

  /// A worker thread's recording state: its own shard, and the end of its last timed
  /// task, which is the next task's start when it took that one without waiting (one
  /// clock read per task instead of two). Made on the worker thread, used only there.
  class Worker {
   public:
    explicit Worker(ExecutorMetrics& executor)
        : owner_(&executor), shard_(&executor.local_shard()) {
      owner_->add_cpu_thread(this);  // executor_worker_cpu_seconds_total reads its clock
    }
    ~Worker() { owner_->remove_cpu_thread(this); }
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    /// `t` starts now; `waited`: the worker slept since its last task. Returns the start
    /// time, 0 for an untimed task.
    EXECUTOR_EXPORTER_HOT std::uint64_t start(const TaskRef& t, bool waited) noexcept {
      MetricShard& series = t.series == owner_ ? *shard_ : t.series->local_shard();
      std::uint64_t start = 0;
      if (t.submit_ns == 0) {
        series.task_started_untimed();
        last_end_ = 0;  // the next timed task reads the clock for its start
      } else {
        // Back to back, the last task's end is this one's start, but never earlier than
        // its submit: a worker that spun until it arrived was idle in between.
        start = waited || last_end_ == 0 ? now_ns() : std::max(last_end_, t.submit_ns);
        start_timed(series, t, start);
        series.set_series_running_since(start);
        shard_->begin_task(start, t.series, t.where, t.id);
        if (shard_->cpu_time()) [[unlikely]]
          cpu_start_ = thread_cpu_ns();
      }
      notify(t, start, 0, 1, [](TaskObserver& o, const TaskInfo& i) { o.on_started(i); });
      return start;
    }
    /// `t`, started at `start`, ends now. `error()` gives what it threw; it is called
    /// only when it failed and someone observes.
    template <class ErrorOf>
    EXECUTOR_EXPORTER_HOT void finish(const TaskRef& t, std::uint64_t start, bool ok,
                                      ErrorOf&& error) noexcept {
      std::uint64_t end = 0;
      if (start == 0) {
        (t.series == owner_ ? *shard_ : t.series->local_shard()).task_finished_untimed(ok);
      } else {
        end = now_ns();
        last_end_ = end;
        MetricShard& series = t.series == owner_ ? *shard_ : t.series->local_shard();
        if (shard_->cpu_time()) [[unlikely]]
          series.task_cpu(thread_cpu_ns() - cpu_start_);
        // Before the busy time and the run histogram are added (see set_running_since).
        series.set_series_running_since(0);
        shard_->set_running_since(0);
        end_timed(t, *shard_, end - std::min(end, start), ok, end);
        shard_->record_slice({t.submit_ns, start, end, t.series, t.where, t.id, ok});
      }
      if (t.series->observers() != nullptr) [[unlikely]] {
        const std::exception_ptr e = ok ? nullptr : error();
        notify(t, start, end, 1, [&](TaskObserver& o, const TaskInfo& i) { o.on_finished(i, e); });
      }
    }
    /// The last task's end is no start for the next one (an untimed or expired task).
    void forget_end() noexcept { last_end_ = 0; }

   private:
    ExecutorMetrics* owner_;
    MetricShard* shard_;
    std::uint64_t last_end_ = 0;
    std::uint64_t cpu_start_ = 0;
  };

 private:
  // A timed task leaves the queue at `start_ns`: its wait, and its submit time for the
  // queued seconds. One the queue did not track enters and leaves the queued seconds'
  // sums together here (submit stage first, as the fold reads it last).
  EXECUTOR_EXPORTER_HOT static void start_timed(MetricShard& series, const TaskRef& t,
                                                std::uint64_t start_ns) noexcept {
    const std::uint64_t wait = start_ns > t.submit_ns ? start_ns - t.submit_ns : 0;
    std::size_t bucket = 0;
    if (t.queue_tracked) [[likely]] {
      bucket = series.task_started(wait, t.submit_ns);
    } else {
      series.task_submitted_timed(1, start_ns);
      bucket = series.task_started(wait, start_ns);
    }
    offer_exemplar(series, ExemplarStore::wait, bucket, start_ns, wait, t);
  }

  // A timed task's end: its outcome and run time in its series, and its busy time in the
  // executor's shard `own` (a named task's series has no busy seconds of its own).
  // `now`: the end time, which dates the exemplar.
  EXECUTOR_EXPORTER_HOT static void end_timed(const TaskRef& t, MetricShard& own,
                                              std::uint64_t run_ns, bool ok,
                                              std::uint64_t now) noexcept {
    MetricShard& series = t.series == &t.series->root() ? own : t.series->local_shard();
    const std::uint64_t weight = series.sample_rate();
    const std::size_t bucket = series.task_finished(run_ns, ok, weight);
    offer_exemplar(series, ok ? ExemplarStore::run_completed : ExemplarStore::run_failed, bucket,
                   now, run_ns, t);
    if (&series != &own) own.add_busy(run_ns * weight);
  }

  // `t` landed in `bucket` of histogram `hist` of `shard` at monotonic time `now`: it
  // becomes the bucket's exemplar when that one is older than the refresh interval. A
  // task with no observer id gets one here, only when it refreshes an exemplar (so its
  // wait and run exemplars may name it by different ids).
  EXECUTOR_EXPORTER_HOT static void offer_exemplar(MetricShard& shard, std::size_t hist,
                                                   std::size_t bucket, std::uint64_t now,
                                                   std::uint64_t value_ns,
                                                   const TaskRef& t) noexcept {
    ExemplarStore* store = shard.exemplars();
    if (store == nullptr || !store->due(hist, bucket, now)) [[likely]]
      return;
    store->put(hist, bucket, value_ns,
               ExemplarTag{t.id != 0 ? t.id : next_task_id(), t.where.file_name(),
                           static_cast<std::uint32_t>(t.where.line()), t.trace});
  }

  static void notify_worker(ExecutorMetrics& m, std::string_view reason, bool started) noexcept {
    const ObserverList* observers = m.observers();
    if (observers == nullptr) [[likely]]
      return;
    WorkerInfo info;
    info.executor = m.id();
    info.executor_type = m.type();
    info.reason = reason;
    info.at_ns = now_ns();
    for (const auto& o : *observers) {
      if (started) {
        o->on_worker_started(info);
      } else {
        o->on_worker_stopped(info);
      }
    }
  }

  void release() noexcept;

  std::shared_ptr<ExecutorMetrics> metrics_;
  std::array<std::int64_t, metric_catalog.size()> own_levels_{};
};

/// The recorder of an executor whose metrics are compiled out: the same calls, doing
/// nothing, so `if constexpr` is not needed at every call site.
class NullRecorder {
 public:
  NullRecorder(std::string id, std::string type, const std::shared_ptr<prometheus::Registry>&,
               const ExporterOptions& = {})
      : id_(std::move(id)), type_(std::move(type)) {}
  const std::string& id() const { return id_; }
  const std::string& type() const { return type_; }
  void set_level(Metric m, std::int64_t v) noexcept { levels_[static_cast<std::size_t>(m)] = v; }
  std::int64_t level(Metric m) const noexcept { return levels_[static_cast<std::size_t>(m)]; }
  void count(Metric, std::size_t = 0, std::uint64_t = 1) const noexcept {}
  void worker_started() const noexcept {}
  void worker_stopped(std::string_view = {}) const noexcept {}
  ExecutorMetrics* named(std::string_view, std::size_t) const noexcept { return nullptr; }
  ExecutorMetrics* storage() const noexcept { return nullptr; }

 private:
  std::string id_;
  std::string type_;
  std::array<std::int64_t, metric_catalog.size()> levels_{};
};

}  // namespace executor_exporter::detail
