#pragma once

#include <chrono>
#include <concepts>
#include <exception>
#include <functional>
#include <future>
#include <type_traits>
#include <utility>

#include <executor_exporter/pools/detail/future_state.hpp>

namespace executor_exporter {

template <class T>
class SharedFuture;

namespace detail {
/// Registers `callback` on `state`, giving it a SharedFuture of the finished task.
template <class T, class F>
void add_done_callback(FutureState<T>& state, F callback);
}  // namespace detail

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
    // Waits before taking the state: a wait that throws (no memory for the waiter
    // state, see FutureStateBase) leaves the future valid, to be waited on again.
    checked()->wait();
    auto state = std::move(checked());
    state->rethrow_if_failed();
    if constexpr (!std::is_void_v<T>) return std::move(state->value());
  }

  /// True while the future refers to a task (before get(), after a move-from: false).
  bool valid() const noexcept { return static_cast<bool>(state_); }
  /// Blocks until the task finished.
  void wait() const { checked()->wait(); }
  /// Waits at most `timeout`; ready or timeout.
  template <class Rep, class Period>
  std::future_status wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return wait_until(std::chrono::steady_clock::now() + timeout);
  }
  /// Waits until `deadline` at most; ready or timeout.
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
  /// thread if it already has. Prefer add_done_callback, which hands over the result.
  /// Exceptions: see add_done_callback.
  void on_done(std::function<void()> callback) { checked()->on_done(std::move(callback)); }

  /// Python's add_done_callback: runs callback(SharedFuture<T> const&) once the task
  /// finished (value, exception or cancelled), so it can read get() or exception().
  /// It runs on the thread that finished the task (a worker, or whoever cancelled it),
  /// or at once on this thread if the task already finished. Callbacks added earlier
  /// run first. An exception thrown on a worker is caught, counted in
  /// executor_callback_errors_total and handed to the executor's error handler, so it
  /// never kills the worker; one thrown when run at once propagates to this caller.
  /// Many callbacks may be added; the future stays valid.
  template <std::invocable<const SharedFuture<T>&> F>
  void add_done_callback(F callback) const {
    detail::add_done_callback(*checked().get(), std::move(callback));
  }

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

  /// An invalid future (valid() is false).
  SharedFuture() noexcept = default;
  /// For executors: wraps a state that already holds one reference for this future.
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
  /// True while the future refers to a task.
  bool valid() const noexcept { return static_cast<bool>(state_); }
  /// Blocks until the task finished.
  void wait() const { checked()->wait(); }
  /// Waits at most `timeout`; ready or timeout.
  template <class Rep, class Period>
  std::future_status wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return wait_until(std::chrono::steady_clock::now() + timeout);
  }
  /// Waits until `deadline` at most; ready or timeout.
  template <class Clock, class Duration>
  std::future_status wait_until(const std::chrono::time_point<Clock, Duration>& deadline) const {
    return checked()->wait_until(deadline) ? std::future_status::ready
                                           : std::future_status::timeout;
  }
  /// Cancels the task if it has not started yet; true on success.
  bool cancel() const { return checked()->cancel(); }
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
  /// Runs `callback` once the task finished; see Future::on_done.
  void on_done(std::function<void()> callback) const { checked()->on_done(std::move(callback)); }
  /// Runs callback(SharedFuture<T> const&) once the task finished; see
  /// Future::add_done_callback.
  template <std::invocable<const SharedFuture<T>&> F>
  void add_done_callback(F callback) const {
    detail::add_done_callback(*checked().get(), std::move(callback));
  }

 private:
  const detail::StateRef<detail::FutureState<T>>& checked() const {
    if (!state_) throw std::future_error(std::future_errc::no_state);
    return state_;
  }
  detail::StateRef<detail::FutureState<T>> state_;
};

namespace detail {

template <class T, class F>
void add_done_callback(FutureState<T>& state, F callback) {
  // The raw pointer is safe: whoever runs the callbacks (the finishing worker, a
  // cancelling caller, or this caller at once) holds a reference meanwhile. A counted
  // reference here would keep the state alive through its own callback list.
  FutureState<T>* s = &state;
  s->on_done([s, cb = std::move(callback)]() mutable {
    s->add_ref();
    const SharedFuture<T> view{StateRef<FutureState<T>>(s)};
    cb(view);
  });
}

}  // namespace detail

}  // namespace executor_exporter
