// executor_tasks_queued_max and executor_tasks_running_max: the most tasks queued, and
// running, at once within ExporterOptions::peak_window before the scrape. A gauge scraped
// every 15 s misses a burst that comes and goes between two scrapes; these do not.

#include <executor_exporter/adapters/asio_thread_pool.hpp>
#include <executor_exporter/executor_exporter.hpp>
#include <executor_exporter/pools/detail/task_queue.hpp>

#include <prometheus/exposer.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "http_client.hpp"
#include "numbered_task.hpp"
#include "prom_text.hpp"
#include "scrape.hpp"
#include "wait_until.hpp"

namespace ee = executor_exporter;
namespace prom = ee_test::prom;
using namespace std::chrono_literals;

using ee_test::http_page;

namespace {

double queued_max(const prom::Page& p, const prom::Labels& l) {
  return prom::metric(p, "executor_tasks_queued_max", l);
}
double running_max(const prom::Page& p, const prom::Labels& l) {
  return prom::metric(p, "executor_tasks_running_max", l);
}

// Holds every worker of a pool in a task until opened, so that what is submitted
// meanwhile queues up.
struct Gate {
  std::promise<void> promise;
  std::shared_future<void> open = promise.get_future().share();
  std::atomic<int> entered{0};
  void hold() {
    ++entered;
    open.wait();
  }
};

// Blocks `workers` workers, queues `burst` empty tasks behind them, then lets everything
// run and waits until the pool is idle: a burst that comes and goes between two scrapes.
template <class Pool>
void burst_between_scrapes(Pool& pool, int workers, int burst) {
  Gate gate;
  std::vector<ee::Future<void>> held;
  for (int i = 0; i < workers; ++i) held.push_back(pool.submit([&] { gate.hold(); }));
  REQUIRE(ee_test::wait_until([&] { return gate.entered.load() == workers; }, 10s));
  std::vector<ee::Future<void>> tasks;
  for (int i = 0; i < burst; ++i) tasks.push_back(pool.submit([] {}));
  gate.promise.set_value();
  for (auto& f : held) f.get();
  for (auto& f : tasks) f.get();
  pool.wait();
}

// Restores the process-wide interval whatever the test does.
struct IntervalGuard {
  std::chrono::milliseconds saved = ee::background_fold_interval();
  ~IntervalGuard() { ee::set_background_fold_interval(saved); }
};

}  // namespace

TEST_CASE("a burst that queues and drains between two scrapes shows on the next scrape",
          "[metrics][peaks][http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::MetricsServer server("127.0.0.1:0", registry);
  ee::ThreadPoolExecutor pool(2, "peaks", {}, "burst", registry);
  const prom::Labels l{{"executor", "burst"}};
  const auto before = http_page(server.port());
  CHECK(queued_max(before, l) == 0);
  CHECK(running_max(before, l) == 0);

  burst_between_scrapes(pool, 2, 100);

  const auto after = http_page(server.port());
  // The gauges see none of it: the pool is idle again.
  CHECK(prom::metric(after, "executor_tasks_queued", l) == 0);
  CHECK(prom::metric(after, "executor_tasks_running", l) == 0);
  // The peaks do, exactly: the 100 tasks queued behind the two held workers.
  CHECK(queued_max(after, l) == 100);
  CHECK(running_max(after, l) == 2);
}

TEST_CASE("two pools that share an id add their peaks up, even at different moments",
          "[metrics][peaks][http]") {
  // Folds only at the scrapes below: a background fold between the two bursts would
  // record them as two folds' peaks (30, then 20) instead of one fold's sum.
  IntervalGuard guard;
  ee::set_background_fold_interval(0ms);
  auto registry = std::make_shared<prometheus::Registry>();
  ee::MetricsServer server("127.0.0.1:0", registry);
  ee::ThreadPoolExecutor first(2, "first", {}, "shared", registry);
  ee::ThreadPoolExecutor second(1, "second", {}, "shared", registry);
  const prom::Labels l{{"executor", "shared"}};

  // One after the other: never more than 30 queued at once in fact, but each pool
  // reports its own peak and the shared series adds them (an upper bound, as documented).
  burst_between_scrapes(first, 2, 30);
  burst_between_scrapes(second, 1, 20);

  const auto page = http_page(server.port());
  CHECK(prom::metric(page, "executor_tasks_queued", l) == 0);
  CHECK(queued_max(page, l) == 50);
  CHECK(running_max(page, l) == 3);
  // The same on the next scrape: the peaks stay for the window, whoever scraped.
  const auto again = http_page(server.port());
  CHECK(queued_max(again, l) == 50);
  CHECK(running_max(again, l) == 3);

  // A smaller burst later is recorded by its own fold; the window still holds the
  // larger one.
  burst_between_scrapes(second, 1, 10);
  const auto later = http_page(server.port());
  CHECK(queued_max(later, l) == 50);
}

