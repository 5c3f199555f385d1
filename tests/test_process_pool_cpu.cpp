// The process pool's CPU time. executor_worker_cpu_seconds_total is the CPU time (user +
// system) of the pool's worker processes: each live worker's process CPU clock, read at
// scrape, plus the whole CPU time of every worker that exited (crashed, timed out,
// recycled), which the zygote reads from wait4 when it reaps it. With
// ExporterOptions::task_cpu_time, each worker also reads its CPU clock around each task and
// sends the difference back with the result: executor_task_cpu_seconds.
//
// The tasks here burn a given amount of their own process's CPU time (not wall time), so
// the CPU they used is known exactly whatever else the machine runs.

#include <executor_exporter/executor_exporter.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <ctime>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cpu_burn.hpp"
#include "http_client.hpp"
#include "prom_text.hpp"
#include "scrape.hpp"

namespace ee = executor_exporter;
using ee_test::prom::metric;
using namespace std::chrono_literals;

using ee_test::http_page;

namespace {

using ee_test::burn_ms;
using ee_test::own_cpu_seconds;

int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

// Burns, then dies before it can answer: only the zygote's reaping sees this CPU time.
int burn_then_die(int ms) {
  burn_ms(ms);
  ::raise(SIGKILL);
  return ms;
}

int burn_then_throw(int ms) {
  burn_ms(ms);
  throw std::runtime_error("burned");
}

const ee_test::prom::Labels kPool{{"executor", "pp_cpu"}};

ee::ProcessPoolOptions options(std::size_t workers, std::shared_ptr<prometheus::Registry> r) {
  ee::ProcessPoolOptions o;
  o.max_workers = workers;
  // Each test starts its MetricsServer after the pool: a fork while another thread holds
  // a lock (the allocator's, under ASan) leaves it locked in the children for good. The
  // library's own background fold thread is running already, hence allow.
  o.thread_check = ee::ThreadCheck::allow;
  o.registry = std::move(r);
  o.id = "pp_cpu";
  return o;
}

double worker_cpu(const ee_test::prom::Page& page) {
  return metric(page, "executor_worker_cpu_seconds_total", kPool);
}

// The one sample `name` of the pool's own series (no task label: not a named task's), with
// `extra` labels.
double unnamed(const ee_test::prom::Page& page, const std::string& name,
               ee_test::prom::Labels extra = {}) {
  extra.insert(kPool.begin(), kPool.end());
  std::vector<double> found;
  for (const auto* s : page.find(name, extra)) {
    if (s->labels.count("task") == 0) found.push_back(s->value);
  }
  REQUIRE(found.size() == 1);
  return found.front();
}

double run_count(const ee_test::prom::Page& page) {
  return unnamed(page, "executor_task_run_seconds_count", {{"result", "completed"}}) +
         unnamed(page, "executor_task_run_seconds_count", {{"result", "failed"}});
}

}  // namespace

TEST_CASE("process pool: the workers' CPU seconds hold what their tasks burned",
          "[process_pool][fork][cpu][http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  std::optional<ee::MetricsServer> server;  // started after the pool's fork (see above)
  const auto began = std::chrono::steady_clock::now();
  double cpu = 0;
  {
    ee::ProcessPoolExecutor pool(options(2, registry));
    server.emplace("127.0.0.1:0", registry);
    std::vector<ee::Future<int>> burns;
    for (int i = 0; i < 6; ++i) burns.push_back(pool.submit(burn_ms, 50));
    for (auto& f : burns) CHECK(f.get() == 50);

    const auto page = http_page(server->port());
    cpu = worker_cpu(page);
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    INFO("worker CPU " << cpu << " s after " << elapsed << " s of wall time");
    // Read from the live workers' clocks: at least what the tasks burned, at most what two
    // processes can use in the wall time that passed.
    CHECK(cpu >= 6 * 0.050);
    CHECK(cpu <= 2 * elapsed);
    // Without task_cpu_time no task is timed on the CPU.
    CHECK(unnamed(page, "executor_task_cpu_seconds_count") == 0);
  }
  // The pool is gone, its workers with it: what they used stays counted.
  CHECK(worker_cpu(http_page(server->port())) >= cpu);
}

TEST_CASE("process pool: workers whose tasks sleep show CPU seconds far below busy seconds",
          "[process_pool][fork][cpu][http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ProcessPoolExecutor pool(options(2, registry));
  ee::MetricsServer server("127.0.0.1:0", registry);
  std::vector<ee::Future<int>> sleeps;
  for (int i = 0; i < 4; ++i) sleeps.push_back(pool.submit(sleep_ms, 150));
  for (auto& f : sleeps) CHECK(f.get() == 150);

  const auto page = http_page(server.port());
  const double cpu = worker_cpu(page);
  const double busy = metric(page, "executor_worker_busy_seconds_total", kPool);
  INFO("worker CPU " << cpu << " s, busy " << busy << " s");
  CHECK(busy >= 4 * 0.150);
  CHECK(cpu < busy / 4);
  CHECK(cpu > 0);  // a forked worker that decoded and answered tasks used some
}

