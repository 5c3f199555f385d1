// The parent side of the process pool, first part: starting the zygote and the threads,
// taking submissions, shutting down and tearing down, and the scrape-time samples.
#include "process_engine_impl.hpp"

namespace executor_exporter::detail {

void ProcessEngine::Impl::start() {
  if (preinit_server().fd < 0) check_threads();
  pids.assign(n, 0);
  cpu_seen.assign(n, 0);
  setup_metrics();

  const int shm = ::memfd_create("executor_exporter_slots", MFD_CLOEXEC);
  if (shm < 0) fail_errno("memfd_create");
  const std::size_t bytes = n * sizeof(WorkerSlot);
  if (::ftruncate(shm, static_cast<off_t>(bytes)) != 0) {
    ::close(shm);
    fail_errno("ftruncate");
  }
  void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, shm, 0);
  if (mem == MAP_FAILED) {
    ::close(shm);
    fail_errno("mmap");
  }
  slots = static_cast<WorkerSlot*>(mem);
  done_ids = std::make_unique<std::atomic<std::uint64_t>[]>(n);
  for (std::size_t i = 0; i < n; ++i) done_ids[i].store(0);
  probe = metrics.add_running_probe([this] { return running_now(); });
  tasks_probe = metrics.add_running_tasks_probe(
      [this](std::vector<ExecutorMetrics::RunningTask>& out) { running_tasks(out); });
  queue_hook = metrics.add_fold_hook([this] {
    std::uint64_t oldest = 0;
    std::size_t queued_max = 0;
    std::size_t running_max = 0;
    {
      std::lock_guard lock(mu);
      if (!queue.empty()) oldest = queue.front()->submit_ns;
      queued_max = queued_peak;
      running_max = running_peak;
      queued_peak = queue.size() + io_parked;  // the next interval starts from now
      running_peak = io_busy;
    }
    if (opts.exporter.exact_peaks) metrics.note_peaks(queued_max, running_max);
    // CLOCK_MONOTONIC, moved to now_ns()'s time base, which the fold measures ages in.
    if (oldest == 0) return;
    const std::uint64_t mono = monotonic_ns();
    const std::uint64_t now = now_ns();
    const std::uint64_t waited = mono > oldest ? mono - oldest : 0;
    metrics.note_queued_since(now > waited ? now - waited : 1);
  });

  ZygoteConfig cfg{};
  cfg.max_workers = n;
  cfg.initializer = opts.initializer != nullptr ? function_to_wire(opts.initializer) : 0;
  cfg.max_tasks_per_child = opts.max_tasks_per_child;
  cfg.memory_limit = opts.memory_limit_bytes;
  cfg.max_message = opts.max_message_bytes;
  cfg.task_cpu_time = opts.exporter.task_cpu_time ? 1 : 0;

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    ::close(shm);
    fail_errno("socketpair");
  }
  auto& pre = preinit_server();
  {
    std::unique_lock pre_lock(pre.mutex);
    if (pre.fd >= 0) {
      const int pass[2] = {sv[1], shm};
      std::int64_t pid = -1;
      int none[1];
      if (send_with_fds(pre.fd, &cfg, sizeof cfg, pass, 2) &&
          recv_with_fds(pre.fd, &pid, sizeof pid, none, 0, 0) == sizeof pid && pid > 0) {
        zygote = static_cast<pid_t>(pid);
        zygote_is_child = false;
      }
    }
  }
  if (zygote <= 0) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) zygote_main(cfg, sv[1], shm);
    if (pid < 0) {
      ::close(sv[0]);
      ::close(sv[1]);
      ::close(shm);
      fail_errno("fork");
    }
    zygote = pid;
    zygote_is_child = true;
  }
  ::close(sv[1]);
  ::close(shm);
  zygote_fd = sv[0];

  epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  event_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  timer_fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (epoll_fd < 0 || event_fd < 0 || timer_fd < 0) {
    const int err = errno;
    stop_zygote();
    errno = err;
    fail_errno("epoll/eventfd/timerfd");
  }
  watch(event_fd, kEventTag, EPOLLIN);
  watch(timer_fd, kTimerTag, EPOLLIN);
  watch(zygote_fd, kZygoteTag, EPOLLIN);

  workers.resize(n);
  for (std::size_t i = 0; i < n; ++i) workers[i].index = static_cast<std::uint32_t>(i);
  exporter.set_max_workers(static_cast<std::int64_t>(n));
  completer = std::thread([this] { completer_loop(); });
  io = std::thread([this] { io_loop(); });
}

[[noreturn]] void ProcessEngine::Impl::fail_errno(const char* what) {
  throw ExecutorError(std::string("process pool: ") + what + " failed: " + std::strerror(errno));
}

