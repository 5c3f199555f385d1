// Bounded queue, full-queue policies and try_submit.
#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <latch>
#include <thread>

#include "pool_features_metrics.hpp"

namespace ee = executor_exporter;
using pool_test::value;

namespace {
// A pool of one worker held busy until release(), with `capacity` queue slots.
struct Blocked {
  std::shared_ptr<prometheus::Registry> reg = std::make_shared<prometheus::Registry>();
  std::promise<void> gate;
  std::shared_future<void> opened = gate.get_future().share();
  std::latch started{1};
  ee::ThreadPoolExecutor pool;
  ee::Future<void> blocker;

  Blocked(std::size_t capacity, ee::QueueFullPolicy policy,
          std::chrono::milliseconds timeout = std::chrono::milliseconds(20))
      : pool(1, [&] {
          auto o = pool_test::options(reg);
          o.queue_capacity = capacity;
          o.on_full = policy;
          o.full_timeout = timeout;
          return o;
        }()) {
    blocker = pool.submit([this] {
      started.count_down();
      opened.wait();
    });
    started.wait();
  }
  void release() { gate.set_value(); }
};
}  // namespace

TEST_CASE("reject policy throws QueueFullError and counts it", "[pool_features][bounded_queue]") {
  Blocked b(2, ee::QueueFullPolicy::reject);
  auto f1 = b.pool.submit([] { return 1; });
  auto f2 = b.pool.submit([] { return 2; });
  CHECK(b.pool.queue_size() == 2);
  CHECK_THROWS_AS(b.pool.submit([] { return 3; }), ee::QueueFullError);
  CHECK_THROWS_AS(b.pool.post([] {}), ee::RejectedError);
  auto fams = ee::collect(b.reg);
  CHECK(value(fams, "executor_queue_capacity") == 2);
  CHECK(value(fams, "executor_tasks_rejected_total", {{"reason", "queue_full"}}) == 2);
  CHECK(value(fams, "executor_tasks_submitted_total") == 3);
  CHECK(value(fams, "executor_tasks_queued") == 2);
  b.release();
  CHECK(f1.get() + f2.get() == 3);
}

TEST_CASE("try_submit returns an empty optional when full", "[pool_features][bounded_queue]") {
  Blocked b(1, ee::QueueFullPolicy::block);
  auto ok = b.pool.try_submit([] { return 5; });
  REQUIRE(ok.has_value());
  auto full = b.pool.try_submit([] { return 6; });
  CHECK_FALSE(full.has_value());
  CHECK(value(ee::collect(b.reg), "executor_tasks_rejected_total", {{"reason", "queue_full"}}) ==
        1);
  b.release();
  CHECK(ok->get() == 5);
  b.pool.shutdown();
  CHECK_THROWS_AS(b.pool.try_submit([] { return 7; }), ee::ExecutorShutdownError);
  CHECK(value(ee::collect(b.reg), "executor_tasks_rejected_total", {{"reason", "shutdown"}}) == 1);
}

TEST_CASE("block policy waits for room", "[pool_features][bounded_queue]") {
  Blocked b(1, ee::QueueFullPolicy::block);
  auto first = b.pool.submit([] { return 1; });
  std::promise<int> got;
  std::thread producer([&] {
    // Blocks until the worker takes `first` off the queue.
    got.set_value(b.pool.submit([] { return 2; }).get());
  });
  auto result = got.get_future();
  CHECK(result.wait_for(std::chrono::milliseconds(50)) == std::future_status::timeout);
  b.release();
  CHECK(result.get() == 2);
  producer.join();
  CHECK(first.get() == 1);
  CHECK(value(ee::collect(b.reg), "executor_tasks_rejected_total", {{"reason", "queue_full"}}) ==
        0);
}

TEST_CASE("block_with_timeout gives up with QueueFullError", "[pool_features][bounded_queue]") {
  Blocked b(1, ee::QueueFullPolicy::block_with_timeout, std::chrono::milliseconds(30));
  auto first = b.pool.submit([] {});
  CHECK_THROWS_AS(b.pool.submit([] {}), ee::QueueFullError);
  CHECK(value(ee::collect(b.reg), "executor_tasks_rejected_total", {{"reason", "queue_full"}}) ==
        1);
  b.release();
  first.get();
}

TEST_CASE("shutdown wakes a submitter blocked on a full queue", "[pool_features][bounded_queue]") {
  Blocked b(1, ee::QueueFullPolicy::block);
  auto first = b.pool.submit([] {});
  std::promise<bool> threw;
  std::thread producer([&] {
    try {
      (void)b.pool.submit([] {});  // refused: it throws
      threw.set_value(false);
    } catch (const ee::ExecutorShutdownError&) {
      threw.set_value(true);
    }
  });
  auto r = threw.get_future();
  CHECK(r.wait_for(std::chrono::milliseconds(30)) == std::future_status::timeout);
  b.pool.shutdown(false);
  CHECK(r.get());
  producer.join();
  b.release();
  first.get();
}

TEST_CASE("unbounded pools export capacity 0", "[pool_features][bounded_queue]") {
  auto reg = std::make_shared<prometheus::Registry>();
  {
    ee::ThreadPoolExecutor pool(1, pool_test::options(reg));
    CHECK(pool.queue_capacity() == 0);
    auto fams = ee::collect(reg);
    REQUIRE(pool_test::has(fams, "executor_queue_capacity"));
    CHECK(value(fams, "executor_queue_capacity") == 0);
  }
}
