// as_completed, wait(return_when), broken pools, map(timeout, chunksize).
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "pool_features_metrics.hpp"

namespace ee = executor_exporter;
using pool_test::value;

TEST_CASE("as_completed yields futures in completion order", "[pool_features][futures_toolkit]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(3, pool_test::options(reg));
  std::promise<void> p0, p1, p2;
  std::vector<ee::Future<int>> fs;
  fs.push_back(pool.submit([g = p0.get_future().share()] { g.wait(); return 0; }));
  fs.push_back(pool.submit([g = p1.get_future().share()] { g.wait(); return 1; }));
  fs.push_back(pool.submit([g = p2.get_future().share()] { g.wait(); return 2; }));
  p2.set_value();
  std::vector<int> order;
  for (auto& f : ee::as_completed(fs)) {
    order.push_back(f.get());
    if (order.size() == 1) p0.set_value();
    if (order.size() == 2) p1.set_value();
  }
  CHECK(order == std::vector<int>{2, 0, 1});
}

TEST_CASE("as_completed times out with TimeoutError", "[pool_features][futures_toolkit]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, pool_test::options(reg));
  std::promise<void> gate;
  std::vector<ee::SharedFuture<int>> fs;
  fs.push_back(pool.submit([] { return 1; }).share());
  fs.push_back(pool.submit([g = gate.get_future().share()] { g.wait(); return 2; }).share());
  int seen = 0;
  auto run = [&] {
    for (auto& f : ee::as_completed(fs, std::chrono::milliseconds(30))) seen += f.get();
  };
  CHECK_THROWS_AS(run(), ee::TimeoutError);
  CHECK(seen == 1);
  gate.set_value();
  CHECK(fs[1].get() == 2);
}

TEST_CASE("wait honours return_when", "[pool_features][futures_toolkit]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(3, pool_test::options(reg));
  std::promise<void> gate;
  auto g = gate.get_future().share();
  std::vector<ee::Future<int>> fs;
  fs.push_back(pool.submit([g] { g.wait(); return 0; }));
  fs.push_back(pool.submit([]() -> int { throw std::runtime_error("first"); }));
  fs.push_back(pool.submit([g] { g.wait(); return 2; }));

  auto any = ee::wait(fs, ee::ReturnWhen::first_completed);
  CHECK(any.done == std::vector<std::size_t>{1});
  auto exc = ee::wait(fs, ee::ReturnWhen::first_exception);
  CHECK(exc.done == std::vector<std::size_t>{1});
  CHECK(exc.not_done == std::vector<std::size_t>{0, 2});
  auto timed = ee::wait(fs, ee::ReturnWhen::all_completed, std::chrono::milliseconds(20));
  CHECK(timed.not_done.size() == 2);
  gate.set_value();
  auto all = ee::wait(fs);
  CHECK(all.done == std::vector<std::size_t>{0, 1, 2});
  CHECK(all.not_done.empty());
  std::vector<ee::Future<int>> none;
  CHECK(ee::wait(none, ee::ReturnWhen::first_completed).done.empty());
}

TEST_CASE("a throwing initializer breaks the pool", "[pool_features][broken]") {
  auto reg = std::make_shared<prometheus::Registry>();
  auto o = pool_test::options(reg);
  std::latch release(1);
  std::atomic<int> inits{0};
  // The first initializer waits until tasks are queued, then throws.
  o.initializer = [&] {
    if (inits.fetch_add(1) == 0) {
      release.wait();
      throw std::runtime_error("no database");
    }
    throw std::runtime_error("no database either");
  };
  ee::ThreadPoolExecutor pool(1, o);
  auto pending = pool.submit([] { return 1; });
  release.count_down();
  CHECK_THROWS_AS(pending.get(), ee::BrokenExecutorError);
  REQUIRE(pool.broken());
  CHECK_THROWS_AS(pool.submit([] { return 2; }), ee::BrokenExecutorError);
  CHECK_THROWS_AS(pool.post([] {}), ee::BrokenExecutorError);
  CHECK_THROWS_AS(pool.scale_up(1), ee::BrokenExecutorError);
  try {
    (void)pool.submit([] {});  // refused: it throws
    FAIL("a broken pool accepted a task");
  } catch (const ee::BrokenExecutorError& e) {
    CHECK(std::string(e.what()).find("no database") != std::string::npos);
  }
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_initializer_errors_total") == 1);
  CHECK(value(fams, "executor_tasks_rejected_total", {{"reason", "broken"}}) == 3);
  CHECK(value(fams, "executor_tasks_cancelled_total") == 1);
  CHECK(value(fams, "executor_workers") == 0);
  CHECK(pool_test::reconciles(fams));
  pool.wait();  // nothing left: returns
}

TEST_CASE("map with chunksize returns every result in order", "[pool_features][map]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, pool_test::options(reg));
  std::vector<int> in(1003);
  std::iota(in.begin(), in.end(), 0);
  auto results = pool.map([](int x) { return x * 2; }, in, {.timeout = std::nullopt, .chunksize = 100});
  CHECK(results.size() == 1003);
  auto out = results.to_vector();
  REQUIRE(out.size() == 1003);
  for (int i = 0; i < 1003; ++i) CHECK(out[i] == 2 * i);
  pool.wait();
  CHECK(value(ee::collect(reg), "executor_tasks_submitted_total") == 11);  // chunks are tasks

  std::atomic<int> calls{0};
  auto voids = pool.map([&](int) { calls.fetch_add(1); }, in, {.timeout = std::nullopt, .chunksize = 7});
  CHECK(voids.to_vector().size() == 1003);
  CHECK(calls.load() == 1003);
}

TEST_CASE("a chunk's exception surfaces at its items", "[pool_features][map]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, pool_test::options(reg));
  std::vector<int> in{0, 1, 2, 3, 4, 5};
  auto results = pool.map(
      [](int x) {
        if (x == 4) throw std::runtime_error("four");
        return x;
      },
      in, {.timeout = std::nullopt, .chunksize = 2});
  auto it = results.begin();
  CHECK(*it == 0);
  ++it;
  ++it;
  CHECK(*it == 2);
  ++it;
  ++it;
  CHECK_THROWS_AS(*it, std::runtime_error);
}

TEST_CASE("map times out when the next result is late", "[pool_features][map]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_test::options(reg));
  std::promise<void> gate;
  auto g = gate.get_future().share();
  std::vector<int> in{0, 1};
  {
    auto results = pool.map(
        [g](int x) {
          if (x == 1) g.wait();
          return x;
        },
        in, {.timeout = std::chrono::milliseconds(30)});
    auto it = results.begin();
    CHECK(*it == 0);
    ++it;
    CHECK_THROWS_AS(*it, ee::TimeoutError);
    gate.set_value();
  }
  pool.wait();
}
