#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <ranges>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <executor_exporter/detail/call_site.hpp>
#include <executor_exporter/detail/type_name.hpp>
#include <executor_exporter/errors.hpp>
#include <executor_exporter/events/task_description.hpp>
#include <executor_exporter/metrics/exporter.hpp>
#include <executor_exporter/metrics/task_observer.hpp>
#include <executor_exporter/metrics/trace.hpp>
#include <executor_exporter/metrics/trace_options.hpp>
#include <executor_exporter/pools/detail/error_sink.hpp>
#include <executor_exporter/pools/detail/task.hpp>
#include <executor_exporter/pools/executor_concept.hpp>
#include <executor_exporter/pools/future.hpp>
#include <executor_exporter/pools/map_results.hpp>

namespace executor_exporter {

/// Wraps any Executor and instruments it: each task's queue wait (from submit to the
/// moment the wrapped executor runs it) and run time, its outcome, and tasks the
/// wrapped executor drops without running them (counted as cancelled), all fed to an
/// ExecutorExporter. The proxy owns the executor. submit() returns this library's
/// Future whatever future type the executor returns, so cancel() and done-callbacks work
/// over any executor. Like ThreadPoolExecutor it offers fire-and-forget post(), traced
/// tasks (submit_traced) and an error handler (set_error_handler) that receives, counted,
/// the exceptions of posted tasks and of done-callbacks run on the executor's threads.
/// Use it for executors you cannot replace; ThreadPoolExecutor is the faster choice when
/// you can.
/// Settings of an InstrumentedExecutorProxy beyond the executor and its exporter.
struct ProxyOptions {
  /// What executor_max_workers reports for the wrapped executor.
  std::size_t max_workers = 0;
  /// How traced tasks record executor_task_trace_seconds (histogram or summary).
  TraceOptions trace;
  /// Distinct task names (submit_named) that get their own task label; later names
  /// count under task="other", as in ThreadPoolOptions.
  std::size_t max_task_names = 64;
  /// Attached to the exporter's id at construction (see TaskObserver).
  std::vector<std::shared_ptr<TaskObserver>> observers;
};

template <Executor E>
class InstrumentedExecutorProxy {
 public:
  /// Takes over `executor` and reports it through `exporter`, configured by `options`.
  InstrumentedExecutorProxy(E executor, ExecutorExporter exporter, ProxyOptions options)
      : exporter_(std::move(exporter)),
        sink_(exporter_.recorder().storage(), exporter_.id()),
        options_(std::move(options)),
        executor_(std::move(executor)) {
    init();
  }
  /// The short form: `max_workers` is what executor_max_workers reports; `trace` says
  /// how traced tasks record executor_task_trace_seconds.
  InstrumentedExecutorProxy(E executor, ExecutorExporter exporter, std::size_t max_workers,
                            TraceOptions trace = {})
      : InstrumentedExecutorProxy(std::move(executor), std::move(exporter),
                                  make_options(max_workers, std::move(trace))) {}
  /// Builds the executor in place from `args` (for executors that cannot move).
  template <class... Args>
  InstrumentedExecutorProxy(std::in_place_t, ExecutorExporter exporter, std::size_t max_workers,
                            Args&&... args)
      : exporter_(std::move(exporter)),
        sink_(exporter_.recorder().storage(), exporter_.id()),
        options_(make_options(max_workers, {})),
        executor_(std::forward<Args>(args)...) {
    init();
  }
  InstrumentedExecutorProxy(const InstrumentedExecutorProxy&) = delete;
  InstrumentedExecutorProxy& operator=(const InstrumentedExecutorProxy&) = delete;

  /// Shuts the wrapped executor down, waiting for its tasks.
  ~InstrumentedExecutorProxy() { shutdown(true, false); }

