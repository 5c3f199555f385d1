// The event stream: every transition of every task, as plain events delivered to sinks on
// their own threads, filtered, bounded, and isolated from sinks that are slow or throw.
#include <executor_exporter/events/event_stream.hpp>
#include <executor_exporter/executor_exporter.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "scrape.hpp"
#include "wait_until.hpp"

using namespace std::chrono_literals;
namespace ee = executor_exporter;
namespace prom = ee_test::prom;

namespace {

// Keeps every event it is given.
class Recording : public ee::EventSink {
 public:
  explicit Recording(std::string name = "recording") : name_(std::move(name)) {}
  std::string name() const override { return name_; }
  void write(std::span<const ee::TaskEvent> events) override {
    std::lock_guard lock(mutex_);
    events_.insert(events_.end(), events.begin(), events.end());
    writer_ = std::this_thread::get_id();
  }
  std::vector<ee::TaskEvent> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }
  std::vector<ee::TaskEvent> of(ee::EventKind kind) const {
    std::vector<ee::TaskEvent> out;
    for (const auto& e : events()) {
      if (e.kind == kind) out.push_back(e);
    }
    return out;
  }
  std::thread::id writer() const {
    std::lock_guard lock(mutex_);
    return writer_;
  }

 private:
  std::string name_;
  mutable std::mutex mutex_;
  std::vector<ee::TaskEvent> events_;
  std::thread::id writer_;
};

std::uint64_t unix_now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

}  // namespace

TEST_CASE("a thread pool's tasks and workers become events with their times and errors",
          "[events]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto stream = std::make_shared<ee::EventStream>(ee::EventStreamOptions{.registry = registry});
  auto sink = std::make_shared<Recording>();
  stream->add_sink(sink);
  const auto before = unix_now_ns();
  {
    ee::ThreadPoolOptions o;
    o.registry = registry;
    o.id = "evented";
    o.observers.push_back(stream);
    ee::ThreadPoolExecutor pool(1, o);
    pool.submit_named("resize", [] { std::this_thread::sleep_for(2ms); }).get();
    auto failing = pool.submit([] { throw std::out_of_range("no such image"); });
    CHECK_THROWS_AS(failing.get(), std::out_of_range);
    pool.shutdown();
    CHECK_THROWS_AS(pool.submit([] {}), ee::ExecutorShutdownError);
  }
  REQUIRE(stream->flush());
  const auto after = unix_now_ns();

  CHECK(sink->writer() != std::this_thread::get_id());
  const auto submitted = sink->of(ee::EventKind::submitted);
  REQUIRE(submitted.size() == 2);
  const auto completed = sink->of(ee::EventKind::completed);
  REQUIRE(completed.size() == 1);
  const auto& done = completed.front();
  CHECK(done.executor == "evented");
  CHECK(done.executor_type == "thread_pool");
  CHECK(done.task == "resize");
  CHECK(done.task_id != 0);
  CHECK(done.task_id == submitted.front().task_id);
  CHECK(done.run_ns >= 2'000'000);
  CHECK(done.submitted_unix_ns >= before - 1'000'000);  // clock conversion: within 1 ms
  CHECK(done.submitted_unix_ns <= done.started_unix_ns);
  CHECK(done.started_unix_ns <= done.finished_unix_ns);
  CHECK(done.finished_unix_ns <= after + 1'000'000);

  const auto failed = sink->of(ee::EventKind::failed);
  REQUIRE(failed.size() == 1);
  CHECK(failed.front().error_type == "std::out_of_range");
  CHECK(failed.front().error_message == "no such image");
  CHECK(failed.front().task.empty());

  const auto rejected = sink->of(ee::EventKind::rejected);
  REQUIRE(rejected.size() == 1);
  CHECK(rejected.front().reason == "shutdown");

  CHECK(sink->of(ee::EventKind::started).size() == 2);
  CHECK(sink->of(ee::EventKind::worker_started).size() == 1);
  CHECK(sink->of(ee::EventKind::worker_stopped).size() == 1);
  // Every event reached the sink, and the page says so.
  const auto page = ee_test::scrape(registry);
  CHECK(prom::metric(page, "executor_events_total", {{"sink", "recording"}}) ==
        static_cast<double>(sink->events().size()));
  CHECK(prom::metric(page, "executor_events_dropped_total", {{"sink", "recording"}}) == 0);
}

