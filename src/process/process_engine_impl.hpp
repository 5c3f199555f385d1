// Private to src/process/: the parent side of the process pool, split over
// process_engine_setup.cpp (start, submit, shutdown, teardown, metrics),
// process_engine_io.cpp (the I/O thread: dispatch, frames, the completion thread) and
// process_engine_lifecycle.cpp (results, deaths, restarts, timeouts, breaking the pool).
#pragma once

#include <source_location>
#include <unordered_map>
#include <utility>

#include "process_internal.hpp"

namespace executor_exporter::detail {

using namespace process;

struct ProcessEngine::Impl {
  enum RestartReason { kCrashed = 0, kTimeout = 1, kRecycled = 2 };
  enum Tag : std::uint64_t { kEventTag = 1, kTimerTag = 2, kZygoteTag = 3, kWorkerTag = 16 };

  struct Worker {
    std::uint32_t index = 0;
    std::uint64_t gen = 0;
    pid_t pid = 0;
    int fd = -1;
    enum State { none, spawning, starting, ready, gone } state = none;
    FrameDecoder decoder;
    std::deque<ProcessTask*> inflight;
    std::string out;
    std::size_t out_off = 0;
    bool want_out = false;
    std::uint64_t sent = 0;
    std::uint64_t done = 0;
    enum Kill { no_kill, timeout_kill, malformed_kill } kill = no_kill;
    std::uint64_t kill_task = 0;
    std::string kill_detail;
    bool truncated = false;  // its stream ended in the middle of a frame
  };

  Impl(const ProcessPoolOptions& o, ExecutorExporter& e)
      : opts(o), exporter(e), recorder(e.recorder()), metrics(e.recorder().metrics()) {
    if (opts.max_workers == 0) opts.max_workers = std::max(1U, std::thread::hardware_concurrency());
    if (opts.max_inflight_per_worker == 0) opts.max_inflight_per_worker = 1;
    opts.max_message_bytes = message_limit(opts.max_message_bytes);
    n = opts.max_workers;
    id_label = exporter.id();
  }

  // ---- configuration
  ProcessPoolOptions opts;
  std::size_t n = 0;
  std::string id_label;
  ExecutorExporter& exporter;
  Recorder& recorder;
  ExecutorMetrics& metrics;

  // ---- descriptors and processes
  int zygote_fd = -1;
  int epoll_fd = -1;
  int event_fd = -1;
  int timer_fd = -1;
  pid_t zygote = -1;
  bool zygote_is_child = false;
  WorkerSlot* slots = nullptr;

  // ---- shared with submitters (mu)
  std::mutex mu;
  std::deque<ProcessTask*> queue;
  // executor_tasks_queued_max / executor_tasks_running_max, counted in tasks as the gauges
  // are (a map() chunk is one). Queued: the queue plus the tasks the I/O thread holds that
  // no worker runs yet (re-sends, and tasks waiting in a worker's window behind the one it
  // runs), which the I/O thread publishes here after each dispatch. Running: the workers
  // with a task. The peaks since the fold hook last read them, which resets them to now.
  std::size_t io_parked = 0;
  std::size_t io_busy = 0;
  std::size_t queued_peak = 0;
  std::size_t running_peak = 0;
  bool closed = false;
  bool kill_requested = false;
  std::string broken_reason;

  // ---- threads
  std::thread io;
  std::thread completer;
  std::mutex join_mu;
  std::mutex cmu;
  std::condition_variable ccv;
  std::vector<FutureStateBase*> publish_q;
  bool completer_stop = false;

  // ---- I/O thread only
  std::vector<Worker> workers;
  std::deque<ProcessTask*> redo;  // started tasks whose worker died before running them
  std::vector<FutureStateBase*> to_publish;
  std::deque<std::uint64_t> crash_times;
  std::uint64_t armed = 0;
  bool io_closed = false;
  bool tearing_down = false;
  bool finished = false;
  bool broken = false;
  std::vector<char> rbuf = std::vector<char>(64 * 1024);

