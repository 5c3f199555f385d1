// The flight recorder: each worker keeps its last tasks in a ring, dumped as Chrome /
// Perfetto trace JSON from /debug/executor/trace; the dump matches the tasks that ran.

#include <executor_exporter/executor_exporter.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "http_client.hpp"
#include "json.hpp"

namespace ee = executor_exporter;
namespace json = ee_test::json;
using namespace std::chrono_literals;

namespace {

std::uint64_t steady_us() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

// The dump served over HTTP by a MetricsServer with the flight recorder page.
json::Value fetch_trace() {
  ee::MetricsServerOptions options;
  options.bind_address = "127.0.0.1:0";
  ee::add_flight_recorder_page(options);
  ee::MetricsServer server(options);
  auto response = ee_test::http_get("127.0.0.1", server.port(), "/debug/executor/trace");
  REQUIRE(response.status == 200);
  CHECK_THAT(response.header("content-type"), Catch::StartsWith("application/json"));
  return json::parse(response.body);
}

// The complete events of one executor, by thread id, in the order of the document.
std::map<double, std::vector<const json::Value*>> slices_of(const json::Value& trace,
                                                            const std::string& executor) {
  std::map<double, std::vector<const json::Value*>> out;
  for (const auto& e : trace.at("traceEvents").array) {
    if (e.at("ph").str() != "X" || e.at("cat").str() == "mark") continue;
    if (e.at("args").at("executor").str() != executor) continue;
    out[e.at("tid").number].push_back(&e);
  }
  return out;
}

}  // namespace

TEST_CASE("the trace served over HTTP holds every task that ran, in order, with its times",
          "[flight]") {
  auto registry = std::make_shared<prometheus::Registry>();
  const std::uint64_t before = steady_us();
  const std::string hostile = "ev\"il\\ \n<script>\x01 caf\xc3\xa9";
  {
    ee::ThreadPoolOptions o;
    o.id = "recorded";
    o.thread_name_prefix = "rec";
    o.registry = registry;
    ee::ThreadPoolExecutor pool(1, o);
    for (int i = 0; i < 6; ++i) {
      pool.submit_named("step" + std::to_string(i), [] { std::this_thread::sleep_for(2ms); }).get();
    }
    auto failing = pool.submit_named(hostile, [] { throw std::runtime_error("no"); });
    CHECK_THROWS(failing.get());
    pool.submit([] {}).get();
    pool.wait();

    const auto trace = fetch_trace();
    const std::uint64_t after = steady_us();
    const auto threads = slices_of(trace, "recorded");
    REQUIRE(threads.size() == 1);  // one worker
    const auto& slices = threads.begin()->second;
    REQUIRE(slices.size() == 8);
    std::vector<std::string> names;
    for (const auto* e : slices) names.push_back(e->at("name").str());
    CHECK(names == std::vector<std::string>{"step0", "step1", "step2", "step3", "step4", "step5",
                                            hostile, "recorded"});
    double last_end = 0;
    for (std::size_t i = 0; i < slices.size(); ++i) {
      const auto& e = *slices[i];
      const double ts = e.at("ts").number;
      const double dur = e.at("dur").number;
      CHECK(ts >= static_cast<double>(before) - 50000);  // same clock, calibration slack
      CHECK(ts + dur <= static_cast<double>(after) + 50000);
      CHECK(ts >= last_end - 0.002);  // one worker: no overlap, in order (a ns of slack)
      last_end = ts + dur;
      if (i < 6) CHECK(dur >= 2000);  // each step slept 2 ms
      const auto& args = e.at("args");
      CHECK(args.at("wait_us").number >= 0);
      CHECK(args.at("result").str() == (i == 6 ? "failed" : "completed"));
      CHECK_THAT(args.at("call_site").str(), Catch::Contains("test_flight_recorder.cpp:"));
      CHECK(e.at("pid").number > 0);
      CHECK(e.at("cat").str() == "thread_pool");
    }
    CHECK(slices[6]->at("args").at("task").str() == hostile);
    CHECK(slices[7]->at("args").at("task").str().empty());
    // The worker's thread is named by a metadata event.
    bool named = false;
    for (const auto& e : trace.at("traceEvents").array) {
      if (e.at("ph").str() == "M" && e.at("name").str() == "thread_name" &&
          e.at("tid").number == threads.begin()->first) {
        named = e.at("args").at("name").str() == "rec-0";
      }
    }
    CHECK(named);
  }
}

