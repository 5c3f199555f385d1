// Priorities and per-task deadlines.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <mutex>
#include <vector>

#include "pool_features_metrics.hpp"

namespace ee = executor_exporter;
using pool_test::value;

namespace {
// One worker held busy until the returned promise is set.
struct Hold {
  std::promise<void> gate;
  std::latch started{1};
  ee::Future<void> blocker;
  explicit Hold(ee::ThreadPoolExecutor& pool) {
    blocker = pool.submit([this, g = gate.get_future().share()] {
      started.count_down();
      g.wait();
    });
    started.wait();
  }
  void release() {
    gate.set_value();
    blocker.get();
  }
};
}  // namespace

TEST_CASE("higher priority runs first, FIFO within a priority",
          "[pool_features][priorities]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_test::options(reg));
  Hold hold(pool);
  std::mutex m;
  std::vector<int> order;
  auto record = [&](int v) {
    std::lock_guard lock(m);
    order.push_back(v);
  };
  const int priorities[] = {0, 5, -1, 5, 0, 10};
  for (int i = 0; i < 6; ++i) {
    ee::SubmitOptions o;
    o.priority = priorities[i];
    pool.post_with(o, record, i);
  }
  hold.release();
  pool.wait();
  CHECK(order == std::vector<int>{5, 1, 3, 0, 4, 2});
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_task_wait_seconds") == 7);  // every task's wait measured
}

TEST_CASE("a task queued past its deadline expires", "[pool_features][deadlines]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_test::options(reg));
  Hold hold(pool);
  std::atomic<int> expired_callbacks{0};
  std::atomic<bool> ran{false};
  ee::SubmitOptions o;
  o.deadline = std::chrono::steady_clock::now();  // already due: it cannot start in time
  o.on_expired = [&] { expired_callbacks.fetch_add(1); };
  auto late = pool.submit_with(o, [&] { ran = true; });
  ee::SubmitOptions in_time;
  in_time.deadline = std::chrono::steady_clock::now() + std::chrono::hours(1);
  auto fine = pool.submit_with(in_time, [] { return 3; });
  hold.release();
  CHECK_THROWS_AS(late.get(), ee::TaskExpiredError);
  CHECK(fine.get() == 3);
  CHECK_FALSE(ran.load());
  CHECK(expired_callbacks.load() == 1);
  pool.wait();
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_tasks_expired_total") == 1);
  CHECK(value(fams, "executor_tasks_queued") == 0);
  CHECK(pool_test::reconciles(fams));
}

TEST_CASE("expired posted and named tasks are counted, and so is a throwing expire callback",
          "[pool_features][deadlines]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_test::options(reg));
  std::atomic<int> handled{0};
  pool.set_error_handler([&](std::exception_ptr) { handled.fetch_add(1); });
  Hold hold(pool);
  ee::SubmitOptions o;
  o.name = "late";
  o.deadline = std::chrono::steady_clock::now();
  o.on_expired = [] { throw std::runtime_error("expire callback"); };
  pool.post_with(o, [] {});
  auto f = pool.submit_with(o, [] {});
  hold.release();
  CHECK_THROWS_AS(f.get(), ee::TaskExpiredError);
  pool.wait();
  CHECK(handled.load() == 2);
  auto fams = ee::collect(reg);
  // Named tasks count only under their name (summing over `task` gives the totals).
  CHECK(value(fams, "executor_tasks_expired_total") == 0);
  CHECK(value(fams, "executor_tasks_expired_total", {{"task", "late"}}) == 2);
  CHECK(value(fams, "executor_callback_errors_total") == 2);
  CHECK(pool_test::reconciles(fams));
  CHECK(pool_test::reconciles(fams, {{"task", "late"}}));
}
