// executor_tasks_queued_seconds_total and executor_tasks_running_seconds_total are the
// integrals of the queue depth and of the running count over time, so rate() over them is
// the exact time-weighted mean depth, not a guess from two gauge samples. Little's law
// checks them: over a window that starts and ends with an empty queue, the queued seconds
// grow by exactly the waits of the window's tasks (the wait histogram's sum).

#include <executor_exporter/adapters/asio_thread_pool.hpp>
#include <executor_exporter/executor_exporter.hpp>
#include <executor_exporter/process/process_pool_executor.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "http_client.hpp"
#include "prom_text.hpp"
#include "scrape.hpp"
#include "wait_until.hpp"

namespace ee = executor_exporter;
using ee_test::prom::metric;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using ee_test::http_page;

namespace {

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double queued_s(const ee_test::prom::Page& p, const ee_test::prom::Labels& l) {
  return metric(p, "executor_tasks_queued_seconds_total", l);
}
double running_s(const ee_test::prom::Page& p, const ee_test::prom::Labels& l) {
  return metric(p, "executor_tasks_running_seconds_total", l);
}
double wait_sum(const ee_test::prom::Page& p, const ee_test::prom::Labels& l) {
  return metric(p, "executor_task_wait_seconds", l, "_sum");
}
double run_sum(const ee_test::prom::Page& p, ee_test::prom::Labels l) {
  l["result"] = "completed";
  const double ok = metric(p, "executor_task_run_seconds", l, "_sum");
  l["result"] = "failed";
  return ok + metric(p, "executor_task_run_seconds", l, "_sum");
}

// Both sides are sums of the same integer nanoseconds, turned into doubles in different
// steps: equal up to the rounding of those steps.
constexpr double kRounding = 1e-6;

// A single worker held by a gate, so that tasks submitted meanwhile queue up.
struct Gate {
  std::promise<void> promise;
  std::shared_future<void> open = promise.get_future().share();
  std::atomic<bool> entered{false};
  void hold() {
    entered = true;
    open.wait();
  }
};

int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

}  // namespace

TEST_CASE(
    "over a window that starts and ends with an empty queue the queued seconds grow by "
    "exactly the waits of its tasks",
    "[metrics][averages][http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::MetricsServer server("127.0.0.1:0", registry);
  ee::ThreadPoolExecutor pool(1, "averages", {}, "littles_law", registry);
  const ee_test::prom::Labels l{{"executor", "littles_law"}};
  pool.submit([] {}).get();  // the pool has run before the window opens
  const auto before = http_page(server.port());

  Gate gate;
  auto held = pool.submit([&] { gate.hold(); });
  REQUIRE(ee_test::wait_until([&] { return gate.entered.load(); }, 10s));
  const auto queued_from = Clock::now();
  std::vector<ee::Future<void>> tasks;
  for (int i = 0; i < 8; ++i)
    tasks.push_back(pool.submit([] { std::this_thread::sleep_for(2ms); }));
  std::this_thread::sleep_for(100ms);

  // While they wait, eight tasks queued for at least 100 ms are already in the integral.
  const auto during = http_page(server.port());
  CHECK(metric(during, "executor_tasks_queued", l) == 8);
  CHECK(queued_s(during, l) - queued_s(before, l) >=
        8 * 0.95 * seconds(Clock::now() - queued_from) - 0.8);
  CHECK(queued_s(during, l) - queued_s(before, l) >= 8 * 0.095);

  gate.promise.set_value();
  held.get();
  for (auto& t : tasks) t.get();
  const auto after = http_page(server.port());
  REQUIRE(metric(after, "executor_tasks_queued", l) == 0);
  const double queued_growth = queued_s(after, l) - queued_s(before, l);
  const double waits = wait_sum(after, l) - wait_sum(before, l);
  INFO("queued seconds grew by " << queued_growth << ", waits summed to " << waits);
  CHECK(queued_growth == Approx(waits).margin(kRounding));
  CHECK(queued_growth > 8 * 0.1);  // the window's tasks waited: the check above is no 0 == 0

  // The running count's integral is the run times, as the run histograms have them.
  CHECK(running_s(after, l) == Approx(run_sum(after, l)).margin(kRounding));
  CHECK(running_s(after, l) >= 0.1 + 8 * 0.002);
}

