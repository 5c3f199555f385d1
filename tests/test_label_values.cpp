// Label values built from user input cannot break the page: ill-formed UTF-8 becomes
// U+FFFD where a label enters the library, and trace labels have a cardinality guard
// as task names do.
#include <executor_exporter/executor_exporter.hpp>
#include <executor_exporter/metrics/detail/label_value.hpp>

#include <catch2/catch.hpp>

#include <prometheus/text_serializer.h>

#include <memory>
#include <string>

#include "promtool.hpp"
#include "scrape.hpp"

namespace ee = executor_exporter;
namespace prom = ee_test::prom;
using ee::detail::sanitize_label_value;

namespace {
const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD
}  // namespace

TEST_CASE("well-formed UTF-8 label values are kept as they are", "[labels]") {
  for (const std::string s : {"", "plain ascii", "caf\xC3\xA9", "\xE2\x82\xAC 5",
                              "\xF0\x9F\x98\x80", "\xEF\xBF\xBD", "\xF4\x8F\xBF\xBF"}) {
    CHECK(sanitize_label_value(s) == s);
  }
}

TEST_CASE("each maximal ill-formed subpart becomes one U+FFFD", "[labels]") {
  const std::string r = kReplacement;
  CHECK(sanitize_label_value("a\xFF"
                             "b") == "a" + r + "b");  // never a lead byte
  CHECK(sanitize_label_value("\xC3") == r);           // truncated at the end
  CHECK(sanitize_label_value("\xE2\x82"
                             "A") == r + "A");                       // truncated, then ASCII
  CHECK(sanitize_label_value("\xF0\x9F\x98") == r);                  // one subpart
  CHECK(sanitize_label_value("\xC0\xAF") == r + r);                  // overlong lead
  CHECK(sanitize_label_value("\xE0\x80\xAF") == r + r + r);          // overlong 3-byte
  CHECK(sanitize_label_value("\xED\xA0\x80") == r + r + r);          // a surrogate
  CHECK(sanitize_label_value("\xF4\x90\x80\x80") == r + r + r + r);  // above U+10FFFF
  CHECK(sanitize_label_value("\x80\x80") == r + r);                  // stray continuations
}

TEST_CASE(
    "an executor id, task name and trace labels that are not UTF-8 still give a page "
    "promtool accepts",
    "[labels][promtool]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolOptions options;
  options.id = "orders\xFF";
  options.registry = registry;
  ee::ThreadPoolExecutor pool(1, options);
  pool.submit([] {}).get();
  pool.submit_named("caf\xC3", [] {}).get();
  pool.submit_traced("scope\xED\xA0\x80", [](ee::Trace& t) { t.mark("step\xC0\xAF"); }).get();
  pool.wait();

  const std::string page = ee_test::exposition(registry);
  CHECK(sanitize_label_value(page) == page);  // the whole page is UTF-8
  CHECK(page.find("executor=\"orders" + kReplacement + "\"") != std::string::npos);
  CHECK(page.find("task=\"caf" + kReplacement + "\"") != std::string::npos);
  CHECK(page.find("scope=\"scope" + kReplacement + kReplacement + kReplacement + "\"") !=
        std::string::npos);
  ee_test::require_promtool_clean(page);
  // The library's own writer too.
  std::string fast;
  ee::write_text(fast, ee::collect(registry));
  CHECK(sanitize_label_value(fast) == fast);
  ee_test::require_promtool_clean(fast);

  const auto parsed = prom::parse(page);
  CHECK(prom::value(parsed, "executor_tasks_completed_total",
                    {{"executor", "orders" + kReplacement}, {"task", "caf" + kReplacement}}) == 1);
}

TEST_CASE("trace labels past max_series share scope=other, action=other and are counted",
          "[labels][traced]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolOptions options;
  options.id = "traced";
  options.registry = registry;
  options.trace.max_series = 3;
  ee::ThreadPoolExecutor pool(1, options);
  pool.submit_traced("request",
                     [](ee::Trace& t) {
                       for (int i = 0; i < 10; ++i) t.mark("user-" + std::to_string(i));
                       t.mark("user-0");  // an existing pair is no overflow
                     })
      .get();
  const auto page = ee_test::scrape(registry);
  CHECK(prom::count(page, "executor_task_trace_seconds_count", {{"executor", "traced"}}) == 4);
  CHECK(prom::value(page, "executor_task_trace_seconds_count",
                    {{"executor", "traced"}, {"scope", "other"}, {"action", "other"}}) == 7);
  CHECK(prom::value(page, "executor_task_trace_seconds_count",
                    {{"executor", "traced"}, {"scope", "request"}, {"action", "user-0"}}) == 2);
  CHECK(prom::value(page, "executor_task_trace_overflow_total", {{"executor", "traced"}}) == 7);
}

TEST_CASE("a task the user names \"other\" shares the overflow series but is no overflow",
          "[labels][named]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolOptions options;
  options.id = "named_other";
  options.registry = registry;
  options.max_task_names = 1;
  ee::ThreadPoolExecutor pool(1, options);
  pool.submit_named("other", [] {}).get();
  pool.submit_named("first", [] {}).get();
  pool.submit_named("second", [] {}).get();  // past the limit: overflow
  pool.wait();
  const auto page = ee_test::scrape(registry);
  CHECK(prom::value(page, "executor_task_names_overflow_total", {{"executor", "named_other"}}) ==
        1);
  CHECK(prom::value(page, "executor_tasks_completed_total",
                    {{"executor", "named_other"}, {"task", "other"}}) == 2);
  CHECK(prom::value(page, "executor_tasks_completed_total",
                    {{"executor", "named_other"}, {"task", "first"}}) == 1);
}

TEST_CASE("two process pools sharing an id add their workers' resident memory up",
          "[labels][process_pool][fork]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ProcessPoolOptions options;
  options.max_workers = 1;
  options.id = "twins";
  options.registry = registry;
  options.thread_check = ee::ThreadCheck::allow;
  const prom::Labels worker0{{"executor", "twins"}, {"worker", "0"}};
  ee::ProcessPoolExecutor first(options);
  CHECK(first.submit(+[] { return 1; }).get() == 1);
  const double one =
      prom::value(ee_test::scrape(registry), "executor_worker_resident_bytes", worker0);
  REQUIRE(one > 0);
  {
    ee::ProcessPoolExecutor second(options);
    CHECK(second.submit(+[] { return 2; }).get() == 2);
    const double both =
        prom::value(ee_test::scrape(registry), "executor_worker_resident_bytes", worker0);
    CHECK(both > 1.5 * one);
    CHECK(both < 3 * one);
  }
  // The second pool is gone: its worker no longer counts.
  const double after =
      prom::value(ee_test::scrape(registry), "executor_worker_resident_bytes", worker0);
  CHECK(after < 1.5 * one);
}
