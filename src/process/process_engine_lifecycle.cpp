// The parent side of the process pool, third part: what happens to tasks and workers
// when results arrive, workers die or hang, and when the pool breaks: counting,
// re-sending, replacing, failing.
#include "process_engine_impl.hpp"

namespace executor_exporter::detail {

void ProcessEngine::Impl::spawn(Worker& w) {
  ++w.gen;
  w.state = Worker::spawning;
  w.pid = 0;
  w.sent = w.done = 0;
  w.kill = Worker::no_kill;
  w.kill_task = 0;
  w.kill_detail.clear();
  w.truncated = false;
  w.decoder = FrameDecoder(opts.max_message_bytes);
  w.out.clear();
  w.out_off = 0;
  w.want_out = false;
  slots[w.index].task_id.store(0);
  ZMsg m;
  m.op = kSpawn;
  m.slot = w.index;
  m.gen = w.gen;
  if (!send_with_fds(zygote_fd, &m, sizeof m, nullptr, 0)) break_pool("the zygote process died");
}

void ProcessEngine::Impl::request_kill(Worker& w) {
  ZMsg m;
  m.op = kKill;
  m.slot = w.index;
  m.gen = w.gen;
  m.pid = w.pid;
  if (!send_with_fds(zygote_fd, &m, sizeof m, nullptr, 0)) break_pool("the zygote process died");
}

void ProcessEngine::Impl::on_zygote() {
  for (int i = 0; i < 64 && !finished; ++i) {
    ZMsg m;
    int fd[1];
    const ssize_t got = recv_with_fds(zygote_fd, &m, sizeof m, fd, 1, MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (got != static_cast<ssize_t>(sizeof m) || m.slot >= n) {
      if (fd[0] >= 0) ::close(fd[0]);
      break_pool("the zygote process died");
      return;
    }
    // Even from a stale report: the CPU time of a process still known to be a worker.
    if (m.op == kExited) retire_cpu(m.slot, static_cast<pid_t>(m.pid), m.cpu_ns);
    Worker& w = workers[m.slot];
    if (m.gen != w.gen || broken) {  // stale report
      if (fd[0] >= 0) ::close(fd[0]);
      continue;
    }
    if (m.op == kSpawned && fd[0] >= 0 && w.state == Worker::spawning) {
      w.fd = fd[0];
      w.pid = static_cast<pid_t>(m.pid);
      w.state = Worker::starting;
      set_pid(w.index, w.pid);
      watch(w.fd, kWorkerTag + w.index, EPOLLIN);
    } else if (m.op == kSpawnFailed) {
      break_pool(std::string("the zygote could not fork a worker: ") + std::strerror(m.err));
    } else if (m.op == kExited) {
      if (fd[0] >= 0) ::close(fd[0]);
      on_exit(w, m.status);
    } else {
      if (fd[0] >= 0) ::close(fd[0]);
      break_pool("the zygote sent an unexpected message");
    }
  }
}

void ProcessEngine::Impl::close_worker_fd(Worker& w) {
  if (w.fd < 0) return;
  ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, w.fd, nullptr);
  ::close(w.fd);
  w.fd = -1;
  w.want_out = false;
}

void ProcessEngine::Impl::malformed(Worker& w, const std::string& detail, bool blame) {
  if (w.kill == Worker::no_kill) {
    w.kill = Worker::malformed_kill;
    const std::uint64_t running = slots[w.index].task_id.load();
    w.kill_task = !blame         ? 0
                  : running != 0 ? running
                                 : (w.inflight.empty() ? 0 : w.inflight.front()->id);
    w.kill_detail = detail;
    request_kill(w);
  }
  close_worker_fd(w);
}

void ProcessEngine::Impl::finish(ProcessTask* t, std::uint64_t start, std::uint64_t end,
                                 std::exception_ptr error, bool at_once) {
  const auto states = t->states();
  Recorder::ran(ref_of(*t), start, end, error == nullptr, error);
  for (std::size_t i = 0; i < states.size(); ++i) {
    if (!is_started(*t, i)) continue;
    if (error) states[i]->store_error(error);
    if (at_once && !exiting_worker && states[i]->publish_unless_callbacks()) {
      states[i]->release();  // done here: nobody registered a callback to run
    } else {
      to_publish.push_back(states[i]);  // the reference moves to the publisher
    }
    states[i] = nullptr;
  }
  forget(t);
  delete t;
}

bool ProcessEngine::Impl::is_started(const ProcessTask& t, std::size_t i) {
  return t.chunk.empty() ? t.dispatched : t.started[i] != 0;
}

void ProcessEngine::Impl::fail_unstarted(ProcessTask* t, const std::exception_ptr& error) {
  const bool started = start_task(*t);
  if (!t->chunk.empty() || started) Recorder::cancelled(ref_of(*t));
  const auto states = t->states();
  for (std::size_t i = 0; i < states.size(); ++i) {
    if (!is_started(*t, i)) continue;
    states[i]->store_error(error);
    to_publish.push_back(states[i]);
    states[i] = nullptr;
  }
  forget(t);
  delete t;
}

void ProcessEngine::Impl::on_exit(Worker& w, int status) {
  if (w.fd >= 0) {  // everything it wrote is there; then EOF
    exiting_worker = true;
    read_worker(w, 0);
    exiting_worker = false;
  }
  close_worker_fd(w);
  set_pid(w.index, 0);
  const bool was_ready = w.state == Worker::ready;
  if (was_ready) exporter.worker_stopped();  // the reason, if any, is counted below
  w.state = Worker::gone;

  WorkerSlot& slot = slots[w.index];
  const std::uint64_t slot_task = slot.task_id.load();
  const std::uint64_t slot_start = slot.start_ns.load();
  slot.task_id.store(0);
  if (w.kill == Worker::no_kill && w.truncated && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    // A clean exit after half a frame: the stream itself is broken. (Killed mid-write,
    // the status says more.)
    w.kill = Worker::malformed_kill;
    w.kill_task = slot_task != 0 ? slot_task : (w.inflight.empty() ? 0 : w.inflight.front()->id);
    w.kill_detail = "the stream ended in the middle of a frame";
  }
  const std::uint64_t running_id = w.kill != Worker::no_kill ? w.kill_task : slot_task;
  ProcessTask* running = nullptr;
  for (auto it = w.inflight.begin(); it != w.inflight.end(); ++it) {
    if (running_id != 0 && (*it)->id == running_id) {
      running = *it;
      w.inflight.erase(it);
      break;
    }
  }
  while (!w.inflight.empty()) {  // sent, not started: send again
    redo.push_front(w.inflight.back());
    w.inflight.pop_back();
  }
  const std::uint64_t now = monotonic_ns();
  const std::uint64_t start = running != nullptr && slot_task == running_id ? slot_start : now;
  const std::string who =
      "worker " + std::to_string(w.index) + " (pid " + std::to_string(w.pid) + ")";

  RestartReason reason = kCrashed;
  std::exception_ptr error;
  if (w.kill == Worker::timeout_kill) {
    reason = kTimeout;
    error = std::make_exception_ptr(TaskTimeoutError("task ran longer than its timeout of " +
                                                     seconds(opts.task_timeout.count()) + "; " +
                                                     who + " was killed and replaced"));
  } else if (w.kill == Worker::malformed_kill) {
    error = std::make_exception_ptr(WorkerCrashedError(who + " sent a malformed frame (" +
                                                       w.kill_detail + ") and was replaced"));
  } else if (opts.memory_limit_bytes != 0 && WIFEXITED(status) &&
             WEXITSTATUS(status) == kExitMemory) {
    error = std::make_exception_ptr(WorkerCrashedError(who + " exceeded its memory limit of " +
                                                       std::to_string(opts.memory_limit_bytes) +
                                                       " bytes while running the task"));
  } else {
    if (running == nullptr && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
        opts.max_tasks_per_child != 0 && w.done >= opts.max_tasks_per_child) {
      reason = kRecycled;
    }
    error = std::make_exception_ptr(
        WorkerCrashedError(who + " " + describe_status(status) + " while running the task"));
  }
  if (running != nullptr) finish(running, start, now, error);

  if (tearing_down || broken) return;
  if (!was_ready && w.kill == Worker::no_kill) {
    // With an initializer, a worker that dies before its Hello died in it (abort(),
    // a signal, exit()): a failing initializer as much as one that throws.
    if (opts.initializer != nullptr) recorder.count(Metric::initializer_errors);
    break_pool(who + " " + describe_status(status) + " before it was ready (in the initializer?)");
    return;
  }
  if (reason == kCrashed) {
    crash_times.push_back(now);
    const auto window = static_cast<std::uint64_t>(opts.crash_loop_window.count());
    while (!crash_times.empty() && now - crash_times.front() > window) crash_times.pop_front();
    if (opts.break_on_first_crash) {
      break_pool(who + " " + describe_status(status));
      return;
    }
    if (crash_times.size() > opts.crash_loop_limit) {
      break_pool("crash loop: " + std::to_string(crash_times.size()) + " worker crashes within " +
                 seconds(opts.crash_loop_window.count()) + " (last: " + who + " " +
                 describe_status(status) + ")");
      return;
    }
  }
  recorder.count(Metric::worker_restarts, reason);
  // No replacement needed once everything is done during shutdown.
  if (io_closed && redo.empty() && idle()) {
    std::lock_guard lock(mu);
    if (queue.empty()) return;
  }
  spawn(w);
}

std::string ProcessEngine::Impl::seconds(std::int64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", static_cast<double>(ns) / 1e9);
  return buf;
}

std::uint64_t ProcessEngine::Impl::running_start(const Worker& w, std::uint64_t* id_out) const {
  return running_start(w.index, id_out);
}

std::uint64_t ProcessEngine::Impl::running_start(std::size_t index, std::uint64_t* id_out) const {
  const WorkerSlot& s = slots[index];
  for (int i = 0; i < 4; ++i) {
    const std::uint64_t id = s.task_id.load();
    const std::uint64_t start = s.start_ns.load();
    if (s.task_id.load() == id) {
      *id_out = id;
      return id != 0 ? start : 0;
    }
  }
  *id_out = 0;
  return 0;
}

ExecutorMetrics::Running ProcessEngine::Impl::running_now() const {
  ExecutorMetrics::Running r;
  const std::uint64_t now = monotonic_ns();
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t id = 0;
    const std::uint64_t start = running_start(i, &id);
    if (id == 0 || id == done_ids[i].load(std::memory_order_acquire)) continue;
    ++r.tasks;
    if (now > start) r.run_ns += now - start;
  }
  return r;
}