TEST_CASE("the proxy and the process pool feed the same stream", "[events]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto stream = std::make_shared<ee::EventStream>(ee::EventStreamOptions{.registry = registry});
  auto sink = std::make_shared<Recording>();
  stream->add_sink(sink);
  {
    ee::ProcessPoolOptions o;
    o.max_workers = 1;
    o.id = "processes";
    o.registry = registry;
    o.thread_check = ee::ThreadCheck::allow;
    o.observers.push_back(stream);
    ee::ProcessPoolExecutor pool(o);
    CHECK(pool.submit(
                  +[](int x) { return x + 1; }, 41)
              .get() == 42);
  }
  {
    ee::InstrumentedExecutorProxy<ee::ThreadPoolExecutor> proxy(
        std::in_place, ee::make_exporter_for<ee::ThreadPoolExecutor>("proxied", registry), 1,
        std::size_t{1});
    proxy.add_observer(stream);
    proxy.submit([] {}).get();
  }
  REQUIRE(stream->flush());
  std::map<std::string, int> completed;
  for (const auto& e : sink->of(ee::EventKind::completed)) ++completed[e.executor];
  CHECK(completed["processes"] == 1);
  CHECK(completed["proxied"] == 1);
}

TEST_CASE("each sink gets only the events its filter selects", "[events]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto stream = std::make_shared<ee::EventStream>(ee::EventStreamOptions{.registry = registry});
  auto failures = std::make_shared<Recording>("failures");
  auto billing = std::make_shared<Recording>("billing");
  auto one_pool = std::make_shared<Recording>("one_pool");
  stream->add_sink(failures, {.kinds = {ee::EventKind::failed}});
  stream->add_sink(billing, {.kinds = {ee::EventKind::completed}, .tasks = {"charge"}});
  stream->add_sink(one_pool, {.executors = {"a"}});
  CHECK_THROWS_AS(stream->add_sink(std::make_shared<Recording>("billing")), std::invalid_argument);
  ee::ThreadPoolOptions oa, ob;
  oa.registry = ob.registry = registry;
  oa.id = "a";
  ob.id = "b";
  oa.observers = ob.observers = {stream};
  ee::ThreadPoolExecutor a(1, oa), b(1, ob);
  a.submit_named("charge", [] {}).get();
  b.submit_named("charge", [] {}).get();
  b.submit_named("refund", [] {}).get();
  b.submit([] { throw std::runtime_error("x"); }).wait();
  REQUIRE(stream->flush());
  CHECK(failures->events().size() == 1);
  CHECK(billing->events().size() == 2);
  for (const auto& e : one_pool->events()) CHECK(e.executor == "a");
  CHECK(one_pool->of(ee::EventKind::completed).size() == 1);
}

TEST_CASE("a slow sink drops its oldest events, counted, and never blocks the pool", "[events]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto stream = std::make_shared<ee::EventStream>(
      ee::EventStreamOptions{.buffer_capacity = 100, .max_batch = 10, .registry = registry});
  // Blocks in its first write until released.
  class Stuck : public Recording {
   public:
    Stuck() : Recording("stuck") {}
    std::promise<void> release;
    std::shared_future<void> gate = release.get_future().share();
    void write(std::span<const ee::TaskEvent> events) override {
      gate.wait();
      Recording::write(events);
    }
  };
  auto stuck = std::make_shared<Stuck>();
  auto quick = std::make_shared<Recording>("quick");
  stream->add_sink(stuck, {.kinds = {ee::EventKind::submitted}});
  stream->add_sink(quick, {.kinds = {ee::EventKind::submitted}});
  ee::ThreadPoolOptions o;
  o.registry = registry;
  o.id = "busy";
  o.observers.push_back(stream);
  ee::ThreadPoolExecutor pool(2, o);
  std::vector<ee::Future<int>> fs;
  for (int i = 0; i < 5000; ++i) fs.push_back(pool.submit([i] { return i; }));
  for (auto& f : fs) (void)f.get();  // the pool finished although a sink is stuck
  stuck->release.set_value();
  REQUIRE(stream->flush());
  const auto page = ee_test::scrape(registry);
  const double dropped = prom::metric(page, "executor_events_dropped_total", {{"sink", "stuck"}});
  const double delivered = prom::metric(page, "executor_events_total", {{"sink", "stuck"}});
  CHECK(dropped > 0);
  CHECK(dropped + delivered == 5000);
  CHECK(delivered == static_cast<double>(stuck->events().size()));
  // The oldest went: the last event submitted is among those kept.
  const auto kept = stuck->events();
  REQUIRE_FALSE(kept.empty());
  const auto last_id = std::max_element(kept.begin(), kept.end(), [](const auto& x, const auto& y) {
                         return x.task_id < y.task_id;
                       })->task_id;
  // Both keep the newest; the quick sink, with the same small buffer, may drop too, but
  // accounts for every event as well.
  CHECK(last_id == quick->events().back().task_id);
  CHECK(prom::metric(page, "executor_events_dropped_total", {{"sink", "quick"}}) +
            static_cast<double>(quick->events().size()) ==
        5000);
  CHECK(stuck->events().size() <= 100 + 10);  // what the buffer and one batch held
}

