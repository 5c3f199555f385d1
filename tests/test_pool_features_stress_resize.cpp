// Stress: resizing up and down while producers submit, callbacks run and a scrape loop
// collects; every task runs exactly once and the counters reconcile.
#include <executor_exporter/metrics/metrics_server.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "http_client.hpp"
#include "pool_features_metrics.hpp"
#include "prom_text.hpp"

namespace ee = executor_exporter;
using pool_test::value;

TEST_CASE("resize under load loses nothing and reconciles", "[pool_features][stress_resize]") {
  auto reg = std::make_shared<prometheus::Registry>();
  auto o = pool_test::options(reg);
  o.queue_capacity = 64;  // producers feel back-pressure too
  ee::ThreadPoolExecutor pool(2, o);
  constexpr int producers = 3;
  constexpr int per_producer = 1500;
  constexpr int total = producers * per_producer;
  auto runs = std::make_unique<std::atomic<int>[]>(total);
  std::atomic<int> callbacks{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> reconcile_failed{false};

  // The scrape loop reads /metrics over real HTTP, as Prometheus would.
  ee::MetricsServer server("127.0.0.1:0", reg);
  std::atomic<int> http_scrapes{0};
  std::thread scraper([&] {
    namespace prom = ee_test::prom;
    while (!stop.load()) {
      auto page = prom::parse(ee_test::http_get("127.0.0.1", server.port(), "/metrics").body);
      const prom::Labels id{{"executor", o.id}};
      const double in_flight = prom::value(page, "executor_tasks_queued", id) +
                               prom::value(page, "executor_tasks_running", id);
      const double finished = prom::sum(page, "executor_task_run_seconds_count", id) +
                              prom::value(page, "executor_tasks_cancelled_total", id) +
                              prom::value(page, "executor_tasks_expired_total", id);
      if (prom::value(page, "executor_tasks_submitted_total", id) != finished + in_flight ||
          in_flight < 0) {
        reconcile_failed = true;
      }
      ++http_scrapes;
    }
  });
  std::thread resizer([&] {
    std::size_t sizes[] = {1, 4, 2, 3, 1, 5, 2};
    for (int round = 0; !stop.load(); ++round) {
      pool.resize(sizes[round % 7]);
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  });
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < per_producer; ++i) {
        const int id = p * per_producer + i;
        if (i % 3 == 0) {
          pool.post([&, id] { runs[id].fetch_add(1); });
        } else {
          auto f = pool.submit([&, id] {
            runs[id].fetch_add(1);
            return id;
          });
          f.add_done_callback([&](const ee::SharedFuture<int>&) { callbacks.fetch_add(1); });
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  pool.wait();
  stop = true;
  resizer.join();
  scraper.join();

  for (int i = 0; i < total; ++i) REQUIRE(runs[i].load() == 1);
  CHECK(callbacks.load() == producers * (per_producer - per_producer / 3));
  CHECK(http_scrapes.load() > 0);
  CHECK_FALSE(reconcile_failed.load());
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_tasks_submitted_total") == total);
  CHECK(value(fams, "executor_task_run_seconds", {{"result", "completed"}}) == total);
  CHECK(value(fams, "executor_tasks_queued") == 0);
  CHECK(value(fams, "executor_tasks_running") == 0);
  CHECK(pool_test::reconciles(fams));
  CHECK(value(fams, "executor_max_workers") == static_cast<double>(pool.max_workers()));
  CHECK(value(fams, "executor_scale_events_total", {{"direction", "up"}, {"reason", "manual"}}) +
            value(fams, "executor_scale_events_total",
                  {{"direction", "down"}, {"reason", "manual"}}) >
        0);
}
