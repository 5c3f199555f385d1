// Exemplars: on an OpenMetrics page the wait and run histograms' buckets name a recent
// task that fell in them (its name, id, call site and trace ids), scraped over real HTTP
// from a MetricsServer; the label set stays within OpenMetrics' 128 characters whatever
// the user named the task; the text format never carries them; turned off, none.
#include <executor_exporter/executor_exporter.hpp>
#include <executor_exporter/metrics/detail/label_value.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "http_client.hpp"
#include "prom_text.hpp"
#include "scrape.hpp"
#include "subprocess.hpp"
#include "temp_dir.hpp"

using namespace std::chrono_literals;
namespace ee = executor_exporter;
namespace prom = ee_test::prom;

namespace {

constexpr const char* kOpenMetrics =
    "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

std::string get_page(const ee::MetricsServer& server, const char* accept) {
  const auto r = ee_test::http_get("127.0.0.1", server.port(), "/metrics", 5s, {accept});
  REQUIRE(r.status == 200);
  return r.body;
}

// One bucket line that carries an exemplar.
struct Seen {
  std::string line;  // the sample part, before " # "
  std::map<std::string, std::string> labels;
  std::size_t label_chars = 0;  // names + values, code points, unescaped
  double value = 0;
  double timestamp = 0;
  double le = 0;
};

std::size_t code_points(std::string_view s) {
  std::size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) == 0x80 ? 0 : 1;
  return n;
}

// Parses ` # {a="b",...} value timestamp` (label values escaped as OpenMetrics says).
Seen parse_exemplar(const std::string& line) {
  Seen s;
  const auto hash = line.find(" # {");
  REQUIRE(hash != std::string::npos);
  s.line = line.substr(0, hash);
  std::size_t i = hash + 4;
  while (line.at(i) != '}') {
    const auto eq = line.find("=\"", i);
    REQUIRE(eq != std::string::npos);
    const std::string name = line.substr(i, eq - i);
    std::string value;
    std::size_t j = eq + 2;
    for (; line.at(j) != '"'; ++j) {
      if (line[j] == '\\') {
        ++j;
        value += line.at(j) == 'n' ? '\n' : line[j];
      } else {
        value += line[j];
      }
    }
    s.label_chars += code_points(name) + code_points(value);
    s.labels[name] = value;
    i = j + 1;
    if (line.at(i) == ',') ++i;
  }
  std::string rest = line.substr(i + 2);
  const auto space = rest.find(' ');
  s.value = std::stod(rest.substr(0, space));
  if (space != std::string::npos) s.timestamp = std::stod(rest.substr(space + 1));
  const auto le = s.line.find("le=\"");
  REQUIRE(le != std::string::npos);
  const std::string bound = s.line.substr(le + 4, s.line.find('"', le + 4) - le - 4);
  s.le = bound == "+Inf" ? 1e300 : std::stod(bound);
  return s;
}

// The exemplars of `family`'s buckets whose sample line contains every one of `parts`.
std::vector<Seen> exemplars(const std::string& page, const std::string& family,
                            const std::vector<std::string>& parts = {}) {
  std::vector<Seen> out;
  std::size_t from = 0;
  while (from < page.size()) {
    const auto nl = page.find('\n', from);
    const std::string line = page.substr(from, nl - from);
    from = nl == std::string::npos ? page.size() : nl + 1;
    if (line.rfind(family + "_bucket{", 0) != 0 || line.find(" # {") == std::string::npos) {
      continue;
    }
    bool all = true;
    for (const auto& p : parts) all = all && line.find(p) < line.find(" # {");
    if (all) out.push_back(parse_exemplar(line));
  }
  return out;
}