TEST_CASE("a sink that throws is counted and reported, and keeps receiving", "[events]") {
  auto registry = std::make_shared<prometheus::Registry>();
  std::atomic<int> reported{0};
  auto stream = std::make_shared<ee::EventStream>(ee::EventStreamOptions{
      .max_batch = 1, .registry = registry, .on_error = [&](std::exception_ptr e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::runtime_error&) {
          ++reported;
        }
      }});
  class Flaky : public Recording {
   public:
    Flaky() : Recording("flaky") {}
    int calls = 0;  // the sink's thread only
    void write(std::span<const ee::TaskEvent> events) override {
      if (++calls % 2 == 1) throw std::runtime_error("disk full");
      Recording::write(events);
    }
  };
  auto flaky = std::make_shared<Flaky>();
  auto other = std::make_shared<Recording>("other");
  const ee::EventFilter submits{.kinds = {ee::EventKind::submitted}};
  stream->add_sink(flaky, submits);
  stream->add_sink(other, submits);
  ee::ThreadPoolOptions o;
  o.registry = registry;
  o.observers.push_back(stream);
  ee::ThreadPoolExecutor pool(1, o);
  for (int i = 0; i < 10; ++i) pool.submit([] {}).get();
  REQUIRE(stream->flush());
  CHECK(reported == 5);
  CHECK(flaky->events().size() == 5);
  CHECK(other->events().size() == 10);
  CHECK(prom::metric(ee_test::scrape(registry), "executor_event_sink_errors_total",
                     {{"sink", "flaky"}}) == 5);
}

TEST_CASE("a TaskDescription in scope at submit travels on the submitted event", "[events]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto stream = std::make_shared<ee::EventStream>(ee::EventStreamOptions{.registry = registry});
  auto sink = std::make_shared<Recording>();
  stream->add_sink(sink);
  {
    ee::ThreadPoolOptions o;
    o.registry = registry;
    o.id = "threads";
    o.observers.push_back(stream);
    ee::ThreadPoolExecutor pool(1, o);
    {
      ee::TaskDescription outer("outer");
      {
        ee::TaskDescription inner("resize /tmp/a.png");
        pool.submit_named("resize", [] {}).get();
      }
      pool.submit([] {}).get();
    }
    pool.submit([] {}).get();
    pool.shutdown();
    ee::TaskDescription refused("after shutdown");
    CHECK_THROWS(pool.submit([] {}));
  }
  {
    ee::ProcessPoolOptions o;
    o.max_workers = 1;
    o.id = "processes";
    o.registry = registry;
    o.thread_check = ee::ThreadCheck::allow;
    o.observers.push_back(stream);
    ee::ProcessPoolExecutor pool(o);
    ee::TaskDescription described("x=41");
    CHECK(pool.submit(
                  +[](int x) { return x + 1; }, 41)
              .get() == 42);
  }
  {
    ee::InstrumentedExecutorProxy<ee::ThreadPoolExecutor> proxy(
        std::in_place, ee::make_exporter_for<ee::ThreadPoolExecutor>("proxied", registry), 1,
        std::size_t{1});
    proxy.add_observer(stream);
    ee::TaskDescription described("through the proxy");
    proxy.submit([] {}).get();
  }
  CHECK(ee::TaskDescription::current().empty());
  REQUIRE(stream->flush());
  std::vector<std::string> submitted;
  for (const auto& e : sink->of(ee::EventKind::submitted)) {
    submitted.push_back(e.executor + ": " + e.description);
  }
  CHECK(submitted == std::vector<std::string>{"threads: resize /tmp/a.png", "threads: outer",
                                              "threads: ", "processes: x=41",
                                              "proxied: through the proxy"});
  const auto rejected = sink->of(ee::EventKind::rejected);
  REQUIRE(rejected.size() == 1);
  CHECK(rejected[0].description == "after shutdown");
  // Only the submit side carries it: the rows of a history are keyed by task id.
  for (const auto& e : sink->of(ee::EventKind::completed)) CHECK(e.description.empty());
}

