#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <source_location>
#include <type_traits>
#include <utility>

#include <executor_exporter/detail/hot_path.hpp>
#include <executor_exporter/metrics/detail/recorder.hpp>
#include <executor_exporter/pools/detail/error_sink.hpp>
#include <executor_exporter/pools/detail/future_state.hpp>
#include <executor_exporter/pools/detail/node_recycler.hpp>

namespace executor_exporter::detail {

/// What a task needs from the executor that runs it when it is cancelled or its
/// exception has no future to go to. Passed in by the executor rather than stored in
/// every node: with that and the rare settings behind one pointer (TaskExtras), a
/// fire-and-forget node fits a 64-byte block instead of a 128-byte one, and a burst of
/// queued tasks touches half the memory (4 producers ahead of 2 workers ran ~1.5x
/// faster, mostly fewer page faults).
struct TaskContext {
  ExecutorMetrics* owner;  // counts a cancelled task without a name; null: no metrics
  ErrorSink* sink;         // receives a posted task's exception
};

/// What fewer tasks still have: the exemplars' trace and span ids and an expire
/// callback. Out of line a second time so that TaskExtras keeps to one 64-byte block.
struct TaskRare : RecycledNode {
  TraceIds ids;
  std::function<void()> on_expired;  // runs instead of the task once its deadline passed
};

/// The settings few tasks have (a name, a priority, a deadline), kept out of line so
/// that a task without them pays one pointer. Recycled like the nodes.
struct TaskExtras : RecycledNode {
  ExecutorMetrics* named = nullptr;  // the series of its name (submit_named), if any
  std::uint64_t task_id = 0;         // its id for observers, if any was attached at submit
  std::uint64_t deadline_ns = 0;     // steady_ns() past which it must not start; 0: none
  // Higher runs first. Kept here, not in the node, so that the node has room for its
  // call site and still fits 64 bytes: a task with a priority takes the queue's lock
  // anyway, and an extras block beside it costs less than that.
  std::int32_t priority = 0;
  std::unique_ptr<TaskRare> rare;  // trace ids and the expire callback, if any

  /// The rare settings, created on first use (may throw std::bad_alloc).
  TaskRare& rare_for_update() {
    if (!rare) rare = std::make_unique<TaskRare>();
    return *rare;
  }
  /// Sets the exemplars' ids (may throw std::bad_alloc).
  void set_trace(const TraceIds& ids) { rare_for_update().ids = ids; }
  /// The exemplars' ids, or null when the task has none.
  const TraceIds* trace() const noexcept {
    return rare && !rare->ids.empty() ? &rare->ids : nullptr;
  }
};

/// A queued unit of work as a worker sees it. The split into claim / invoke / finish
/// lets the worker read the clock between the user's code and the moment the result
/// becomes visible, so a caller that sees get() return also sees the task counted.
/// Nodes come from a NodeRecycler (RecycledNode), not from malloc, when small.
class Task : public RecycledNode {
 public:
  Task() = default;
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  /// Claims the task for running; false when it was cancelled (then drop() it).
  virtual bool claim() noexcept = 0;
  /// Runs the callable and stores its outcome unpublished; false when it threw. A task
  /// without a future has nowhere to keep its exception: it leaves it in `unhandled`
  /// for finish().
  virtual bool invoke(std::exception_ptr& unhandled) noexcept = 0;
  /// Publishes the outcome and releases the executor's hold on the task; `unhandled`
  /// (from invoke()) goes to the context's error sink.
  virtual void finish(const TaskContext& ctx, std::exception_ptr unhandled) noexcept = 0;
  /// What invoke() stored as the task's exception (a future's), for observers; null
  /// for a task that keeps none (a posted task hands its exception to invoke()'s caller).
  virtual std::exception_ptr stored_error() const noexcept { return nullptr; }
  /// Releases the executor's hold without running the task.
  virtual void drop() noexcept = 0;
  /// Cancels the task if it has not started, counting it; true on success.
  virtual bool cancel(const TaskContext& ctx) noexcept = 0;
  /// For a claimed task that will not run (its deadline passed, the pool broke): fails
  /// it with `error` and releases the executor's hold. A posted task, which has no
  /// future, hands `error` to the context's error sink when `report` is set.
  virtual void fail_claimed(const TaskContext& ctx, std::exception_ptr error,
                            bool report) noexcept = 0;

