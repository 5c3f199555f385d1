// The zygote: a single-threaded process forked before the pool starts any thread, so
// that forking workers from it is safe whatever the parent's threads hold. It forks,
// kills and reaps the workers on the parent's requests.
#include "process_internal.hpp"

namespace executor_exporter::detail::process {

[[noreturn]] void zygote_main(ZygoteConfig cfg, int ctrl, int shm) {
  keep_only(ctrl, shm);
  ::signal(SIGCHLD, SIG_DFL);  // SIG_IGN would make the kernel reap for us, hiding statuses
  ::prctl(PR_SET_NAME, "ee-zygote");
  const std::size_t n = static_cast<std::size_t>(cfg.max_workers);
  void* mem =
      ::mmap(nullptr, n * sizeof(WorkerSlot), PROT_READ | PROT_WRITE, MAP_SHARED, kZygoteShmFd, 0);
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
      rusage usage{};
      const pid_t pid = ::wait4(-1, &status, WNOHANG, &usage);
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
        m.cpu_ns =
            static_cast<std::uint64_t>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) *
                1'000'000'000U +
            static_cast<std::uint64_t>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1'000U;
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

}  // namespace executor_exporter::detail::process