  /// Submits f(args...) to the wrapped executor. Throws ExecutorShutdownError after
  /// shutdown(); an exception from the wrapped submit propagates, and so does one while
  /// the task is made (std::bad_alloc, a copy of f or of an argument that throws); all
  /// count as rejected (the wrapped executor's refusal by its reason when it is one of
  /// this library's errors, as reason="error" otherwise).
  // Each submit function ends with a defaulted detail::CallSite (see there).
  template <class F>
  [[nodiscard]] auto submit(F&& f, detail::CallSite site = {std::source_location::current()}) {
    return submit_in(site, nullptr, std::forward<F>(f));
  }
  template <class F, class A1>
  [[nodiscard]] auto submit(F&& f, A1&& a1,
                            detail::CallSite site = {std::source_location::current()}) {
    return submit_in(site, nullptr, std::forward<F>(f), std::forward<A1>(a1));
  }
  template <class F, class A1, class A2>
  [[nodiscard]] auto submit(F&& f, A1&& a1, A2&& a2,
                            detail::CallSite site = {std::source_location::current()}) {
    return submit_in(site, nullptr, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2));
  }
  template <class F, class A1, class A2, class A3>
  [[nodiscard]] auto submit(F&& f, A1&& a1, A2&& a2, A3&& a3,
                            detail::CallSite site = {std::source_location::current()}) {
    return submit_in(site, nullptr, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
                     std::forward<A3>(a3));
  }
  template <class F, class... Args>
  requires(sizeof...(Args) > 3) [[nodiscard]] auto submit(F&& f, Args&&... args) {
    return submit_in(detail::CallSite{}, nullptr, std::forward<F>(f), std::forward<Args>(args)...);
  }

  /// submit() for a named task: counted in the series labelled task=`name` instead of
  /// the executor's unlabelled ones, as ThreadPoolExecutor::submit_named. Past
  /// ProxyOptions::max_task_names distinct names, new names count as task="other".
  template <class F>
  [[nodiscard]] auto submit_named(std::string_view name, F&& f,
                                  detail::CallSite site = {std::source_location::current()}) {
    return submit_named_at(site, name, std::forward<F>(f));
  }
  template <class F, class A1>
  [[nodiscard]] auto submit_named(std::string_view name, F&& f, A1&& a1,
                                  detail::CallSite site = {std::source_location::current()}) {
    return submit_named_at(site, name, std::forward<F>(f), std::forward<A1>(a1));
  }
  template <class F, class A1, class A2>
  [[nodiscard]] auto submit_named(std::string_view name, F&& f, A1&& a1, A2&& a2,
                                  detail::CallSite site = {std::source_location::current()}) {
    return submit_named_at(site, name, std::forward<F>(f), std::forward<A1>(a1),
                           std::forward<A2>(a2));
  }
  template <class F, class A1, class A2, class A3>
  [[nodiscard]] auto submit_named(std::string_view name, F&& f, A1&& a1, A2&& a2, A3&& a3,
                                  detail::CallSite site = {std::source_location::current()}) {
    return submit_named_at(site, name, std::forward<F>(f), std::forward<A1>(a1),
                           std::forward<A2>(a2), std::forward<A3>(a3));
  }
  template <class F, class... Args>
  requires(sizeof...(Args) > 3)
      [[nodiscard]] auto submit_named(std::string_view name, F&& f, Args&&... args) {
    return submit_named_at(detail::CallSite{}, name, std::forward<F>(f),
                           std::forward<Args>(args)...);
  }

