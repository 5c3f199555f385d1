#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include <executor_exporter/errors.hpp>
#include <executor_exporter/metrics/detail/recorder.hpp>
#include <executor_exporter/pools/detail/error_sink.hpp>

namespace executor_exporter::detail {

/// The state shared by a task and its futures: an intrusive reference count, a status
/// word, the outcome, and (only when someone waits or registers a callback) a mutex.
/// The status word is the whole fast path: a task that nobody waits on completes with
/// two atomic operations and no lock. The mutex, condition variable and callback list
/// (112 bytes) are allocated by the first waiter, so that a future's node fits a
/// 128-byte block: most futures of a batch are done before anyone asks.
class FutureStateBase {
 public:
  enum : std::uint32_t {
    pending = 0,
    running = 1,
    done = 2,
    cancelled = 3,
    state_mask = 3,
    has_waiters = 4,
    has_callbacks = 8,
  };

  FutureStateBase() = default;
  FutureStateBase(const FutureStateBase&) = delete;
  FutureStateBase& operator=(const FutureStateBase&) = delete;
  virtual ~FutureStateBase() { delete waiters_.load(std::memory_order_acquire); }

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  std::uint32_t state() const noexcept {
    return status_.load(std::memory_order_acquire) & state_mask;
  }
  bool finished() const noexcept { return state() >= done; }

  /// Claims the task for running; false when it was cancelled first.
  bool try_start() noexcept { return transition(pending, running); }

  /// Cancels a task that has not started: its futures then throw CancelledError, and
  /// the executor's cancelled counter goes up. False when it already started.
  bool cancel() noexcept {
    std::uint32_t before = 0;
    if (!transition(pending, cancelled, /*publish=*/false, &before)) return false;
    // Counted before anyone is woken, so a scrape after get() threw sees it.
    // A named task counts only in its name's series.
    if (counts_ != nullptr) Recorder::cancelled(cancel_ref());
    if (before & (has_waiters | has_callbacks)) notify(before);
    return true;
  }

  /// Sets the outcome to an exception (after try_start) and publishes it.
  void fail(std::exception_ptr error) noexcept {
    error_ = std::move(error);
    publish();
  }

  /// Stores the task's exception without publishing it yet.
  void store_error(std::exception_ptr error) noexcept { error_ = std::move(error); }

  /// Marks a started task done (its value or error already stored).
  void publish() noexcept { transition(running, done, /*publish=*/true); }

  /// publish(), unless a done-callback is registered: then nothing changes and false
  /// says so, and the caller hands the state to a thread where callbacks may run. A
  /// callback registered after this succeeds sees the task done and runs on its own
  /// thread, so no callback ever runs here. The process pool's I/O thread publishes
  /// this way, waking a waiter without a hop through its completion thread.
  bool publish_unless_callbacks() noexcept {
    auto s = status_.load(std::memory_order_relaxed);
    do {
      if ((s & state_mask) != running || (s & has_callbacks) != 0) return false;
    } while (!status_.compare_exchange_weak(s, (s & ~state_mask) | done, std::memory_order_acq_rel,
                                            std::memory_order_relaxed));
    if (s & has_waiters) notify(has_waiters);
    return true;
  }

  /// Blocks until the task is finished. The first wait on an unfinished task allocates
  /// the waiter state, so it may throw std::bad_alloc (the task is unaffected).
  void wait() const {
    if (finished()) return;
    Waiters& w = waiters();
    std::unique_lock lock(w.mutex);
    status_.fetch_or(has_waiters, std::memory_order_acq_rel);
    w.cv.wait(lock, [&] { return finished(); });
  }
  template <class Clock, class Duration>
  bool wait_until(const std::chrono::time_point<Clock, Duration>& deadline) const {
    if (finished()) return true;
    Waiters& w = waiters();
    std::unique_lock lock(w.mutex);
    status_.fetch_or(has_waiters, std::memory_order_acq_rel);
    return w.cv.wait_until(lock, deadline, [&] { return finished(); });
  }

  /// Runs `callback` once the task is finished: right away (on this thread) if it
  /// already is, otherwise on the thread that finishes it. On the finishing thread an
  /// exception from the callback goes to the executor's ErrorSink (counted, handled);
  /// run right away, it propagates to this caller, whose own thread it is.
  void on_done(std::function<void()> callback) {
    if (finished()) {
      callback();
      return;
    }
    Waiters& w = waiters();
    std::unique_lock lock(w.mutex);
    if (finished()) {
      lock.unlock();
      callback();
      return;
    }
    w.callbacks.push_back(std::move(callback));
    const auto before = status_.fetch_or(has_callbacks, std::memory_order_acq_rel);
    if ((before & state_mask) >= done) {
      // Finished between our check and the flag: the finisher did not see the flag.
      auto mine = std::move(w.callbacks.back());
      w.callbacks.pop_back();
      lock.unlock();
      mine();
    }
  }

