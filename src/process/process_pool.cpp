// ProcessPoolExecutor's machinery: the zygote (a single-threaded process forked from the
// pool's constructor that forks, kills and reaps the workers), the worker loop, and the
// parent's I/O thread (epoll over the worker channels, the zygote channel, an eventfd for
// submissions and a timerfd for task timeouts).
//
// Processes and channels:
//   parent --(SOCK_SEQPACKET, fixed-size ZMsg)-- zygote: spawn / kill requests; spawned
//     (with the parent's end of the new worker's socketpair, by SCM_RIGHTS), spawn
//     failed, exited (wait status) reports.
//   parent --(SOCK_STREAM, frames of detail/frame.hpp)-- each worker.
//   A shared memory page (memfd) holds one slot per worker: the id and child-side start
//   time of the task it runs now. The parent reads it to know which task a dead worker
//   was running and when a task started (for timeouts), without a message per task.
// Every child closes each descriptor it does not own and leaves with _exit.

#include <executor_exporter/process/detail/process_engine.hpp>

#include <executor_exporter/detail/clock.hpp>
#include <executor_exporter/errors.hpp>
#include <executor_exporter/metrics/detail/executor_metrics.hpp>
#include <executor_exporter/metrics/detail/recorder.hpp>
#include <executor_exporter/metrics/detail/registry_state.hpp>
#include <executor_exporter/metrics/exporter.hpp>
#include <executor_exporter/process/detail/frame.hpp>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>

#include <cxxabi.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <typeinfo>
#include <utility>
#include <vector>

namespace executor_exporter::detail {

namespace {

// ---------------------------------------------------------------------------------------
// Shared definitions
// ---------------------------------------------------------------------------------------

/// One per worker index, in shared memory. task_id != 0 while the worker runs that task.
struct alignas(64) WorkerSlot {
  std::atomic<std::uint64_t> task_id;
  std::atomic<std::uint64_t> start_ns;
};

/// What the zygote needs; plain data so it can travel to the preinit server.
struct ZygoteConfig {
  std::uint64_t max_workers;
  std::uint64_t initializer;  // void(*)() bits, 0 when none
  std::uint64_t max_tasks_per_child;
  std::uint64_t memory_limit;
};

/// Zygote channel messages (one datagram each).
enum : std::uint32_t { kSpawn = 1, kKill = 2, kSpawned = 3, kSpawnFailed = 4, kExited = 5 };
struct ZMsg {
  std::uint32_t op = 0;
  std::uint32_t slot = 0;
  std::uint64_t gen = 0;
  std::int64_t pid = 0;
  std::int32_t status = 0;
  std::int32_t err = 0;
};

/// Ends a child at once: no atexit handlers, no static destructors, no stdio flush, and no
/// sanitizer finalization either (which would, e.g., turn the exit status into TSan's 66
/// because the parent had reported something before the fork).
[[noreturn]] void child_exit(int code) {
  ::syscall(SYS_exit_group, code);
  __builtin_unreachable();
}

// Worker exit codes with a meaning for the parent.
constexpr int kExitProtocol = 120;  // the parent's stream made no sense
constexpr int kExitIo = 121;        // the channel failed
constexpr int kExitMemory = 122;    // std::bad_alloc under the memory limit

constexpr int kZygoteCtrlFd = 3;
constexpr int kZygoteShmFd = 4;
constexpr int kWorkerFd = 3;

void close_from(int first) {
#ifdef SYS_close_range
  if (::syscall(SYS_close_range, static_cast<unsigned>(first), ~0U, 0U) == 0) return;
#endif
  long max = ::sysconf(_SC_OPEN_MAX);
  if (max < 0 || max > 65536) max = 65536;
  for (int fd = first; fd < max; ++fd) ::close(fd);
}

/// Puts `a` at fd 3 (and `b` at fd 4 when given) and closes every other descriptor
/// above 2. Works whatever numbers a and b had.
void keep_only(int a, int b = -1) {
  const int a2 = ::fcntl(a, F_DUPFD, 5);
  const int b2 = b >= 0 ? ::fcntl(b, F_DUPFD, 5) : -1;
  if (a2 < 0 || (b >= 0 && b2 < 0)) child_exit(kExitIo);
  ::dup2(a2, 3);
  ::fcntl(3, F_SETFD, FD_CLOEXEC);  // a program a task exec()s must not hold the channel
  if (b2 >= 0) {
    ::dup2(b2, 4);
    ::fcntl(4, F_SETFD, FD_CLOEXEC);
  }
  close_from(b2 >= 0 ? 5 : 4);
}

bool send_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

bool send_with_fds(int fd, const void* buf, std::size_t len, const int* fds, int nfds) {
  iovec iov{const_cast<void*>(buf), len};
  msghdr h{};
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 2)];
  if (nfds > 0) {
    std::memset(cbuf, 0, sizeof cbuf);
    h.msg_control = cbuf;
    h.msg_controllen = CMSG_SPACE(sizeof(int) * static_cast<std::size_t>(nfds));
    cmsghdr* c = CMSG_FIRSTHDR(&h);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * static_cast<std::size_t>(nfds));
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * static_cast<std::size_t>(nfds));
  }
  for (;;) {
    const ssize_t n = ::sendmsg(fd, &h, MSG_NOSIGNAL);
    if (n >= 0) return static_cast<std::size_t>(n) == len;
    if (errno != EINTR) return false;
  }
}

