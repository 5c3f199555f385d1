#pragma once

#include <sys/types.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <executor_exporter/detail/call_site.hpp>
#include <executor_exporter/errors.hpp>
#include <executor_exporter/metrics/exporter.hpp>
#include <executor_exporter/pools/detail/error_sink.hpp>
#include <executor_exporter/pools/future.hpp>
#include <executor_exporter/pools/map_results.hpp>
#include <executor_exporter/process/codec.hpp>
#include <executor_exporter/process/detail/frame.hpp>
#include <executor_exporter/process/detail/process_engine.hpp>
#include <executor_exporter/process/detail/process_task.hpp>
#include <executor_exporter/process/process_pool_options.hpp>

namespace executor_exporter {

namespace detail {
template <class...>
inline constexpr bool process_always_false = false;
}

/// Python's ProcessPoolExecutor for C++, instrumented with executor_type="process_pool".
///
/// Tasks run in long-lived worker processes created with fork() (no exec) by a small
/// single-threaded "zygote" process that the constructor forks before the pool starts
/// any thread of its own. A task is a function pointer or a capture-less lambda plus
/// arguments; arguments and results cross the process boundary through the codec
/// (codec.hpp). submit() returns the same Future as ThreadPoolExecutor; an exception
/// thrown in the worker arrives as ProcessTaskError (original type name and what()).
///
/// Failures fail only what they must: a worker that dies (signal, exit(), memory limit,
/// malformed reply) fails the task it was running with WorkerCrashedError, tasks sent to
/// it but not started are sent again, and a new worker replaces it. A task past
/// task_timeout gets TaskTimeoutError and its worker is killed and replaced. A crash loop,
/// a dead zygote or a failing initializer break the pool: pending and later tasks fail
/// with BrokenExecutorError. The library installs no signal handler: the zygote reaps the
/// workers, and the pool reaps the zygote.
///
/// Only the parent touches prometheus-cpp: queue wait (submit to start in the child) and
/// run time (measured in the child) travel back with each result.
class ProcessPoolExecutor {
 public:
  explicit ProcessPoolExecutor(ProcessPoolOptions options = {})
      : options_(std::move(options)),
        exporter_(options_.id, "process_pool", options_.registry, options_.exporter),
        sink_(exporter_.recorder().storage(), exporter_.id()) {
    options_.max_message_bytes = detail::message_limit(options_.max_message_bytes);
    // Before the engine starts, so the observers see the first workers come up.
    for (auto& observer : options_.observers) exporter_.add_observer(observer);
    engine_ = std::make_unique<detail::ProcessEngine>(options_, exporter_);
  }
  explicit ProcessPoolExecutor(std::size_t max_workers, ProcessPoolOptions options = {})
      : ProcessPoolExecutor(with_workers(std::move(options), max_workers)) {}

  ProcessPoolExecutor(const ProcessPoolExecutor&) = delete;
  ProcessPoolExecutor& operator=(const ProcessPoolExecutor&) = delete;

  /// shutdown(true, false): waits for the queued tasks, then stops the workers and the
  /// zygote. A task that hangs keeps it waiting unless task_timeout is set; call
  /// kill_workers() first to give up on it.
  ~ProcessPoolExecutor() { engine_.reset(); }

  /// For applications that start threads early: forks the process-wide zygote server
  /// now, while the process is still single-threaded. Every pool created afterwards gets
  /// its zygote from it instead of forking the (by then multi-threaded) process, and
  /// skips the thread check. Call it at the top of main(). Idempotent.
  static void preinit() { detail::process_preinit(); }
  /// Stops the preinit zygote server (pools created later fork their own zygote).
  static void preinit_stop() { detail::process_preinit_stop(); }