// The finite bound just below `le` among the default buckets (0 for the first).
double bound_below(double le) {
  double below = 0;
  for (const double b : ee::default_buckets()) {
    if (b >= le) break;
    below = b;
  }
  return below;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool all_digits(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

// Prometheus' own OpenMetrics parser (promtool's backfill) must take the page: it wants a
// timestamp on every sample, which goes before the exemplar.
void require_prometheus_parses(const std::string& page) {
  const std::string promtool = EE_PROMTOOL;
  REQUIRE_FALSE(promtool.empty());
  const std::string ts = " " + std::to_string(static_cast<std::int64_t>(now_s()));
  std::string stamped;
  std::size_t from = 0;
  while (from < page.size()) {
    const auto nl = page.find('\n', from);
    std::string line = page.substr(from, nl - from);
    from = nl + 1;
    if (!line.empty() && line[0] != '#') {
      const auto hash = line.find(" # {");
      line.insert(hash == std::string::npos ? line.size() : hash, ts);
    }
    stamped += line + "\n";
  }
  ee_test::TempDir dir("ee_exemplars");
  const auto file = (dir / "page.om").string();
  {
    std::ofstream out(file);
    out << stamped;
  }
  const auto check = ee_test::run_and_capture(
      {promtool, "tsdb", "create-blocks-from", "openmetrics", file, (dir / "blocks").string()}, "",
      60s);
  INFO(check.out << check.err << "\npage:\n" << stamped);
  REQUIRE(check.exit_code == 0);
}

ee::ThreadPoolOptions pool_options(const std::shared_ptr<prometheus::Registry>& registry,
                                   const std::string& id) {
  ee::ThreadPoolOptions o;
  o.registry = registry;
  o.id = id;
  return o;
}

}  // namespace

TEST_CASE("A slow task is the exemplar of the run bucket its time fell in", "[exemplars]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_options(registry, "ex"));
  const double before = now_s();
  pool.submit_named("slow import", [] { std::this_thread::sleep_for(30ms); }).get();
  pool.submit_named("slow import", [] { throw std::runtime_error("bad row"); }).wait();
  ee::MetricsServer server("127.0.0.1:0", registry);
  const std::string page = get_page(server, kOpenMetrics);
  INFO(page);

  const auto run = exemplars(page, "executor_task_run_seconds",
                             {"task=\"slow import\"", "result=\"completed\""});
  REQUIRE(run.size() == 1);  // one task completed: one bucket has one
  const Seen& e = run[0];
  CHECK(e.value >= 0.03);
  CHECK(e.value <= e.le);  // the bucket its time fell in, and no lower one
  CHECK(e.value > bound_below(e.le));
  CHECK(e.labels.at("task") == "slow import");
  CHECK(all_digits(e.labels.at("task_id")));
  CHECK(e.labels.at("task_id") != "0");
  CHECK(e.timestamp >= before - 1);
  CHECK(e.timestamp <= now_s() + 1);
  CHECK(e.label_chars <= ee::exemplar_label_limit);

  const auto failed =
      exemplars(page, "executor_task_run_seconds", {"task=\"slow import\"", "result=\"failed\""});
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].value < 0.03);
  const auto wait = exemplars(page, "executor_task_wait_seconds", {"task=\"slow import\""});
  CHECK(!wait.empty());
  for (const auto& w : wait) CHECK(w.labels.at("task") == "slow import");
  // Each exemplar sits on the bucket line of its own series, never on _count or _sum.
  CHECK(page.find("_count{executor=\"ex\"") != std::string::npos);
  for (const char* suffix : {"_count{", "_sum{", "_created{"}) {
    std::size_t at = 0;
    while ((at = page.find(suffix, at)) != std::string::npos) {
      const auto eol = page.find('\n', at);
      CHECK(page.substr(at, eol - at).find(" # {") == std::string::npos);
      at = eol;
    }
  }
  require_prometheus_parses(page);

  // Counters still reconcile on the same registry.
  const auto text = prom::parse(get_page(server, "Accept: text/plain;version=0.0.4"));
  CHECK(ee_test::unaccounted(text, {{"executor", "ex"}, {"task", "slow import"}}) == 0);
  CHECK(prom::metric(text, "executor_tasks_completed_total",
                     {{"executor", "ex"}, {"task", "slow import"}}) == 1);
}