/// Receives one datagram; up to `max_fds` passed descriptors land in `fds` (others are
/// closed). Returns recvmsg's result.
ssize_t recv_with_fds(int fd, void* buf, std::size_t len, int* fds, int max_fds, int flags) {
  for (int i = 0; i < max_fds; ++i) fds[i] = -1;
  iovec iov{buf, len};
  msghdr h{};
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 4)];
  h.msg_control = cbuf;
  h.msg_controllen = sizeof cbuf;
  ssize_t n;
  do {
    n = ::recvmsg(fd, &h, flags | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return n;
  int got = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int passed;
      std::memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (got < max_fds) {
        fds[got++] = passed;
      } else {
        ::close(passed);
      }
    }
  }
  return n;
}

std::string demangle(const char* name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string out = status == 0 && d != nullptr ? d : name;
  std::free(d);
  return out;
}

/// Type name and what() of the exception being handled.
std::pair<std::string, std::string> describe_current_exception() {
  try {
    throw;
  } catch (const std::exception& e) {
    return {demangle(typeid(e).name()), e.what()};
  } catch (...) {
    const std::type_info* t = abi::__cxa_current_exception_type();
    return {t != nullptr ? demangle(t->name()) : "unknown exception", ""};
  }
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* abbrev = sigabbrev_np(sig);
    const char* desc = strsignal(sig);
    return "was killed by signal " + std::to_string(sig) + " (SIG" +
           std::string(abbrev != nullptr ? abbrev : "?") + ", " +
           std::string(desc != nullptr ? desc : "?") + ")";
  }
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended with wait status " + std::to_string(status);
}