TEST_CASE("process pool: recycled workers' CPU seconds stay in the counter",
          "[process_pool][fork][cpu][http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto o = options(1, registry);
  o.max_tasks_per_child = 1;  // every task in a fresh process
  ee::ProcessPoolExecutor pool(o);
  ee::MetricsServer server("127.0.0.1:0", registry);
  double last = 0;
  for (int i = 1; i <= 4; ++i) {
    CHECK(pool.submit(burn_ms, 50).get() == 50);
    // The worker leaves after answering; its whole CPU time comes with the zygote's report
    // of its exit, read by the pool's I/O thread a moment later.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    auto page = http_page(server.port());
    while (metric(page, "executor_worker_restarts_total",
                  {{"executor", "pp_cpu"}, {"reason", "recycled"}}) < i) {
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      std::this_thread::sleep_for(2ms);
      page = http_page(server.port());
    }
    const double now = worker_cpu(page);
    INFO("after task " << i << ": " << now << " s, before: " << last << " s");
    CHECK(now >= last);
    // Each task ran in a process that exited after it: only the reaped processes' CPU
    // times can add up to this.
    CHECK(now >= i * 0.050);
    last = now;
  }
}

TEST_CASE("process pool: a crashed worker's CPU seconds stay in the counter",
          "[process_pool][fork][cpu][http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ProcessPoolExecutor pool(options(1, registry));
  ee::MetricsServer server("127.0.0.1:0", registry);
  CHECK(pool.submit(sleep_ms, 1).get() == 1);  // the worker is up
  const double before = worker_cpu(http_page(server.port()));

  // No scrape runs while it burns: its 100 ms reach the counter only through its exit.
  CHECK_THROWS_AS(pool.submit(burn_then_die, 100).get(), ee::WorkerCrashedError);
  CHECK(pool.submit(sleep_ms, 1).get() == 1);  // its replacement answers
  const auto page = http_page(server.port());
  const double after = worker_cpu(page);
  INFO("before the crash " << before << " s, after " << after << " s");
  CHECK(after >= before + 0.100);
  CHECK(metric(page, "executor_worker_restarts_total",
               {{"executor", "pp_cpu"}, {"reason", "crashed"}}) == 1);
}

TEST_CASE("process pool: with task_cpu_time each task's CPU time comes back with its result",
          "[process_pool][fork][cpu][http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto o = options(2, registry);
  o.exporter.task_cpu_time = true;
  ee::ProcessPoolExecutor pool(o);
  ee::MetricsServer server("127.0.0.1:0", registry);
  std::vector<ee::Future<int>> tasks;
  for (int i = 0; i < 5; ++i) tasks.push_back(pool.submit(burn_ms, 40));
  for (int i = 0; i < 2; ++i) tasks.push_back(pool.submit(sleep_ms, 100));
  for (auto& f : tasks) (void)f.get();
  CHECK_THROWS_AS(pool.submit(burn_then_throw, 40).get(), ee::ProcessTaskError);
  // A chunk of map() items runs as one task: one run time, one CPU time.
  auto items = pool.map(burn_ms, std::vector<int>{20, 20}, ee::MapOptions{.chunksize = 2});
  CHECK(items.to_vector() == std::vector<int>{20, 20});
  CHECK(pool.submit_named("named", burn_ms, 30).get() == 30);

  const auto page = http_page(server.port());
  const double count = unnamed(page, "executor_task_cpu_seconds_count");
  const double sum = unnamed(page, "executor_task_cpu_seconds_sum");
  INFO("task CPU: " << count << " tasks, " << sum << " s");
  // 7 tasks, the one that threw, and the chunk: one CPU time per run time.
  CHECK(count == 9);
  CHECK(count == run_count(page));
  // Burned: 5 x 40 + 40 + 2 x 20 ms; the sleepers and the rest of the worker's
  // bookkeeping add a little, never more than the workers used in all.
  CHECK(sum >= 0.280);
  CHECK(sum < 0.280 + 0.100);
  CHECK(sum <= worker_cpu(page));
  const ee_test::prom::Labels named{{"executor", "pp_cpu"}, {"task", "named"}};
  CHECK(metric(page, "executor_task_cpu_seconds", named, "_count") == 1);
  CHECK(metric(page, "executor_task_cpu_seconds", named, "_sum") >= 0.030);
}
