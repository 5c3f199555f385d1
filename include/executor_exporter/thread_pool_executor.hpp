#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "detail/clock.hpp"
#include "detail/task.hpp"
#include "detail/task_queue.hpp"
#include "detail/thread_name.hpp"
#include "errors.hpp"
#include "exporter.hpp"
#include "future.hpp"
#include "map_results.hpp"

namespace executor_exporter {

/// Settings of a ThreadPoolExecutor beyond the worker count; every field has a default.
struct ThreadPoolOptions {
  /// Worker threads are named prefix + "-" + index (Linux keeps 15 characters).
  std::string thread_name_prefix;
  /// Runs once on each worker thread before it takes tasks.
  std::function<void()> initializer;
  /// The `executor` label; executors sharing an id add up in the metrics.
  std::string id;
  /// Where the metrics are registered; the default registry when null.
  std::shared_ptr<prometheus::Registry> registry;
  /// Histogram buckets of this executor's metrics.
  ExporterOptions exporter;
};

/// A fixed-size thread pool that is instrumented out of the box: every task's queue
/// wait and run time, outcomes and worker activity go to an ExecutorExporter with
/// executor_type "thread_pool". submit() returns a Future with the std::future
/// interface; a task that throws never kills a worker (the exception reaches the
/// future); submit after shutdown() throws ExecutorShutdownError and counts as
/// rejected. The destructor shuts down and joins. Metric updates on submit, task start
/// and task end take no lock and write only the calling thread's own shard.
class ThreadPoolExecutor {
 public:
  /// Starts `max_workers` threads (the hardware thread count when 0).
  explicit ThreadPoolExecutor(std::size_t max_workers = 0, ThreadPoolOptions options = {})
      : options_(std::move(options)),
        exporter_(options_.id, "thread_pool", options_.registry, options_.exporter) {
    if (max_workers == 0) max_workers = std::max(1U, std::thread::hardware_concurrency());
    if (options_.thread_name_prefix.empty()) {
      options_.thread_name_prefix = options_.id.empty() ? "worker" : options_.id;
    }
    exporter_.set_max_workers(static_cast<std::int64_t>(max_workers));
    workers_.reserve(max_workers);
    for (std::size_t i = 0; i < max_workers; ++i) workers_.emplace_back([this, i] { work(i); });
  }

  /// The Python-like signature: ThreadPoolExecutor(max_workers, thread_name_prefix,
  /// initializer, id, registry).
  ThreadPoolExecutor(std::size_t max_workers, std::string thread_name_prefix,
                     std::function<void()> initializer = {}, std::string id = {},
                     std::shared_ptr<prometheus::Registry> registry = nullptr)
      : ThreadPoolExecutor(max_workers, ThreadPoolOptions{std::move(thread_name_prefix),
                                                          std::move(initializer), std::move(id),
                                                          std::move(registry), {}}) {}

  ThreadPoolExecutor(const ThreadPoolExecutor&) = delete;
  ThreadPoolExecutor& operator=(const ThreadPoolExecutor&) = delete;

  /// Shuts down (waiting for queued tasks) and joins the workers.
  ~ThreadPoolExecutor() {
    shutdown(true, false);
    // Only a pool destroyed by one of its own tasks still has a joinable thread: itself.
    for (auto& w : workers_) {
      if (w.joinable()) w.detach();
    }
  }

  /// Queues f(args...) (decayed copies) and returns its future. Throws
  /// ExecutorShutdownError, counted as rejected, once shutdown() began.
  template <class F, class... Args>
  auto submit(F&& f, Args&&... args) {
    auto bound = detail::bind_task(std::forward<F>(f), std::forward<Args>(args)...);
    using Node = detail::FutureTask<decltype(bound)>;
    using R = typename Node::result_type;
    auto* node = new Node(std::move(bound));
    node->set_owner(&exporter_.metrics());
    node->add_ref();  // one reference for the queue, one for the future
    detail::StateRef<detail::FutureState<R>> future_ref(node);
    enqueue(node);
    return Future<R>(std::move(future_ref));
  }

  /// Submits f(item) for every item of `range`; results come back in input order.
  template <class F, std::ranges::input_range Range>
  auto map(F f, Range&& range) {
    return detail::map_via_submit(*this, f, std::forward<Range>(range));
  }

  /// Stops accepting tasks. With cancel_futures, queued tasks that have not started are
  /// cancelled (their futures throw CancelledError); otherwise they still run. With
  /// wait, blocks until every worker has exited. Safe to call more than once and from
  /// several threads; a worker calling it does not wait for itself.
  void shutdown(bool wait = true, bool cancel_futures = false) {
    queue_.close();
    if (cancel_futures) {
      for (detail::Task* t = queue_.take_all(); t != nullptr;) {
        detail::Task* next = t->next;
        t->cancel();
        t->drop();
        t = next;
      }
    }
    if (wait) join();
  }

  /// The exporter feeding this pool's metrics.
  ExecutorExporter& exporter() { return exporter_; }
  /// Number of worker threads configured.
  std::size_t max_workers() const { return workers_.size(); }
  /// Tasks accepted and not yet started (racy by nature; the metric is exact at scrape).
  std::size_t queue_size() const { return queue_.size(); }

 private:
  void enqueue(detail::Task* node) {
    auto& shard = exporter_.metrics().local_shard();
    node->submit_ns = detail::now_ns();
    if (!queue_.push(node, [&] { shard.task_submitted(); })) {
      shard.task_rejected(RejectReason::shutdown);
      node->drop();
      node->drop();
      throw ExecutorShutdownError(exporter_.id());
    }
  }

  void work(std::size_t index) {
    detail::set_thread_name(options_.thread_name_prefix + "-" + std::to_string(index));
    if (options_.initializer) options_.initializer();
    exporter_.worker_started();
    auto& shard = exporter_.metrics().local_shard();
    std::uint64_t last_end = 0;
    for (;;) {
      bool waited = false;
      detail::Task* task = queue_.pop(waited);
      if (task == nullptr) break;
      if (!task->claim()) {  // cancelled while queued; the canceller counted it
        task->drop();
        continue;
      }
      // Back to back on one worker, the end of one task is the start of the next.
      const std::uint64_t start = waited || last_end == 0 ? detail::now_ns() : last_end;
      shard.task_started(start > task->submit_ns ? start - task->submit_ns : 0);
      const bool ok = task->invoke();
      last_end = detail::now_ns();
      shard.task_finished(last_end - start, ok);
      task->finish();
    }
    exporter_.worker_stopped();
  }

  void join() {
    std::lock_guard lock(join_mutex_);
    for (auto& w : workers_) {
      if (w.joinable() && w.get_id() != std::this_thread::get_id()) w.join();
    }
  }

  ThreadPoolOptions options_;
  ExecutorExporter exporter_;
  detail::TaskQueue queue_;
  std::mutex join_mutex_;
  std::vector<std::thread> workers_;
};

}  // namespace executor_exporter
