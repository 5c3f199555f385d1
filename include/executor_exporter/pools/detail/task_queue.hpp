#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

#include <executor_exporter/pools/detail/task.hpp>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace executor_exporter::detail {

/// A spin-wait hint to the CPU (PAUSE on x86): lets the sibling hyperthread run and
/// keeps the spinning core from flooding the memory bus.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

/// The queue between submitters and workers: one intrusive FIFO list per priority
/// (highest first) under one mutex, fed without the lock by most submits (see inbox_).
/// It also decides back-pressure (the bounded capacity), idleness (the pool's wait()),
/// which workers leave on a scale-down, and refusal once closed or broken. These stay
/// in one class on purpose: each is a decision about the same state (how many tasks
/// are queued or held by workers, who sleeps), taken at the instant a task moves and
/// under the lock that moves it. Split into classes, they would need that lock across
/// them or a second synchronisation on the hot path, and the hot path is what this
/// class is for. Every condition variable is notified only when somebody sleeps on it,
/// which keeps the futex system call off the common path.
class TaskQueue {
 public:
  /// What push() did with the task. `cancelled`: it was counted (on_accept ran) but
  /// the queue closed, with no worker left to run it, before it became visible; the
  /// caller cancels it, so that it is counted as cancelled and its future told.
  enum class PushResult { accepted, closed, broken, full, cancelled };

  /// The tasks a worker took from the queue in one pop() beyond the one it runs first,
  /// in the order they would have run. Taking several tasks per lock (only from a long,
  /// unbounded queue) makes a stream of tiny tasks cross the queue lock fewer times. A
  /// worker that finds the queue empty takes from other workers' reserves before it
  /// sleeps, and take_all() empties them with the queue, so the reserves change which
  /// worker runs a task, never whether or when it can be cancelled: no task waits behind
  /// a long-running one while another worker is idle. Owned by one worker thread,
  /// attach()ed for its lifetime.
  class Reserve {
   public:
    Reserve() = default;
    Reserve(const Reserve&) = delete;
    Reserve& operator=(const Reserve&) = delete;

    /// Owner thread: the next reserved task, or null when none is left. Costs one
    /// relaxed load when the reserve is empty, an uncontended lock otherwise.
    Task* take() noexcept {
      if (count_.load(std::memory_order_relaxed) == 0) return nullptr;
      std::lock_guard lock(mutex_);
      Task* t = pop_locked();
      if (t != nullptr) ++started_;
      return t;
    }

   private:
    friend class TaskQueue;
    Task* pop_locked() noexcept {
      Task* t = head_;
      if (t != nullptr) {
        head_ = t->next;
        count_.store(count_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
      }
      return t;
    }

    std::mutex mutex_;      // taken after the queue's mutex, never before
    Task* head_ = nullptr;  // guarded by mutex_, linked through Task::next
    // Tasks in head_. Written under mutex_; read without it by the owner (only the
    // owner adds, so it never misses its own tasks) and under the queue's mutex by
    // thieves (which then see every add, made under the queue's mutex too).
    std::atomic<std::size_t> count_{0};
    Reserve* next_ = nullptr;  // the queue's list of reserves, guarded by its mutex
    // The owner holds work: it left pop() with a task and has not come back. Guarded by
    // the queue's mutex, like the queue's count of such workers (busy_).
    bool holding_ = false;
    // Tasks take() handed out since the owner's last pop(), which leave the queue's count
    // of reserved tasks there, under the lock it takes anyway (see take_peaks()). Owner
    // only.
    std::size_t started_ = 0;
  };

  /// Registers a worker's reserve; detach() it before it is destroyed (pop() must have
  /// returned null, so it is empty).
  void attach(Reserve& r) {
    std::lock_guard lock(mutex_);
    r.next_ = reserves_;
    reserves_ = &r;
    ++live_;
  }
  void detach(Reserve& r) {
    std::lock_guard lock(mutex_);
    for (Reserve** p = &reserves_; *p != nullptr; p = &(*p)->next_) {
      if (*p == &r) {
        *p = r.next_;
        break;
      }
    }
  }

