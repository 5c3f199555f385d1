// The process pool's peaks between scrapes: executor_tasks_queued_max and
// executor_tasks_running_max count what the pool held at once, in the gauges' units (a
// task, or a map() chunk, is one). Queued: the submit queue plus the tasks sent ahead to a
// worker behind the one it runs (max_inflight_per_worker) and re-sends; running: the
// workers with a task. A burst that queues and drains between two scrapes leaves the
// gauges at 0 and shows in the peaks.

#include <executor_exporter/executor_exporter.hpp>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "http_client.hpp"
#include "prom_text.hpp"
#include "scrape.hpp"

namespace ee = executor_exporter;
using ee_test::prom::metric;
using namespace std::chrono_literals;

using ee_test::http_page;

namespace {

// Runs until `path` exists: the test holds the workers busy for as long as it likes.
int wait_for_file(const std::string& path) {
  while (::access(path.c_str(), F_OK) != 0) std::this_thread::sleep_for(1ms);
  return 1;
}

int one() { return 1; }

const ee_test::prom::Labels kPool{{"executor", "pp_peaks"}};

ee::ProcessPoolOptions options(std::size_t workers, std::shared_ptr<prometheus::Registry> r) {
  ee::ProcessPoolOptions o;
  o.max_workers = workers;
  // Each test starts its MetricsServer after the pool: a fork while another thread holds
  // a lock (the allocator's, under ASan) leaves it locked in the children for good. The
  // library's own background fold thread is running already, hence allow.
  o.thread_check = ee::ThreadCheck::allow;
  o.registry = std::move(r);
  o.id = "pp_peaks";
  return o;
}

// Polls the pool's `family` gauge until it reads `want` (10 s at most).
void await_gauge(int port, const char* family, double want) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (metric(http_page(port), family, kPool) != want) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(5ms);
  }
}

// A file no other test run uses. Declared before the pool: removed after it is gone.
struct Gate {
  std::string path;
  Gate() {
    static std::atomic<int> counter{0};
    path = "/tmp/ee_pp_peaks_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    ::unlink(path.c_str());
  }
  ~Gate() { ::unlink(path.c_str()); }
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;
  void open() const {
    std::FILE* f = std::fopen(path.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fclose(f);
  }
};

// Declared after the pool: lets its held tasks end even when a check failed, so that the
// pool's destructor, which waits for them, returns.
struct OpenAtExit {
  const Gate& gate;
  ~OpenAtExit() {
    if (std::FILE* f = std::fopen(gate.path.c_str(), "w")) std::fclose(f);
  }
};

}  // namespace

TEST_CASE("process pool: a burst held behind busy workers shows in the peaks after it drained",
          "[process_pool][fork][peaks][http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  Gate gate;
  ee::ProcessPoolExecutor pool(options(2, registry));
  ee::MetricsServer server("127.0.0.1:0", registry);
  const OpenAtExit release{gate};
  // Both workers up first: a task goes to the worker with the most room in its window,
  // and a worker still starting has none.
  await_gauge(server.port(), "executor_workers", 2);
  auto held_a = pool.submit(wait_for_file, gate.path);
  auto held_b = pool.submit(wait_for_file, gate.path);
  // Both workers run a held task (the running gauge reads the workers' slots).
  await_gauge(server.port(), "executor_tasks_running", 2);

  // Seven tasks wait behind them: in the submit queue or sent ahead into the workers'
  // windows (max_inflight_per_worker is 16), queued either way.
  constexpr int kBurst = 7;
  std::vector<ee::Future<int>> burst;
  for (int i = 0; i < kBurst; ++i) burst.push_back(pool.submit(one));
  gate.open();
  CHECK(held_a.get() == 1);
  CHECK(held_b.get() == 1);
  for (auto& f : burst) CHECK(f.get() == 1);

  const auto page = http_page(server.port());
  CHECK(metric(page, "executor_tasks_queued", kPool) == 0);
  CHECK(metric(page, "executor_tasks_running", kPool) == 0);
  CHECK(metric(page, "executor_tasks_queued_max", kPool) == kBurst);
  CHECK(metric(page, "executor_tasks_running_max", kPool) == 2);
}

TEST_CASE("process pool: one task at a time peaks at one queued and one running",
          "[process_pool][fork][peaks][http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ProcessPoolExecutor pool(options(3, registry));  // three workers, never more than one busy
  ee::MetricsServer server("127.0.0.1:0", registry);
  for (int i = 0; i < 20; ++i) CHECK(pool.submit(one).get() == 1);
  const auto page = http_page(server.port());
  CHECK(metric(page, "executor_tasks_queued_max", kPool) == 1);
  CHECK(metric(page, "executor_tasks_running_max", kPool) == 1);
}

TEST_CASE("process pool: a map chunk counts as one task in the peaks as in the gauges",
          "[process_pool][fork][peaks][http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  Gate gate;
  ee::ProcessPoolExecutor pool(options(1, registry));
  ee::MetricsServer server("127.0.0.1:0", registry);
  const OpenAtExit release{gate};
  auto held = pool.submit(wait_for_file, gate.path);
  await_gauge(server.port(), "executor_tasks_running", 1);
  // Twelve items in chunks of four: three tasks queued behind the held one, as the gauge
  // says.
  auto first = pool.map(wait_for_file, std::vector<std::string>(12, gate.path),
                        ee::MapOptions{.chunksize = 4});
  CHECK(metric(http_page(server.port()), "executor_tasks_queued", kPool) == 3);
  // Two more chunks after that scrape: five at once, seen by no scrape.
  auto second = pool.map(wait_for_file, std::vector<std::string>(8, gate.path),
                         ee::MapOptions{.chunksize = 4});
  gate.open();
  CHECK(held.get() == 1);
  CHECK(first.to_vector() == std::vector<int>(12, 1));
  CHECK(second.to_vector() == std::vector<int>(8, 1));
  const auto page = http_page(server.port());
  CHECK(metric(page, "executor_tasks_queued", kPool) == 0);
  CHECK(metric(page, "executor_tasks_queued_max", kPool) == 5);
  CHECK(metric(page, "executor_tasks_running_max", kPool) == 1);
}