TEST_CASE("cancelled and expired tasks count in the queued seconds for the time they waited",
          "[metrics][averages]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, "averages", {}, "dropped", registry);
  const ee_test::prom::Labels l{{"executor", "dropped"}};
  Gate gate;
  auto held = pool.submit([&] { gate.hold(); });
  REQUIRE(ee_test::wait_until([&] { return gate.entered.load(); }, 10s));
  const auto submitted_at = Clock::now();
  auto cancelled = pool.submit([] {});
  ee::SubmitOptions expiring;
  expiring.deadline = Clock::now() + 20ms;
  auto expired = pool.submit_with(expiring, [] {});
  std::this_thread::sleep_for(60ms);
  REQUIRE(cancelled.cancel());
  const auto cancelled_at = Clock::now();
  gate.promise.set_value();
  held.get();
  CHECK_THROWS(expired.get());

  const auto page = ee_test::scrape(registry);
  REQUIRE(metric(page, "executor_tasks_cancelled_total", l) == 1);
  REQUIRE(metric(page, "executor_tasks_expired_total", l) == 1);
  REQUIRE(metric(page, "executor_tasks_queued", l) == 0);
  // Beyond the started tasks' waits: the cancelled one's 60 ms or more, and the expired
  // one's from its submit to the moment the worker dropped it (after the gate opened).
  const double dropped = queued_s(page, l) - wait_sum(page, l);
  INFO("queued seconds beyond the started tasks' waits: " << dropped);
  CHECK(dropped >= 2 * 0.06);
  CHECK(dropped <= 2 * seconds(Clock::now() - submitted_at) + kRounding);
  CHECK(dropped >= seconds(cancelled_at - submitted_at) + 0.06 - 0.001);
  // Still rising only while something is queued: a later scrape adds nothing.
  std::this_thread::sleep_for(20ms);
  CHECK(queued_s(ee_test::scrape(registry), l) == Approx(queued_s(page, l)).margin(kRounding));
}

TEST_CASE("queued and running seconds of named tasks count in their task series",
          "[metrics][averages]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, "averages", {}, "named_avg", registry);
  Gate gate;
  auto held = pool.submit_named("gate", [&] { gate.hold(); });
  REQUIRE(ee_test::wait_until([&] { return gate.entered.load(); }, 10s));
  auto a = pool.submit_named("report", [] { std::this_thread::sleep_for(5ms); });
  auto b = pool.submit([] {});
  std::this_thread::sleep_for(50ms);

  // The gate task is running in its series while the others queue in theirs.
  auto page = ee_test::scrape(registry);
  const ee_test::prom::Labels gate_l{{"executor", "named_avg"}, {"task", "gate"}};
  const ee_test::prom::Labels report_l{{"executor", "named_avg"}, {"task", "report"}};
  const ee_test::prom::Labels plain_l{{"executor", "named_avg"}};
  CHECK(running_s(page, gate_l) >= 0.05);
  CHECK(queued_s(page, report_l) >= 0.05);
  CHECK(queued_s(page, plain_l) >= 0.05);
  CHECK(running_s(page, report_l) == 0);

  gate.promise.set_value();
  held.get();
  a.get();
  b.get();
  page = ee_test::scrape(registry);
  for (const auto& l : {gate_l, report_l, plain_l}) {
    CHECK(queued_s(page, l) == Approx(wait_sum(page, l)).margin(kRounding));
    CHECK(running_s(page, l) == Approx(run_sum(page, l)).margin(kRounding));
  }
  CHECK(running_s(page, report_l) >= 0.005);
}

TEST_CASE("under a steady load the mean queue depth is the arrival rate times the mean wait",
          "[metrics][averages]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, "averages", {}, "steady", registry);
  const ee_test::prom::Labels l{{"executor", "steady"}};
  std::vector<ee::Future<void>> tasks;
  auto submit_for = [&](Clock::duration d) {
    const auto until = Clock::now() + d;
    while (Clock::now() < until) {
      // About 1.6 tasks of 1 ms per ms of 2 workers: a queue that forms and drains.
      for (int i = 0; i < 4; ++i)
        tasks.push_back(pool.submit([] { std::this_thread::sleep_for(1ms); }));
      std::this_thread::sleep_for(2500us);
    }
  };
  submit_for(100ms);  // warm up
  const auto p0 = ee_test::scrape(registry);
  const auto t0 = Clock::now();
  submit_for(600ms);
  const auto p1 = ee_test::scrape(registry);
  const double window = seconds(Clock::now() - t0);
  for (auto& t : tasks) t.get();

  const double mean_depth = (queued_s(p1, l) - queued_s(p0, l)) / window;
  const double started =
      metric(p1, "executor_task_wait_seconds", l) - metric(p0, "executor_task_wait_seconds", l);
  const double arrival_rate = started / window;
  const double mean_wait = (wait_sum(p1, l) - wait_sum(p0, l)) / started;
  INFO("mean depth " << mean_depth << ", arrival rate " << arrival_rate << "/s, mean wait "
                     << mean_wait << " s");
  REQUIRE(started > 50);
  // Exact over windows that open and close on an empty queue; here the tasks queued at
  // either edge make the difference, a few of the window's hundreds.
  CHECK(mean_depth == Approx(arrival_rate * mean_wait).epsilon(0.25).margin(0.05));
  // The same with the running count: mean running = arrival rate x mean run time.
  const double mean_running = (running_s(p1, l) - running_s(p0, l)) / window;
  const double mean_run = (run_sum(p1, l) - run_sum(p0, l)) / started;
  CHECK(mean_running == Approx(arrival_rate * mean_run).epsilon(0.25).margin(0.05));
}