  /// `capacity`: the most queued tasks (0 = unbounded). `count_peaks`: keep the most
  /// tasks queued at once for take_peaks().
  explicit TaskQueue(std::size_t capacity = 0, bool count_peaks = false)
      : capacity_(capacity), count_peaks_(count_peaks) {
    levels_.push_back({0});
  }

  /// Appends `task` (after the tasks of its priority) unless the queue is closed,
  /// broken or full. When full and `block`, waits for room until `deadline`
  /// (time_point::max(): no limit). `on_accept` runs before the task becomes visible to
  /// workers (the submit is counted there, so a worker can never count a start before
  /// its submit).
  template <class OnAccept>
  PushResult push(Task* task, OnAccept&& on_accept, bool block,
                  std::chrono::steady_clock::time_point deadline = no_deadline()) {
    // Unbounded and default priority (the usual case): no lock (see inbox_).
    if (capacity_ == 0 && task->priority() == 0) {
      if (auto r = push_inbox(task, on_accept)) return *r;
    }
    bool wake = false;
    {
      std::unique_lock lock(mutex_);
      for (;;) {
        if (broken_) return PushResult::broken;
        if (closed_) return PushResult::closed;
        if (capacity_ == 0 || size_ < capacity_) break;
        if (!block) return PushResult::full;
        ++full_waiters_;
        if (deadline != no_deadline()) {
          const bool timed_out = not_full_.wait_until(lock, deadline) == std::cv_status::timeout;
          --full_waiters_;
          // Room may have opened just at the deadline; only give up when still full.
          if (timed_out && !closed_ && !broken_ && size_ >= capacity_) return PushResult::full;
        } else {
          not_full_.wait(lock);
          --full_waiters_;
        }
      }
      // Before the submit is counted: a new priority level may fail to allocate.
      Level& level = level_of(task->priority());
      on_accept();
      append_locked(task, level);
      observe_depth_locked();
      hint_.store(size_, std::memory_order_relaxed);
      // A futex wake is a system call of ~1 us; the submitter pays it only when no
      // worker will take this task otherwise. A spinning worker re-checks the queue
      // under this lock before it sleeps, and each wake already sent brings one worker.
      // While a worker spins, the submitter wakes nobody: that worker, once it holds a
      // task, wakes a sleeper for what is left (see pop()), so a burst costs the
      // submitter no system call and no task waits behind a long-running one while a
      // worker sleeps.
      wake = spinning_ == 0 && size_ > pending_wakes_ &&
             sleepers_.load(std::memory_order_relaxed) > pending_wakes_;
      if (wake) ++pending_wakes_;
    }
    if (wake) cv_.notify_one();
    return PushResult::accepted;
  }

