// ProcessPoolExecutor: results, exceptions, crashes, timeouts, broken pools, recycling,
// memory limits, malformed frames, shutdown paths, metrics. Every test checks that no
// child process and no descriptor outlives its pool. Tagged [process_pool] ([fork] too,
// for sanitizer runs that must skip fork-based tests).
#include <catch2/catch.hpp>

#include <executor_exporter/metrics/registry.hpp>
#include <executor_exporter/process/process_pool_executor.hpp>

#include <prometheus/registry.h>

#include <dirent.h>
#include <fcntl.h>
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#include <sanitizer/common_interface_defs.h>
#endif
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "scrape.hpp"

using namespace executor_exporter;

using namespace std::chrono_literals;

namespace {

// ---- helpers ------------------------------------------------------------------------

int count_fds() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.' ? 1 : 0;
    ::closedir(d);
  }
  return n - 1;  // the directory stream itself
}

/// Processes whose parent is this process (zombies included).
std::vector<int> our_children() {
  std::vector<int> out;
  const int self = ::getpid();
  if (DIR* d = ::opendir("/proc")) {
    while (dirent* e = ::readdir(d)) {
      const int pid = std::atoi(e->d_name);
      if (pid <= 0) continue;
      std::ifstream f("/proc/" + std::string(e->d_name) + "/stat");
      std::string line;
      if (!std::getline(f, line)) continue;
      const auto close = line.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream rest(line.substr(close + 2));
      char state = 0;
      int ppid = 0;
      rest >> state >> ppid;
      if (ppid == self) out.push_back(pid);
    }
    ::closedir(d);
  }
  return out;
}

/// Our children that were not among `before`.
std::vector<int> children_since(const std::vector<int>& before) {
  std::vector<int> now = our_children();
  std::erase_if(now, [&](int pid) { return std::ranges::find(before, pid) != before.end(); });
  return now;
}

bool process_exists(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

/// Checks, at the end of a scope, that nothing the pools created is left behind.
/// Children alive before the scope (a server another test case started once for the
/// whole run, when every case runs in one process rather than one per ctest entry) are
/// not the scope's: only new children, and unreaped ones, are leaks.
struct LeakCheck {
  int fds = count_fds();
  std::vector<int> before = our_children();
  ~LeakCheck() {
    CHECK(children_since(before).empty());
    errno = 0;
    // No child of ours has exited unreaped: with none left, waitpid says so (ECHILD);
    // with the earlier ones still running, it finds nothing to report (0).
    const pid_t reaped = ::waitpid(-1, nullptr, WNOHANG);
    if (before.empty()) {
      CHECK(reaped == -1);
      CHECK(errno == ECHILD);
    } else {
      CHECK(reaped == 0);
    }
    CHECK(count_fds() == fds);
  }
};

std::shared_ptr<prometheus::Registry> fresh() { return std::make_shared<prometheus::Registry>(); }

ProcessPoolOptions opts(std::size_t workers, std::shared_ptr<prometheus::Registry> r = nullptr) {
  ProcessPoolOptions o;
  o.max_workers = workers;
  o.thread_check = ThreadCheck::allow;
  o.registry = r ? std::move(r) : fresh();
  o.id = "pp";
  return o;
}

// One metric of the pool, read from the exposition page like every metric in the tests
// (ee_test::prom::metric: a missing or ambiguous series fails the test).
double value(const std::shared_ptr<prometheus::Registry>& r, const std::string& name,
             const ee_test::prom::Labels& labels = {}) {
  return ee_test::prom::metric(ee_test::scrape(r), name, labels);
}

// The _sum of a histogram, likewise.
double hist_sum(const std::shared_ptr<prometheus::Registry>& r, const std::string& name,
                const ee_test::prom::Labels& labels = {}) {
  return ee_test::prom::metric(ee_test::scrape(r), name, labels, "_sum");
}

/// Polls `pred` for up to 10 s (workers start asynchronously).
template <class P>
bool eventually(P pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

template <class E, class F>
std::string error_of(F&& get) {
  try {
    get();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("unexpected exception " << typeid(e).name() << ": " << e.what());
  }
  FAIL("no exception");
  return {};
}

// ---- tasks (plain functions: they run in the workers) -------------------------------

int add(int a, int b) { return a + b; }
std::string greet(const std::string& name, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += "hi " + name + ";";
  return out;
}
std::vector<double> scale(std::vector<double> v, double k) {
  for (auto& x : v) x *= k;
  return v;
}
std::map<std::string, std::pair<int, std::optional<std::string>>> make_map(int n) {
  std::map<std::string, std::pair<int, std::optional<std::string>>> m;
  for (int i = 0; i < n; ++i)
    m["k" + std::to_string(i)] = {i, i % 2 ? std::nullopt : std::optional<std::string>("v")};
  return m;
}
void nothing() {}
int my_pid() { return static_cast<int>(::getpid()); }
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
int throws_runtime(int) { throw std::runtime_error("boom"); }
struct CustomError : std::logic_error {
  using std::logic_error::logic_error;
};
int throws_custom() { throw CustomError("custom trouble"); }
int throws_int() { throw 42; }
int die_by(int sig) {
  ::signal(sig, SIG_DFL);  // sanitizers install handlers for some of these
  ::raise(sig);
  return 0;
}
// Dies by SIGKILL once `path` exists: the test decides when, after it queued more work.
int die_once_exists(std::string path) {
  while (::access(path.c_str(), F_OK) != 0) std::this_thread::sleep_for(1ms);
  return die_by(SIGKILL);
}
int call_abort() {
  ::signal(SIGABRT, SIG_DFL);
  std::abort();
}
int call_exit(int code) { std::_Exit(code); }
std::size_t allocate_mb(int mb) {
  std::vector<char> v(static_cast<std::size_t>(mb) << 20, 1);
  return v.size();
}
std::size_t breach_limit() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The sanitizer's allocator ends the worker with an out-of-memory report; keep it quiet.
  __sanitizer_set_report_fd(
      reinterpret_cast<void*>(static_cast<std::intptr_t>(::open("/dev/null", O_WRONLY))));
#endif
  return allocate_mb(512);
}
int write_garbage() {
  const char junk[] = "this is not a frame at all, no sir";
  [[maybe_unused]] auto r = ::write(3, junk, sizeof junk);  // fd 3: the worker's channel
  return 1;
}
int write_truncated() {
  const std::string frame = detail::encode_result_frame(1, "xxxxxxxx", 1, 2);
  [[maybe_unused]] auto r = ::write(3, frame.data(), frame.size() / 2);
  std::_Exit(0);
}
int g_initialized = 0;
void init_ok() { g_initialized = 7; }
int read_initialized() { return g_initialized; }
void init_throws() { throw std::runtime_error("no database"); }

}  // namespace

