#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <executor_exporter/detail/call_site.hpp>
#include <executor_exporter/detail/clock.hpp>
#include <executor_exporter/detail/thread_name.hpp>
#include <executor_exporter/errors.hpp>
#include <executor_exporter/metrics/detail/recorder.hpp>
#include <executor_exporter/metrics/exporter_options.hpp>
#include <executor_exporter/metrics/task_observer.hpp>
#include <executor_exporter/metrics/trace.hpp>
#include <executor_exporter/metrics/trace_options.hpp>
#include <executor_exporter/pools/autoscale_options.hpp>
#include <executor_exporter/pools/autoscale_state.hpp>
#include <executor_exporter/pools/detail/autoscaler.hpp>
#include <executor_exporter/pools/detail/error_sink.hpp>
#include <executor_exporter/pools/detail/task.hpp>
#include <executor_exporter/pools/detail/task_queue.hpp>
#include <executor_exporter/pools/future.hpp>
#include <executor_exporter/pools/map_results.hpp>

namespace executor_exporter {

/// What submit() does when a bounded queue is full.
enum class QueueFullPolicy {
  block,               ///< wait for room (back-pressure on the producer); a task of the
                       ///< pool itself is refused instead (QueueFullError), since it could
                       ///< wait for itself
  block_with_timeout,  ///< wait up to ThreadPoolOptions::full_timeout, then QueueFullError
  reject,              ///< throw QueueFullError at once
};

/// Settings of a ThreadPoolExecutor beyond the worker count; every field has a default.
struct ThreadPoolOptions {
  /// Worker threads are named prefix + "-" + index (Linux keeps 15 characters).
  std::string thread_name_prefix;
  /// Runs once on each worker thread before it takes tasks. If it throws, the pool is
  /// broken (as Python's BrokenThreadPool): queued tasks fail with
  /// BrokenExecutorError, later submits throw it (counted as rejected, reason broken).
  std::function<void()> initializer;
  /// The `executor` label; executors sharing an id add up in the metrics.
  std::string id;
  /// Where the metrics are registered; the default registry when null.
  std::shared_ptr<prometheus::Registry> registry;
  /// Histogram buckets of this executor's metrics.
  ExporterOptions exporter;
  /// Most tasks waiting in the queue; 0 (the default) means unbounded.
  std::size_t queue_capacity = 0;
  /// What submit() does when the bounded queue is full (try_submit never blocks).
  QueueFullPolicy on_full = QueueFullPolicy::block;
  /// How long QueueFullPolicy::block_with_timeout waits for room.
  std::chrono::steady_clock::duration full_timeout = std::chrono::seconds(1);
  /// Distinct task names (submit_named) that get their own task label; later names
  /// are counted under task="other" (and in executor_task_names_overflow_total), so a
  /// name built from user data cannot blow up the number of series.
  std::size_t max_task_names = 64;
  /// How traced tasks record executor_task_trace_seconds (histogram or summary).
  TraceOptions trace;
  /// Attached to the pool's id at construction (see TaskObserver and add_observer).
  std::vector<std::shared_ptr<TaskObserver>> observers;
  /// Keep each task's submit call site (std::source_location: file, line, function)
  /// for the stuck-task watchdog, the flight recorder and observers (TaskInfo::call_site).
  /// It costs one pointer store per submit; false exists to measure that (the benchmark
  /// suite's "stuck" block).
  bool capture_call_site = true;
  /// Off by default; when enabled, the pool resizes itself between autoscale.min_workers
  /// and autoscale.max_workers from its own wait p99 and utilization (docs/autoscaling.md).
  AutoscaleOptions autoscale;
};

/// Per-submit settings (submit_with, post_with); the defaults are what submit() does.
struct SubmitOptions {
  /// Counts this task in the series labelled task=`name` instead of the executor's
  /// unlabelled ones (see submit_named); empty: unnamed.
  std::string name;
  /// Higher runs first; tasks of one priority run in submission order. From a long
  /// unbounded queue a worker takes up to 16 tasks at once, so a higher-priority task
  /// submitted then may start after those few (see docs/pool_features.md).
  std::int32_t priority = 0;
  /// A task still queued at this time is not run: its future throws TaskExpiredError,
  /// `on_expired` runs and executor_tasks_expired_total counts it. Checked when a
  /// worker reaches the task, so it is never run late, but may be failed a bit late.
  std::optional<std::chrono::steady_clock::time_point> deadline;
  /// Runs (on the worker) instead of the task when the deadline passed. An exception
  /// from it goes to the error handler, counted as a callback error.
  std::function<void()> on_expired;
  /// The trace and span ids this task's exemplars carry (hex, up to 32 and 16 digits;
  /// an id that is not is left out). Empty: those of the submitting thread's
  /// TraceContext, if any (docs/exemplars.md).
  std::string trace_id;
  std::string span_id;
};

/// Metrics policies of BasicThreadPoolExecutor. TaskMetrics, the default, counts and
/// times every task. NoMetrics compiles the per-task metric updates and clock reads
/// out, and sends the pool's remaining series (rare events) to a private registry that
/// nobody scrapes. It exists to measure what the instrumentation costs (the benchmark
/// suite's "metrics compiled out" row); a service has no reason to turn it off.
struct TaskMetrics {};
struct NoMetrics {};

/// A thread pool that is instrumented out of the box: every task's queue wait and run
/// time, outcomes and worker activity go to an ExecutorExporter with executor_type
/// "thread_pool". submit() returns a Future with the std::future interface (plus
/// cancel and done-callbacks); a task that throws never kills a worker. Beyond
/// Python's ThreadPoolExecutor it offers live resizing (scale_up, scale_down, resize),
/// a bounded queue with back-pressure (block, block with timeout, reject; try_submit),
/// fire-and-forget post() with an error handler, wait()/wait_for() for idleness, traced
/// tasks, named tasks, priorities and per-task deadlines. Metric updates on submit,
/// task start and task end take no lock beyond the queue's and write only the calling
/// thread's own shard; rarer events use atomics folded at scrape. ThreadPoolExecutor is
/// BasicThreadPoolExecutor<TaskMetrics>.
template <class Metrics = TaskMetrics>
class BasicThreadPoolExecutor {
  static_assert(std::is_same_v<Metrics, TaskMetrics> || std::is_same_v<Metrics, NoMetrics>,
                "BasicThreadPoolExecutor<TaskMetrics> or BasicThreadPoolExecutor<NoMetrics>");
  static constexpr bool kMetered = std::is_same_v<Metrics, TaskMetrics>;