void ProcessEngine::Impl::running_tasks(std::vector<ExecutorMetrics::RunningTask>& out) {
  std::vector<pid_t> pid_of;
  {
    std::lock_guard lock(pid_mu);
    pid_of = pids;
  }
  // The slots' CLOCK_MONOTONIC starts, moved to now_ns()'s time base.
  const std::uint64_t mono = monotonic_ns();
  const std::uint64_t now = now_ns();
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t id = 0;
    const std::uint64_t start = running_start(i, &id);
    if (id == 0 || id == done_ids[i].load(std::memory_order_acquire)) continue;
    ExecutorMetrics::RunningTask r;
    {
      std::lock_guard lock(tasks_mu);
      const auto it = live_tasks.find(id);
      if (it == live_tasks.end()) continue;  // just finished
      r.series = it->second.first;
      r.where = it->second.second;
    }
    const std::uint64_t ran = mono > start ? mono - start : 0;
    r.start_ns = now > ran ? now - ran : 1;
    r.id = id;
    r.pid = i < pid_of.size() ? pid_of[i] : 0;
    r.tid = static_cast<std::uint64_t>(r.pid);
    r.thread = id_label + " worker " + std::to_string(i);
    out.push_back(std::move(r));
  }
}

void ProcessEngine::Impl::check_timeouts() {
  if (opts.task_timeout.count() <= 0 || broken || tearing_down) return;
  const std::uint64_t now = monotonic_ns();
  const auto limit = static_cast<std::uint64_t>(opts.task_timeout.count());
  for (auto& w : workers) {
    if (w.state != Worker::ready || w.kill != Worker::no_kill || w.inflight.empty()) continue;
    std::uint64_t id = 0;
    const std::uint64_t start = running_start(w, &id);
    if (id != 0 && now >= start + limit) {
      w.kill = Worker::timeout_kill;
      w.kill_task = id;
      request_kill(w);
    }
  }
}

