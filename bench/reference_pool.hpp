// The plain reference pool: one mutex, one condition variable, a std::deque of
// std::function, notify_one on every submit. Futures via
// shared_ptr<packaged_task>, as the classic "ThreadPool in 100 lines" does.
// `Hooks` adds per-task instrumentation around the same pool, so that the cost of a
// metric layer can be measured in one pool that is otherwise identical:
//   NoHooks         nothing (the reference itself)
//   ObviousHooks    prometheus-cpp Counter/Gauge/Histogram updated on every task
//   ShardHooks      this library's ExecutorExporter (per-thread shards)
// Both instrumented variants read the clock three times per task (submit, start, end).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <executor_exporter/metrics/exporter.hpp>
#include <executor_exporter/metrics/exporter_options.hpp>

#include "raw_clock.hpp"

namespace bench {

struct NoHooks {
  std::uint64_t on_submit() noexcept { return 0; }
  std::uint64_t on_start(std::uint64_t) noexcept { return 0; }
  void on_end(std::uint64_t) noexcept {}
};

/// What a first implementation does: one prometheus-cpp series per quantity, updated
/// on every task from every thread (the series are shared by the executor's threads).
struct ObviousMetrics {
  explicit ObviousMetrics(prometheus::Registry& r, const std::string& id = "bench")
      : submitted(prometheus::BuildCounter().Name("obv_submitted_total").Register(r).Add({{"executor", id}})),
        busy(prometheus::BuildCounter().Name("obv_busy_seconds_total").Register(r).Add({{"executor", id}})),
        queued(prometheus::BuildGauge().Name("obv_queued").Register(r).Add({{"executor", id}})),
        running(prometheus::BuildGauge().Name("obv_running").Register(r).Add({{"executor", id}})),
        wait(prometheus::BuildHistogram().Name("obv_wait_seconds").Register(r).Add(
            {{"executor", id}}, executor_exporter::default_buckets())),
        run(prometheus::BuildHistogram().Name("obv_run_seconds").Register(r).Add(
            {{"executor", id}, {"result", "completed"}}, executor_exporter::default_buckets())) {}

  // One task's worth of updates, in the order a pool makes them.
  void submitted_one() {
    submitted.Increment();
    queued.Increment();
  }
  void started_one(double wait_s) {
    queued.Decrement();
    running.Increment();
    wait.Observe(wait_s);
  }
  void finished_one(double run_s) {
    running.Decrement();
    run.Observe(run_s);
    busy.Increment(run_s);
  }

  prometheus::Counter& submitted;
  prometheus::Counter& busy;
  prometheus::Gauge& queued;
  prometheus::Gauge& running;
  prometheus::Histogram& wait;
  prometheus::Histogram& run;
};

struct ObviousHooks {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  ObviousMetrics m{*registry};
  std::uint64_t on_submit() {
    const auto t = steady_ns();
    m.submitted_one();
    return t;
  }
  std::uint64_t on_start(std::uint64_t submitted) {
    const auto t = steady_ns();
    m.started_one(static_cast<double>(t - submitted) * 1e-9);
    return t;
  }
  void on_end(std::uint64_t started) {
    const auto t = steady_ns();
    m.finished_one(static_cast<double>(t - started) * 1e-9);
  }
};

struct ShardHooks {
  executor_exporter::ExecutorExporter ex{"bench", "reference",
                                         std::make_shared<prometheus::Registry>()};
  std::uint64_t on_submit() { return ex.task_submitted(); }
  std::uint64_t on_start(std::uint64_t submitted) { return ex.task_started(submitted); }
  void on_end(std::uint64_t started) { ex.task_finished(started, true); }
};

template <class Hooks = NoHooks>
class ReferencePool {
 public:
  explicit ReferencePool(std::size_t workers) {
    threads_.reserve(workers);
    for (std::size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { loop(); });
  }
  ReferencePool(const ReferencePool&) = delete;
  ReferencePool& operator=(const ReferencePool&) = delete;
  ~ReferencePool() { shutdown(); }

  void post(std::function<void()> f) {
    const std::uint64_t t = hooks_.on_submit();
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(Item{std::move(f), t});
    }
    cv_.notify_one();
  }

  template <class F>
  auto submit(F f) {
    using R = std::invoke_result_t<F&>;
    auto task = std::make_shared<std::packaged_task<R()>>(std::move(f));
    auto future = task->get_future();
    post([task] { (*task)(); });
    return future;
  }

  /// Runs what is queued, then joins.
  void shutdown() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  Hooks& hooks() { return hooks_; }

 private:
  struct Item {
    std::function<void()> f;
    std::uint64_t submitted;
  };

  void loop() {
    for (;;) {
      Item item;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        item = std::move(queue_.front());
        queue_.pop_front();
      }
      const std::uint64_t start = hooks_.on_start(item.submitted);
      item.f();
      hooks_.on_end(start);
    }
  }

  Hooks hooks_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace bench
