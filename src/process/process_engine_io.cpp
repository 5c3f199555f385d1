// The parent side of the process pool, second part: the I/O thread (epoll over the
// workers' sockets, the zygote's, an eventfd for submissions and a timerfd for
// timeouts), dispatch to workers, frames in and out, and the completion thread that
// publishes results so that future callbacks never run on the I/O thread.
#include "process_engine_impl.hpp"

namespace executor_exporter::detail {

void ProcessEngine::Impl::completer_loop() {
  std::vector<FutureStateBase*> batch;
  for (;;) {
    {
      std::unique_lock lock(cmu);
      ccv.wait(lock, [&] { return !publish_q.empty() || completer_stop; });
      if (publish_q.empty()) return;
      batch.swap(publish_q);
    }
    for (FutureStateBase* s : batch) {
      s->publish();
      s->release();
    }
    batch.clear();
  }
}

void ProcessEngine::Impl::flush_publish() {
  if (to_publish.empty()) return;
  {
    std::lock_guard lock(cmu);
    if (publish_q.empty()) {
      publish_q.swap(to_publish);
    } else {
      publish_q.insert(publish_q.end(), to_publish.begin(), to_publish.end());
      to_publish.clear();
    }
  }
  ccv.notify_one();
}

void ProcessEngine::Impl::io_loop() {
  for (auto& w : workers) spawn(w);
  std::array<epoll_event, 64> evs{};
  while (!finished) {
    const int k = ::epoll_wait(epoll_fd, evs.data(), static_cast<int>(evs.size()), -1);
    if (k < 0 && errno != EINTR) break;
    for (int i = 0; i < k && !finished; ++i) {
      const std::uint64_t tag = evs[static_cast<std::size_t>(i)].data.u64;
      const std::uint32_t events = evs[static_cast<std::size_t>(i)].events;
      if (tag == kEventTag) {
        std::uint64_t v;
        [[maybe_unused]] const ssize_t r = ::read(event_fd, &v, sizeof v);
      } else if (tag == kTimerTag) {
        std::uint64_t v;
        [[maybe_unused]] const ssize_t r = ::read(timer_fd, &v, sizeof v);
        armed = 0;
        check_timeouts();
      } else if (tag == kZygoteTag) {
        on_zygote();
      } else if (tag >= kWorkerTag && tag - kWorkerTag < n) {
        on_worker(workers[tag - kWorkerTag], events);
      }
    }
    if (!finished) after_events();
  }
  flush_publish();
}

void ProcessEngine::Impl::after_events() {
  bool kill = false;
  {
    std::lock_guard lock(mu);
    io_closed = closed;
    kill = kill_requested;
  }
  if (kill) {
    break_pool("kill_workers() was called");
    flush_publish();
    return;
  }
  dispatch();
  flush_publish();
  if (!finished) update_timer();
  if (!finished && io_closed && redo.empty() && idle()) {
    bool empty;
    {
      std::lock_guard lock(mu);
      empty = queue.empty();
    }
    if (empty) teardown();
  }
}

bool ProcessEngine::Impl::idle() const {
  return std::all_of(workers.begin(), workers.end(),
                     [](const Worker& w) { return w.inflight.empty(); });
}

std::size_t ProcessEngine::Impl::room(const Worker& w) const {
  if (w.state != Worker::ready || w.kill != Worker::no_kill) return 0;
  std::size_t cap = opts.max_inflight_per_worker;
  if (opts.max_tasks_per_child != 0) {
    const std::uint64_t left =
        opts.max_tasks_per_child > w.sent ? opts.max_tasks_per_child - w.sent : 0;
    cap = static_cast<std::size_t>(std::min<std::uint64_t>(cap, left));
  }
  return cap > w.inflight.size() ? cap - w.inflight.size() : 0;
}

bool ProcessEngine::Impl::start_task(ProcessTask& t) {
  if (t.dispatched) return true;
  t.dispatched = true;
  if (t.chunk.empty()) return t.single->try_start();
  bool any = false;
  for (std::size_t i = 0; i < t.chunk.size(); ++i) {
    t.started[i] = t.chunk[i]->try_start() ? 1 : 0;
    any = any || t.started[i];
  }
  return any;
}

void ProcessEngine::Impl::publish_load() {
  if (!opts.exporter.exact_peaks) return;
  std::size_t parked = redo.size();
  std::size_t busy = 0;
  for (const auto& w : workers) {
    if (w.inflight.empty()) continue;
    ++busy;
    parked += w.inflight.size() - 1;  // its first task is the one it runs (or starts now)
  }
  std::lock_guard lock(mu);
  io_parked = parked;
  io_busy = busy;
  queued_peak = std::max(queued_peak, queue.size() + parked);
  running_peak = std::max(running_peak, busy);
}

void ProcessEngine::Impl::dispatch() {
  if (broken || tearing_down) {
    publish_load();
    return;
  }
  std::size_t free = 0;
  for (auto& w : workers) free += room(w);
  if (free == 0) {
    publish_load();  // results may have freed no room (a worker being killed)
    return;
  }
  std::vector<ProcessTask*> batch;
  while (!redo.empty() && batch.size() < free) {
    batch.push_back(redo.front());
    redo.pop_front();
  }
  if (batch.size() < free) {
    std::lock_guard lock(mu);
    const std::size_t before = batch.size();
    while (!queue.empty() && batch.size() < free) {
      batch.push_back(queue.front());
      queue.pop_front();
    }
    // Still waiting for publish_load() below to say where they went: a submit meanwhile
    // counts them as queued, not as gone.
    if (opts.exporter.exact_peaks) io_parked += batch.size() - before;
  }
  for (ProcessTask* t : batch) {
    if (!start_task(*t)) {  // cancelled while queued; cancel() counted a single task
      if (!t->chunk.empty()) Recorder::cancelled(ref_of(*t));
      forget(t);
      delete t;
      continue;
    }
    Worker* best = nullptr;
    std::size_t best_room = 0;
    for (auto& w : workers) {
      const std::size_t r = room(w);
      if (r > best_room) {
        best = &w;
        best_room = r;
      }
    }
    if (best == nullptr) {  // cannot happen: free counted the room
      redo.push_back(t);
      continue;
    }
    best->out += t->frame;
    best->inflight.push_back(t);
    ++best->sent;
  }
  for (auto& w : workers) {
    if (w.out.size() > w.out_off) flush_out(w);
  }
  publish_load();
}

void ProcessEngine::Impl::flush_out(Worker& w) {
  while (w.fd >= 0 && w.out_off < w.out.size()) {
    const ssize_t k = ::send(w.fd, w.out.data() + w.out_off, w.out.size() - w.out_off,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k > 0) {
      w.out_off += static_cast<std::size_t>(k);
      continue;
    }
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!w.want_out) set_out_interest(w, true);
      return;
    }
    // The worker is gone; its exit report will follow.
    break;
  }
  w.out.clear();
  w.out_off = 0;
  if (w.want_out && w.fd >= 0) set_out_interest(w, false);
}

