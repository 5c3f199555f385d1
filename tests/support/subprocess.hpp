// Child processes for tests (POSIX fork + execve), with RAII cleanup.
//
//   ee_test::Subprocess demo({"/path/to/demo", "--port", "8080"});
//   auto line = demo.read_stdout_line(std::chrono::seconds(10));
//   demo.send_signal(SIGINT);
//   auto status = demo.wait_for_exit(std::chrono::seconds(10));  // exit code, or -signal
//
// Whatever happens, a Subprocess never outlives its object: the destructor terminates the child
// (SIGTERM, SIGKILL after a short grace period) and reaps it. As a second line of defence the
// child gets PR_SET_PDEATHSIG(SIGKILL) on Linux, so it is killed if the test process dies (note:
// this fires when the *thread* that created the Subprocess exits).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>
#if defined(__linux__)
#include <sys/prctl.h>
#if __has_include(<linux/close_range.h>)
#include <linux/close_range.h>
#endif
#endif

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace ee_test {

class Subprocess {
 public:
  // Where a standard stream of the child goes.
  struct Redirect {
    enum class Kind { Inherit, Null, Pipe, File };
    Kind kind = Kind::Pipe;
    std::string path;  // for File

    static Redirect inherit() { return {Kind::Inherit, {}}; }
    static Redirect null() { return {Kind::Null, {}}; }
    // Captured by the parent (see stdout_text(), read_stdout_line()). stdout/stderr only.
    static Redirect pipe() { return {Kind::Pipe, {}}; }
    // stdin: read from the file; stdout/stderr: truncate and write to the file.
    static Redirect file(std::string p) { return {Kind::File, std::move(p)}; }
  };

  struct Options {
    Redirect stdin_redirect = Redirect::null();
    Redirect stdout_redirect = Redirect::pipe();
    Redirect stderr_redirect = Redirect::pipe();
    // Added to (or overriding) the parent's environment.
    std::vector<std::pair<std::string, std::string>> env;
    // Working directory of the child ("" = the parent's).
    std::string working_dir;
  };

  explicit Subprocess(std::vector<std::string> argv) : Subprocess(std::move(argv), Options{}) {}

  Subprocess(std::vector<std::string> argv, const Options& options) : argv_(std::move(argv)) {
    if (argv_.empty()) throw std::invalid_argument("Subprocess: empty argv");
    start(options);
  }

  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  ~Subprocess() {
    try {
      terminate(std::chrono::seconds(2));
    } catch (...) {
      // Last resort: never leave the child running.
      if (!status_) {
        ::kill(pid_, SIGKILL);
        int st = 0;
        while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
        }
      }
    }
    stop_reader(std::chrono::milliseconds(500));
  }

  pid_t pid() const { return pid_; }

  // "argv[0] argv[1] ..." for messages.
  std::string describe() const {
    std::string s;
    for (const auto& a : argv_) s += (s.empty() ? "" : " ") + a;
    return s;
  }

  // True while the child has not exited (reaps it if it has).
  bool running() { return !poll_exit(); }

  // Exit status once the child has been reaped: the exit code, or -N if killed by signal N.
  std::optional<int> exit_status() const { return status_; }

  // Waits up to `timeout` for the child to exit. Returns its exit status (exit code, or -N when
  // killed by signal N), or std::nullopt if it is still running.
  std::optional<int> wait_for_exit(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!poll_exit()) {
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return status_;
  }

  // Sends `sig` if the child is still running.
  void send_signal(int sig) {
    if (!poll_exit()) ::kill(pid_, sig);
  }

  // SIGTERM, then SIGKILL if the child is still running after `grace`. Returns the exit status.
  int terminate(std::chrono::milliseconds grace = std::chrono::seconds(5)) {
    if (poll_exit()) return *status_;
    ::kill(pid_, SIGTERM);
    if (auto st = wait_for_exit(grace)) return *st;
    ::kill(pid_, SIGKILL);
    int st = 0;
    pid_t r;
    do {
      r = ::waitpid(pid_, &st, 0);
    } while (r < 0 && errno == EINTR);
    if (r == pid_) record_status(st);
    if (!status_) status_ = -SIGKILL;
    return *status_;
  }

  // Everything the child wrote to a piped stdout/stderr so far.
  std::string stdout_text() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return out_;
  }
  std::string stderr_text() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return err_;
  }

  // Next complete line (without '\n') of a piped stdout; lines are consumed in order. Returns
  // std::nullopt on timeout or when stdout was closed before another full line arrived.
  std::optional<std::string> read_stdout_line(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    std::optional<std::string> line;
    cv_.wait_for(lock, timeout, [&] {
      const auto nl = out_.find('\n', line_pos_);
      if (nl != std::string::npos) {
        line = out_.substr(line_pos_, nl - line_pos_);
        line_pos_ = nl + 1;
        return true;
      }
      return out_eof_;
    });
    return line;
  }

  // Waits until `pred(stdout_text, stderr_text)` holds (re-checked whenever output arrives).
  template <class Pred>
  bool wait_for_output(Pred pred, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] {
      return pred(std::as_const(out_), std::as_const(err_)) || (out_eof_ && err_eof_);
    }) && pred(std::as_const(out_), std::as_const(err_));
  }

  // Waits (up to `timeout`) until piped stdout and stderr reached end-of-file, i.e. all output
  // of the child has been collected. Returns false on timeout.
  bool wait_for_output_eof(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return out_eof_ && err_eof_; });
  }

 private:
  static std::string resolve(const std::string& prog) {
    if (prog.find('/') != std::string::npos) return prog;
    const char* path_env = std::getenv("PATH");
    std::string_view path = path_env ? path_env : "/usr/local/bin:/usr/bin:/bin";
    while (true) {
      const auto colon = path.find(':');
      const std::string_view dir = path.substr(0, colon);
      std::string candidate;
      candidate.append(dir.empty() ? std::string_view(".") : dir).append("/").append(prog);
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
      if (colon == std::string_view::npos) break;
      path.remove_prefix(colon + 1);
    }
    throw std::runtime_error("Subprocess: '" + prog + "' not found in PATH");
  }

  struct PipePair {
    int fds[2] = {-1, -1};
  };

  static void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }

  static int open_for(const Redirect& r, bool for_write) {
    switch (r.kind) {
      case Redirect::Kind::Null:
        return ::open("/dev/null", (for_write ? O_WRONLY : O_RDONLY) | O_CLOEXEC);
      case Redirect::Kind::File:
        return for_write ? ::open(r.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
                         : ::open(r.path.c_str(), O_RDONLY | O_CLOEXEC);
      default:
        return -1;
    }
  }

  void start(const Options& o) {
    const std::string path = resolve(argv_[0]);
    if (o.stdin_redirect.kind == Redirect::Kind::Pipe) {
      throw std::invalid_argument("Subprocess: stdin cannot be a pipe (use Redirect::file)");
    }

    // Child's fds for 0, 1, 2 (-1 = inherit) and the parent's read ends.
    int child_fd[3] = {-1, -1, -1};
    int parent_read[3] = {-1, -1, -1};
    auto cleanup = [&] {
      for (int& fd : child_fd) close_fd(fd);
      for (int& fd : parent_read) close_fd(fd);
    };
    const Redirect* redirects[3] = {&o.stdin_redirect, &o.stdout_redirect, &o.stderr_redirect};
    for (int i = 0; i < 3; ++i) {
      const Redirect& r = *redirects[i];
      if (r.kind == Redirect::Kind::Inherit) continue;
      if (r.kind == Redirect::Kind::Pipe) {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) {
          cleanup();
          throw std::runtime_error(std::string("Subprocess: pipe2() failed: ") +
                                   std::strerror(errno));
        }
        parent_read[i] = p[0];
        child_fd[i] = p[1];
        continue;
      }
      child_fd[i] = open_for(r, i != 0);
      if (child_fd[i] < 0) {
        const int err = errno;
        cleanup();
        throw std::runtime_error("Subprocess: cannot open '" + r.path + "' for fd " +
                                 std::to_string(i) + ": " + std::strerror(err));
      }
    }

    // Everything the child needs is prepared before fork (only async-signal-safe calls after).
    std::vector<char*> argv;
    for (auto& a : argv_) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** e = environ; e && *e; ++e) {
      std::string_view kv(*e);
      const auto name = kv.substr(0, kv.find('='));
      bool overridden = false;
      for (const auto& [k, v] : o.env) overridden = overridden || k == name;
      if (!overridden) env_strings.emplace_back(kv);
    }
    for (const auto& [k, v] : o.env) env_strings.push_back(k + "=" + v);
    std::vector<char*> envp;
    envp.reserve(env_strings.size() + 1);
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    const char* cwd = o.working_dir.empty() ? nullptr : o.working_dir.c_str();

    int err_pipe[2];
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
      cleanup();
      throw std::runtime_error(std::string("Subprocess: pipe2() failed: ") + std::strerror(errno));
    }

    // Block signals around fork so that no parent handler runs in the child before exec.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
      // --- child ---
