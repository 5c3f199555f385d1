// A registry registered the plain prometheus-cpp way, exposer.RegisterCollectable(registry),
// is collected without the library folding first. These tests scrape such a registry over
// real HTTP while executors run: the worker gauges are right at once (written where they
// change) and the counters catch up within the background fold interval.
#include <executor_exporter/executor_exporter.hpp>

#include <prometheus/exposer.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "http_client.hpp"
#include "prom_text.hpp"
#include "wait_until.hpp"

using namespace std::chrono_literals;
namespace ee = executor_exporter;
namespace prom = ee_test::prom;

namespace {

struct PlainExposer {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  prometheus::Exposer exposer{"127.0.0.1:0"};
  PlainExposer() { exposer.RegisterCollectable(registry); }
  prom::Page page() {
    const auto r = ee_test::http_get("127.0.0.1", exposer.GetListeningPorts().front(), "/metrics");
    REQUIRE(r.status == 200);
    return prom::parse(r.body);
  }
};

// Restores the process-wide interval whatever the test does.
struct IntervalGuard {
  std::chrono::milliseconds saved = ee::background_fold_interval();
  ~IntervalGuard() { ee::set_background_fold_interval(saved); }
};

}  // namespace

TEST_CASE("a plainly registered registry shows a live pool's gauges at once", "[plain_registry]") {
  PlainExposer plain;
  ee::ThreadPoolOptions o;
  o.registry = plain.registry;
  o.id = "plain";
  o.queue_capacity = 7;
  ee::ThreadPoolExecutor pool(3, o);
  const prom::Labels l = {{"executor", "plain"}};
  // No task ran and nothing folded: only what is written where it changes.
  auto page = plain.page();
  CHECK(prom::metric(page, "executor_max_workers", l) == 3);
  CHECK(prom::metric(page, "executor_queue_capacity", l) == 7);
  pool.resize(5);
  page = plain.page();
  CHECK(prom::metric(page, "executor_max_workers", l) == 5);
}

TEST_CASE("a plainly registered registry catches up within the background fold interval",
          "[plain_registry]") {
  IntervalGuard guard;
  ee::set_background_fold_interval(100ms);
  PlainExposer plain;
  ee::ThreadPoolOptions o;
  o.registry = plain.registry;
  o.id = "plain_counts";
  ee::ThreadPoolExecutor pool(2, o);
  const prom::Labels l = {{"executor", "plain_counts"}};

  std::promise<void> release;
  auto gate = release.get_future().share();
  auto blocked = pool.submit([gate] { gate.wait(); });
  for (int i = 0; i < 40; ++i) pool.submit([] {}).get();

  // The counters are at most one interval (plus a scrape) old, never stuck at 0.
  prom::Page page;
  REQUIRE(ee_test::wait_until(
      [&] {
        page = plain.page();
        return prom::metric(page, "executor_tasks_submitted_total", l) == 41 &&
               prom::metric(page, "executor_tasks_running", l) == 1;
      },
      10s, 20ms));
  CHECK(prom::metric(page, "executor_tasks_completed_total", l) == 40);
  CHECK(prom::metric(page, "executor_workers", l) == 2);
  release.set_value();
  blocked.get();
  REQUIRE(ee_test::wait_until(
      [&] {
        page = plain.page();
        return prom::metric(page, "executor_tasks_running", l) == 0;
      },
      10s, 20ms));
  CHECK(prom::metric(page, "executor_tasks_completed_total", l) == 41);
}

TEST_CASE("the background fold can be stopped and restarted", "[plain_registry]") {
  IntervalGuard guard;
  ee::set_background_fold_interval(0ms);
  PlainExposer plain;
  ee::ThreadPoolOptions o;
  o.registry = plain.registry;
  o.id = "plain_stopped";
  ee::ThreadPoolExecutor pool(1, o);
  const prom::Labels l = {{"executor", "plain_stopped"}};
  pool.submit([] {}).get();
  // Stopped: a plain collect sees nothing of the task, however long it waits.
  std::this_thread::sleep_for(300ms);
  CHECK(prom::metric(plain.page(), "executor_tasks_submitted_total", l) == 0);
  ee::set_background_fold_interval(50ms);
  CHECK(ee_test::wait_until(
      [&] { return prom::metric(plain.page(), "executor_tasks_submitted_total", l) == 1; }, 10s,
      20ms));
}

TEST_CASE("every registry says which library version serves it", "[plain_registry]") {
  PlainExposer plain;
  ee::ThreadPoolOptions o;
  o.registry = plain.registry;
  o.id = "versioned";
  ee::ThreadPoolExecutor pool(1, o);
  const auto page = plain.page();
  CHECK(prom::metric(page, "executor_exporter_build_info",
                     {{"version", std::string(ee::library_version())}}) == 1);
  CHECK(ee::library_version() == EE_PROJECT_VERSION);
}