std::uint64_t read_statm_field(pid_t pid, int field) {
  char path[64];
  if (pid > 0) {
    std::snprintf(path, sizeof path, "/proc/%d/statm", static_cast<int>(pid));
  } else {
    std::snprintf(path, sizeof path, "/proc/self/statm");
  }
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  unsigned long long v[2] = {0, 0};
  if (std::sscanf(buf, "%llu %llu", &v[0], &v[1]) != 2) return 0;
  return static_cast<std::uint64_t>(v[field]) * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

std::size_t thread_count() {
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return 1;
  std::size_t n = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n;
}

// ---------------------------------------------------------------------------------------
// Worker (child of the zygote)
// ---------------------------------------------------------------------------------------

[[noreturn]] void worker_main(int channel, std::uint32_t index, const ZygoteConfig& cfg,
                              WorkerSlot* slots, pid_t zygote) {
  keep_only(channel);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != zygote) child_exit(kExitIo);
  char name[16];
  std::snprintf(name, sizeof name, "ee-worker-%u", index);
  ::prctl(PR_SET_NAME, name);
  WorkerSlot& me = slots[index];
  me.task_id.store(0);

  if (cfg.memory_limit != 0) {
    const std::uint64_t base = read_statm_field(0, 0);
    rlimit lim{};
    lim.rlim_cur = lim.rlim_max = static_cast<rlim_t>(base + cfg.memory_limit);
    ::setrlimit(RLIMIT_AS, &lim);
  }

  bool init_ok = true;
  std::string init_message;
  if (cfg.initializer != 0) {
    try {
      function_from_wire<void (*)()>(cfg.initializer)();
    } catch (...) {
      auto [type, what] = describe_current_exception();
      init_ok = false;
      init_message = type + (what.empty() ? "" : ": " + what);
    }
  }
  {
    const std::string hello = encode_hello_frame(::getpid(), init_ok, init_message);
    if (!send_all(kWorkerFd, hello.data(), hello.size())) child_exit(kExitIo);
  }
  if (!init_ok) child_exit(0);

  FrameDecoder decoder;
  std::vector<char> buf(64 * 1024);
  std::string value;
  std::uint64_t done = 0;
  for (;;) {
    const ssize_t n = ::read(kWorkerFd, buf.data(), buf.size());
    if (n == 0) child_exit(0);
    if (n < 0) {
      if (errno == EINTR) continue;
      child_exit(kExitIo);
    }
    try {
      decoder.feed(std::string_view(buf.data(), static_cast<std::size_t>(n)));
      while (auto frame = decoder.next()) {
        if (frame->kind == FrameKind::kShutdown) child_exit(0);
        const std::uint64_t id = frame->task_id;
        TaskMessage task = decode_task(std::move(*frame));
        Decoder d(task.args);
        const std::uint64_t user = d.read_uint<std::uint64_t>("task function");
        const std::string_view args = std::string_view(task.args).substr(d.position());
        const auto trampoline = function_from_wire<ProcessTrampoline>(task.function);

        std::string reply;
        const std::uint64_t start = monotonic_ns();
        me.start_ns.store(start);
        me.task_id.store(id);
        try {
          try {
            trampoline(user, args, value);
            reply = encode_result_frame(id, value, start, monotonic_ns());
          } catch (const std::bad_alloc&) {
            if (cfg.memory_limit != 0) child_exit(kExitMemory);
            throw;
          }
        } catch (...) {
          const std::uint64_t end = monotonic_ns();
          auto [type, what] = describe_current_exception();
          reply = encode_error_frame(id, type, what, start, end);
        }
        if (!send_all(kWorkerFd, reply.data(), reply.size())) child_exit(kExitIo);
        me.task_id.store(0);
        if (cfg.max_tasks_per_child != 0 && ++done >= cfg.max_tasks_per_child) child_exit(0);
      }
    } catch (const std::bad_alloc&) {
      child_exit(cfg.memory_limit != 0 ? kExitMemory : kExitIo);
    } catch (...) {
      child_exit(kExitProtocol);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Zygote
// ---------------------------------------------------------------------------------------

[[noreturn]] void zygote_main(ZygoteConfig cfg, int ctrl, int shm) {
  keep_only(ctrl, shm);
  ::signal(SIGCHLD, SIG_DFL);  // SIG_IGN would make the kernel reap for us, hiding statuses
  ::prctl(PR_SET_NAME, "ee-zygote");
  const std::size_t n = static_cast<std::size_t>(cfg.max_workers);
  void* mem = ::mmap(nullptr, n * sizeof(WorkerSlot), PROT_READ | PROT_WRITE, MAP_SHARED,
                     kZygoteShmFd, 0);
  ::close(kZygoteShmFd);
  if (mem == MAP_FAILED) child_exit(kExitIo);
  auto* slots = static_cast<WorkerSlot*>(mem);
  const pid_t self = ::getpid();

  struct Child {
    pid_t pid = 0;
    std::uint64_t gen = 0;
    int pidfd = -1;
  };
  std::vector<Child> children(n);
  bool use_pidfd = true;

  auto stop = [&]() {
    for (auto& c : children) {
      if (c.pid > 0) ::kill(c.pid, SIGKILL);
    }
    for (auto& c : children) {
      if (c.pid > 0) {
        while (::waitpid(c.pid, nullptr, 0) < 0 && errno == EINTR) {
        }
      }
    }
    child_exit(0);
  };
  auto reply = [&](const ZMsg& m, int fd = -1) {
    if (!send_with_fds(kZygoteCtrlFd, &m, sizeof m, &fd, fd >= 0 ? 1 : 0)) stop();
  };

  std::vector<pollfd> fds;
  for (;;) {
    fds.clear();
    fds.push_back({kZygoteCtrlFd, POLLIN, 0});
    for (auto& c : children) {
      if (c.pidfd >= 0) fds.push_back({c.pidfd, POLLIN, 0});
    }
    const int r = ::poll(fds.data(), fds.size(), use_pidfd ? -1 : 20);
    if (r < 0 && errno != EINTR) stop();

    // Reap whatever ended (pidfds only wake us; waitpid collects).
    for (;;) {
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      for (std::size_t i = 0; i < n; ++i) {
        Child& c = children[i];
        if (c.pid != pid) continue;
        if (c.pidfd >= 0) ::close(c.pidfd);
        ZMsg m;
        m.op = kExited;
        m.slot = static_cast<std::uint32_t>(i);
        m.gen = c.gen;
        m.pid = pid;
        m.status = status;
        c = Child{};
        reply(m);
      }
    }

    if (r <= 0 || (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
    ZMsg req;
    int none[1];
    const ssize_t got = recv_with_fds(kZygoteCtrlFd, &req, sizeof req, none, 0, MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (got != static_cast<ssize_t>(sizeof req) || req.slot >= n) stop();  // EOF: the pool is done
    Child& c = children[req.slot];
    if (req.op == kKill) {
      if (c.pid > 0 && c.pid == req.pid && c.gen == req.gen) ::kill(c.pid, SIGKILL);
      continue;
    }
    if (req.op != kSpawn || c.pid > 0) stop();
    ZMsg m;
    m.slot = req.slot;
    m.gen = req.gen;
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      m.op = kSpawnFailed;
      m.err = errno;
      reply(m);
      continue;
    }
    const pid_t pid = ::fork();
    if (pid == 0) worker_main(sv[1], req.slot, cfg, slots, self);
    ::close(sv[1]);
    if (pid < 0) {
      m.op = kSpawnFailed;
      m.err = errno;
      ::close(sv[0]);
      reply(m);
      continue;
    }
    c.pid = pid;
    c.gen = req.gen;
#ifdef SYS_pidfd_open
    c.pidfd = use_pidfd ? static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)) : -1;
#endif
    if (c.pidfd < 0) use_pidfd = false;  // Linux < 5.3: poll with a short timeout instead
    m.op = kSpawned;
    m.pid = pid;
    reply(m, sv[0]);
    ::close(sv[0]);
  }
}

// ---------------------------------------------------------------------------------------
// Preinit server: a zygote of zygotes, forked while the process is single-threaded.
// ---------------------------------------------------------------------------------------

struct PreinitServer {
  std::mutex mutex;
  int fd = -1;
  pid_t pid = -1;
};

PreinitServer& preinit_server() {
  static auto* s = new PreinitServer;  // leaked: pools may be destroyed during exit
  return *s;
}

[[noreturn]] void preinit_main(int ctrl) {
  keep_only(ctrl);
  ::signal(SIGCHLD, SIG_DFL);
  ::prctl(PR_SET_NAME, "ee-preinit");
  for (;;) {
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    pollfd p{3, POLLIN, 0};
    const int r = ::poll(&p, 1, 100);
    if (r <= 0) continue;
    ZygoteConfig cfg{};
    int fds[2];
    const ssize_t got = recv_with_fds(3, &cfg, sizeof cfg, fds, 2, 0);
    if (got != static_cast<ssize_t>(sizeof cfg) || fds[0] < 0 || fds[1] < 0) {
      if (got > 0) {
        if (fds[0] >= 0) ::close(fds[0]);
        if (fds[1] >= 0) ::close(fds[1]);
        continue;
      }
      // Stopped: reap the zygotes (each exits when its pool closes its channel) so none
      // is left to init.
      while (::waitpid(-1, nullptr, 0) > 0 || errno == EINTR) {
      }
      child_exit(0);
    }
    const pid_t pid = ::fork();
    if (pid == 0) zygote_main(cfg, fds[0], fds[1]);
    ::close(fds[0]);
    ::close(fds[1]);
    const std::int64_t reply = pid;
    if (!send_with_fds(3, &reply, sizeof reply, nullptr, 0)) child_exit(0);
  }
}

}  // namespace

void process_preinit() {
  // Calibrate the TSC clock before any fork, so children inherit a finished calibration
  // (a fork while another thread is inside the one-time initialisation would leave the
  // child blocked on it). Task times themselves use CLOCK_MONOTONIC on both sides.
  (void)now_ns();
  auto& s = preinit_server();
  std::lock_guard lock(s.mutex);
  if (s.fd >= 0) return;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    throw ExecutorError(std::string("process pool: socketpair failed: ") + std::strerror(errno));
  }
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) preinit_main(sv[1]);
  ::close(sv[1]);
  if (pid < 0) {
    ::close(sv[0]);
    throw ExecutorError(std::string("process pool: fork failed: ") + std::strerror(errno));
  }
  s.fd = sv[0];
  s.pid = pid;
}

