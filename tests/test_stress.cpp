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

TEST_CASE("concurrent scrapes and executors destroyed during them each see a reconciled page",
          "[stress]") {
  // Two scrapers (as Prometheus and a person with curl would be) and executors whose
  // last fold runs in their destructor: no fold may land half-way through a collect.
  auto registry = std::make_shared<prometheus::Registry>();
  const ee_test::prom::Labels steady{{"executor", "steady"}}, brief{{"executor", "brief"}};
  ee::ThreadPoolExecutor pool(2, "s", {}, "steady", registry);
  { ee::ThreadPoolExecutor first(1, "b", {}, "brief", registry); }  // both series exist

  std::atomic<bool> stop{false};
  std::atomic<int> scrapes{0}, unreconciled{0}, errors{0};
  auto scrape_loop = [&] {
    while (!stop.load()) {
      try {
        const auto page = ee_test::scrape(registry);
        if (ee_test::unaccounted(page, steady) != 0 || ee_test::unaccounted(page, brief) != 0) {
          ++unreconciled;
        }
      } catch (const std::exception&) {
        ++errors;
      }
      ++scrapes;
    }
  };
  std::thread scraper_a(scrape_loop), scraper_b(scrape_loop);
  std::thread submitter([&] {
    while (!stop.load()) {
      for (int i = 0; i < 64; ++i) pool.post([] {});
      std::this_thread::yield();
    }
  });
  for (int round = 0; round < 40; ++round) {
    ee::ThreadPoolExecutor brief_pool(1, "b", {}, "brief", registry);
    for (int i = 0; i < 200; ++i) brief_pool.post([] {});
    if (round % 2 == 1) brief_pool.shutdown(true, /*cancel_futures=*/true);
  }  // each destructor folds the last counts while the scrapers run
  stop = true;
  submitter.join();
  scraper_a.join();
  scraper_b.join();
  pool.wait();

  CHECK(scrapes > 0);
  CHECK(errors == 0);
  CHECK(unreconciled == 0);
  const auto page = ee_test::scrape(registry);
  CHECK(ee_test::unaccounted(page, steady) == 0);
  CHECK(ee_test::unaccounted(page, brief) == 0);
  CHECK(value(page, "executor_tasks_submitted_total", brief) == 40 * 200);
}