  /// Rethrows the stored error, or CancelledError.
  void rethrow_if_failed() const {
    if (state() == cancelled) throw CancelledError();
    if (error_) std::rethrow_exception(error_);
  }
  /// Where a cancel counts (see set_owner).
  ExecutorMetrics* counts() const noexcept { return counts_; }
  std::exception_ptr error() const noexcept {
    if (state() == cancelled) return std::make_exception_ptr(CancelledError());
    return error_;
  }

  /// The executor whose cancelled counter a cancel() feeds (for a named task, the
  /// name's series instead); set at submit.
  void set_owner(ExecutorMetrics* owner, ExecutorMetrics* named = nullptr) noexcept {
    counts_ = named != nullptr ? named : owner;
  }
  /// The task as the recorder knows it, for the cancel it counts; a task node that
  /// keeps its submit time and observer id says so.
  virtual TaskRef cancel_ref() const noexcept { return {counts_, 0, 0}; }
  /// Where exceptions of callbacks run by the finishing thread go; set at submit.
  void set_sink(ErrorSink* sink) noexcept { sink_ = sink; }

 private:
  bool transition(std::uint32_t from, std::uint32_t to, bool publish = false,
                  std::uint32_t* before = nullptr) noexcept {
    auto s = status_.load(std::memory_order_relaxed);
    do {
      if ((s & state_mask) != from) return false;
    } while (!status_.compare_exchange_weak(s, (s & ~state_mask) | to, std::memory_order_acq_rel,
                                            std::memory_order_relaxed));
    if (before != nullptr) *before = s;
    if (publish && (s & (has_waiters | has_callbacks))) notify(s);
    return true;
  }

  // Created by the first waiter or callback, before it sets has_waiters or
  // has_callbacks: a notifier that sees a flag also sees the pointer (acq_rel on
  // status_). Two first waiters race with a CAS; the loser frees its copy.
  struct Waiters {
    std::mutex mutex;
    std::condition_variable cv;
    std::vector<std::function<void()>> callbacks;
  };
  Waiters& waiters() const {
    Waiters* w = waiters_.load(std::memory_order_acquire);
    if (w != nullptr) return *w;
    auto fresh = std::make_unique<Waiters>();
    if (waiters_.compare_exchange_strong(w, fresh.get(), std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
      return *fresh.release();
    }
    return *w;  // another thread installed one first
  }

  void notify(std::uint32_t flags) noexcept {
    Waiters& w = *waiters_.load(std::memory_order_acquire);  // set: a flag is
    std::vector<std::function<void()>> callbacks;
    {
      std::lock_guard lock(w.mutex);
      if (flags & has_callbacks) callbacks.swap(w.callbacks);
    }
    if (flags & has_waiters) w.cv.notify_all();
    for (auto& cb : callbacks) {
      try {
        cb();
      } catch (...) {
        // Never escapes into a worker (or a cancelling thread); counted and handed to
        // the executor's error handler instead of vanishing.
        if (sink_ != nullptr) sink_->callback_failed(std::current_exception());
      }
    }
  }

  std::atomic<std::uint32_t> refs_{1};
  mutable std::atomic<std::uint32_t> status_{pending};
  ExecutorMetrics* counts_ = nullptr;  // where a cancel counts: the name's series or the executor's
  ErrorSink* sink_ = nullptr;
  std::exception_ptr error_;
  mutable std::atomic<Waiters*> waiters_{nullptr};
};

/// Adds the value slot.
template <class T>
class FutureState : public FutureStateBase {
 public:
  /// Stores the value without publishing it yet.
  template <class... A>
  void store_value(A&&... a) {
    value_.emplace(std::forward<A>(a)...);
  }
  T& value() { return *value_; }

 private:
  std::optional<T> value_;
};

template <>
class FutureState<void> : public FutureStateBase {};

/// Owning pointer to a state (one reference).
template <class S>
class StateRef {
 public:
  StateRef() = default;
  explicit StateRef(S* s) noexcept : s_(s) {}  // adopts a reference
  StateRef(const StateRef& o) noexcept : s_(o.s_) {
    if (s_) s_->add_ref();
  }
  StateRef(StateRef&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  StateRef& operator=(StateRef o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~StateRef() {
    if (s_) s_->release();
  }
  S* get() const noexcept { return s_; }
  S* operator->() const noexcept { return s_; }
  explicit operator bool() const noexcept { return s_ != nullptr; }
  S* detach() noexcept { return std::exchange(s_, nullptr); }

 private:
  S* s_ = nullptr;
};

}  // namespace executor_exporter::detail
