// ExecutorExporter's manual recording calls "may be called from any thread": a task that
// starts on one thread and finishes on another (an event loop handing work over) counts
// in the busy seconds while it runs, and stops counting when it ends.
#include <executor_exporter/executor_exporter.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "scrape.hpp"

namespace ee = executor_exporter;
namespace prom = ee_test::prom;

namespace {

const prom::Labels kLoop{{"executor", "loop"}};

double busy(const std::shared_ptr<prometheus::Registry>& registry) {
  return prom::metric(ee_test::scrape(registry), "executor_worker_busy_seconds_total", kLoop);
}

double running(const std::shared_ptr<prometheus::Registry>& registry) {
  return prom::metric(ee_test::scrape(registry), "executor_tasks_running", kLoop);
}

// Runs `f` on a thread of its own that stays alive until the returned guard goes: a
// starting thread that had exited would take its shard (and any mark in it) along.
class LiveThread {
 public:
  template <class F>
  explicit LiveThread(F f) {
    std::promise<void> done;
    auto ran = done.get_future();
    thread_ = std::thread([this, f, done = std::move(done)]() mutable {
      f();
      done.set_value();
      release_.get_future().wait();
    });
    ran.wait();
  }
  ~LiveThread() {
    release_.set_value();
    thread_.join();
  }

 private:
  std::promise<void> release_;
  std::thread thread_;
};

}  // namespace

TEST_CASE(
    "manual recording: a task started on one thread and finished on another stops "
    "counting busy time when it ends",
    "[manual][busy]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ExecutorExporter exporter("loop", "event_loop", registry);
  const std::uint64_t submitted = exporter.task_submitted();
  std::uint64_t started = 0;
  LiveThread starter([&] { started = exporter.task_started(submitted); });
  REQUIRE(started != 0);

  // While it runs, its time so far counts, although the thread that started it is idle.
  const double running_1 = busy(registry);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  const double running_2 = busy(registry);
  CHECK(running_2 >= running_1 + 0.05);
  CHECK(running(registry) == 1);

  std::thread([&] { exporter.task_finished(started, true); }).join();
  const double ended_1 = busy(registry);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  const double ended_2 = busy(registry);
  CHECK(ended_2 == ended_1);  // it ended: nothing more accrues
  CHECK(ended_1 >= 0.06);
  CHECK(running(registry) == 0);
  const auto page = ee_test::scrape(registry);
  CHECK(prom::metric(page, "executor_tasks_completed_total", kLoop) == 1);
  CHECK(prom::metric(page, "executor_tasks_submitted_total", kLoop) == 1);
}

TEST_CASE(
    "manual recording: tasks finished on the thread that started them still count while "
    "they run, nested ones too",
    "[manual][busy]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ExecutorExporter exporter("loop", "event_loop", registry);
  const auto outer = exporter.task_started(exporter.task_submitted());
  const auto inner = exporter.task_started(exporter.task_submitted());
  const double b1 = busy(registry);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const double b2 = busy(registry);
  CHECK(b2 >= b1 + 2 * 0.05);  // both run: two tasks' time
  CHECK(running(registry) == 2);
  exporter.task_finished(inner, true);
  exporter.task_finished(outer, false);
  const double e1 = busy(registry);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  CHECK(busy(registry) == e1);
  CHECK(running(registry) == 0);
}

TEST_CASE("manual recording: a moved exporter keeps tracking its running tasks", "[manual][busy]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ExecutorExporter first("loop", "event_loop", registry);
  const auto started = first.task_started(first.task_submitted());
  ee::ExecutorExporter moved(std::move(first));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(busy(registry) >= 0.02);
  moved.task_finished(started, true);
  const double e1 = busy(registry);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  CHECK(busy(registry) == e1);
  CHECK(running(registry) == 0);
}
