// Named tasks: the task label and its cardinality guard (issue 3).
#include <catch2/catch.hpp>

#include <future>
#include <latch>
#include <string>
#include <vector>

#include "pool_features_metrics.hpp"

namespace ee = executor_exporter;
using pool_test::value;

TEST_CASE("named tasks get their own series besides the totals", "[pool_features][named_tasks]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, pool_test::options(reg));
  std::vector<ee::Future<int>> fs;
  for (int i = 0; i < 3; ++i) fs.push_back(pool.submit_named("resize", [i] { return i; }));
  fs.push_back(pool.submit_named("resize", []() -> int { throw std::runtime_error("x"); }));
  fs.push_back(pool.submit([] { return 0; }));  // unnamed
  for (auto& f : fs) f.wait();
  pool.wait();
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_tasks_submitted_total", {{"task", "resize"}}) == 4);
  CHECK(value(fams, "executor_task_run_seconds", {{"task", "resize"}, {"result", "completed"}}) == 3);
  CHECK(value(fams, "executor_task_run_seconds", {{"task", "resize"}, {"result", "failed"}}) == 1);
  CHECK(value(fams, "executor_task_wait_seconds", {{"task", "resize"}}) == 4);
  // The unlabelled series still count every task.
  CHECK(value(fams, "executor_tasks_submitted_total") == 5);
  CHECK(value(fams, "executor_task_run_seconds", {{"result", "completed"}}) == 4);
  CHECK(pool_test::reconciles(fams));
  CHECK(pool_test::reconciles(fams, {{"task", "resize"}}));
  // Per-task series only: no worker gauges with a task label.
  CHECK(pool_test::find(fams, "executor_workers", {{"task", "resize"}}) == nullptr);
}

TEST_CASE("names past the limit fold into task=other", "[pool_features][named_tasks]") {
  auto reg = std::make_shared<prometheus::Registry>();
  auto o = pool_test::options(reg);
  o.max_task_names = 2;
  ee::ThreadPoolExecutor pool(2, o);
  for (int i = 0; i < 5; ++i) pool.submit_named("n" + std::to_string(i), [] {}).get();
  pool.submit_named("n0", [] {}).get();  // known names keep their series
  pool.wait();
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_tasks_submitted_total", {{"task", "n0"}}) == 2);
  CHECK(value(fams, "executor_tasks_submitted_total", {{"task", "n1"}}) == 1);
  CHECK(pool_test::find(fams, "executor_tasks_submitted_total", {{"task", "n2"}}) == nullptr);
  CHECK(value(fams, "executor_tasks_submitted_total", {{"task", "other"}}) == 3);
  CHECK(value(fams, "executor_task_names_overflow_total") == 3);
  CHECK(value(fams, "executor_tasks_submitted_total") == 6);
}

TEST_CASE("cancelling a named task counts under its name", "[pool_features][named_tasks]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_test::options(reg));
  std::promise<void> gate;
  std::latch started(1);
  auto blocker = pool.submit([&, g = gate.get_future().share()] {
    started.count_down();
    g.wait();
  });
  started.wait();
  auto f = pool.submit_named("job", [] {});
  CHECK(f.cancel());
  gate.set_value();
  blocker.get();
  pool.wait();
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_tasks_cancelled_total", {{"task", "job"}}) == 1);
  CHECK(value(fams, "executor_tasks_cancelled_total") == 1);
  CHECK(pool_test::reconciles(fams, {{"task", "job"}}));
}