  /// The series of the task's name, or null for an unnamed task.
  ExecutorMetrics* named() const noexcept { return extras ? extras->named : nullptr; }
  /// The task as the recorder knows it (`owner`: the executor's series, used when the
  /// task has no name of its own).
  EXECUTOR_EXPORTER_HOT TaskRef ref(ExecutorMetrics* owner) const noexcept {
    // One named result, so that it is built in the caller's object (see TaskRef).
    TaskRef r;
    r.series = owner;
    r.submit_ns = submit_ns;
    r.where = where;
    if (extras) {
      if (extras->named != nullptr) r.series = extras->named;
      r.id = extras->task_id;
      r.trace = extras->trace();
    }
    return r;
  }
  /// Higher runs first; FIFO within one priority (0 unless set at submit).
  std::int32_t priority() const noexcept { return extras ? extras->priority : 0; }
  /// The extras, created on first use.
  TaskExtras& extras_for_update() {
    if (!extras) extras = std::make_unique<TaskExtras>();
    return *extras;
  }

  Task* next = nullptr;                // intrusive queue link
  Task* segment_last = nullptr;        // TaskQueue's batch cut, valid only where it says so
  std::uint64_t submit_ns = 0;         // when submit accepted it
  std::unique_ptr<TaskExtras> extras;  // null for a task without a name, priority or deadline
  // Where it was submitted (empty when the pool does not capture it): one pointer on
  // GCC and Clang, so a post node with a 16-byte capture still fits 64 bytes.
  std::source_location where{};

 protected:
  ~Task() = default;
};

/// A task with a future: one node (recycled, see RecycledNode) holds the callable, the
/// outcome and the state shared with the Future.
template <class F>
class FutureTask final : public FutureState<std::invoke_result_t<F&>>, public Task {
 public:
  using result_type = std::invoke_result_t<F&>;

  explicit FutureTask(F&& fn) : fn_(std::move(fn)) {}

  bool claim() noexcept override { return this->try_start(); }
  bool invoke(std::exception_ptr& /*unhandled: the future takes it*/) noexcept override {
    bool ok = true;
    try {
      if constexpr (std::is_void_v<result_type>) {
        (*fn_)();
      } else {
        this->store_value((*fn_)());
      }
    } catch (...) {
      this->store_error(std::current_exception());
      ok = false;
    }
    // Captures are released as soon as the task ran, not when the last future goes.
    fn_.reset();
    return ok;
  }
  void finish(const TaskContext& /*ctx*/, std::exception_ptr /*unhandled*/) noexcept override {
    this->publish();
    this->release();
  }
  void drop() noexcept override { this->release(); }
  // The future state counts in the owner it was given at submit: a Future's own
  // cancel() has no executor at hand.
  bool cancel(const TaskContext& /*ctx*/) noexcept override { return FutureStateBase::cancel(); }
  TaskRef cancel_ref() const noexcept override { return ref(this->counts()); }
  std::exception_ptr stored_error() const noexcept override { return this->error(); }
  void fail_claimed(const TaskContext& /*ctx*/, std::exception_ptr error,
                    bool /*report: the future reports*/) noexcept override {
    fn_.reset();
    this->fail(std::move(error));
    this->release();
  }

 private:
  std::optional<F> fn_;
};

/// A fire-and-forget task (post): no future and no shared state, one node for the
/// callable and the queue link, deleted (recycled) by the worker that ran it. Its
/// exception has nobody to go to, so it goes to the executor's ErrorSink (counted,
/// handled). With a capture of up to 16 bytes the node fits a 64-byte block.
template <class F>
class PostTask final : public Task {
 public:
  explicit PostTask(F&& fn) : fn_(std::move(fn)) {}

  bool claim() noexcept override { return true; }  // only shutdown cancels, off-queue
  bool invoke(std::exception_ptr& unhandled) noexcept override {
    try {
      fn_();
      return true;
    } catch (...) {
      unhandled = std::current_exception();
      return false;
    }
  }
  void finish(const TaskContext& ctx, std::exception_ptr unhandled) noexcept override {
    // After the worker counted the failure, so the handler runs with metrics current.
    if (unhandled) ctx.sink->task_failed(std::move(unhandled));
    delete this;
  }
  void drop() noexcept override { delete this; }
  bool cancel(const TaskContext& ctx) noexcept override {
    if (ctx.owner != nullptr) Recorder::cancelled(ref(ctx.owner));
    return true;
  }
  void fail_claimed(const TaskContext& ctx, std::exception_ptr error,
                    bool report) noexcept override {
    if (report) ctx.sink->task_failed(std::move(error));
    delete this;
  }

 private:
  ~PostTask() = default;

  F fn_;
};

/// Wraps a callable and its arguments (decayed copies) into a nullary callable.
template <class F, class... Args>
auto bind_task(F&& f, Args&&... args) {
  return [fn = std::forward<F>(f), ... a = std::forward<Args>(args)]() mutable {
    return std::invoke(std::move(fn), std::move(a)...);
  };
}

}  // namespace executor_exporter::detail
