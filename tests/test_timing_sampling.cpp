// ExporterOptions::timing_sample_rate: every task is counted exactly, only about 1 in N
// is timed into the wait and run histograms.

#include <executor_exporter/adapters/asio_thread_pool.hpp>
#include <executor_exporter/executor_exporter.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "scrape.hpp"

namespace ee = executor_exporter;
using ee_test::prom::value;

namespace {

ee::ThreadPoolOptions sampled(std::string id, std::shared_ptr<prometheus::Registry> registry,
                              std::uint32_t rate) {
  ee::ThreadPoolOptions options;
  options.id = std::move(id);
  options.registry = std::move(registry);
  options.exporter.timing_sample_rate = rate;
  return options;
}

double run_count(const ee_test::prom::Page& page, const ee_test::prom::Labels& labels) {
  auto with = [&](const char* result) {
    auto l = labels;
    l.emplace("result", result);
    return value(page, "executor_task_run_seconds_count", l);
  };
  return with("completed") + with("failed");
}

}  // namespace

TEST_CASE("with timing_sample_rate 16 every task is counted and about 1 in 16 is timed",
          "[sampling]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, sampled("sampled", registry, 16));
  constexpr int n = 8000;
  std::vector<ee::Future<int>> futures;
  futures.reserve(n);
  for (int i = 0; i < n; ++i) {
    futures.push_back(pool.submit([i] {
      if (i % 10 == 0) throw std::runtime_error("tenth");
      return i;
    }));
  }
  for (int i = 0; i < 300; ++i) pool.post([] {});
  pool.wait();

  // Mid-flight pages reconcile too (counts are exact, not sampled).
  const auto page = ee_test::scrape(registry);
  const ee_test::prom::Labels labels{{"executor", "sampled"}};
  CHECK(value(page, "executor_tasks_submitted_total", labels) == n + 300);
  CHECK(value(page, "executor_tasks_completed_total", labels) == n - n / 10 + 300);
  CHECK(value(page, "executor_tasks_failed_total", labels) == n / 10);
  REQUIRE(ee_test::unaccounted(page, labels) == 0);

  // Gaps between timed tasks are uniform on 1..31: ~525 of 8300 timed, sd ~ 13.
  const double timed = run_count(page, labels);
  INFO("timed tasks: " << timed);
  CHECK(timed > 8300.0 / 16 * 0.75);
  CHECK(timed < 8300.0 / 16 * 1.25);
  // Every timed task has both its wait and its run observed.
  CHECK(value(page, "executor_task_wait_seconds_count", labels) == timed);
}

TEST_CASE("named tasks are sampled in their own series and still counted exactly", "[sampling]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, sampled("sampled_named", registry, 16));
  for (int i = 0; i < 1600; ++i) (void)pool.submit_named("named", [] {});
  pool.wait();
  const auto page = ee_test::scrape(registry);
  const ee_test::prom::Labels named{{"executor", "sampled_named"}, {"task", "named"}};
  CHECK(value(page, "executor_tasks_submitted_total", named) == 1600);
  CHECK(value(page, "executor_tasks_completed_total", named) == 1600);
  REQUIRE(ee_test::unaccounted(page, named) == 0);
  const double timed = run_count(page, named);
  INFO("timed tasks: " << timed);
  CHECK(timed > 100 * 0.6);
  CHECK(timed < 100 * 1.4);
}

TEST_CASE("with the default rate every task is timed and the histograms match the counters",
          "[sampling]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, "t", {}, "every", registry);
  for (int i = 0; i < 500; ++i)
    (void)pool.submit([i] {
      if (i % 5 == 0) throw 1;
    });
  pool.wait();
  const auto page = ee_test::scrape(registry);
  const ee_test::prom::Labels labels{{"executor", "every"}};
  CHECK(value(page, "executor_tasks_completed_total", labels) == 400);
  CHECK(value(page, "executor_tasks_failed_total", labels) == 100);
  CHECK(value(page, "executor_task_run_seconds_count",
              {{"executor", "every"}, {"result", "completed"}}) == 400);
  CHECK(value(page, "executor_task_run_seconds_count",
              {{"executor", "every"}, {"result", "failed"}}) == 100);
  CHECK(value(page, "executor_task_wait_seconds_count", labels) == 500);
}

TEST_CASE("busy seconds are scaled up from the timed tasks when timing is sampled", "[sampling]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, sampled("busy", registry, 4));
  for (int i = 0; i < 400; ++i)
    pool.post([] { std::this_thread::sleep_for(std::chrono::milliseconds(1)); });
  pool.wait();
  const auto page = ee_test::scrape(registry);
  // 400 tasks of >= 1 ms: at least 0.4 s of work; the estimate from ~100 timed tasks is
  // well within a factor of two (sleeps overshoot, never undershoot).
  const double busy = value(page, "executor_worker_busy_seconds_total", {{"executor", "busy"}});
  INFO("busy seconds: " << busy);
  CHECK(busy > 0.2);
  CHECK(busy < 4.0);
  CHECK(value(page, "executor_tasks_completed_total", {{"executor", "busy"}}) == 400);
}

