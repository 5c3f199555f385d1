#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "executor_metrics.hpp"
#include "future_state.hpp"

namespace executor_exporter::detail {

/// A queued unit of work as a worker sees it. The split into claim / invoke / finish
/// lets the worker read the clock between the user's code and the moment the result
/// becomes visible, so a caller that sees get() return also sees the task counted.
class Task {
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

  Task* next = nullptr;         // intrusive queue link
  std::uint64_t submit_ns = 0;  // when submit accepted it

 protected:
  ~Task() = default;
};

/// A task with a future: one allocation holds the callable, the outcome and the
/// state shared with the Future.
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

 private:
  std::optional<F> fn_;
};

/// Wraps a callable and its arguments (decayed copies) into a nullary callable.
template <class F, class... Args>
auto bind_task(F&& f, Args&&... args) {
  return [fn = std::forward<F>(f), ... a = std::forward<Args>(args)]() mutable {
    return std::invoke(std::move(fn), std::move(a)...);
  };
}

}  // namespace executor_exporter::detail