TEST_CASE("An exemplar names the call site the recorder was given", "[exemplars]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::detail::Recorder recorder("calls", "manual", registry);
  ee::detail::TaskRef t = recorder.prepare();
  const std::source_location here = std::source_location::current();
  t.where = here;
  ee::detail::Recorder::submitted(t);
  const std::uint64_t start = ee::detail::Recorder::started(t);
  std::this_thread::sleep_for(3ms);
  ee::detail::Recorder::finished(t, start, true);
  const std::string page = ee::scrape_openmetrics(registry);
  INFO(page);
  const auto run = exemplars(page, "executor_task_run_seconds", {"executor=\"calls\""});
  REQUIRE(run.size() == 1);
  CHECK(run[0].labels.at("call_site") == "test_exemplars.cpp:" + std::to_string(here.line()));
  CHECK(run[0].labels.count("task") == 0);  // an unnamed task has no name to show
  CHECK(run[0].value >= 0.003);
  const auto wait = exemplars(page, "executor_task_wait_seconds", {"executor=\"calls\""});
  REQUIRE(wait.size() == 1);
  CHECK(wait[0].labels.at("call_site") == run[0].labels.at("call_site"));
}

TEST_CASE("Hostile task names still give exemplars within 128 characters", "[exemplars]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_options(registry, "hostile"));
  std::string name;
  for (int i = 0; i < 100; ++i) name += "\xC3\xA9";          // é, two bytes
  name += "\"quoted\"\n\\back\xFF\xFE";                      // escapes, and bytes that are no UTF-8
  for (int i = 0; i < 100; ++i) name += "\xF0\x9F\x94\xA5";  // four-byte characters
  const std::string sanitized = ee::detail::sanitize_label_value(name);
  pool.submit_named(name, [] {}).get();
  std::string short_invalid = "x\xC3";  // a truncated sequence
  pool.submit_named(short_invalid, [] {}).get();

  ee::MetricsServer server("127.0.0.1:0", registry);
  const std::string page = get_page(server, kOpenMetrics);
  INFO(page);
  const auto all = exemplars(page, "executor_task_run_seconds", {"executor=\"hostile\""});
  REQUIRE(all.size() >= 2);
  bool long_seen = false;
  for (const auto& e : all) {
    CHECK(e.label_chars <= ee::exemplar_label_limit);
    const std::string& task = e.labels.at("task");
    CHECK(ee::detail::sanitize_label_value(task) == task);  // cut on a character boundary
    if (task.rfind("\xC3\xA9", 0) == 0) {
      long_seen = true;
      CHECK(sanitized.rfind(task, 0) == 0);  // a prefix of the name
      CHECK(code_points(task) >= 40);        // and most of what fits
      CHECK(task.size() < sanitized.size());
    } else {
      CHECK(task == "x\xEF\xBF\xBD");
    }
  }
  CHECK(long_seen);
  require_prometheus_parses(page);
}

TEST_CASE("Text 0.0.4 pages never carry exemplars", "[exemplars]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_options(registry, "texts"));
  pool.submit_named("t", [] {}).get();
  ee::MetricsServer server("127.0.0.1:0", registry);
  // The same registry shows them in OpenMetrics: the checks below can fail.
  REQUIRE_FALSE(exemplars(get_page(server, kOpenMetrics), "executor_task_run_seconds").empty());
  CHECK(get_page(server, "Accept: text/plain;version=0.0.4").find(" # {") == std::string::npos);
  CHECK(get_page(server, "Accept: */*").find(" # {") == std::string::npos);
  CHECK(ee::scrape_text(registry).find(" # {") == std::string::npos);
  CHECK(ee_test::exposition(registry).find(" # {") == std::string::npos);
}

TEST_CASE("With exemplars off an OpenMetrics page has none", "[exemplars]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto options = pool_options(registry, "quiet");
  options.exporter.exemplars = false;
  ee::ThreadPoolExecutor pool(1, options);
  pool.submit_named("t", [] {}).get();
  pool.submit([] {}).get();
  ee::MetricsServer server("127.0.0.1:0", registry);
  const std::string page = get_page(server, kOpenMetrics);
  CHECK(page.find("executor_task_run_seconds_bucket{executor=\"quiet\"") != std::string::npos);
  CHECK(page.find(" # {") == std::string::npos);
}

