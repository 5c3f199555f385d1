#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

#include <executor_exporter/metrics/detail/exemplar_store.hpp>
#include <executor_exporter/metrics/reject_reason.hpp>

namespace executor_exporter::detail {

/// Where each quantity lives in a shard's slot array. The slot order is the order in
/// which a collect reads them (later lifecycle stages first), see ExecutorMetrics::fold.
struct SlotLayout {
  // Stage "ended": read first.
  static constexpr std::size_t completed = 0;
  static constexpr std::size_t failed = 1;
  static constexpr std::size_t busy_ns = 2;
  // Stage "started".
  static constexpr std::size_t started = 3;
  // Stage "dequeued without running".
  static constexpr std::size_t cancelled = 4;
  static constexpr std::size_t expired = 5;
  // Stage "submitted": read last.
  static constexpr std::size_t submitted = 6;
  static constexpr std::size_t rejected = 7;  // + RejectReason
  static constexpr std::size_t fixed_count = rejected + reject_reason_count;

  std::size_t run_buckets = 0;   // finite bounds of the run histogram
  std::size_t wait_buckets = 0;  // finite bounds of the wait histogram

  // Each histogram is (bounds + 1) bucket counts followed by a nanosecond sum.
  std::size_t run_hist(bool ok) const { return fixed_count + (ok ? 0 : run_buckets + 2); }
  std::size_t wait_hist() const { return fixed_count + 2 * (run_buckets + 2); }
  std::size_t size() const { return wait_hist() + wait_buckets + 2; }
};

/// One thread's private counters for one executor id. Only the owning thread writes,
/// with a plain load + store (no read-modify-write, no lock), so the hot path costs a
/// few nanoseconds and never shares a cache line with another writer. A collect reads
/// the slots with acquire loads and folds the growth since the last collect into the
/// prometheus-cpp metrics. Release stores make each task's earlier stages visible
/// before its later ones, which keeps the derived gauges from going negative.
class MetricShard {
 public:
  /// `sample_rate` N > 1: sample() picks about 1 task in N for timing (see
  /// ExporterOptions::timing_sample_rate). `exemplars`: keep exemplars, each refreshed
  /// at most once per `exemplar_refresh_ns` (see ExporterOptions::exemplars).
  MetricShard(const SlotLayout& layout, const std::vector<std::uint64_t>& run_bounds_ns,
              const std::vector<std::uint64_t>& wait_bounds_ns, std::uint32_t sample_rate = 1,
              bool exemplars = false, std::uint64_t exemplar_refresh_ns = 0)
      : exemplars_(exemplars ? std::make_unique<ExemplarStore>(
                                   wait_bounds_ns.size(), run_bounds_ns.size(), exemplar_refresh_ns)
                             : nullptr),
        layout_(layout),
        sample_rate_(sample_rate == 0 ? 1 : sample_rate),
        rng_(reinterpret_cast<std::uintptr_t>(this) | 1),
        run_bounds_(run_bounds_ns.data()),
        wait_bounds_(wait_bounds_ns.data()),
        run_n_(run_bounds_ns.size()),
        wait_n_(wait_bounds_ns.size()),
        slots_(new (std::align_val_t{64}) std::atomic<std::uint64_t>[padded(layout.size() + 1)]),
        folded_(layout.size(), 0) {
    for (std::size_t i = 0; i < padded(layout.size() + 1); ++i) {
      slots_[i].store(0, std::memory_order_relaxed);
    }
  }
  MetricShard(const MetricShard&) = delete;
  MetricShard& operator=(const MetricShard&) = delete;
  ~MetricShard() { ::operator delete[](slots_, std::align_val_t{64}); }

  void task_submitted(std::uint64_t n = 1) noexcept { bump(SlotLayout::submitted, n); }
  void task_rejected(RejectReason r) noexcept {
    bump(SlotLayout::rejected + static_cast<std::size_t>(r), 1);
  }
  void task_cancelled(std::uint64_t n = 1) noexcept { bump(SlotLayout::cancelled, n); }
  /// A queued task passed its deadline and left the queue without running.
  void task_expired() noexcept { bump(SlotLayout::expired, 1); }
  /// A timed task started after waiting `wait_ns` in the queue. Returns the bucket it
  /// landed in (for its exemplar).
  std::size_t task_started(std::uint64_t wait_ns) noexcept {
    const std::size_t bucket = observe(layout_.wait_hist(), wait_bounds_, wait_n_, wait_ns);
    bump(SlotLayout::started, 1);
    return bucket;
  }
  /// A timed task ended after running `run_ns`. `weight`: how many tasks it stands for
  /// in the busy time (the sample rate when timing is sampled, else 1).
  /// Returns the bucket it landed in.
  std::size_t task_finished(std::uint64_t run_ns, bool ok, std::uint64_t weight = 1) noexcept {
    const std::size_t bucket = observe(layout_.run_hist(ok), run_bounds_, run_n_, run_ns);
    bump(SlotLayout::busy_ns, run_ns * weight);
    bump(ok ? SlotLayout::completed : SlotLayout::failed, 1);
    return bucket;
  }
  /// The shard's exemplars, or null when they are off. The owner offers them through
  /// ExemplarStore::due and put; a collect reads them.
  ExemplarStore* exemplars() noexcept { return exemplars_.get(); }
  const ExemplarStore* exemplars() const noexcept { return exemplars_.get(); }
  /// An untimed task (not picked by sample()) started or ended: counted, not timed.
  void task_started_untimed() noexcept { bump(SlotLayout::started, 1); }
  void task_finished_untimed(bool ok) noexcept {
    bump(ok ? SlotLayout::completed : SlotLayout::failed, 1);
  }

