// Live resizing: scale_up / scale_down / resize.
#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <latch>
#include <stdexcept>
#include <vector>

#include "pool_features_metrics.hpp"
#include "wait_until.hpp"

namespace ee = executor_exporter;
using pool_test::value;

TEST_CASE("resize up and down follows in the worker metrics", "[pool_features][resize]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, pool_test::options(reg));
  pool.scale_up(2);
  CHECK(pool.max_workers() == 4);
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_max_workers") == 4);
  CHECK(value(fams, "executor_scale_events_total", {{"direction", "up"}, {"reason", "manual"}}) ==
        1);
  REQUIRE(ee_test::wait_until([&] { return value(ee::collect(reg), "executor_workers") == 4; },
                              std::chrono::seconds(5)));
  CHECK(value(ee::collect(reg), "executor_workers_started_total") == 4);

  pool.resize(1);
  CHECK(pool.max_workers() == 1);
  REQUIRE(ee_test::wait_until([&] { return value(ee::collect(reg), "executor_workers") == 1; },
                              std::chrono::seconds(5)));
  fams = ee::collect(reg);
  CHECK(value(fams, "executor_max_workers") == 1);
  CHECK(value(fams, "executor_scale_events_total", {{"direction", "down"}, {"reason", "manual"}}) ==
        1);
  CHECK(pool.submit([] { return 7; }).get() == 7);
}

TEST_CASE("scaling down never interrupts or loses a task", "[pool_features][resize]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(3, pool_test::options(reg));
  std::promise<void> release;
  auto gate = release.get_future().share();
  std::latch started(3);
  std::atomic<int> ran{0};
  std::vector<ee::Future<void>> running;
  for (int i = 0; i < 3; ++i) {
    running.push_back(pool.submit([&, gate] {
      started.count_down();
      gate.wait();
      ran.fetch_add(1);
    }));
  }
  started.wait();  // every worker is busy now
  std::vector<ee::Future<void>> queued;
  for (int i = 0; i < 20; ++i) queued.push_back(pool.submit([&] { ran.fetch_add(1); }));
  pool.scale_down(2);  // two workers leave after their current task
  release.set_value();
  for (auto& f : running) f.get();
  for (auto& f : queued) f.get();
  CHECK(ran.load() == 23);
  pool.wait();
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_tasks_submitted_total") == 23);
  CHECK(value(fams, "executor_task_run_seconds", {{"result", "completed"}}) == 23);
  CHECK(pool_test::reconciles(fams));
  REQUIRE(ee_test::wait_until([&] { return value(ee::collect(reg), "executor_workers") == 1; },
                              std::chrono::seconds(5)));
}

TEST_CASE("going to zero workers is refused", "[pool_features][resize]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, pool_test::options(reg));
  CHECK_THROWS_AS(pool.resize(0), std::invalid_argument);
  CHECK_THROWS_AS(pool.scale_down(2), std::invalid_argument);
  CHECK_THROWS_AS(pool.scale_down(5), std::invalid_argument);
  CHECK(pool.max_workers() == 2);
  pool.scale_down(0);  // no-op, no event
  pool.scale_up(0);
  CHECK(value(ee::collect(reg), "executor_scale_events_total",
              {{"direction", "down"}, {"reason", "manual"}}) == 0);
  CHECK(pool.submit([] { return 1; }).get() == 1);
}

TEST_CASE("a scale-up right after a scale-down keeps the leaving workers",
          "[pool_features][resize]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, pool_test::options(reg));
  pool.scale_down(1);
  pool.scale_up(3);
  CHECK(pool.max_workers() == 4);
  std::atomic<int> n{0};
  for (int i = 0; i < 50; ++i) pool.post([&] { n.fetch_add(1); });
  pool.wait();
  CHECK(n.load() == 50);
  REQUIRE(ee_test::wait_until([&] { return value(ee::collect(reg), "executor_workers") == 4; },
                              std::chrono::seconds(5)));
}

TEST_CASE("resizing after shutdown throws", "[pool_features][resize]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, pool_test::options(reg));
  pool.shutdown();
  CHECK_THROWS_AS(pool.scale_up(1), ee::ExecutorShutdownError);
  CHECK_THROWS_AS(pool.scale_down(1), ee::ExecutorShutdownError);
}
