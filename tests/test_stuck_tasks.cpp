// Stuck-task detection: the oldest running and queued task and the stuck count, read at
// scrape from what workers publish about their current task, and the watchdog that names
// a stuck task with its thread and submit call site.

#include <executor_exporter/executor_exporter.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <latch>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http_client.hpp"
#include "json.hpp"
#include "prom_text.hpp"
#include "promtool.hpp"
#include "temp_dir.hpp"
#include "wait_until.hpp"

namespace ee = executor_exporter;
using ee_test::prom::metric;
using namespace std::chrono_literals;

namespace {

ee_test::prom::Page http_scrape(int port) {
  auto response = ee_test::http_get("127.0.0.1", port, "/metrics");
  REQUIRE(response.status == 200);
  return ee_test::prom::parse(response.body);
}

// submitted - every outcome and state, summed over the executor's named and unnamed series.
double unaccounted(const ee_test::prom::Page& page, const std::string& executor) {
  using ee_test::prom::sum;
  const ee_test::prom::Labels l{{"executor", executor}};
  return sum(page, "executor_tasks_submitted_total", l) -
         (sum(page, "executor_tasks_completed_total", l) +
          sum(page, "executor_tasks_failed_total", l) +
          sum(page, "executor_tasks_cancelled_total", l) +
          sum(page, "executor_tasks_expired_total", l) + sum(page, "executor_tasks_queued", l) +
          sum(page, "executor_tasks_running", l));
}

ee::ThreadPoolOptions pool_options(const std::string& id,
                                   std::shared_ptr<prometheus::Registry> registry,
                                   std::chrono::nanoseconds stuck_after) {
  ee::ThreadPoolOptions o;
  o.id = id;
  o.thread_name_prefix = id;
  o.registry = std::move(registry);
  o.exporter.stuck_after = stuck_after;
  return o;
}

// Collects what a watchdog reports.
struct Reports {
  std::mutex mutex;
  std::vector<ee::StuckTask> tasks;
  std::vector<std::string> lines;
  std::vector<std::string> dumps;
  ee::WatchdogOptions options(std::chrono::milliseconds interval = 20ms) {
    ee::WatchdogOptions o;
    o.interval = interval;
    o.on_stuck = [this](const ee::StuckTask& t) {
      std::lock_guard lock(mutex);
      tasks.push_back(t);
    };
    o.log = [this](std::string_view line) {
      std::lock_guard lock(mutex);
      lines.emplace_back(line);
    };
    o.on_dump = [this](const std::string& trace) {
      std::lock_guard lock(mutex);
      dumps.push_back(trace);
    };
    return o;
  }
  std::size_t count() {
    std::lock_guard lock(mutex);
    return tasks.size();
  }
};

}  // namespace

TEST_CASE("a task blocked past the threshold shows as the oldest running task and as stuck",
          "[stuck]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::MetricsServer server("127.0.0.1:0", registry);
  ee::ThreadPoolExecutor pool(1, pool_options("stuckpool", registry, 100ms));
  std::latch release(1);
  std::atomic<bool> started{false};
  auto blocked = pool.submit_named("blocker", [&] {
    started = true;
    release.wait();
  });
  REQUIRE(ee_test::wait_until([&] { return started.load(); }, 5s));

  // Before the threshold: running, not stuck.
  auto page = http_scrape(server.port());
  CHECK(metric(page, "executor_tasks_stuck", {{"executor", "stuckpool"}}) == 0);
  CHECK(metric(page, "executor_task_oldest_running_seconds",
               {{"executor", "stuckpool"}, {"task", "blocker"}}) < 0.1);
  std::this_thread::sleep_for(250ms);
  // A task waiting behind it is the oldest queued one.
  auto queued = pool.submit([] {});
  std::this_thread::sleep_for(150ms);

  page = http_scrape(server.port());
  CHECK(metric(page, "executor_tasks_stuck", {{"executor", "stuckpool"}}) == 1);
  const double running_age = metric(page, "executor_task_oldest_running_seconds",
                                    {{"executor", "stuckpool"}, {"task", "blocker"}});
  CHECK(running_age >= 0.4);
  CHECK(running_age < 60);
  // The unnamed series runs nothing: the age is the named task's.
  CHECK(metric(page, "executor_task_oldest_running_seconds", {{"executor", "stuckpool"}}) == 0);
  const double queued_age =
      metric(page, "executor_task_oldest_queued_seconds", {{"executor", "stuckpool"}});
  CHECK(queued_age >= 0.15);
  CHECK(queued_age < running_age);
  CHECK(unaccounted(page, "stuckpool") == 0);
  ee_test::require_promtool_clean(ee_test::http_get("127.0.0.1", server.port(), "/metrics").body);

  release.count_down();
  blocked.get();
  queued.get();
  page = http_scrape(server.port());
  CHECK(metric(page, "executor_tasks_stuck", {{"executor", "stuckpool"}}) == 0);
  CHECK(metric(page, "executor_task_oldest_running_seconds",
               {{"executor", "stuckpool"}, {"task", "blocker"}}) == 0);
  CHECK(metric(page, "executor_task_oldest_queued_seconds", {{"executor", "stuckpool"}}) == 0);
  CHECK(unaccounted(page, "stuckpool") == 0);
}

