// End-to-end tests: the demo binary (examples/demo.cpp) serves metrics over HTTP that promtool
// accepts and that a real Prometheus server scrapes.
//
// The tool paths come from CMake (tests/CMakeLists.txt): EE_DEMO_BINARY, EE_PROMTOOL,
// EE_PROMETHEUS. A tool missing at configure time makes its test fail, not skip:
// scripts/install-deps.sh installs all of them.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <csignal>

#include <executor_exporter/executor_exporter.hpp>
#include <executor_exporter/process/process_pool_executor.hpp>

#include <prometheus/exposer.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cpu_burn.hpp"
#include "free_port.hpp"
#include "http_client.hpp"
#include "json.hpp"
#include "prom_text.hpp"
#include "subprocess.hpp"
#include "temp_dir.hpp"
#include "wait_until.hpp"

using namespace std::chrono_literals;
namespace ee = executor_exporter;
namespace prom = ee_test::prom;

#ifndef EE_DEMO_BINARY
#error "EE_DEMO_BINARY must be defined by the build (tests/CMakeLists.txt)"
#endif
#ifndef EE_PROMTOOL
#error "EE_PROMTOOL must be defined by the build (tests/CMakeLists.txt)"
#endif
#ifndef EE_PROMETHEUS
#error "EE_PROMETHEUS must be defined by the build (tests/CMakeLists.txt)"
#endif

namespace {

// Sanitizer builds start slowly; these are upper bounds, not expectations.
constexpr auto kStartupTimeout = 60s;
constexpr auto kExitTimeout = 30s;

const prom::Labels kDemoLabels = {{"executor", "demo"}, {"executor_type", "thread_pool"}};
constexpr const char* kSubmitted = "executor_tasks_submitted_total";

std::string require_tool(const char* path, const char* what) {
  std::string p = path;
  if (p.empty()) {
    FAIL(what << " was not found when the build was configured. Install it "
                 "(scripts/install-deps.sh) and re-run CMake.");
  }
  if (::access(p.c_str(), X_OK) != 0) {
    FAIL(what << " '" << p << "' is not an executable file (build the target / reinstall).");
  }
  return p;
}

std::string tail(const std::string& s, std::size_t n = 4000) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Starts the demo on 127.0.0.1:<port> and waits for its "Serving metrics on ..." line.
std::unique_ptr<ee_test::Subprocess> start_demo(int port) {
  const std::string demo = require_tool(EE_DEMO_BINARY, "The demo binary (executor_exporter_demo)");
  auto proc = std::make_unique<ee_test::Subprocess>(
      std::vector<std::string>{demo, "--port", std::to_string(port), "--bind", "127.0.0.1"});
  const auto line = proc->read_stdout_line(kStartupTimeout);
  INFO("demo stderr:\n" << tail(proc->stderr_text()));
  REQUIRE(line.has_value());
  const std::string expected =
      "Serving metrics on http://127.0.0.1:" + std::to_string(port) + "/metrics";
  REQUIRE(*line == expected);
  return proc;
}

ee_test::HttpResponse scrape(int port) {
  auto r = ee_test::http_get("127.0.0.1", port, "/metrics", 10s);
  INFO("body:\n" << tail(r.body));
  REQUIRE(r.status == 200);
  return r;
}

}  // namespace

