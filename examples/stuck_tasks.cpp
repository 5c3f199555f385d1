// A stuck task found by name: a pool whose one task waits on a lock nobody releases.
// The gauges show it at the next scrape, the watchdog logs where it was submitted and
// dumps the flight recorder, which chrome://tracing or ui.perfetto.dev open.
//
//   example_stuck_tasks [trace-directory]   (default: the current directory)

#include <executor_exporter/executor_exporter.hpp>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <latch>
#include <string>
#include <thread>

namespace ee = executor_exporter;
using namespace std::chrono_literals;

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : ".";
  ee::ThreadPoolOptions options;
  options.id = "orders";
  options.exporter.stuck_after = 500ms;  // the default is a minute
  ee::ThreadPoolExecutor pool(2, options);

  ee::WatchdogOptions watch;
  watch.interval = 100ms;
  watch.dump_directory = dir;  // the flight recorder, written when a task is found stuck
  watch.on_stuck = [](const ee::StuckTask& t) {
    std::printf("callback: %s ran %.1f s, submitted at line %u\n", t.task.c_str(),
                std::chrono::duration<double>(t.age).count(), t.call_site.line());
  };
  ee::Watchdog watchdog(watch);

  // Some ordinary work first, so the trace has something around the stuck task.
  for (int i = 0; i < 20; ++i) {
    pool.submit_named(i % 2 ? "price" : "validate",
                      [i] { std::this_thread::sleep_for(std::chrono::milliseconds(2 + i % 5)); })
        .get();
  }
  std::latch never_released(1);
  auto stuck = pool.submit_named("charge_card", [&] { never_released.wait(); });
  for (int i = 0; i < 10; ++i) {
    pool.submit_named("ship", [] { std::this_thread::sleep_for(3ms); }).get();
  }
  std::this_thread::sleep_for(800ms);  // the watchdog logs it and dumps the trace

  // The same task on the metrics page: executor_tasks_stuck and its oldest running age.
  const std::string page = ee::scrape_text(ee::default_registry());
  for (std::size_t at = 0, end; at < page.size(); at = end + 1) {
    end = page.find('\n', at);
    if (end == std::string::npos) end = page.size();
    const std::string line = page.substr(at, end - at);
    if (line.rfind("executor_tasks_stuck{", 0) == 0 ||
        line.rfind("executor_task_oldest_running_seconds{", 0) == 0) {
      std::printf("%s\n", line.c_str());
    }
  }
  never_released.count_down();
  stuck.get();
  return 0;
}