TEST_CASE("the proxy's running tasks show as stuck too", "[stuck]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ExporterOptions eo;
  eo.stuck_after = 50ms;
  ee::InstrumentedExecutorProxy<ee::ThreadPoolExecutor> proxy(
      std::in_place, ee::ExecutorExporter("stuckproxy", "proxy", registry, eo), 2, std::size_t{2});
  std::latch release(1);
  std::atomic<bool> started{false};
  auto f = proxy.submit_named("held", [&] {
    started = true;
    release.wait();
  });
  REQUIRE(ee_test::wait_until([&] { return started.load(); }, 5s));
  std::this_thread::sleep_for(150ms);
  auto page = ee_test::prom::parse(ee::scrape_text(registry));
  CHECK(metric(page, "executor_tasks_stuck", {{"executor", "stuckproxy"}}) == 1);
  CHECK(metric(page, "executor_task_oldest_running_seconds",
               {{"executor", "stuckproxy"}, {"task", "held"}}) >= 0.15);
  release.count_down();
  f.get();
}

TEST_CASE("the watchdog reports a stuck task once: executor, name, thread, age and call site",
          "[stuck][watchdog]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_options("dogpool", registry, 100ms));
  ee_test::TempDir dir;
  Reports reports;
  auto options = reports.options();
  options.dump_directory = dir.str();
  ee::Watchdog watchdog(options);
  std::latch release(1);
  const unsigned line = __LINE__ + 1;
  auto f = pool.submit_named("wedged", [&] { release.wait(); });
  REQUIRE(ee_test::wait_until([&] { return reports.count() >= 1; }, 5s));
  std::this_thread::sleep_for(100ms);  // a few more rounds: still reported only once
  release.count_down();
  f.get();

  std::lock_guard lock(reports.mutex);
  REQUIRE(reports.tasks.size() == 1);
  const ee::StuckTask& t = reports.tasks.front();
  CHECK(t.executor == "dogpool");
  CHECK(t.executor_type == "thread_pool");
  CHECK(t.task == "wedged");
  CHECK(t.thread == "dogpool-0");
  CHECK(t.thread_id != 0);
  CHECK(t.pid == 0);
  CHECK(t.age >= 100ms);
  CHECK(t.call_site.line() == line);
  CHECK_THAT(t.call_site.file_name(), Catch::EndsWith("test_stuck_tasks.cpp"));
  REQUIRE(reports.lines.size() == 1);
  const std::string& l = reports.lines.front();
  CHECK_THAT(l, Catch::StartsWith("executor_exporter: stuck task: executor=\"dogpool\""));
  CHECK_THAT(l, Catch::Contains("task=\"wedged\"") && Catch::Contains("thread=\"dogpool-0\""));
  CHECK_THAT(l, Catch::Contains("test_stuck_tasks.cpp:" + std::to_string(line)));
  CHECK_THAT(l, Catch::Contains(" age="));
  // The flight recorder was dumped for it, to the directory and to the callback.
  REQUIRE(reports.dumps.size() == 1);
  // The dump shows the stuck task itself, open until the moment of the dump.
  const auto dump = ee_test::json::parse(reports.dumps.front());
  bool shown = false;
  for (const auto& e : dump.at("traceEvents").array) {
    if (e.at("ph").str() != "X" || e.at("args").at("executor").str() != "dogpool") continue;
    shown = e.at("name").str() == "wedged" && e.at("args").at("result").str() == "running" &&
            e.at("dur").number >= 100000 &&
            e.at("args").at("call_site").str().ends_with(":" + std::to_string(line));
  }
  CHECK(shown);
  REQUIRE_FALSE(t.trace_file.empty());
  CHECK_THAT(t.trace_file, Catch::StartsWith(dir.str()));
  CHECK_THAT(l, Catch::Contains("trace=" + t.trace_file));
}

TEST_CASE("a second watchdog in one process is refused", "[stuck][watchdog]") {
  ee::Watchdog first;
  CHECK_THROWS_AS(ee::Watchdog(), std::logic_error);
}