 public:
  /// Starts `max_workers` threads (the hardware thread count when 0).
  explicit BasicThreadPoolExecutor(std::size_t max_workers = 0, ThreadPoolOptions options = {})
      : options_(std::move(options)),
        recorder_(options_.id, "thread_pool", options_.registry, options_.exporter),
        sink_(std::make_shared<detail::ErrorSink>(recorder_.storage(), recorder_.id())),
        queue_(options_.queue_capacity, kMetered && options_.exporter.exact_peaks) {
    (void)detail::now_ns();  // calibrates the clock now rather than in the first submit
    if (max_workers == 0) max_workers = std::max(1U, std::thread::hardware_concurrency());
    check_size(max_workers);
    validate(options_.autoscale, max_workers);
    if (options_.autoscale.enabled) {
      check_size(options_.autoscale.max_workers);
      if constexpr (!kMetered) {
        throw std::invalid_argument(
            "executor_exporter: autoscale: a pool without metrics (NoMetrics) has no load to "
            "read");
      }
    }
    if (options_.thread_name_prefix.empty()) {
      options_.thread_name_prefix = options_.id.empty() ? "worker" : options_.id;
    }
    recorder_.set_level(Metric::queue_capacity, static_cast<std::int64_t>(options_.queue_capacity));
    if constexpr (kMetered) {
      for (auto& observer : options_.observers) add_observer(observer);
    }
    try {
      std::lock_guard lock(workers_mutex_);
      set_target_locked(max_workers);
      for (std::size_t i = 0; i < max_workers; ++i) spawn_locked();
    } catch (...) {
      // No thread could be started (the process hit its thread limit): the workers that
      // did start refer to this object, so they are stopped before the error leaves.
      shutdown(true, true);
      throw;
    }
    // Gives the workers up to 200 ms to get through their initializers (counted in
    // executor_workers, or the pool broken), so the worker metrics are exact from the
    // start on a loaded machine instead of depending on thread scheduling. Bounded, and
    // outside workers_mutex_: an initializer may block on something the caller does
    // after construction, or use the pool's resizing.
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    while (ready_.load(std::memory_order_acquire) < max_workers &&
           std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    if constexpr (kMetered) {
      // The autoscaler first: should the hook below fail, its thread is joined by the
      // member's destructor; the reverse order would leave a hook behind.
      if (options_.autoscale.enabled) start_autoscaler();
      // executor_task_oldest_queued_seconds and the peaks, read at scrape under the
      // queue's lock. Last, so that no constructor failure leaves it behind (the
      // destructor removes it).
      queue_hook_ = recorder_.metrics().add_fold_hook([this] {
        auto& metrics = recorder_.metrics();
        const auto reading = queue_.take_fold_reading();  // one hold of the queue lock
        metrics.note_queued_since(reading.oldest_submit_ns);
        if (options_.exporter.exact_peaks) {
          metrics.note_peaks(reading.peaks.queued, reading.peaks.running);
        }
      });
    }
  }

  /// The Python-like signature: ThreadPoolExecutor(max_workers, thread_name_prefix,
  /// initializer, id, registry).
  BasicThreadPoolExecutor(std::size_t max_workers, std::string thread_name_prefix,
                          std::function<void()> initializer = {}, std::string id = {},
                          std::shared_ptr<prometheus::Registry> registry = nullptr)
      : BasicThreadPoolExecutor(max_workers,
                                make_options(std::move(thread_name_prefix), std::move(initializer),
                                             std::move(id), std::move(registry))) {}

  BasicThreadPoolExecutor(const BasicThreadPoolExecutor&) = delete;
  BasicThreadPoolExecutor& operator=(const BasicThreadPoolExecutor&) = delete;

  /// Shuts down (waiting for queued tasks) and joins the workers. Run by one of the
  /// pool's own tasks (or done-callbacks, which drop the last reference to a pool it
  /// owns), it cannot wait for its own thread: the other workers still run every queued
  /// task, and when no other worker is left (a pool of one) the queued tasks are
  /// cancelled, counted and their futures told so. The task that destroyed the pool
  /// finishes normally, and its thread then leaves without touching the pool.
  ~BasicThreadPoolExecutor() {
    if constexpr (kMetered) recorder_.metrics().remove_fold_hook(queue_hook_);
    const bool own_worker = current_pool() == this;
    stop_autoscaler();  // first: it reads the pool
    shutdown(true, false);
    if (own_worker) {
      cancel_queued();
      *pool_destroyed() = true;
      current_pool() = nullptr;
    }
    std::lock_guard lock(workers_mutex_);
    // Only a pool destroyed by one of its own tasks still has a joinable thread: itself.
    for (auto& w : workers_) {
      if (w.thread.joinable()) w.thread.detach();
    }
  }

  // ---- Submitting -----------------------------------------------------------------

  // Every submit function below ends with a defaulted detail::CallSite (the caller's
  // std::source_location, see there), which is why each is written once per argument
  // count; past three arguments the call site is not recorded.

  /// Queues f(args...) (decayed copies) and returns its future. Throws
  /// ExecutorShutdownError after shutdown(), BrokenExecutorError once the pool is
  /// broken, and QueueFullError when a bounded queue stays full per the pool's
  /// policy; each refusal is counted in executor_tasks_rejected_total{reason}. An
  /// exception while the task is made (std::bad_alloc, a copy of f or of an argument
  /// that throws) propagates, counted with reason="error": nothing was queued.
  template <class F>
  [[nodiscard]] auto submit(F&& f, detail::CallSite site = {std::source_location::current()}) {
    return submit_at(site, std::forward<F>(f));
  }
  template <class F, class A1>
  [[nodiscard]] auto submit(F&& f, A1&& a1,
                            detail::CallSite site = {std::source_location::current()}) {
    return submit_at(site, std::forward<F>(f), std::forward<A1>(a1));
  }
  template <class F, class A1, class A2>
  [[nodiscard]] auto submit(F&& f, A1&& a1, A2&& a2,
                            detail::CallSite site = {std::source_location::current()}) {
    return submit_at(site, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2));
  }
  template <class F, class A1, class A2, class A3>
  [[nodiscard]] auto submit(F&& f, A1&& a1, A2&& a2, A3&& a3,
                            detail::CallSite site = {std::source_location::current()}) {
    return submit_at(site, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
                     std::forward<A3>(a3));
  }
  template <class F, class... Args>
  requires(sizeof...(Args) > 3) [[nodiscard]] auto submit(F&& f, Args&&... args) {
    return submit_at(detail::CallSite{}, std::forward<F>(f), std::forward<Args>(args)...);
  }