void ProcessEngine::Impl::check_threads() {
  if (opts.thread_check == ThreadCheck::allow) return;
  const std::size_t threads = thread_count();
  if (threads <= 1) return;
  const std::string msg =
      "executor_exporter: ProcessPoolExecutor forks its zygote while the process runs " +
      std::to_string(threads) +
      " threads; a lock held by another thread stays locked in the children. Create the "
      "pool before starting threads, or call ProcessPoolExecutor::preinit() early in main().";
  if (opts.thread_check == ThreadCheck::throw_) throw ForkSafetyError(msg);
  std::fprintf(stderr, "%s\n", msg.c_str());
}

void ProcessEngine::Impl::setup_metrics() {
  hook = metrics.add_fold_hook([this] { sample(true); });
}

void ProcessEngine::Impl::sample(bool with_cpu) {
  std::vector<pid_t> now;
  std::uint64_t cpu_delta = 0;
  {
    std::lock_guard lock(pid_mu);
    now = pids;
    if (with_cpu) {
      // Each part only rises: a clock read is kept only above the last, and a worker's
      // final time (retire_cpu) is at least what was read of it. So the sum only rises.
      std::uint64_t total = cpu_retired;
      for (std::size_t i = 0; i < pids.size(); ++i) {
        if (pids[i] > 0) {
          if (const auto cpu = process_cpu_ns(pids[i])) cpu_seen[i] = std::max(cpu_seen[i], *cpu);
        }
        total += cpu_seen[i];
      }
      if (total > cpu_added) {
        cpu_delta = total - cpu_added;
        cpu_added = total;
      }
    }
  }
  // The executor's counter also holds its proxy tasks' CPU time (foreign to its threads);
  // the workers' is foreign the same way. Written to this thread's shard: the fold that
  // runs this hook reads the shards after its hooks.
  if (cpu_delta != 0) metrics.local_shard().add_foreign_cpu(cpu_delta);
  for (std::size_t i = 0; i < now.size(); ++i) {
    metrics.sample(Metric::worker_resident, std::to_string(i),
                   now[i] > 0 ? static_cast<double>(read_statm_field(now[i], 1)) : 0.0);
  }
}

void ProcessEngine::Impl::set_pid(std::size_t i, pid_t pid) {
  std::lock_guard lock(pid_mu);
  if (pids[i] > 0 && pids[i] != pid) {
    if (const auto cpu = process_cpu_ns(pids[i])) cpu_seen[i] = std::max(cpu_seen[i], *cpu);
    cpu_retired += cpu_seen[i];
    cpu_seen[i] = 0;
  }
  pids[i] = pid;
}

void ProcessEngine::Impl::retire_cpu(std::size_t i, pid_t pid, std::uint64_t cpu_ns) {
  std::lock_guard lock(pid_mu);
  if (pids[i] != pid || pid <= 0) return;  // already let go (teardown) or never known
  cpu_retired += std::max(cpu_ns, cpu_seen[i]);
  cpu_seen[i] = 0;
  pids[i] = 0;  // reaped: its pid may name another process now
}

void ProcessEngine::Impl::record_task_cpu(const TaskRef& ref, std::uint64_t cpu_ns) noexcept {
  MetricShard& shard = ref.series->local_shard();
  if (shard.cpu_time()) shard.task_cpu(cpu_ns);
}

void ProcessEngine::Impl::watch(int fd, std::uint64_t tag, std::uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = tag;
  ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
}

void ProcessEngine::Impl::wake() {
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t r = ::write(event_fd, &one, sizeof one);
}

TaskRef ProcessEngine::Impl::ref_of(const ProcessTask& task) {
  TaskRef ref{task.series != nullptr ? task.series : &metrics, task.submit_ns, task.observer_id,
              task.where};
  // A future's cancel does not carry the submit time: the task's wait counts in the
  // queued seconds when its result arrives (Recorder::ran).
  ref.queue_tracked = false;
  return ref;
}

