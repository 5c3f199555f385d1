// A submit that fails while the task is being made (no memory, a callable or an argument
// whose copy throws, an argument whose encoding throws, a wrapped executor that throws)
// accepted nothing: it propagates, counts in executor_tasks_rejected_total{reason="error"},
// raises no submitted counter, and leaves the executor as it was.
#include <catch2/catch.hpp>

#include <executor_exporter/executor_exporter.hpp>
#include <executor_exporter/process/process_pool_executor.hpp>

#include <prometheus/registry.h>

#include <functional>
#include <future>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "scrape.hpp"

namespace ee = executor_exporter;
namespace prom = ee_test::prom;

namespace {

// Copies fine until armed; then its copy constructor throws std::bad_alloc, as a copy
// of a large capture would when memory runs out. Moves never throw, so only the copy a
// submit makes of an lvalue fails, deterministically.
struct CopyBomb {
  std::shared_ptr<bool> armed = std::make_shared<bool>(false);
  CopyBomb() = default;
  CopyBomb(const CopyBomb& other) : armed(other.armed) {
    if (*armed) throw std::bad_alloc();
  }
  CopyBomb(CopyBomb&&) noexcept = default;
  CopyBomb& operator=(const CopyBomb&) = default;
  CopyBomb& operator=(CopyBomb&&) noexcept = default;
  int operator()() const { return 7; }
  int operator()(int x) const { return x; }
};

// submitted - (completed + failed + cancelled + expired + queued + running) of one
// series (prom::metric's rule: the executor's own unless `labels` names a task).
double unaccounted(const prom::Page& page, const prom::Labels& labels) {
  double rest = 0;
  for (const char* name : {"executor_tasks_completed_total", "executor_tasks_failed_total",
                           "executor_tasks_cancelled_total", "executor_tasks_expired_total",
                           "executor_tasks_queued", "executor_tasks_running"}) {
    rest += prom::metric(page, name, labels);
  }
  return prom::metric(page, "executor_tasks_submitted_total", labels) - rest;
}

double rejected(const prom::Page& page, prom::Labels labels, const char* reason = "error") {
  labels["reason"] = reason;
  return prom::metric(page, "executor_tasks_rejected_total", labels);
}

// A wrapped executor whose submit runs out of memory while `failing` is set.
struct OutOfMemoryExecutor {
  bool failing = false;
  std::future<void> submit(std::function<void()> task) {
    if (failing) throw std::bad_alloc();
    task();
    std::promise<void> done;
    done.set_value();
    return done.get_future();
  }
  void shutdown() {}
};

}  // namespace

// A type whose encoding runs out of memory: the process pool's encode step fails.
struct Unencodable {
  int value = 0;
};
template <>
struct executor_exporter::codec_traits<Unencodable> {
  static void encode(Encoder&, const Unencodable&) { throw std::bad_alloc(); }
  static Unencodable decode(Decoder& d) { return {executor_exporter::decode<int>(d)}; }
};

namespace {
int unwrap(Unencodable u) { return u.value; }
int twice(int x) { return 2 * x; }
}  // namespace

TEST_CASE("thread pool: a copy that throws at submit is counted as rejected, reason error",
          "[submit_failures][thread_pool]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolOptions o;
  o.registry = reg;
  o.id = "copyfail";
  ee::ThreadPoolExecutor pool(2, o);
  const prom::Labels own{{"executor", "copyfail"}};
  CopyBomb bomb;
  CHECK(pool.submit(bomb).get() == 7);  // unarmed: runs
  *bomb.armed = true;

  CHECK_THROWS_AS((void)pool.submit(bomb), std::bad_alloc);  // the callable's copy
  CHECK_THROWS_AS((void)pool.submit([](const CopyBomb& b) { return b(); }, bomb),
                  std::bad_alloc);  // an argument's copy
  CHECK_THROWS_AS((void)pool.try_submit(bomb), std::bad_alloc);
  CHECK_THROWS_AS(pool.post(bomb), std::bad_alloc);
  CHECK_THROWS_AS((void)pool.submit_named("named", bomb), std::bad_alloc);
  {
    const auto page = ee_test::scrape(reg);
    CHECK(rejected(page, own) == 4);
    CHECK(rejected(page, {{"executor", "copyfail"}, {"task", "named"}}) == 1);
    CHECK(prom::metric(page, "executor_tasks_submitted_total", own) == 1);
    CHECK(unaccounted(page, own) == 0);
  }

  // Nothing is stuck in the pool: it runs the next task and goes idle.
  *bomb.armed = false;
  CHECK(pool.submit(bomb).get() == 7);
  pool.wait();
  const auto page = ee_test::scrape(reg);
  CHECK(prom::metric(page, "executor_tasks_submitted_total", own) == 2);
  CHECK(prom::metric(page, "executor_tasks_completed_total", own) == 2);
  CHECK(unaccounted(page, own) == 0);
}