TEST_CASE("a peak leaves the gauge once the peak window has passed", "[metrics][peaks]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolOptions o;
  o.registry = registry;
  o.id = "window";
  o.exporter.peak_window = 300ms;
  ee::ThreadPoolExecutor pool(1, o);
  const prom::Labels l{{"executor", "window"}};

  burst_between_scrapes(pool, 1, 20);
  const auto at = std::chrono::steady_clock::now();
  const auto page = ee_test::scrape(registry);
  REQUIRE(queued_max(page, l) == 20);
  CHECK(running_max(page, l) == 1);
  // Within the window every scrape still shows it (a second scraper does not steal it).
  if (std::chrono::steady_clock::now() - at < 200ms) {
    CHECK(queued_max(ee_test::scrape(registry), l) == 20);
  }
  std::this_thread::sleep_for(400ms);
  const auto later = ee_test::scrape(registry);
  CHECK(queued_max(later, l) == 0);
  CHECK(running_max(later, l) == 0);
}

TEST_CASE("a plainly registered registry and a second scraper both see the burst",
          "[metrics][peaks][plain_registry]") {
  IntervalGuard guard;
  ee::set_background_fold_interval(50ms);
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::Exposer plain{"127.0.0.1:0"};
  plain.RegisterCollectable(registry);
  const int plain_port = plain.GetListeningPorts().front();
  ee::MetricsServer ours("127.0.0.1:0", registry);
  ee::ThreadPoolOptions o;
  o.registry = registry;
  o.id = "scrapers";
  ee::ThreadPoolExecutor pool(3, o);
  const prom::Labels l{{"executor", "scrapers"}};

  burst_between_scrapes(pool, 3, 64);

  // The plain Exposer never folds: the background fold brings the peak to it, and
  // neither the folds nor our own server's scrapes in between take it away.
  CHECK(queued_max(http_page(ours.port()), l) == 64);
  REQUIRE(ee_test::wait_until([&] { return queued_max(http_page(plain_port), l) == 64; }, 10s));
  std::this_thread::sleep_for(200ms);  // several background folds
  CHECK(queued_max(http_page(plain_port), l) == 64);
  CHECK(running_max(http_page(plain_port), l) == 3);
  CHECK(queued_max(http_page(ours.port()), l) == 64);
}

TEST_CASE("a bounded queue's peak is its capacity when it filled up", "[metrics][peaks]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolOptions o;
  o.registry = registry;
  o.id = "bounded_peak";
  o.queue_capacity = 30;
  o.on_full = ee::QueueFullPolicy::reject;
  ee::ThreadPoolExecutor pool(1, o);
  const prom::Labels l{{"executor", "bounded_peak"}};

  Gate gate;
  auto held = pool.submit([&] { gate.hold(); });
  REQUIRE(ee_test::wait_until([&] { return gate.entered.load() == 1; }, 10s));
  // Priorities take the queue's locked path, the bound too; refused submits never count.
  std::vector<ee::Future<void>> tasks;
  int refused = 0;
  for (int i = 0; i < 50; ++i) {
    ee::SubmitOptions so;
    so.priority = i % 3;
    try {
      tasks.push_back(pool.submit_with(so, [] {}));
    } catch (const ee::QueueFullError&) {
      ++refused;
    }
  }
  REQUIRE(refused == 20);
  gate.promise.set_value();
  held.get();
  for (auto& f : tasks) f.get();
  pool.wait();
  const auto page = ee_test::scrape(registry);
  CHECK(queued_max(page, l) == 30);
  CHECK(prom::metric(page, "executor_tasks_rejected_total",
                     {{"executor", "bounded_peak"}, {"reason", "queue_full"}}) == 20);
}

