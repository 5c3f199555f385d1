// CPU time against wall time: executor_worker_cpu_seconds_total (the thread pool's worker
// threads' CPU clocks, read at scrape) and executor_task_cpu_seconds (the thread CPU clock
// read at each task's start and end, with ExporterOptions::task_cpu_time). A pool whose
// tasks block shows busy seconds far above its CPU seconds; one that computes, the two
// close together.

#include <executor_exporter/adapters/asio_thread_pool.hpp>
#include <executor_exporter/executor_exporter.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <ctime>
#include <memory>
#include <thread>

#include "http_client.hpp"
#include "prom_text.hpp"
#include "scrape.hpp"

namespace ee = executor_exporter;
using ee_test::prom::metric;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using ee_test::http_page;

namespace {

double thread_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// Spins until the calling thread has used `cpu` more CPU time: exactly that much CPU, and
// at least that much wall time, however loaded the machine (a spin on wall time gave less
// CPU than asked whenever the thread was preempted).
void spin(Clock::duration cpu) {
  const double until = thread_cpu_seconds() + std::chrono::duration<double>(cpu).count();
  volatile unsigned sink = 0;
  while (thread_cpu_seconds() < until) sink = sink + 1;
}

ee::ThreadPoolOptions cpu_options(const char* id, std::shared_ptr<prometheus::Registry> registry) {
  ee::ThreadPoolOptions options;
  options.id = id;
  options.registry = std::move(registry);
  options.exporter.task_cpu_time = true;
  return options;
}

}  // namespace

TEST_CASE("a task that sleeps uses far less CPU than wall time and a spinning one about as much",
          "[metrics][cpu][http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::MetricsServer server("127.0.0.1:0", registry);
  ee::ThreadPoolExecutor pool(1, cpu_options("cpu_pool", registry));
  const ee_test::prom::Labels sleeper{{"executor", "cpu_pool"}, {"task", "sleep"}};
  const ee_test::prom::Labels spinner{{"executor", "cpu_pool"}, {"task", "spin"}};
  pool.submit_named("sleep", [] { std::this_thread::sleep_for(200ms); }).get();
  pool.submit_named("spin", [] { spin(200ms); }).get();

  const auto page = http_page(server.port());
  const double sleep_cpu = metric(page, "executor_task_cpu_seconds", sleeper, "_sum");
  const double sleep_wall =
      metric(page, "executor_task_run_seconds",
             {{"executor", "cpu_pool"}, {"task", "sleep"}, {"result", "completed"}}, "_sum");
  const double spin_cpu = metric(page, "executor_task_cpu_seconds", spinner, "_sum");
  INFO("sleeping task: cpu " << sleep_cpu << " s, wall " << sleep_wall << " s; spinning task: cpu "
                             << spin_cpu << " s");
  CHECK(metric(page, "executor_task_cpu_seconds", sleeper) == 1);
  CHECK(sleep_wall >= 0.2);
  CHECK(sleep_cpu < 0.05);
  // The spinner used 200 ms of its thread's CPU between the task's two clock reads.
  CHECK(spin_cpu <= 0.2 * 1.5);
  CHECK(spin_cpu >= 0.2);

  // The worker thread's own clock: at least the spinning, at most wall time since start.
  const double worker_cpu =
      metric(page, "executor_worker_cpu_seconds_total", {{"executor", "cpu_pool"}});
  const double busy =
      metric(page, "executor_worker_busy_seconds_total", {{"executor", "cpu_pool"}});
  INFO("worker cpu " << worker_cpu << " s, busy " << busy << " s");
  CHECK(worker_cpu >= spin_cpu * 0.99);
  CHECK(worker_cpu < busy);  // half its busy time was a sleep
}

TEST_CASE("the thread pool's worker CPU seconds need no option and never decrease",
          "[metrics][cpu]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, "cpu", {}, "cpu_default", registry);
  const ee_test::prom::Labels l{{"executor", "cpu_default"}};
  pool.submit([] { spin(100ms); }).get();
  const double first = metric(ee_test::scrape(registry), "executor_worker_cpu_seconds_total", l);
  CHECK(first >= 0.1);
  // Without the option no task CPU time is measured.
  CHECK(metric(ee_test::scrape(registry), "executor_task_cpu_seconds", l) == 0);
  // Workers that leave keep their CPU time in the counter.
  pool.resize(1);
  pool.submit([] { spin(20ms); }).get();
  const double second = metric(ee_test::scrape(registry), "executor_worker_cpu_seconds_total", l);
  CHECK(second >= first);
  CHECK(second >= first + 0.02);
}

TEST_CASE("the proxy measures CPU time at task boundaries only with the option",
          "[metrics][cpu][proxy]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ExporterOptions options;
  options.task_cpu_time = true;
  ee::InstrumentedExecutorProxy<ee::adapters::AsioThreadPool> proxy(
      ee::adapters::AsioThreadPool(1),
      ee::ExecutorExporter("proxied_cpu", "asio", registry, options), 1);
  const ee_test::prom::Labels l{{"executor", "proxied_cpu"}};
  proxy.submit([] { spin(100ms); }).get();
  proxy.submit([] { std::this_thread::sleep_for(100ms); }).get();
  const auto page = ee_test::scrape(registry);
  CHECK(metric(page, "executor_task_cpu_seconds", l) == 2);
  const double task_cpu = metric(page, "executor_task_cpu_seconds", l, "_sum");
  CHECK(task_cpu >= 0.1);
  CHECK(task_cpu <= 0.1 * 1.5 + 0.05);
  // The proxy cannot read the wrapped executor's threads: its worker CPU seconds are its
  // tasks' CPU time.
  CHECK(metric(page, "executor_worker_cpu_seconds_total", l) == Approx(task_cpu).margin(1e-6));
}