void process_preinit_stop() {
  auto& s = preinit_server();
  std::lock_guard lock(s.mutex);
  if (s.fd < 0) return;
  ::close(s.fd);
  while (::waitpid(s.pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  s.fd = -1;
  s.pid = -1;
}

// ---------------------------------------------------------------------------------------
// Parent side
// ---------------------------------------------------------------------------------------

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
  std::uint64_t hook = 0;
  // Per worker index: the task whose result the I/O thread counts now or last, so that
  // running_now() does not count a task twice while its slot still names it.
  std::unique_ptr<std::atomic<std::uint64_t>[]> done_ids;
  std::uint64_t probe = 0;  // add_running_probe's handle

  // =====================================================================================
  void start() {
    if (preinit_server().fd < 0) check_threads();
    pids.assign(n, 0);
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

    ZygoteConfig cfg{};
    cfg.max_workers = n;
    cfg.initializer = opts.initializer != nullptr ? function_to_wire(opts.initializer) : 0;
    cfg.max_tasks_per_child = opts.max_tasks_per_child;
    cfg.memory_limit = opts.memory_limit_bytes;

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

  [[noreturn]] static void fail_errno(const char* what) {
    throw ExecutorError(std::string("process pool: ") + what + " failed: " + std::strerror(errno));
  }

  void check_threads() {
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

  void setup_metrics() { hook = metrics.add_fold_hook([this] { sample(); }); }

  /// Scrape time: each worker's resident memory from /proc.
  void sample() {
    std::vector<pid_t> now;
    {
      std::lock_guard lock(pid_mu);
      now = pids;
    }
    for (std::size_t i = 0; i < now.size(); ++i) {
      metrics.sample(Metric::worker_resident, std::to_string(i),
                     now[i] > 0 ? static_cast<double>(read_statm_field(now[i], 1)) : 0.0);
    }
  }

  void set_pid(std::size_t i, pid_t pid) {
    std::lock_guard lock(pid_mu);
    pids[i] = pid;
  }

  void watch(int fd, std::uint64_t tag, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
  }

  void wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t r = ::write(event_fd, &one, sizeof one);
  }

  // =====================================================================================
  // Submitters
  // =====================================================================================

  // The task as the recorder knows it. Its times are CLOCK_MONOTONIC, the clock the
  // child stamps start/end with (not now_ns(), whose TSC calibration is a different,
  // drifting time base).
  TaskRef ref_of(const ProcessTask& task) {
    return {task.series != nullptr ? task.series : &metrics, task.submit_ns, task.observer_id};
  }

  void enqueue(ProcessTask* task) {
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
      queue.push_back(task);
      Recorder::submitted(ref);
    }
    if (was_empty) wake();
  }

  std::string broken_message(const std::string& reason) const {
    return "process pool '" + id_label + "' is broken: " + reason;
  }

  void shutdown(bool wait, bool cancel_futures) {
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
      delete t;
    }
    if (wait) join();
  }

  void kill_workers() {
    {
      std::lock_guard lock(mu);
      closed = true;
      kill_requested = true;
    }
    wake();
    join();
  }

  void join() {
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

  // =====================================================================================
  // Completion thread: publishes results, so future callbacks never run on the I/O thread
  // =====================================================================================

  void completer_loop() {
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

  void flush_publish() {
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

  // =====================================================================================
  // I/O thread
  // =====================================================================================

  void io_loop() {
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

  void after_events() {
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

  bool idle() const {
    return std::all_of(workers.begin(), workers.end(),
                       [](const Worker& w) { return w.inflight.empty(); });
  }

  // ---- dispatch

  std::size_t room(const Worker& w) const {
    if (w.state != Worker::ready || w.kill != Worker::no_kill) return 0;
    std::size_t cap = opts.max_inflight_per_worker;
    if (opts.max_tasks_per_child != 0) {
      const std::uint64_t left =
          opts.max_tasks_per_child > w.sent ? opts.max_tasks_per_child - w.sent : 0;
      cap = static_cast<std::size_t>(std::min<std::uint64_t>(cap, left));
    }
    return cap > w.inflight.size() ? cap - w.inflight.size() : 0;
  }

  static bool start_task(ProcessTask& t) {
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

  void dispatch() {
    if (broken || tearing_down) return;
    std::size_t free = 0;
    for (auto& w : workers) free += room(w);
    if (free == 0) return;
    std::vector<ProcessTask*> batch;
    while (!redo.empty() && batch.size() < free) {
      batch.push_back(redo.front());
      redo.pop_front();
    }
    if (batch.size() < free) {
      std::lock_guard lock(mu);
      while (!queue.empty() && batch.size() < free) {
        batch.push_back(queue.front());
        queue.pop_front();
      }
    }
    for (ProcessTask* t : batch) {
      if (!start_task(*t)) {  // cancelled while queued; cancel() counted a single task
        if (!t->chunk.empty()) Recorder::cancelled(ref_of(*t));
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
  }

  void flush_out(Worker& w) {
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

  void set_out_interest(Worker& w, bool on) {
    epoll_event ev{};
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0U);
    ev.data.u64 = kWorkerTag + w.index;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, w.fd, &ev);
    w.want_out = on;
  }

  // ---- zygote channel

  void spawn(Worker& w) {
    ++w.gen;
    w.state = Worker::spawning;
    w.pid = 0;
    w.sent = w.done = 0;
    w.kill = Worker::no_kill;
    w.kill_task = 0;
    w.kill_detail.clear();
    w.truncated = false;
    w.decoder = FrameDecoder();
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

  void request_kill(Worker& w) {
    ZMsg m;
    m.op = kKill;
    m.slot = w.index;
    m.gen = w.gen;
    m.pid = w.pid;
    if (!send_with_fds(zygote_fd, &m, sizeof m, nullptr, 0)) break_pool("the zygote process died");
  }

  void on_zygote() {
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

  // ---- worker channels

  void on_worker(Worker& w, std::uint32_t events) {
    if (w.fd < 0) return;
    if ((events & EPOLLOUT) != 0) flush_out(w);
    read_worker(w, 16);
  }

  /// Reads up to `rounds` buffers (or until EOF when rounds is 0: the worker is dead).
  void read_worker(Worker& w, int rounds) {
    for (int r = 0; w.fd >= 0 && (rounds == 0 || r < rounds); ++r) {
      const ssize_t k = ::recv(w.fd, rbuf.data(), rbuf.size(), MSG_DONTWAIT);
      if (k > 0) {
        try {
          w.decoder.feed(std::string_view(rbuf.data(), static_cast<std::size_t>(k)));
          while (w.fd >= 0) {
            auto frame = w.decoder.next();
            if (!frame) break;
            on_frame(w, std::move(*frame));
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

  void close_worker_fd(Worker& w) {
    if (w.fd < 0) return;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, w.fd, nullptr);
    ::close(w.fd);
    w.fd = -1;
    w.want_out = false;
  }

  /// The worker's stream is broken: kill it. With `blame`, the task it runs (or the next
  /// one it owes an answer for) fails with WorkerCrashedError; the others are sent again.
  void malformed(Worker& w, const std::string& detail, bool blame = true) {
    if (w.kill == Worker::no_kill) {
      w.kill = Worker::malformed_kill;
      const std::uint64_t running = slots[w.index].task_id.load();
      w.kill_task = !blame ? 0
                    : running != 0 ? running
                                   : (w.inflight.empty() ? 0 : w.inflight.front()->id);
      w.kill_detail = detail;
      request_kill(w);
    }
    close_worker_fd(w);
  }

  void on_frame(Worker& w, Frame frame) {
    switch (frame.kind) {
      case FrameKind::kHello: {
        if (w.state != Worker::starting) throw FrameError("frame: unexpected Hello from a worker");
        const HelloMessage hello = decode_hello(frame);
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
          ResultMessage r = decode_result(std::move(frame));
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
          finish(t, r.start_ns, r.end_ns, nullptr);
        } else {
          const ErrorMessage e = decode_error(frame);
          w.inflight.pop_front();
          finish(t, e.start_ns, e.end_ns,
                 std::make_exception_ptr(ProcessTaskError(e.type_name, e.what)));
        }
        ++w.done;
        return;
      }
      default:
        throw FrameError(std::string("frame: a worker sent a ") + frame_kind_name(frame.kind) +
                         " frame");
    }
  }

  /// A task ran (start_ns/end_ns from the child): metrics, outcome, hand-off to publish.
  void finish(ProcessTask* t, std::uint64_t start, std::uint64_t end, std::exception_ptr error) {
    const auto states = t->states();
    Recorder::ran(ref_of(*t), start, end, error == nullptr, error);
    for (std::size_t i = 0; i < states.size(); ++i) {
      if (!is_started(*t, i)) continue;
      if (error) states[i]->store_error(error);
      to_publish.push_back(states[i]);
      states[i] = nullptr;  // the reference moves to the publisher
    }
    delete t;
  }

  static bool is_started(const ProcessTask& t, std::size_t i) {
    return t.chunk.empty() ? t.dispatched : t.started[i] != 0;
  }

  /// A task that never ran (broken pool): it fails, counted as cancelled. A chunk counts
  /// once, whatever became of its items; a single task cancelled by its future was
  /// counted then.
  void fail_unstarted(ProcessTask* t, const std::exception_ptr& error) {
    const bool started = start_task(*t);
    if (!t->chunk.empty() || started) Recorder::cancelled(ref_of(*t));
    const auto states = t->states();
    for (std::size_t i = 0; i < states.size(); ++i) {
      if (!is_started(*t, i)) continue;
      states[i]->store_error(error);
      to_publish.push_back(states[i]);
      states[i] = nullptr;
    }
    delete t;
  }

  // ---- deaths

  void on_exit(Worker& w, int status) {
    if (w.fd >= 0) read_worker(w, 0);  // everything it wrote is there; then EOF
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
    const std::string who = "worker " + std::to_string(w.index) + " (pid " + std::to_string(w.pid) + ")";

    RestartReason reason = kCrashed;
    std::exception_ptr error;
    if (w.kill == Worker::timeout_kill) {
      reason = kTimeout;
      error = std::make_exception_ptr(TaskTimeoutError(
          "task ran longer than its timeout of " + seconds(opts.task_timeout.count()) + "; " + who +
          " was killed and replaced"));
    } else if (w.kill == Worker::malformed_kill) {
      error = std::make_exception_ptr(
          WorkerCrashedError(who + " sent a malformed frame (" + w.kill_detail + ") and was replaced"));
    } else if (opts.memory_limit_bytes != 0 && WIFEXITED(status) &&
               WEXITSTATUS(status) == kExitMemory) {
      error = std::make_exception_ptr(WorkerCrashedError(
          who + " exceeded its memory limit of " + std::to_string(opts.memory_limit_bytes) +
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

  static std::string seconds(std::int64_t ns) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g s", static_cast<double>(ns) / 1e9);
    return buf;
  }

  // ---- timeouts

  /// The start of the task `w` runs now, or 0 when none (consistent pair read).
  std::uint64_t running_start(const Worker& w, std::uint64_t* id_out) const {
    return running_start(w.index, id_out);
  }
  std::uint64_t running_start(std::size_t index, std::uint64_t* id_out) const {
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

  /// Scrape side (a fold): the tasks the workers run now whose end is not counted yet,
  /// and their run time so far, so that they show as running and busy while they run
  /// (their start and end are counted together when the result arrives). A chunk of
  /// map() items counts as one running task until its items are counted.
  ExecutorMetrics::Running running_now() const {
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

  void check_timeouts() {
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

  void update_timer() {
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

  // ---- the end

  void break_pool(const std::string& reason) {
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

  /// Closes every channel; the zygote then kills and reaps the workers and exits, and we
  /// reap the zygote.
  void teardown() {
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

  void stop_zygote() {
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

  ~Impl() {
    if (probe != 0) metrics.remove_running_probe(probe);  // before the slots go
    shutdown(true, false);
    if (hook != 0) metrics.remove_fold_hook(hook);
    sample();
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

// ---------------------------------------------------------------------------------------

ProcessEngine::ProcessEngine(const ProcessPoolOptions& options, ExecutorExporter& exporter)
    : impl_(std::make_unique<Impl>(options, exporter)) {
  impl_->start();
}

ProcessEngine::~ProcessEngine() = default;

void ProcessEngine::enqueue(ProcessTask* task) { impl_->enqueue(task); }
void ProcessEngine::shutdown(bool wait, bool cancel_futures) { impl_->shutdown(wait, cancel_futures); }
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