TEST_CASE("write_openmetrics leaves out an exemplar it must not write", "[exemplars]") {
  prometheus::MetricFamily f;
  f.name = "h_seconds";
  f.help = "h";
  f.type = prometheus::MetricType::Histogram;
  prometheus::ClientMetric m;
  m.histogram.sample_count = 3;
  m.histogram.sample_sum = 1.5;
  m.histogram.bucket = {{1, 0.5}, {2, 1.0}, {3, std::numeric_limits<double>::infinity()}};
  f.metric.push_back(m);
  const ee::ExemplarLookup lookup = [](const prometheus::MetricFamily&,
                                       const prometheus::ClientMetric&) {
    std::vector<std::optional<ee::Exemplar>> out(3);
    out[0] = ee::Exemplar{{{"trace_id", "ab\"c"}}, 0.25, 1700000000.123};
    out[1] = ee::Exemplar{{{"k", std::string(128, 'x')}}, 0.75, 0};  // 129 characters
    out[2] = ee::Exemplar{{{"1bad", "v"}}, 2, 0};                    // not a label name
    return out;
  };
  std::string out;
  ee::write_openmetrics(out, {f}, {}, lookup);
  CHECK_THAT(out,
             Catch::Contains(
                 "h_seconds_bucket{le=\"0.5\"} 1 # {trace_id=\"ab\\\"c\"} 0.25 1700000000.123\n"));
  CHECK_THAT(out, Catch::Contains("h_seconds_bucket{le=\"1\"} 2\n"));
  CHECK_THAT(out, Catch::Contains("h_seconds_bucket{le=\"+Inf\"} 3\n"));
  std::string text;
  ee::write_text(text, {f});
  CHECK(text.find('#' + std::string(" {")) == std::string::npos);
}

TEST_CASE("Scrapes while tasks run read whole exemplars", "[exemplars]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto options = pool_options(registry, "busy");
  options.exporter.exemplar_refresh_ms = 0;  // every observation rewrites its exemplar
  ee::ThreadPoolExecutor pool(3, options);
  std::atomic<bool> stop{false};
  std::vector<std::thread> submitters;
  for (int s = 0; s < 2; ++s) {
    submitters.emplace_back([&, s] {
      std::uint64_t n = 0;
      while (!stop.load()) {
        pool.submit_named(s == 0 ? "a" : "b",
                          [n] {
                            if (n % 50 == 0) std::this_thread::sleep_for(200us);
                          })
            .get();
        ++n;
      }
    });
  }
  ee::MetricsServer server("127.0.0.1:0", registry);
  for (int i = 0; i < 20; ++i) {
    const std::string page = get_page(server, kOpenMetrics);
    for (const auto& e : exemplars(page, "executor_task_run_seconds", {"executor=\"busy\""})) {
      CHECK(e.value <= e.le);
      CHECK(e.value >= bound_below(e.le));
      CHECK((e.labels.at("task") == "a" || e.labels.at("task") == "b"));
      CHECK(all_digits(e.labels.at("task_id")));
    }
  }
  stop = true;
  for (auto& t : submitters) t.join();
  const auto text = prom::parse(get_page(server, "Accept: text/plain;version=0.0.4"));
  CHECK(ee_test::unaccounted(text, {{"executor", "busy"}, {"task", "a"}}) == 0);
}