  /// Called by a worker for its next task once its reserve is empty. `finished` is how
  /// many tasks this worker finished (futures published) since its last pop(), which
  /// is what wait_idle() waits for. From a long unbounded queue it also moves a few
  /// more tasks into `reserve` (see Reserve). With nothing queued it takes a task from
  /// another worker's reserve, else blocks while the queue is open. Returns null when
  /// the worker must exit: the queue is closed and drained, or the pool shrank
  /// (retire()). `waited` is set when this call slept.
  Task* pop(std::size_t finished, bool& waited, Reserve& reserve) {
    bool room = false;
    bool wake = false;
    Task* task = nullptr;
    {
      std::unique_lock lock(mutex_);
      if (finished != 0) {
        active_ -= finished;
        notify_idle_locked();
      }
      if (reserve.holding_) {  // back for more: its tasks so far have ended
        reserve.holding_ = false;
        --busy_;
      }
      in_reserves_ -= reserve.started_;  // they left the queue as they started
      reserve.started_ = 0;
      bool spun = false;
      for (;;) {
        // Surplus workers leave before taking more work; the others drain the queue.
        if (retire_ > 0) {
          --retire_;
          --live_;
          return nullptr;
        }
        drain_inbox_locked();
        observe_depth_locked();
        if (size_ > 0) break;
        // Nothing queued: help a worker that holds reserved tasks (already counted
        // in active_) rather than leave them waiting behind its current task.
        if (Task* stolen = steal_locked(reserve)) {
          --in_reserves_;
          hold_locked(reserve);
          return stolen;
        }
        if (closed_) {  // closed and drained
          --live_;
          return nullptr;
        }
        waited = true;
        if (!spun && spinning_ == 0) {
          // Spin outside the lock for a push that is about to come (bursts, round
          // trips), then re-check under the lock before sleeping. One spinner is
          // enough to catch the next push; more would only take CPU time from the
          // submitters (push() wakes sleepers when the queue outnumbers spinners).
          spun = true;
          ++spinning_;
          lock.unlock();
          for (int i = 0;
               i < kSpin && hint_.load(std::memory_order_relaxed) == 0 && !inbox_has_tasks(); ++i) {
            cpu_relax();
          }
          lock.lock();
          --spinning_;  // under the lock, before the re-check: see push()
          continue;
        }
        // Announced before the last look at the inbox, which a lock-free push fills
        // before it reads sleepers_: one of the two sees the other (see push_inbox()).
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        if (inbox_has_tasks(std::memory_order_seq_cst)) {
          sleepers_.fetch_sub(1, std::memory_order_relaxed);
          continue;
        }
        cv_.wait(lock);
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
        // Consumes the wake a push sent (or is a spurious/broadcast wake: then nothing
        // is pending and the count stays at 0).
        if (pending_wakes_ > 0) --pending_wakes_;
        spun = false;
      }
      // One task from a short queue; from a long unbounded one, up to kMaxBatch with
      // at least 7/8 of the queue left for the other workers. A bounded queue takes
      // one at a time, so that its capacity counts every task not yet taken.
      std::size_t k = capacity_ == 0 ? size_ / kBatchDivisor : 1;
      k = k < 1 ? 1 : (k > kMaxBatch ? kMaxBatch : k);
      const std::size_t taken = take_locked(k, task);
      if (taken > 1) {
        std::lock_guard reserve_lock(reserve.mutex_);
        reserve.head_ = task->next;
        reserve.count_.store(taken - 1, std::memory_order_relaxed);
      }
      task->next = nullptr;
      size_ -= taken;
      in_reserves_ += taken - 1;  // until this worker comes back (see take_peaks())
      hint_.store(size_, std::memory_order_relaxed);
      active_ += taken;
      hold_locked(reserve);
      room = full_waiters_ > 0;
      // Tasks left that no spinner or pending wake will take: bring a sleeper (the
      // wake a submitter left to this worker, see push()).
      wake = size_ > spinning_ + pending_wakes_ &&
             sleepers_.load(std::memory_order_relaxed) > pending_wakes_;
      if (wake) ++pending_wakes_;
    }
    if (room) not_full_.notify_one();
    if (wake) cv_.notify_one();
    return task;
  }

  /// Asks `n` workers to exit at their next pop() (after their current task).
  void retire(std::size_t n) {
    {
      std::lock_guard lock(mutex_);
      retire_ += n;
    }
    cv_.notify_all();
  }
  /// Withdraws up to `n` retirements not yet taken by a worker; returns how many, so
  /// a scale-up right after a scale-down keeps threads instead of replacing them.
  std::size_t unretire(std::size_t n) {
    std::lock_guard lock(mutex_);
    const std::size_t k = n < retire_ ? n : retire_;
    retire_ -= k;
    return k;
  }

  /// Waits until no task is queued or running (every future published), or until
  /// `deadline` (no_deadline(): no limit); true when idle.
  bool wait_idle(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    ++idle_waiters_;
    auto idle = [&] { return size_ == 0 && active_ == 0 && !inbox_has_tasks(); };
    bool ok = true;
    if (deadline != no_deadline()) {
      ok = idle_cv_.wait_until(lock, deadline, idle);
    } else {
      idle_cv_.wait(lock, idle);
    }
    --idle_waiters_;
    return ok;
  }

