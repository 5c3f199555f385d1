// Private to src/process/: what the processes of the process pool share. The parent
// (process_engine*.cpp), the zygote (zygote.cpp), the preinit server (preinit_server.cpp)
// and the workers (worker_main.cpp) run in different processes but from one binary, and
// talk through the fixed-size messages, shared slots and helpers below.
//
// Processes and channels:
//   parent --(SOCK_SEQPACKET, fixed-size ZMsg)-- zygote: spawn / kill requests; spawned
//     (with the parent's end of the new worker's socketpair, by SCM_RIGHTS), spawn
//     failed, exited (wait status) reports.
//   parent --(SOCK_STREAM, frames of process/detail/frame.hpp)-- each worker.
//   A shared memory page (memfd) holds one slot per worker: the id and child-side start
//   time of the task it runs now. The parent reads it to know which task a dead worker
//   was running and when a task started (for timeouts), without a message per task.
// Every child closes each descriptor it does not own and leaves with _exit.
#pragma once

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
#include <time.h>
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
#include <optional>
#include <string>
#include <thread>
#include <typeinfo>
#include <utility>
#include <vector>

namespace executor_exporter::detail::process {

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
  std::uint64_t max_message;    // ProcessPoolOptions::max_message_bytes, as message_limit() made it
  std::uint64_t task_cpu_time;  // ExporterOptions::task_cpu_time: time each task's CPU
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
  // kExited: the worker's whole CPU time (user + system, from wait4's rusage), so that
  // executor_worker_cpu_seconds_total keeps what it used since the last scrape read it.
  std::uint64_t cpu_ns = 0;
};

/// CPU time (user + system) of `pid`, a live or not yet reaped process of this user,
/// read from its process CPU clock; nullopt when it cannot be read (gone, reaped).
inline std::optional<std::uint64_t> process_cpu_ns(pid_t pid) noexcept {
  clockid_t clock{};
  if (::clock_getcpuclockid(pid, &clock) != 0) return std::nullopt;
  timespec ts{};
  if (::clock_gettime(clock, &ts) != 0) return std::nullopt;
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000U +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

/// The calling process's CPU time: all its threads, so a task that starts threads of its
/// own is charged for them too.
inline std::uint64_t own_cpu_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000U +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

/// Ends a child at once: no atexit handlers, no static destructors, no stdio flush, and no
/// sanitizer finalization either (which would, e.g., turn the exit status into TSan's 66
/// because the parent had reported something before the fork).
[[noreturn]] inline void child_exit(int code) {
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

inline void close_from(int first) {
#ifdef SYS_close_range
  if (::syscall(SYS_close_range, static_cast<unsigned>(first), ~0U, 0U) == 0) return;
#endif
  long max = ::sysconf(_SC_OPEN_MAX);
  if (max < 0 || max > 65536) max = 65536;
  for (int fd = first; fd < max; ++fd) ::close(fd);
}

/// Puts `a` at fd 3 (and `b` at fd 4 when given) and closes every other descriptor
/// above 2. Works whatever numbers a and b had.
inline void keep_only(int a, int b = -1) {
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

inline bool send_all(int fd, const char* data, std::size_t size) {
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

inline bool send_with_fds(int fd, const void* buf, std::size_t len, const int* fds, int nfds) {
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
inline ssize_t recv_with_fds(int fd, void* buf, std::size_t len, int* fds, int max_fds, int flags) {
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

inline std::string demangle(const char* name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string out = status == 0 && d != nullptr ? d : name;
  std::free(d);
  return out;
}

/// Type name and what() of the exception being handled.
inline std::pair<std::string, std::string> describe_current_exception() {
  try {
    throw;
  } catch (const std::exception& e) {
    return {demangle(typeid(e).name()), e.what()};
  } catch (...) {
    const std::type_info* t = abi::__cxa_current_exception_type();
    return {t != nullptr ? demangle(t->name()) : "unknown exception", ""};
  }
}

inline std::string describe_status(int status) {
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

inline std::uint64_t read_statm_field(pid_t pid, int field) {
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

inline std::size_t thread_count() {
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return 1;
  std::size_t n = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n;
}

struct PreinitServer {
  std::mutex mutex;
  int fd = -1;
  pid_t pid = -1;
};

/// The process's preinit server (preinit_server.cpp); fd < 0 while none runs.
PreinitServer& preinit_server();

/// The worker process's loop (worker_main.cpp): reads task frames from `channel`, runs
/// them, writes results; leaves with child_exit.
[[noreturn]] void worker_main(int channel, std::uint32_t index, const ZygoteConfig& cfg,
                              WorkerSlot* slots, pid_t zygote);
/// The zygote (zygote.cpp): forks, kills and reaps the workers of one pool.
[[noreturn]] void zygote_main(ZygoteConfig cfg, int ctrl, int shm);

}  // namespace executor_exporter::detail::process
