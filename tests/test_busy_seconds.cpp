// executor_worker_busy_seconds_total counts running tasks while they run: a pool busy
// with long tasks shows its utilization on every scrape, and the counter never goes down.

#include <executor_exporter/adapters/asio_thread_pool.hpp>
#include <executor_exporter/executor_exporter.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "http_client.hpp"
#include "prom_text.hpp"
#include "scrape.hpp"
#include "wait_until.hpp"

namespace ee = executor_exporter;
using ee_test::prom::value;
using Clock = std::chrono::steady_clock;

namespace {

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double http_busy(int port, const char* id) {
  auto response = ee_test::http_get("127.0.0.1", port, "/metrics");
  REQUIRE(response.status == 200);
  return value(ee_test::prom::parse(response.body), "executor_worker_busy_seconds_total",
               {{"executor", id}});
}

double run_seconds_sum(const std::shared_ptr<prometheus::Registry>& registry, const char* id) {
  const auto page = ee_test::scrape(registry);
  return value(page, "executor_task_run_seconds_sum", {{"executor", id}, {"result", "completed"}}) +
         value(page, "executor_task_run_seconds_sum", {{"executor", id}, {"result", "failed"}});
}

}  // namespace

TEST_CASE("a task that is still running already counts in the busy seconds scraped over HTTP",
          "[metrics][busy][http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::MetricsServer server("127.0.0.1:0", registry);
  ee::ThreadPoolExecutor pool(1, "busy", {}, "long", registry);
  std::promise<void> gate;
  std::shared_future<void> open = gate.get_future().share();
  std::atomic<bool> started{false};
  const auto before_submit = Clock::now();
  auto done = pool.submit([&] {
    started = true;
    open.wait();
  });
  REQUIRE(ee_test::wait_until([&] { return started.load(); }, std::chrono::seconds(10)));
  const auto started_seen = Clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(150));

  // The task has run at least from started_seen to the scrape, and at most from the
  // submit to the end of the scrape (the library's clock agrees with steady_clock to
  // far better than the 5% allowed here).
  const auto scrape_begin = Clock::now();
  const double during = http_busy(server.port(), "long");
  const auto scrape_end = Clock::now();
  INFO("busy seconds while the task runs: " << during);
  CHECK(during >= 0.95 * seconds(scrape_begin - started_seen));
  CHECK(during <= 1.05 * seconds(scrape_end - before_submit) + 0.001);

  // Later scrapes see more while it keeps running, never less.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const double later = http_busy(server.port(), "long");
  CHECK(later > during);

  gate.set_value();
  done.get();
  // Once it ended, the counter is its run time, as the run histogram has it.
  const double after = http_busy(server.port(), "long");
  CHECK(after >= later);
  CHECK(after == Approx(run_seconds_sum(registry, "long")).epsilon(1e-6));
}

TEST_CASE("the proxy counts a running task in the busy seconds too", "[metrics][busy][proxy]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::InstrumentedExecutorProxy<ee::adapters::AsioThreadPool> pool(
      ee::adapters::AsioThreadPool(1), ee::ExecutorExporter("proxied", "asio", registry), 1);
  std::promise<void> gate;
  std::shared_future<void> open = gate.get_future().share();
  std::atomic<bool> started{false};
  auto done = pool.submit([&] {
    started = true;
    open.wait();
  });
  REQUIRE(ee_test::wait_until([&] { return started.load(); }, std::chrono::seconds(10)));
  const auto started_seen = Clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto scrape_begin = Clock::now();
  const double during = value(ee_test::scrape(registry), "executor_worker_busy_seconds_total",
                              {{"executor", "proxied"}});
  CHECK(during >= 0.95 * seconds(scrape_begin - started_seen));
  gate.set_value();
  done.get();
  CHECK(value(ee_test::scrape(registry), "executor_worker_busy_seconds_total",
              {{"executor", "proxied"}}) ==
        Approx(run_seconds_sum(registry, "proxied")).epsilon(1e-6));
}

TEST_CASE("busy seconds never go down while tasks start and end during scrapes",
          "[metrics][busy][stress]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, "churn", {}, "churn", registry);
  std::atomic<bool> stop{false};
  std::thread scraper([&] {
    double last = 0;
    int pages = 0;
    while (!stop.load() || pages < 50) {
      const double busy = value(ee_test::scrape(registry), "executor_worker_busy_seconds_total",
                                {{"executor", "churn"}});
      // CHECK from one thread only: Catch's assertions are not thread-safe.
      if (busy < last) FAIL_CHECK("busy seconds went down: " << last << " -> " << busy);
      last = busy;
      ++pages;
    }
  });
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> micros(0, 400);
  for (int i = 0; i < 2000; ++i) {
    const int us = micros(rng);
    if (i % 3 == 0) {
      pool.post([] {});  // back to back on a worker: its start is the previous task's end
    } else {
      pool.post([us] {
        const auto until = Clock::now() + std::chrono::microseconds(us);
        while (Clock::now() < until) {
        }
      });
    }
  }
  pool.wait();
  stop = true;
  scraper.join();
  // Every task ended: the counter is the sum of their run times. A scrape can count a
  // task that ended a moment before it as running to the scrape's start, which shows as
  // nanoseconds here, never as a lost task.
  const double busy = value(ee_test::scrape(registry), "executor_worker_busy_seconds_total",
                            {{"executor", "churn"}});
  const double runs = run_seconds_sum(registry, "churn");
  INFO("busy " << busy << " s, sum of runs " << runs << " s");
  CHECK(busy >= runs * (1 - 1e-9));
  CHECK(busy <= runs + 0.001);
}

TEST_CASE("running probes of executors that share an id add up", "[metrics][busy]") {
  auto registry = std::make_shared<prometheus::Registry>();
  // Two executors under one id share one metrics object, as two process pools would.
  ee::ExecutorExporter a("shared", "probe", registry);
  ee::ExecutorExporter b("shared", "probe", registry);
  REQUIRE(&a.recorder().metrics() == &b.recorder().metrics());
  for (int i = 0; i < 3; ++i) (void)a.task_submitted();
  const auto one_second = ee::detail::ExecutorMetrics::Running{1, 1'000'000'000};
  const auto pa = a.recorder().metrics().add_running_probe([&] { return one_second; });
  const auto pb = b.recorder().metrics().add_running_probe([&] { return one_second; });
  const ee_test::prom::Labels labels{{"executor", "shared"}};
  auto page = ee_test::scrape(registry);
  CHECK(value(page, "executor_tasks_running", labels) == 2);
  CHECK(value(page, "executor_tasks_queued", labels) == 1);
  CHECK(value(page, "executor_worker_busy_seconds_total", labels) >= 2.0);
  CHECK(ee_test::unaccounted(page, labels) == 0);
  b.recorder().metrics().remove_running_probe(pb);
  page = ee_test::scrape(registry);
  CHECK(value(page, "executor_tasks_running", labels) == 1);
  CHECK(value(page, "executor_tasks_queued", labels) == 2);
  a.recorder().metrics().remove_running_probe(pa);
  page = ee_test::scrape(registry);
  CHECK(value(page, "executor_tasks_running", labels) == 0);
  CHECK(value(page, "executor_tasks_queued", labels) == 3);
}