void ProcessEngine::Impl::update_timer() {
  if (opts.task_timeout.count() <= 0) return;
  const auto limit = static_cast<std::uint64_t>(opts.task_timeout.count());
  std::uint64_t next = 0;
  std::uint64_t now = 0;
  for (auto& w : workers) {
    if (w.state != Worker::ready || w.kill != Worker::no_kill || w.inflight.empty()) continue;
    std::uint64_t id = 0;
    std::uint64_t start = running_start(w, &id);
    if (id == 0) {  // about to start: look again one timeout from now
      if (now == 0) now = monotonic_ns();
      start = now;
    }
    const std::uint64_t dl = start + limit;
    if (next == 0 || dl < next) next = dl;
  }
  if (next == 0 || (armed != 0 && armed <= next)) return;
  itimerspec spec{};
  spec.it_value.tv_sec = static_cast<time_t>(next / 1'000'000'000u);
  spec.it_value.tv_nsec = static_cast<long>(next % 1'000'000'000u);
  ::timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &spec, nullptr);
  armed = next;
}

void ProcessEngine::Impl::break_pool(const std::string& reason) {
  if (broken || tearing_down) return;
  broken = true;
  std::deque<ProcessTask*> pending;
  {
    std::lock_guard lock(mu);
    broken_reason = reason;
    closed = true;
    pending.swap(queue);
  }
  io_closed = true;
  const auto error = std::make_exception_ptr(BrokenExecutorError(broken_message(reason)));
  const std::uint64_t now = monotonic_ns();
  for (auto& w : workers) {
    std::uint64_t id = 0;
    const std::uint64_t start = running_start(w, &id);
    while (!w.inflight.empty()) {
      ProcessTask* t = w.inflight.front();
      w.inflight.pop_front();
      if (id != 0 && t->id == id) {
        finish(t, start, now, error);
      } else {
        fail_unstarted(t, error);
      }
    }
  }
  for (ProcessTask* t : redo) fail_unstarted(t, error);
  redo.clear();
  for (ProcessTask* t : pending) fail_unstarted(t, error);
  teardown();
}

}  // namespace executor_exporter::detail