#if defined(__linux__)
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
#endif
      struct sigaction dfl;
      std::memset(&dfl, 0, sizeof dfl);
      dfl.sa_handler = SIG_DFL;
      for (int s = 1; s < NSIG; ++s) ::sigaction(s, &dfl, nullptr);  // also undoes SIG_IGN
      for (int i = 0; i < 3; ++i) {
        if (child_fd[i] >= 0 && ::dup2(child_fd[i], i) < 0) {
          const int e = errno;
          (void)!::write(err_pipe[1], &e, sizeof e);
          ::_exit(127);
        }
      }
      if (cwd && ::chdir(cwd) != 0) {
        const int e = errno;
        (void)!::write(err_pipe[1], &e, sizeof e);
        ::_exit(127);
      }
#if defined(__linux__) && defined(CLOSE_RANGE_CLOEXEC)
      // Do not leak the parent's other descriptors (sockets, ...) into the child.
      ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
#endif
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execve(path.c_str(), argv.data(), envp.data());
      const int e = errno;
      (void)!::write(err_pipe[1], &e, sizeof e);
      ::_exit(127);
    }
    const int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    for (int& fd : child_fd) close_fd(fd);
    ::close(err_pipe[1]);
    if (pid < 0) {
      ::close(err_pipe[0]);
      cleanup();
      throw std::runtime_error(std::string("Subprocess: fork() failed: ") +
                               std::strerror(fork_errno));
    }
    pid_ = pid;

    // exec succeeded iff the CLOEXEC error pipe is closed without data.
    int child_errno = 0;
    ssize_t n;
    do {
      n = ::read(err_pipe[0], &child_errno, sizeof child_errno);
    } while (n < 0 && errno == EINTR);
    ::close(err_pipe[0]);
    if (n > 0) {
      int st = 0;
      while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
      }
      record_status(st);
      cleanup();
      throw std::runtime_error("Subprocess: cannot execute '" + path +
                               "': " + std::strerror(child_errno));
    }

    out_fd_ = parent_read[1];
    err_fd_ = parent_read[2];
    out_eof_ = out_fd_ < 0;
    err_eof_ = err_fd_ < 0;
    if (out_fd_ >= 0 || err_fd_ >= 0) reader_ = std::thread([this] { read_loop(); });
  }

  void read_loop() {
    char buf[8192];
    while (!stop_.load()) {
      pollfd fds[2];
      nfds_t n = 0;
      if (out_fd_ >= 0) fds[n++] = {out_fd_, POLLIN, 0};
      if (err_fd_ >= 0) fds[n++] = {err_fd_, POLLIN, 0};
      if (n == 0) break;
      const int r = ::poll(fds, n, 50);
      if (r < 0 && errno != EINTR) break;
      if (r <= 0) continue;
      for (nfds_t i = 0; i < n; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const bool is_out = fds[i].fd == out_fd_;
        const ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        std::lock_guard<std::mutex> lock(mutex_);
        if (got > 0) {
          (is_out ? out_ : err_).append(buf, static_cast<std::size_t>(got));
        } else {
          if (is_out) {
            close_fd(out_fd_);
            out_eof_ = true;
          } else {
            close_fd(err_fd_);
            err_eof_ = true;
          }
        }
        cv_.notify_all();
      }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    close_fd(out_fd_);
    close_fd(err_fd_);
    out_eof_ = err_eof_ = true;
    cv_.notify_all();
  }

  // Lets the reader collect the remaining output (up to `linger`), then stops it.
  void stop_reader(std::chrono::milliseconds linger) {
    if (!reader_.joinable()) return;
    wait_for_output_eof(linger);
    stop_.store(true);
    reader_.join();
  }

  void record_status(int st) {
    if (WIFEXITED(st)) {
      status_ = WEXITSTATUS(st);
    } else if (WIFSIGNALED(st)) {
      status_ = -WTERMSIG(st);
    }
  }

  // Reaps the child if it has exited; true once it has.
  bool poll_exit() {
    if (status_) return true;
    int st = 0;
    pid_t r;
    do {
      r = ::waitpid(pid_, &st, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == pid_) {
      record_status(st);
      return status_.has_value();
    }
    if (r < 0) {  // ECHILD: someone else reaped it; treat as gone.
      status_ = -SIGKILL;
      return true;
    }
    return false;
  }

  std::vector<std::string> argv_;
  pid_t pid_ = -1;
  std::optional<int> status_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::string out_, err_;
  std::size_t line_pos_ = 0;
  bool out_eof_ = true, err_eof_ = true;
  int out_fd_ = -1, err_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread reader_;
};

struct CaptureResult {
  int exit_code = -1;  // exit code, or -N when killed by signal N
  bool timed_out = false;
  std::string out;
  std::string err;
};

// Runs argv to completion with `stdin_text` on its stdin, capturing stdout and stderr. If it
// does not finish within `timeout` it is terminated and `timed_out` is set.
inline CaptureResult run_and_capture(const std::vector<std::string>& argv,
                                     const std::string& stdin_text = {},
                                     std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  // stdin comes from an unlinked temporary file: no pipe, so no SIGPIPE/deadlock concerns.
  std::string templ = (std::filesystem::temp_directory_path() / "ee_stdin.XXXXXX").string();
  const int fd = ::mkstemp(templ.data());
  if (fd < 0) {
    throw std::runtime_error("run_and_capture: mkstemp failed: " +
                             std::string(std::strerror(errno)));
  }
  std::size_t written = 0;
  while (written < stdin_text.size()) {
    const ssize_t n = ::write(fd, stdin_text.data() + written, stdin_text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(templ.c_str());
      throw std::runtime_error("run_and_capture: writing stdin file failed: " +
                               std::string(std::strerror(err)));
    }
    written += static_cast<std::size_t>(n);
  }
  ::close(fd);

  CaptureResult result;
  try {
    Subprocess::Options opts;
    opts.stdin_redirect = Subprocess::Redirect::file(templ);
    Subprocess proc(argv, opts);
    ::unlink(templ.c_str());
    if (auto st = proc.wait_for_exit(timeout)) {
      result.exit_code = *st;
    } else {
      result.timed_out = true;
      result.exit_code = proc.terminate(std::chrono::seconds(2));
    }
    proc.wait_for_output_eof(std::chrono::seconds(2));
    result.out = proc.stdout_text();
    result.err = proc.stderr_text();
  } catch (...) {
    ::unlink(templ.c_str());
    throw;
  }
  return result;
}

}  // namespace ee_test