  /// submit() with per-task settings: name, priority, deadline, expire callback.
  template <class F>
  [[nodiscard]] auto submit_with(const SubmitOptions& options, F&& f,
                                 detail::CallSite site = {std::source_location::current()}) {
    return submit_with_at(site, &options, std::forward<F>(f));
  }
  template <class F, class A1>
  [[nodiscard]] auto submit_with(const SubmitOptions& options, F&& f, A1&& a1,
                                 detail::CallSite site = {std::source_location::current()}) {
    return submit_with_at(site, &options, std::forward<F>(f), std::forward<A1>(a1));
  }
  template <class F, class A1, class A2>
  [[nodiscard]] auto submit_with(const SubmitOptions& options, F&& f, A1&& a1, A2&& a2,
                                 detail::CallSite site = {std::source_location::current()}) {
    return submit_with_at(site, &options, std::forward<F>(f), std::forward<A1>(a1),
                          std::forward<A2>(a2));
  }
  template <class F, class A1, class A2, class A3>
  [[nodiscard]] auto submit_with(const SubmitOptions& options, F&& f, A1&& a1, A2&& a2, A3&& a3,
                                 detail::CallSite site = {std::source_location::current()}) {
    return submit_with_at(site, &options, std::forward<F>(f), std::forward<A1>(a1),
                          std::forward<A2>(a2), std::forward<A3>(a3));
  }
  template <class F, class... Args>
  requires(sizeof...(Args) > 3)
      [[nodiscard]] auto submit_with(const SubmitOptions& options, F&& f, Args&&... args) {
    return submit_with_at(detail::CallSite{}, &options, std::forward<F>(f),
                          std::forward<Args>(args)...);
  }

  /// submit() for a named task: it is counted in the series with the label task=`name`
  /// (celery-exporter's `name`) instead of the executor's unlabelled ones, so summing
  /// over `task` gives the executor's totals. Past ThreadPoolOptions::max_task_names
  /// distinct names, new names count as task="other".
  template <class F>
  [[nodiscard]] auto submit_named(std::string name, F&& f,
                                  detail::CallSite site = {std::source_location::current()}) {
    return submit_named_at(site, std::move(name), std::forward<F>(f));
  }
  template <class F, class A1>
  [[nodiscard]] auto submit_named(std::string name, F&& f, A1&& a1,
                                  detail::CallSite site = {std::source_location::current()}) {
    return submit_named_at(site, std::move(name), std::forward<F>(f), std::forward<A1>(a1));
  }
  template <class F, class A1, class A2>
  [[nodiscard]] auto submit_named(std::string name, F&& f, A1&& a1, A2&& a2,
                                  detail::CallSite site = {std::source_location::current()}) {
    return submit_named_at(site, std::move(name), std::forward<F>(f), std::forward<A1>(a1),
                           std::forward<A2>(a2));
  }
  template <class F, class A1, class A2, class A3>
  [[nodiscard]] auto submit_named(std::string name, F&& f, A1&& a1, A2&& a2, A3&& a3,
                                  detail::CallSite site = {std::source_location::current()}) {
    return submit_named_at(site, std::move(name), std::forward<F>(f), std::forward<A1>(a1),
                           std::forward<A2>(a2), std::forward<A3>(a3));
  }
  template <class F, class... Args>
  requires(sizeof...(Args) > 3)
      [[nodiscard]] auto submit_named(std::string name, F&& f, Args&&... args) {
    return submit_named_at(detail::CallSite{}, std::move(name), std::forward<F>(f),
                           std::forward<Args>(args)...);
  }

  /// submit() for a traced task (worker.go's RunTraced): f(trace, args...) receives a
  /// Trace&, and each trace.mark("action") records the time since the previous mark
  /// (or the task's start) in executor_task_trace_seconds{scope, action}.
  template <class F>
  [[nodiscard]] auto submit_traced(std::string scope, F&& f,
                                   detail::CallSite site = {std::source_location::current()}) {
    return submit_traced_at(site, std::move(scope), std::forward<F>(f));
  }
  template <class F, class A1>
  [[nodiscard]] auto submit_traced(std::string scope, F&& f, A1&& a1,
                                   detail::CallSite site = {std::source_location::current()}) {
    return submit_traced_at(site, std::move(scope), std::forward<F>(f), std::forward<A1>(a1));
  }
  template <class F, class A1, class A2>
  [[nodiscard]] auto submit_traced(std::string scope, F&& f, A1&& a1, A2&& a2,
                                   detail::CallSite site = {std::source_location::current()}) {
    return submit_traced_at(site, std::move(scope), std::forward<F>(f), std::forward<A1>(a1),
                            std::forward<A2>(a2));
  }
  template <class F, class A1, class A2, class A3>
  [[nodiscard]] auto submit_traced(std::string scope, F&& f, A1&& a1, A2&& a2, A3&& a3,
                                   detail::CallSite site = {std::source_location::current()}) {
    return submit_traced_at(site, std::move(scope), std::forward<F>(f), std::forward<A1>(a1),
                            std::forward<A2>(a2), std::forward<A3>(a3));
  }
  template <class F, class... Args>
  requires(sizeof...(Args) > 3)
      [[nodiscard]] auto submit_traced(std::string scope, F&& f, Args&&... args) {
    return submit_traced_at(detail::CallSite{}, std::move(scope), std::forward<F>(f),
                            std::forward<Args>(args)...);
  }

  /// Like submit(), but never blocks: returns an empty optional, counting a
  /// queue_full rejection, when the bounded queue is full. Still throws after
  /// shutdown() or once broken, since retrying cannot help there.
  template <class F>
  [[nodiscard]] auto try_submit(F&& f, detail::CallSite site = {std::source_location::current()}) {
    return try_submit_at(site, std::forward<F>(f));
  }
  template <class F, class A1>
  [[nodiscard]] auto try_submit(F&& f, A1&& a1,
                                detail::CallSite site = {std::source_location::current()}) {
    return try_submit_at(site, std::forward<F>(f), std::forward<A1>(a1));
  }
  template <class F, class A1, class A2>
  [[nodiscard]] auto try_submit(F&& f, A1&& a1, A2&& a2,
                                detail::CallSite site = {std::source_location::current()}) {
    return try_submit_at(site, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2));
  }
  template <class F, class A1, class A2, class A3>
  [[nodiscard]] auto try_submit(F&& f, A1&& a1, A2&& a2, A3&& a3,
                                detail::CallSite site = {std::source_location::current()}) {
    return try_submit_at(site, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
                         std::forward<A3>(a3));
  }
  template <class F, class... Args>
  requires(sizeof...(Args) > 3) [[nodiscard]] auto try_submit(F&& f, Args&&... args) {
    return try_submit_at(detail::CallSite{}, std::forward<F>(f), std::forward<Args>(args)...);
  }

