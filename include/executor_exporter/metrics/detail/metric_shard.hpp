#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <source_location>
#include <string>
#include <vector>

#include <executor_exporter/detail/hot_path.hpp>
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
  // CPU time of tasks run where no worker thread's clock is read at scrape (the proxy's
  // tickets), with ExporterOptions::task_cpu_time; in the executor's shards.
  static constexpr std::size_t foreign_cpu_ns = 3;
  // Stage "started".
  static constexpr std::size_t started = 4;
  // Stage "dequeued without running".
  static constexpr std::size_t cancelled = 5;
  static constexpr std::size_t expired = 6;
  // Timed tasks that left the queue without running, for the queued seconds: written
  // begin marker first and end marker last, read end marker first, so a read whose two
  // markers agree holds whole tasks only (see MetricShard::task_dropped_timed).
  static constexpr std::size_t dropped_end = 7;
  static constexpr std::size_t dropped_wait_ns = 8;
  static constexpr std::size_t dropped_submit_sum = 9;
  static constexpr std::size_t dropped_begin = 10;
  // Stage "submitted": read last.
  static constexpr std::size_t submitted = 11;
  // Timed submits, for the queued seconds, with the same two markers.
  static constexpr std::size_t timed_end = 12;
  static constexpr std::size_t submit_sum = 13;
  static constexpr std::size_t timed_begin = 14;
  static constexpr std::size_t rejected = 15;  // + RejectReason
  static constexpr std::size_t fixed_count = rejected + reject_reason_count;

  std::size_t run_buckets = 0;   // finite bounds of the run histogram
  std::size_t wait_buckets = 0;  // finite bounds of the wait histogram

  // Each histogram is (bounds + 1) bucket counts followed by a nanosecond sum.
  std::size_t run_hist(bool ok) const { return fixed_count + (ok ? 0 : run_buckets + 2); }
  // The task CPU histogram (run_buckets' bounds), in the "ended" stage with the run ones.
  std::size_t cpu_hist() const { return fixed_count + 2 * (run_buckets + 2); }
  std::size_t wait_hist() const { return cpu_hist() + run_buckets + 2; }
  // Stage "started", after the wait histogram (whose bucket counts are its end marker):
  // the submit times of the timed tasks that started, then the begin marker.
  std::size_t started_submit_sum() const { return wait_hist() + wait_buckets + 2; }
  std::size_t started_begin() const { return started_submit_sum() + 1; }
  std::size_t size() const { return started_begin() + 1; }
};

/// A task a thread of an executor runs now, as MetricShard::current_task reads it.
struct CurrentTask {
  std::uint64_t start_ns = 0;
  const void* series = nullptr;  // the ExecutorMetrics it counts in
  std::source_location where{};
  std::uint64_t id = 0;
};

/// One finished task of the flight recorder (MetricShard::slices).
struct TaskSlice {
  std::uint64_t submit_ns = 0;
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  const void* series = nullptr;
  std::source_location where{};
  std::uint64_t id = 0;
  bool ok = true;
};