  /// Runs f(args...) in a worker process and returns its future. f must be a function
  /// pointer or a capture-less lambda; arguments and result must be Encodable. Throws
  /// ExecutorShutdownError after shutdown(), BrokenExecutorError once the pool is
  /// broken, MessageTooLargeError when the arguments encode to more than
  /// ProcessPoolOptions::max_message_bytes, and whatever copying them throws (such as
  /// std::bad_alloc); every one is counted as rejected and leaves nothing queued.
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
  /// the pool's unlabelled ones, as ThreadPoolExecutor::submit_named. Past
  /// ProcessPoolOptions::max_task_names distinct names, new names count as task="other".
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

 private:
  template <class F, class... Args>
  auto submit_named_at(detail::CallSite site, std::string_view name, F&& f, Args&&... args) {
    detail::ExecutorMetrics* named = nullptr;
    try {
      named = exporter_.recorder().named(name, options_.max_task_names);
    } catch (...) {  // no memory for a new name's series: refused in the pool's
      reject(nullptr);
      throw;
    }
    return submit_in(site, named, std::forward<F>(f), std::forward<Args>(args)...);
  }

 public:
  /// f(item) for every item of `range`, one task per item, results in input order (see
  /// MapResults).
  template <class F, std::ranges::input_range Range>
  [[nodiscard]] auto map(F f, Range&& range,
                         detail::CallSite site = {std::source_location::current()}) {
    return map(f, std::forward<Range>(range), MapOptions{}, site);
  }

  /// map() with Python's timeout and chunksize, as ThreadPoolExecutor::map: reading a
  /// result later than `timeout` after this call throws TimeoutError, and with
  /// chunksize > 1 the items travel in chunks of that many, one frame per chunk (much
  /// faster for small tasks); an exception fails every item of its chunk. A chunk counts
  /// as one task in the metrics, as in every executor: cancelling one of its items
  /// before it starts keeps that item from being computed, but the chunk still runs.
  template <class F, std::ranges::input_range Range>
  [[nodiscard]] auto map(F f, Range&& range, MapOptions options,
                         detail::CallSite site = {std::source_location::current()}) {
    using I = std::remove_cvref_t<std::ranges::range_reference_t<Range>>;
    std::optional<std::chrono::steady_clock::time_point> deadline;
    if (options.timeout) deadline = std::chrono::steady_clock::now() + *options.timeout;
    if (options.chunksize <= 1) {
      using Fut = decltype(submit(f, std::declval<I>()));
      std::vector<Fut> futures;
      if constexpr (std::ranges::sized_range<Range>) futures.reserve(std::ranges::size(range));
      for (auto&& item : range) {
        futures.push_back(submit(f, std::forward<decltype(item)>(item), site));
      }
      return MapResults<typename Fut::value_type>(std::move(futures), deadline);
    }
    static_assert(ProcessTaskFunction<F, I>,
                  "ProcessPoolExecutor::map: the function must be a function pointer or a "
                  "capture-less lambda taking one Encodable item and returning void or an "
                  "Encodable value.");
    using D = std::decay_t<F>;
    using R = detail::process_result_t<F, I>;
    const std::size_t chunksize = options.chunksize;
    std::vector<Future<R>> futures;
    if constexpr (std::ranges::sized_range<Range>) futures.reserve(std::ranges::size(range));
    std::uint64_t user = 0;
    if constexpr (std::is_pointer_v<D>) user = detail::function_to_wire(static_cast<D>(f));
    std::vector<I> items;
    items.reserve(chunksize);
    auto flush = [&] {
      if (items.empty()) return;
      std::unique_ptr<detail::ProcessTask> task;
      const std::size_t first = futures.size();
      try {
        Encoder e(detail::start_task_frame(
            detail::function_to_wire(&detail::process_chunk_trampoline<D, R, I>),
            items.size() * sizeof(I)));
        e.write_uint<std::uint64_t>(user);
        encode(e, items);
        check_size(e.buffer().size() - kTaskFrameFixed, "map chunk's items");
        futures.reserve(first + items.size());  // so that adopting a reference cannot throw
        task = std::make_unique<detail::ProcessTask>();
        task->where = site.where;
        task->chunk.reserve(items.size());
        task->started.assign(items.size(), 0);
        task->complete = &detail::complete_chunk<R>;
        for (std::size_t i = 0; i < items.size(); ++i) {
          auto* state = new detail::ProcessFutureState<R>;
          // No owner: an item's cancel is not a task's; the engine counts the chunk.
          state->set_sink(&sink_);
          state->add_ref();
          task->chunk.push_back(state);  // reserved: cannot throw
          futures.emplace_back(detail::StateRef<detail::FutureState<R>>(state));
        }
        task->id = engine_->next_task_id();
        task->frame = e.take();
        detail::seal_frame(task->frame, detail::FrameKind::kTask, task->id);
      } catch (...) {
        // Nothing was queued: the chunk is refused, its futures and states go.
        futures.erase(futures.begin() + static_cast<std::ptrdiff_t>(first), futures.end());
        reject(nullptr);
        throw;
      }
      items.clear();
      engine_->enqueue(task.release());  // counts its own refusals
    };
    for (auto&& item : range) {
      items.push_back(std::forward<decltype(item)>(item));
      if (items.size() == chunksize) flush();
    }
    flush();
    return MapResults<R>(std::move(futures), deadline);
  }

