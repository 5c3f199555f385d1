// MetricsPusher against the real Prometheus Pushgateway (Debian's prometheus-pushgateway),
// started once for this test on a free loopback port: interval pushes of exact values,
// grouping labels that survive any value, the final push of a batch job, and failures
// that are reported instead of lost.
#include <executor_exporter/executor_exporter.hpp>
#include <executor_exporter/metrics/metrics_pusher.hpp>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "free_port.hpp"
#include "http_client.hpp"
#include "prom_text.hpp"
#include "subprocess.hpp"
#include "wait_until.hpp"

using namespace std::chrono_literals;
namespace ee = executor_exporter;
namespace prom = ee_test::prom;

namespace {

// One Pushgateway for every section of this test case.
struct Pushgateway {
  int port = ee_test::free_tcp_port();
  std::unique_ptr<ee_test::Subprocess> process;

  Pushgateway() {
    const std::string binary = EE_PUSHGATEWAY;
    if (binary.empty() || ::access(binary.c_str(), X_OK) != 0) {
      throw std::runtime_error(
          "prometheus-pushgateway was not found when the build was configured; run "
          "scripts/install-deps.sh and re-run CMake");
    }
    // No persistence file: Debian's default path belongs to the system's own instance.
    process = std::make_unique<ee_test::Subprocess>(
        std::vector<std::string>{binary, "--web.listen-address=127.0.0.1:" + std::to_string(port),
                                 "--persistence.file=", "--log.level=warn"});
    const bool ready = ee_test::wait_until(
        [&] {
          try {
            return ee_test::http_get("127.0.0.1", port, "/-/ready", 1s).status == 200;
          } catch (const std::exception&) {
            return false;
          }
        },
        15s);
    if (!ready) {
      throw std::runtime_error("the Pushgateway did not become ready: " + process->stderr_text());
    }
  }

  prom::Page page() const {
    const auto r = ee_test::http_get("127.0.0.1", port, "/metrics", 5s);
    if (r.status != 200) throw std::runtime_error("Pushgateway /metrics: " + r.reason);
    return prom::parse(r.body);
  }
};

Pushgateway& pushgateway() {
  static Pushgateway instance;
  return instance;
}

// The pushed value, or -1 while nothing was pushed.
double pushed(const prom::Page& page, std::string_view family, const prom::Labels& labels) {
  return page.family(family) != nullptr && prom::has(page, family, labels)
             ? prom::metric(page, family, labels)
             : -1;
}

}  // namespace

TEST_CASE("MetricsPusher pushes exact values to a real Pushgateway", "[pushgateway][e2e]") {
  auto& gateway = pushgateway();
  const auto port = static_cast<std::uint16_t>(gateway.port);
  auto registry = std::make_shared<prometheus::Registry>();

  SECTION("on an interval, grouped by labels of any value") {
    // A value no URL path segment could carry as it is.
    const std::string instance = "host/1 ü?#%";
    ee::MetricsPusher pusher({.port = port,
                              .job = "nightly-batch",
                              .grouping = {{"instance", instance}},
                              .registry = registry,
                              .interval = 50ms});
    ee::ThreadPoolOptions o;
    o.registry = registry;
    o.id = "batch-pool";
    ee::ThreadPoolExecutor pool(2, o);
    std::vector<ee::Future<void>> done;
    for (int i = 0; i < 300; ++i) done.push_back(pool.submit([] {}));
    for (int i = 0; i < 3; ++i) done.push_back(pool.submit([] { throw std::logic_error("x"); }));
    for (auto& f : done) f.wait();

    const prom::Labels group = {
        {"job", "nightly-batch"}, {"instance", instance}, {"executor", "batch-pool"}};
    prom::Page page;
    REQUIRE(ee_test::wait_until(
        [&] {
          page = gateway.page();
          return pushed(page, "executor_tasks_completed_total", group) == 300;
        },
        10s));
    CHECK(prom::metric(page, "executor_tasks_failed_total", group) == 3);
    CHECK(prom::metric(page, "executor_tasks_submitted_total", group) == 303);
    CHECK(prom::sum(page, "executor_task_run_seconds_count", group) == 303);
    CHECK(prom::metric(page, "executor_tasks_queued", group) == 0);
    CHECK(prom::metric(page, "executor_tasks_running", group) == 0);
    CHECK(prom::metric(page, "executor_workers", group) == 2);
    CHECK(pusher.stats().pushes > 0);
    CHECK(pusher.stats().failures == 0);
  }

  SECTION("a batch job's last counts arrive with the final push") {
    {
      // Declared first, destroyed last: its final push sees every task.
      ee::MetricsPusher pusher(
          {.port = port, .job = "final", .registry = registry, .interval = 0ms});
      ee::ThreadPoolOptions o;
      o.registry = registry;
      o.id = "short-job";
      ee::ThreadPoolExecutor pool(2, o);
      for (int i = 0; i < 100; ++i) (void)pool.submit([] {});
      pool.shutdown(true);
      CHECK(pusher.stats().pushes == 0);
      CHECK(pushed(gateway.page(), "executor_tasks_completed_total",
                   {{"job", "final"}, {"executor", "short-job"}}) == -1);
    }
    const auto page = gateway.page();
    CHECK(prom::metric(page, "executor_tasks_completed_total",
                       {{"job", "final"}, {"executor", "short-job"}}) == 100);
  }

  SECTION("a push that fails says why and is reported, never thrown from the destructor") {
    const auto nobody = static_cast<std::uint16_t>(ee_test::free_tcp_port());
    int reported = 0;
    {
      ee::MetricsPusher pusher({.port = nobody,
                                .registry = registry,
                                .interval = 0ms,
                                .on_error = [&](std::exception_ptr e) {
                                  ++reported;
                                  CHECK_THROWS_AS(std::rethrow_exception(e), ee::PushError);
                                }});
      CHECK_THROWS_WITH(
          pusher.push(),
          Catch::Contains("cannot reach the Pushgateway at 127.0.0.1:" + std::to_string(nobody)));
      CHECK(pusher.stats().failures == 1);
    }
    CHECK(reported == 1);
  }

  SECTION("job names and grouping labels that cannot be sent are refused") {
    CHECK_THROWS_AS(ee::MetricsPusher({.port = port, .job = "a/b", .registry = registry}),
                    std::invalid_argument);
    CHECK_THROWS_AS(ee::MetricsPusher({.port = port, .job = "", .registry = registry}),
                    std::invalid_argument);
    CHECK_THROWS_AS(
        ee::MetricsPusher({.port = port, .grouping = {{"bad-name", "x"}}, .registry = registry}),
        std::invalid_argument);
    CHECK_THROWS_AS(
        ee::MetricsPusher({.port = port, .grouping = {{"job", "x"}}, .registry = registry}),
        std::invalid_argument);
  }
}
