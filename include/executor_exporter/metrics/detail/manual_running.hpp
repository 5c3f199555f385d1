#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include <executor_exporter/detail/clock.hpp>
#include <executor_exporter/metrics/detail/executor_metrics.hpp>

namespace executor_exporter::detail {

/// The tasks recorded by hand (ExecutorExporter::task_started / task_finished) that run
/// now, so that their time so far counts in the busy seconds at every scrape.
///
/// A pool worker marks its running task in its own thread's shard, which only that
/// thread clears. Manual recording may start a task on one thread and finish it on
/// another (an event loop handing work over, a callback on an I/O thread): a mark in the
/// starting thread's shard would then never be cleared, and the busy seconds would grow
/// for ever after the task ended. Here each running timed task instead holds one slot of
/// a table shared by every thread, filled at start and emptied at finish, whichever
/// threads they run on; a running probe (ExecutorMetrics::add_running_probe) adds the
/// slots' time so far at each fold. Lock-free: one compare-and-swap per start and per
/// finish, each slot on a cache line of its own so that threads starting tasks at once
/// do not share one. The table is allocated by the first start, so an exporter that
/// never records by hand (a process pool's, a proxy's) pays nothing. Past kSlots tasks
/// running at once, further ones are counted when they end, not while they run.
class ManualRunning {
 public:
  static constexpr std::size_t kSlots = 64;

  explicit ManualRunning(std::shared_ptr<ExecutorMetrics> metrics) noexcept
      : metrics_(std::move(metrics)) {}
  ManualRunning(const ManualRunning&) = delete;
  ManualRunning& operator=(const ManualRunning&) = delete;
  /// Withdraws the probe; remove_running_probe waits for a fold calling it.
  ~ManualRunning() {
    if (probe_ != 0) metrics_->remove_running_probe(probe_);
  }

  /// Before the first add(): allocates the table and registers the probe (once; it may
  /// throw std::bad_alloc).
  void ready() {
    std::call_once(registered_, [this] {
      auto table = std::make_unique<Table>();
      Slot* slots = table->slots.data();
      probe_ = metrics_->add_running_probe([this] { return running(); });
      table_ = std::move(table);
      slots_.store(slots, std::memory_order_release);
    });
  }

  /// A timed task started at `start_ns` (now_ns()) runs from now on.
  void add(std::uint64_t start_ns) noexcept {
    Slot* slots = slots_.load(std::memory_order_acquire);
    if (slots == nullptr) return;  // ready() was not called
    const std::size_t first = std::hash<std::thread::id>{}(std::this_thread::get_id()) % kSlots;
    for (std::size_t i = 0; i < kSlots; ++i) {
      std::uint64_t expected = 0;
      if (slots[(first + i) % kSlots].start.compare_exchange_strong(expected, start_ns,
                                                                    std::memory_order_acq_rel)) {
        return;
      }
    }
  }

  /// The task started at `start_ns` ended. Call it before its busy time is added: a fold
  /// that reads that busy time then no longer finds the task running (the busy slot's
  /// release store orders this one before it), so its time is never counted twice.
  void remove(std::uint64_t start_ns) noexcept {
    Slot* slots = slots_.load(std::memory_order_acquire);
    if (slots == nullptr) return;  // no task was ever added
    for (std::size_t i = 0; i < kSlots; ++i) {
      std::uint64_t expected = start_ns;
      if (slots[i].start.compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) return;
    }
  }

 private:
  struct alignas(64) Slot {
    std::atomic<std::uint64_t> start{0};
  };
  struct Table {
    std::array<Slot, kSlots> slots;
  };

  // At a fold, after the shards were read. The tasks themselves are counted as running
  // by their shards already (started, not yet ended): only their time is added here.
  ExecutorMetrics::Running running() const noexcept {
    ExecutorMetrics::Running r;
    const Slot* slots = slots_.load(std::memory_order_acquire);
    if (slots == nullptr) return r;
    const std::uint64_t now = now_ns();
    for (std::size_t i = 0; i < kSlots; ++i) {
      const std::uint64_t start = slots[i].start.load(std::memory_order_acquire);
      if (start != 0 && start < now) r.run_ns += now - start;
    }
    return r;
  }

  std::shared_ptr<ExecutorMetrics> metrics_;
  std::once_flag registered_;
  std::uint64_t probe_ = 0;
  std::unique_ptr<Table> table_;       // written once, in ready()
  std::atomic<Slot*> slots_{nullptr};  // table_'s slots, published by ready()
};

}  // namespace executor_exporter::detail
