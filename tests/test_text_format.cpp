// write_text / scrape_text: the fast exposition writer must produce exactly the bytes
// prometheus::TextSerializer produces, and promtool must accept them.

#include <executor_exporter/executor_exporter.hpp>

#include <prometheus/text_serializer.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "prom_text.hpp"
#include "promtool.hpp"
#include "subprocess.hpp"

namespace ee = executor_exporter;
using ee_test::require_promtool_clean;

namespace {

std::string text_serializer(const std::vector<prometheus::MetricFamily>& families) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

std::string fast(const std::vector<prometheus::MetricFamily>& families) {
  std::string out;
  ee::write_text(out, families);
  return out;
}


prometheus::MetricFamily gauge_family(const std::vector<double>& values) {
  prometheus::MetricFamily f;
  f.name = "g";
  f.help = "values";
  f.type = prometheus::MetricType::Gauge;
  for (const double v : values) {
    prometheus::ClientMetric m;
    m.gauge.value = v;
    m.label = {{"k", "v"}};
    f.metric.push_back(m);
  }
  return f;
}

}  // namespace

TEST_CASE("write_text writes an executor registry byte for byte as TextSerializer does",
          "[text_format]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolOptions options;
  options.id = "fmt \"quoted\" \\ new\nline";
  options.registry = registry;
  options.trace.summary = true;  // a summary family too
  ee::ThreadPoolExecutor pool(2, options);
  ee::ThreadPoolExecutor other(1, "o", {}, "plain", registry);
  for (int i = 0; i < 50; ++i) pool.submit([] {}).get();
  pool.submit_named("resize images", [] {}).get();
  CHECK_THROWS(pool.submit([] { throw 1; }).get());
  pool.submit_traced("db", [](ee::Trace& t) { t.mark("query"); }).get();
  other.submit([] {}).get();

  const auto families = ee::collect(registry);
  const std::string expected = text_serializer(families);
  REQUIRE(expected.size() > 1000);
  REQUIRE(fast(families) == expected);
  // The page parses back to the same values.
  auto page = ee_test::prom::parse(fast(families));
  // 52 unnamed tasks plus one in the task="resize images" series.
  CHECK(ee_test::prom::sum(page, "executor_tasks_submitted_total", {{"executor", options.id}}) ==
        53);
  require_promtool_clean(fast(families));
}

TEST_CASE("scrape_text folds before it writes, so counts are current", "[text_format]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(2, "t", {}, "scrape_text", registry);
  for (int i = 0; i < 9; ++i) pool.submit([] {}).get();
  auto page = ee_test::prom::parse(ee::scrape_text(registry));
  CHECK(ee_test::prom::value(page, "executor_tasks_submitted_total",
                             {{"executor", "scrape_text"}}) == 9);
  CHECK(ee_test::prom::value(page, "executor_task_run_seconds_count",
                             {{"executor", "scrape_text"}, {"result", "completed"}}) == 9);
}

TEST_CASE("write_text formats every kind of double as TextSerializer does", "[text_format]") {
  std::vector<double> values{0.0,
                             -0.0,
                             1.0,
                             -1.5,
                             0.1 + 0.2,
                             1.0 / 3,
                             1e-300,
                             std::numeric_limits<double>::denorm_min(),
                             std::numeric_limits<double>::max(),
                             std::numeric_limits<double>::lowest(),
                             1e15,
                             1e16,
                             1e17,
                             9007199254740993.0,
                             123456.789,
                             3e-7,
                             std::numeric_limits<double>::quiet_NaN(),
                             std::numeric_limits<double>::infinity(),
                             -std::numeric_limits<double>::infinity()};
  // Random bit patterns cover every exponent and rounding case; integers cover counters.
  std::mt19937_64 rng(20261123);
  for (int i = 0; i < 20000; ++i) {
    const std::uint64_t bits = rng();
    double d = 0;
    std::memcpy(&d, &bits, sizeof d);
    values.push_back(d);
    values.push_back(static_cast<double>(rng() >> (rng() % 64)));
    values.push_back(static_cast<double>(rng() % 1000000) / 1e6);
  }
  const std::vector<prometheus::MetricFamily> families{gauge_family(values)};
  const std::string expected = text_serializer(families);
  const std::string got = fast(families);
  if (got != expected) {
    // Name the first differing line rather than dumping a megabyte.
    std::istringstream a(expected), b(got);
    std::string la, lb;
    while (std::getline(a, la) && std::getline(b, lb) && la == lb) {
    }
    INFO("TextSerializer: " << la << "\nwrite_text:     " << lb);
    FAIL("write_text differs from TextSerializer");
  }
}

TEST_CASE("write_text handles timestamps, label-less metrics, quantiles and bucket lists",
          "[text_format]") {
  prometheus::MetricFamily counter;
  counter.name = "c_total";
  counter.help = "a counter";
  counter.type = prometheus::MetricType::Counter;
  prometheus::ClientMetric c;
  c.counter.value = 3;
  counter.metric.push_back(c);
  c.timestamp_ms = 1700000000123;
  c.label = {{"a", ""}, {"b", "x"}};
  counter.metric.push_back(c);

  prometheus::MetricFamily untyped;
  untyped.name = "u";
  untyped.help = "an untyped value";
  untyped.type = prometheus::MetricType::Untyped;
  prometheus::ClientMetric u;
  u.untyped.value = -2.5;
  untyped.metric.push_back(u);

  prometheus::MetricFamily summary;
  summary.name = "s";
  summary.help = "a summary";
  summary.type = prometheus::MetricType::Summary;
  prometheus::ClientMetric s;
  s.summary.sample_count = 4;
  s.summary.sample_sum = 0.25;
  s.summary.quantile = {{0.5, 0.01}, {0.99, 0.2}};
  summary.metric.push_back(s);
  s.label = {{"scope", "db"}};
  summary.metric.push_back(s);

  // A histogram without a +Inf bucket (hand-made) gets one, as TextSerializer adds it.
  prometheus::MetricFamily hist;
  hist.name = "h";
  hist.help = "a histogram";
  hist.type = prometheus::MetricType::Histogram;
  prometheus::ClientMetric h;
  h.histogram.sample_count = 3;
  h.histogram.sample_sum = 1.5;
  h.histogram.bucket = {{1, 0.5}, {2, 1.0}};
  hist.metric.push_back(h);
  h.histogram.bucket.push_back({3, std::numeric_limits<double>::infinity()});
  h.label = {{"le_not", "x"}};
  hist.metric.push_back(h);

  const std::vector<prometheus::MetricFamily> families{counter, untyped, summary, hist};
  REQUIRE(fast(families) == text_serializer(families));
  require_promtool_clean(fast(families));
}

TEST_CASE("write_text escapes HELP text, which TextSerializer writes raw", "[text_format]") {
  auto family = gauge_family({1});
  family.help = "line one\nline two \\ end";
  const std::string page = fast({family});
  CHECK(page.rfind("# HELP g line one\\nline two \\\\ end\n", 0) == 0);
  require_promtool_clean(page);
}