  /// Stops accepting tasks. With cancel_futures, tasks not yet sent to a worker are
  /// cancelled; otherwise they still run. With wait, blocks until every task finished
  /// and the workers and the zygote are gone (reaped). Safe to call more than once.
  void shutdown(bool wait = true, bool cancel_futures = false) {
    engine_->shutdown(wait, cancel_futures);
  }

  /// Python 3.14's kill_workers(): SIGKILLs every worker now; pending and running tasks
  /// fail with BrokenExecutorError and the pool accepts nothing more.
  void kill_workers() { engine_->kill_workers(); }

  /// Receives the exceptions of done-callbacks run by the pool's completion thread (the
  /// thread that publishes results), each also counted in executor_callback_errors_total,
  /// as ThreadPoolExecutor's. Called on that thread; it should not block long. An
  /// exception it throws is logged to stderr. An empty handler restores the default,
  /// which logs to stderr. (A failing worker initializer is not handed to it: it breaks
  /// the pool, whose futures carry the error, and counts in
  /// executor_initializer_errors_total.)
  void set_error_handler(std::function<void(std::exception_ptr)> handler) {
    sink_.set_handler(std::move(handler));
  }

  /// The exporter feeding this pool's metrics.
  ExecutorExporter& exporter() { return exporter_; }
  /// Attaches an observer to this pool's id (see TaskObserver). Start and end of a task
  /// reach it together, when the worker's result arrives; their timestamps are the
  /// worker's CLOCK_MONOTONIC readings (steady_clock), which now_ns() approximates.
  void add_observer(std::shared_ptr<TaskObserver> observer) {
    exporter_.add_observer(std::move(observer));
  }
  /// Detaches an observer; a hook already running on another thread may still finish.
  void remove_observer(const TaskObserver* observer) { exporter_.remove_observer(observer); }
  std::size_t max_workers() const { return engine_->max_workers(); }
  /// Pids of the live workers and of the zygote (for monitoring and tests).
  std::vector<pid_t> worker_pids() const { return engine_->worker_pids(); }
  pid_t zygote_pid() const { return engine_->zygote_pid(); }
  /// True once a crash loop, a dead zygote, a failing initializer or kill_workers()
  /// broke the pool.
  bool broken() const { return engine_->broken(); }