TEST_CASE("the proxy's queued and running seconds follow Little's law exactly as the pool's",
          "[metrics][averages][proxy]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::InstrumentedExecutorProxy<ee::adapters::AsioThreadPool> proxy(
      ee::adapters::AsioThreadPool(1), ee::ExecutorExporter("proxied_avg", "asio", registry), 1);
  const ee_test::prom::Labels l{{"executor", "proxied_avg"}};
  Gate gate;
  auto held = proxy.submit([&] { gate.hold(); });
  REQUIRE(ee_test::wait_until([&] { return gate.entered.load(); }, 10s));
  std::vector<ee::Future<void>> tasks;
  for (int i = 0; i < 4; ++i)
    tasks.push_back(proxy.submit([] { std::this_thread::sleep_for(1ms); }));
  std::this_thread::sleep_for(50ms);
  CHECK(queued_s(ee_test::scrape(registry), l) >= 4 * 0.05);
  gate.promise.set_value();
  held.get();
  for (auto& t : tasks) t.get();
  const auto page = ee_test::scrape(registry);
  CHECK(queued_s(page, l) == Approx(wait_sum(page, l)).margin(kRounding));
  CHECK(queued_s(page, l) >= 4 * 0.05);
  CHECK(running_s(page, l) == Approx(run_sum(page, l)).margin(kRounding));
}

TEST_CASE("manual recording adds a task's wait to the queued seconds when it starts",
          "[metrics][averages][manual]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ExecutorExporter exporter("manual_avg", "custom", registry);
  const ee_test::prom::Labels l{{"executor", "manual_avg"}};
  const std::uint64_t submitted = exporter.task_submitted();
  exporter.task_submitted();
  exporter.task_cancelled();  // no submit time: never counted as queued
  std::this_thread::sleep_for(30ms);
  CHECK(queued_s(ee_test::scrape(registry), l) == 0);
  const std::uint64_t started = exporter.task_started(submitted);
  std::this_thread::sleep_for(20ms);
  CHECK(running_s(ee_test::scrape(registry), l) >= 0.02);  // running, seen by the probe
  exporter.task_finished(started, true);
  const auto page = ee_test::scrape(registry);
  CHECK(queued_s(page, l) == Approx(wait_sum(page, l)).margin(kRounding));
  CHECK(queued_s(page, l) >= 0.03);
  CHECK(running_s(page, l) == Approx(run_sum(page, l)).margin(kRounding));
}

TEST_CASE("the process pool's queued and running seconds match its histograms once idle",
          "[metrics][averages][process_pool][fork]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ProcessPoolOptions o;
  o.max_workers = 1;
  o.thread_check = ee::ThreadCheck::allow;
  o.registry = registry;
  o.id = "pp_avg";
  ee::ProcessPoolExecutor pool(o);
  const ee_test::prom::Labels l{{"executor", "pp_avg"}};
  std::vector<ee::Future<int>> tasks;
  for (int i = 0; i < 4; ++i) tasks.push_back(pool.submit(sleep_ms, 30));
  for (auto& t : tasks) CHECK(t.get() == 30);
  const auto page = ee_test::scrape(registry);
  CHECK(queued_s(page, l) == Approx(wait_sum(page, l)).margin(kRounding));
  CHECK(queued_s(page, l) >= (1 + 2 + 3) * 0.03 * 0.9);  // the last task waited for three
  CHECK(running_s(page, l) == Approx(run_sum(page, l)).margin(kRounding));
  CHECK(running_s(page, l) >= 4 * 0.03);
}