// ---- tests ----------------------------------------------------------------------------

TEST_CASE("process pool: results round-trip through the codec", "[process_pool][fork]") {
  LeakCheck leaks;
  ProcessPoolExecutor pool(opts(2));
  CHECK(pool.submit(add, 2, 3).get() == 5);
  CHECK(pool.submit(&add, -7, 3).get() == -4);
  CHECK(pool.submit(greet, std::string("bob"), 2).get() == "hi bob;hi bob;");
  CHECK(pool.submit(scale, std::vector<double>{1.5, -2}, 2.0).get() == std::vector<double>{3, -4});
  CHECK(pool.submit(make_map, 3).get() == make_map(3));
  pool.submit(nothing).get();
  // Capture-less lambdas, generic ones included, work: the worker re-creates them.
  CHECK(pool.submit([](int x) { return x * x; }, 9).get() == 81);
  CHECK(
      pool.submit([](auto a, auto b) { return a + b; }, std::string("a"), std::string("b")).get() ==
      "ab");
  CHECK(pool.submit(std::plus<>{}, 40, 2).get() == 42);
  // Tasks run in other processes.
  CHECK(pool.submit(my_pid).get() != ::getpid());
  CHECK(eventually([&] { return pool.worker_pids().size() == 2; }));
}

TEST_CASE("process pool: exceptions arrive with their type name and what()",
          "[process_pool][fork]") {
  LeakCheck leaks;
  ProcessPoolExecutor pool(opts(1));
  auto f1 = pool.submit(throws_runtime, 1);
  auto f2 = pool.submit(throws_custom);
  auto f3 = pool.submit(throws_int);
  try {
    f1.get();
    FAIL("no exception");
  } catch (const ProcessTaskError& e) {
    CHECK(e.type_name() == "std::runtime_error");
    CHECK(e.original_what() == "boom");
    CHECK(std::string(e.what()) == "task raised std::runtime_error: boom");
  }
  try {
    f2.get();
    FAIL("no exception");
  } catch (const ProcessTaskError& e) {
    CHECK(e.type_name() == "(anonymous namespace)::CustomError");
    CHECK(e.original_what() == "custom trouble");
  }
  try {
    f3.get();
    FAIL("no exception");
  } catch (const ProcessTaskError& e) {
    CHECK(e.type_name() == "int");
    CHECK(e.original_what().empty());
  }
  CHECK(pool.submit(add, 1, 1).get() == 2);  // the worker survived all three
}

TEST_CASE("process pool: only stateless callables are accepted", "[process_pool]") {
  int captured = 3;
  auto capturing = [captured](int x) { return x + captured; };
  auto plain = [](int x) { return x; };
  STATIC_REQUIRE_FALSE(ProcessCallable<decltype(capturing)>);
  STATIC_REQUIRE_FALSE(ProcessTaskFunction<decltype(capturing), int>);
  STATIC_REQUIRE(ProcessTaskFunction<decltype(plain), int>);
  STATIC_REQUIRE(ProcessTaskFunction<decltype(&add), int, int>);
  STATIC_REQUIRE(ProcessTaskFunction<decltype(add), int, long>);
  STATIC_REQUIRE_FALSE(ProcessTaskFunction<decltype(&add), int>);  // wrong arity
  // Arguments and results must be Encodable: no raw pointers.
  STATIC_REQUIRE_FALSE(ProcessTaskFunction<int (*)(int*), int*>);
  STATIC_REQUIRE_FALSE(ProcessTaskFunction<int* (*)(int), int>);
  // A std::function has state, so it cannot be rebuilt in the worker.
  STATIC_REQUIRE_FALSE(ProcessCallable<std::function<int(int)>>);
  CHECK(capturing(1) == 4);
}