TEST_CASE("InstrumentedExecutorProxy samples timing the same way", "[sampling][proxy]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ExporterOptions exporter_options;
  exporter_options.timing_sample_rate = 8;
  {
    ee::InstrumentedExecutorProxy<ee::adapters::AsioThreadPool> pool(
        ee::adapters::AsioThreadPool(2),
        ee::ExecutorExporter("proxy_sampled", "asio", registry, exporter_options), 2);
    std::vector<ee::Future<void>> futures;
    for (int i = 0; i < 4000; ++i) futures.push_back(pool.submit([] {}));
    for (auto& f : futures) f.get();
  }
  const auto page = ee_test::scrape(registry);
  const ee_test::prom::Labels labels{{"executor", "proxy_sampled"}};
  CHECK(value(page, "executor_tasks_submitted_total", labels) == 4000);
  CHECK(value(page, "executor_tasks_completed_total", labels) == 4000);
  REQUIRE(ee_test::unaccounted(page, labels) == 0);
  const double timed = run_count(page, labels);
  INFO("timed tasks: " << timed);
  CHECK(timed > 500 * 0.7);
  CHECK(timed < 500 * 1.3);
  CHECK(value(page, "executor_task_wait_seconds_count", labels) == timed);
}

TEST_CASE("a zero or conflicting timing_sample_rate is refused with a clear error", "[sampling]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ExporterOptions zero;
  zero.timing_sample_rate = 0;
  CHECK_THROWS_WITH(ee::ExecutorExporter("z", "custom", registry, zero),
                    Catch::Contains("timing_sample_rate"));
  ee::ExporterOptions eight;
  eight.timing_sample_rate = 8;
  ee::ExecutorExporter first("shared", "custom", registry, eight);
  CHECK_THROWS_WITH(ee::ExecutorExporter("shared", "custom", registry),
                    Catch::Contains("timing_sample_rate"));
  ee::ExecutorExporter same("shared", "custom", registry, eight);  // same rate: joins
}

TEST_CASE("the ExecutorExporter API returns 0 for an untimed task and counts it anyway",
          "[sampling]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ExporterOptions options;
  options.timing_sample_rate = 1000000;  // the first task is timed, then almost none
  ee::ExecutorExporter exporter("api", "custom", registry, options);
  const auto first = exporter.task_submitted();
  CHECK(first != 0);
  exporter.task_finished(exporter.task_started(first), true);
  const auto second = exporter.task_submitted();
  CHECK(second == 0);
  const auto started = exporter.task_started(second);
  CHECK(started == 0);
  exporter.task_finished(started, false);
  const auto page = ee_test::scrape(registry);
  const ee_test::prom::Labels labels{{"executor", "api"}};
  CHECK(value(page, "executor_tasks_completed_total", labels) == 1);
  CHECK(value(page, "executor_tasks_failed_total", labels) == 1);
  CHECK(run_count(page, labels) == 1);
  REQUIRE(ee_test::unaccounted(page, labels) == 0);
}

TEST_CASE("the largest timing_sample_rate times the first task and still counts every one",
          "[sampling]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, sampled("huge", registry, UINT32_MAX));
  for (int i = 0; i < 1000; ++i) pool.post([] {});
  pool.wait();
  const auto page = ee_test::scrape(registry);
  const ee_test::prom::Labels labels{{"executor", "huge"}};
  CHECK(value(page, "executor_tasks_completed_total", labels) == 1000);
  CHECK(run_count(page, labels) == 1);
  REQUIRE(ee_test::unaccounted(page, labels) == 0);
}

TEST_CASE("with sampled timing a running task counts once in the busy seconds, not N times",
          "[sampling][busy]") {
  // The first task a thread submits is timed. While it runs it occupies one worker: the
  // busy seconds may not grow faster than the wall clock (they used to grow 1000x as fast
  // here, the sample rate, until the task ended).
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, sampled("long", registry, 1000));
  std::promise<void> gate;
  std::promise<void> started;
  const auto t0 = std::chrono::steady_clock::now();
  auto f = pool.submit([&, g = gate.get_future().share()] {
    started.set_value();
    g.wait();
  });
  started.get_future().wait();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const double running_busy = value(ee_test::scrape(registry), "executor_worker_busy_seconds_total",
                                    {{"executor", "long"}});
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO("busy " << running_busy << " s after " << elapsed << " s of wall time");
  CHECK(running_busy >= 0.09);
  CHECK(running_busy <= elapsed);
  gate.set_value();
  f.get();
  pool.wait();
  // Once it ended, the timed task stands for its sample of 1000 (the finished-task
  // estimate), and the counter never went down.
  const double ended_busy = value(ee_test::scrape(registry), "executor_worker_busy_seconds_total",
                                  {{"executor", "long"}});
  CHECK(ended_busy >= running_busy);
  CHECK(ended_busy >= 1000 * 0.09);
}
