// ThreadPoolExecutor with its metrics taken out, for the "instrumented ÷ own
// uninstrumented build" row of issue 4. Until the pool offers a null-metrics policy
// (see README in bench/ and docs/benchmarks.md), this is a replica built from the
// same parts the pool uses (detail::TaskQueue, detail::FutureTask, Future): the
// same recycled node per task, the same queue and lock, the same future protocol,
// minus the three shard updates and the clock reads. When the library defines
// EXECUTOR_EXPORTER_HAS_NULL_METRICS, the bench uses the real thing instead (see
// bench_main.cpp, `OursUninstrumented`).
#pragma once

#include <cstddef>
#include <exception>
#include <thread>
#include <utility>
#include <vector>

#include <executor_exporter/detail/task.hpp>
#include <executor_exporter/detail/task_queue.hpp>
#include <executor_exporter/errors.hpp>
#include <executor_exporter/future.hpp>

namespace bench {

/// ThreadPoolExecutor's post node (detail::PostTask) minus its metrics and error sink:
/// one allocation, no shared state, deleted by the worker that ran it.
template <class F>
class UninstrumentedPostTask final : public executor_exporter::detail::Task {
 public:
  explicit UninstrumentedPostTask(F&& fn) : fn_(std::move(fn)) {}
  bool claim() noexcept override { return true; }
  bool invoke() noexcept override {
    try {
      fn_();
      return true;
    } catch (...) {
      return false;
    }
  }
  void finish() noexcept override { delete this; }
  void drop() noexcept override { delete this; }
  bool cancel() noexcept override { return true; }
  void fail_claimed(std::exception_ptr, bool) noexcept override { delete this; }

 private:
  ~UninstrumentedPostTask() = default;
  F fn_;
};

class UninstrumentedPool {
 public:
  explicit UninstrumentedPool(std::size_t workers) {
    workers_.reserve(workers);
    for (std::size_t i = 0; i < workers; ++i) workers_.emplace_back([this] { work(); });
  }
  UninstrumentedPool(const UninstrumentedPool&) = delete;
  UninstrumentedPool& operator=(const UninstrumentedPool&) = delete;
  ~UninstrumentedPool() { shutdown(true); }

  template <class F>
  auto submit(F&& f) {
    auto bound = executor_exporter::detail::bind_task(std::forward<F>(f));
    using Node = executor_exporter::detail::FutureTask<decltype(bound)>;
    using R = typename Node::result_type;
    auto* node = new Node(std::move(bound));
    node->add_ref();  // one reference for the queue, one for the future
    executor_exporter::detail::StateRef<executor_exporter::detail::FutureState<R>> ref(node);
    if (queue_.push(node, [] {}, false) != Queue::PushResult::accepted) {
      node->drop();  // the queue's reference; `ref` releases the future's
      throw executor_exporter::ExecutorShutdownError("bench");
    }
    return executor_exporter::Future<R>(std::move(ref));
  }

  /// Fire-and-forget, as ThreadPoolExecutor::post (no future, no shared state).
  template <class F>
  void post(F&& f) {
    auto bound = executor_exporter::detail::bind_task(std::forward<F>(f));
    auto* node = new UninstrumentedPostTask<decltype(bound)>(std::move(bound));
    if (queue_.push(node, [] {}, false) != Queue::PushResult::accepted) {
      node->drop();
      throw executor_exporter::ExecutorShutdownError("bench");
    }
  }

  /// Runs what is queued, then joins (ThreadPoolExecutor::shutdown's signature).
  void shutdown(bool /*wait: always*/ = true) {
    queue_.close();
    for (auto& w : workers_) {
      if (w.joinable()) w.join();
    }
  }

 private:
  void work() {
    Queue::Reserve reserve;
    queue_.attach(reserve);
    std::size_t finished = 0;
    for (;;) {
      bool waited = false;
      executor_exporter::detail::Task* task = reserve.take();
      if (task == nullptr) {
        task = queue_.pop(finished, waited, reserve);
        finished = 0;
        if (task == nullptr) break;
      }
      ++finished;
      if (!task->claim()) {
        task->drop();
        continue;
      }
      (void)task->invoke();
      task->finish();
    }
    queue_.detach(reserve);
  }

  using Queue = executor_exporter::detail::TaskQueue;
  Queue queue_;
  std::vector<std::thread> workers_;
};

}  // namespace bench