/// The calling thread's kernel id (cached per thread).
std::uint64_t current_thread_id() noexcept;

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
              std::size_t ring_slices = 0, bool cpu_time = false, bool exemplars = false,
              std::uint64_t exemplar_refresh_ns = 0)
      : exemplars_(exemplars ? std::make_unique<ExemplarStore>(
                                   wait_bounds_ns.size(), run_bounds_ns.size(), exemplar_refresh_ns)
                             : nullptr),
        layout_(layout),
        sample_rate_(sample_rate == 0 ? 1 : sample_rate),
        cpu_time_(cpu_time),
        rng_(reinterpret_cast<std::uintptr_t>(this) | 1),
        run_bounds_(run_bounds_ns.data()),
        wait_bounds_(wait_bounds_ns.data()),
        run_n_(run_bounds_ns.size()),
        wait_n_(wait_bounds_ns.size()),
        slots_(new (std::align_val_t{64}) std::atomic<std::uint64_t>[padded(layout.size() + 2)]),
        folded_(layout.size(), 0) {
    for (std::size_t i = 0; i < padded(layout.size() + 2); ++i) {
      slots_[i].store(0, std::memory_order_relaxed);
    }
    ring_size_ = ring_slices;
    note_thread();
  }
  MetricShard(const MetricShard&) = delete;
  MetricShard& operator=(const MetricShard&) = delete;
  ~MetricShard() {
    ::operator delete[](slots_, std::align_val_t{64});
    delete[] ring_.load(std::memory_order_relaxed);
  }

  EXECUTOR_EXPORTER_HOT void task_submitted(std::uint64_t n = 1) noexcept {
    bump(SlotLayout::submitted, n);
  }
  /// `n` timed tasks submitted at `submit_ns` entered the queue (for the queued seconds:
  /// their submit times are summed, so the fold derives the integral of the queue depth
  /// as n·T − Σ submit over the tasks still queued). Unsigned sums wrap; the fold's
  /// differences stay exact.
  EXECUTOR_EXPORTER_HOT void task_submitted_timed(std::uint64_t n,
                                                  std::uint64_t submit_ns) noexcept {
    bump(SlotLayout::timed_begin, n);
    bump(SlotLayout::submit_sum, n * submit_ns);
    bump(SlotLayout::timed_end, n);
  }
  /// `n` timed tasks submitted at `submit_ns` left the queue at `now_ns` without running
  /// (cancelled, expired, dropped).
  void task_dropped_timed(std::uint64_t n, std::uint64_t submit_ns, std::uint64_t now_ns) noexcept {
    bump(SlotLayout::dropped_begin, n);
    bump(SlotLayout::dropped_submit_sum, n * submit_ns);
    bump(SlotLayout::dropped_wait_ns, n * (now_ns > submit_ns ? now_ns - submit_ns : 0));
    bump(SlotLayout::dropped_end, n);
  }
  void task_rejected(RejectReason r) noexcept {
    bump(SlotLayout::rejected + static_cast<std::size_t>(r), 1);
  }
  void task_cancelled(std::uint64_t n = 1) noexcept { bump(SlotLayout::cancelled, n); }
  /// A queued task passed its deadline and left the queue without running.
  void task_expired() noexcept { bump(SlotLayout::expired, 1); }
  /// A timed task submitted at `submit_ns` started after waiting `wait_ns` in the queue.
  /// The begin marker first, the wait histogram (its bucket counts: the end marker) last.
  /// Returns the bucket it landed in (for its exemplar).
  EXECUTOR_EXPORTER_HOT std::size_t task_started(std::uint64_t wait_ns,
                                                 std::uint64_t submit_ns) noexcept {
    bump(layout_.started_begin(), 1);
    bump(layout_.started_submit_sum(), submit_ns);
    const std::size_t bucket = observe(layout_.wait_hist(), wait_bounds_, wait_n_, wait_ns);
    bump(SlotLayout::started, 1);
    return bucket;
  }
  /// A timed task ended after running `run_ns`. `weight`: how many tasks it stands for
  /// in the busy time (the sample rate when timing is sampled, else 1).
  /// Returns the bucket it landed in.
  EXECUTOR_EXPORTER_HOT std::size_t task_finished(std::uint64_t run_ns, bool ok,
                                                  std::uint64_t weight = 1) noexcept {
    const std::size_t bucket = observe(layout_.run_hist(ok), run_bounds_, run_n_, run_ns);
    bump(SlotLayout::busy_ns, run_ns * weight);
    bump(ok ? SlotLayout::completed : SlotLayout::failed, 1);
    return bucket;
  }
  /// Whether tasks' CPU time is measured (ExporterOptions::task_cpu_time).
  bool cpu_time() const noexcept { return cpu_time_; }
  /// A timed task used `cpu_ns` of its thread's CPU clock.
  void task_cpu(std::uint64_t cpu_ns) noexcept {
    observe(layout_.cpu_hist(), run_bounds_, run_n_, cpu_ns);
  }
  /// CPU time of a task that ran on a thread whose clock no scrape reads (the proxy).
  void add_foreign_cpu(std::uint64_t cpu_ns) noexcept { bump(SlotLayout::foreign_cpu_ns, cpu_ns); }

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
  EXECUTOR_EXPORTER_HOT void set_running_since(std::uint64_t start_ns) noexcept {
    slots_[layout_.size()].store(start_ns, std::memory_order_relaxed);
  }
  /// Collector side: set_running_since's value. Read it after the busy slot.
  std::uint64_t running_since() const noexcept {
    return slots_[layout_.size()].load(std::memory_order_acquire);
  }
  /// Owner thread: like set_running_since, for the running seconds of the series this
  /// shard counts in (the task's name's, or the executor's), while set_running_since
  /// marks the executor's busy time whatever the task's name. Cleared before the run
  /// histogram is written, for the same reason.
  EXECUTOR_EXPORTER_HOT void set_series_running_since(std::uint64_t start_ns) noexcept {
    slots_[layout_.size() + 1].store(start_ns, std::memory_order_relaxed);
  }
  std::uint64_t series_running_since() const noexcept {
    return slots_[layout_.size() + 1].load(std::memory_order_acquire);
  }

  /// Owner thread: a timed task starts at `start_ns` (set_running_since's part), counted
  /// in `series`, submitted at `where`, with observer id `id`. The stuck-task gauges and
  /// the watchdog read it back with current_task() from other threads: a seqlock made of
  /// atomics (an odd sequence while it changes), so the owner never waits and a reader
  /// never sees half of one task and half of the next. Four relaxed stores and two of the
  /// sequence, all on lines only this thread writes.
  EXECUTOR_EXPORTER_HOT void begin_task(std::uint64_t start_ns, const void* series,
                                        std::source_location where, std::uint64_t id) noexcept {
    const std::uint64_t seq = current_seq_.load(std::memory_order_relaxed);
    current_seq_.store(seq + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    current_series_.store(series, std::memory_order_relaxed);
    current_where_.store(where, std::memory_order_relaxed);
    current_id_.store(id, std::memory_order_relaxed);
    slots_[layout_.size()].store(start_ns, std::memory_order_relaxed);
    current_seq_.store(seq + 2, std::memory_order_release);
  }
  /// Any thread: the task the owner runs now; false when it runs none (or kept changing
  /// it while this read).
  bool current_task(CurrentTask& out) const noexcept {
    for (int attempt = 0; attempt < 64; ++attempt) {
      const std::uint64_t seq = current_seq_.load(std::memory_order_acquire);
      if ((seq & 1) != 0) continue;
      out.start_ns = slots_[layout_.size()].load(std::memory_order_relaxed);
      out.series = current_series_.load(std::memory_order_relaxed);
      out.where = current_where_.load(std::memory_order_relaxed);
      out.id = current_id_.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (current_seq_.load(std::memory_order_relaxed) == seq) return out.start_ns != 0;
    }
    return false;
  }

  /// Owner thread: the flight recorder keeps this finished timed task in the shard's
  /// ring of its last `ring_slices` tasks (nothing when 0). One cache line per slice,
  /// written by this thread only, behind a per-slice sequence like begin_task's.
  EXECUTOR_EXPORTER_HOT void record_slice(const TaskSlice& t) noexcept {
    if (ring_size_ == 0) return;
    RingEntry* ring = ring_.load(std::memory_order_relaxed);
    if (ring == nullptr) [[unlikely]] {
      ring = make_ring();
      if (ring == nullptr) return;
    }
    const std::uint64_t n = ring_written_.load(std::memory_order_relaxed);
    // ring_next_ == n % ring_size_, kept without a division (~10 ns on this path).
    RingEntry& e = ring[ring_next_];
    if (++ring_next_ == ring_size_) ring_next_ = 0;
    const std::uint64_t seq = e.seq.load(std::memory_order_relaxed);
    e.seq.store(seq + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    e.submit_ns.store(t.submit_ns, std::memory_order_relaxed);
    e.start_ns.store(t.start_ns, std::memory_order_relaxed);
    e.end_ns.store(t.end_ns, std::memory_order_relaxed);
    e.series.store(t.series, std::memory_order_relaxed);
    e.where.store(t.where, std::memory_order_relaxed);
    e.id_ok.store((t.id << 1) | (t.ok ? 1 : 0), std::memory_order_relaxed);
    e.seq.store(seq + 2, std::memory_order_release);
    ring_written_.store(n + 1, std::memory_order_release);
  }
  /// Any thread: the ring's slices, oldest first (a slice overwritten while this reads
  /// is left out).
  std::vector<TaskSlice> slices() const {
    std::vector<TaskSlice> out;
    const RingEntry* ring = ring_.load(std::memory_order_acquire);
    if (ring == nullptr) return out;
    const std::uint64_t end = ring_written_.load(std::memory_order_acquire);
    const std::uint64_t begin = end > ring_size_ ? end - ring_size_ : 0;
    out.reserve(end - begin);
    for (std::uint64_t i = begin; i < end; ++i) {
      const RingEntry& e = ring[i % ring_size_];
      const std::uint64_t seq = e.seq.load(std::memory_order_acquire);
      if ((seq & 1) != 0) continue;
      TaskSlice t;
      t.submit_ns = e.submit_ns.load(std::memory_order_relaxed);
      t.start_ns = e.start_ns.load(std::memory_order_relaxed);
      t.end_ns = e.end_ns.load(std::memory_order_relaxed);
      t.series = e.series.load(std::memory_order_relaxed);
      t.where = e.where.load(std::memory_order_relaxed);
      const std::uint64_t id_ok = e.id_ok.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      // Unchanged, and still the slice of write i (not one a later lap put there).
      if (e.seq.load(std::memory_order_relaxed) != seq) continue;
      if (ring_written_.load(std::memory_order_acquire) - i > ring_size_) continue;
      t.id = id_ok >> 1;
      t.ok = (id_ok & 1) != 0;
      out.push_back(t);
    }
    return out;
  }

  /// The owner thread's kernel id and name (as it was when the shard was made).
  std::uint64_t thread_id() const noexcept { return tid_; }
  const std::string& thread_name() const noexcept { return thread_name_; }

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

  EXECUTOR_EXPORTER_HOT void bump(std::size_t slot, std::uint64_t n) noexcept {
    auto& a = slots_[slot];
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_release);
  }
  EXECUTOR_EXPORTER_HOT std::size_t observe(std::size_t base, const std::uint64_t* bounds,
                                            std::size_t n, std::uint64_t ns) noexcept {
    std::size_t i = 0;
    while (i < n && ns > bounds[i]) ++i;  // most observations land in the first buckets
    bump(base + i, 1);
    bump(base + n + 1, ns);
    return i;
  }

  std::unique_ptr<ExemplarStore> exemplars_;
  SlotLayout layout_;
  std::uint32_t sample_rate_;
  bool cpu_time_;
  std::uint64_t rng_;           // owner thread only
  std::int64_t countdown_ = 1;  // tasks until the next timed one; owner thread only
  const std::uint64_t* run_bounds_;
  const std::uint64_t* wait_bounds_;
  std::size_t run_n_;
  std::size_t wait_n_;
  std::atomic<std::uint64_t>* slots_;
  std::vector<std::uint64_t> folded_;

  void note_thread();  // fills tid_ and thread_name_ (metric_shard.cpp)

  // The running task (begin_task), on its own line: written once per task start.
  alignas(64) std::atomic<std::uint64_t> current_seq_{0};
  std::atomic<const void*> current_series_{nullptr};
  static_assert(std::atomic<std::source_location>::is_always_lock_free,
                "a call site is published with plain atomic stores");
  std::atomic<std::source_location> current_where_{std::source_location{}};
  std::atomic<std::uint64_t> current_id_{0};

  struct alignas(64) RingEntry {
    std::atomic<std::uint64_t> seq{0};
    std::atomic<std::uint64_t> submit_ns{0};
    std::atomic<std::uint64_t> start_ns{0};
    std::atomic<std::uint64_t> end_ns{0};
    std::atomic<const void*> series{nullptr};
    std::atomic<std::source_location> where{std::source_location{}};
    std::atomic<std::uint64_t> id_ok{0};  // task id << 1 | ok
  };
  // On the first slice, not with the shard: a thread that only submits has a shard of
  // the executor too, and needs no ring. Out of line: once per thread.
  [[gnu::noinline]] RingEntry* make_ring() noexcept {
    RingEntry* ring = new (std::nothrow) RingEntry[ring_size_];
    if (ring != nullptr) ring_.store(ring, std::memory_order_release);
    return ring;
  }

  std::atomic<RingEntry*> ring_{nullptr};  // owned; made by the first record_slice
  std::size_t ring_size_ = 0;
  std::size_t ring_next_ = 0;  // the slot the next record_slice writes; owner only
  alignas(64) std::atomic<std::uint64_t> ring_written_{0};
  std::uint64_t tid_ = 0;
  std::string thread_name_;
};

}  // namespace executor_exporter::detail
