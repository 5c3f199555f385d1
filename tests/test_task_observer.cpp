// Task observers: every transition of every task reaches them, once, with one id per
// task, after the metrics already count it.
#include <executor_exporter/adapters/asio_thread_pool.hpp>
#include <executor_exporter/executor_exporter.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "scrape.hpp"

namespace ee = executor_exporter;
namespace prom = ee_test::prom;

namespace {

struct Event {
  std::string kind;
  std::string task;
  std::uint64_t id = 0;
  std::uint64_t submit_ns = 0, start_ns = 0, end_ns = 0, count = 0;
  std::string error;  // what() of a failed task's exception
  std::string reason;
};

// Records every hook call; thread-safe, as hooks run on submitters and workers.
class Recording final : public ee::TaskObserver {
 public:
  void on_submitted(const ee::TaskInfo& t) noexcept override { add("submitted", t); }
  void on_rejected(const ee::TaskInfo& t, ee::RejectReason r) noexcept override {
    add("rejected", t, {},
        r == ee::RejectReason::shutdown     ? "shutdown"
        : r == ee::RejectReason::queue_full ? "queue_full"
                                            : "other");
  }
  void on_started(const ee::TaskInfo& t) noexcept override { add("started", t); }
  void on_finished(const ee::TaskInfo& t, std::exception_ptr error) noexcept override {
    std::string what;
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
        what = "?";
      }
    }
    add(error ? "failed" : "completed", t, what);
  }
  void on_cancelled(const ee::TaskInfo& t) noexcept override { add("cancelled", t); }
  void on_expired(const ee::TaskInfo& t) noexcept override { add("expired", t); }
  void on_worker_started(const ee::WorkerInfo& w) noexcept override {
    std::lock_guard lock(mutex_);
    ++workers_started;
    executor_seen = std::string(w.executor);
  }
  void on_worker_stopped(const ee::WorkerInfo&) noexcept override {
    std::lock_guard lock(mutex_);
    ++workers_stopped;
  }

  std::vector<Event> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }
  std::size_t count(const std::string& kind) const {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(std::count_if(events_.begin(), events_.end(),
                                                  [&](const Event& e) { return e.kind == kind; }));
  }
  int started_workers() const {
    std::lock_guard lock(mutex_);
    return workers_started;
  }
  int stopped_workers() const {
    std::lock_guard lock(mutex_);
    return workers_stopped;
  }
  std::string executor() const {
    std::lock_guard lock(mutex_);
    return executor_seen;
  }

 private:
  void add(const char* kind, const ee::TaskInfo& t, std::string error = {},
           std::string reason = {}) {
    std::lock_guard lock(mutex_);
    events_.push_back({kind, std::string(t.task), t.task_id, t.submit_ns, t.start_ns, t.end_ns,
                       t.count, std::move(error), std::move(reason)});
  }

  mutable std::mutex mutex_;
  std::vector<Event> events_;
  int workers_started = 0;
  int workers_stopped = 0;
  std::string executor_seen;
};

// The events of each task id, in the order they arrived.
std::map<std::uint64_t, std::vector<Event>> by_id(const std::vector<Event>& events) {
  std::map<std::uint64_t, std::vector<Event>> out;
  for (const auto& e : events) out[e.id].push_back(e);
  return out;
}

template <class Pred>
bool eventually(Pred pred) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace

