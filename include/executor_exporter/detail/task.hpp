#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "error_sink.hpp"
#include "executor_metrics.hpp"
#include "future_state.hpp"
#include "node_recycler.hpp"

namespace executor_exporter::detail {

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
  /// Runs the callable and stores its outcome unpublished; false when it threw.
  virtual bool invoke() noexcept = 0;
  /// Publishes the outcome and releases the executor's hold on the task.
  virtual void finish() noexcept = 0;
  /// Releases the executor's hold without running the task.
  virtual void drop() noexcept = 0;
  /// Cancels the task if it has not started, counting it; true on success.
  virtual bool cancel() noexcept = 0;
  /// For a claimed task that will not run (its deadline passed, the pool broke): fails
  /// it with `error` and releases the executor's hold. A posted task, which has no
  /// future, hands `error` to the executor's error handler when `report` is set.
  virtual void fail_claimed(std::exception_ptr error, bool report) noexcept = 0;

  Task* next = nullptr;           // intrusive queue link
  Task* segment_last = nullptr;   // TaskQueue's batch cut, valid only where it says so
  std::uint64_t submit_ns = 0;    // when submit accepted it
  std::uint64_t deadline_ns = 0;  // steady_ns() past which it must not start; 0: none
  ExecutorMetrics* named = nullptr;  // the series of its name (submit_named), if any
  std::int32_t priority = 0;         // higher runs first; FIFO within one priority
  // Runs instead of the task when its deadline passed; a pointer so tasks without one
  // pay 8 bytes, not a std::function.
  std::unique_ptr<std::function<void()>> on_expired;

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
  bool invoke() noexcept override {
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
  void finish() noexcept override {
    this->publish();
    this->release();
  }
  void drop() noexcept override { this->release(); }
  bool cancel() noexcept override { return FutureStateBase::cancel(); }
  void fail_claimed(std::exception_ptr error, bool /*report: the future reports*/) noexcept override {
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
/// handled).
template <class F>
class PostTask final : public Task {
 public:
  PostTask(F&& fn, ExecutorMetrics& owner, ErrorSink& sink)
      : fn_(std::move(fn)), owner_(&owner), sink_(&sink) {}

  bool claim() noexcept override { return true; }  // only shutdown cancels, off-queue
  bool invoke() noexcept override {
    try {
      fn_();
      return true;
    } catch (...) {
      error_ = std::current_exception();
      return false;
    }
  }
  void finish() noexcept override {
    // After the worker counted the failure, so the handler runs with metrics current.
    if (error_) sink_->task_failed(std::move(error_));
    delete this;
  }
  void drop() noexcept override { delete this; }
  bool cancel() noexcept override {
    (named != nullptr ? named : owner_)->local_shard().task_cancelled();
    return true;
  }
  void fail_claimed(std::exception_ptr error, bool report) noexcept override {
    if (report) sink_->task_failed(std::move(error));
    delete this;
  }

 private:
  ~PostTask() = default;

  F fn_;
  ExecutorMetrics* owner_;
  ErrorSink* sink_;
  std::exception_ptr error_;
};

/// Wraps a callable and its arguments (decayed copies) into a nullary callable.
template <class F, class... Args>
auto bind_task(F&& f, Args&&... args) {
  return [fn = std::forward<F>(f), ... a = std::forward<Args>(args)]() mutable {
    return std::invoke(std::move(fn), std::move(a)...);
  };
}

}  // namespace executor_exporter::detail
