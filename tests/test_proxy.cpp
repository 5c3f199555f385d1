// InstrumentedExecutorProxy instruments any executor, boost::asio::thread_pool included.

#include <executor_exporter/adapters/asio_thread_pool.hpp>
#include <executor_exporter/executor_exporter.hpp>

#include <catch2/catch.hpp>

#include <future>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "scrape.hpp"

namespace ee = executor_exporter;
using ee::adapters::AsioThreadPool;
using ee_test::prom::value;

namespace {

// The smallest executor there is: a thread per task.
struct ThreadPerTask {
  std::vector<std::thread> threads;
  std::future<void> submit(std::function<void()> f) {
    auto task = std::make_shared<std::packaged_task<void()>>(std::move(f));
    auto future = task->get_future();
    threads.emplace_back([task] { (*task)(); });
    return future;
  }
  void shutdown() {
    for (auto& t : threads) t.join();
    threads.clear();
  }
};

// An executor whose submit refuses work with an error of its own.
struct Refusing {
  std::future<void> submit(std::function<void()>) { throw std::runtime_error("full"); }
  void shutdown(bool) {}
};

// An executor whose submit refuses work the way this library's executors do.
template <class Error>
struct RefusingWith {
  std::future<void> submit(std::function<void()>) { throw Error("inner"); }
  void shutdown(bool) {}
};

}  // namespace

static_assert(ee::Executor<AsioThreadPool>);
static_assert(ee::Executor<ThreadPerTask>);
static_assert(ee::Executor<ee::ThreadPoolExecutor>);
static_assert(!ee::Executor<int>);
static_assert(!ee::Executor<std::vector<int>>);

TEST_CASE("the proxy instruments boost::asio::thread_pool", "[proxy]") {
  auto registry = std::make_shared<prometheus::Registry>();
  {
    ee::InstrumentedExecutorProxy<AsioThreadPool> pool(
        AsioThreadPool(2), ee::make_exporter_for<boost::asio::thread_pool>("asio", registry), 2);
    REQUIRE(pool.submit([](int a) { return a * 2; }, 21).get() == 42);
    std::vector<int> in{3, 1, 2};
    REQUIRE(pool.map([](int x) { return -x; }, in).to_vector() == std::vector<int>{-3, -1, -2});
    REQUIRE_THROWS_AS(pool.submit([] { throw std::out_of_range("x"); }).get(), std::out_of_range);
  }
  auto page = ee_test::scrape(registry);
  const ee_test::prom::Labels id{{"executor", "asio"},
                                 {"executor_type", "boost::asio::thread_pool"}};
  CHECK(value(page, "executor_tasks_submitted_total", id) == 5);
  CHECK(value(page, "executor_task_wait_seconds_count", id) == 5);
  CHECK(value(page, "executor_task_run_seconds_count",
              {{"executor", "asio"}, {"result", "completed"}}) == 4);
  CHECK(value(page, "executor_task_run_seconds_count",
              {{"executor", "asio"}, {"result", "failed"}}) == 1);
  CHECK(value(page, "executor_tasks_queued", id) == 0);
  CHECK(value(page, "executor_tasks_running", id) == 0);
}

TEST_CASE("tasks the wrapped executor drops unrun count as cancelled", "[proxy]") {
  auto registry = std::make_shared<prometheus::Registry>();
  std::promise<void> gate;
  std::shared_future<void> open = gate.get_future().share();
  std::promise<void> started;
  std::vector<ee::Future<int>> queued;
  ee::Future<int> running;
  {
    ee::InstrumentedExecutorProxy<AsioThreadPool> pool(
        AsioThreadPool(1), ee::ExecutorExporter("drop", "asio", registry), 1);
    running = pool.submit([&] {
      started.set_value();
      open.wait();
      return 0;
    });
    started.get_future().wait();
    for (int i = 1; i <= 3; ++i) queued.push_back(pool.submit([i] { return i; }));
    pool.shutdown(/*wait=*/false, /*cancel_futures=*/true);
    gate.set_value();
  }
  REQUIRE(running.get() == 0);
  for (auto& f : queued) REQUIRE_THROWS_AS(f.get(), ee::CancelledError);
  auto page = ee_test::scrape(registry);
  CHECK(value(page, "executor_tasks_submitted_total") == 4);
  CHECK(value(page, "executor_tasks_cancelled_total") == 3);
  CHECK(value(page, "executor_tasks_queued") == 0);
}

