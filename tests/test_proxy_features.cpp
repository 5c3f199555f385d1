// InstrumentedExecutorProxy gets the pool's error handling, post() and traced tasks,
// wherever they make sense for an executor it does not own.
#include <executor_exporter/adapters/asio_thread_pool.hpp>
#include <executor_exporter/executor_exporter.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <future>
#include <latch>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "pool_features_metrics.hpp"

namespace ee = executor_exporter;
using ee::adapters::AsioThreadPool;
using pool_test::value;

namespace {

using Proxy = ee::InstrumentedExecutorProxy<AsioThreadPool>;

std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "?";
  }
}

// An executor that accepts every task and destroys it unrun.
struct Dropping {
  std::future<void> submit(std::function<void()> f) {
    f = nullptr;
    std::promise<void> p;
    p.set_value();
    return p.get_future();
  }
  void shutdown() {}
};

}  // namespace

TEST_CASE("a throwing done-callback on a proxy future is counted and handed to the handler",
          "[proxy][proxy_features]") {
  auto reg = std::make_shared<prometheus::Registry>();
  Proxy proxy(AsioThreadPool(2), ee::ExecutorExporter("px", "asio", reg), 2);
  std::mutex m;
  std::vector<std::string> handled;
  std::latch reported(3);
  proxy.set_error_handler([&](std::exception_ptr e) {
    {
      std::lock_guard lock(m);
      handled.push_back(what_of(e));
    }
    reported.count_down();
  });
  std::promise<void> gate;
  auto opened = gate.get_future().share();
  std::vector<ee::Future<int>> fs;
  for (int i = 0; i < 3; ++i) {
    fs.push_back(proxy.submit([opened, i] {
      opened.wait();
      return i;
    }));
    // Registered before the task can finish: runs on an asio thread.
    fs.back().add_done_callback([](const ee::SharedFuture<int>& f) {
      throw std::runtime_error("callback " + std::to_string(f.get()));
    });
  }
  gate.set_value();
  reported.wait();
  for (int i = 0; i < 3; ++i) CHECK(fs[i].get() == i);  // the task's own result is intact
  {
    std::lock_guard lock(m);
    std::sort(handled.begin(), handled.end());
    CHECK(handled == std::vector<std::string>{"callback 0", "callback 1", "callback 2"});
  }
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_callback_errors_total") == 3);
  CHECK(value(fams, "executor_unhandled_errors_total") == 0);
  CHECK(value(fams, "executor_task_run_seconds", {{"result", "completed"}}) == 3);
  // The executor's threads survived: it still runs tasks.
  CHECK(proxy.submit([] { return 7; }).get() == 7);
}

TEST_CASE("a throwing callback without a handler is still counted", "[proxy][proxy_features]") {
  auto reg = std::make_shared<prometheus::Registry>();
  Proxy proxy(AsioThreadPool(1), ee::ExecutorExporter("px", "asio", reg), 1);
  std::promise<void> gate;
  auto opened = gate.get_future().share();
  auto f = proxy.submit([opened] { opened.wait(); });
  std::promise<void> ran;
  f.add_done_callback([&](const ee::SharedFuture<void>&) {
    ran.set_value();
    throw std::runtime_error("nobody listens (expected in the test log)");
  });
  gate.set_value();
  ran.get_future().wait();
  f.get();
  proxy.shutdown();  // joins the asio thread, so the callback (and its count) is done
  CHECK(value(ee::collect(reg), "executor_callback_errors_total") == 1);
}

TEST_CASE("proxy post() runs fire-and-forget tasks and reports their exceptions",
          "[proxy][proxy_features][post]") {
  auto reg = std::make_shared<prometheus::Registry>();
  Proxy proxy(AsioThreadPool(2), ee::ExecutorExporter("px", "asio", reg), 2);
  std::atomic<int> handled{0};
  std::atomic<int> ran{0};
  std::latch done(100);
  proxy.set_error_handler([&](std::exception_ptr e) {
    if (what_of(e) == "posted") handled.fetch_add(1);
    done.count_down();
  });
  for (int i = 0; i < 100; ++i) {
    proxy.post(
        [&](int n) {
          ran.fetch_add(1);
          if (n % 10 == 0) throw std::runtime_error("posted");
          done.count_down();
        },
        i);
  }
  done.wait();
  proxy.shutdown();  // every task has returned: the counts are final
  CHECK(ran.load() == 100);
  CHECK(handled.load() == 10);
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_tasks_submitted_total") == 100);
  CHECK(value(fams, "executor_task_run_seconds", {{"result", "completed"}}) == 90);
  CHECK(value(fams, "executor_task_run_seconds", {{"result", "failed"}}) == 10);
  CHECK(value(fams, "executor_unhandled_errors_total") == 10);
  CHECK(value(fams, "executor_callback_errors_total") == 0);
  CHECK(pool_test::reconciles(fams));
}