  /// Fire-and-forget: queues f(args...) with no future (one recycled node). Its
  /// exception goes to the error handler (set_error_handler; stderr by default) and is
  /// counted in executor_unhandled_errors_total, besides the failed run. Refusals
  /// throw as for submit().
  template <class F>
  void post(F&& f, detail::CallSite site = {std::source_location::current()}) {
    return post_at(site, nullptr, std::forward<F>(f));
  }
  template <class F, class A1>
  void post(F&& f, A1&& a1, detail::CallSite site = {std::source_location::current()}) {
    return post_at(site, nullptr, std::forward<F>(f), std::forward<A1>(a1));
  }
  template <class F, class A1, class A2>
  void post(F&& f, A1&& a1, A2&& a2, detail::CallSite site = {std::source_location::current()}) {
    return post_at(site, nullptr, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2));
  }
  template <class F, class A1, class A2, class A3>
  void post(F&& f, A1&& a1, A2&& a2, A3&& a3,
            detail::CallSite site = {std::source_location::current()}) {
    return post_at(site, nullptr, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
                   std::forward<A3>(a3));
  }
  template <class F, class... Args>
  requires(sizeof...(Args) > 3) void post(F&& f, Args&&... args) {
    return post_at(detail::CallSite{}, nullptr, std::forward<F>(f), std::forward<Args>(args)...);
  }

  /// post() with per-task settings (name, priority, deadline, expire callback).
  template <class F>
  void post_with(const SubmitOptions& options, F&& f,
                 detail::CallSite site = {std::source_location::current()}) {
    return post_at(site, &options, std::forward<F>(f));
  }
  template <class F, class A1>
  void post_with(const SubmitOptions& options, F&& f, A1&& a1,
                 detail::CallSite site = {std::source_location::current()}) {
    return post_at(site, &options, std::forward<F>(f), std::forward<A1>(a1));
  }
  template <class F, class A1, class A2>
  void post_with(const SubmitOptions& options, F&& f, A1&& a1, A2&& a2,
                 detail::CallSite site = {std::source_location::current()}) {
    return post_at(site, &options, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2));
  }
  template <class F, class A1, class A2, class A3>
  void post_with(const SubmitOptions& options, F&& f, A1&& a1, A2&& a2, A3&& a3,
                 detail::CallSite site = {std::source_location::current()}) {
    return post_at(site, &options, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
                   std::forward<A3>(a3));
  }
  template <class F, class... Args>
  requires(sizeof...(Args) > 3) void post_with(const SubmitOptions& options, F&& f,
                                               Args&&... args) {
    return post_at(detail::CallSite{}, &options, std::forward<F>(f), std::forward<Args>(args)...);
  }

  /// Submits f(item) for every item of `range`; results come back in input order.
  template <class F, std::ranges::input_range Range>
  [[nodiscard]] auto map(F f, Range&& range,
                         detail::CallSite site = {std::source_location::current()}) {
    return detail::map_via_submit(*this, f, std::forward<Range>(range), site);
  }

  /// Python's map(fn, iterable, timeout, chunksize): `chunksize` items per task (for
  /// many tiny items), and reading a result later than `timeout` after this call
  /// throws TimeoutError.
  template <class F, std::ranges::input_range Range>
  [[nodiscard]] auto map(F f, Range&& range, MapOptions options,
                         detail::CallSite site = {std::source_location::current()}) {
    return detail::map_via_submit(*this, f, std::forward<Range>(range), options, site);
  }

  // ---- Errors ---------------------------------------------------------------------

  /// Receives the exceptions that have no future to go to: those of posted tasks and
  /// of done/expire callbacks run by workers (each also counted). Called on the thread
  /// where it happened; it should not block long. An exception it throws is logged to
  /// stderr. An empty handler restores the default, which logs to stderr.
  void set_error_handler(std::function<void(std::exception_ptr)> handler) {
    sink_->set_handler(std::move(handler));
  }

  // ---- Waiting and shutting down --------------------------------------------------

  /// Blocks until the pool is idle: nothing queued, nothing running, every future
  /// published and its callbacks run (thread-executor's wait). Tasks submitted while
  /// waiting are waited for too. Does not shut down. A task of this pool must not call
  /// it (it would wait for itself): that throws std::logic_error.
  void wait() {
    check_not_worker("wait");
    queue_.wait_idle(detail::TaskQueue::no_deadline());
  }
  /// wait() for at most `timeout`; true when the pool became idle.
  template <class Rep, class Period>
  bool wait_for(const std::chrono::duration<Rep, Period>& timeout) {
    check_not_worker("wait_for");
    return queue_.wait_idle(
        std::chrono::steady_clock::now() +
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
  }

  /// Stops accepting tasks. With cancel_futures, queued tasks that have not started are
  /// cancelled (their futures throw CancelledError); otherwise they still run. With
  /// wait, blocks until every worker has exited. Safe to call more than once and from
  /// several threads; a worker calling it does not wait for itself.
  void shutdown(bool wait = true, bool cancel_futures = false) {
    stop_autoscaler();
    queue_.close();
    if (cancel_futures) cancel_queued();
    if (wait) join();
  }

  // ---- Resizing -------------------------------------------------------------------

  /// Adds `n` workers now (reusing workers asked to leave that have not left yet).
  /// Throws ExecutorShutdownError after shutdown(), BrokenExecutorError once broken.
  /// With autoscaling, see resize().
  void scale_up(std::size_t n) {
    std::lock_guard lock(workers_mutex_);
    if (n == 0) return;
    check_manual_locked(target_ + std::min(n, kMaxWorkers));
    scale_up_locked(n, ScaleReason::manual);
    note_manual_locked();
  }
  /// Removes `n` workers: each leaves after its current task, so no running or queued
  /// task is interrupted or lost. Leaving no worker is refused with
  /// std::invalid_argument (queued tasks would never run). With autoscaling, see resize().
  void scale_down(std::size_t n) {
    std::lock_guard lock(workers_mutex_);
    if (n == 0) return;
    check_manual_locked(n >= target_ ? 0 : target_ - n);
    scale_down_locked(n, ScaleReason::manual);
    note_manual_locked();
  }
  /// Sets the worker count to `n` (> 0, else std::invalid_argument) by scaling up or
  /// down. executor_max_workers follows at once, executor_workers as threads come and
  /// go, and executor_scale_events_total{direction, reason="manual"} counts the change.
  /// With autoscaling a manual resize wins: it must stay within the autoscaler's
  /// [min_workers, max_workers] (else std::invalid_argument), and the autoscaler starts
  /// its hysteresis over and cools down from the new size before it changes it again.
  void resize(std::size_t n) {
    if (n == 0) throw std::invalid_argument("executor_exporter: a pool needs at least 1 worker");
    check_size(n);
    std::lock_guard lock(workers_mutex_);
    if (n == target_) return;
    check_manual_locked(n);
    if (n > target_) scale_up_locked(n - target_, ScaleReason::manual);
    if (n < target_) scale_down_locked(target_ - n, ScaleReason::manual);
    note_manual_locked();
  }

  /// What the autoscaler last measured and decided (enabled is false without one), for
  /// a human asking why the pool has its size.
  AutoscaleState autoscale_state() const {
    AutoscaleState s = autoscaler_ ? autoscaler_->state() : AutoscaleState{};
    s.workers = max_workers();
    return s;
  }

  // ---- Introspection --------------------------------------------------------------

  /// The `executor` label of this pool's metrics.
  const std::string& id() const { return recorder_.id(); }
  /// Attaches an observer to this pool's id: it sees every transition of every task
  /// (see TaskObserver), from the next submit on.
  void add_observer(std::shared_ptr<TaskObserver> observer) requires kMetered {
    recorder_.metrics().add_observer(std::move(observer));
  }
  /// Detaches an observer; a hook already running on another thread may still finish.
  void remove_observer(const TaskObserver* observer) requires kMetered {
    recorder_.metrics().remove_observer(observer);
  }
  /// Number of worker threads configured (the target while a resize takes effect).
  std::size_t max_workers() const { return target_atomic_.load(std::memory_order_relaxed); }
  /// Tasks accepted and not yet taken by a worker (racy by nature; a worker may also
  /// hold up to 15 it took from a long queue and has not started; executor_tasks_queued
  /// counts those too and is exact at scrape).
  std::size_t queue_size() const { return queue_.size(); }
  /// The bound of the queue; 0 when unbounded.
  std::size_t queue_capacity() const noexcept { return queue_.capacity(); }
  /// True once a worker initializer threw; the pool then refuses every task.
  bool broken() const noexcept { return broken_.load(std::memory_order_acquire); }

 private:
  enum class Mode { normal, try_only };

  struct Worker {
    std::thread thread;
    std::atomic<bool> exited{false};
  };

  static ThreadPoolOptions make_options(std::string prefix, std::function<void()> init,
                                        std::string id,
                                        std::shared_ptr<prometheus::Registry> registry) {
    ThreadPoolOptions o;
    o.thread_name_prefix = std::move(prefix);
    o.initializer = std::move(init);
    o.id = std::move(id);
    o.registry = std::move(registry);
    return o;
  }

  // The submit functions' one implementation each, with the caller's site.
  template <class F, class... Args>
  auto submit_with_at(detail::CallSite site, const SubmitOptions* options, F&& f, Args&&... args) {
    return submit_node(options, site, [&] {
      return detail::bind_task(std::forward<F>(f), std::forward<Args>(args)...);
    });
  }
  template <class F, class... Args>
  auto submit_at(detail::CallSite site, F&& f, Args&&... args) {
    return submit_with_at(site, nullptr, std::forward<F>(f), std::forward<Args>(args)...);
  }
  template <class F, class... Args>
  auto submit_named_at(detail::CallSite site, std::string name, F&& f, Args&&... args) {
    SubmitOptions options;
    options.name = std::move(name);
    return submit_with_at(site, &options, std::forward<F>(f), std::forward<Args>(args)...);
  }
  template <class F, class... Args>
  auto submit_traced_at(detail::CallSite site, std::string scope, F&& f, Args&&... args) {
    // The traced wrapper copies f: inside submit_node's make, so a copy that throws is
    // counted as a refusal like any other.
    return submit_node(nullptr, site, [&] {
      return detail::bind_task(traced(std::move(scope), std::forward<F>(f)),
                               std::forward<Args>(args)...);
    });
  }
  template <class F, class... Args>
  auto try_submit_at(detail::CallSite site, F&& f, Args&&... args) {
    auto make = [&] { return detail::bind_task(std::forward<F>(f), std::forward<Args>(args)...); };
    using Node = detail::FutureTask<decltype(make())>;
    using R = typename Node::result_type;
    auto* node = build(nullptr, [&] {
      auto* n = new Node(make());
      prepare_future(n, nullptr, site);
      return n;
    });
    detail::StateRef<detail::FutureState<R>> future_ref(node);
    if (!enqueue(node, Mode::try_only)) return std::optional<Future<R>>();
    return std::optional<Future<R>>(Future<R>(std::move(future_ref)));
  }
  template <class F, class... Args>
  void post_at(detail::CallSite site, const SubmitOptions* options, F&& f, Args&&... args) {
    post_node(options, site,
              [&] { return detail::bind_task(std::forward<F>(f), std::forward<Args>(args)...); });
  }

  template <class F>
  auto traced(std::string scope, F&& f) {
    return [this, scope = std::move(scope), fn = std::forward<F>(f)](auto&&... args) mutable {
      Trace trace(recorder_.storage(), scope, options_.trace);
      return std::invoke(fn, trace, std::forward<decltype(args)>(args)...);
    };
  }

  // `make` binds the callable and its arguments (copying them) when called: inside
  // build(), so that a copy that throws is counted as a refusal.
  template <class Make>
  auto submit_node(const SubmitOptions* options, detail::CallSite site, Make&& make) {
    using Node = detail::FutureTask<decltype(make())>;
    using R = typename Node::result_type;
    auto* node = build(options, [&] {
      auto* n = new Node(make());
      prepare_future(n, options, site);
      return n;
    });
    detail::StateRef<detail::FutureState<R>> future_ref(node);  // the future's reference
    enqueue(node, Mode::normal);
    return Future<R>(std::move(future_ref));
  }

  template <class Make>
  void post_node(const SubmitOptions* options, detail::CallSite site, Make&& make) {
    auto* node = build(options, [&] {
      auto* n = new detail::PostTask<decltype(make())>(make());
      if (options_.capture_call_site) n->where = site.where;
      apply(n, options);
      return n;
    });
    enqueue(node, Mode::normal);
  }

  // Runs `make`, which builds a task node (copies of the callable and its arguments, the
  // node, its extras, its name's series). A failure there is a refusal like the queue's:
  // counted as rejected, reason "error", and rethrown; nothing was queued, so no submit
  // is counted, and `make` has released whatever it had built.
  template <class Make>
  auto build(const SubmitOptions* options, Make&& make) -> decltype(make()) {
    try {
      return make();
    } catch (...) {
      if constexpr (kMetered) refuse_unbuilt(options);
      throw;
    }
  }

  // In the name's series when its lookup itself did not fail, else in the pool's.
  void refuse_unbuilt(const SubmitOptions* options) noexcept {
    detail::ExecutorMetrics* named = nullptr;
    if (options != nullptr && !options->name.empty()) {
      try {
        named = recorder_.named(options->name, options_.max_task_names);
      } catch (...) {
        named = nullptr;
      }
    }
    detail::Recorder::rejected(recorder_.prepare(named), RejectReason::error);
  }

  // Applies the options and wires the state to this pool's metrics and error sink.
  template <class Node>
  void prepare_future(Node* node, const SubmitOptions* options, detail::CallSite site) {
    if (options_.capture_call_site) node->where = site.where;
    apply(node, options);
    node->set_owner(recorder_.storage(), node->named());
    node->set_sink(sink_.get());
    node->add_ref();  // one reference for the queue, one for the future
  }

  // A failure (no memory for the extras or a new name) releases the node, so nothing
  // leaks, and propagates: the task was never submitted.
  void apply(detail::Task* node, const SubmitOptions* options) {
    if (options == nullptr) return;
    try {
      apply_options(node, *options);
    } catch (...) {
      node->drop();
      throw;
    }
  }
  void apply_options(detail::Task* node, const SubmitOptions& options) {
    if (options.priority != 0) node->extras_for_update().priority = options.priority;
    if (options.deadline) {
      const auto ns =
          std::chrono::duration_cast<std::chrono::nanoseconds>(options.deadline->time_since_epoch())
              .count();
      node->extras_for_update().deadline_ns = ns > 0 ? static_cast<std::uint64_t>(ns) : 1;
    }
    if (options.on_expired)
      node->extras_for_update().rare_for_update().on_expired = options.on_expired;
    if (!options.name.empty()) {
      node->extras_for_update().named = recorder_.named(options.name, options_.max_task_names);
    }
    if (!options.trace_id.empty() || !options.span_id.empty()) {
      const detail::TraceIds ids = detail::parse_trace_ids(options.trace_id, options.span_id);
      if (!ids.empty()) node->extras_for_update().set_trace(ids);
    }
  }

  // Before the queue lock: where `node` counts, whether it is timed (timing_sample_rate;
  // 0 tells the worker "not timed") and its observer id. A first lookup registers a
  // shard under a lock.
  EXECUTOR_EXPORTER_HOT void prepare_submit(detail::TaskRef& ref, detail::Task* node) {
    if constexpr (kMetered) {
      // A TraceContext's ids travel in the extras too, unless the submit gave its own.
      const detail::TraceIds* context = detail::current_trace_ids;
      const bool traced = context != nullptr && !context->empty() &&
                          (!node->extras || node->extras->trace() == nullptr);
      if (recorder_.metrics().observers() != nullptr || traced) [[unlikely]] {
        try {
          node->extras_for_update();  // the observer id travels in the extras
          if (traced) node->extras->set_trace(*context);
        } catch (...) {  // no memory for them: refused, counted, not leaked
          detail::Recorder::rejected(recorder_.prepare(node->named()), RejectReason::error);
          node->drop();
          throw;
        }
      }
      recorder_.prepare(ref, node->named());
      node->submit_ns = ref.submit_ns;
      ref.where = node->where;
      if (node->extras) node->extras->task_id = ref.id;
    }
  }

  // Queues `node`, or counts the rejection, releases the queue's hold and reports it:
  // false for a full queue in try mode; throws otherwise. A post node (no future) is
  // simply deleted by drop().
  bool enqueue(detail::Task* node, Mode mode) {
    // Filled in place: assigned a returned TaskRef, the copy went through the stack in
    // halves and stalled store forwarding three times a task.
    detail::TaskRef ref;
    prepare_submit(ref, node);
    auto on_accept = [&] {
      if constexpr (kMetered) detail::Recorder::submitted(ref);
    };
    // A refusal is counted in the task's series and releases the queue's hold on it.
    auto refuse = [&](RejectReason reason) {
      if constexpr (kMetered) detail::Recorder::rejected(ref, reason);
      node->drop();
    };
    using Result = detail::TaskQueue::PushResult;
    Result r;
    // A task of this pool waiting for room in its own queue waits for itself once every
    // worker does the same (with one worker, at once): it is refused instead.
    const bool own_worker = current_pool() == this;
    try {
      if (mode == Mode::try_only || queue_.capacity() == 0 ||
          options_.on_full == QueueFullPolicy::reject ||
          (own_worker && options_.on_full == QueueFullPolicy::block)) {
        r = queue_.push(node, on_accept, false);
      } else if (options_.on_full == QueueFullPolicy::block) {
        r = queue_.push(node, on_accept, true);
      } else {
        r = queue_.push(node, on_accept, true,
                        std::chrono::steady_clock::now() + options_.full_timeout);
      }
    } catch (...) {  // no memory for a new priority level: refused, counted, not leaked
      refuse(RejectReason::error);
      throw;
    }
    if (r == Result::accepted) return true;
    if (r == Result::cancelled) {  // accepted as the pool shut down, with no worker left
      node->cancel(context());
      node->drop();
      return true;
    }
    const RejectReason reason = r == Result::full     ? RejectReason::queue_full
                                : r == Result::broken ? RejectReason::broken
                                                      : RejectReason::shutdown;
    refuse(reason);
    if (r == Result::full) {
      if (mode == Mode::try_only) return false;
      if (own_worker && options_.on_full == QueueFullPolicy::block) {
        throw QueueFullError(recorder_.id(),
                             "a task of this pool cannot wait for room in the pool's own queue "
                             "(it could wait for itself); submit from outside the pool, or use "
                             "try_submit or QueueFullPolicy::block_with_timeout");
      }
      throw QueueFullError(recorder_.id());
    }
    if (r == Result::broken) throw BrokenExecutorError(broken_message());
    throw ExecutorShutdownError(recorder_.id());
  }

  // What tasks need from this pool when they are cancelled or fail off a worker.
  detail::TaskContext context() noexcept { return {recorder_.storage(), sink_.get()}; }

  // Cancels (counted, futures told) every task not yet started, reserved ones included.
  void cancel_queued() {
    for (detail::Task* t = queue_.take_all(); t != nullptr;) {
      detail::Task* next = t->next;
      t->cancel(context());
      t->drop();
      t = next;
    }
  }

  void check_not_worker(const char* what) const {
    if (current_pool() == this) {
      throw std::logic_error(std::string("executor_exporter: ") + what +
                             "() called from a task of the same pool would wait for itself");
    }
  }
  static const BasicThreadPoolExecutor*& current_pool() {
    thread_local const BasicThreadPoolExecutor* pool = nullptr;
    return pool;
  }
  // Set by the destructor when it runs on one of the pool's own workers: that worker's
  // flag, which it checks after each task before it touches the pool again.
  static bool*& pool_destroyed() {
    thread_local bool* flag = nullptr;
    return flag;
  }

  // ---- Workers --------------------------------------------------------------------

  void spawn_locked() {
    auto& w = workers_.emplace_back();
    const std::size_t index = next_index_++;
    try {
      w.thread = std::thread([this, &w, index] { work(w, index); });
    } catch (...) {
      workers_.pop_back();  // no thread: nothing to join or reap
      throw;
    }
  }

  // Joins workers that left after a scale-down (never the calling thread).
  void reap_locked() {
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (it->exited.load(std::memory_order_acquire) &&
          it->thread.get_id() != std::this_thread::get_id()) {
        if (it->thread.joinable()) it->thread.join();
        it = workers_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Refuses a worker count no machine can run, before any thread starts for it.
  static void check_size(std::size_t n) {
    if (n > kMaxWorkers) {
      throw std::invalid_argument("executor_exporter: a pool of " + std::to_string(n) +
                                  " workers is refused (at most " + std::to_string(kMaxWorkers) +
                                  ")");
    }
  }

  void scale_up_locked(std::size_t n, ScaleReason reason) {
    if (n == 0) return;
    if (broken()) throw BrokenExecutorError(broken_message());
    if (queue_.closed()) throw ExecutorShutdownError(recorder_.id());
    if (n > kMaxWorkers - std::min(target_, kMaxWorkers)) {
      throw std::invalid_argument("executor_exporter: adding " + std::to_string(n) +
                                  " workers to " + std::to_string(target_) +
                                  " is refused (at most " + std::to_string(kMaxWorkers) + ")");
    }
    reap_locked();
    const std::size_t kept = queue_.unretire(n);
    for (std::size_t i = kept; i < n; ++i) {
      try {
        spawn_locked();
      } catch (...) {
        // All or nothing: the workers this call added, kept or started, are asked to
        // leave again, so the pool and executor_max_workers stay at the old size.
        queue_.retire(i);
        throw;
      }
    }
    set_target_locked(target_ + n);
    recorder_.count(Metric::scale_events, scale_series(0, reason));  // direction="up"
  }

  void scale_down_locked(std::size_t n, ScaleReason reason) {
    if (n == 0) return;
    if (queue_.closed()) throw ExecutorShutdownError(recorder_.id());
    if (n >= target_) {
      throw std::invalid_argument(
          "executor_exporter: scaling down to 0 workers is refused: queued tasks would never "
          "run (use shutdown())");
    }
    set_target_locked(target_ - n);
    queue_.retire(n);
    recorder_.count(Metric::scale_events, scale_series(1, reason));  // direction="down"
    reap_locked();
  }

  // The executor_scale_events_total series of (direction, reason), in the catalog's order
  // of the two labels' values.
  static constexpr std::size_t scale_series(std::size_t direction, ScaleReason reason) noexcept {
    return direction * 4 + static_cast<std::size_t>(reason);
  }

  // A manual resize to `n` while autoscaling must stay within the autoscaler's bounds (a
  // closed or broken pool is left to refuse it with its own error).
  void check_manual_locked(std::size_t n) const {
    if (!autoscaler_ || queue_.closed() || broken()) return;
    const auto& a = options_.autoscale;
    if (n < a.min_workers || n > a.max_workers) {
      throw std::invalid_argument("executor_exporter: resizing an autoscaled pool to " +
                                  std::to_string(n) + " workers is refused (autoscale bounds [" +
                                  std::to_string(a.min_workers) + ", " +
                                  std::to_string(a.max_workers) + "])");
    }
  }
  void note_manual_locked() {
    if (autoscaler_) autoscaler_->manual_change();
  }

  void start_autoscaler() {
    detail::Autoscaler::Hooks hooks;
    hooks.load = [this] { return recorder_.metrics().load(); };
    hooks.workers = [this] { return max_workers(); };
    hooks.apply = [this](std::size_t from, std::size_t to, ScaleReason reason) {
      std::lock_guard lock(workers_mutex_);
      // A manual resize since the decision wins; a closed or broken pool keeps its size.
      if (target_ != from || queue_.closed() || broken()) return false;
      if (to < options_.autoscale.min_workers || to > options_.autoscale.max_workers) return false;
      if (to > from) scale_up_locked(to - from, reason);
      if (to < from) scale_down_locked(from - to, reason);
      return true;
    };
    auto scaler = std::make_unique<detail::Autoscaler>(
        options_.autoscale, options_.exporter.wait_buckets, std::move(hooks));
    {
      // Published under the resize lock, which manual resizes read it under.
      std::lock_guard lock(workers_mutex_);
      autoscaler_ = std::move(scaler);
    }
    autoscaler_->start(options_.thread_name_prefix + "-scale");
  }
  // Stops the controller before anything it reads goes; it stays allocated (stopped)
  // so that concurrent readers of autoscaler_ never see it freed.
  void stop_autoscaler() {
    if (autoscaler_) autoscaler_->stop();
  }

  void set_target_locked(std::size_t n) {
    target_ = n;
    target_atomic_.store(n, std::memory_order_relaxed);
    recorder_.set_level(Metric::max_workers, static_cast<std::int64_t>(n));
  }

  void work(Worker& self, std::size_t index) {
    detail::set_thread_name(options_.thread_name_prefix + "-" + std::to_string(index));
    current_pool() = this;
    // Held by this thread, so that a task that destroys the pool is still counted and
    // its error still reported; the thread then leaves (see the destructor).
    const auto metrics_keep = handle();
    const auto sink_keep = sink_;
    bool destroyed = false;
    pool_destroyed() = &destroyed;
    if (options_.initializer) {
      // A copy: should it drop the last reference to the pool, the pool's own copy goes.
      const auto initializer = options_.initializer;
      try {
        initializer();
      } catch (...) {
        if (destroyed) return;
        break_pool(std::current_exception());
        mark_ready();
        self.exited.store(true, std::memory_order_release);
        return;
      }
      if (destroyed) return;  // it dropped the last reference: the pool is gone
    }
    recorder_.worker_started();
    mark_ready();
    // From this thread's own references: valid even after a task destroyed the pool.
    const detail::TaskContext ctx{metrics_keep.get(), sink_keep.get()};
    Tally tally(metrics_keep.get());
    detail::TaskQueue::Reserve reserve;
    queue_.attach(reserve);
    std::size_t finished = 0;  // tasks run since the last pop()
    for (;;) {
      bool waited = false;
      detail::Task* task = reserve.take();
      if (task == nullptr) {
        task = queue_.pop(finished, waited, reserve);
        finished = 0;
        if (task == nullptr) break;
      }
      ++finished;  // reported at the next pop(), when it surely is finished
      run(*task, ctx, tally, waited);
      if (destroyed) {  // by that task or a done-callback: leave without touching the pool
        if constexpr (kMetered) detail::Recorder::worker_stopped(*metrics_keep);
        return;
      }
    }
    queue_.detach(reserve);
    recorder_.worker_stopped();
    self.exited.store(true, std::memory_order_release);
  }

  // The worker's recording state: the recorder's, or nothing when metrics are compiled
  // out.
  struct NoTally {
    explicit NoTally(detail::ExecutorMetrics* /*unused*/) {}
  };
  struct MeteredTally : detail::Recorder::Worker {
    explicit MeteredTally(detail::ExecutorMetrics* m) : detail::Recorder::Worker(*m) {}
  };
  using Tally = std::conditional_t<kMetered, MeteredTally, NoTally>;

  // A shared reference to the metrics, for a worker that must be able to finish its
  // bookkeeping after a task of its destroyed the pool.
  std::shared_ptr<detail::ExecutorMetrics> handle() const {
    if constexpr (kMetered) {
      return recorder_.handle();
    } else {
      return nullptr;
    }
  }

  // Runs one task taken from the queue: skips it if cancelled, expires it if its
  // deadline passed, else runs and counts it and publishes its outcome. Once the task's
  // code ran, only the task and the metric shards (kept alive by the worker) are used,
  // never the pool: the task may have destroyed it.
  void run(detail::Task& task, const detail::TaskContext& ctx, Tally& tally, bool waited) {
    if (!task.claim()) {  // cancelled while queued; the canceller counted it
      task.drop();
      return;
    }
    if (task.extras) [[unlikely]] {
      // Deadlines are steady_clock time_points, so they are checked against steady_clock.
      const std::uint64_t deadline = task.extras->deadline_ns;
      if (deadline != 0 && detail::steady_ns() > deadline) {
        if constexpr (kMetered) tally.forget_end();
        expire(task, ctx);
        return;
      }
      if (task.extras->rare) task.extras->rare->on_expired = nullptr;  // free its captures now
    }
    std::exception_ptr unhandled;  // a posted task's exception, for finish()
    if constexpr (!kMetered) {
      (void)task.invoke(unhandled);
      task.finish(ctx, std::move(unhandled));
    } else {
      const detail::TaskRef ref = task.ref(ctx.owner);
      const std::uint64_t start = tally.start(ref, waited);
      const bool ok = task.invoke(unhandled);
      tally.finish(ref, start, ok, [&] { return unhandled ? unhandled : task.stored_error(); });
      task.finish(ctx, std::move(unhandled));
    }
  }

  void mark_ready() { ready_.fetch_add(1, std::memory_order_release); }

  // A claimed task whose deadline passed: counted, its expire callback run, its
  // future failed; all before the future is published, so its waiter sees them done.
  // The callback may destroy the pool: from then on only `ctx` (the worker's own
  // references) is used.
  void expire(detail::Task& task, const detail::TaskContext& ctx) {
    if (ctx.owner != nullptr) detail::Recorder::expired(task.ref(ctx.owner));
    if (task.extras->rare && task.extras->rare->on_expired) {
      auto& callback = task.extras->rare->on_expired;
      try {
        callback();
      } catch (...) {
        ctx.sink->callback_failed(std::current_exception());
      }
      callback = nullptr;
    }
    task.fail_claimed(ctx, std::make_exception_ptr(TaskExpiredError()), false);
  }

  // An initializer threw: count it, refuse everything from now on, and fail what is
  // queued (counted as cancelled: those tasks never started).
  void break_pool(std::exception_ptr error) {
    recorder_.count(Metric::initializer_errors);
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    {
      std::lock_guard lock(broken_mutex_);
      if (broken_message_.empty()) {
        broken_message_ =
            "executor '" + recorder_.id() + "' is broken: a worker initializer threw: " + what;
      }
    }
    broken_.store(true, std::memory_order_release);
    const auto failure = std::make_exception_ptr(BrokenExecutorError(broken_message()));
    for (detail::Task* t = queue_.break_and_take_all(); t != nullptr;) {
      detail::Task* next = t->next;
      if (t->claim()) {
        if constexpr (kMetered) detail::Recorder::cancelled(t->ref(recorder_.storage()));
        t->fail_claimed(context(), failure, true);
      } else {
        t->drop();
      }
      t = next;
    }
  }

  std::string broken_message() const {
    std::lock_guard lock(broken_mutex_);
    return broken_message_;
  }

  // Joins without holding workers_mutex_, so a task that calls resize() meanwhile gets
  // its error instead of a deadlock. Once the queue is closed the list no longer
  // changes (scaling throws), and join_mutex_ keeps two joiners off one thread.
  void join() {
    std::lock_guard join_lock(join_mutex_);
    std::vector<Worker*> all;
    {
      std::lock_guard lock(workers_mutex_);
      for (auto& w : workers_) all.push_back(&w);
    }
    for (Worker* w : all) {
      if (w->thread.joinable() && w->thread.get_id() != std::this_thread::get_id()) {
        w->thread.join();
      }
    }
  }

  // The most workers one pool may have: far past any machine's cores, short of any
  // thread limit's worth of half-started threads.
  static constexpr std::size_t kMaxWorkers = 4096;

  ThreadPoolOptions options_;
  std::conditional_t<kMetered, detail::Recorder, detail::NullRecorder> recorder_;
  // Shared with the workers, which may still report a task's error after a task of
  // theirs destroyed the pool (see the destructor).
  std::shared_ptr<detail::ErrorSink> sink_;
  // Mutable: queue_size() moves the queue's inbox into its lists to count it.
  mutable detail::TaskQueue queue_;
  std::atomic<bool> broken_{false};
  mutable std::mutex broken_mutex_;
  std::string broken_message_;  // guarded by broken_mutex_
  std::mutex join_mutex_;
  std::mutex workers_mutex_;  // guards the members below
  std::list<Worker> workers_;
  std::size_t target_ = 0;
  std::size_t next_index_ = 0;
  std::atomic<std::size_t> target_atomic_{0};
  std::atomic<std::size_t> ready_{0};  // workers through their initializer (ever)
  std::uint64_t queue_hook_ = 0;       // the fold hook that reads the oldest queued task
  // Set once in the constructor, before the pool is shared; stopped, never reset, before
  // the members it reads go.
  std::unique_ptr<detail::Autoscaler> autoscaler_;
};

/// The instrumented pool (see BasicThreadPoolExecutor).
using ThreadPoolExecutor = BasicThreadPoolExecutor<TaskMetrics>;

}  // namespace executor_exporter
