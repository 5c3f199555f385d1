#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../exporter_options.hpp"
#include "metric_shard.hpp"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
}  // namespace prometheus

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
  ExecutorMetrics(std::shared_ptr<RegistryState> state,
                  std::shared_ptr<prometheus::Registry> registry, std::string id, std::string type,
                  const ExporterOptions& options);
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

  /// Moves everything the shards counted since the last fold into the prometheus-cpp
  /// series. Exact: each increment is folded exactly once, however often this runs.
  void fold();

  const std::string& id() const { return id_; }
  const std::string& type() const { return type_; }
  const ExporterOptions& options() const { return options_; }

 private:
  MetricShard& register_shard();

  std::shared_ptr<RegistryState> state_;
  std::shared_ptr<prometheus::Registry> registry_;  // keeps the series below alive
  std::string id_;
  std::string type_;
  ExporterOptions options_;
  std::uint64_t unique_id_;
  SlotLayout layout_;
  std::vector<std::uint64_t> run_bounds_ns_;
  std::vector<std::uint64_t> wait_bounds_ns_;

  std::atomic<std::int64_t> max_workers_{0};
  std::atomic<std::int64_t> workers_{0};
  std::atomic<std::uint64_t> workers_started_{0};

  std::mutex mutex_;  // guards the members below; never taken on the hot path
  std::vector<std::shared_ptr<MetricShard>> shards_;
  std::vector<std::uint64_t> totals_;  // everything folded so far, per slot
  std::uint64_t workers_started_folded_ = 0;

  prometheus::Gauge* g_max_workers_;
  prometheus::Gauge* g_workers_;
  prometheus::Counter* c_workers_started_;
  prometheus::Counter* c_submitted_;
  prometheus::Counter* c_rejected_[reject_reason_count];
  prometheus::Counter* c_cancelled_;
  prometheus::Gauge* g_queued_;
  prometheus::Gauge* g_running_;
  prometheus::Histogram* h_wait_;
  prometheus::Histogram* h_run_[2];  // [0] completed, [1] failed
  prometheus::Counter* c_busy_;
};

}  // namespace executor_exporter::detail
