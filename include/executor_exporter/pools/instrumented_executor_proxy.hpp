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
#include <utility>

#include <executor_exporter/detail/type_name.hpp>
#include <executor_exporter/errors.hpp>
#include <executor_exporter/metrics/exporter.hpp>
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
template <Executor E>
class InstrumentedExecutorProxy {
 public:
  /// Takes over `executor`; `max_workers` is what executor_max_workers reports; `trace`
  /// says how traced tasks record executor_task_trace_seconds.
  InstrumentedExecutorProxy(E executor, ExecutorExporter exporter, std::size_t max_workers,
                            TraceOptions trace = {})
      : exporter_(std::move(exporter)),
        sink_(exporter_.metrics(), exporter_.id()),
        trace_(std::move(trace)),
        executor_(std::move(executor)) {
    exporter_.set_max_workers(static_cast<std::int64_t>(max_workers));
  }
  /// Builds the executor in place from `args` (for executors that cannot move).
  template <class... Args>
  InstrumentedExecutorProxy(std::in_place_t, ExecutorExporter exporter, std::size_t max_workers,
                            Args&&... args)
      : exporter_(std::move(exporter)),
        sink_(exporter_.metrics(), exporter_.id()),
        executor_(std::forward<Args>(args)...) {
    exporter_.set_max_workers(static_cast<std::int64_t>(max_workers));
  }
  InstrumentedExecutorProxy(const InstrumentedExecutorProxy&) = delete;
  InstrumentedExecutorProxy& operator=(const InstrumentedExecutorProxy&) = delete;

  /// Shuts the wrapped executor down, waiting for its tasks.
  ~InstrumentedExecutorProxy() { shutdown(true, false); }

  /// Submits f(args...) to the wrapped executor. Throws ExecutorShutdownError after
  /// shutdown(); an exception from the wrapped submit propagates; both count as rejected
  /// (the wrapped executor's refusal by its reason when it is one of this library's
  /// errors, as reason="error" otherwise).
  template <class F, class... Args>
  auto submit(F&& f, Args&&... args) {
    auto bound = detail::bind_task(std::forward<F>(f), std::forward<Args>(args)...);
    using Node = detail::FutureTask<decltype(bound)>;
    using R = typename Node::result_type;
    check_open();
    auto* node = new Node(std::move(bound));
    node->set_owner(&exporter_.metrics());
    // A done-callback that throws on the executor's thread is counted and handed to the
    // error handler instead of escaping into the wrapped executor.
    node->set_sink(&sink_);
    node->add_ref();
    detail::StateRef<detail::FutureState<R>> future_ref(node);
    hand_over(node);
    return Future<R>(std::move(future_ref));
  }

  /// Fire-and-forget: runs f(args...) on the wrapped executor with no future. Its
  /// exception goes to the error handler (set_error_handler; stderr by default) and is
  /// counted in executor_unhandled_errors_total, besides the failed run. Refusals throw
  /// as for submit(); a posted task the executor drops unrun counts as cancelled.
  template <class F, class... Args>
  void post(F&& f, Args&&... args) {
    auto bound = detail::bind_task(std::forward<F>(f), std::forward<Args>(args)...);
    check_open();
    hand_over(new detail::PostTask<decltype(bound)>(std::move(bound)));
  }

  /// submit() for a traced task (worker.go's RunTraced), as ThreadPoolExecutor's:
  /// f(trace, args...) receives a Trace&, and each trace.mark("action") records the time
  /// since the previous mark (or the task's start) in
  /// executor_task_trace_seconds{scope, action}.
  template <class F, class... Args>
  auto submit_traced(std::string scope, F&& f, Args&&... args) {
    return submit(
        [this, scope = std::move(scope), fn = std::forward<F>(f)](auto&&... a) mutable {
          Trace trace(exporter_.metrics(), scope, trace_);
          return std::invoke(fn, trace, std::forward<decltype(a)>(a)...);
        },
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
  auto map(F f, Range&& range) {
    return detail::map_via_submit(*this, f, std::forward<Range>(range));
  }

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
  // What tasks need from the proxy when they are cancelled or a posted one throws.
  detail::TaskContext context() noexcept { return {&exporter_.metrics(), &sink_}; }

  void check_open() {
    if (closed_.load(std::memory_order_acquire)) {
      exporter_.task_rejected(RejectReason::shutdown);
      throw ExecutorShutdownError(exporter_.id());
    }
  }

  // Passes `node` (holding the executor's reference) to the wrapped executor; on a
  // refusal the node is released, the rejection counted and the exception rethrown.
  void hand_over(detail::Task* node) {
    // Whether to time it is decided here, at submit (0: counted, not timed).
    node->submit_ns = exporter_.metrics().local_shard().sample() ? detail::now_ns() : 0;
    auto ticket = std::make_shared<Ticket>(node, this);
    try {
      executor_.submit(std::function<void()>([ticket] { (*ticket)(); }));
    } catch (...) {
      ticket->refused();
      exporter_.task_rejected(refusal_reason(std::current_exception()));
      throw;
    }
    // Counted once accepted: a task the executor starts at once may be seen as started
    // a moment before it is seen as submitted; the queued gauge is clamped at zero.
    exporter_.metrics().local_shard().task_submitted();
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
  class Ticket {
   public:
    Ticket(detail::Task* node, InstrumentedExecutorProxy* proxy) : node_(node), proxy_(proxy) {}
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    ~Ticket() {
      if (node_ != nullptr) {
        node_->cancel(proxy_->context());
        node_->drop();
      }
    }
    void operator()() {
      detail::Task* node = std::exchange(node_, nullptr);
      if (node == nullptr) return;
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
      auto& exporter = proxy_->exporter_;
      const std::uint64_t start = exporter.task_started(node->submit_ns);
      std::exception_ptr unhandled;
      const bool ok = node->invoke(unhandled);
      exporter.task_finished(start, ok);
      node->finish(ctx, std::move(unhandled));
    }
    void refused() {
      detail::Task* node = std::exchange(node_, nullptr);
      node->drop();  // a future's reference goes with the exception; a posted task is freed
    }

   private:
    detail::Task* node_;
    InstrumentedExecutorProxy* proxy_;
  };

  ExecutorExporter exporter_;  // declared first: outlives the executor's tasks
  detail::ErrorSink sink_;     // used by the executor's tasks and callbacks: before it too
  TraceOptions trace_;
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