  /// Fire-and-forget: runs f(args...) on the wrapped executor with no future. Its
  /// exception goes to the error handler (set_error_handler; stderr by default) and is
  /// counted in executor_unhandled_errors_total, besides the failed run. Refusals throw
  /// as for submit(); a posted task the executor drops unrun counts as cancelled.
  template <class F>
  void post(F&& f, detail::CallSite site = {std::source_location::current()}) {
    return post_at(site, std::forward<F>(f));
  }
  template <class F, class A1>
  void post(F&& f, A1&& a1, detail::CallSite site = {std::source_location::current()}) {
    return post_at(site, std::forward<F>(f), std::forward<A1>(a1));
  }
  template <class F, class A1, class A2>
  void post(F&& f, A1&& a1, A2&& a2, detail::CallSite site = {std::source_location::current()}) {
    return post_at(site, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2));
  }
  template <class F, class A1, class A2, class A3>
  void post(F&& f, A1&& a1, A2&& a2, A3&& a3,
            detail::CallSite site = {std::source_location::current()}) {
    return post_at(site, std::forward<F>(f), std::forward<A1>(a1), std::forward<A2>(a2),
                   std::forward<A3>(a3));
  }
  template <class F, class... Args>
  requires(sizeof...(Args) > 3) void post(F&& f, Args&&... args) {
    return post_at(detail::CallSite{}, std::forward<F>(f), std::forward<Args>(args)...);
  }

  /// submit() for a traced task (worker.go's RunTraced), as ThreadPoolExecutor's:
  /// f(trace, args...) receives a Trace&, and each trace.mark("action") records the time
  /// since the previous mark (or the task's start) in
  /// executor_task_trace_seconds{scope, action}.
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

  /// Receives the exceptions that have no future to go to: those of posted tasks and of
  /// done-callbacks run on the wrapped executor's threads (each also counted in
  /// executor_unhandled_errors_total / executor_callback_errors_total). Called on the
  /// thread where it happened. An exception it throws is logged to stderr. An empty
  /// handler restores the default, which logs to stderr.
  void set_error_handler(std::function<void(std::exception_ptr)> handler) {
    sink_.set_handler(std::move(handler));
  }

  /// Submits f(item) for every item; results in input order, retrieved lazily.
  template <class F, std::ranges::input_range Range>
  [[nodiscard]] auto map(F f, Range&& range,
                         detail::CallSite site = {std::source_location::current()}) {
    return detail::map_via_submit(*this, f, std::forward<Range>(range), site);
  }

  /// map() with Python's timeout and chunksize, as ThreadPoolExecutor::map: `chunksize`
  /// items per task (a chunk counts as one task in the metrics), and reading a result
  /// later than `timeout` after this call throws TimeoutError.
  template <class F, std::ranges::input_range Range>
  [[nodiscard]] auto map(F f, Range&& range, MapOptions options,
                         detail::CallSite site = {std::source_location::current()}) {
    return detail::map_via_submit(*this, f, std::forward<Range>(range), options, site);
  }

  /// Attaches an observer to this proxy's id (see TaskObserver).
  void add_observer(std::shared_ptr<TaskObserver> observer) {
    exporter_.add_observer(std::move(observer));
  }
  /// Detaches an observer; a hook already running on another thread may still finish.
  void remove_observer(const TaskObserver* observer) { exporter_.remove_observer(observer); }

  /// Stops accepting tasks and shuts the wrapped executor down. With cancel_futures,
  /// tasks that have not started are cancelled when the executor reaches them (or drops
  /// them). With wait, returns when the wrapped executor's shutdown returns.
  void shutdown(bool wait = true, bool cancel_futures = false) {
    if (cancel_futures) cancelling_.store(true, std::memory_order_release);
    closed_.store(true, std::memory_order_release);
    std::lock_guard lock(shutdown_mutex_);
    if (waited_) return;  // the wrapped executor is already shut down and drained
    waited_ = wait;
    if constexpr (requires { executor_.shutdown(wait, cancel_futures); }) {
      executor_.shutdown(wait, cancel_futures);
    } else if constexpr (requires { executor_.shutdown(wait); }) {
      executor_.shutdown(wait);
    } else {
      executor_.shutdown();
    }
  }

  E& executor() { return executor_; }
  ExecutorExporter& exporter() { return exporter_; }

 private:
  static ProxyOptions make_options(std::size_t max_workers, TraceOptions trace) {
    ProxyOptions o;
    o.max_workers = max_workers;
    o.trace = std::move(trace);
    return o;
  }

  void init() {
    exporter_.set_max_workers(static_cast<std::int64_t>(options_.max_workers));
    for (auto& observer : options_.observers) exporter_.add_observer(observer);
  }

  template <class F, class... Args>
  auto submit_named_at(detail::CallSite site, std::string_view name, F&& f, Args&&... args) {
    check_open(nullptr);
    // No memory for a new name's series: refused in the executor's own.
    auto* named =
        build(nullptr, [&] { return exporter_.recorder().named(name, options_.max_task_names); });
    return submit_in(site, named, std::forward<F>(f), std::forward<Args>(args)...);
  }
  template <class F, class... Args>
  void post_at(detail::CallSite site, F&& f, Args&&... args) {
    using Bound = decltype(detail::bind_task(std::forward<F>(f), std::forward<Args>(args)...));
    check_open(nullptr);
    hand_over(build(nullptr,
                    [&] {
                      return new detail::PostTask<Bound>(
                          detail::bind_task(std::forward<F>(f), std::forward<Args>(args)...));
                    }),
              nullptr, site);
  }
  template <class F, class... Args>
  auto submit_traced_at(detail::CallSite site, std::string scope, F&& f, Args&&... args) {
    return submit_in(
        site, nullptr,
        [this, scope = std::move(scope), fn = std::forward<F>(f)](auto&&... a) mutable {
          Trace trace(exporter_.recorder().storage(), scope, options_.trace);
          return std::invoke(fn, trace, std::forward<decltype(a)>(a)...);
        },
        std::forward<Args>(args)...);
  }

  template <class F, class... Args>
  auto submit_in(detail::CallSite site, detail::ExecutorMetrics* named, F&& f, Args&&... args) {
    using Bound = decltype(detail::bind_task(std::forward<F>(f), std::forward<Args>(args)...));
    using Node = detail::FutureTask<Bound>;
    using R = typename Node::result_type;
    check_open(named);
    auto* node = build(named, [&] {
      return new Node(detail::bind_task(std::forward<F>(f), std::forward<Args>(args)...));
    });
    node->set_owner(exporter_.recorder().storage(), named);
    // A done-callback that throws on the executor's thread is counted and handed to the
    // error handler instead of escaping into the wrapped executor.
    node->set_sink(&sink_);
    node->add_ref();
    detail::StateRef<detail::FutureState<R>> future_ref(node);
    hand_over(node, named, site);
    return Future<R>(std::move(future_ref));
  }

  // What tasks need from the proxy when they are cancelled or a posted one throws.
  detail::TaskContext context() noexcept { return {exporter_.recorder().storage(), &sink_}; }

  void check_open(detail::ExecutorMetrics* named) {
    if (closed_.load(std::memory_order_acquire)) {
      detail::Recorder::rejected(exporter_.recorder().prepare(named), RejectReason::shutdown);
      throw ExecutorShutdownError(exporter_.id());
    }
  }

  // Runs `make`, which allocates a task node and copies the callable and its
  // arguments into it. A failure there is a refusal: counted (reason "error") and
  // rethrown; nothing reached the executor, so no submit is counted.
  template <class Make>
  auto build(detail::ExecutorMetrics* named, Make&& make) -> decltype(make()) {
    try {
      return make();
    } catch (...) {
      detail::Recorder::rejected(exporter_.recorder().prepare(named), RejectReason::error);
      throw;
    }
  }

  // Passes `node` (holding the executor's reference) to the wrapped executor; on a
  // refusal the node is released, the rejection counted and the exception rethrown.
  void hand_over(detail::Task* node, detail::ExecutorMetrics* named, detail::CallSite site) {
    auto& recorder = exporter_.recorder();
    node->where = site.where;
    std::shared_ptr<Ticket> ticket;
    try {
      if (recorder.metrics().observers() != nullptr) [[unlikely]] {
        node->extras_for_update();  // the observer id travels in the extras
      }
      if (named != nullptr) node->extras_for_update().named = named;
      // The submitting thread's TraceContext, for the task's exemplars.
      if (const detail::TraceIds* context = detail::current_trace_ids;
          context != nullptr && !context->empty()) [[unlikely]] {
        node->extras_for_update().set_trace(*context);
      }
      ticket = std::make_shared<Ticket>(node, this);
      if (recorder.metrics().observers() != nullptr) [[unlikely]] {
        // The submission may be counted on the worker (see Ticket): it carries the
        // submitter's description there.
        ticket->description = TaskDescription::current();
      }
    } catch (...) {  // no memory for the extras or the ticket: refused like the executor's
      node->drop();
      detail::Recorder::rejected(recorder.prepare(named), RejectReason::error);
      throw;
    }
    // Whether to time it is decided here, at submit (0: counted, not timed).
    detail::TaskRef ref = recorder.prepare(named);
    ref.where = site.where;
    node->submit_ns = ref.submit_ns;
    if (node->extras) node->extras->task_id = ref.id;
    try {
      // The executor's own future (if any) is not needed: the ticket publishes ours.
      (void)executor_.submit(std::function<void()>([ticket] { (*ticket)(); }));
    } catch (...) {
      ticket->refused();
      detail::Recorder::rejected(ref, refusal_reason(std::current_exception()));
      throw;
    }
    ticket->count_submitted(Ticket::submitter);
  }

  // The `reason` label of a refusal by the wrapped executor. This library's own
  // executors say why in the exception's type; anything else (an executor's own "full"
  // error, std::bad_alloc) is counted as "error" rather than guessed.
  static RejectReason refusal_reason(const std::exception_ptr& e) {
    try {
      std::rethrow_exception(e);
    } catch (const QueueFullError&) {
      return RejectReason::queue_full;
    } catch (const ExecutorShutdownError&) {
      return RejectReason::shutdown;
    } catch (const BrokenExecutorError&) {
      return RejectReason::broken;
    } catch (...) {
      return RejectReason::error;
    }
  }

  // Runs the task once; if the last copy of the callable is destroyed without running
  // (the executor dropped it), the task counts as cancelled and its future says so.
  // The submission is counted once, by whichever comes first: the submitter once the
  // executor accepted, or the task itself when the executor runs (or drops) it before
  // that. So a task is always counted as submitted before it counts as started or
  // cancelled, and executor_tasks_queued never has to be clamped.
  class Ticket {
   public:
    enum Counter : std::uint8_t { nobody = 0, submitter = 1, task = 2, counted = 3 };

    Ticket(detail::Task* node, InstrumentedExecutorProxy* proxy) : node_(node), proxy_(proxy) {}
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    ~Ticket() {
      if (node_ != nullptr) {
        count_submitted(task);
        node_->cancel(proxy_->context());
        node_->drop();
      }
    }
    void operator()() {
      detail::Task* node = std::exchange(node_, nullptr);
      if (node == nullptr) return;
      count_submitted(task);
      // cancel() counts the task; a posted task (no future) is then simply dropped.
      const detail::TaskContext ctx = proxy_->context();
      if (proxy_->cancelling_.load(std::memory_order_acquire) && node->cancel(ctx)) {
        node->drop();
        return;
      }
      if (!node->claim()) {
        node->drop();
        return;
      }
      const detail::TaskRef ref = node->ref(ctx.owner);
      const std::uint64_t start = detail::Recorder::started(ref);
      std::exception_ptr unhandled;
      const bool ok = node->invoke(unhandled);
      detail::Recorder::finished(ref, start, ok,
                                 ok ? nullptr : (unhandled ? unhandled : node->stored_error()));
      node->finish(ctx, std::move(unhandled));
    }
    void refused() {
      detail::Task* node = std::exchange(node_, nullptr);
      node->drop();  // a future's reference goes with the exception; a posted task is freed
    }
    // Counts the submission if nobody has; `who` is the caller. The submitter's count
    // may be under way when the task gets here: the task then waits for it (a few
    // nanoseconds, unless the submitting thread is preempted right there).
    void count_submitted(Counter who) {
      std::uint8_t expected = nobody;
      if (counter_.compare_exchange_strong(expected, who, std::memory_order_acq_rel)) {
        // Alive: whoever else holds the task waits for `counted` before touching it.
        if (who == task && !description.empty()) {
          const TaskDescription submitters(description);
          detail::Recorder::submitted(task_->ref(proxy_->exporter_.recorder().storage()));
        } else {
          detail::Recorder::submitted(task_->ref(proxy_->exporter_.recorder().storage()));
        }
        counter_.store(counted, std::memory_order_release);
        return;
      }
      while (counter_.load(std::memory_order_acquire) != counted) std::this_thread::yield();
    }

    // The TaskDescription in scope at submit, when an observer was attached.
    std::string description;

   private:
    detail::Task* node_;
    detail::Task* const task_ = node_;  // node_ as handed over; node_ is cleared when run
    InstrumentedExecutorProxy* proxy_;
    std::atomic<std::uint8_t> counter_{nobody};
  };

  ExecutorExporter exporter_;  // declared first: outlives the executor's tasks
  detail::ErrorSink sink_;     // used by the executor's tasks and callbacks: before it too
  ProxyOptions options_;
  E executor_;
  std::atomic<bool> closed_{false};
  std::atomic<bool> cancelling_{false};
  std::mutex shutdown_mutex_;
  bool waited_ = false;
};

/// Builds an exporter labelled with E's readable type name.
template <class E>
ExecutorExporter make_exporter_for(std::string id,
                                   std::shared_ptr<prometheus::Registry> registry = nullptr,
                                   const ExporterOptions& options = {}) {
  return ExecutorExporter(std::move(id), detail::type_name<E>(), std::move(registry), options);
}

}  // namespace executor_exporter