TEST_CASE("the call site is captured by every submit function and can be turned off", "[stuck]") {
  struct Sites : ee::TaskObserver {
    std::mutex mutex;
    std::vector<unsigned> lines;
    void on_submitted(const ee::TaskInfo& i) noexcept override {
      std::lock_guard lock(mutex);
      lines.push_back(i.call_site.line());
    }
  };
  auto sites = std::make_shared<Sites>();
  auto registry = std::make_shared<prometheus::Registry>();
  std::vector<unsigned> expected;
  {
    auto o = pool_options("sites", registry, 60s);
    o.observers.push_back(sites);
    ee::ThreadPoolExecutor pool(2, o);
    ee::SubmitOptions named;
    named.name = "n";
    // Each call's line is the one after its push_back.
    auto one = [](int) {};
    expected.push_back(__LINE__ + 1);
    pool.submit([] {}).get();
    expected.push_back(__LINE__ + 1);
    pool.submit(one, 1).get();
    expected.push_back(__LINE__ + 1);
    pool.submit([](int, int, int) {}, 1, 2, 3).get();
    expected.push_back(__LINE__ + 1);
    pool.submit_named("x", [] {}).get();
    expected.push_back(__LINE__ + 1);
    pool.submit_with(named, one, 1).get();
    expected.push_back(__LINE__ + 1);
    (void)pool.try_submit([] {});
    expected.push_back(__LINE__ + 1);
    pool.post([] {});
    expected.push_back(__LINE__ + 1);
    pool.post_with(named, [] {});
    expected.insert(expected.end(), 2, __LINE__ + 1);  // one task per item
    auto m = pool.map([](int i) { return i; }, std::vector<int>{1, 2});
    pool.wait();
  }
  {
    std::lock_guard lock(sites->mutex);
    CHECK(sites->lines == expected);
    sites->lines.clear();
  }
  {
    auto o = pool_options("nosites", registry, 60s);
    o.observers.push_back(sites);
    o.capture_call_site = false;
    ee::ThreadPoolExecutor pool(1, o);
    pool.submit([] {}).get();
  }
  std::lock_guard lock(sites->mutex);
  CHECK(sites->lines == std::vector<unsigned>{0});
}

namespace {
void nap_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }
}  // namespace

TEST_CASE("a process pool's stuck task is named with its worker's pid and call site",
          "[stuck][watchdog][process]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ProcessPoolOptions o;
  o.max_workers = 1;
  o.max_inflight_per_worker = 1;  // the second task waits in the parent's queue
  o.id = "stuckproc";
  o.registry = registry;
  o.exporter.stuck_after = 100ms;
  ee::ProcessPoolExecutor pool(o);
  pool.submit(&nap_ms, 0).get();  // the worker is up
  Reports reports;
  ee::Watchdog watchdog(reports.options());
  const unsigned line = __LINE__ + 1;
  auto slow = pool.submit_named("nap", &nap_ms, 1500);
  auto next = pool.submit(&nap_ms, 0);
  REQUIRE(ee_test::wait_until([&] { return reports.count() >= 1; }, 5s));
  auto page = ee_test::prom::parse(ee::scrape_text(registry));
  CHECK(metric(page, "executor_tasks_stuck", {{"executor", "stuckproc"}}) == 1);
  CHECK(metric(page, "executor_task_oldest_running_seconds",
               {{"executor", "stuckproc"}, {"task", "nap"}}) >= 0.1);
  CHECK(metric(page, "executor_task_oldest_queued_seconds", {{"executor", "stuckproc"}}) >= 0.1);
  CHECK(unaccounted(page, "stuckproc") == 0);
  {
    std::lock_guard lock(reports.mutex);
    REQUIRE(reports.tasks.size() == 1);
    const ee::StuckTask& t = reports.tasks.front();
    CHECK(t.executor == "stuckproc");
    CHECK(t.task == "nap");
    const auto pids = pool.worker_pids();
    CHECK(std::find(pids.begin(), pids.end(), static_cast<pid_t>(t.pid)) != pids.end());
    CHECK(t.call_site.line() == line);
    CHECK_THAT(reports.lines.front(), Catch::Contains("pid=" + std::to_string(t.pid)));
  }
  slow.get();
  next.get();
}

TEST_CASE("the proxy keeps the call site of each submit", "[stuck]") {
  struct Sites : ee::TaskObserver {
    std::mutex mutex;
    std::vector<unsigned> lines;
    void on_submitted(const ee::TaskInfo& i) noexcept override {
      std::lock_guard lock(mutex);
      lines.push_back(i.call_site.line());
    }
  };
  auto sites = std::make_shared<Sites>();
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ExecutorExporter exporter("siteproxy", "proxy", registry);
  exporter.add_observer(sites);
  std::vector<unsigned> expected;
  {
    ee::InstrumentedExecutorProxy<ee::ThreadPoolExecutor> proxy(std::in_place, std::move(exporter),
                                                                1, std::size_t{1});
    expected.push_back(__LINE__ + 1);
    proxy.submit([] {}).get();
    auto one = [](int) {};
    expected.push_back(__LINE__ + 1);
    proxy.submit_named("n", one, 1).get();
    expected.push_back(__LINE__ + 1);
    proxy.post([] {});
    proxy.shutdown();
  }
  std::lock_guard lock(sites->mutex);
  CHECK(sites->lines == expected);
}