  // ---- scrape side
  mutable std::mutex pid_mu;
  std::vector<pid_t> pids;
  // executor_worker_cpu_seconds_total, under pid_mu: per worker index, the most CPU time
  // read from its current process's clock; the final CPU time of the processes gone;
  // and how much of their sum the executor's counter was given (it only rises).
  std::vector<std::uint64_t> cpu_seen;
  std::uint64_t cpu_retired = 0;
  std::uint64_t cpu_added = 0;
  std::uint64_t hook = 0;
  // Per worker index: the task whose result the I/O thread counts now or last, so that
  // running_now() does not count a task twice while its slot still names it.
  std::unique_ptr<std::atomic<std::uint64_t>[]> done_ids;
  std::uint64_t probe = 0;  // add_running_probe's handle
  // The stuck-task gauges and the watchdog: what each queued or running task is (its
  // series and call site), by task id, for the probe that reads the workers' slots.
  // Its own mutex, taken with nothing else inside: the probe runs under the metrics'.
  std::mutex tasks_mu;
  std::unordered_map<std::uint64_t, std::pair<ExecutorMetrics*, std::source_location>> live_tasks;
  std::uint64_t tasks_probe = 0;  // add_running_tasks_probe's handle
  std::uint64_t queue_hook = 0;   // the fold hook that reads the oldest queued task

  /// The probe: the task each worker runs now, with its pid.
  void running_tasks(std::vector<ExecutorMetrics::RunningTask>& out);
  /// `t` leaves the pool (before it is deleted).
  void forget(const ProcessTask* t) {
    std::lock_guard lock(tasks_mu);
    live_tasks.erase(t->id);
  }

  // =====================================================================================
  void start();

  [[noreturn]] static void fail_errno(const char* what);

  void check_threads();

  void setup_metrics();

  /// Scrape time: each worker's resident memory from /proc, and (with `with_cpu`, from the fold
  /// hook) the workers' CPU time (their process CPU clocks) into
  /// executor_worker_cpu_seconds_total. Not from the destructor: the CPU time goes through
  /// the calling thread's shard, and a pool destroyed at exit (a static) runs after the
  /// thread's shard cache is gone.
  void sample(bool with_cpu);

  /// Worker `i` is process `pid` from now on (0: none). A process left without an exit
  /// report (teardown) keeps the CPU time its clock shows now.
  void set_pid(std::size_t i, pid_t pid);

  /// The zygote reaped `pid`, worker `i`, which used `cpu_ns` in all: that stays in the
  /// counter, whatever it used since the last scrape read its clock.
  void retire_cpu(std::size_t i, pid_t pid, std::uint64_t cpu_ns);

  /// With task_cpu_time, `t`'s CPU time as its worker measured it, in its series.
  static void record_task_cpu(const TaskRef& ref, std::uint64_t cpu_ns) noexcept;

  void watch(int fd, std::uint64_t tag, std::uint32_t events);

  void wake();

  // =====================================================================================
  // Submitters
  // =====================================================================================

  // The task as the recorder knows it. Its times are CLOCK_MONOTONIC, the clock the
  // child stamps start/end with (not now_ns(), whose TSC calibration is a different,
  // drifting time base).
  TaskRef ref_of(const ProcessTask& task);

  void enqueue(ProcessTask* task);

  std::string broken_message(const std::string& reason) const;

  void shutdown(bool wait, bool cancel_futures);

  void kill_workers();

  void join();

  // =====================================================================================
  // Completion thread: publishes results, so future callbacks never run on the I/O thread
  // =====================================================================================

  void completer_loop();

  void flush_publish();

  // =====================================================================================
  // I/O thread
  // =====================================================================================

  void io_loop();

  void after_events();

  bool idle() const;

  // ---- dispatch