TEST_CASE("an observed thread pool reports each task's submit, start and end under one id",
          "[observer]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto recording = std::make_shared<Recording>();
  ee::ThreadPoolOptions options;
  options.id = "observed";
  options.registry = registry;
  options.observers.push_back(recording);
  ee::ThreadPoolExecutor pool(2, options);
  REQUIRE(eventually([&] { return recording->started_workers() == 2; }));
  CHECK(recording->executor() == "observed");

  std::vector<ee::Future<int>> futures;
  for (int i = 0; i < 20; ++i) futures.push_back(pool.submit([i] { return i; }));
  auto named = pool.submit_named("resize", [] { return 7; });
  auto failing = pool.submit([]() -> int { throw std::runtime_error("disk full"); });
  pool.post([] {});
  pool.wait();

  const auto tasks = by_id(recording->events());
  REQUIRE(tasks.size() == 23);
  CHECK(tasks.count(0) == 0);  // every task observed from its submit has an id
  for (const auto& [id, events] : tasks) {
    INFO("task " << id);
    REQUIRE(events.size() == 3);
    CHECK(events[0].kind == "submitted");
    CHECK(events[1].kind == "started");
    CHECK((events[2].kind == "completed" || events[2].kind == "failed"));
    const Event& end = events[2];
    CHECK(end.submit_ns != 0);
    CHECK(end.submit_ns <= end.start_ns);
    CHECK(end.start_ns <= end.end_ns);
    CHECK(end.count == 1);
  }
  CHECK(recording->count("failed") == 1);
  for (const auto& e : recording->events()) {
    if (e.kind == "failed") CHECK(e.error == "disk full");
    if (e.task == "resize")
      CHECK((e.kind == "submitted" || e.kind == "started" || e.kind == "completed"));
  }
  CHECK(recording->count("completed") == 22);
  (void)failing;
  (void)named;

  // The metrics count what the observer saw.
  const auto page = ee_test::scrape(registry);
  CHECK(prom::sum(page, "executor_tasks_completed_total", {{"executor", "observed"}}) == 22);
  CHECK(prom::value(page, "executor_tasks_completed_total",
                    {{"executor", "observed"}, {"task", "resize"}}) == 1);
  CHECK(prom::sum(page, "executor_tasks_failed_total", {{"executor", "observed"}}) == 1);

  pool.shutdown();
  CHECK(recording->stopped_workers() == 2);
}

TEST_CASE("rejections, cancellations and expirations reach observers", "[observer]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto recording = std::make_shared<Recording>();
  ee::ThreadPoolOptions options;
  options.id = "refusing";
  options.registry = registry;
  options.queue_capacity = 2;
  options.on_full = ee::QueueFullPolicy::reject;
  ee::ThreadPoolExecutor pool(1, options);
  pool.add_observer(recording);

  std::latch release(1);
  std::latch running(1);
  auto blocker = pool.submit([&] {
    running.count_down();
    release.wait();
  });
  running.wait();
  auto queued = pool.submit([] {});
  ee::SubmitOptions late;
  late.deadline = std::chrono::steady_clock::now();  // passed before a worker reaches it
  auto expiring = pool.submit_with(late, [] {});
  CHECK_THROWS_AS(pool.submit([] {}), ee::QueueFullError);
  CHECK(queued.cancel());
  release.count_down();
  pool.wait();
  pool.shutdown();
  CHECK_THROWS_AS(pool.submit([] {}), ee::ExecutorShutdownError);

  CHECK(recording->count("cancelled") == 1);
  CHECK(recording->count("expired") == 1);
  CHECK(recording->count("rejected") == 2);
  std::set<std::string> reasons;
  for (const auto& e : recording->events()) {
    if (e.kind == "rejected") reasons.insert(e.reason);
  }
  CHECK(reasons == std::set<std::string>{"queue_full", "shutdown"});
  // The cancelled and the expired task carry the ids they were submitted under.
  const auto tasks = by_id(recording->events());
  for (const auto& e : recording->events()) {
    if (e.kind == "cancelled" || e.kind == "expired") {
      REQUIRE(e.id != 0);
      CHECK(tasks.at(e.id).front().kind == "submitted");
    }
  }
  (void)blocker;
  (void)expiring;
}

