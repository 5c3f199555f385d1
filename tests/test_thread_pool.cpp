// ThreadPoolExecutor behaves like a std::future-returning pool that never loses a task.

#include <executor_exporter/executor_exporter.hpp>

#include <catch2/catch.hpp>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "scrape.hpp"
#include "wait_until.hpp"

namespace ee = executor_exporter;
using ee_test::prom::value;

namespace {

// A gate tasks can block on until the test opens it.
struct Gate {
  std::promise<void> promise;
  std::shared_future<void> future = promise.get_future().share();
  void open() { promise.set_value(); }
  void wait() const { future.wait(); }
};

}  // namespace

TEST_CASE("submit returns a future with the std::future interface", "[thread_pool]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, "t", {}, "pool", registry);

  auto sum = pool.submit([](int a, int b) { return a + b; }, 20, 22);
  REQUIRE(sum.valid());
  REQUIRE(sum.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  REQUIRE(sum.get() == 42);
  REQUIRE_FALSE(sum.valid());
  REQUIRE_THROWS_AS(sum.get(), std::future_error);

  auto nothing = pool.submit([] {});
  nothing.wait();
  REQUIRE(nothing.done());
  nothing.get();

  // Move-only arguments and results travel through.
  auto moved = pool.submit([](std::unique_ptr<int> p) { return std::make_unique<int>(*p + 1); },
                           std::make_unique<int>(1));
  REQUIRE(*moved.get() == 2);

  auto shared = pool.submit([] { return std::string("shared"); }).share();
  auto copy = shared;
  REQUIRE(shared.get() == "shared");
  REQUIRE(copy.get() == "shared");
}

TEST_CASE("wait_for times out while the task is blocked", "[thread_pool]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, "t", {}, "pool", registry);
  Gate gate;
  auto blocked = pool.submit([&] { gate.wait(); });
  REQUIRE(blocked.wait_for(std::chrono::milliseconds(20)) == std::future_status::timeout);
  REQUIRE_FALSE(blocked.done());
  gate.open();
  REQUIRE(blocked.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
}

TEST_CASE("a task that throws never kills a worker and its exception reaches the future",
          "[thread_pool]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, "t", {}, "pool", registry);
  for (int i = 0; i < 3; ++i) {
    auto failing = pool.submit([]() -> int { throw std::logic_error("bad input"); });
    REQUIRE_THROWS_MATCHES(failing.get(), std::logic_error, Catch::Message("bad input"));
  }
  REQUIRE(pool.submit([] { return 1; }).get() == 1);
  auto page = ee_test::scrape(registry);
  CHECK(value(page, "executor_task_run_seconds_count", {{"result", "failed"}}) == 3);
  CHECK(value(page, "executor_task_run_seconds_count", {{"result", "completed"}}) == 1);
  CHECK(value(page, "executor_workers") == 1);
}

TEST_CASE("submit after shutdown throws a clear error and counts as rejected", "[thread_pool]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, "t", {}, "closing", registry);
  pool.submit([] {}).get();
  pool.shutdown();
  REQUIRE_THROWS_AS(pool.submit([] {}), ee::ExecutorShutdownError);
  REQUIRE_THROWS_WITH(pool.submit([] {}), Catch::Contains("closing") && Catch::Contains("shut down"));
  auto page = ee_test::scrape(registry);
  CHECK(value(page, "executor_tasks_rejected_total", {{"reason", "shutdown"}}) == 2);
  CHECK(value(page, "executor_tasks_submitted_total") == 1);
  CHECK(value(page, "executor_workers") == 0);
}

TEST_CASE("shutdown with cancel_futures cancels queued tasks and runs none of them",
          "[thread_pool]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, "t", {}, "pool", registry);
  Gate gate;
  std::promise<void> started;
  auto running = pool.submit([&] {
    started.set_value();
    gate.wait();
    return 1;
  });
  started.get_future().wait();
  std::atomic<int> ran{0};
  std::vector<ee::Future<void>> queued;
  for (int i = 0; i < 5; ++i) queued.push_back(pool.submit([&] { ++ran; }));

  pool.shutdown(/*wait=*/false, /*cancel_futures=*/true);
  for (auto& f : queued) {
    REQUIRE(f.cancelled());
    REQUIRE_THROWS_AS(f.get(), ee::CancelledError);
  }
  gate.open();
  REQUIRE(running.get() == 1);  // the running task is never interrupted
  pool.shutdown();
  REQUIRE(ran == 0);

  auto page = ee_test::scrape(registry);
  CHECK(value(page, "executor_tasks_submitted_total") == 6);
  CHECK(value(page, "executor_tasks_cancelled_total") == 5);
  CHECK(value(page, "executor_task_run_seconds_count", {{"result", "completed"}}) == 1);
  CHECK(value(page, "executor_tasks_queued") == 0);
}

TEST_CASE("Future::cancel stops a queued task but not a running one", "[thread_pool]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, "t", {}, "pool", registry);
  Gate gate;
  std::promise<void> started;
  auto running = pool.submit([&] {
    started.set_value();
    gate.wait();
  });
  started.get_future().wait();
  auto queued = pool.submit([] { return 5; });
  REQUIRE(running.running());
  REQUIRE_FALSE(running.cancel());
  REQUIRE(queued.cancel());
  REQUIRE_FALSE(queued.cancel());
  gate.open();
  running.get();
  REQUIRE_THROWS_AS(queued.get(), ee::CancelledError);
  pool.shutdown();
  auto page = ee_test::scrape(registry);
  CHECK(value(page, "executor_tasks_cancelled_total") == 1);
  CHECK(value(page, "executor_task_wait_seconds_count") == 1);
}

TEST_CASE("shutdown without wait returns at once and queued tasks still run", "[thread_pool]") {
  auto registry = std::make_shared<prometheus::Registry>();
  std::vector<ee::Future<int>> futures;
  Gate gate;
  {
    ee::ThreadPoolExecutor pool(1, "t", {}, "pool", registry);
    futures.push_back(pool.submit([&] {
      gate.wait();
      return 0;
    }));
    for (int i = 1; i < 4; ++i) futures.push_back(pool.submit([i] { return i; }));
    pool.shutdown(/*wait=*/false);
    gate.open();
  }  // the destructor joins
  for (int i = 0; i < 4; ++i) REQUIRE(futures[i].get() == i);
}

TEST_CASE("worker threads are named after the prefix and their index", "[thread_pool]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, "resizer", {}, "pool", registry);
  auto name = pool.submit([] {
                    char buf[16] = {};
                    pthread_getname_np(pthread_self(), buf, sizeof buf);
                    return std::string(buf);
                  })
                  .get();
  REQUIRE(name == "resizer-0");
}

TEST_CASE("the initializer runs once on each worker before it takes tasks", "[thread_pool]") {
  auto registry = std::make_shared<prometheus::Registry>();
  std::atomic<int> initialized{0};
  {
    ee::ThreadPoolExecutor pool(3, "t", [&] { ++initialized; }, "init", registry);
    pool.submit([] {}).get();
  }
  REQUIRE(initialized == 3);
  auto page = ee_test::scrape(registry);
  CHECK(value(page, "executor_workers_started_total") == 3);
}

TEST_CASE("map returns results in input order, lazily, and an exception surfaces at its element",
          "[thread_pool]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, "t", {}, "pool", registry);
  std::vector<int> inputs{5, 4, 3, 2, 1};
  auto results = pool.map(
      [](int x) {
        if (x == 2) throw std::domain_error("two");
        return x * 10;
      },
      inputs);
  REQUIRE(results.size() == 5);
  auto it = results.begin();
  REQUIRE(*it == 50);
  ++it;
  REQUIRE(*it == 40);
  ++it;
  REQUIRE(*it == 30);
  ++it;
  REQUIRE_THROWS_AS(*it, std::domain_error);
  ++it;
  REQUIRE(*it == 10);
  pool.shutdown();
  auto page = ee_test::scrape(registry);
  CHECK(value(page, "executor_tasks_submitted_total") == 5);  // items, not ranges
}

TEST_CASE("the destructor waits for queued tasks", "[thread_pool]") {
  auto registry = std::make_shared<prometheus::Registry>();
  std::atomic<int> ran{0};
  {
    ee::ThreadPoolExecutor pool(2, "t", {}, "pool", registry);
    for (int i = 0; i < 100; ++i) (void)pool.submit([&] { ++ran; });
  }
  REQUIRE(ran == 100);
}

TEST_CASE("BasicThreadPoolExecutor<NoMetrics> behaves like the pool and exports nothing",
          "[thread_pool]") {
  // The benchmark suite's "metrics compiled out" row: the same pool minus per-task metrics.
  auto registry = std::make_shared<prometheus::Registry>();
  ee::BasicThreadPoolExecutor<ee::NoMetrics> pool(2, "n", {}, "quiet", registry);
  CHECK(pool.submit([](int a, int b) { return a + b; }, 2, 3).get() == 5);
  CHECK_THROWS_AS(pool.submit([] { throw std::runtime_error("boom"); }).get(), std::runtime_error);
  std::atomic<int> ran{0};
  for (int i = 0; i < 1000; ++i) pool.post([&] { ++ran; });
  ee::SubmitOptions urgent;
  urgent.priority = 5;
  CHECK(pool.submit_with(urgent, [] { return 7; }).get() == 7);
  auto results = pool.map([](int x) { return x * x; }, std::vector<int>{1, 2, 3});
  std::vector<int> squares(results.begin(), results.end());
  CHECK(squares == std::vector<int>{1, 4, 9});
  pool.wait();
  CHECK(ran == 1000);

  ee::BasicThreadPoolExecutor<ee::NoMetrics> single(1, "n", {}, "quiet", registry);
  Gate gate;
  std::promise<void> started;
  single.post([&] {
    started.set_value();
    gate.wait();
  });
  started.get_future().wait();
  auto queued = single.submit([] {});
  single.shutdown(/*wait=*/false, /*cancel_futures=*/true);
  CHECK(queued.cancelled());
  CHECK_THROWS_AS(single.submit([] {}), ee::ExecutorShutdownError);
  gate.open();
  single.shutdown();

  const auto page = ee_test::scrape(registry);
  CHECK(ee_test::prom::count(page, "executor_tasks_submitted_total", {{"executor", "quiet"}}) == 0);
}

TEST_CASE("a pool destroyed by one of its own tasks finishes that task and loses nothing",
          "[thread_pool]") {
  auto registry = std::make_shared<prometheus::Registry>();
  const std::size_t workers = GENERATE(1, 2);
  const std::string id = "self" + std::to_string(workers);
  INFO(workers << " worker(s)");
  auto pool = std::make_shared<ee::ThreadPoolExecutor>(workers, "self", nullptr, id, registry);
  std::atomic<int> handled{0};
  pool->set_error_handler([&](std::exception_ptr) { ++handled; });
  Gate release;
  // The task holds the last reference to the pool, so dropping it runs the destructor
  // on the pool's own worker thread, which cannot wait for itself.
  auto first = pool->submit([keep = pool, &release]() mutable {
    release.wait();
    keep.reset();
    return 7;
  });
  std::vector<ee::Future<int>> later;
  for (int i = 0; i < 20; ++i) later.push_back(pool->submit([i] { return i; }));
  pool->post([] { throw std::runtime_error("posted"); });
  pool.reset();
  release.open();
  REQUIRE(first.get() == 7);
  // Another worker runs what is queued before the destructor returns; with none left,
  // the queued tasks are cancelled: either way every future resolves.
  int ran = 0, cancelled = 0;
  for (int i = 0; i < 20; ++i) {
    try {
      const int v = later[i].get();
      CHECK(v == i);
      ++ran;
    } catch (const ee::CancelledError&) {
      ++cancelled;
    }
  }
  CHECK(ran + cancelled == 20);
  if (workers == 1) CHECK(cancelled == 20);
  if (workers == 2) CHECK(ran == 20);
  const auto labels = ee_test::prom::Labels{{"executor", id}};
  // The last worker leaves after its task returns, without touching the dead pool.
  REQUIRE(ee_test::wait_until(
      [&] { return value(ee_test::scrape(registry), "executor_workers", labels) == 0; },
      std::chrono::seconds(10)));
  const auto page = ee_test::scrape(registry);
  CHECK(value(page, "executor_tasks_submitted_total", labels) == 22);
  CHECK(value(page, "executor_tasks_completed_total", labels) == 1 + ran);
  CHECK(value(page, "executor_tasks_cancelled_total", labels) == cancelled + (workers == 1));
  CHECK(value(page, "executor_tasks_failed_total", labels) == (workers == 2));
  CHECK(ee_test::unaccounted(page, labels) == 0);
  CHECK(handled == (workers == 2));
}

TEST_CASE("a pool destroyed by its own worker's initializer leaves that worker safely",
          "[thread_pool]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto holder = std::make_shared<std::shared_ptr<ee::ThreadPoolExecutor>>();
  Gate go;
  std::atomic<bool> initialized{false};
  ee::ThreadPoolOptions options;
  options.id = "init-destroy";
  options.registry = registry;
  options.initializer = [holder, &go, &initialized] {
    go.wait();
    holder->reset();  // the last reference: the destructor runs on this worker
    initialized = true;
  };
  *holder = std::make_shared<ee::ThreadPoolExecutor>(1, std::move(options));
  go.open();
  REQUIRE(ee_test::wait_until([&] { return initialized.load(); }, std::chrono::seconds(10)));
  const ee_test::prom::Labels labels{{"executor", "init-destroy"}};
  REQUIRE(ee_test::wait_until(
      [&] { return value(ee_test::scrape(registry), "executor_workers", labels) == 0; },
      std::chrono::seconds(10)));
  CHECK(value(ee_test::scrape(registry), "executor_workers_started_total", labels) == 0);
}
