// The exported numbers are exact: counts, histogram counts and sums, and gauges.

#include <executor_exporter/executor_exporter.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "scrape.hpp"
#include "wait_until.hpp"

namespace ee = executor_exporter;
using ee_test::prom::Labels;
using ee_test::prom::value;

namespace {

std::shared_ptr<prometheus::Registry> fresh() { return std::make_shared<prometheus::Registry>(); }

Labels of(const std::string& id) { return {{"executor", id}, {"executor_type", "thread_pool"}}; }

Labels with(Labels l, const std::string& k, const std::string& v) {
  l.emplace(k, v);
  return l;
}

}  // namespace

TEST_CASE("a scripted workload produces exact counts, histogram counts and sums",
          "[metrics]") {
  auto registry = fresh();
  {
    ee::ThreadPoolExecutor pool(2, "t", {}, "scripted", registry);
    std::vector<ee::Future<int>> futures;
    for (int i = 0; i < 10; ++i) futures.push_back(pool.submit([i] { return i; }));
    for (int i = 0; i < 3; ++i) {
      futures.push_back(pool.submit([]() -> int { throw std::runtime_error("x"); }));
    }
    int ok = 0, failed = 0;
    for (auto& f : futures) {
      try {
        f.get();
        ++ok;
      } catch (const std::runtime_error&) {
        ++failed;
      }
    }
    REQUIRE(ok == 10);
    REQUIRE(failed == 3);

    const auto id = of("scripted");
    // Worker threads come up on their own; only that gauge may need a moment.
    REQUIRE(ee_test::wait_until(
        [&] { return value(ee_test::scrape(registry), "executor_workers", id) == 2; },
        std::chrono::seconds(10)));
    // Tasks are counted before get() returns: no sleep or retry is needed for them.
    auto page = ee_test::scrape(registry);
    CHECK(value(page, "executor_tasks_submitted_total", id) == 13);
    CHECK(value(page, "executor_task_wait_seconds_count", id) == 13);
    CHECK(value(page, "executor_task_run_seconds_count", with(id, "result", "completed")) == 10);
    CHECK(value(page, "executor_task_run_seconds_count", with(id, "result", "failed")) == 3);
    CHECK(value(page, "executor_task_run_seconds_bucket",
                with(with(id, "result", "completed"), "le", "+Inf")) == 10);
    CHECK(value(page, "executor_tasks_queued", id) == 0);
    CHECK(value(page, "executor_tasks_running", id) == 0);
    CHECK(value(page, "executor_tasks_cancelled_total", id) == 0);
    CHECK(value(page, "executor_max_workers", id) == 2);
    CHECK(value(page, "executor_workers", id) == 2);
    CHECK(value(page, "executor_workers_started_total", id) == 2);
    // Busy time is the sum of the run times, to the nanosecond.
    const double run_sum =
        value(page, "executor_task_run_seconds_sum", with(id, "result", "completed")) +
        value(page, "executor_task_run_seconds_sum", with(id, "result", "failed"));
    CHECK(value(page, "executor_worker_busy_seconds_total", id) == Approx(run_sum).epsilon(1e-9));
    CHECK(run_sum > 0);
  }
  auto after = ee_test::scrape(registry);
  CHECK(value(after, "executor_workers", of("scripted")) == 0);
  CHECK(value(after, "executor_max_workers", of("scripted")) == 0);
}

TEST_CASE("gauges show running and queued tasks while workers are blocked", "[metrics]") {
  auto registry = fresh();
  ee::ThreadPoolExecutor pool(2, "t", {}, "blocked", registry);
  std::promise<void> gate;
  std::shared_future<void> open = gate.get_future().share();
  std::atomic<int> started{0};
  std::vector<ee::Future<void>> futures;
  for (int i = 0; i < 5; ++i) {
    futures.push_back(pool.submit([&] {
      ++started;
      open.wait();
    }));
  }
  REQUIRE(ee_test::wait_until([&] { return started == 2; }, std::chrono::seconds(10)));
  auto page = ee_test::scrape(registry);
  CHECK(value(page, "executor_tasks_running") == 2);
  CHECK(value(page, "executor_tasks_queued") == 3);
  CHECK(value(page, "executor_tasks_submitted_total") == 5);
  CHECK(value(page, "executor_task_wait_seconds_count") == 2);

  gate.set_value();
  for (auto& f : futures) f.get();
  page = ee_test::scrape(registry);
  CHECK(value(page, "executor_tasks_running") == 0);
  CHECK(value(page, "executor_tasks_queued") == 0);
  CHECK(value(page, "executor_task_run_seconds_count", {{"result", "completed"}}) == 5);
}