  /// Refuses further pushes; workers drain what is queued, then pop() returns null.
  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
      seal_inbox_locked();
    }
    cv_.notify_all();
    not_full_.notify_all();
  }
  bool closed() const {
    std::lock_guard lock(mutex_);
    return closed_;
  }

  /// Closes the queue for good as broken (pushes then report `broken`) and returns the
  /// queued tasks, for the caller to fail.
  Task* break_and_take_all() {
    {
      std::lock_guard lock(mutex_);
      broken_ = true;
      closed_ = true;
      seal_inbox_locked();
    }
    cv_.notify_all();
    not_full_.notify_all();
    return take_all();
  }

  /// Removes every queued task, reserved ones included, and returns them as a list
  /// linked through `next`, in the order they would have run.
  Task* take_all() {
    Task* all = nullptr;
    {
      std::lock_guard lock(mutex_);
      drain_inbox_locked();
      observe_depth_locked();
      Task** tail = &all;
      // Reserved tasks were taken before the queued ones, so they come first. They
      // count in active_ until a worker finishes them; removed here, they are done.
      std::size_t reserved = 0;
      for (Reserve* r = reserves_; r != nullptr; r = r->next_) {
        std::lock_guard reserve_lock(r->mutex_);
        while (Task* t = r->pop_locked()) {
          *tail = t;
          tail = &t->next;
          --active_;
          ++reserved;
        }
      }
      for (auto& level : levels_) {
        if (level.head == nullptr) continue;
        *tail = level.head;
        tail = &level.tail->next;
        level.head = level.tail = nullptr;
        level.taken = level.pushed;
      }
      *tail = nullptr;
      in_reserves_ -= reserved;
      size_ = 0;
      hint_.store(0, std::memory_order_relaxed);
      notify_idle_locked();
    }
    not_full_.notify_all();
    return all;
  }

  /// The "no limit" deadline.
  static constexpr std::chrono::steady_clock::time_point no_deadline() {
    return std::chrono::steady_clock::time_point::max();
  }

  /// Tasks queued now (cancelled ones included until a worker skips them), not counting
  /// those in workers' reserves (fewer than kMaxBatch per worker, see Reserve). Moves the
  /// inbox into the queue to count it, which a worker's next pop would do anyway.
  std::size_t size() {
    std::lock_guard lock(mutex_);
    drain_inbox_locked();
    return size_;
  }
  std::size_t capacity() const noexcept { return capacity_; }

  /// The most tasks queued at once (0 unless constructed with `count_peaks`), and the
  /// most workers holding a task at once, since the previous call of this or of
  /// take_fold_reading() (the first: since construction); each restarts from the
  /// current value. For the scrape
  /// (executor_tasks_queued_max / _running_max), never the hot path.
  /// "Queued" is what the queue holds, as the queued gauge counts it: the inbox, the
  /// priority lists and the workers' reserves, plus cancelled tasks until a worker skips
  /// them. It is counted under the queue lock only (see observe_depth_locked()), so a
  /// submit pays nothing for it. A task a worker ran from its reserve leaves the count
  /// when that worker comes back to pop(), not at its start, which takes no lock; so the
  /// count can exceed the queue by the reserved tasks already started (never more than
  /// 15 per worker, and only after a pop from a queue of 16 or more): a peak is read high
  /// rather than missed.
  /// A worker holds a task from the moment pop() hands it one until it comes back for
  /// more, so the running count includes the instants between two tasks of one batch: an
  /// upper bound of the tasks running, equal to it but for those few nanoseconds.
  struct Peaks {
    std::size_t queued = 0;
    std::size_t running = 0;
  };
  Peaks take_peaks() {
    std::lock_guard lock(mutex_);
    return take_peaks_locked();
  }

  /// What a fold reads from the queue, under one lock: take_peaks(), and the submit time
  /// (Task::submit_ns) of the task that has waited longest, reserved ones included (0
  /// when nothing timed waits). For the scrape, never the hot path.
  struct FoldReading {
    std::uint64_t oldest_submit_ns = 0;
    Peaks peaks;
  };
  FoldReading take_fold_reading() {
    std::lock_guard lock(mutex_);
    FoldReading out;
    out.peaks = take_peaks_locked();  // moves the inbox into the lists first
    out.oldest_submit_ns = oldest_submit_locked();
    return out;
  }

 private:
  // One priority's FIFO. Its tasks are numbered in push order and cut into segments
  // of kMaxBatch: the first task of a segment points to the segment's last one once
  // it is pushed (Task::segment_last). A pop that starts at a segment's first task
  // then detaches a whole batch with two reads instead of walking kMaxBatch nodes
  // under the lock, each a cache miss on a line the submitter just wrote: that walk
  // held the lock long enough to queue several submitters behind it.
  struct Level {
    std::int32_t priority;
    Task* head = nullptr;
    Task* tail = nullptr;
    std::uint64_t pushed = 0;       // tasks ever appended
    std::uint64_t taken = 0;        // tasks ever removed; head is task number `taken`
    Task* segment_first = nullptr;  // first task of the segment being pushed
  };

  // Levels are kept sorted, highest priority first, and never removed: programs use a
  // handful of priorities, so the lookup is a short scan and allocates only once.
  Level& level_of(std::int32_t priority) {
    // Under the queue lock on every push: the usual single level costs one compare.
    if (levels_.size() == 1 && levels_.front().priority == priority) [[likely]] {
      return levels_.front();
    }
    return find_or_add_level(priority);
  }
  // Priority 0, where the inbox's tasks go; the constructor creates it, so this never
  // allocates.
  Level& default_level() { return level_of(0); }
  Level& find_or_add_level(std::int32_t priority) {
    auto it = levels_.begin();
    while (it != levels_.end() && it->priority > priority) ++it;
    if (it != levels_.end() && it->priority == priority) return *it;
    return *levels_.insert(it, Level{priority});
  }

  // Push side of the segments (see Level), for `task` just appended. Queue lock held.
  static void mark_segment(Level& level, Task* task) noexcept {
    const std::uint64_t n = level.pushed++;
    const std::uint64_t pos = n % kMaxBatch;
    if (pos == 0) {
      level.segment_first = task;
    } else if (pos == kMaxBatch - 1 && level.taken <= n - pos) {
      // Only while the segment's first task is still queued: once taken it may be gone.
      level.segment_first->segment_last = task;
    }
  }

  // Unlinks up to `k` tasks, highest priority first, into a list at `out`; returns
  // how many (at least one: the queue is not empty). Queue lock held. A batch stops
  // at a segment boundary, so that the next pop starts on one and takes the fast path.
  std::size_t take_locked(std::size_t k, Task*& out) noexcept {
    Task** tail = &out;
    std::size_t taken = 0;
    for (auto& level : levels_) {  // highest priority first
      if (level.head == nullptr) continue;
      const auto pos = static_cast<std::size_t>(level.taken % kMaxBatch);
      if (taken == 0 && k == kMaxBatch && pos == 0 && level.pushed - level.taken >= kMaxBatch) {
        // A whole segment is queued: detach it at once (see Level).
        Task* last = level.head->segment_last;
        out = level.head;
        level.head = last->next;
        if (level.head == nullptr) level.tail = nullptr;
        last->next = nullptr;
        level.taken += kMaxBatch;
        return kMaxBatch;
      }
      const std::size_t room = kMaxBatch - pos;  // to the end of the segment
      std::size_t n = 0;
      for (; n < room && taken < k && level.head != nullptr; ++n, ++taken) {
        *tail = level.head;
        tail = &level.head->next;
        level.head = level.head->next;
      }
      level.taken += n;
      if (level.head == nullptr) level.tail = nullptr;
      if (taken == k || level.head != nullptr) break;  // full, or at a boundary
    }
    *tail = nullptr;
    return taken;
  }

  // The first task of another worker's reserve, or null. Queue lock held.
  Task* steal_locked(Reserve& self) {
    for (Reserve* r = reserves_; r != nullptr; r = r->next_) {
      if (r == &self || r->count_.load(std::memory_order_relaxed) == 0) continue;
      std::lock_guard reserve_lock(r->mutex_);
      if (Task* t = r->pop_locked()) {
        t->next = nullptr;
        return t;
      }
    }
    return nullptr;
  }

  void notify_idle_locked() {
    if (idle_waiters_ > 0 && size_ == 0 && active_ == 0 && !inbox_has_tasks()) {
      idle_cv_.notify_all();
    }
  }

  Peaks take_peaks_locked() {
    drain_inbox_locked();
    observe_depth_locked();
    Peaks out;
    out.queued = queued_peak_;
    queued_peak_ = count_peaks_ ? size_ + in_reserves_ : 0;
    out.running = busy_peak_;
    busy_peak_ = busy_;
    return out;
  }
  // Within a priority the head is the oldest; reserved tasks were taken from heads, so
  // they are older. Queue lock held, inbox drained.
  std::uint64_t oldest_submit_locked() {
    std::uint64_t oldest = 0;
    auto consider = [&](const Task* t) {
      if (t != nullptr && t->submit_ns != 0 && (oldest == 0 || t->submit_ns < oldest)) {
        oldest = t->submit_ns;
      }
    };
    for (const auto& level : levels_) consider(level.head);
    for (Reserve* r = reserves_; r != nullptr; r = r->next_) {
      std::lock_guard reserve_lock(r->mutex_);
      consider(r->head_);
    }
    return oldest;
  }

  // The queue's depth only falls under this lock, in pop() and take_all(), and each
  // looks at it first, right after moving the inbox in; between two such looks it only
  // rose. So its largest value over any stretch is the one seen at the look that ends
  // the stretch: the peak needs nothing from a lock-free push. Queue lock held.
  void observe_depth_locked() noexcept {
    const std::size_t depth = size_ + in_reserves_;
    if (count_peaks_ && depth > queued_peak_) queued_peak_ = depth;
  }
  // `reserve`'s owner leaves pop() with a task. Queue lock held.
  void hold_locked(Reserve& reserve) noexcept {
    reserve.holding_ = true;
    if (++busy_ > busy_peak_) busy_peak_ = busy_;
  }

  // ---- the inbox (see inbox_)

  // The inbox's value once the queue is closed: pushes then take the locked path.
  static Task* sealed() noexcept { return reinterpret_cast<Task*>(std::uintptr_t{1}); }

  bool inbox_has_tasks(std::memory_order order = std::memory_order_relaxed) const noexcept {
    Task* head = inbox_.load(order);
    return head != nullptr && head != sealed();
  }

  // The lock-free push: nullopt when the queue is closed (the locked path then says
  // how), else what became of the task.
  template <class OnAccept>
  std::optional<PushResult> push_inbox(Task* task, OnAccept& on_accept) {
    Task* head = inbox_.load(std::memory_order_relaxed);
    if (head == sealed()) return std::nullopt;
    on_accept();  // before the task is visible, as under the lock
    // seq_cst: the push must be visible before sleepers_ is read (see pop()). Once
    // pushed the task is a worker's: only `head` says what the inbox held.
    do {
      if (head == sealed()) return push_after_seal(task);
      task->next = head;
    } while (!inbox_.compare_exchange_weak(head, task, std::memory_order_seq_cst,
                                           std::memory_order_relaxed));
    // The first task of an empty inbox brings a sleeping worker when no other will
    // come; later ones find that worker (or a spinning or busy one) on its way.
    if (head == nullptr && sleepers_.load(std::memory_order_seq_cst) > 0) wake_for_inbox();
    return PushResult::accepted;
  }

  void wake_for_inbox() {
    bool wake = false;
    {
      std::lock_guard lock(mutex_);
      wake = spinning_ == 0 && pending_wakes_ == 0 && sleepers_.load(std::memory_order_relaxed) > 0;
      if (wake) ++pending_wakes_;
    }
    if (wake) cv_.notify_one();
  }

  // The queue closed between the check and the push of a task already counted as
  // submitted. While a worker is left it still runs it (none leaves a non-empty
  // queue); otherwise the caller cancels it.
  PushResult push_after_seal(Task* task) {
    {
      std::lock_guard lock(mutex_);
      if (broken_ || live_ <= retire_) return PushResult::cancelled;
      append_locked(task, default_level());
      hint_.store(size_, std::memory_order_relaxed);
    }
    cv_.notify_all();
    return PushResult::accepted;
  }

  // Links `task` at the end of `level`; the caller publishes size_ to hint_ once.
  void append_locked(Task* task, Level& level) noexcept {
    task->next = nullptr;
    (level.tail ? level.tail->next : level.head) = task;
    level.tail = task;
    mark_segment(level, task);
    ++size_;
  }

  // Moves the inbox's tasks into the priority-0 level, oldest first. Queue lock held.
  // Every pop drains, so the inbox holds what was pushed since the last one: a few
  // tasks while the workers keep up. While all workers run long tasks it can grow
  // without bound, and the drain that follows holds the lock for one step per task,
  // as the locked push would have, only all at once.
  void drain_inbox_locked() {
    if (!inbox_has_tasks()) return;
    append_chain_locked(inbox_.exchange(nullptr, std::memory_order_acquire));
  }
  // Closes the inbox to lock-free pushes and drains it. Queue lock held.
  void seal_inbox_locked() {
    Task* chain = inbox_.exchange(sealed(), std::memory_order_acquire);
    if (chain != sealed()) append_chain_locked(chain);
  }
  void append_chain_locked(Task* newest) {
    Task* oldest = nullptr;  // reversed: the inbox is newest first
    while (newest != nullptr) {
      Task* next = newest->next;
      newest->next = oldest;
      oldest = newest;
      newest = next;
    }
    Level& level = default_level();
    while (oldest != nullptr) {
      Task* next = oldest->next;
      append_locked(oldest, level);
      oldest = next;
    }
    hint_.store(size_, std::memory_order_relaxed);
  }

  // Pause iterations a worker spins before sleeping: a few microseconds, short enough not
  // to steal much CPU from producers on a machine with fewer cores than threads.
  static constexpr int kSpin = 256;
  // A pop takes size / kBatchDivisor tasks, at most kMaxBatch (see pop()).
  static constexpr std::size_t kBatchDivisor = 8;
  static constexpr std::size_t kMaxBatch = 16;

  // A plain mutex, taken without spinning first: retrying try_lock in a loop made the
  // instrumented pool about half as fast on a stream of tiny tasks (each failed attempt
  // pulls the lock's cache line away from the thread that holds it).
  mutable std::mutex mutex_;
  std::condition_variable cv_;        // workers wait for tasks
  std::condition_variable not_full_;  // blocked submitters wait for room
  std::condition_variable idle_cv_;   // wait() waits for idleness
  std::vector<Level> levels_;
  Reserve* reserves_ = nullptr;  // every attached worker's reserve
  const std::size_t capacity_;
  const bool count_peaks_;
  std::size_t size_ = 0;
  std::size_t active_ = 0;  // popped by a worker and not yet reported finished
  // Workers asleep on cv_. Written under the lock; read without it by push_inbox().
  std::atomic<std::size_t> sleepers_{0};
  std::size_t spinning_ = 0;          // workers between their spin and its re-check
  std::size_t pending_wakes_ = 0;     // notify_one sent to sleepers, not yet consumed
  std::atomic<std::size_t> hint_{0};  // size_, readable without the lock (spinning)
  std::size_t full_waiters_ = 0;
  std::size_t idle_waiters_ = 0;
  std::size_t retire_ = 0;
  std::size_t live_ = 0;  // attached workers that have not left pop() for good
  // Workers holding a task (see Reserve::holding_), and the most since take_peaks().
  std::size_t busy_ = 0;
  std::size_t busy_peak_ = 0;
  // Tasks in the workers' reserves, counting those their owner started since its last
  // pop() (see Reserve::started_), and the most queued at once since take_peaks().
  std::size_t in_reserves_ = 0;
  std::size_t queued_peak_ = 0;
  bool closed_ = false;
  bool broken_ = false;
  // Tasks pushed without the lock, newest first, linked through Task::next; sealed()
  // once closed. Submitters push with one CAS and never wait on the queue lock, which
  // with several submitters was held, contended and slept on for every task; workers
  // move the tasks into the priority list under the lock at each pop. Only unbounded
  // queues and default-priority tasks use it: a bound or a priority needs the count or
  // the order that the lock keeps.
  alignas(64) std::atomic<Task*> inbox_{nullptr};
};

}  // namespace executor_exporter::detail
