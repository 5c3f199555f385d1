#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <future>
#include <type_traits>
#include <utility>

#include "detail/future_state.hpp"

namespace executor_exporter {

template <class T>
class SharedFuture;

/// The result of a submitted task. It has the std::future interface (get, wait,
/// wait_for, wait_until, valid, share), so code written against std::future keeps
/// compiling, and adds what std::future cannot do cheaply: cancel() a task that has not
/// started, ask whether it is done() or running(), and register a callback that runs
/// when it finishes. Both pools and InstrumentedExecutorProxy return this type. Like
/// std::future it is move-only and get() may be called once; share() gives a copyable
/// SharedFuture. Functions that need no state throw std::future_error(no_state).
template <class T>
class Future {
 public:
  using value_type = T;

  Future() noexcept = default;
  Future(Future&&) noexcept = default;
  Future& operator=(Future&&) noexcept = default;
  Future(const Future&) = delete;
  Future& operator=(const Future&) = delete;

  /// Waits, then returns the value or rethrows the task's exception (CancelledError if
  /// it was cancelled). Leaves the future invalid, as std::future::get does.
  T get() {
    auto state = std::move(checked());
    state->wait();
    state->rethrow_if_failed();
    if constexpr (!std::is_void_v<T>) return std::move(state->value());
  }

  /// True while the future refers to a task (before get(), after a move-from: false).
  bool valid() const noexcept { return static_cast<bool>(state_); }
  void wait() const { checked()->wait(); }
  template <class Rep, class Period>
  std::future_status wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return wait_until(std::chrono::steady_clock::now() + timeout);
  }
  template <class Clock, class Duration>
  std::future_status wait_until(const std::chrono::time_point<Clock, Duration>& deadline) const {
    return checked()->wait_until(deadline) ? std::future_status::ready
                                           : std::future_status::timeout;
  }

  /// Cancels the task if it has not started yet; true on success. get() then throws
  /// CancelledError and the executor counts it in executor_tasks_cancelled_total.
  bool cancel() { return checked()->cancel(); }
  /// The task finished: with a value, an exception, or cancelled.
  bool done() const { return checked()->finished(); }
  /// The task is running now.
  bool running() const { return checked()->state() == detail::FutureStateBase::running; }
  /// The task was cancelled before it started.
  bool cancelled() const { return checked()->state() == detail::FutureStateBase::cancelled; }
  /// The task's exception once it finished (CancelledError when cancelled), else null.
  std::exception_ptr exception() const {
    auto& s = checked();
    return s->finished() ? s->error() : nullptr;
  }

  /// Runs `callback` once the task finished, on the finishing thread, or at once on this
  /// thread if it already has. The callback must not throw (exceptions are swallowed);
  /// read the outcome through a SharedFuture captured beforehand.
  void on_done(std::function<void()> callback) { checked()->on_done(std::move(callback)); }

  /// Converts into a copyable SharedFuture; this future becomes invalid.
  SharedFuture<T> share() noexcept { return SharedFuture<T>(std::move(state_)); }

  /// For executors: wraps a state that already holds one reference for this future.
  explicit Future(detail::StateRef<detail::FutureState<T>> state) noexcept
      : state_(std::move(state)) {}

 private:
  const detail::StateRef<detail::FutureState<T>>& checked() const {
    if (!state_) throw std::future_error(std::future_errc::no_state);
    return state_;
  }
  detail::StateRef<detail::FutureState<T>>& checked() {
    if (!state_) throw std::future_error(std::future_errc::no_state);
    return state_;
  }
  detail::StateRef<detail::FutureState<T>> state_;
};

/// A copyable view of a task's result, like std::shared_future: many threads may wait
/// and call get(), which returns a reference to the one stored value.
template <class T>
class SharedFuture {
 public:
  using value_type = T;

  SharedFuture() noexcept = default;
  explicit SharedFuture(detail::StateRef<detail::FutureState<T>> state) noexcept
      : state_(std::move(state)) {}

  /// Waits, then returns the value (by const reference) or rethrows the exception.
  decltype(auto) get() const {
    auto& s = checked();
    s->wait();
    s->rethrow_if_failed();
    if constexpr (std::is_void_v<T>) {
      return;
    } else {
      return static_cast<const T&>(s->value());
    }
  }
  bool valid() const noexcept { return static_cast<bool>(state_); }
  void wait() const { checked()->wait(); }
  template <class Rep, class Period>
  std::future_status wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return wait_until(std::chrono::steady_clock::now() + timeout);
  }
  template <class Clock, class Duration>
  std::future_status wait_until(const std::chrono::time_point<Clock, Duration>& deadline) const {
    return checked()->wait_until(deadline) ? std::future_status::ready
                                           : std::future_status::timeout;
  }
  bool cancel() const { return checked()->cancel(); }
  bool done() const { return checked()->finished(); }
  bool running() const { return checked()->state() == detail::FutureStateBase::running; }
  bool cancelled() const { return checked()->state() == detail::FutureStateBase::cancelled; }
  std::exception_ptr exception() const {
    auto& s = checked();
    return s->finished() ? s->error() : nullptr;
  }
  void on_done(std::function<void()> callback) const { checked()->on_done(std::move(callback)); }

 private:
  const detail::StateRef<detail::FutureState<T>>& checked() const {
    if (!state_) throw std::future_error(std::future_errc::no_state);
    return state_;
  }
  detail::StateRef<detail::FutureState<T>> state_;
};

}  // namespace executor_exporter