TEST_CASE("histogram buckets are configurable and observations land in the right bucket",
          "[metrics]") {
  auto registry = fresh();
  ee::ExporterOptions options;
  options.run_buckets = {0.001, 60};
  options.wait_buckets = {3600};
  ee::ThreadPoolOptions pool_options;
  pool_options.id = "buckets";
  pool_options.registry = registry;
  pool_options.exporter = options;
  ee::ThreadPoolExecutor pool(1, pool_options);
  for (int i = 0; i < 4; ++i) {
    pool.submit([] { std::this_thread::sleep_for(std::chrono::milliseconds(5)); }).get();
  }
  auto page = ee_test::scrape(registry);
  const Labels ok{{"result", "completed"}};
  CHECK(value(page, "executor_task_run_seconds_bucket", with(ok, "le", "0.001")) == 0);
  CHECK(value(page, "executor_task_run_seconds_bucket", with(ok, "le", "60")) == 4);
  CHECK(value(page, "executor_task_run_seconds_bucket", with(ok, "le", "+Inf")) == 4);
  CHECK(value(page, "executor_task_run_seconds_sum", ok) >= 0.020);
  CHECK(value(page, "executor_task_wait_seconds_bucket", {{"le", "3600"}}) == 4);
  CHECK(ee_test::prom::count(page, "executor_task_wait_seconds_bucket") == 2);
}

TEST_CASE("executors with the same id add up and different ids stay apart", "[metrics]") {
  auto registry = fresh();
  {
    ee::ThreadPoolExecutor a(2, "a", {}, "shared", registry);
    ee::ThreadPoolExecutor b(3, "b", {}, "shared", registry);
    ee::ThreadPoolExecutor c(1, "c", {}, "other", registry);
    for (int i = 0; i < 4; ++i) a.submit([] {}).get();
    for (int i = 0; i < 6; ++i) b.submit([] {}).get();
    c.submit([] {}).get();

    REQUIRE(ee_test::wait_until(
        [&] { return value(ee_test::scrape(registry), "executor_workers", of("shared")) == 5; },
        std::chrono::seconds(10)));
    auto page = ee_test::scrape(registry);
    CHECK(value(page, "executor_max_workers", of("shared")) == 5);
    CHECK(value(page, "executor_workers", of("shared")) == 5);
    CHECK(value(page, "executor_tasks_submitted_total", of("shared")) == 10);
    CHECK(value(page, "executor_max_workers", of("other")) == 1);
    CHECK(value(page, "executor_tasks_submitted_total", of("other")) == 1);
    a.shutdown();
  }
  auto page = ee_test::scrape(registry);
  CHECK(value(page, "executor_max_workers", of("shared")) == 0);
  CHECK(value(page, "executor_tasks_submitted_total", of("shared")) == 10);
}

TEST_CASE("an executor recreated with the same id continues its counters", "[metrics]") {
  auto registry = fresh();
  for (int round = 0; round < 3; ++round) {
    ee::ThreadPoolExecutor pool(1, "t", {}, "again", registry);
    pool.submit([] {}).get();
  }
  CHECK(value(ee_test::scrape(registry), "executor_tasks_submitted_total", of("again")) == 3);
}

TEST_CASE("bad or conflicting bucket bounds are refused with a clear error", "[metrics]") {
  auto registry = fresh();
  ee::ExporterOptions decreasing;
  decreasing.run_buckets = {1, 0.5};
  REQUIRE_THROWS_AS(ee::ExecutorExporter("x", "t", registry, decreasing), std::invalid_argument);
  ee::ExporterOptions negative;
  negative.wait_buckets = {-1};
  REQUIRE_THROWS_AS(ee::ExecutorExporter("x", "t", registry, negative), std::invalid_argument);

  ee::ExecutorExporter first("shared", "t", registry);
  ee::ExporterOptions other;
  other.run_buckets = {1, 2};
  REQUIRE_THROWS_WITH(ee::ExecutorExporter("shared", "t", registry, other),
                      Catch::Contains("bucket"));
}

