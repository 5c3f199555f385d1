#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <executor_exporter/detail/thread_name.hpp>
#include <executor_exporter/metrics/detail/executor_metrics.hpp>
#include <executor_exporter/pools/autoscale_options.hpp>
#include <executor_exporter/pools/autoscale_state.hpp>
#include <executor_exporter/pools/detail/autoscale_policy.hpp>

namespace executor_exporter::detail {

/// The thread that drives one pool's size (ThreadPoolOptions::autoscale). One per pool
/// rather than one per process: a tick folds the pool's metrics under its registry's page
/// lock and may start threads, and one pool's slow tick must not delay another's; an
/// autoscaled pool already owns several threads, so one more that sleeps on a condition
/// variable costs little. It reaches the pool only through `Hooks`, and the pool stops
/// (joins) it before anything those hooks use is destroyed, so it never reads a dead pool.
class Autoscaler {
 public:
  using Clock = std::chrono::steady_clock;

  struct Hooks {
    /// The pool's load so far (ExecutorMetrics::load).
    std::function<ExecutorMetrics::Load()> load;
    /// The pool's configured worker count now.
    std::function<std::size_t()> workers;
    /// Resizes from `from` to `to` for `reason` unless the pool changed meanwhile (a
    /// manual resize wins), is shut down or broken; true when it did.
    std::function<bool(std::size_t from, std::size_t to, ScaleReason reason)> apply;
  };

  Autoscaler(const AutoscaleOptions& options, std::vector<double> wait_bounds, Hooks hooks)
      : options_(options),
        wait_bounds_(std::move(wait_bounds)),
        hooks_(std::move(hooks)),
        policy_(options) {
    state_.enabled = true;
  }
  Autoscaler(const Autoscaler&) = delete;
  Autoscaler& operator=(const Autoscaler&) = delete;
  ~Autoscaler() { stop(); }

  /// Starts the thread, named `name`.
  void start(std::string name) {
    thread_ = std::thread([this, name = std::move(name)] {
      set_thread_name(name);
      loop();
    });
  }

  /// Stops and joins the thread; safe to call more than once and from several threads.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    std::lock_guard join_lock(join_mutex_);
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  }

  /// A manual resize happened (the caller holds the pool's resize lock): the autoscaler
  /// starts its streaks over and cools down from it.
  void manual_change() {
    std::lock_guard lock(mutex_);
    const auto now = Clock::now();
    policy_.changed(now);
    state_.reason = ScaleReason::manual;
    state_.last_change = now;
  }

  /// The last interval's signals and decision (AutoscaleState::workers left to the pool).
  AutoscaleState state() const {
    std::lock_guard lock(mutex_);
    return state_;
  }

 private:
  void loop() {
    ExecutorMetrics::Load previous;
    Clock::time_point previous_at;
    bool have_previous = false;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        if (have_previous) {
          wake_.wait_for(lock, options_.interval, [&] { return stopping_; });
        }
        if (stopping_) return;
      }
      try {
        ExecutorMetrics::Load now_load = hooks_.load();
        const auto now = Clock::now();
        if (have_previous) tick(previous, now_load, now - previous_at, now);
        previous = std::move(now_load);
        previous_at = now;
        have_previous = true;
      } catch (...) {
        // No memory for a snapshot, or no thread for a new worker: the pool keeps its size
        // and the next interval tries again.
        have_previous = false;
        std::unique_lock lock(mutex_);
        wake_.wait_for(lock, options_.interval, [&] { return stopping_; });
        if (stopping_) return;
      }
    }
  }

  void tick(const ExecutorMetrics::Load& before, const ExecutorMetrics::Load& after,
            Clock::duration elapsed, Clock::time_point now) {
    std::vector<std::uint64_t> waits(after.wait_buckets.size(), 0);
    for (std::size_t i = 0; i < waits.size() && i < before.wait_buckets.size(); ++i) {
      waits[i] = after.wait_buckets[i] - before.wait_buckets[i];
    }
    const double p99 = bucket_quantile(waits, wait_bounds_, 0.99);
    const std::size_t workers = hooks_.workers();
    const double worker_ns =
        static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count()) *
        static_cast<double>(workers);
    const auto busy = static_cast<double>(after.busy_ns - before.busy_ns);
    const double utilization = worker_ns > 0 ? busy / worker_ns : 0.0;
    AutoscalePolicy::Decision d;
    {
      std::lock_guard lock(mutex_);
      d = policy_.next(p99, utilization, workers, now);
      state_.wait_p99_seconds = p99;
      state_.utilization = utilization;
      ++state_.intervals;
      state_.decision = AutoscaleState::Decision::hold;
    }
    if (d.to == workers) return;
    // Without mutex_: the pool takes its resize lock, under which a manual resize calls
    // manual_change (that lock, then this one).
    if (!hooks_.apply(workers, d.to, d.reason)) return;
    std::lock_guard lock(mutex_);
    policy_.changed(now);
    state_.decision =
        d.to > workers ? AutoscaleState::Decision::up : AutoscaleState::Decision::down;
    state_.reason = d.reason;
    ++state_.changes;
    state_.last_change = now;
  }

  const AutoscaleOptions options_;
  const std::vector<double> wait_bounds_;
  const Hooks hooks_;
  mutable std::mutex mutex_;  // guards the members below
  std::condition_variable wake_;
  bool stopping_ = false;
  AutoscalePolicy policy_;
  AutoscaleState state_;
  std::mutex join_mutex_;
  std::thread thread_;
};

}  // namespace executor_exporter::detail