void ProcessEngine::Impl::enqueue(ProcessTask* task) {
  task->submit_ns = monotonic_ns();
  if (metrics.observers() != nullptr) [[unlikely]]
    task->observer_id = detail::next_task_id();
  // A map() chunk is one task, as in every executor: it is what the pool schedules.
  const TaskRef ref = ref_of(*task);
  bool was_empty;
  {
    std::unique_lock lock(mu);
    if (closed || !broken_reason.empty()) {
      const bool is_broken = !broken_reason.empty();
      const std::string reason = broken_reason;
      lock.unlock();
      Recorder::rejected(ref, is_broken ? RejectReason::broken : RejectReason::shutdown);
      delete task;
      if (is_broken) throw BrokenExecutorError(broken_message(reason));
      throw ExecutorShutdownError(id_label);
    }
    was_empty = queue.empty();
    try {
      {
        std::lock_guard tasks_lock(tasks_mu);
        live_tasks.emplace(task->id, std::pair(ref.series, task->where));
      }
      queue.push_back(task);
      queued_peak = std::max(queued_peak, queue.size() + io_parked);
    } catch (...) {  // no memory for the queue: refused, counted, not leaked
      lock.unlock();
      forget(task);
      Recorder::rejected(ref, RejectReason::error);
      delete task;
      throw;
    }
    Recorder::submitted(ref);
  }
  if (was_empty) wake();
}

std::string ProcessEngine::Impl::broken_message(const std::string& reason) const {
  return "process pool '" + id_label + "' is broken: " + reason;
}

void ProcessEngine::Impl::shutdown(bool wait, bool cancel_futures) {
  std::deque<ProcessTask*> cancelled;
  {
    std::lock_guard lock(mu);
    closed = true;
    if (cancel_futures) cancelled.swap(queue);
  }
  wake();
  for (ProcessTask* t : cancelled) {
    for (FutureStateBase* s : t->states()) s->cancel();
    // A single task's cancel() counted it; a chunk's items count nowhere (see
    // ProcessPoolExecutor::map), so the chunk leaving the queue is counted here.
    if (!t->chunk.empty()) Recorder::cancelled(ref_of(*t));
    forget(t);
    delete t;
  }
  if (wait) join();
}

void ProcessEngine::Impl::kill_workers() {
  {
    std::lock_guard lock(mu);
    closed = true;
    kill_requested = true;
  }
  wake();
  join();
}

void ProcessEngine::Impl::join() {
  std::lock_guard lock(join_mu);
  if (io.joinable() && io.get_id() != std::this_thread::get_id()) io.join();
  if (completer.joinable() && completer.get_id() != std::this_thread::get_id()) {
    {
      std::lock_guard c(cmu);
      completer_stop = true;
    }
    ccv.notify_one();
    completer.join();
  }
}

void ProcessEngine::Impl::teardown() {
  if (tearing_down) return;
  tearing_down = true;
  for (auto& w : workers) {
    if (w.state == Worker::ready && w.fd >= 0) {
      const std::string bye = encode_shutdown_frame();
      ::send(w.fd, bye.data(), bye.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (w.state == Worker::ready) exporter.worker_stopped();
    w.state = Worker::gone;
    close_worker_fd(w);
    set_pid(w.index, 0);
  }
  stop_zygote();
  finished = true;
}

void ProcessEngine::Impl::stop_zygote() {
  if (zygote_fd >= 0) {
    ::shutdown(zygote_fd, SHUT_WR);
    // Drain until the zygote is gone (EOF), closing any descriptor it still passes.
    for (;;) {
      ZMsg m;
      int fd[1];
      const ssize_t got = recv_with_fds(zygote_fd, &m, sizeof m, fd, 1, 0);
      if (fd[0] >= 0) ::close(fd[0]);
      if (got <= 0) break;
    }
    if (epoll_fd >= 0) ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, zygote_fd, nullptr);
    ::close(zygote_fd);
    zygote_fd = -1;
  }
  if (zygote_is_child && zygote > 0) {
    while (::waitpid(zygote, nullptr, 0) < 0 && errno == EINTR) {
    }
    zygote_is_child = false;
  }
}

// ---------------------------------------------------------------------------------------

ProcessEngine::ProcessEngine(const ProcessPoolOptions& options, ExecutorExporter& exporter)
    : impl_(std::make_unique<Impl>(options, exporter)) {
  impl_->start();
}

ProcessEngine::~ProcessEngine() = default;

void ProcessEngine::enqueue(ProcessTask* task) { impl_->enqueue(task); }
void ProcessEngine::shutdown(bool wait, bool cancel_futures) {
  impl_->shutdown(wait, cancel_futures);
}
void ProcessEngine::kill_workers() { impl_->kill_workers(); }
std::size_t ProcessEngine::max_workers() const noexcept { return impl_->n; }
pid_t ProcessEngine::zygote_pid() const noexcept { return impl_->zygote; }
std::vector<pid_t> ProcessEngine::worker_pids() const {
  std::lock_guard lock(impl_->pid_mu);
  std::vector<pid_t> out;
  for (pid_t p : impl_->pids) {
    if (p > 0) out.push_back(p);
  }
  return out;
}
bool ProcessEngine::broken() const {
  std::lock_guard lock(impl_->mu);
  return !impl_->broken_reason.empty();
}

}  // namespace executor_exporter::detail
