#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <executor_exporter/metrics/detail/metric_shard.hpp>
#include <executor_exporter/metrics/exporter_options.hpp>

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
class Summary;
}  // namespace prometheus

namespace executor_exporter {
struct TraceOptions;
}  // namespace executor_exporter

namespace executor_exporter::detail {

class RegistryState;

/// The thread's shards, one per ExecutorMetrics it has fed. On thread exit the shards
/// are marked retired so the next collect folds them a last time and drops them.
struct ShardCache {
  struct Entry {
    std::uint64_t owner;
    std::shared_ptr<MetricShard> shard;
  };
  std::uint64_t last_owner = 0;
  MetricShard* last = nullptr;
  std::vector<Entry> entries;

  ShardCache() = default;
  ShardCache(const ShardCache&) = delete;
  ShardCache& operator=(const ShardCache&) = delete;
  ~ShardCache() {
    for (auto& e : entries) e.shard->retired.store(true, std::memory_order_release);
  }
};

inline ShardCache& shard_cache() {
  thread_local ShardCache cache;
  return cache;
}

/// All metrics of one (registry, executor id, executor type): the prometheus-cpp
/// series, the per-thread shards that feed them, and the rarely changing worker
/// gauges. Every ExecutorExporter with the same id and type shares one instance, which
/// is how instances add up. It lives while an exporter refers to it; its last fold
/// happens in the destructor, and the prometheus-cpp series stay in the registry so a
/// later executor with the same id continues the counters.
class ExecutorMetrics {
 public:
  /// With a non-empty `task`, the metrics of the tasks of that name: only the per-task
  /// series, each with the extra label task=`task` (see named()).
  ExecutorMetrics(std::shared_ptr<RegistryState> state,
                  std::shared_ptr<prometheus::Registry> registry, std::string id, std::string type,
                  const ExporterOptions& options, std::string task = {});
  ExecutorMetrics(const ExecutorMetrics&) = delete;
  ExecutorMetrics& operator=(const ExecutorMetrics&) = delete;
  ~ExecutorMetrics();

  /// The calling thread's shard (created on first use). Hot path: one thread-local
  /// compare when a thread keeps feeding the same executor.
  MetricShard& local_shard() {
    ShardCache& cache = shard_cache();
    if (cache.last_owner == unique_id_) return *cache.last;
    return register_shard();
  }

  void add_max_workers(std::int64_t delta) noexcept {
    max_workers_.fetch_add(delta, std::memory_order_relaxed);
  }
  void worker_started() noexcept {
    workers_.fetch_add(1, std::memory_order_relaxed);
    workers_started_.fetch_add(1, std::memory_order_relaxed);
  }
  void worker_stopped() noexcept { workers_.fetch_sub(1, std::memory_order_relaxed); }

  // Rare events (pool features): shared atomics, never touched per task, folded at scrape.

  /// This executor's share of executor_queue_capacity changes by `delta`.
  void add_queue_capacity(std::int64_t delta) noexcept {
    queue_capacity_.fetch_add(delta, std::memory_order_relaxed);
  }
  /// A live resize happened (up: workers added, else removed).
  void scaled(bool up) noexcept { (up ? scaled_up_ : scaled_down_).fetch_add(1, std::memory_order_relaxed); }
  /// A queued task passed its deadline and was failed without running. Release, so a
  /// fold that sees it also sees the task's submit (the fold reads it before submits).
  void task_expired() noexcept { expired_.fetch_add(1, std::memory_order_release); }
  /// A done/expire callback threw.
  void callback_error() noexcept { callback_errors_.fetch_add(1, std::memory_order_relaxed); }
  /// A posted task threw and nobody holds a future for it.
  void unhandled_error() noexcept { unhandled_errors_.fetch_add(1, std::memory_order_relaxed); }
  /// A worker initializer threw.
  void initializer_error() noexcept {
    initializer_errors_.fetch_add(1, std::memory_order_relaxed);
  }

  /// The metrics of the tasks named `name` (same executor labels plus task=`name`),
  /// created on first use and kept as long as this object. Once `max_names` distinct
  /// names exist, further names share the task="other" series and count in
  /// executor_task_names_overflow_total. A thread that keeps submitting the same names
  /// finds them in a small thread-local cache without taking a lock.
  ExecutorMetrics& named(std::string_view name, std::size_t max_names);

  /// Records `seconds` in executor_task_trace_seconds{scope, action}, as a histogram or
  /// a summary per `options`. Takes a short lock (series lookup) plus prometheus-cpp's
  /// own; marks are opt-in and far rarer than tasks, and the series stay exact.
  void observe_trace(std::string_view scope, std::string_view action, double seconds,
                     const TraceOptions& options);

  /// Moves everything the shards counted since the last fold into the prometheus-cpp
  /// series. Exact: each increment is folded exactly once, however often this runs.
  /// Holds the registry's page lock (RegistryState::page_mutex) throughout, so a
  /// collect running on another thread never reads the series half-way through a fold.
  void fold();