TEST_CASE("a full buffer drops the oldest events even when the sink already took them",
          "[events]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto stream = std::make_shared<ee::EventStream>(
      ee::EventStreamOptions{.buffer_capacity = 100, .max_batch = 10, .registry = registry});
  // Each write() waits at a gate of its own, so the test decides when the sink moves on.
  class Gated : public Recording {
   public:
    Gated() : Recording("gated") {}
    std::promise<void> gates[2];
    std::atomic<int> writes{0};
    void write(std::span<const ee::TaskEvent> events) override {
      const int n = writes.fetch_add(1);
      if (n < 2) gates[n].get_future().wait();
      Recording::write(events);
    }
  };
  auto gated = std::make_shared<Gated>();
  stream->add_sink(gated, {.kinds = {ee::EventKind::submitted}});
  // Task ids in submission order, from a second stream whose buffer never fills (a sink
  // on the first, with its buffer of 100, would drop under load as well).
  auto ordered = std::make_shared<ee::EventStream>(ee::EventStreamOptions{.registry = registry});
  auto order = std::make_shared<Recording>("order");
  ordered->add_sink(order, {.kinds = {ee::EventKind::submitted}});
  ee::ThreadPoolOptions o;
  o.registry = registry;
  o.id = "gated";
  o.observers = {stream, ordered};
  ee::ThreadPoolExecutor pool(1, o);
  std::vector<std::uint64_t> ids;
  auto submit = [&](int n) {
    for (int i = 0; i < n; ++i) pool.submit([] {}).wait();
  };
  submit(1);  // write 1 takes it and waits at gate 0
  REQUIRE(ee_test::wait_until([&] { return gated->writes.load() == 1; }, 5s));
  submit(60);  // buffered
  gated->gates[0].set_value();
  // The sink takes all 60 and waits in write 2 with the first 10: 50 are still its own.
  REQUIRE(ee_test::wait_until([&] { return gated->writes.load() == 2; }, 5s));
  submit(100);  // 50 fit; the other 50 push out the 50 oldest, which the sink had taken
  gated->gates[1].set_value();
  REQUIRE(stream->flush());
  REQUIRE(ordered->flush());
  REQUIRE(order->events().size() == 161);
  for (const auto& e : order->events()) ids.push_back(e.task_id);
  std::vector<std::uint64_t> expected(ids.begin(), ids.begin() + 11);  // written before
  expected.insert(expected.end(), ids.begin() + 61, ids.end());        // the newest 100
  std::vector<std::uint64_t> got;
  for (const auto& e : gated->events()) got.push_back(e.task_id);
  CHECK(got == expected);
  const auto page = ee_test::scrape(registry);
  CHECK(prom::metric(page, "executor_events_dropped_total", {{"sink", "gated"}}) == 50);
  CHECK(prom::metric(page, "executor_events_total", {{"sink", "gated"}}) == 111);
}

TEST_CASE("a stream that stops tells a retrying sink, so its destructor does not hang",
          "[events]") {
  auto registry = std::make_shared<prometheus::Registry>();
  // Retries its first batch until told the stream is stopping (or 30 s pass).
  class Retrying : public Recording {
   public:
    Retrying() : Recording("retrying") {}
    std::atomic<bool> in_write{false};
    std::atomic<bool> stopped{false};
    std::atomic<bool> gave_up{false};
    void write(std::span<const ee::TaskEvent> events) override {
      in_write = true;
      const auto deadline = std::chrono::steady_clock::now() + 30s;
      while (!stopped && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
      }
      gave_up = stopped.load();
      Recording::write(events);
    }
    void stopping() noexcept override { stopped = true; }
  };
  auto sink = std::make_shared<Retrying>();
  auto stream = std::make_shared<ee::EventStream>(ee::EventStreamOptions{.registry = registry});
  stream->add_sink(sink, {.kinds = {ee::EventKind::submitted}});
  ee::ThreadPoolOptions o;
  o.registry = registry;
  o.observers.push_back(stream);
  {
    ee::ThreadPoolExecutor pool(1, o);
    pool.submit([] {}).get();
  }
  o.observers.clear();
  REQUIRE(ee_test::wait_until([&] { return sink->in_write.load(); }, 10s));
  const auto before = std::chrono::steady_clock::now();
  stream.reset();
  CHECK(std::chrono::steady_clock::now() - before < 5s);
  CHECK(sink->gave_up);
  CHECK(sink->events().size() == 1);  // the sink still saw its batch through
}