TEST_CASE("demo serves metrics and promtool finds nothing wrong", "[e2e]") {
  const std::string promtool = require_tool(EE_PROMTOOL, "promtool");
  const int port = ee_test::free_tcp_port();
  auto demo = start_demo(port);

  // The executor families may appear a moment after the "Serving" line (once the workload has
  // started); wait for them. Every page must parse.
  ee_test::HttpResponse first;
  prom::Page page;
  std::string parse_error;
  const bool present = ee_test::wait_until(
      [&] {
        first = scrape(port);
        try {
          page = prom::parse(first.body);
          parse_error.clear();
        } catch (const std::exception& e) {
          parse_error = e.what();
          return true;  // an invalid page fails the test at once (below)
        }
        return prom::count(page, kSubmitted, kDemoLabels) > 0;
      },
      20s, 100ms);
  {
    INFO("page:\n" << tail(first.body));
    REQUIRE(parse_error == "");
    REQUIRE(present);
    CHECK(first.header("content-type").find("text/plain") != std::string::npos);
    const auto* family = page.family(kSubmitted);
    REQUIRE(family != nullptr);
    CHECK(family->type == "counter");
    CHECK_FALSE(family->help.empty());
    REQUIRE(prom::count(page, kSubmitted, kDemoLabels) == 1);
  }
  const double before = prom::value(page, kSubmitted, kDemoLabels);

  // The counter grows while the workload runs.
  double after = before;
  std::string last_error;
  const bool grew = ee_test::wait_until(
      [&] {
        try {
          after = prom::value(prom::parse(scrape(port).body), kSubmitted, kDemoLabels);
        } catch (const std::exception& e) {
          last_error = e.what();
        }
        return after > before;
      },
      20s, 200ms);
  INFO("before=" << before << " after=" << after << " last error: " << last_error);
  CHECK(grew);

  // promtool lints the page (exit code 0 = no problems).
  const auto page_text = scrape(port).body;
  const auto check = ee_test::run_and_capture({promtool, "check", "metrics"}, page_text, 60s);
  {
    INFO("promtool check metrics exit code " << check.exit_code << "\nstdout:\n"
                                             << check.out << "\nstderr:\n"
                                             << check.err << "\npage:\n"
                                             << tail(page_text));
    CHECK_FALSE(check.timed_out);
    CHECK(check.exit_code == 0);
  }

  // Ctrl-C stops the demo cleanly.
  demo->send_signal(SIGINT);
  const auto status = demo->wait_for_exit(kExitTimeout);
  demo->wait_for_output_eof(2s);
  INFO("demo stderr:\n" << tail(demo->stderr_text()));
  REQUIRE(status.has_value());
  CHECK(*status == 0);
}

