// Done callbacks, the error handler, post() and wait()/wait_for().
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "pool_features_metrics.hpp"
#include "wait_until.hpp"

namespace ee = executor_exporter;
using pool_test::value;

namespace {
std::string what_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  }
}
}  // namespace

TEST_CASE("a done callback receives the value or the exception", "[pool_features][callbacks]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, pool_test::options(reg));
  std::promise<int> value_seen;
  std::promise<std::string> error_seen;
  auto ok = pool.submit([] { return 41; });
  ok.add_done_callback([&](const ee::SharedFuture<int>& f) { value_seen.set_value(f.get() + 1); });
  auto bad = pool.submit([]() -> int { throw std::runtime_error("nope"); });
  bad.add_done_callback(
      [&](const ee::SharedFuture<int>& f) { error_seen.set_value(what_of(f.exception())); });
  CHECK(value_seen.get_future().get() == 42);
  CHECK(error_seen.get_future().get() == "nope");
  CHECK(ok.get() == 41);  // the future stays usable
  CHECK_THROWS_AS(bad.get(), std::runtime_error);
}

TEST_CASE("a callback added after completion runs at once on the caller",
          "[pool_features][callbacks]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_test::options(reg));
  auto f = pool.submit([] { return 3; }).share();
  f.wait();
  const auto me = std::this_thread::get_id();
  std::thread::id ran_on;
  f.add_done_callback([&](const ee::SharedFuture<int>& s) {
    ran_on = std::this_thread::get_id();
    CHECK(s.get() == 3);
  });
  CHECK(ran_on == me);
  // Run at once, a throwing callback throws to its caller (its own thread).
  CHECK_THROWS_AS(f.add_done_callback([](const ee::SharedFuture<int>&) { throw 1; }), int);
}

TEST_CASE("a cancelled task's callbacks see the cancellation", "[pool_features][callbacks]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_test::options(reg));
  std::promise<void> gate;
  std::latch started(1);
  auto blocker = pool.submit([&, g = gate.get_future().share()] {
    started.count_down();
    g.wait();
  });
  started.wait();
  auto f = pool.submit([] { return 1; });
  bool saw_cancel = false;
  f.add_done_callback([&](const ee::SharedFuture<int>& s) { saw_cancel = s.cancelled(); });
  CHECK(f.cancel());
  CHECK(saw_cancel);
  gate.set_value();
  blocker.get();
}

TEST_CASE("throwing callbacks are counted and handed to the error handler",
          "[pool_features][callbacks]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, pool_test::options(reg));
  std::mutex m;
  std::vector<std::string> handled;
  pool.set_error_handler([&](std::exception_ptr e) {
    std::lock_guard lock(m);
    handled.push_back(what_of(e));
  });
  std::promise<void> gate;
  auto opened = gate.get_future().share();
  std::vector<ee::Future<int>> fs;
  for (int i = 0; i < 5; ++i) {
    fs.push_back(pool.submit([g = opened, i] {
      g.wait();
      return i;
    }));
    fs.back().add_done_callback(
        [](const ee::SharedFuture<int>& f) { throw std::logic_error("cb " + std::to_string(f.get())); });
  }
  gate.set_value();
  for (auto& f : fs) f.wait();
  pool.wait();  // the callbacks ran before the workers went idle
  {
    std::lock_guard lock(m);
    CHECK(handled.size() == 5);
  }
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_callback_errors_total") == 5);
  // The workers survived.
  CHECK(pool.submit([] { return 9; }).get() == 9);
  // Both workers are (or come) up: a worker may still be starting, never gone.
  CHECK(ee_test::wait_until([&] { return value(ee::collect(reg), "executor_workers") == 2; },
                            std::chrono::seconds(5)));
}

TEST_CASE("post runs tasks without futures and their exceptions reach the handler",
          "[pool_features][callbacks][post]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, pool_test::options(reg));
  std::atomic<int> ran{0};
  std::atomic<int> handled{0};
  pool.set_error_handler([&](std::exception_ptr e) {
    // Counted here, checked on the test thread (Catch assertions are not thread-safe).
    if (what_of(e) == "posted") handled.fetch_add(1);
  });
  for (int i = 0; i < 100; ++i) {
    pool.post([&, i] {
      ran.fetch_add(1);
      if (i % 10 == 0) throw std::runtime_error("posted");
    });
  }
  pool.wait();
  CHECK(ran.load() == 100);
  CHECK(handled.load() == 10);
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_tasks_submitted_total") == 100);
  CHECK(value(fams, "executor_task_run_seconds", {{"result", "failed"}}) == 10);
  CHECK(value(fams, "executor_task_run_seconds", {{"result", "completed"}}) == 90);
  CHECK(value(fams, "executor_unhandled_errors_total") == 10);
  CHECK(pool_test::reconciles(fams));
}

TEST_CASE("a throwing error handler does not kill the worker", "[pool_features][callbacks][post]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_test::options(reg));
  pool.set_error_handler([](std::exception_ptr) { throw std::runtime_error("handler failed"); });
  pool.post([] { throw std::runtime_error("task failed"); });
  pool.wait();
  CHECK(pool.submit([] { return 1; }).get() == 1);
  CHECK(value(ee::collect(reg), "executor_unhandled_errors_total") == 1);
}

TEST_CASE("post after shutdown throws and counts", "[pool_features][callbacks][post]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_test::options(reg));
  pool.shutdown();
  CHECK_THROWS_AS(pool.post([] {}), ee::ExecutorShutdownError);
  CHECK(value(ee::collect(reg), "executor_tasks_rejected_total", {{"reason", "shutdown"}}) == 1);
}

TEST_CASE("shutdown(cancel_futures) cancels queued posted tasks", "[pool_features][post]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_test::options(reg));
  std::promise<void> gate;
  std::latch started(1);
  pool.post([&, g = gate.get_future().share()] {
    started.count_down();
    g.wait();
  });
  started.wait();
  std::atomic<int> ran{0};
  for (int i = 0; i < 5; ++i) pool.post([&] { ran.fetch_add(1); });
  pool.shutdown(false, true);
  gate.set_value();
  pool.shutdown();
  CHECK(ran.load() == 0);
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_tasks_cancelled_total") == 5);
  CHECK(pool_test::reconciles(fams));
}

TEST_CASE("wait and wait_for block until the pool is idle", "[pool_features][wait]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, pool_test::options(reg));
  CHECK(pool.wait_for(std::chrono::milliseconds(1)));  // idle from the start
  std::promise<void> gate;
  auto g = gate.get_future().share();
  std::atomic<int> done{0};
  for (int i = 0; i < 10; ++i) {
    pool.post([&, g] {
      g.wait();
      done.fetch_add(1);
    });
  }
  CHECK_FALSE(pool.wait_for(std::chrono::milliseconds(20)));
  gate.set_value();
  pool.wait();
  CHECK(done.load() == 10);
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_tasks_queued") == 0);
  CHECK(value(fams, "executor_tasks_running") == 0);
  // Not shut down: still accepts work.
  CHECK(pool.submit([] { return 2; }).get() == 2);
}

TEST_CASE("wait from a task of the same pool is refused", "[pool_features][wait]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_test::options(reg));
  auto f = pool.submit([&] { pool.wait(); });
  CHECK_THROWS_AS(f.get(), std::logic_error);
}
