// The preinit server: a zygote of zygotes, forked by ProcessPoolExecutor::preinit() while
// the process is still single-threaded, so pools created later, from a threaded
// process, get their zygote forked from it instead of from themselves.
#include "process_internal.hpp"

namespace executor_exporter::detail::process {

PreinitServer& preinit_server() {
  static auto* s = new PreinitServer;  // leaked: pools may be destroyed during exit
  return *s;
}

namespace {

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

}  // namespace executor_exporter::detail::process

namespace executor_exporter::detail {

using namespace process;

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

}  // namespace executor_exporter::detail
