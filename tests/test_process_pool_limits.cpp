// ProcessPoolOptions::max_message_bytes: a task or a result too large for one message
// fails alone, with an error naming the limit, and never costs a worker or the pool.
// Tagged [process_pool][fork] like test_process_pool.cpp.
#include <catch2/catch.hpp>

#include <executor_exporter/metrics/registry.hpp>
#include <executor_exporter/process/process_pool_executor.hpp>

#include <prometheus/registry.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "scrape.hpp"

using namespace executor_exporter;
namespace prom = ee_test::prom;

namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

ProcessPoolOptions limited(std::shared_ptr<prometheus::Registry> registry, std::size_t limit) {
  ProcessPoolOptions o;
  o.max_workers = 1;  // one worker: a replaced worker would show as a new pid
  o.thread_check = ThreadCheck::allow;
  o.registry = std::move(registry);
  o.id = "limits";
  o.max_message_bytes = limit;
  return o;
}

std::size_t length_of(const std::string& s) { return s.size(); }
std::string make_string(std::size_t n) { return std::string(n, 'r'); }
int twice(int x) { return 2 * x; }

template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  FAIL("the expected exception was not thrown");
  return {};
}

const prom::Labels kPool{{"executor", "limits"}, {"executor_type", "process_pool"}};

// submitted - (completed + failed + cancelled + expired + queued + running) of the pool's
// own series (ee_test::unaccounted, by prom::metric's rule: named tasks apart).
double unaccounted(const prom::Page& page) {
  double rest = 0;
  for (const char* name : {"executor_tasks_completed_total", "executor_tasks_failed_total",
                           "executor_tasks_cancelled_total", "executor_tasks_expired_total",
                           "executor_tasks_queued", "executor_tasks_running"}) {
    rest += prom::metric(page, name, kPool);
  }
  return prom::metric(page, "executor_tasks_submitted_total", kPool) - rest;
}

double rejected_error(const prom::Page& page) {
  prom::Labels l = kPool;
  l["reason"] = "error";
  return prom::metric(page, "executor_tasks_rejected_total", l);
}

}  // namespace

TEST_CASE("process pool: the message limit defaults to the frame limit", "[process_pool][limits]") {
  CHECK(ProcessPoolOptions{}.max_message_bytes == detail::FrameDecoder::kDefaultMaxPayload);
  CHECK(detail::message_limit(0) == detail::FrameDecoder::kDefaultMaxPayload);
  CHECK(detail::message_limit(10) == 1024);
}

TEST_CASE("process pool: an argument above max_message_bytes is refused at submit and counted",
          "[process_pool][fork][limits]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ProcessPoolExecutor pool(limited(reg, kMiB));
  const std::string big(2 * kMiB, 'a');

  const std::string what =
      message_of<MessageTooLargeError>([&] { (void)pool.submit(length_of, big); });
  CHECK_THAT(what, Catch::Contains("max_message_bytes"));
  CHECK_THAT(what, Catch::Contains("1048576 bytes"));
  // A string encodes as its length and its bytes; the message adds 16 bytes.
  CHECK_THAT(what, Catch::Contains("encode to " + std::to_string(big.size() + 8) + " bytes"));
  CHECK_THAT(what, Catch::Contains("a message of " + std::to_string(big.size() + 24) + " bytes"));
  CHECK_THAT(what, Catch::Contains("'limits'"));
  // A refusal is a RejectedError, like every other refusal of a submit.
  CHECK_THROWS_AS((void)pool.submit_named("big", length_of, big), RejectedError);
  CHECK_THROWS_AS((void)pool.map(length_of, std::vector<std::string>{"x", big}),
                  MessageTooLargeError);
  CHECK_THROWS_AS(
      (void)pool.map(length_of, std::vector<std::string>{big, "y"}, MapOptions{.chunksize = 2}),
      MessageTooLargeError);

  // The pool is whole: the next task runs on the worker that was there before.
  const auto pids = pool.worker_pids();
  CHECK(pool.submit(length_of, std::string(kMiB / 2, 'b')).get() == kMiB / 2);
  CHECK(pool.submit(twice, 21).get() == 42);
  CHECK_FALSE(pool.broken());
  CHECK(pool.worker_pids() == pids);

  const auto page = ee_test::scrape(reg);
  // submit, map (its second item; the first ran) and the chunk count here; submit_named
  // in its name's series.
  CHECK(rejected_error(page) == 3);
  CHECK(prom::metric(page, "executor_tasks_rejected_total",
                     {{"executor", "limits"}, {"reason", "error"}, {"task", "big"}}) == 1);
  CHECK(prom::metric(page, "executor_tasks_submitted_total", kPool) == 3);
  CHECK(prom::metric(page, "executor_tasks_completed_total", kPool) == 3);
  CHECK(unaccounted(page) == 0);
  CHECK(prom::metric(page, "executor_worker_restarts_total", {{"reason", "crashed"}}) == 0);
}

TEST_CASE("process pool: a result above max_message_bytes fails only its task",
          "[process_pool][fork][limits]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ProcessPoolExecutor pool(limited(reg, kMiB));
  CHECK(pool.submit(twice, 1).get() == 2);  // the worker is up
  const auto pids = pool.worker_pids();

  auto big = pool.submit(make_string, 2 * kMiB);
  auto after = pool.submit(twice, 5);  // sent behind it to the same worker
  try {
    (void)big.get();
    FAIL("a result above the limit arrived");
  } catch (const ProcessTaskError& e) {
    CHECK(e.type_name() == "executor_exporter::MessageTooLargeError");
    CHECK_THAT(e.original_what(), Catch::Contains("max_message_bytes (1048576 bytes)"));
    CHECK_THAT(e.original_what(),
               Catch::Contains("encodes to " + std::to_string(2 * kMiB + 8) + " bytes"));
  }
  CHECK(after.get() == 10);
  // A chunk's results travel as one message: the chunk fails, every item says why.
  auto chunked = pool.map(make_string, std::vector<std::size_t>{kMiB / 2, kMiB / 2, 1},
                          MapOptions{.chunksize = 3});
  CHECK_THROWS_AS(chunked.to_vector(), ProcessTaskError);
  CHECK(pool.submit(make_string, std::size_t{3}).get() == "rrr");
  CHECK_FALSE(pool.broken());
  CHECK(pool.worker_pids() == pids);  // no worker was lost over it

  const auto page = ee_test::scrape(reg);
  CHECK(prom::metric(page, "executor_tasks_failed_total", kPool) == 2);
  CHECK(prom::metric(page, "executor_tasks_completed_total", kPool) == 3);
  CHECK(unaccounted(page) == 0);
  CHECK(rejected_error(page) == 0);
  CHECK(prom::metric(page, "executor_worker_restarts_total", {{"reason", "crashed"}}) == 0);
}

TEST_CASE("process pool: the default limit refuses a 65 MiB argument instead of breaking the pool",
          "[process_pool][fork][limits]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ProcessPoolExecutor pool(limited(reg, 0));
  const std::string huge(65 * kMiB, 'h');
  CHECK_THROWS_WITH((void)pool.submit(length_of, huge),
                    Catch::Contains("max_message_bytes (67108864 bytes"));
  CHECK(pool.submit(twice, 4).get() == 8);
  CHECK_FALSE(pool.broken());
  const auto page = ee_test::scrape(reg);
  CHECK(rejected_error(page) == 1);
  CHECK(prom::metric(page, "executor_worker_restarts_total", {{"reason", "crashed"}}) == 0);
  CHECK(unaccounted(page) == 0);
}