TEST_CASE("A submit's trace ids and the thread's TraceContext reach the exemplars", "[exemplars]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_options(registry, "traced"));
  ee::MetricsServer server("127.0.0.1:0", registry);
  auto run_exemplar = [&](const std::string& task) {
    const auto run = exemplars(get_page(server, kOpenMetrics), "executor_task_run_seconds",
                               {"executor=\"traced\"", "task=\"" + task + "\""});
    REQUIRE(run.size() == 1);
    return run[0];
  };

  SECTION("per submit, printed back in lower case") {
    ee::SubmitOptions o;
    o.name = "per-submit";
    o.trace_id = "4BF92F3577B34DA6A3CE929D0E0E4736";
    o.span_id = "00f067aa0ba902b7";
    ee::TraceContext ignored("aaaa", "bbbb");  // the submit's own ids win
    pool.submit_with(o, [] {}).get();
    const Seen e = run_exemplar("per-submit");
    CHECK(e.labels.at("trace_id") == "4bf92f3577b34da6a3ce929d0e0e4736");
    CHECK(e.labels.at("span_id") == "00f067aa0ba902b7");
  }
  SECTION("from the innermost TraceContext of the submitting thread") {
    {
      ee::TraceContext outer("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
      {
        ee::TraceContext inner("00000000000000000000000000000abc");
        pool.submit_named("inner", [] {}).get();
      }
      pool.submit_named("outer", [] {}).get();
    }
    pool.submit_named("none", [] {}).get();
    const Seen inner = run_exemplar("inner");
    CHECK(inner.labels.at("trace_id") == "00000000000000000000000000000abc");
    CHECK(inner.labels.count("span_id") == 0);
    const Seen outer = run_exemplar("outer");
    CHECK(outer.labels.at("trace_id") == "0af7651916cd43dd8448eb211c80319c");
    CHECK(outer.labels.at("span_id") == "b7ad6b7169203331");
    const Seen none = run_exemplar("none");
    CHECK(none.labels.count("trace_id") == 0);
    CHECK(none.labels.count("span_id") == 0);
  }
  SECTION("ids that are not hex or too long are left out") {
    ee::SubmitOptions o;
    o.name = "bad ids";
    o.trace_id = std::string(33, 'a');  // one digit too many
    o.span_id = "zz\"\n";
    pool.submit_with(o, [] {}).get();
    ee::TraceContext bad("not hex", std::string(1000, 'f'));
    pool.submit_named("bad context", [] {}).get();
    for (const char* task : {"bad ids", "bad context"}) {
      const Seen e = run_exemplar(task);
      CHECK(e.labels.count("trace_id") == 0);
      CHECK(e.labels.count("span_id") == 0);
    }
  }
  SECTION("full ids beside a long task name stay within 128 characters") {
    ee::SubmitOptions o;
    o.name = std::string(200, 'n');
    o.trace_id = std::string(32, 'f');
    o.span_id = std::string(16, 'e');
    const int line = __LINE__ + 1;
    pool.submit_with(o, [] {}).get();
    const auto run = exemplars(get_page(server, kOpenMetrics), "executor_task_run_seconds",
                               {"executor=\"traced\"", "task=\"nnnn"});
    REQUIRE(run.size() == 1);
    CHECK(run[0].label_chars <= ee::exemplar_label_limit);
    CHECK(run[0].labels.at("trace_id") == o.trace_id);  // ids are never cut
    CHECK(run[0].labels.at("span_id") == o.span_id);
    // The name and the call site share what the ids leave, each keeping at least half.
    const std::string& task = run[0].labels.at("task");
    const std::string& site = run[0].labels.at("call_site");
    CHECK(task.size() >= 8);
    CHECK(task.find_first_not_of('n') == std::string::npos);
    CHECK(site.ends_with(":" + std::to_string(line)));  // cut at its start, the line stays
  }
}

TEST_CASE("The proxy's tasks carry the submitting thread's TraceContext", "[exemplars]") {
  struct ThreadPerTask {
    std::vector<std::thread> threads;
    std::future<void> submit(std::function<void()> f) {
      auto task = std::make_shared<std::packaged_task<void()>>(std::move(f));
      auto future = task->get_future();
      threads.emplace_back([task] { (*task)(); });
      return future;
    }
    void shutdown() {
      for (auto& t : threads) t.join();
      threads.clear();
    }
  };
  auto registry = std::make_shared<prometheus::Registry>();
  ee::InstrumentedExecutorProxy<ThreadPerTask> proxy(
      ThreadPerTask{}, ee::make_exporter_for<ThreadPerTask>("proxied", registry), 2);
  {
    ee::TraceContext traced("abc123", "def456");
    proxy.submit([] {}).get();
  }
  proxy.shutdown();
  const std::string page = ee::scrape_openmetrics(registry);
  INFO(page);
  const auto run = exemplars(page, "executor_task_run_seconds", {"executor=\"proxied\""});
  REQUIRE(run.size() == 1);
  CHECK(run[0].labels.at("trace_id") == "abc123");
  CHECK(run[0].labels.at("span_id") == "def456");
}