TEST_CASE("under a hostile load the peaks are never below the gauges scraped with them",
          "[metrics][peaks][stress]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(4, "peaks", {}, "hostile_peaks", registry);
  const prom::Labels l{{"executor", "hostile_peaks"}};
  std::atomic<bool> stop{false};
  std::vector<std::thread> submitters;
  for (int s = 0; s < 3; ++s) {
    submitters.emplace_back([&, s] {
      std::vector<ee::Future<void>> pending;
      int i = 0;
      while (!stop.load()) {
        // Tiny tasks in bursts (a long queue: workers take batches into their reserves),
        // short sleepers, cancels of queued tasks, and priorities on the locked path.
        for (int k = 0; k < 64; ++k) pending.push_back(pool.submit([] {}));
        pending.push_back(pool.submit([] { std::this_thread::sleep_for(100us); }));
        ee::SubmitOptions so;
        so.priority = (i + s) % 2;
        pending.push_back(pool.submit_with(so, [] {}));
        if (i % 4 == 0) pending[pending.size() / 2].cancel();
        if (pending.size() > 2000) {
          for (auto& f : pending) f.wait();
          pending.clear();
        }
        ++i;
      }
      for (auto& f : pending) f.wait();
    });
  }
  double most_queued = 0;
  for (int i = 0; i < 60; ++i) {
    const auto page = ee_test::scrape(registry);
    const double q = prom::metric(page, "executor_tasks_queued", l);
    const double r = prom::metric(page, "executor_tasks_running", l);
    INFO("scrape " << i << ": queued " << q << " running " << r << " submitted "
                   << prom::metric(page, "executor_tasks_submitted_total", l) << " completed "
                   << prom::metric(page, "executor_tasks_completed_total", l) << " cancelled "
                   << prom::metric(page, "executor_tasks_cancelled_total", l) << " failed "
                   << prom::metric(page, "executor_tasks_failed_total", l) << " expired "
                   << prom::metric(page, "executor_tasks_expired_total", l));
    CHECK(queued_max(page, l) >= q);
    CHECK(running_max(page, l) >= r);
    // A worker holds one task at a time: four workers, never five running.
    CHECK(running_max(page, l) <= 4);
    CHECK(ee_test::unaccounted(page, l) == 0);
    most_queued = std::max(most_queued, q);
    std::this_thread::sleep_for(5ms);
  }
  stop = true;
  for (auto& t : submitters) t.join();
  pool.wait();
  const auto page = ee_test::scrape(registry);
  CHECK(queued_max(page, l) >= most_queued);
  CHECK(queued_max(page, l) > 0);
  CHECK(running_max(page, l) >= 1);
  CHECK(running_max(page, l) <= 4);
}

TEST_CASE("an executor without a queue of its own shows the most any scrape saw",
          "[metrics][peaks][proxy]") {
  // The proxy hands tasks to a queue it does not own, so it has no peak of its own to
  // report: its peaks are those of the gauges at each fold, kept for the window.
  auto registry = std::make_shared<prometheus::Registry>();
  ee::InstrumentedExecutorProxy<ee::adapters::AsioThreadPool> pool(
      ee::adapters::AsioThreadPool(1),
      ee::make_exporter_for<boost::asio::thread_pool>("proxy_peaks", registry), 1);
  const prom::Labels l{{"executor", "proxy_peaks"}};
  Gate gate;
  auto held = pool.submit([&] { gate.hold(); });
  REQUIRE(ee_test::wait_until([&] { return gate.entered.load() == 1; }, 10s));
  std::vector<ee::Future<void>> tasks;
  for (int i = 0; i < 12; ++i) tasks.push_back(pool.submit([] {}));
  CHECK(queued_max(ee_test::scrape(registry), l) == 12);
  gate.promise.set_value();
  held.get();
  for (auto& f : tasks) f.get();
  const auto page = ee_test::scrape(registry);
  CHECK(prom::metric(page, "executor_tasks_queued", l) == 0);
  CHECK(queued_max(page, l) == 12);
  CHECK(running_max(page, l) == 1);
}