TEST_CASE("the proxy works over a minimal custom executor", "[proxy]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::InstrumentedExecutorProxy<ThreadPerTask> pool(
      ThreadPerTask{}, ee::make_exporter_for<ThreadPerTask>("tpt", registry), 4);
  std::vector<ee::Future<int>> fs;
  for (int i = 0; i < 8; ++i) fs.push_back(pool.submit([i] { return i * i; }));
  for (int i = 0; i < 8; ++i) REQUIRE(fs[i].get() == i * i);
  pool.shutdown();
  auto page = ee_test::scrape(registry);
  const auto samples = page.find("executor_tasks_submitted_total", {{"executor", "tpt"}});
  REQUIRE(samples.size() == 1);
  CHECK(samples[0]->value == 8);
  CHECK_THAT(samples[0]->labels.at("executor_type"), Catch::EndsWith("ThreadPerTask"));
  CHECK(value(page, "executor_max_workers", {{"executor", "tpt"}}) == 4);
}

TEST_CASE("submit after the proxy's shutdown, or refused by the executor, counts as rejected",
          "[proxy]") {
  auto registry = std::make_shared<prometheus::Registry>();
  {
    ee::InstrumentedExecutorProxy<AsioThreadPool> pool(
        AsioThreadPool(1), ee::ExecutorExporter("closed", "asio", registry), 1);
    pool.shutdown();
    REQUIRE_THROWS_AS(pool.submit([] {}), ee::ExecutorShutdownError);
  }
  {
    ee::InstrumentedExecutorProxy<Refusing> pool(Refusing{},
                                                 ee::ExecutorExporter("refusing", "r", registry), 1);
    REQUIRE_THROWS_WITH(pool.submit([] {}), "full");
  }
  auto page = ee_test::scrape(registry);
  CHECK(value(page, "executor_tasks_rejected_total",
              {{"executor", "closed"}, {"reason", "shutdown"}}) == 1);
  // The wrapped executor's own exception says nothing the proxy can trust about why.
  CHECK(value(page, "executor_tasks_rejected_total",
              {{"executor", "refusing"}, {"reason", "error"}}) == 1);
  CHECK(value(page, "executor_tasks_rejected_total",
              {{"executor", "refusing"}, {"reason", "shutdown"}}) == 0);
  CHECK(value(page, "executor_tasks_submitted_total", {{"executor", "refusing"}}) == 0);
  CHECK(value(page, "executor_tasks_cancelled_total", {{"executor", "refusing"}}) == 0);
}

TEST_CASE("a wrapped executor's refusal is counted under the reason its error names", "[proxy]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto refuse = [&]<class Error>(const char* id) {
    ee::InstrumentedExecutorProxy<RefusingWith<Error>> pool(
        RefusingWith<Error>{}, ee::ExecutorExporter(id, "r", registry), 1);
    REQUIRE_THROWS_AS(pool.submit([] {}), Error);
    REQUIRE_THROWS_AS(pool.post([] {}), Error);
  };
  refuse.operator()<ee::QueueFullError>("full");
  refuse.operator()<ee::BrokenExecutorError>("broken");
  refuse.operator()<ee::ExecutorShutdownError>("closed");
  auto page = ee_test::scrape(registry);
  const std::pair<const char*, const char*> expected[] = {
      {"full", "queue_full"}, {"broken", "broken"}, {"closed", "shutdown"}};
  for (const auto& [id, reason] : expected) {
    INFO(id);
    for (const char* r : {"shutdown", "queue_full", "broken", "error"}) {
      INFO(r);
      CHECK(value(page, "executor_tasks_rejected_total", {{"executor", id}, {"reason", r}}) ==
            (std::string_view(r) == reason ? 2 : 0));
    }
    CHECK(value(page, "executor_tasks_submitted_total", {{"executor", id}}) == 0);
  }
}

TEST_CASE("the proxy wraps the library's own thread pool, whose submit is [[nodiscard]]",
          "[proxy]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::InstrumentedExecutorProxy<ee::ThreadPoolExecutor> proxy(
      std::in_place, ee::ExecutorExporter("wrapped", "thread_pool", registry), 2, std::size_t{2});
  CHECK(proxy.submit([] { return 6 * 7; }).get() == 42);
}