 private:
  template <class F, class... Args>
  auto submit_in(detail::CallSite site, detail::ExecutorMetrics* named, F&& f, Args&&... args) {
    using D = std::decay_t<F>;
    if constexpr (!ProcessCallable<F>) {
      static_assert(detail::process_always_false<F>,
                    "ProcessPoolExecutor::submit: the task must be a function pointer or a "
                    "capture-less lambda. A capturing lambda's captures live in the parent's "
                    "memory and cannot reach the worker process: pass them as arguments.");
      return Future<void>();
    } else if constexpr (!std::is_invocable_v<D&, std::decay_t<Args>...>) {
      static_assert(detail::process_always_false<F>,
                    "ProcessPoolExecutor::submit: the function cannot be called with these "
                    "arguments (they are passed as decayed rvalues).");
      return Future<void>();
    } else if constexpr (!(Encodable<std::decay_t<Args>> && ...)) {
      static_assert(detail::process_always_false<F>,
                    "ProcessPoolExecutor::submit: every argument must be Encodable (see "
                    "codec.hpp; specialize executor_exporter::codec_traits for your types).");
      return Future<void>();
    } else if constexpr (!detail::encodable_result<detail::process_result_t<F, Args...>>) {
      static_assert(detail::process_always_false<F>,
                    "ProcessPoolExecutor::submit: the result must be void or Encodable (see "
                    "codec.hpp; specialize executor_exporter::codec_traits for your types).");
      return Future<void>();
    } else {
      using R = detail::process_result_t<F, Args...>;
      std::unique_ptr<detail::ProcessTask> task;
      detail::StateRef<detail::FutureState<R>> future_ref;
      try {
        std::uint64_t user = 0;
        if constexpr (std::is_pointer_v<D>) user = detail::function_to_wire(static_cast<D>(f));
        // The frame is encoded in place: header room, function word, then the arguments.
        Encoder e(detail::start_task_frame(
            detail::function_to_wire(&detail::process_trampoline<D, R, std::decay_t<Args>...>)));
        e.write_uint<std::uint64_t>(user);
        (encode(e, static_cast<const std::decay_t<Args>&>(args)), ...);
        check_size(e.buffer().size() - kTaskFrameFixed, "task's arguments");
        task = std::make_unique<detail::ProcessTask>();
        auto* state = new detail::ProcessFutureState<R>;
        state->set_owner(exporter_.recorder().storage(), named);
        state->set_sink(&sink_);
        state->add_ref();  // one for the future, one for the task
        future_ref = detail::StateRef<detail::FutureState<R>>(state);
        task->single = state;
        task->where = site.where;
        task->series = named;
        task->complete = &detail::complete_single<R>;
        task->id = engine_->next_task_id();
        task->frame = e.take();
        detail::seal_frame(task->frame, detail::FrameKind::kTask, task->id);
      } catch (...) {
        // Nothing was queued (no memory, an argument whose encoding threw, a message
        // above the limit): a refusal like the engine's, so the submit is not lost.
        reject(named);
        throw;
      }
      engine_->enqueue(task.release());  // counts its own refusals
      return Future<R>(std::move(future_ref));
    }
  }

  // What a task frame holds before its encoded user word and arguments.
  static constexpr std::size_t kTaskFrameFixed = detail::kFrameHeaderSize + sizeof(std::uint64_t);

  // Refuses a task the worker's reader would refuse. `encoded`: the user function word
  // and the arguments; the frame adds one more word.
  void check_size(std::size_t encoded, const char* what) const {
    const std::size_t args = encoded - sizeof(std::uint64_t);
    const std::size_t limit = options_.max_message_bytes;
    if (args <= limit - detail::kMessageOverhead) return;
    throw MessageTooLargeError("process pool '" + exporter_.id() + "': the " + what +
                               " encode to " + std::to_string(args) + " bytes, a message of " +
                               std::to_string(args + detail::kMessageOverhead) +
                               " bytes, above ProcessPoolOptions::max_message_bytes (" +
                               std::to_string(limit) + " bytes): the task was not accepted");
  }

  // A submit that failed before the engine took the task.
  void reject(detail::ExecutorMetrics* named) noexcept {
    detail::Recorder::rejected(exporter_.recorder().prepare(named), RejectReason::error);
  }

  static ProcessPoolOptions with_workers(ProcessPoolOptions o, std::size_t n) {
    o.max_workers = n;
    return o;
  }

  ProcessPoolOptions options_;
  ExecutorExporter exporter_;
  detail::ErrorSink sink_;  // used by the engine's completion thread: declared before it
  std::unique_ptr<detail::ProcessEngine> engine_;
};

}  // namespace executor_exporter
