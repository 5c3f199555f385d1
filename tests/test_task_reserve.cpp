// From a long queue a worker takes several tasks per lock (its reserve). That changes
// which worker runs a task, never whether it runs, in what order, or whether it can
// still be cancelled.

#include <executor_exporter/executor_exporter.hpp>
#include <executor_exporter/pools/detail/task_queue.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "numbered_task.hpp"
#include "scrape.hpp"

namespace ee = executor_exporter;
using ee::detail::TaskQueue;
using ee_test::prom::value;

namespace {

using Probe = ee_test::NumberedTask;

int id_of(ee::detail::Task* t) { return t == nullptr ? -1 : static_cast<Probe*>(t)->id; }

struct Probes {
  std::vector<std::unique_ptr<Probe>> all;
  void push(TaskQueue& q, int n, std::int32_t prio = 0) {
    all.push_back(std::make_unique<Probe>(n, prio));
    REQUIRE(q.push(
                all.back().get(), [] {}, false) == TaskQueue::PushResult::accepted);
  }
};

struct Gate {
  std::promise<void> promise;
  std::shared_future<void> future = promise.get_future().share();
  void open() { promise.set_value(); }
  void wait() const { future.wait(); }
};

// Leaves a one-worker `pool` running `second` (until second.open()) with 198 futures
// queued behind it. The worker's pop met 199 queued tasks, so it reserved the next 15.
struct HeldReserve {
  Gate first, second;
  std::promise<void> second_started;
  std::atomic<int> ran{0};  // how many of `rest` ran
  std::vector<ee::Future<void>> rest;