  std::size_t room(const Worker& w) const;

  static bool start_task(ProcessTask& t);

  void dispatch();

  /// After a dispatch: publishes io_parked / io_busy under mu and raises the peaks.
  void publish_load();

  void flush_out(Worker& w);

  void set_out_interest(Worker& w, bool on);

  // ---- zygote channel

  void spawn(Worker& w);

  void request_kill(Worker& w);

  void on_zygote();

  // ---- worker channels

  void on_worker(Worker& w, std::uint32_t events);

  /// Reads up to `rounds` buffers (or until EOF when rounds is 0: the worker is dead).
  void read_worker(Worker& w, int rounds);

  void close_worker_fd(Worker& w);

  /// The worker's stream is broken: kill it. With `blame`, the task it runs (or the next
  /// one it owes an answer for) fails with WorkerCrashedError; the others are sent again.
  void malformed(Worker& w, const std::string& detail, bool blame = true);

  void on_frame(Worker& w, const FrameView& frame);

  /// A task ran (start_ns/end_ns from the child): metrics, outcome, hand-off to publish.
  /// `at_once`: the worker answered normally, so nothing the pool does next can be
  /// observed by the future's owner, and a future without callbacks is published here
  /// (see FutureStateBase::publish_unless_callbacks). After a crash, a timeout or a
  /// broken pool the futures go through the completion thread, published only once
  /// the pool's own state (broken, the replacement) is settled, as they always were.
  void finish(ProcessTask* t, std::uint64_t start, std::uint64_t end, std::exception_ptr error,
              bool at_once = false);
  // Set while a dead worker's last results are read: they are published with its crash.
  bool exiting_worker = false;

  static bool is_started(const ProcessTask& t, std::size_t i);

  /// A task that never ran (broken pool): it fails, counted as cancelled. A chunk counts
  /// once, whatever became of its items; a single task cancelled by its future was
  /// counted then.
  void fail_unstarted(ProcessTask* t, const std::exception_ptr& error);

  // ---- deaths

  void on_exit(Worker& w, int status);

  static std::string seconds(std::int64_t ns);

  // ---- timeouts

  /// The start of the task `w` runs now, or 0 when none (consistent pair read).
  std::uint64_t running_start(const Worker& w, std::uint64_t* id_out) const;
  std::uint64_t running_start(std::size_t index, std::uint64_t* id_out) const;

  /// Scrape side (a fold): the tasks the workers run now whose end is not counted yet,
  /// and their run time so far, so that they show as running and busy while they run
  /// (their start and end are counted together when the result arrives). A chunk of
  /// map() items counts as one running task until its items are counted.
  ExecutorMetrics::Running running_now() const;

  void check_timeouts();

  void update_timer();

  // ---- the end

  void break_pool(const std::string& reason);

  /// Closes every channel; the zygote then kills and reaps the workers and exits, and we
  /// reap the zygote.
  void teardown();

  void stop_zygote();

  ~Impl() {
    if (probe != 0) metrics.remove_running_probe(probe);  // before the slots go
    if (tasks_probe != 0) metrics.remove_running_tasks_probe(tasks_probe);
    if (queue_hook != 0) metrics.remove_fold_hook(queue_hook);
    shutdown(true, false);
    if (hook != 0) metrics.remove_fold_hook(hook);
    sample(false);
    for (auto& w : workers) {
      for (ProcessTask* t : w.inflight) delete t;
    }
    for (ProcessTask* t : redo) delete t;
    for (ProcessTask* t : queue) delete t;
    stop_zygote();  // only does something if the I/O thread never ran
    if (epoll_fd >= 0) ::close(epoll_fd);
    if (event_fd >= 0) ::close(event_fd);
    if (timer_fd >= 0) ::close(timer_fd);
    if (slots != nullptr) ::munmap(slots, n * sizeof(WorkerSlot));
  }
};

}  // namespace executor_exporter::detail
