#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <source_location>
#include <string>
#include <string_view>

namespace executor_exporter {

/// A task found running longer than its executor's stuck threshold
/// (ExporterOptions::stuck_after), as the Watchdog reports it.
struct StuckTask {
  std::string executor;            ///< the executor label
  std::string executor_type;       ///< thread_pool, proxy, process_pool, ...
  std::string task;                ///< its name (submit_named), empty for an unnamed task
  std::uint64_t task_id = 0;       ///< its observer id; 0 when no observer was attached
  std::string thread;              ///< the name of the thread running it
  std::uint64_t thread_id = 0;     ///< that thread's kernel id (the process pool: its worker's pid)
  std::int64_t pid = 0;            ///< a process pool's worker pid; 0 for a thread
  std::chrono::nanoseconds age{};  ///< how long it has run so far
  std::source_location call_site{};  ///< where it was submitted (line 0 when unknown)
  std::string trace_file;            ///< where the flight recorder was dumped for it (or empty)
};

/// Settings of a Watchdog; every field has a default.
struct WatchdogOptions {
  /// How often the running tasks of every executor are looked at.
  std::chrono::milliseconds interval = std::chrono::seconds(1);
  /// Called once per stuck task (on the watchdog's thread), when it is first found.
  std::function<void(const StuckTask&)> on_stuck;
  /// Receives the one log line per stuck task (format_stuck_task()); stderr when empty.
  std::function<void(std::string_view line)> log;
  /// When not empty, the flight recorder (flight_recorder_trace()) is written there as
  /// executor-trace-<pid>-<n>.json whenever a round finds new stuck tasks.
  std::string dump_directory;
  /// Also handed the flight recorder's dump whenever a round finds new stuck tasks.
  std::function<void(const std::string& trace_json)> on_dump;
};

/// The stuck-task watchdog: one thread (at most one Watchdog per process: a second one
/// throws std::logic_error) that every interval reads what each executor's workers
/// publish about the task they run now (a few stores per task start, read without
/// stopping them) and reports each task running longer than its executor's
/// ExporterOptions::stuck_after once: one log line naming the executor, the task, the
/// worker thread, its age and the submit's call site, the user's callback, and a dump
/// of the flight recorder. Off unless you make one; the executor_tasks_stuck and
/// executor_task_oldest_running_seconds gauges need no watchdog.
class Watchdog {
 public:
  explicit Watchdog(WatchdogOptions options = {});
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  /// Stops and joins the thread.
  ~Watchdog();

  /// Runs one round now, on the calling thread (tests, or a program's own schedule).
  void check_now();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// The watchdog's log line for `t`, e.g. `executor_exporter: stuck task: executor="db"
/// type="thread_pool" task="flush" thread="db-0" tid=4711 age=12.003s
/// call_site=src/flush.cpp:42 function="void flush()"`.
std::string format_stuck_task(const StuckTask& t);

}  // namespace executor_exporter