void ProcessEngine::Impl::set_out_interest(Worker& w, bool on) {
  epoll_event ev{};
  ev.events = EPOLLIN | (on ? EPOLLOUT : 0U);
  ev.data.u64 = kWorkerTag + w.index;
  ::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, w.fd, &ev);
  w.want_out = on;
}

void ProcessEngine::Impl::on_worker(Worker& w, std::uint32_t events) {
  if (w.fd < 0) return;
  if ((events & EPOLLOUT) != 0) flush_out(w);
  read_worker(w, 16);
}

void ProcessEngine::Impl::read_worker(Worker& w, int rounds) {
  for (int r = 0; w.fd >= 0 && (rounds == 0 || r < rounds); ++r) {
    const ssize_t k = ::recv(w.fd, rbuf.data(), rbuf.size(), MSG_DONTWAIT);
    if (k > 0) {
      try {
        w.decoder.feed(std::string_view(rbuf.data(), static_cast<std::size_t>(k)));
        while (w.fd >= 0) {
          auto frame = w.decoder.next_view();
          if (!frame) break;
          on_frame(w, *frame);
        }
      } catch (const CodecError& e) {
        malformed(w, e.what());
      }
      continue;
    }
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (rounds == 0) break;  // dead, but a process it forked holds the channel
      return;
    }
    // EOF or error: the worker is gone (or going); the zygote reports how.
    w.truncated = w.decoder.buffered_bytes() != 0;
    close_worker_fd(w);
    return;
  }
}

void ProcessEngine::Impl::on_frame(Worker& w, const FrameView& frame) {
  switch (frame.kind) {
    case FrameKind::kHello: {
      if (w.state != Worker::starting) throw FrameError("frame: unexpected Hello from a worker");
      const HelloMessage hello = decode_hello(frame.copy());
      if (!hello.initializer_ok) {
        recorder.count(Metric::initializer_errors);  // as ThreadPoolExecutor: per worker
        break_pool("the initializer failed in worker " + std::to_string(w.index) + ": " +
                   hello.message);
        return;
      }
      w.state = Worker::ready;
      recorder.worker_started();
      return;
    }
    case FrameKind::kResult:
    case FrameKind::kError: {
      if (w.inflight.empty() || w.inflight.front()->id != frame.task_id) {
        throw FrameError("frame: a worker answered task " + std::to_string(frame.task_id) +
                         ", which it was not running");
      }
      ProcessTask* t = w.inflight.front();
      // Before its end is counted: the worker names it in its slot until it has sent
      // the result, and a scrape must not see it both running and ended.
      done_ids[w.index].store(t->id, std::memory_order_release);
      if (frame.kind == FrameKind::kResult) {
        const ResultView r = decode_result(frame);
        record_task_cpu(ref_of(*t), r.cpu_ns);  // before the future can be ready
        try {
          t->complete(*t, r.value);
        } catch (const CodecError& e) {
          w.inflight.pop_front();
          finish(t, r.start_ns, r.end_ns,
                 std::make_exception_ptr(WorkerCrashedError(
                     "worker " + std::to_string(w.pid) + " returned a malformed result (" +
                     e.what() + "); the worker was replaced")));
          malformed(w, e.what(), /*blame=*/false);
          return;
        }
        w.inflight.pop_front();
        finish(t, r.start_ns, r.end_ns, nullptr, /*at_once=*/true);
      } else {
        const ErrorMessage e = decode_error(frame.copy());
        record_task_cpu(ref_of(*t), e.cpu_ns);
        w.inflight.pop_front();
        finish(t, e.start_ns, e.end_ns,
               std::make_exception_ptr(ProcessTaskError(e.type_name, e.what)), /*at_once=*/true);
      }
      ++w.done;
      return;
    }
    default:
      throw FrameError(std::string("frame: a worker sent a ") + frame_kind_name(frame.kind) +
                       " frame");
  }
}

}  // namespace executor_exporter::detail