  /// Owner thread: the task this thread runs now started at `start_ns` (now_ns()), or,
  /// with 0, the thread runs none. A collect adds the time since then to the busy
  /// seconds, so a task running for minutes shows up in them while it runs, not only
  /// when it ends. Clear it (0) before the task's busy time is added (task_finished,
  /// add_busy): their release store then keeps a collect that sees the busy time from
  /// also counting the task as still running.
  void set_running_since(std::uint64_t start_ns) noexcept {
    slots_[layout_.size()].store(start_ns, std::memory_order_relaxed);
  }
  /// Collector side: set_running_since's value. Read it after the busy slot.
  std::uint64_t running_since() const noexcept {
    return slots_[layout_.size()].load(std::memory_order_acquire);
  }

  /// Busy time of a task counted in another series (a named task: its own series holds
  /// its outcome, while the executor-level busy seconds count every task's run time).
  void add_busy(std::uint64_t run_ns) noexcept { bump(SlotLayout::busy_ns, run_ns); }

  /// Owner thread, at submit: whether this task is to be timed. Always true at rate 1.
  /// Otherwise the gaps between timed tasks are drawn uniformly from 1 .. 2N-1 (mean N),
  /// so a workload that repeats with period N is not always sampled at the same task.
  /// Untimed tasks cost a decrement; no shared state either way.
  bool sample() noexcept {
    if (sample_rate_ == 1) return true;
    if (--countdown_ > 0) return false;
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    // The division runs once per timed task only, and stays exact for any rate.
    const std::uint64_t span = 2 * static_cast<std::uint64_t>(sample_rate_) - 1;
    countdown_ = static_cast<std::int64_t>(rng_ % span) + 1;
    return true;
  }
  std::uint32_t sample_rate() const noexcept { return sample_rate_; }

  /// Collector side: current value of a slot.
  std::uint64_t read(std::size_t slot) const noexcept {
    return slots_[slot].load(std::memory_order_acquire);
  }
  /// Collector side: what was already folded (guarded by the owner's fold mutex).
  std::vector<std::uint64_t>& folded() noexcept { return folded_; }

  /// Set by the owning thread when it exits; the collector folds the shard one last
  /// time and drops it.
  std::atomic<bool> retired{false};
  /// Set when the owning ExecutorMetrics dies, so thread caches can forget the shard.
  std::atomic<bool> orphaned{false};
  /// The thread that writes it (its ShardCache), set before the shard is published. A
  /// collect reads all shards of one thread as one snapshot, across task names: a
  /// thread runs one task at a time, whichever series it counts in.
  const void* thread = nullptr;

 private:
  static std::size_t padded(std::size_t n) { return (n + 7) / 8 * 8; }

  void bump(std::size_t slot, std::uint64_t n) noexcept {
    auto& a = slots_[slot];
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_release);
  }
  std::size_t observe(std::size_t base, const std::uint64_t* bounds, std::size_t n,
                      std::uint64_t ns) noexcept {
    std::size_t i = 0;
    while (i < n && ns > bounds[i]) ++i;  // most observations land in the first buckets
    bump(base + i, 1);
    bump(base + n + 1, ns);
    return i;
  }

  std::unique_ptr<ExemplarStore> exemplars_;
  SlotLayout layout_;
  std::uint32_t sample_rate_;
  std::uint64_t rng_;           // owner thread only
  std::int64_t countdown_ = 1;  // tasks until the next timed one; owner thread only
  const std::uint64_t* run_bounds_;
  const std::uint64_t* wait_bounds_;
  std::size_t run_n_;
  std::size_t wait_n_;
  std::atomic<std::uint64_t>* slots_;
  std::vector<std::uint64_t> folded_;
};

}  // namespace executor_exporter::detail
