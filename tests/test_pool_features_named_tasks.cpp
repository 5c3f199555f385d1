// Named tasks: the task label and its cardinality guard. A named task is counted
// only in its task-labelled series, so summing over `task` gives the executor's totals
// (as celery-exporter's `name` label), never twice.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "pool_features_metrics.hpp"

namespace ee = executor_exporter;
using pool_test::value;

namespace {

// What `sum by (executor) (metric{...})` returns: every series of `name` whose labels
// include `labels`, whatever their task label. Histograms sum their sample counts. Read
// from the exposition page, as every metric in the tests; a family that is not on the
// page fails instead of summing to 0.
double sum_over_tasks(const std::vector<prometheus::MetricFamily>& fams, const std::string& name,
                      const pool_test::Labels& labels = {}) {
  const auto page = pool_test::page_of(fams);
  const auto* family = page.family(name);
  if (family == nullptr) throw std::runtime_error("no family " + name + " on the page");
  const bool counted = family->type == "histogram" || family->type == "summary";
  return ee_test::prom::sum(page, counted ? name + "_count" : name, labels);
}

// submitted = completed + failed + cancelled + expired + queued + running, summed over
// every task label.
bool reconciles_summed(const std::vector<prometheus::MetricFamily>& fams) {
  return sum_over_tasks(fams, "executor_tasks_submitted_total") ==
         sum_over_tasks(fams, "executor_task_run_seconds") +
             sum_over_tasks(fams, "executor_tasks_cancelled_total") +
             sum_over_tasks(fams, "executor_tasks_expired_total") +
             sum_over_tasks(fams, "executor_tasks_queued") +
             sum_over_tasks(fams, "executor_tasks_running");
}

}  // namespace

TEST_CASE("a named task is counted only in its own series", "[pool_features][named_tasks]") {
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
  CHECK(value(fams, "executor_task_run_seconds", {{"task", "resize"}, {"result", "completed"}}) ==
        3);
  CHECK(value(fams, "executor_task_run_seconds", {{"task", "resize"}, {"result", "failed"}}) == 1);
  CHECK(value(fams, "executor_task_wait_seconds", {{"task", "resize"}}) == 4);
  // The unlabelled series count the unnamed task only...
  CHECK(value(fams, "executor_tasks_submitted_total") == 1);
  CHECK(value(fams, "executor_task_run_seconds", {{"result", "completed"}}) == 1);
  CHECK(value(fams, "executor_task_run_seconds", {{"result", "failed"}}) == 0);
  CHECK(value(fams, "executor_task_wait_seconds") == 1);
  // ...so summing over `task` gives the executor's totals, each task once.
  CHECK(sum_over_tasks(fams, "executor_tasks_submitted_total") == 5);
  CHECK(sum_over_tasks(fams, "executor_task_run_seconds", {{"result", "completed"}}) == 4);
  CHECK(sum_over_tasks(fams, "executor_task_run_seconds", {{"result", "failed"}}) == 1);
  CHECK(sum_over_tasks(fams, "executor_task_wait_seconds") == 5);
  CHECK(pool_test::reconciles(fams));
  CHECK(pool_test::reconciles(fams, {{"task", "resize"}}));
  CHECK(reconciles_summed(fams));
  // Per-task series only: no worker gauges with a task label.
  CHECK_FALSE(pool_test::has(fams, "executor_workers", {{"task", "resize"}}));
  CHECK_FALSE(pool_test::has(fams, "executor_worker_busy_seconds_total", {{"task", "resize"}}));
}

TEST_CASE("the executor's busy seconds still include named tasks", "[pool_features][named_tasks]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_test::options(reg));
  pool.submit_named("slow", [] { std::this_thread::sleep_for(std::chrono::milliseconds(60)); })
      .get();
  pool.wait();
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_worker_busy_seconds_total") >= 0.06);
  CHECK(value(fams, "executor_tasks_submitted_total") == 0);
  CHECK(value(fams, "executor_tasks_submitted_total", {{"task", "slow"}}) == 1);
  CHECK(reconciles_summed(fams));
}