namespace {

// A process pool task that holds its worker for `ms` milliseconds.
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

std::string url_encode(std::string_view s) {
  std::string out;
  for (const unsigned char c : s) {
    if (std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

// The series a PromQL query returns from the Prometheus at `port` now (empty on any error,
// with the reason in `last`).
// `at`: an evaluation time (Unix seconds) so that several queries see the same instant.
std::vector<ee_test::json::Value> query(int port, const std::string& promql, std::string& last,
                                        std::optional<double> at = std::nullopt) {
  try {
    std::string path = "/api/v1/query?query=" + url_encode(promql);
    if (at) path += "&time=" + std::to_string(*at);
    const auto r = ee_test::http_get("127.0.0.1", port, path, 5s);
    last = promql + " -> " + std::to_string(r.status) + " " + r.body;
    if (r.status != 200) return {};
    const auto doc = ee_test::json::parse(r.body);
    if (doc.at("status").str() != "success") return {};
    return doc.at("data").at("result").array;
  } catch (const std::exception& e) {
    last = promql + " -> error: " + e.what();
    return {};
  }
}

double sample_value(const ee_test::json::Value& series) {
  return std::stod(series.at("value").at(1).str());
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t len = c < 0x80         ? 1
                            : (c >> 5) == 6  ? 2
                            : (c >> 4) == 14 ? 3
                            : (c >> 3) == 30 ? 4
                                             : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    }
    i += len;
  }
  return true;
}

}  // namespace

// One Prometheus server, started once, scrapes three targets the way users serve metrics:
// the demo (MetricsServer, a separate process; two of them, a fleet whose series add up
// in PromQL), a registry registered the plain
// prometheus-cpp way with an Exposer (truthful only thanks to the background fold), and a
// MetricsServer whose labels came from hostile, non-UTF-8 user input.
TEST_CASE("the real Prometheus server scrapes the demo, a plain registry and hostile labels",
          "[e2e]") {
  const std::string prometheus = require_tool(EE_PROMETHEUS, "The Prometheus server");
  const int demo_port = ee_test::free_tcp_port();
  auto demo = start_demo(demo_port);
  const int second_demo_port = ee_test::free_tcp_port();
  auto second_demo = start_demo(second_demo_port);

  // A plainly registered registry with a live pool: 3 workers, 67 tasks done, one running.
  auto plain_registry = std::make_shared<prometheus::Registry>();
  // The process pool (used below) forks its zygote first, before the servers and pools
  // below start threads: a fork while another thread holds a lock (the allocator's, under
  // ASan) leaves it locked in the children. Only the background fold thread runs yet.
  ee::ProcessPoolOptions pp_options;
  pp_options.max_workers = 2;
  pp_options.thread_check = ee::ThreadCheck::allow;
  pp_options.registry = plain_registry;
  pp_options.id = "pp_e2e";
  pp_options.max_tasks_per_child = 2;
  pp_options.exporter.task_cpu_time = true;
  pp_options.exporter.peak_window = std::chrono::minutes(10);
  ee::ProcessPoolExecutor process_pool(pp_options);
  prometheus::Exposer plain_exposer("127.0.0.1:0");
  plain_exposer.RegisterCollectable(plain_registry);
  ee::ThreadPoolOptions plain_options;
  plain_options.registry = plain_registry;
  plain_options.id = "plain_e2e";
  plain_options.exporter.stuck_after = std::chrono::milliseconds(500);  // the blocked task
  plain_options.exporter.peak_window = std::chrono::minutes(10);        // outlasts the whole test
  ee::ThreadPoolExecutor plain_pool(3, plain_options);
  std::promise<void> release;
  auto gate = release.get_future().share();
  auto blocked = plain_pool.submit([gate] { gate.wait(); });
  for (int i = 0; i < 25; ++i) plain_pool.submit([] {}).get();
  {
    // A burst that queues and drains before Prometheus even starts: 40 tasks behind the
    // other two workers, held; executor_tasks_queued_max keeps it for the peak window.
    std::promise<void> open_burst;
    auto burst_gate = open_burst.get_future().share();
    std::atomic<int> held{0};
    std::vector<ee::Future<void>> burst;
    for (int i = 0; i < 2; ++i) {
      burst.push_back(plain_pool.submit([&held, burst_gate] {
        ++held;
        burst_gate.wait();
      }));
    }
    REQUIRE(ee_test::wait_until([&] { return held.load() == 2; }, 10s));
    for (int i = 0; i < 40; ++i) burst.push_back(plain_pool.submit([] {}));
    open_burst.set_value();
    for (auto& f : burst) f.get();
  }
  plain_pool.resize(4);  // counted as scale events with reason="manual"
  plain_pool.resize(3);

  // A process pool on the same plain registry: 11 tasks on 2 workers recycled every 2 tasks,
  // 4 of which burn 100 ms of CPU each; two sleepers run side by side with 5 tasks queued
  // behind them. All before Prometheus starts: the CPU counter must keep what recycled
  // workers used, and the peaks must keep the burst.
  {
    std::vector<ee::Future<int>> tasks;
    for (int i = 0; i < 4; ++i) tasks.push_back(process_pool.submit(ee_test::burn_ms, 100));
    for (auto& t : tasks) t.get();
    tasks.clear();
    for (int i = 0; i < 2; ++i) tasks.push_back(process_pool.submit(sleep_ms, 300));
    for (int i = 0; i < 5; ++i) tasks.push_back(process_pool.submit(sleep_ms, 0));
    for (auto& t : tasks) t.get();
  }

  // Labels from user input that is not UTF-8: an id, a task name, a trace action.
  auto hostile_registry = std::make_shared<prometheus::Registry>();
  ee::MetricsServer hostile_server("127.0.0.1:0", hostile_registry);
  ee::ThreadPoolOptions hostile_options;
  hostile_options.registry = hostile_registry;
  hostile_options.id = "bad\xff\xfe id";
  ee::ThreadPoolExecutor hostile_pool(1, hostile_options);
  hostile_pool.submit_named("task \xc3(", [] {}).get();
  hostile_pool.submit([] {}).get();
  // A task with trace ids, whose exemplar Prometheus stores (exemplar-storage, below).
  constexpr const char* kTraceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  constexpr const char* kSpanId = "00f067aa0ba902b7";
  {
    ee::SubmitOptions traced;
    traced.name = "traced \xff";
    traced.trace_id = kTraceId;
    traced.span_id = kSpanId;
    hostile_pool.submit_with(traced, [] { std::this_thread::sleep_for(20ms); }).get();
  }

  ee_test::TempDir dir("ee_prometheus");
  const auto config = dir / "prometheus.yml";
  {
    std::ofstream out(config);
    out << "global:\n"
           "  scrape_interval: 1s\n"
           "  scrape_timeout: 1s\n"
           "  evaluation_interval: 1s\n"
           "scrape_configs:\n";
    const std::pair<const char*, std::string> jobs[] = {
        {"executor_exporter_demo", "'127.0.0.1:" + std::to_string(demo_port) +
                                       "', '127.0.0.1:" + std::to_string(second_demo_port) + "'"},
        {"plain", "'127.0.0.1:" + std::to_string(plain_exposer.GetListeningPorts().front()) + "'"},
        {"hostile", "'127.0.0.1:" + std::to_string(hostile_server.port()) + "'"}};
    for (const auto& [job, targets] : jobs) {
      out << "  - job_name: " << job << "\n    static_configs:\n      - targets: [" << targets
          << "]\n";
    }
    REQUIRE(out.good());
  }
  std::filesystem::create_directories(dir / "data");

  const int prom_port = ee_test::free_tcp_port();
  ee_test::Subprocess server(
      {prometheus, "--config.file=" + config.string(),
       "--storage.tsdb.path=" + (dir / "data").string(), "--storage.tsdb.retention.time=1h",
       "--web.listen-address=127.0.0.1:" + std::to_string(prom_port),
       "--web.console.templates=" + (dir / "consoles").string(),
       "--web.console.libraries=" + (dir / "console_libraries").string(),
       "--query.lookback-delta=30s", "--log.level=info", "--enable-feature=exemplar-storage"});

  std::string last;
  auto one_value = [&](const std::string& promql) -> std::optional<double> {
    if (!server.running()) return std::nullopt;
    const auto result = query(prom_port, promql, last);
    if (result.size() != 1) return std::nullopt;
    return sample_value(result.front());
  };
  auto diagnose = [&](const std::string& what) {
    std::string targets;
    try {
      targets = ee_test::http_get("127.0.0.1", prom_port, "/api/v1/targets", 5s).body;
    } catch (const std::exception& e) {
      targets = e.what();
    }
    INFO("prometheus running: " << server.running() << "\nlast query answer: " << last
                                << "\ntargets: " << targets << "\nprometheus log:\n"
                                << tail(server.stderr_text()) << "\ndemo stderr:\n"
                                << tail(demo->stderr_text()));
    FAIL(what);
  };

  // The demo: its task counter grows in Prometheus.
  if (!ee_test::wait_until(
          [&] {
            const auto v = one_value("sum(" + std::string(kSubmitted) +
                                     "{executor=\"demo\",job=\"executor_exporter_demo\"})");
            return v && *v > 0;
          },
          40s, 500ms)) {
    diagnose(std::string("Prometheus did not report ") + kSubmitted + "{executor=\"demo\"} > 0");
  }

  // The fleet: both demos' series, one per instance, add up per executor in PromQL, and
  // their histograms merge into one fleet-wide percentile (README, "A fleet").
  const std::string fleet = "{job=\"executor_exporter_demo\",executor=\"demo\"}";
  if (!ee_test::wait_until(
          [&] {
            return query(prom_port, "rate(" + std::string(kSubmitted) + fleet + "[1m]) > 0", last)
                       .size() == 2;
          },
          40s, 500ms)) {
    diagnose("Prometheus did not get a rate from both demo instances");
  }
  {
    // One instant for every query, so that the sum and its parts are comparable exactly.
    const double at =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    const auto per_instance =
        query(prom_port, "rate(" + std::string(kSubmitted) + fleet + "[1m])", last, at);
    REQUIRE(per_instance.size() == 2);
    const auto summed = query(prom_port,
                              "sum by (executor) (rate(" + std::string(kSubmitted) +
                                  "{job=\"executor_exporter_demo\"}[1m]))",
                              last, at);
    double demo_rate = -1;
    for (const auto& series : summed) {
      if (series.at("metric").at("executor").str() == "demo") demo_rate = sample_value(series);
    }
    INFO(last);
    CHECK(demo_rate > 0);
    CHECK(demo_rate == Approx(sample_value(per_instance[0]) + sample_value(per_instance[1])));
    const auto p99 = query(prom_port,
                           "histogram_quantile(0.99, sum by (executor, le) "
                           "(rate(executor_task_wait_seconds_bucket" +
                               fleet + "[1m])))",
                           last, at);
    REQUIRE(p99.size() == 1);
    CHECK(sample_value(p99.front()) >= 0);
    CHECK(sample_value(p99.front()) < 10);
    // Both instances fed it: the bucket series come from two targets.
    CHECK(query(prom_port, "count by (instance) (executor_task_wait_seconds_bucket" + fleet + ")",
                last, at)
              .size() == 2);
  }

  // The plain registry: the live pool's true numbers, not the zeros of an unfolded registry.
  if (!ee_test::wait_until(
          [&] {
            const auto workers =
                one_value("executor_max_workers{job=\"plain\",executor=\"plain_e2e\"}");
            const auto submitted =
                one_value(std::string(kSubmitted) + "{job=\"plain\",executor=\"plain_e2e\"}");
            const auto running =
                one_value("executor_tasks_running{job=\"plain\",executor=\"plain_e2e\"}");
            return workers == 3.0 && submitted == 68.0 && running == 1.0;
          },
          40s, 500ms)) {
    diagnose(
        "Prometheus did not see the plain registry's live pool (3 workers, 68 tasks, 1 running)");
  }
  // The burst that came and went before the first scrape: the gauges show none of it, the
  // peaks all of it (the 40 queued, the three workers busy at once).
  if (!ee_test::wait_until(
          [&] {
            const auto queued =
                one_value("executor_tasks_queued{job=\"plain\",executor=\"plain_e2e\"}");
            const auto queued_max =
                one_value("executor_tasks_queued_max{job=\"plain\",executor=\"plain_e2e\"}");
            const auto running_max =
                one_value("executor_tasks_running_max{job=\"plain\",executor=\"plain_e2e\"}");
            return queued == 0.0 && queued_max == 40.0 && running_max == 3.0;
          },
          40s, 500ms)) {
    diagnose("Prometheus did not see the plain pool's burst in the peaks (40 queued, 3 running)");
  }
  // The process pool: its workers' CPU time (recycled ones included, never reset), one CPU
  // observation per task beside its run time, and the burst in the peaks.
  if (!ee_test::wait_until(
          [&] {
            const std::string pp = "{job=\"plain\",executor=\"pp_e2e\"}";
            const auto cpu = one_value("executor_worker_cpu_seconds_total" + pp);
            const auto cpu_count = one_value("sum(executor_task_cpu_seconds_count" + pp + ")");
            const auto run_count = one_value("sum(executor_task_run_seconds_count" + pp + ")");
            const auto cpu_sum = one_value("sum(executor_task_cpu_seconds_sum" + pp + ")");
            const auto recycled = one_value(
                "executor_worker_restarts_total{job=\"plain\",executor=\"pp_e2e\","
                "reason=\"recycled\"}");
            const auto resets =
                one_value("resets(executor_worker_cpu_seconds_total" + pp + "[10m])");
            const auto queued = one_value("executor_tasks_queued" + pp);
            const auto queued_max = one_value("executor_tasks_queued_max" + pp);
            const auto running_max = one_value("executor_tasks_running_max" + pp);
            return cpu && *cpu >= 0.4 && cpu_count == 11.0 && run_count == 11.0 && cpu_sum &&
                   *cpu_sum >= 0.4 && recycled && *recycled > 0 && resets == 0.0 && queued == 0.0 &&
                   queued_max && *queued_max >= 5 && *queued_max <= 7 && running_max == 2.0;
          },
          40s, 500ms)) {
    diagnose(
        "Prometheus did not see the process pool's CPU time (>= 0.4 s, 11 observations), its "
        "recycled workers without a counter reset, or its burst in the peaks");
  }
  // The same pool's blocked task is stuck (past 500 ms), its age grows at scrape, and the
  // exact averages and the workers' CPU time arrive as Prometheus series.
  if (!ee_test::wait_until(
          [&] {
            const auto stuck =
                one_value("executor_tasks_stuck{job=\"plain\",executor=\"plain_e2e\"}");
            const auto oldest = one_value(
                "executor_task_oldest_running_seconds{job=\"plain\",executor=\"plain_e2e\"}");
            const auto running_s = one_value(
                "executor_tasks_running_seconds_total{job=\"plain\",executor=\"plain_e2e\"}");
            const auto cpu = one_value(
                "executor_worker_cpu_seconds_total{job=\"plain\",executor=\"plain_e2e\"}");
            const auto up = one_value(
                "executor_scale_events_total{job=\"plain\",executor=\"plain_e2e\",direction=\"up\","
                "reason=\"manual\"}");
            const auto down = one_value(
                "executor_scale_events_total{job=\"plain\",executor=\"plain_e2e\",direction="
                "\"down\",reason=\"manual\"}");
            return stuck == 1.0 && oldest && *oldest > 0.5 && running_s && *running_s > 0.5 &&
                   cpu && *cpu > 0 && up == 1.0 && down == 1.0;
          },
          40s, 500ms)) {
    diagnose(
        "Prometheus did not see the plain pool's stuck task, running seconds, CPU time and "
        "manual scale events");
  }

  // The hostile labels: the target is up, its series (the executor's, and two named
  // tasks') arrived with valid UTF-8 labels, and
  // Prometheus negotiated OpenMetrics with the library's server.
  if (!ee_test::wait_until(
          [&] {
            const auto up = one_value("up{job=\"hostile\"}");
            const auto named =
                query(prom_port, std::string(kSubmitted) + "{job=\"hostile\"} > 0", last);
            return up == 1.0 && named.size() == 3;
          },
          40s, 500ms)) {
    diagnose("Prometheus did not ingest the hostile target's three task series");
  }
  for (const auto& series : query(prom_port, std::string(kSubmitted) + "{job=\"hostile\"}", last)) {
    const auto& metric = series.at("metric");
    const std::string id = metric.at("executor").str();
    INFO(id);
    CHECK(valid_utf8(id));
    CHECK(id.rfind("bad", 0) == 0);
  }
  CHECK(hostile_server.stats().pages_openmetrics > 0);
  CHECK(hostile_server.stats().pages_text == 0);

  // Exemplars: Prometheus stored the traced task's run exemplar, with its name (made
  // valid UTF-8), id and trace ids (docs/exemplars.md).
  std::optional<ee_test::json::Value> exemplar;
  auto find_exemplar = [&] {
    const double now =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    try {
      const std::string path = "/api/v1/query_exemplars?query=" +
                               url_encode("executor_task_run_seconds_bucket{job=\"hostile\"}") +
                               "&start=" + std::to_string(now - 3600) +
                               "&end=" + std::to_string(now + 60);
      const auto r = ee_test::http_get("127.0.0.1", prom_port, path, 5s);
      last = path + " -> " + std::to_string(r.status) + " " + r.body;
      if (r.status != 200) return false;
      const auto doc = ee_test::json::parse(r.body);
      for (const auto& series : doc.at("data").array) {
        for (const auto& e : series.at("exemplars").array) {
          const auto* trace = e.at("labels").find("trace_id");
          if (trace != nullptr && trace->str() == kTraceId) exemplar = e;
        }
      }
    } catch (const std::exception& e) {
      last = std::string("query_exemplars -> error: ") + e.what();
    }
    return exemplar.has_value();
  };
  if (!ee_test::wait_until(find_exemplar, 40s, 500ms)) {
    diagnose("Prometheus returned no exemplar with the traced task's trace_id");
  }
  {
    const auto& labels = exemplar->at("labels");
    INFO(last);
    CHECK(labels.at("span_id").str() == kSpanId);
    CHECK(labels.at("task").str().rfind("traced ", 0) == 0);
    CHECK(valid_utf8(labels.at("task").str()));
    CHECK(labels.at("task_id").str().find_first_not_of("0123456789") == std::string::npos);
    CHECK(std::stod(exemplar->at("value").str()) >= 0.02);
  }

  release.set_value();
  blocked.get();
  // Both processes are stopped (and the temp dir removed) by RAII; stop them explicitly too so
  // that a failure to stop is visible.
  CHECK(server.terminate(20s) == 0);
  for (auto* d : {demo.get(), second_demo.get()}) {
    d->send_signal(SIGTERM);
    const auto status = d->wait_for_exit(kExitTimeout);
    REQUIRE(status.has_value());
    CHECK(*status == 0);
  }
}

TEST_CASE("a port already in use gives a clear error", "[e2e]") {
  const std::string demo = require_tool(EE_DEMO_BINARY, "The demo binary (executor_exporter_demo)");

  // Hold 127.0.0.1:<port> bound and listening ourselves.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd, 4) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const int port = ntohs(addr.sin_port);

  ee_test::Subprocess proc({demo, "--port", std::to_string(port), "--bind", "127.0.0.1"});
  const auto status = proc.wait_for_exit(kStartupTimeout);
  proc.wait_for_output_eof(5s);
  const std::string err = proc.stderr_text();
  INFO("demo stdout:\n" << tail(proc.stdout_text()) << "\ndemo stderr:\n" << tail(err));
  REQUIRE(status.has_value());  // it must not keep running
  CHECK(*status != 0);
  CHECK(*status > 0);  // a normal exit with an error code, not a crash
  const std::string e = lower(err);
  CHECK((e.find("in use") != std::string::npos || e.find("could not bind") != std::string::npos));
}