  explicit HeldReserve(ee::ThreadPoolExecutor& pool) {
    pool.post([this] { first.wait(); });
    pool.post([this] {
      second_started.set_value();
      second.wait();
    });
    rest.reserve(198);
    for (int i = 0; i < 198; ++i) rest.push_back(pool.submit([this] { ++ran; }));
    first.open();
    second_started.get_future().wait();
  }
};

bool eventually(const std::function<bool()>& done) {
  for (int i = 0; i < 10000 && !done(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done();
}

}  // namespace

TEST_CASE("a pop from a long unbounded queue reserves the next tasks in run order", "[queue]") {
  TaskQueue q;
  TaskQueue::Reserve r;
  q.attach(r);
  Probes p;
  for (int i = 0; i < 100; ++i) p.push(q, i);
  for (int i = 100; i < 160; ++i) p.push(q, i, /*prio=*/5);  // these run first
  bool waited = false;
  CHECK(id_of(q.pop(0, waited, r)) == 100);
  for (int i = 101; i < 116; ++i) CHECK(id_of(r.take()) == i);  // 160 / 8 = 20, at most 16
  CHECK(r.take() == nullptr);
  CHECK(q.size() == 144);
  CHECK(id_of(q.pop(16, waited, r)) == 116);
  q.close();
  for (auto* t = q.take_all(); t != nullptr; t = t->next) CHECK(id_of(t) != -1);
  q.detach(r);
}

TEST_CASE("a bounded queue hands out one task per pop", "[queue]") {
  TaskQueue q(1000);
  TaskQueue::Reserve r;
  q.attach(r);
  Probes p;
  for (int i = 0; i < 160; ++i) p.push(q, i);
  bool waited = false;
  CHECK(id_of(q.pop(0, waited, r)) == 0);
  CHECK(r.take() == nullptr);
  CHECK(q.size() == 159);
  q.close();
  (void)q.take_all();
  q.detach(r);
}

TEST_CASE("take_all returns reserved tasks first, then the queued ones", "[queue]") {
  TaskQueue q;
  TaskQueue::Reserve r;
  q.attach(r);
  Probes p;
  for (int i = 0; i < 160; ++i) p.push(q, i);
  bool waited = false;
  CHECK(id_of(q.pop(0, waited, r)) == 0);  // 1..15 reserved
  q.close();
  int expect = 1;
  for (auto* t = q.take_all(); t != nullptr; t = t->next) CHECK(id_of(t) == expect++);
  CHECK(expect == 160);
  CHECK(r.take() == nullptr);
  // The reserved tasks were removed unfinished: only the one popped is still active.
  CHECK_FALSE(q.wait_idle(std::chrono::steady_clock::now()));
  CHECK(q.pop(1, waited, r) == nullptr);  // closed and drained
  CHECK(q.wait_idle(std::chrono::steady_clock::now()));
  q.detach(r);
}

TEST_CASE("a worker that finds the queue empty takes another worker's reserved task", "[queue]") {
  TaskQueue q;
  TaskQueue::Reserve busy, idle;
  q.attach(busy);
  q.attach(idle);
  Probes p;
  for (int i = 0; i < 16; ++i) p.push(q, i);
  bool waited = false;
  CHECK(id_of(q.pop(0, waited, busy)) == 0);  // 16 / 8 = 2: task 1 is reserved
  for (int i = 2; i < 16; ++i) CHECK(id_of(q.pop(0, waited, idle)) == i);
  CHECK(id_of(q.pop(0, waited, idle)) == 1);  // stolen instead of sleeping
  CHECK_FALSE(waited);
  CHECK(busy.take() == nullptr);
  q.close();
  CHECK(q.pop(15, waited, idle) == nullptr);
  CHECK_FALSE(q.wait_idle(std::chrono::steady_clock::now()));  // task 0 still runs
  CHECK(q.pop(1, waited, busy) == nullptr);
  CHECK(q.wait_idle(std::chrono::steady_clock::now()));
  q.detach(busy);
  q.detach(idle);
}

TEST_CASE("shutdown(cancel_futures) cancels the tasks a worker reserved and did not start",
          "[thread_pool][queue]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, "t", {}, "reserve", registry);
  HeldReserve held(pool);
  pool.shutdown(/*wait=*/false, /*cancel_futures=*/true);
  for (auto& f : held.rest) REQUIRE(f.cancelled());
  held.second.open();
  pool.shutdown();
  CHECK(held.ran == 0);

  auto page = ee_test::scrape(registry);
  CHECK(value(page, "executor_tasks_submitted_total") == 200);
  CHECK(value(page, "executor_tasks_cancelled_total") == 198);
  CHECK(value(page, "executor_tasks_completed_total") == 2);
  CHECK(ee_test::unaccounted(page, {}) == 0);
}

TEST_CASE("tasks reserved by a worker stuck in a long task are run by an idle worker",
          "[thread_pool][queue]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, "t", {}, "steal", registry);
  Gate start, long_task;
  std::atomic<int> blocked{0};
  for (int i = 0; i < 2; ++i) {
    pool.post([&] {
      ++blocked;
      start.wait();
    });
  }
  REQUIRE(eventually([&] { return blocked == 2; }));
  // Both workers come back to a queue of 200: whichever takes the long task reserves
  // the next tasks, and the other must run them as well as the rest.
  pool.post([&] { long_task.wait(); });
  std::atomic<int> quick{0};
  for (int i = 0; i < 199; ++i) pool.post([&] { ++quick; });
  start.open();
  CHECK(eventually([&] { return quick == 199; }));
  long_task.open();
  pool.wait();
  CHECK(quick == 199);
  CHECK(ee_test::unaccounted(ee_test::scrape(registry), {}) == 0);
}

TEST_CASE("a pool that breaks fails the tasks a worker reserved and did not start",
          "[thread_pool][queue]") {
  auto registry = std::make_shared<prometheus::Registry>();
  std::atomic<int> inits{0};
  ee::ThreadPoolOptions options;
  options.id = "breaking";
  options.registry = registry;
  options.initializer = [&] {
    if (++inits > 1) throw std::runtime_error("no database");  // only the first worker
  };
  ee::ThreadPoolExecutor pool(1, std::move(options));
  HeldReserve held(pool);  // the worker holds `second` and 15 reserved tasks
  pool.scale_up(1);        // the new worker's initializer throws
  // The break fails the reserved tasks first, then the queued ones: once the last
  // queued one is failed, nothing that was waiting may run any more.
  REQUIRE(held.rest.back().wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  CHECK(pool.broken());
  held.second.open();
  for (auto& f : held.rest) CHECK_THROWS_AS(f.get(), ee::BrokenExecutorError);
  pool.shutdown();
  CHECK(held.ran == 0);

  auto page = ee_test::scrape(registry);
  CHECK(value(page, "executor_tasks_cancelled_total") == 198);
  CHECK(value(page, "executor_tasks_completed_total") == 2);
  CHECK(ee_test::unaccounted(page, {}) == 0);
}