TEST_CASE("process pool: a dying worker fails only its task, names the cause, and is replaced",
          "[process_pool][fork]") {
  LeakCheck leaks;
  auto reg = fresh();
  ProcessPoolExecutor pool(opts(2, reg));
  auto msg = error_of<WorkerCrashedError>([&] { pool.submit(die_by, SIGKILL).get(); });
  CHECK_THAT(msg, Catch::Contains("signal 9 (SIGKILL"));
  msg = error_of<WorkerCrashedError>([&] { pool.submit(die_by, SIGSEGV).get(); });
  CHECK_THAT(msg, Catch::Contains("signal 11 (SIGSEGV"));
  msg = error_of<WorkerCrashedError>([&] { pool.submit(call_abort).get(); });
  CHECK_THAT(msg, Catch::Contains("SIGABRT"));
  msg = error_of<WorkerCrashedError>([&] { pool.submit(call_exit, 3).get(); });
  CHECK_THAT(msg, Catch::Contains("exited with status 3"));
  CHECK_THAT(msg, Catch::Contains("pid"));
  for (int i = 0; i < 10; ++i) CHECK(pool.submit(add, i, 1).get() == i + 1);
  CHECK_FALSE(pool.broken());
  CHECK(value(reg, "executor_worker_restarts_total", {{"reason", "crashed"}}) == 4);
  CHECK(value(reg, "executor_worker_restarts_total", {{"reason", "timeout"}}) == 0);
  CHECK(value(reg, "executor_task_run_seconds", {{"result", "failed"}}) == 4);
  CHECK(value(reg, "executor_task_run_seconds", {{"result", "completed"}}) == 10);
}

TEST_CASE("process pool: tasks queued behind a crash in the same worker are sent again",
          "[process_pool][fork]") {
  LeakCheck leaks;
  auto o = opts(1);
  o.max_inflight_per_worker = 8;
  ProcessPoolExecutor pool(o);
  pool.submit(add, 0, 0).get();  // the worker is up, so the next tasks go out together
  std::vector<Future<int>> before;
  for (int i = 0; i < 3; ++i) before.push_back(pool.submit(sleep_ms, 1));
  auto crash = pool.submit(die_by, SIGKILL);
  std::vector<Future<int>> after;
  for (int i = 0; i < 5; ++i) after.push_back(pool.submit(add, i, 100));
  for (auto& f : before) CHECK(f.get() == 1);
  CHECK_THROWS_AS(crash.get(), WorkerCrashedError);
  for (int i = 0; i < 5; ++i) CHECK(after[static_cast<std::size_t>(i)].get() == i + 100);
}