TEST_CASE("without exact peaks a burst between two folds is missed", "[metrics][peaks]") {
  // What the queue's count buys: the same burst, with exact_peaks off and no background
  // fold, leaves the peaks at what the gauges showed at the scrapes: nothing.
  IntervalGuard guard;
  ee::set_background_fold_interval(0ms);
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolOptions o;
  o.registry = registry;
  o.id = "sampled_peaks";
  o.exporter.exact_peaks = false;
  ee::ThreadPoolExecutor pool(2, o);
  const prom::Labels l{{"executor", "sampled_peaks"}};
  CHECK(queued_max(ee_test::scrape(registry), l) == 0);
  burst_between_scrapes(pool, 2, 100);
  const auto page = ee_test::scrape(registry);
  CHECK(prom::metric(page, "executor_tasks_completed_total", l) == 102);
  CHECK(queued_max(page, l) == 0);
  CHECK(running_max(page, l) == 0);
}

TEST_CASE("the queue counts its depth and its busy workers where tasks move",
          "[metrics][peaks][queue]") {
  using ee::detail::TaskQueue;
  TaskQueue q(0, /*count_peaks=*/true);
  TaskQueue::Reserve a;
  TaskQueue::Reserve b;
  q.attach(a);
  q.attach(b);
  std::vector<std::unique_ptr<ee_test::NumberedTask>> tasks;
  auto push = [&](int n, std::int32_t priority) {
    for (int i = 0; i < n; ++i) {
      tasks.push_back(std::make_unique<ee_test::NumberedTask>(i, priority));
      REQUIRE(q.push(
                  tasks.back().get(), [] {}, false) == TaskQueue::PushResult::accepted);
    }
  };
  push(150, 0);  // the lock-free inbox
  push(10, 3);   // the locked path
  bool waited = false;
  // Worker a takes 160 / 8 = 16 at most: one to run, which leaves the count, and 15
  // into its reserve, which stay in it (the queued gauge counts them too) until a comes
  // back for more, although it runs all 15 meanwhile.
  REQUIRE(q.pop(0, waited, a) != nullptr);
  for (int i = 0; i < 15; ++i) REQUIRE(a.take() != nullptr);
  auto p = q.take_peaks();
  CHECK(p.queued == 160);
  CHECK(p.running == 1);
  // Restarted from the count now: 159, one worker holding work.
  p = q.take_peaks();
  CHECK(p.queued == 159);
  CHECK(p.running == 1);
  // A second worker takes the rest of the segment (10, see TaskQueue::Level: 1 to run, 9
  // reserved); a comes back, its 15 leave the count, and it takes a whole segment (16).
  REQUIRE(q.pop(0, waited, b) != nullptr);
  REQUIRE(q.pop(16, waited, a) != nullptr);
  push(5, 0);
  p = q.take_peaks();
  CHECK(p.running == 2);
  CHECK(p.queued == 159);  // the count the period started at: it only fell, then rose by 5
  // Now exact: 123 in the lists, 15 + 9 reserved and not started.
  p = q.take_peaks();
  CHECK(p.queued == 123 + 15 + 9);
  q.close();
  std::size_t removed = 0;
  for (auto* t = q.take_all(); t != nullptr; t = t->next) ++removed;
  CHECK(removed == 123 + 15 + 9);
  p = q.take_peaks();
  CHECK(p.queued == 123 + 15 + 9);  // the most since the last call, before take_all
  p = q.take_peaks();
  CHECK(p.queued == 0);  // take_all took the reserved tasks out of the count too
  // Both workers come back, find the queue closed and drained, and leave.
  CHECK(q.pop(1, waited, a) == nullptr);
  CHECK(q.pop(1, waited, b) == nullptr);
  CHECK(q.take_peaks().running == 2);  // the most since the last call: two, then none
  CHECK(q.take_peaks().running == 0);
  q.detach(a);
  q.detach(b);
}
