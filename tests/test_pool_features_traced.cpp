// Traced tasks: submit_traced + Trace::mark.
#include <catch2/catch.hpp>

#include <chrono>
#include <thread>
#include <utility>
#include <vector>

#include "pool_features_metrics.hpp"

namespace ee = executor_exporter;
using pool_test::value;

TEST_CASE("marks land in executor_task_trace_seconds by scope and action",
          "[pool_features][traced]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, pool_test::options(reg));
  auto f = pool.submit_traced(
      "import",
      [](ee::Trace& trace, int n) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        const double first = trace.mark("fetch");
        trace.mark("parse");
        // Checked on the test thread: Catch assertions are not thread-safe.
        return std::pair(first > 0 && trace.scope() == "import", n);
      },
      4);
  CHECK(f.get() == std::pair(true, 4));
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_task_trace_seconds", {{"scope", "import"}, {"action", "fetch"}}) == 1);
  CHECK(value(fams, "executor_task_trace_seconds", {{"scope", "import"}, {"action", "parse"}}) == 1);
  CHECK(ee_test::prom::metric(pool_test::page_of(fams), "executor_task_trace_seconds",
                              {{"scope", "import"}, {"action", "fetch"}}, "_sum") >= 0.002);
  // The traced task is an ordinary task for the other metrics.
  CHECK(value(fams, "executor_task_run_seconds", {{"result", "completed"}}) == 1);
}

TEST_CASE("marks from many workers at once stay exact", "[pool_features][traced]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(4, pool_test::options(reg));
  std::vector<ee::Future<void>> fs;
  for (int i = 0; i < 200; ++i) {
    fs.push_back(pool.submit_traced("s", [](ee::Trace& t) {
      for (int k = 0; k < 5; ++k) t.mark(k % 2 ? "odd" : "even");
    }));
  }
  for (auto& f : fs) f.get();
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_task_trace_seconds", {{"scope", "s"}, {"action", "even"}}) == 600);
  CHECK(value(fams, "executor_task_trace_seconds", {{"scope", "s"}, {"action", "odd"}}) == 400);
}

TEST_CASE("a summary is exported when asked for", "[pool_features][traced]") {
  auto reg = std::make_shared<prometheus::Registry>();
  auto o = pool_test::options(reg);
  o.trace.summary = true;
  ee::ThreadPoolExecutor pool(1, o);
  pool.submit_traced("t", [](ee::Trace& t) { t.mark("a"); }).get();
  auto fams = ee::collect(reg);
  const auto page = pool_test::page_of(fams);
  const auto* fam = page.family("executor_task_trace_seconds");
  REQUIRE(fam != nullptr);
  CHECK(fam->type == "summary");
  CHECK(value(fams, "executor_task_trace_seconds", {{"scope", "t"}, {"action", "a"}}) == 1);
  CHECK(ee_test::prom::count(page, "executor_task_trace_seconds", {{"action", "a"}}) == 3);

  // One name, one type per registry: a histogram-tracing pool fails at its first mark.
  ee::ThreadPoolExecutor other(1, pool_test::options(reg, "other"));
  CHECK_THROWS_AS(other.submit_traced("t", [](ee::Trace& t) { t.mark("a"); }).get(),
                  std::invalid_argument);
}