TEST_CASE("proxy post() after shutdown throws and counts, and a refused post is freed",
          "[proxy][proxy_features][post]") {
  auto reg = std::make_shared<prometheus::Registry>();
  Proxy proxy(AsioThreadPool(1), ee::ExecutorExporter("px", "asio", reg), 1);
  proxy.shutdown();
  auto held = std::make_shared<int>(0);
  CHECK_THROWS_AS(proxy.post([held] {}), ee::ExecutorShutdownError);
  CHECK(held.use_count() == 1);  // the callable did not leak
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_tasks_rejected_total", {{"reason", "shutdown"}}) == 1);
  CHECK(value(fams, "executor_tasks_submitted_total") == 0);
}

TEST_CASE("posted tasks the executor drops count as cancelled, not as errors",
          "[proxy][proxy_features][post]") {
  auto reg = std::make_shared<prometheus::Registry>();
  std::atomic<int> handled{0};
  std::atomic<int> ran{0};
  {
    ee::InstrumentedExecutorProxy<Dropping> proxy(Dropping{}, ee::ExecutorExporter("d", "x", reg),
                                                  1);
    proxy.set_error_handler([&](std::exception_ptr) { handled.fetch_add(1); });
    for (int i = 0; i < 4; ++i) proxy.post([&] { ran.fetch_add(1); });
  }
  CHECK(ran.load() == 0);
  CHECK(handled.load() == 0);
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_tasks_submitted_total") == 4);
  CHECK(value(fams, "executor_tasks_cancelled_total") == 4);
  CHECK(value(fams, "executor_unhandled_errors_total") == 0);
  CHECK(pool_test::reconciles(fams));
}

TEST_CASE("posted tasks cancelled by shutdown(cancel_futures) on asio count as cancelled",
          "[proxy][proxy_features][post]") {
  auto reg = std::make_shared<prometheus::Registry>();
  std::promise<void> gate;
  auto opened = gate.get_future().share();
  std::promise<void> started;
  std::atomic<int> ran{0};
  {
    Proxy proxy(AsioThreadPool(1), ee::ExecutorExporter("px", "asio", reg), 1);
    proxy.post([&] {
      started.set_value();
      opened.wait();
    });
    started.get_future().wait();
    for (int i = 0; i < 3; ++i) proxy.post([&] { ran.fetch_add(1); });
    proxy.shutdown(/*wait=*/false, /*cancel_futures=*/true);
    gate.set_value();
  }
  CHECK(ran.load() == 0);
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_tasks_submitted_total") == 4);
  CHECK(value(fams, "executor_tasks_cancelled_total") == 3);
  CHECK(value(fams, "executor_task_run_seconds", {{"result", "completed"}}) == 1);
  CHECK(pool_test::reconciles(fams));
}

TEST_CASE("proxy submit_traced records each mark", "[proxy][proxy_features][traced]") {
  auto reg = std::make_shared<prometheus::Registry>();
  Proxy proxy(AsioThreadPool(2), ee::ExecutorExporter("px", "asio", reg), 2);
  std::vector<ee::Future<int>> fs;
  for (int i = 0; i < 10; ++i) {
    fs.push_back(proxy.submit_traced(
        "resize",
        [](ee::Trace& t, int n) {
          t.mark("decode");
          t.mark("scale");
          return n * 2;
        },
        i));
  }
  for (int i = 0; i < 10; ++i) CHECK(fs[i].get() == 2 * i);
  auto fams = ee::collect(reg);
  CHECK(value(fams, "executor_task_trace_seconds", {{"scope", "resize"}, {"action", "decode"}}) ==
        10);
  CHECK(value(fams, "executor_task_trace_seconds", {{"scope", "resize"}, {"action", "scale"}}) ==
        10);
  CHECK(value(fams, "executor_tasks_submitted_total") == 10);
}

TEST_CASE("proxy submit_traced honours summary trace options", "[proxy][proxy_features][traced]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::TraceOptions trace;
  trace.summary = true;
  Proxy proxy(AsioThreadPool(1), ee::ExecutorExporter("px", "asio", reg), 1, trace);
  proxy.submit_traced("s", [](ee::Trace& t) { t.mark("a"); }).get();
  auto fams = ee::collect(reg);
  bool summary = false;
  for (const auto& f : fams) {
    if (f.name == "executor_task_trace_seconds") summary = f.type == prometheus::MetricType::Summary;
  }
  CHECK(summary);
  CHECK(value(fams, "executor_task_trace_seconds", {{"scope", "s"}, {"action", "a"}}) == 1);
}