TEST_CASE("the ring keeps the last N tasks of each worker, and 0 turns it off", "[flight]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolOptions o;
  o.id = "ring";
  o.registry = registry;
  o.exporter.flight_recorder_slices = 8;
  ee::ThreadPoolExecutor pool(1, o);
  for (int i = 0; i < 20; ++i) pool.submit_named("t" + std::to_string(i), [] {}).get();
  ee::ThreadPoolOptions off = o;
  off.id = "off";
  off.exporter.flight_recorder_slices = 0;
  ee::ThreadPoolExecutor quiet(1, off);
  for (int i = 0; i < 5; ++i) quiet.submit([] {}).get();

  const auto trace = json::parse(ee::flight_recorder_trace());
  const auto threads = slices_of(trace, "ring");
  REQUIRE(threads.size() == 1);
  std::vector<std::string> names;
  for (const auto* e : threads.begin()->second) names.push_back(e->at("name").str());
  CHECK(names == std::vector<std::string>{"t12", "t13", "t14", "t15", "t16", "t17", "t18", "t19"});
  CHECK(slices_of(trace, "off").empty());
}

TEST_CASE("two workers' slices land on two tracks and add up to the tasks run", "[flight]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolOptions o;
  o.id = "pair";
  o.registry = registry;
  ee::ThreadPoolExecutor pool(2, o);
  std::vector<ee::Future<void>> fs;
  for (int i = 0; i < 40; ++i) fs.push_back(pool.submit([] { std::this_thread::sleep_for(1ms); }));
  for (auto& f : fs) f.get();
  const auto trace = json::parse(ee::flight_recorder_trace());  // slices_of points into it
  const auto threads = slices_of(trace, "pair");
  std::size_t total = 0;
  for (const auto& [tid, slices] : threads) {
    total += slices.size();
    for (std::size_t i = 1; i < slices.size(); ++i) {
      // Back to back, one task's end is the next one's start (doubles: a ns of slack).
      CHECK(slices[i]->at("ts").number >=
            slices[i - 1]->at("ts").number + slices[i - 1]->at("dur").number - 0.002);
    }
  }
  CHECK(total == 40);
  CHECK(threads.size() <= 2);
}

TEST_CASE("a traced task's marks are nested inside its slice on its thread", "[flight]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolOptions o;
  o.id = "marked";
  o.registry = registry;
  ee::ThreadPoolExecutor pool(1, o);
  pool.submit_traced("checkout",
                     [](ee::Trace& trace) {
                       std::this_thread::sleep_for(2ms);
                       trace.mark("reserve");
                       std::this_thread::sleep_for(3ms);
                       trace.mark("charge");
                     })
      .get();
  pool.wait();
  const auto trace = json::parse(ee::flight_recorder_trace());
  const auto threads = slices_of(trace, "marked");
  REQUIRE(threads.size() == 1);
  REQUIRE(threads.begin()->second.size() == 1);
  const auto& task = *threads.begin()->second.front();
  const double begin = task.at("ts").number;
  const double end = begin + task.at("dur").number;
  std::vector<std::string> actions;
  for (const auto& e : trace.at("traceEvents").array) {
    if (e.at("ph").str() != "X" || e.at("cat").str() != "mark") continue;
    if (e.at("args").at("executor").str() != "marked") continue;
    actions.push_back(e.at("name").str());
    CHECK(e.at("args").at("scope").str() == "checkout");
    CHECK(e.at("tid").number == task.at("tid").number);
    CHECK(e.at("ts").number >= begin - 0.002);
    CHECK(e.at("ts").number + e.at("dur").number <= end + 0.002);
    CHECK(e.at("dur").number >= (actions.size() == 1 ? 2000 : 3000));
  }
  CHECK(actions == std::vector<std::string>{"reserve", "charge"});
}