TEST_CASE("process pool: a task past its timeout fails, its worker is killed and replaced",
          "[process_pool][fork]") {
  LeakCheck leaks;
  auto reg = fresh();
  auto o = opts(1, reg);
  o.task_timeout = 300ms;
  ProcessPoolExecutor pool(o);
  auto hung = pool.submit(sleep_ms, 60'000);
  auto next = pool.submit(add, 20, 22);  // waits in the same worker, then is sent again
  const auto msg = error_of<TaskTimeoutError>([&] { hung.get(); });
  CHECK_THAT(msg, Catch::Contains("timeout of 0.3 s"));
  CHECK(next.get() == 42);
  CHECK(pool.submit(sleep_ms, 10).get() == 10);  // short tasks are unaffected
  CHECK(value(reg, "executor_worker_restarts_total", {{"reason", "timeout"}}) == 1);
  CHECK(value(reg, "executor_worker_restarts_total", {{"reason", "crashed"}}) == 0);
}

TEST_CASE("process pool: a crash loop breaks the pool", "[process_pool][fork]") {
  LeakCheck leaks;
  auto reg = fresh();
  auto o = opts(1, reg);
  o.crash_loop_limit = 2;
  o.crash_loop_window = 60s;
  ProcessPoolExecutor pool(o);
  CHECK_THROWS_AS(pool.submit(die_by, SIGKILL).get(), WorkerCrashedError);
  CHECK_THROWS_AS(pool.submit(die_by, SIGKILL).get(), WorkerCrashedError);
  CHECK_FALSE(pool.broken());
  // The third crash must come after `pending` is queued, or its submit is refused.
  const std::string go = "/tmp/ee-crash-loop-" + std::to_string(::getpid());
  auto third = pool.submit(die_once_exists, go);
  auto pending = pool.submit(add, 1, 2);
  std::ofstream{go}.close();
  CHECK_THROWS_AS(third.get(), WorkerCrashedError);
  std::remove(go.c_str());
  const auto msg = error_of<BrokenExecutorError>([&] { pending.get(); });
  CHECK_THAT(msg, Catch::Contains("crash loop: 3 worker crashes"));
  CHECK(pool.broken());
  CHECK_THROWS_AS(pool.submit(add, 1, 2), BrokenExecutorError);
  CHECK(value(reg, "executor_tasks_rejected_total", {{"reason", "broken"}}) == 1);
  CHECK(value(reg, "executor_tasks_queued") == 0);
  CHECK(value(reg, "executor_tasks_running") == 0);
}

TEST_CASE("process pool: break_on_first_crash restores Python's behaviour",
          "[process_pool][fork]") {
  LeakCheck leaks;
  auto o = opts(2);
  o.break_on_first_crash = true;
  ProcessPoolExecutor pool(o);
  CHECK(pool.submit(add, 1, 1).get() == 2);
  auto crash = pool.submit(die_by, SIGKILL);
  CHECK_THROWS_AS(crash.get(), WorkerCrashedError);
  CHECK(pool.broken());
  CHECK_THROWS_AS(pool.submit(add, 1, 2), BrokenExecutorError);
}

TEST_CASE("process pool: the initializer runs in each worker and its failure breaks the pool",
          "[process_pool][fork]") {
  LeakCheck leaks;
  {
    auto o = opts(2);
    o.initializer = init_ok;
    ProcessPoolExecutor pool(o);
    CHECK(pool.submit(read_initialized).get() == 7);
    CHECK(g_initialized == 0);  // the parent's copy is untouched
  }
  {
    auto reg = fresh();
    auto o = opts(2, reg);
    o.initializer = init_throws;
    ProcessPoolExecutor pool(o);
    // The workers may fail their initializer before or after this submit: a task queued
    // before the break is failed (counted as cancelled, it never ran), one submitted
    // after it is refused (counted as rejected). Both carry the initializer's error.
    std::string msg;
    bool refused = false;
    try {
      auto f = pool.submit(add, 1, 2);
      msg = error_of<BrokenExecutorError>([&] { f.get(); });
    } catch (const BrokenExecutorError& e) {
      msg = e.what();
      refused = true;
    }
    INFO("first submit " << (refused ? "refused" : "accepted, then failed"));
    CHECK_THAT(msg, Catch::Contains("initializer failed"));
    CHECK_THAT(msg, Catch::Contains("std::runtime_error: no database"));
    CHECK_THROWS_AS(pool.submit(add, 1, 2), BrokenExecutorError);
    CHECK(value(reg, "executor_tasks_cancelled_total") == (refused ? 0 : 1));
    CHECK(value(reg, "executor_tasks_rejected_total", {{"reason", "broken"}}) == (refused ? 2 : 1));
    CHECK(value(reg, "executor_tasks_queued") == 0);
  }
}

TEST_CASE("process pool: max_tasks_per_child recycles workers", "[process_pool][fork]") {
  LeakCheck leaks;
  auto reg = fresh();
  auto o = opts(1, reg);
  o.max_tasks_per_child = 2;
  std::set<int> pids;
  {
    ProcessPoolExecutor pool(o);
    std::vector<Future<int>> fs;
    for (int i = 0; i < 6; ++i) fs.push_back(pool.submit(my_pid));
    for (auto& f : fs) pids.insert(f.get());
    CHECK(pool.submit(add, 1, 1).get() == 2);
  }
  CHECK(pids.size() == 3);
  CHECK(value(reg, "executor_worker_restarts_total", {{"reason", "recycled"}}) >= 3);
  CHECK(value(reg, "executor_worker_restarts_total", {{"reason", "crashed"}}) == 0);
}

TEST_CASE("process pool: breaching the memory limit counts as a crash", "[process_pool][fork]") {
  LeakCheck leaks;
  auto reg = fresh();
  auto o = opts(1, reg);
  o.memory_limit_bytes = 64u << 20;
  ProcessPoolExecutor pool(o);
  CHECK(pool.submit(allocate_mb, 8).get() == 8u << 20);
  const auto msg = error_of<WorkerCrashedError>([&] { pool.submit(breach_limit).get(); });
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  CHECK_THAT(msg, Catch::Contains("exceeded its memory limit of 67108864 bytes"));
#endif
  CHECK(pool.submit(allocate_mb, 8).get() == 8u << 20);
  CHECK(value(reg, "executor_worker_restarts_total", {{"reason", "crashed"}}) == 1);
}

TEST_CASE("process pool: a malformed or truncated frame from a worker counts as a crash",
          "[process_pool][fork]") {
  LeakCheck leaks;
  auto reg = fresh();
  ProcessPoolExecutor pool(opts(1, reg));
  auto msg = error_of<WorkerCrashedError>([&] { pool.submit(write_garbage).get(); });
  CHECK_THAT(msg, Catch::Contains("malformed frame"));
  CHECK_THAT(msg, Catch::Contains("bad magic"));
  CHECK(pool.submit(add, 2, 2).get() == 4);
  msg = error_of<WorkerCrashedError>([&] { pool.submit(write_truncated).get(); });
  CHECK_THAT(msg, Catch::Contains("malformed frame"));
  CHECK(pool.submit(add, 3, 3).get() == 6);
  CHECK(value(reg, "executor_worker_restarts_total", {{"reason", "crashed"}}) == 2);
}

TEST_CASE("process pool: shutdown waits for tasks in flight and leaves nothing behind",
          "[process_pool][fork]") {
  LeakCheck leaks;
  auto reg = fresh();
  ProcessPoolExecutor pool(opts(2, reg));
  const pid_t zygote = pool.zygote_pid();
  CHECK(process_exists(zygote));
  std::vector<Future<int>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(pool.submit(sleep_ms, 5));
  pool.shutdown(true);
  for (auto& f : fs) CHECK(f.get() == 5);
  CHECK_FALSE(process_exists(zygote));
  CHECK_THROWS_AS(pool.submit(add, 1, 1), ExecutorShutdownError);
  CHECK(value(reg, "executor_tasks_rejected_total", {{"reason", "shutdown"}}) == 1);
  CHECK(value(reg, "executor_workers") == 0);
  pool.shutdown();  // again: harmless
}

TEST_CASE("process pool: shutdown with cancel_futures cancels what no worker has taken",
          "[process_pool][fork]") {
  LeakCheck leaks;
  auto reg = fresh();
  auto o = opts(1, reg);
  o.max_inflight_per_worker = 1;
  ProcessPoolExecutor pool(o);
  pool.submit(add, 0, 0).get();
  auto first = pool.submit(sleep_ms, 200);
  std::vector<Future<int>> rest;
  for (int i = 0; i < 10; ++i) rest.push_back(pool.submit(add, i, 0));
  std::this_thread::sleep_for(50ms);
  pool.shutdown(true, true);
  CHECK(first.get() == 200);
  int cancelled = 0;
  for (auto& f : rest) {
    if (f.cancelled()) {
      ++cancelled;
      CHECK_THROWS_AS(f.get(), CancelledError);
    } else {
      f.get();
    }
  }
  CHECK(cancelled >= 9);
  CHECK(value(reg, "executor_tasks_cancelled_total") == cancelled);
  CHECK(value(reg, "executor_tasks_queued") == 0);
}

TEST_CASE("process pool: destruction with a hung worker", "[process_pool][fork]") {
  LeakCheck leaks;
  SECTION("kill_workers() gives up on it") {
    ProcessPoolExecutor pool(opts(2));
    auto hung = pool.submit(sleep_ms, 60'000);
    auto queued = pool.submit(sleep_ms, 60'000);
    std::this_thread::sleep_for(100ms);
    pool.kill_workers();
    CHECK_THROWS_AS(hung.get(), BrokenExecutorError);
    CHECK_THROWS_AS(queued.get(), BrokenExecutorError);
    CHECK_THROWS_AS(pool.submit(add, 1, 1), BrokenExecutorError);
  }
  SECTION("the task timeout ends it") {
    Future<int> hung;
    {
      auto o = opts(1);
      o.task_timeout = 200ms;
      ProcessPoolExecutor pool(o);
      hung = pool.submit(sleep_ms, 60'000);
    }
    CHECK_THROWS_AS(hung.get(), TaskTimeoutError);
  }
  SECTION("a dead zygote breaks the pool") {
    // The zygote's workers die with it (PR_SET_PDEATHSIG) and, orphaned, would go to
    // init; as a subreaper this test collects them itself.
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    const auto before = our_children();  // a server another case left running, if any
    {
      ProcessPoolExecutor pool(opts(1));
      CHECK(pool.submit(add, 1, 1).get() == 2);
      auto hung = pool.submit(sleep_ms, 60'000);
      ::kill(pool.zygote_pid(), SIGKILL);
      const auto msg = error_of<BrokenExecutorError>([&] { hung.get(); });
      CHECK_THAT(msg, Catch::Contains("zygote"));
      CHECK(pool.broken());
    }
    CHECK(eventually([&] {
      while (::waitpid(-1, nullptr, WNOHANG) > 0) {
      }
      return children_since(before).empty();
    }));
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  }
}

TEST_CASE("process pool: wait and run times are measured in the child", "[process_pool][fork]") {
  LeakCheck leaks;
  auto reg = fresh();
  auto o = opts(1, reg);
  o.max_inflight_per_worker = 4;
  ProcessPoolExecutor pool(o);
  pool.submit(nothing).get();
  // Both tasks go to the worker in one write; the second starts only after the first
  // ends. Timed from the parent, both would seem to start at once.
  auto a = pool.submit(sleep_ms, 200);
  auto b = pool.submit(sleep_ms, 200);
  a.get();
  b.get();
  CHECK(value(reg, "executor_task_run_seconds", {{"result", "completed"}}) == 3);
  CHECK(hist_sum(reg, "executor_task_run_seconds", {{"result", "completed"}}) >= 0.4);
  CHECK(hist_sum(reg, "executor_task_wait_seconds") >= 0.2);
  CHECK(value(reg, "executor_worker_busy_seconds_total") >= 0.4);
}

TEST_CASE("process pool: tasks running in the workers show as running and busy while they run",
          "[process_pool][fork]") {
  LeakCheck leaks;
  auto reg = fresh();
  auto o = opts(2, reg);
  o.max_inflight_per_worker = 1;  // the parent keeps what no worker runs: "queued"
  ProcessPoolExecutor pool(o);
  REQUIRE(eventually([&] { return value(reg, "executor_workers") == 2; }));
  pool.submit(nothing).get();
  pool.submit(nothing).get();
  std::vector<Future<int>> fs;
  for (int i = 0; i < 4; ++i) fs.push_back(pool.submit(sleep_ms, 600));
  // One page, so that the numbers are of one instant.
  auto page = [&] {
    const auto scraped = ee_test::scrape(reg);
    std::map<std::string, double> v;
    for (const char* name : {"executor_tasks_submitted_total", "executor_tasks_completed_total",
                             "executor_tasks_failed_total", "executor_tasks_cancelled_total",
                             "executor_tasks_expired_total", "executor_tasks_queued",
                             "executor_tasks_running", "executor_worker_busy_seconds_total"}) {
      v[name] = ee_test::prom::metric(scraped, name);
    }
    return v;
  };
  const auto t0 = std::chrono::steady_clock::now();
  double seen = -1, queued_seen = -1;
  const bool two_running = eventually([&] {
    auto v = page();
    seen = v["executor_tasks_running"];
    queued_seen = v["executor_tasks_queued"];
    return seen == 2;
  });
  INFO("last running " << seen << " queued " << queued_seen);
  REQUIRE(two_running);
  std::this_thread::sleep_for(200ms);
  auto during = page();
  const double since_t0 =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO("busy " << during["executor_worker_busy_seconds_total"] << " s; " << since_t0
               << " s since the submits");
  // Two tasks run, two wait for a worker; nothing is counted twice or lost.
  CHECK(during["executor_tasks_running"] == 2);
  CHECK(during["executor_tasks_queued"] == 2);
  CHECK(during["executor_tasks_submitted_total"] ==
        during["executor_tasks_completed_total"] + during["executor_tasks_failed_total"] +
            during["executor_tasks_cancelled_total"] + during["executor_tasks_expired_total"] +
            during["executor_tasks_queued"] + during["executor_tasks_running"]);
  // Both have run for at least the 200 ms slept, and for no longer than since the submits.
  CHECK(during["executor_worker_busy_seconds_total"] >= 0.35);
  CHECK(during["executor_worker_busy_seconds_total"] <= 2 * since_t0 + 0.01);
  for (auto& f : fs) f.get();
  auto after = page();
  CHECK(after["executor_tasks_running"] == 0);
  CHECK(after["executor_tasks_queued"] == 0);
  CHECK(after["executor_tasks_completed_total"] == 6);
  CHECK(after["executor_worker_busy_seconds_total"] >=
        during["executor_worker_busy_seconds_total"]);
  CHECK(
      after["executor_worker_busy_seconds_total"] ==
      Approx(hist_sum(reg, "executor_task_run_seconds", {{"result", "completed"}})).epsilon(1e-6));
}

TEST_CASE("process pool: the metrics are exact", "[process_pool][fork]") {
  LeakCheck leaks;
  auto reg = fresh();
  {
    ProcessPoolExecutor pool(opts(2, reg));
    std::vector<Future<int>> ok;
    for (int i = 0; i < 5; ++i) ok.push_back(pool.submit(add, i, i));
    auto bad1 = pool.submit(throws_runtime, 1);
    auto bad2 = pool.submit(throws_runtime, 2);
    for (auto& f : ok) f.get();
    CHECK_THROWS(bad1.get());
    CHECK_THROWS(bad2.get());
    const ee_test::prom::Labels pp{{"executor", "pp"}, {"executor_type", "process_pool"}};
    CHECK(value(reg, "executor_tasks_submitted_total", pp) == 7);
    CHECK(value(reg, "executor_task_run_seconds", {{"result", "completed"}}) == 5);
    CHECK(value(reg, "executor_task_run_seconds", {{"result", "failed"}}) == 2);
    CHECK(value(reg, "executor_task_wait_seconds") == 7);
    CHECK(value(reg, "executor_tasks_queued") == 0);
    CHECK(value(reg, "executor_tasks_running") == 0);
    CHECK(value(reg, "executor_max_workers") == 2);
    CHECK(eventually([&] { return value(reg, "executor_workers") == 2; }));
    CHECK(value(reg, "executor_workers_started_total") == 2);
    CHECK(value(reg, "executor_worker_resident_bytes", {{"worker", "0"}}) > 0);
    CHECK(value(reg, "executor_worker_resident_bytes", {{"worker", "1"}}) > 0);
    for (const char* reason : {"crashed", "timeout", "recycled"}) {
      CHECK(value(reg, "executor_worker_restarts_total", {{"reason", reason}}) == 0);
    }
  }
  CHECK(value(reg, "executor_workers") == 0);
  CHECK(value(reg, "executor_max_workers") == 0);
  CHECK(value(reg, "executor_worker_resident_bytes", {{"worker", "0"}}) == 0);
}

TEST_CASE("process pool: map, plain and chunked", "[process_pool][fork]") {
  LeakCheck leaks;
  auto reg = fresh();
  ProcessPoolExecutor pool(opts(2, reg));
  std::vector<int> in(1000);
  std::iota(in.begin(), in.end(), 0);
  auto square = [](int x) { return x * x; };
  auto chunked = pool.map(square, in, {.chunksize = 64}).to_vector();
  REQUIRE(chunked.size() == in.size());
  for (int i = 0; i < 1000; ++i) CHECK(chunked[static_cast<std::size_t>(i)] == i * i);
  auto plain = pool.map(square, std::vector<int>{1, 2, 3}).to_vector();
  CHECK(plain == std::vector<int>{1, 4, 9});
  auto voids = pool.map([](int) {}, in, {.chunksize = 100}).to_vector();
  CHECK(voids.size() == 1000);
  // An exception fails every item of its chunk, and only those.
  auto picky = [](int x) {
    if (x == 5) throw std::invalid_argument("five");
    return x;
  };
  auto results = pool.map(picky, std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}, {.chunksize = 4});
  auto& fs = results.futures();
  for (int i = 0; i < 4; ++i) CHECK(fs[static_cast<std::size_t>(i)].get() == i);
  for (int i = 4; i < 8; ++i)
    CHECK_THROWS_AS(fs[static_cast<std::size_t>(i)].get(), ProcessTaskError);
  // A chunk is one task, as in the thread pool: 16 chunks of up to 64, 3 single items,
  // 10 chunks of 100, 2 chunks of 4 (one of which failed).
  CHECK(value(reg, "executor_tasks_submitted_total") == 16 + 3 + 10 + 2);
  CHECK(value(reg, "executor_tasks_completed_total") == 16 + 3 + 10 + 1);
  CHECK(value(reg, "executor_task_run_seconds", {{"result", "failed"}}) == 1);
}

TEST_CASE("process pool: the thread check", "[process_pool][fork]") {
  LeakCheck leaks;
  std::atomic<bool> stop{false};
  std::thread other([&] {
    while (!stop.load()) std::this_thread::sleep_for(1ms);
  });
  auto o = opts(1);
  o.thread_check = ThreadCheck::throw_;
  CHECK_THROWS_AS(ProcessPoolExecutor(o), ForkSafetyError);
  SECTION("preinit() forks the zygotes from a single-threaded server") {
    stop = true;
    other.join();
    ProcessPoolExecutor::preinit();
    stop = false;
    other = std::thread([&] {
      while (!stop.load()) std::this_thread::sleep_for(1ms);
    });
    {
      ProcessPoolExecutor pool(o);  // no throw: the zygote comes from the preinit server
      CHECK(pool.submit(add, 4, 5).get() == 9);
      CHECK_THROWS_AS(pool.submit(die_by, SIGKILL).get(), WorkerCrashedError);
      CHECK(pool.submit(add, 5, 5).get() == 10);
    }
    ProcessPoolExecutor::preinit_stop();
  }
  stop = true;
  other.join();
}

// ---- error handling parity with ThreadPoolExecutor ---------------------------------

namespace {
void init_exits() { std::_Exit(3); }
}  // namespace

TEST_CASE("process pool: a throwing done-callback is counted and handed to the error handler",
          "[process_pool][fork][callbacks]") {
  LeakCheck leaks;
  auto reg = fresh();
  {
    ProcessPoolExecutor pool(opts(1, reg));
    std::promise<std::string> handled;
    pool.set_error_handler([&](std::exception_ptr e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        handled.set_value(ex.what());
      }
    });
    // Long enough that the callback is registered first: it runs on the completion thread.
    auto f = pool.submit(sleep_ms, 300);
    f.add_done_callback([](const SharedFuture<int>& sf) {
      throw std::runtime_error("callback saw " + std::to_string(sf.get()));
    });
    auto got = handled.get_future();
    REQUIRE(got.wait_for(10s) == std::future_status::ready);
    CHECK(got.get() == "callback saw 300");
    CHECK(f.get() == 300);
    CHECK(value(reg, "executor_callback_errors_total") == 1);
    CHECK(value(reg, "executor_unhandled_errors_total") == 0);
    // The completion thread survived: later results still arrive.
    CHECK(pool.submit(add, 2, 3).get() == 5);
  }
}

TEST_CASE("process pool: callbacks of chunked map futures report to the handler too",
          "[process_pool][fork][callbacks]") {
  LeakCheck leaks;
  auto reg = fresh();
  {
    ProcessPoolExecutor pool(opts(1, reg));
    std::atomic<int> handled{0};
    pool.set_error_handler([&](std::exception_ptr) { handled.fetch_add(1); });
    auto blocker = pool.submit(sleep_ms, 300);  // holds the only worker
    std::vector<int> items{1, 2, 3, 4};
    auto results = pool.map(+[](int x) { return x * 10; }, items, {.chunksize = 2});
    auto& futures = results.futures();
    for (auto& f : futures) {
      f.add_done_callback([](const SharedFuture<int>&) { throw std::logic_error("cb"); });
    }
    for (auto& f : futures) f.wait();
    CHECK(blocker.get() == 300);
    CHECK(eventually([&] { return handled.load() == 4; }));
    CHECK(value(reg, "executor_callback_errors_total") == 4);
  }
}

TEST_CASE("process pool: a failing initializer is counted", "[process_pool][fork]") {
  LeakCheck leaks;
  SECTION("one that throws") {
    auto reg = fresh();
    auto o = opts(1, reg);
    o.initializer = init_throws;
    ProcessPoolExecutor pool(o);
    auto f = pool.submit(add, 1, 2);
    CHECK_THROWS_AS(f.get(), BrokenExecutorError);
    CHECK(value(reg, "executor_initializer_errors_total") == 1);
    CHECK(pool.broken());
  }
  SECTION("one that exits the worker") {
    auto reg = fresh();
    auto o = opts(1, reg);
    o.initializer = init_exits;
    ProcessPoolExecutor pool(o);
    auto f = pool.submit(add, 1, 2);
    const auto msg = error_of<BrokenExecutorError>([&] { f.get(); });
    CHECK_THAT(msg, Catch::Contains("before it was ready"));
    CHECK(value(reg, "executor_initializer_errors_total") == 1);
  }
  SECTION("each failing worker of a larger pool counts, at least once") {
    auto reg = fresh();
    auto o = opts(2, reg);
    o.initializer = init_throws;
    ProcessPoolExecutor pool(o);
    CHECK_THROWS_AS(pool.submit(add, 1, 2).get(), BrokenExecutorError);
    CHECK(value(reg, "executor_initializer_errors_total") >= 1);
    CHECK(value(reg, "executor_initializer_errors_total") <= 2);
  }
  SECTION("a crash after the initializer succeeded is not an initializer error") {
    auto reg = fresh();
    auto o = opts(1, reg);
    o.initializer = init_ok;
    ProcessPoolExecutor pool(o);
    CHECK_THROWS_AS(pool.submit(die_by, SIGKILL).get(), WorkerCrashedError);
    CHECK(pool.submit(add, 1, 1).get() == 2);
    CHECK(value(reg, "executor_initializer_errors_total") == 0);
  }
}

TEST_CASE("process pool: map honours MapOptions::timeout, plain and chunked",
          "[process_pool][fork]") {
  LeakCheck leaks;
  auto reg = fresh();
  ProcessPoolExecutor pool(opts(1, reg));
  auto blocker = pool.submit(sleep_ms, 400);  // holds the only worker
  for (std::size_t chunksize : {std::size_t{1}, std::size_t{2}}) {
    INFO("chunksize " << chunksize);
    auto results = pool.map(+[](int x) { return x + 1; }, std::vector<int>{1, 2, 3},
                            {.timeout = 50ms, .chunksize = chunksize});
    CHECK_THROWS_AS(*results.begin(), TimeoutError);
  }
  CHECK(blocker.get() == 400);
}

TEST_CASE("process pool: a map chunk that never runs counts as one cancelled task",
          "[process_pool][fork]") {
  LeakCheck leaks;
  auto reg = fresh();
  {
    auto o = opts(1, reg);
    o.max_inflight_per_worker = 1;  // nothing is sent ahead to the busy worker
    ProcessPoolExecutor pool(o);
    auto blocker = pool.submit(sleep_ms, 200);  // holds the only worker
    REQUIRE(eventually([&] { return value(reg, "executor_tasks_running") == 1; }));
    auto results = pool.map(+[](int x) { return x; }, std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8},
                            {.chunksize = 4});
    // Every item of the first chunk cancelled by the user: the chunk never runs.
    for (std::size_t i = 0; i < 4; ++i) CHECK(results.futures()[i].cancel());
    pool.shutdown(true, /*cancel_futures=*/true);  // the second chunk is still queued
    CHECK(blocker.get() == 200);
  }
  CHECK(value(reg, "executor_tasks_submitted_total") == 3);
  CHECK(value(reg, "executor_tasks_completed_total") == 1);
  CHECK(value(reg, "executor_tasks_cancelled_total") == 2);
  CHECK(value(reg, "executor_tasks_queued") == 0);
  CHECK(value(reg, "executor_tasks_running") == 0);
}

TEST_CASE("process pool: submit_named counts in the task's series", "[process_pool][fork]") {
  LeakCheck leaks;
  auto reg = fresh();
  {
    ProcessPoolExecutor pool(opts(1, reg));
    CHECK(pool.submit_named(
                  "double", +[](int x) { return 2 * x; }, 21)
              .get() == 42);
    CHECK(pool.submit(add, 1, 2).get() == 3);
  }
  CHECK(value(reg, "executor_tasks_completed_total", {{"task", "double"}}) == 1);
  CHECK(value(reg, "executor_tasks_completed_total") == 1);
  CHECK(value(reg, "executor_task_run_seconds", {{"task", "double"}, {"result", "completed"}}) ==
        1);
}