  /// Scrape-time hooks: each runs at the start of every fold(), so before every collect
  /// (e.g. to sample a value from /proc into a gauge). remove_fold_hook waits for a
  /// running call of that hook to return, so a hook may refer to its owner until then.
  std::uint64_t add_fold_hook(std::function<void()> hook);
  void remove_fold_hook(std::uint64_t handle);
  /// Tasks that run where no shard sees them start: a process pool's tasks, whose start
  /// and end are counted together when the result arrives. The probe runs at every
  /// fold, after the shards are read, and says how many such tasks run now (not yet
  /// counted as ended) and their run time so far; they then count as running instead
  /// of queued, and in the busy seconds, so a pool of long tasks is not shown idle.
  struct Running {
    std::uint64_t tasks = 0;
    std::uint64_t run_ns = 0;
  };
  /// Adds a probe; executors sharing an id each add theirs, and their counts add up.
  /// remove_running_probe waits for a fold that is calling it, so a probe may refer to
  /// its owner until then.
  std::uint64_t add_running_probe(std::function<Running()> probe);
  void remove_running_probe(std::uint64_t handle);

  /// The registry's families, for executors that export series of their own.
  RegistryState& registry_state() { return *state_; }

  const std::string& id() const { return id_; }
  const std::string& type() const { return type_; }
  const ExporterOptions& options() const { return options_; }
  /// The task label of a named() child; empty for the executor itself.
  const std::string& task() const { return task_; }

 private:
  friend class RegistryState;
  /// fold() for a caller that already holds the page lock.
  void fold_held();
  MetricShard& register_shard();

  std::shared_ptr<RegistryState> state_;
  std::shared_ptr<prometheus::Registry> registry_;  // keeps the series below alive
  std::string id_;
  std::string type_;
  ExporterOptions options_;
  std::string task_;
  std::uint64_t unique_id_;
  SlotLayout layout_;
  std::vector<std::uint64_t> run_bounds_ns_;
  std::vector<std::uint64_t> wait_bounds_ns_;

  std::atomic<std::int64_t> max_workers_{0};
  std::atomic<std::int64_t> workers_{0};
  std::atomic<std::uint64_t> workers_started_{0};

  std::mutex hooks_mutex_;  // guards hooks_; held while they run
  std::vector<std::pair<std::uint64_t, std::function<void()>>> hooks_;
  std::uint64_t next_hook_ = 1;

  std::mutex mutex_;  // guards the members below; never taken on the hot path
  std::vector<std::shared_ptr<MetricShard>> shards_;
  std::vector<std::uint64_t> totals_;  // everything folded so far, per slot
  std::uint64_t busy_exported_ns_ = 0;  // what c_busy_ was raised to, running tasks included
  // Guarded by mutex_, which fold_held() holds while it calls them.
  std::vector<std::pair<std::uint64_t, std::function<Running()>>> running_probes_;
  std::uint64_t next_probe_ = 1;
  std::uint64_t workers_started_folded_ = 0;

  // Rare-event atomics and what of them was folded (the latter guarded by mutex_).
  std::atomic<std::int64_t> queue_capacity_{0};
  std::atomic<std::uint64_t> scaled_up_{0}, scaled_down_{0}, expired_{0}, callback_errors_{0},
      unhandled_errors_{0}, initializer_errors_{0}, names_overflow_{0};
  std::uint64_t scaled_up_folded_ = 0, scaled_down_folded_ = 0, expired_folded_ = 0,
                callback_errors_folded_ = 0, unhandled_errors_folded_ = 0,
                initializer_errors_folded_ = 0, names_overflow_folded_ = 0;

  // named() children, by name; "other" holds the overflow. Guarded by named_mutex_,
  // which is never held while a child folds.
  std::mutex named_mutex_;
  std::map<std::string, std::shared_ptr<ExecutorMetrics>, std::less<>> named_;
  std::shared_ptr<ExecutorMetrics> other_;

  // Trace series by (scope, action); guarded by trace_mutex_.
  struct TraceKeyLess {
    using is_transparent = void;
    template <class A, class B>
    bool operator()(const A& a, const B& b) const {
      return std::pair<std::string_view, std::string_view>(a.first, a.second) <
             std::pair<std::string_view, std::string_view>(b.first, b.second);
    }
  };
  std::mutex trace_mutex_;
  std::map<std::pair<std::string, std::string>, prometheus::Histogram*, TraceKeyLess> trace_hist_;
  std::map<std::pair<std::string, std::string>, prometheus::Summary*, TraceKeyLess> trace_sum_;

  prometheus::Gauge* g_max_workers_;
  prometheus::Gauge* g_workers_;
  prometheus::Counter* c_workers_started_;
  prometheus::Counter* c_submitted_;
  prometheus::Counter* c_rejected_[reject_reason_count];
  prometheus::Counter* c_cancelled_;
  prometheus::Counter* c_completed_;
  prometheus::Counter* c_failed_;
  prometheus::Gauge* g_queued_;
  prometheus::Gauge* g_running_;
  prometheus::Histogram* h_wait_;
  prometheus::Histogram* h_run_[2];  // [0] completed, [1] failed
  prometheus::Counter* c_busy_;
  // Null in a named() child, which exports only per-task series.
  prometheus::Gauge* g_queue_capacity_ = nullptr;
  prometheus::Counter* c_scale_[2] = {nullptr, nullptr};  // [0] up, [1] down
  prometheus::Counter* c_expired_ = nullptr;
  prometheus::Counter* c_callback_errors_ = nullptr;
  prometheus::Counter* c_unhandled_errors_ = nullptr;
  prometheus::Counter* c_initializer_errors_ = nullptr;
  prometheus::Counter* c_names_overflow_ = nullptr;
};

}  // namespace executor_exporter::detail