TEST_CASE("a removed observer is called no more, and the proxy and the process pool report too",
          "[observer]") {
  auto registry = std::make_shared<prometheus::Registry>();

  SECTION("thread pool: remove_observer") {
    auto recording = std::make_shared<Recording>();
    ee::ThreadPoolOptions options;
    options.id = "removed";
    options.registry = registry;
    ee::ThreadPoolExecutor pool(1, options);
    pool.add_observer(recording);
    pool.submit([] {}).get();
    pool.wait();
    pool.remove_observer(recording.get());
    const auto seen = recording->events().size();
    pool.submit([] {}).get();
    pool.wait();
    CHECK(seen == 3);
    CHECK(recording->events().size() == seen);
  }

  SECTION("proxy: submitted is reported before started, a throw as failed") {
    auto recording = std::make_shared<Recording>();
    ee::InstrumentedExecutorProxy<ee::adapters::AsioThreadPool> proxy(
        ee::adapters::AsioThreadPool(2), ee::ExecutorExporter("proxied", "asio", registry), 2);
    proxy.add_observer(recording);
    std::vector<ee::Future<int>> futures;
    for (int i = 0; i < 50; ++i) futures.push_back(proxy.submit([i] { return i; }));
    auto named = proxy.submit_named("thumb", [] { return 1; });
    auto bad = proxy.submit([]() -> int { throw std::logic_error("bad input"); });
    for (auto& f : futures) (void)f.get();
    CHECK(named.get() == 1);
    CHECK_THROWS_AS(bad.get(), std::logic_error);
    proxy.shutdown();
    const auto tasks = by_id(recording->events());
    REQUIRE(tasks.size() == 52);
    for (const auto& [id, events] : tasks) {
      REQUIRE(events.size() == 3);
      CHECK(events[1].kind == "started");
      CHECK(events[2].end_ns >= events[2].start_ns);
    }
    CHECK(recording->count("failed") == 1);
    const auto page = ee_test::scrape(registry);
    CHECK(prom::value(page, "executor_tasks_submitted_total",
                      {{"executor", "proxied"}, {"task", "thumb"}}) == 1);
    const prom::Labels px{{"executor", "proxied"}};
    CHECK(prom::sum(page, "executor_tasks_submitted_total", px) == 52);
    CHECK(prom::sum(page, "executor_tasks_completed_total", px) == 51);
    CHECK(prom::sum(page, "executor_tasks_failed_total", px) == 1);
    CHECK(prom::sum(page, "executor_tasks_queued", px) == 0);
    CHECK(prom::sum(page, "executor_tasks_running", px) == 0);
  }

  SECTION("process pool: start and end arrive with the result") {
    auto recording = std::make_shared<Recording>();
    ee::ProcessPoolOptions options;
    options.max_workers = 1;
    options.id = "forked";
    options.registry = registry;
    options.thread_check = ee::ThreadCheck::allow;
    options.observers.push_back(recording);
    ee::ProcessPoolExecutor pool(options);
    auto f = pool.submit(
        +[](int x) { return x * 2; }, 21);
    CHECK(f.get() == 42);
    REQUIRE(eventually([&] { return recording->count("completed") == 1; }));
    CHECK(recording->started_workers() == 1);
    CHECK(recording->count("submitted") == 1);
    CHECK(recording->count("started") == 1);
    const auto tasks = by_id(recording->events());
    REQUIRE(tasks.size() == 1);
    CHECK(tasks.begin()->first != 0);
  }
}

TEST_CASE("every catalog row has series in the registry, and every family a catalog row",
          "[observer][catalog]") {
  auto registry = std::make_shared<prometheus::Registry>();
  {
    // Sink families have series once a stream has a sink.
    class Sink : public ee::EventSink {
     public:
      std::string name() const override { return "catalog_sink"; }
      void write(std::span<const ee::TaskEvent>) override {}
    };
    auto stream = std::make_shared<ee::EventStream>(ee::EventStreamOptions{.registry = registry});
    stream->add_sink(std::make_shared<Sink>());
    ee::ThreadPoolOptions options;
    options.id = "catalog";
    options.registry = registry;
    ee::ThreadPoolExecutor pool(1, options);
    pool.submit_traced("scope", [](ee::Trace& trace) { trace.mark("step"); }).get();
    pool.submit_named("named", [] {}).get();
    ee::ProcessPoolOptions process;
    process.max_workers = 1;
    process.id = "catalog_processes";
    process.registry = registry;
    process.thread_check = ee::ThreadCheck::allow;
    ee::ProcessPoolExecutor processes(process);
    CHECK(processes.submit(+[] { return 1; }).get() == 1);
    const auto families = ee::collect(registry);
    std::set<std::string> with_series;
    for (const auto& f : families) {
      INFO(f.name);
      CHECK(std::any_of(ee::metric_catalog.begin(), ee::metric_catalog.end(),
                        [&](const ee::MetricSpec& s) { return s.name == f.name; }));
      if (!f.metric.empty()) with_series.insert(f.name);
    }
    for (const auto& s : ee::metric_catalog) {
      INFO(s.name);
      CHECK(with_series.count(std::string(s.name)) == 1);
    }
  }
}

TEST_CASE("tasks recorded by hand reach observers without an id, at every event", "[observer]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto recording = std::make_shared<Recording>();
  ee::ExecutorExporter exporter("manual", "event_loop", registry);
  exporter.add_observer(recording);
  const auto submitted = exporter.task_submitted();
  const auto started = exporter.task_started(submitted);
  exporter.task_finished(started, true);
  const auto events = recording->events();
  REQUIRE(events.size() == 3);
  for (const auto& e : events) CHECK(e.id == 0);
  CHECK(events[2].kind == "completed");
}
