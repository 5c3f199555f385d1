// The autoscaler: a ThreadPoolExecutor that sizes itself between min_workers and max_workers
// from its own wait p99 and utilization, with hysteresis and a cool-down, each change counted
// in executor_scale_events_total{direction, reason}.
#include <executor_exporter/executor_exporter.hpp>
#include <executor_exporter/pools/detail/autoscale_policy.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "http_client.hpp"
#include "prom_text.hpp"
#include "wait_until.hpp"

namespace ee = executor_exporter;
using namespace std::chrono_literals;

namespace {

ee_test::prom::Page http_scrape(int port) {
  auto response = ee_test::http_get("127.0.0.1", port, "/metrics");
  REQUIRE(response.status == 200);
  return ee_test::prom::parse(response.body);
}

double scale_events(const ee_test::prom::Page& page, const std::string& id,
                    const std::string& direction, const std::string& reason) {
  return ee_test::prom::metric(page, "executor_scale_events_total",
                               {{"executor", id}, {"direction", direction}, {"reason", reason}});
}

// Short intervals, so that a test follows several decisions in a few seconds.
ee::AutoscaleOptions fast_autoscale(std::size_t min_workers, std::size_t max_workers) {
  ee::AutoscaleOptions a;
  a.enabled = true;
  a.min_workers = min_workers;
  a.max_workers = max_workers;
  a.interval = 30ms;
  a.target_wait_p99 = 5ms;
  a.up_after = 2;
  a.down_after = 3;
  a.cooldown = 60ms;
  return a;
}

ee::ThreadPoolOptions pool_options(std::shared_ptr<prometheus::Registry> registry, std::string id,
                                   const ee::AutoscaleOptions& autoscale) {
  ee::ThreadPoolOptions o;
  o.registry = std::move(registry);
  o.id = std::move(id);
  o.autoscale = autoscale;
  return o;
}

// Submits `batch` tasks that each sleep `task` every 10 ms until told to stop.
class Load {
 public:
  Load(ee::ThreadPoolExecutor& pool, int batch, std::chrono::milliseconds task)
      : thread_([this, &pool, batch, task] {
          while (!stop_.load()) {
            for (int i = 0; i < batch; ++i)
              pool.post([task] { std::this_thread::sleep_for(task); });
            std::this_thread::sleep_for(10ms);
          }
        }) {}
  Load(const Load&) = delete;
  Load& operator=(const Load&) = delete;
  ~Load() { stop(); }
  void stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace

TEST_CASE("autoscale options are checked with a message that names the field", "[autoscale]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto refused = [&](auto&& edit, std::size_t initial, const std::string& says) {
    auto a = fast_autoscale(1, 4);
    edit(a);
    CHECK_THROWS_WITH(ee::ThreadPoolExecutor(initial, pool_options(registry, "v", a)),
                      Catch::Contains(says));
  };
  refused([](auto& a) { a.min_workers = 0; }, 1, "min_workers must be at least 1");
  refused([](auto& a) { a.max_workers = 0; }, 1, "is below min_workers");
  refused([](auto&) {}, 5, "initial size 5 is outside [1, 4]");
  refused([](auto& a) { a.interval = 0ms; }, 1, "interval");
  refused([](auto& a) { a.target_wait_p99 = 0us; }, 1, "target_wait_p99");
  refused([](auto& a) { a.high_utilization = 1.5; }, 1, "high_utilization");
  refused([](auto& a) { a.low_utilization = 0.9; }, 1, "low_utilization");
  refused([](auto& a) { a.up_after = 0; }, 1, "up_after");
  refused([](auto& a) { a.step_down = 0; }, 1, "step_up and step_down");
  CHECK_THROWS_WITH(ee::BasicThreadPoolExecutor<ee::NoMetrics>(
                        1, pool_options(registry, "nm", fast_autoscale(1, 2))),
                    Catch::Contains("NoMetrics"));
  // Disabled options are not checked: the default pool is unchanged.
  ee::ThreadPoolExecutor plain(2, pool_options(registry, "plain", ee::AutoscaleOptions{}));
  CHECK_FALSE(plain.autoscale_state().enabled);
  CHECK(plain.autoscale_state().workers == 2);
}

TEST_CASE("the wait p99 is interpolated within its bucket as histogram_quantile does",
          "[autoscale]") {
  const std::vector<double> bounds{0.01, 0.1, 1.0};
  CHECK(std::isnan(ee::detail::bucket_quantile({0, 0, 0, 0}, bounds, 0.99)));
  // 100 tasks, all in (0.01, 0.1]: rank 99 lies 99% of the way through that bucket.
  CHECK(ee::detail::bucket_quantile({0, 100, 0, 0}, bounds, 0.99) == Approx(0.01 + 0.09 * 0.99));
  // 50 fast, 50 in (0.1, 1]: rank 99 is 49/50 of the way through the third bucket.
  CHECK(ee::detail::bucket_quantile({50, 0, 50, 0}, bounds, 0.99) == Approx(0.1 + 0.9 * 0.98));
  // In the +Inf bucket: the last finite bound.
  CHECK(ee::detail::bucket_quantile({1, 0, 0, 99}, bounds, 0.99) == 1.0);
}

TEST_CASE("the policy acts only on a signal held for several intervals and out of cool-down",
          "[autoscale]") {
  auto a = fast_autoscale(2, 5);
  a.up_after = 2;
  a.down_after = 3;
  a.cooldown = 100ms;
  a.step_up = 2;
  ee::detail::AutoscalePolicy policy(a);
  auto t = std::chrono::steady_clock::time_point{} + 1h;
  const double nan = std::nan("");
  // Waits over target once: hold; twice in a row: up by step_up, reason wait.
  CHECK(policy.next(0.050, 0.5, 2, t).to == 2);
  auto d = policy.next(0.050, 0.5, 2, t += 30ms);
  CHECK(d.to == 4);
  CHECK(d.reason == ee::ScaleReason::wait);
  policy.changed(t);
  // In the cool-down a held signal waits; after it, the step is capped at max_workers.
  CHECK(policy.next(nan, 0.95, 4, t += 30ms).to == 4);
  CHECK(policy.next(nan, 0.95, 4, t += 30ms).to == 4);
  d = policy.next(nan, 0.95, 4, t += 60ms);
  CHECK(d.to == 5);
  CHECK(d.reason == ee::ScaleReason::utilization);
  policy.changed(t);
  t += 200ms;
  // The dead band between the marks resets the idle streak: two idle, one busy-ish, two idle
  // is not three in a row.
  CHECK(policy.next(nan, 0.1, 5, t += 30ms).to == 5);
  CHECK(policy.next(nan, 0.1, 5, t += 30ms).to == 5);
  CHECK(policy.next(0.001, 0.5, 5, t += 30ms).to == 5);
  CHECK(policy.next(nan, 0.1, 5, t += 30ms).to == 5);
  CHECK(policy.next(nan, 0.1, 5, t += 30ms).to == 5);
  d = policy.next(nan, 0.1, 5, t += 30ms);
  CHECK(d.to == 4);
  CHECK(d.reason == ee::ScaleReason::idle);
  // Never below min_workers, never above max_workers.
  policy.changed(t);
  t += 1s;
  for (int i = 0; i < 5; ++i) CHECK(policy.next(nan, 0.0, 2, t += 30ms).to == 2);
  for (int i = 0; i < 5; ++i) CHECK(policy.next(1.0, 1.0, 5, t += 30ms).to == 5);
}

TEST_CASE("an autoscaled pool grows under load and shrinks back when idle without oscillating",
          "[autoscale]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::MetricsServer server("127.0.0.1:0", registry);
  ee::ThreadPoolExecutor pool(1, pool_options(registry, "grow", fast_autoscale(1, 4)));

  // Every size the pool is configured for, sampled while the test runs.
  std::atomic<bool> watching{true};
  std::atomic<std::size_t> smallest{1};
  std::atomic<std::size_t> largest{1};
  std::thread watcher([&] {
    while (watching.load()) {
      const std::size_t n = pool.max_workers();
      if (n < smallest.load()) smallest.store(n);
      if (n > largest.load()) largest.store(n);
      std::this_thread::sleep_for(2ms);
    }
  });

  // About 4.8 workers' worth of 3 ms tasks: one worker lets them wait far past 5 ms.
  {
    Load load(pool, 16, 3ms);
    REQUIRE(ee_test::wait_until([&] { return pool.max_workers() == 4; }, 30s));
  }
  auto page = http_scrape(server.port());
  const double grew =
      scale_events(page, "grow", "up", "wait") + scale_events(page, "grow", "up", "utilization");
  CHECK(grew == 3);  // 1 -> 4 one step at a time
  CHECK(scale_events(page, "grow", "up", "manual") == 0);
  CHECK(scale_events(page, "grow", "down", "idle") == 0);  // no step back while loaded
  CHECK(ee_test::prom::metric(page, "executor_max_workers", {{"executor", "grow"}}) == 4);
  const auto grown = pool.autoscale_state();
  CHECK(grown.enabled);
  CHECK(grown.changes >= 3);
  CHECK((grown.reason == ee::ScaleReason::wait || grown.reason == ee::ScaleReason::utilization));

  // Idle: back to min_workers, one idle step at a time.
  pool.wait();
  REQUIRE(ee_test::wait_until([&] { return pool.max_workers() == 1; }, 30s));
  page = http_scrape(server.port());
  CHECK(scale_events(page, "grow", "down", "idle") == 3);
  CHECK(scale_events(page, "grow", "up", "wait") +
            scale_events(page, "grow", "up", "utilization") ==
        grew);  // nothing grew again while idle
  const auto idle = pool.autoscale_state();
  CHECK(idle.reason == ee::ScaleReason::idle);
  CHECK(idle.utilization < 0.3);
  CHECK(idle.workers == 1);

  // Shut down: the controller stops, and the size stays.
  pool.shutdown();
  const auto stopped_at = pool.autoscale_state().intervals;
  std::this_thread::sleep_for(150ms);
  CHECK(pool.autoscale_state().intervals == stopped_at);
  watching.store(false);
  watcher.join();
  CHECK(smallest.load() == 1);
  CHECK(largest.load() == 4);
}

TEST_CASE("a steady moderate load settles at one size", "[autoscale]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto a = fast_autoscale(1, 8);
  a.target_wait_p99 = 50ms;
  a.low_utilization = 0.2;
  a.down_after = 4;
  a.cooldown = 100ms;
  ee::ThreadPoolExecutor pool(1, pool_options(registry, "steady", a));
  // About 1.2 workers' worth: one worker is overloaded, two or three are comfortably inside the
  // dead band between the utilization marks.
  Load load(pool, 6, 2ms);
  std::vector<std::size_t> sizes;
  const auto until = std::chrono::steady_clock::now() + 3s;
  while (std::chrono::steady_clock::now() < until) {
    sizes.push_back(pool.max_workers());
    std::this_thread::sleep_for(30ms);
  }
  load.stop();
  pool.wait();
  REQUIRE(sizes.size() > 20);
  // It grew from the one overloaded worker...
  CHECK(*std::max_element(sizes.begin(), sizes.end()) >= 2);
  // ...never turned back more than once...
  int reversals = 0;
  int last_direction = 0;
  for (std::size_t i = 1; i < sizes.size(); ++i) {
    const int direction = sizes[i] > sizes[i - 1] ? 1 : sizes[i] < sizes[i - 1] ? -1 : 0;
    if (direction != 0 && last_direction != 0 && direction != last_direction) ++reversals;
    if (direction != 0) last_direction = direction;
  }
  CHECK(reversals <= 1);
  // ...and over the last half it stayed within one worker.
  const auto half = sizes.begin() + static_cast<std::ptrdiff_t>(sizes.size() / 2);
  CHECK(*std::max_element(half, sizes.end()) - *std::min_element(half, sizes.end()) <= 1);
}

TEST_CASE("a manual resize of an autoscaled pool wins and counts reason manual", "[autoscale]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::MetricsServer server("127.0.0.1:0", registry);
  auto a = fast_autoscale(1, 4);
  a.interval = 10s;  // the controller stays out of the way
  ee::ThreadPoolExecutor pool(2, pool_options(registry, "manual", a));

  // Every (direction, reason) series exists before the first change.
  auto page = http_scrape(server.port());
  for (const char* direction : {"up", "down"}) {
    for (const char* reason : {"manual", "wait", "utilization", "idle"}) {
      CHECK(scale_events(page, "manual", direction, reason) == 0);
    }
  }
  pool.resize(3);
  pool.scale_down(1);
  CHECK_THROWS_WITH(pool.resize(5), Catch::Contains("autoscale bounds [1, 4]"));
  CHECK_THROWS_AS(pool.scale_up(3), std::invalid_argument);
  CHECK(pool.max_workers() == 2);
  page = http_scrape(server.port());
  CHECK(scale_events(page, "manual", "up", "manual") == 1);
  CHECK(scale_events(page, "manual", "down", "manual") == 1);
  const auto state = pool.autoscale_state();
  CHECK(state.reason == ee::ScaleReason::manual);
  CHECK(state.last_change != std::chrono::steady_clock::time_point{});
  CHECK(state.changes == 0);  // none of them the autoscaler's
}

TEST_CASE("pools with a busy controller are destroyed safely, from outside and from a task",
          "[autoscale]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto a = fast_autoscale(1, 3);
  a.interval = 1ms;
  a.up_after = 1;
  a.down_after = 1;
  a.cooldown = 0ms;
  for (int round = 0; round < 10; ++round) {
    ee::ThreadPoolExecutor pool(1, pool_options(registry, "churn", a));
    for (int i = 0; i < 20; ++i) pool.post([] { std::this_thread::sleep_for(1ms); });
    std::this_thread::sleep_for(5ms);
  }
  // The last reference dropped by one of the pool's own tasks.
  auto pool = std::make_shared<ee::ThreadPoolExecutor>(1, pool_options(registry, "self", a));
  std::atomic<bool> done{false};
  std::this_thread::sleep_for(5ms);
  pool->post([&done, p = pool]() mutable {
    std::this_thread::sleep_for(3ms);
    p.reset();
    done.store(true);
  });
  pool.reset();
  REQUIRE(ee_test::wait_until([&] { return done.load(); }, 10s));
}