TEST_CASE("summing over task reconciles while named and unnamed tasks are in flight",
          "[pool_features][named_tasks]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, pool_test::options(reg));
  std::promise<void> gate;
  auto opened = gate.get_future().share();
  std::latch started(2);
  // Two running (one named, one not), then queued ones of each kind, one cancelled.
  auto r1 = pool.submit_named("a", [&, opened] {
    started.count_down();
    opened.wait();
  });
  auto r2 = pool.submit([&, opened] {
    started.count_down();
    opened.wait();
  });
  started.wait();
  std::vector<ee::Future<void>> queued;
  for (int i = 0; i < 3; ++i) queued.push_back(pool.submit_named(i % 2 ? "a" : "b", [] {}));
  for (int i = 0; i < 2; ++i) queued.push_back(pool.submit([] {}));
  CHECK(queued[0].cancel());  // a "b"
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_tasks_running", {{"task", "a"}}) == 1);
  CHECK(value(fams, "executor_tasks_running") == 1);
  CHECK(sum_over_tasks(fams, "executor_tasks_running") == 2);
  CHECK(sum_over_tasks(fams, "executor_tasks_queued") == 4);
  CHECK(sum_over_tasks(fams, "executor_tasks_cancelled_total") == 1);
  CHECK(value(fams, "executor_tasks_cancelled_total", {{"task", "b"}}) == 1);
  CHECK(sum_over_tasks(fams, "executor_tasks_submitted_total") == 7);
  CHECK(pool_test::reconciles(fams));
  CHECK(pool_test::reconciles(fams, {{"task", "a"}}));
  CHECK(pool_test::reconciles(fams, {{"task", "b"}}));
  CHECK(reconciles_summed(fams));
  gate.set_value();
  pool.wait();
  fams = ee::collect(reg);
  CHECK(sum_over_tasks(fams, "executor_task_run_seconds") == 6);
  CHECK(sum_over_tasks(fams, "executor_tasks_running") == 0);
  CHECK(sum_over_tasks(fams, "executor_tasks_queued") == 0);
  CHECK(reconciles_summed(fams));
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
  CHECK_FALSE(pool_test::has(fams, "executor_tasks_submitted_total", {{"task", "n2"}}));
  CHECK(value(fams, "executor_tasks_submitted_total", {{"task", "other"}}) == 3);
  CHECK(value(fams, "executor_task_names_overflow_total") == 3);
  CHECK(value(fams, "executor_tasks_submitted_total") == 0);
  CHECK(sum_over_tasks(fams, "executor_tasks_submitted_total") == 6);
  CHECK(reconciles_summed(fams));
}

TEST_CASE("cancelling a named task counts under its name only", "[pool_features][named_tasks]") {
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
  CHECK(value(fams, "executor_tasks_cancelled_total") == 0);
  CHECK(sum_over_tasks(fams, "executor_tasks_cancelled_total") == 1);
  CHECK(pool_test::reconciles(fams, {{"task", "job"}}));
  CHECK(pool_test::reconciles(fams));
}

TEST_CASE("a named submit refused counts under its name only", "[pool_features][named_tasks]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_test::options(reg));
  pool.shutdown();
  CHECK_THROWS_AS(pool.submit_named("late", [] {}), ee::ExecutorShutdownError);
  CHECK_THROWS_AS(pool.submit([] {}), ee::ExecutorShutdownError);
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_tasks_rejected_total", {{"task", "late"}, {"reason", "shutdown"}}) ==
        1);
  CHECK(value(fams, "executor_tasks_rejected_total", {{"reason", "shutdown"}}) == 1);
  CHECK(sum_over_tasks(fams, "executor_tasks_rejected_total", {{"reason", "shutdown"}}) == 2);
}

TEST_CASE("summed over task, running tasks never exceed the workers on any scrape",
          "[pool_features][named]") {
  // One worker alternating named and unnamed tasks: each scrape must see the named and
  // the unnamed series at one instant, or a task that just ended in one and its successor
  // that just started in the other are both counted as running.
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_test::options(reg, "instant"));
  std::atomic<bool> stop{false};
  // Tasks of a few microseconds, so that a scrape often lands while one runs.
  auto spin = [] {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(5);
    while (std::chrono::steady_clock::now() < until) {
    }
  };
  std::thread producer([&] {
    for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      auto f = i % 2 == 0 ? pool.submit_named("even", spin) : pool.submit(spin);
      if (i % 64 == 0) f.get();  // keep the queue short
    }
  });
  int over = 0, scrapes = 0;
  for (; scrapes < 1500; ++scrapes) {
    const auto fams = ee::collect(reg);
    if (sum_over_tasks(fams, "executor_tasks_running") > 1) ++over;
  }
  stop = true;
  producer.join();
  pool.shutdown(true);
  INFO(over << " of " << scrapes << " scrapes showed more running tasks than workers");
  CHECK(over == 0);
  CHECK(reconciles_summed(ee::collect(reg)));
}
