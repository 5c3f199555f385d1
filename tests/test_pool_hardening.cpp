// What a hostile or careless user does to a pool: absurd sizes, a task that waits for
// room in its own full queue. Each gets a clear error and leaves the pool and its
// metrics true.
#include <executor_exporter/executor_exporter.hpp>

#include <catch2/catch.hpp>

#include <dirent.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <latch>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "scrape.hpp"

namespace ee = executor_exporter;
namespace prom = ee_test::prom;

namespace {

std::size_t thread_count() {
  std::size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
  }
  return n;
}

}  // namespace

TEST_CASE("an absurd pool size is refused before any thread starts, and the pool stays as it was",
          "[hardening][resize]") {
  auto registry = std::make_shared<prometheus::Registry>();
  CHECK_THROWS_AS(ee::ThreadPoolExecutor(100000, "x", {}, "huge", registry), std::invalid_argument);

  ee::ThreadPoolExecutor pool(2, "h", {}, "sized", registry);
  pool.submit([] {}).get();
  const std::size_t threads = thread_count();
  constexpr auto kMax = std::numeric_limits<std::size_t>::max();
  CHECK_THROWS_WITH(pool.resize(kMax), Catch::Contains("refused"));
  CHECK_THROWS_AS(pool.scale_up(kMax - 1), std::invalid_argument);  // no overflow either
  CHECK_THROWS_AS(pool.scale_up(5000), std::invalid_argument);
  CHECK(pool.max_workers() == 2);
  CHECK(thread_count() == threads);
  const auto page = ee_test::scrape(registry);
  CHECK(prom::value(page, "executor_max_workers", {{"executor", "sized"}}) == 2);
  CHECK(prom::value(page, "executor_workers", {{"executor", "sized"}}) == 2);
  // Still usable, and a sane resize works.
  pool.resize(3);
  CHECK(pool.max_workers() == 3);
  CHECK(pool.submit([] { return 5; }).get() == 5);
}

TEST_CASE("a task that submits into its own full queue (policy block) is refused, not deadlocked",
          "[hardening][bounded]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolOptions options;
  options.id = "self_feeding";
  options.registry = registry;
  options.queue_capacity = 1;
  options.on_full = ee::QueueFullPolicy::block;
  ee::ThreadPoolExecutor pool(1, options);
  std::latch queued(1);
  auto outer = pool.submit([&] {
    queued.wait();  // the queue holds one task now: it is full
    auto inner = pool.submit([] {});
    (void)inner;
  });
  auto filler = pool.submit([] {});
  queued.count_down();
  CHECK_THROWS_WITH(outer.get(), Catch::Contains("own queue"));
  filler.get();
  pool.wait();
  const auto page = ee_test::scrape(registry);
  CHECK(prom::value(page, "executor_tasks_rejected_total",
                    {{"executor", "self_feeding"}, {"reason", "queue_full"}}) == 1);
  CHECK(ee_test::unaccounted(page, {{"executor", "self_feeding"}}) == 0);
}

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
TEST_CASE("a scale-up whose threads cannot all start is rolled back whole", "[hardening][resize]") {
  // A child process whose address space is capped a little above what it uses: the
  // workers' 8 MiB stacks run out after a few, and thread creation fails the way it does
  // on a machine out of threads or memory. (Sanitizers reserve terabytes of address
  // space, so the cap cannot be set under them.)
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 0;
    try {
      auto registry = std::make_shared<prometheus::Registry>();
      ee::ThreadPoolExecutor pool(2, "r", {}, "rollback", registry);
      pool.submit([] {}).get();
      const std::size_t before = thread_count();
      std::ifstream statm("/proc/self/statm");
      std::uint64_t pages = 0;
      statm >> pages;
      const rlimit cap{pages * 4096 + 48 * 1024 * 1024, RLIM_INFINITY};
      if (::setrlimit(RLIMIT_AS, &cap) != 0) ::_exit(3);
      try {
        pool.resize(200);
        code = 4;  // 200 stacks fit: the cap did not bite
      } catch (const std::system_error&) {
        const rlimit off{RLIM_INFINITY, RLIM_INFINITY};
        ::setrlimit(RLIMIT_AS, &off);
        if (pool.max_workers() != 2) code = 5;
        if (prom::metric(ee_test::scrape(registry), "executor_max_workers",
                         {{"executor", "rollback"}}) != 2) {
          code = 6;
        }
        // The workers the failed call started leave again.
        bool back = false;
        for (int i = 0; i < 500 && !back; ++i) {
          back = thread_count() == before;
          if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        if (code == 0 && !back) code = 7;
        if (code == 0 && pool.submit([] { return 1; }).get() != 1) code = 8;
      }
    } catch (...) {
      code = 9;
    }
    ::_exit(code);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  // 3: setrlimit failed, 4: no failure, 5/6: max_workers changed, 7: threads left over,
  // 8: the pool no longer runs tasks, 9: another exception.
  CHECK(WEXITSTATUS(status) == 0);
}
#endif
