// Many submitters, a scrape loop and a racing shutdown: nothing is lost, counters reconcile.

#include <executor_exporter/executor_exporter.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "scrape.hpp"

namespace ee = executor_exporter;
using ee_test::prom::value;

TEST_CASE("submitters, a scrape loop and a racing shutdown reconcile exactly", "[stress]") {
  auto registry = std::make_shared<prometheus::Registry>();
  constexpr int submitters = 4;
  constexpr int per_submitter = 4000;

  ee::ThreadPoolExecutor pool(3, "s", {}, "stress", registry);
  std::atomic<bool> stop_scraping{false};
  std::atomic<int> refused{0};
  std::atomic<int> ran{0};
  std::vector<std::vector<ee::Future<int>>> futures(submitters);

  // Catch2 assertions belong on the main thread: the scraper records what it saw.
  std::atomic<int> scrapes{0}, went_back{0}, too_many_running{0}, unreconciled{0};
  std::thread scraper([&] {
    double last_submitted = 0, last_done = 0;
    while (!stop_scraping.load()) {
      auto page = ee_test::scrape(registry);
      const double submitted = value(page, "executor_tasks_submitted_total");
      const double done = ee_test::prom::sum(page, "executor_task_run_seconds_count") +
                          value(page, "executor_tasks_cancelled_total");
      // Counters never go back and gauges never exceed what is possible.
      if (submitted < last_submitted || done < last_done) ++went_back;
      if (value(page, "executor_tasks_running") > 3) ++too_many_running;
      if (value(page, "executor_tasks_queued") + value(page, "executor_tasks_running") !=
          submitted - done) {
        ++unreconciled;
      }
      last_submitted = submitted;
      last_done = done;
      ++scrapes;
    }
  });

  std::vector<std::thread> threads;
  for (int t = 0; t < submitters; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < per_submitter; ++i) {
        try {
          futures[t].push_back(pool.submit([&ran, i] {
            ++ran;
            if (i % 10 == 0) throw std::runtime_error("every tenth fails");
            return i;
          }));
        } catch (const ee::ExecutorShutdownError&) {
          ++refused;
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  pool.shutdown(/*wait=*/true, /*cancel_futures=*/true);  // races the submitters
  for (auto& t : threads) t.join();
  stop_scraping = true;
  scraper.join();

  CHECK(scrapes > 0);
  CHECK(went_back == 0);
  CHECK(too_many_running == 0);
  CHECK(unreconciled == 0);

  int completed = 0, failed = 0, cancelled = 0;
  for (auto& per_thread : futures) {
    for (auto& f : per_thread) {
      try {
        f.get();
        ++completed;
      } catch (const ee::CancelledError&) {
        ++cancelled;
      } catch (const std::runtime_error&) {
        ++failed;
      }
    }
  }
  const int accepted = completed + failed + cancelled;
  REQUIRE(accepted + refused == submitters * per_submitter);
  REQUIRE(ran == completed + failed);  // every accepted task ran at most once, none lost

  auto page = ee_test::scrape(registry);
  CHECK(value(page, "executor_tasks_submitted_total") == accepted);
  CHECK(value(page, "executor_task_run_seconds_count", {{"result", "completed"}}) == completed);
  CHECK(value(page, "executor_task_run_seconds_count", {{"result", "failed"}}) == failed);
  CHECK(value(page, "executor_tasks_cancelled_total") == cancelled);
  CHECK(value(page, "executor_tasks_rejected_total", {{"reason", "shutdown"}}) == refused);
  CHECK(value(page, "executor_tasks_queued") == 0);
  CHECK(value(page, "executor_tasks_running") == 0);
}