TEST_CASE("scrapes are exact however often they happen", "[metrics]") {
  auto registry = fresh();
  ee::ThreadPoolExecutor pool(2, "t", {}, "often", registry);
  double last_submitted = 0, last_completed = 0;
  for (int round = 0; round < 50; ++round) {
    std::vector<ee::Future<void>> fs;
    for (int i = 0; i < 20; ++i) fs.push_back(pool.submit([] {}));
    auto page = ee_test::scrape(registry);  // mid-flight
    const double submitted = value(page, "executor_tasks_submitted_total");
    const double completed = value(page, "executor_task_run_seconds_count", {{"result", "completed"}});
    REQUIRE(submitted == 20.0 * (round + 1));
    REQUIRE(completed >= last_completed);
    REQUIRE(submitted >= last_submitted);
    REQUIRE(value(page, "executor_tasks_queued") + value(page, "executor_tasks_running") ==
            submitted - completed);
    // With every task timed the outcome counter is the histogram's count on every page.
    REQUIRE(value(page, "executor_tasks_completed_total") == completed);
    last_submitted = submitted;
    last_completed = completed;
    for (auto& f : fs) f.get();
  }
  auto page = ee_test::scrape(registry);
  CHECK(value(page, "executor_task_run_seconds_count", {{"result", "completed"}}) == 1000);
}

TEST_CASE("counts from threads that have exited are kept", "[metrics]") {
  auto registry = fresh();
  ee::ThreadPoolExecutor pool(1, "t", {}, "threads", registry);
  for (int t = 0; t < 20; ++t) {
    std::thread([&] { pool.submit([] {}).get(); }).join();
    if (t % 5 == 0) ee::refresh(registry);
  }
  CHECK(value(ee_test::scrape(registry), "executor_tasks_submitted_total") == 20);
}

TEST_CASE("a registry that refuses duplicate families still works", "[metrics]") {
  auto registry = std::make_shared<prometheus::Registry>(prometheus::Registry::InsertBehavior::Throw);
  ee::ThreadPoolExecutor a(1, "a", {}, "a", registry);
  ee::ThreadPoolExecutor b(1, "b", {}, "b", registry);
  a.submit([] {}).get();
  b.submit([] {}).get();
  auto page = ee_test::scrape(registry);
  CHECK(value(page, "executor_tasks_submitted_total", of("a")) == 1);
  CHECK(value(page, "executor_tasks_submitted_total", of("b")) == 1);
}

TEST_CASE("exporters default to the process-wide registry", "[metrics]") {
  ee::ThreadPoolExecutor pool(1, "t", {}, "default-registry-test");
  pool.submit([] {}).get();
  auto page = ee_test::scrape(ee::default_registry());
  CHECK(value(page, "executor_tasks_submitted_total", of("default-registry-test")) == 1);
}

TEST_CASE("the exporter can instrument a hand-written executor", "[metrics]") {
  auto registry = fresh();
  ee::ExecutorExporter exporter("manual", "my_loop", registry);
  exporter.set_max_workers(1);
  exporter.worker_started();
  const auto submitted = exporter.task_submitted();
  const auto started = exporter.task_started(submitted);
  exporter.task_finished(started, /*ok=*/false);
  exporter.task_rejected(ee::RejectReason::queue_full);
  auto page = ee_test::scrape(registry);
  const Labels id{{"executor", "manual"}, {"executor_type", "my_loop"}};
  CHECK(value(page, "executor_tasks_submitted_total", id) == 1);
  CHECK(value(page, "executor_task_run_seconds_count", with(id, "result", "failed")) == 1);
  CHECK(value(page, "executor_tasks_rejected_total", with(id, "reason", "queue_full")) == 1);
  CHECK(value(page, "executor_workers", id) == 1);
  CHECK(value(page, "executor_max_workers", id) == 1);
}