TEST_CASE("thread pool: submit_traced whose callable copy throws is counted as rejected",
          "[submit_failures][thread_pool]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolOptions o;
  o.registry = reg;
  o.id = "tracedfail";
  ee::ThreadPoolExecutor pool(1, o);
  struct TracedBomb : CopyBomb {
    int operator()(ee::Trace&) const { return 1; }
  };
  TracedBomb bomb;
  *bomb.armed = true;
  CHECK_THROWS_AS((void)pool.submit_traced("scope", bomb), std::bad_alloc);
  const auto page = ee_test::scrape(reg);
  CHECK(rejected(page, {{"executor", "tracedfail"}}) == 1);
  CHECK(prom::metric(page, "executor_tasks_submitted_total", {{"executor", "tracedfail"}}) == 0);
}

TEST_CASE("proxy: a copy that throws or a wrapped submit out of memory is counted as rejected",
          "[submit_failures][proxy]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::InstrumentedExecutorProxy<OutOfMemoryExecutor> proxy(
      OutOfMemoryExecutor{}, ee::ExecutorExporter("oom", "test", reg), 1);
  const prom::Labels own{{"executor", "oom"}};
  CopyBomb bomb;
  CHECK(proxy.submit(bomb).get() == 7);
  *bomb.armed = true;
  CHECK_THROWS_AS((void)proxy.submit(bomb), std::bad_alloc);
  CHECK_THROWS_AS(proxy.post(bomb), std::bad_alloc);
  CHECK_THROWS_AS((void)proxy.submit_named("named", bomb), std::bad_alloc);
  *bomb.armed = false;
  proxy.executor().failing = true;
  CHECK_THROWS_AS((void)proxy.submit(bomb), std::bad_alloc);
  proxy.executor().failing = false;
  CHECK(proxy.submit(bomb).get() == 7);

  const auto page = ee_test::scrape(reg);
  CHECK(rejected(page, own) == 3);
  CHECK(rejected(page, {{"executor", "oom"}, {"task", "named"}}) == 1);
  CHECK(prom::metric(page, "executor_tasks_submitted_total", own) == 2);
  CHECK(prom::metric(page, "executor_tasks_completed_total", own) == 2);
  CHECK(unaccounted(page, own) == 0);
}

TEST_CASE("process pool: an argument whose encoding throws is counted as rejected",
          "[submit_failures][process_pool][fork]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ProcessPoolOptions o;
  o.max_workers = 1;
  o.thread_check = ee::ThreadCheck::allow;
  o.registry = reg;
  o.id = "encfail";
  ee::ProcessPoolExecutor pool(o);
  const prom::Labels own{{"executor", "encfail"}};
  CHECK_THROWS_AS((void)pool.submit(unwrap, Unencodable{3}), std::bad_alloc);
  CHECK_THROWS_AS((void)pool.submit_named("named", unwrap, Unencodable{3}), std::bad_alloc);
  CHECK_THROWS_AS(
      (void)pool.map(unwrap, std::vector<Unencodable>{{1}, {2}}, ee::MapOptions{.chunksize = 2}),
      std::bad_alloc);
  CHECK(pool.submit(twice, 4).get() == 8);
  const auto page = ee_test::scrape(reg);
  CHECK(rejected(page, own) == 2);
  CHECK(rejected(page, {{"executor", "encfail"}, {"task", "named"}}) == 1);
  CHECK(prom::metric(page, "executor_tasks_submitted_total", own) == 1);
  CHECK(unaccounted(page, own) == 0);
}
