#include <executor_exporter/detail/clock.hpp>
#include <executor_exporter/detail/thread_name.hpp>
#include <executor_exporter/metrics/detail/executor_metrics.hpp>
#include <executor_exporter/metrics/detail/label_value.hpp>
#include <executor_exporter/metrics/flight_recorder.hpp>
#include <executor_exporter/metrics/watchdog.hpp>

#include <fmt/format.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <unistd.h>

namespace executor_exporter {

namespace {

std::atomic<bool> watchdog_exists{false};

// A running task: executor, thread, start (or task id), pid.
using TaskKey = std::tuple<const void*, std::uint64_t, std::uint64_t, std::int64_t>;

}  // namespace

struct Watchdog::State {
  WatchdogOptions options;
  std::mutex mutex;  // guards stop and reported; one round at a time
  std::condition_variable wake;
  bool stop = false;
  std::set<TaskKey> reported;  // stuck tasks already reported that still run
  std::uint64_t dumps = 0;
  std::thread thread;

  void round() {
    std::lock_guard lock(mutex);
    std::vector<StuckTask> found;
    std::set<TaskKey> still;
    const std::uint64_t now = detail::now_ns();
    detail::ExecutorMetrics::for_each_live([&](detail::ExecutorMetrics& m) {
      const auto threshold = m.options().stuck_after;
      for (auto& r : m.running_tasks()) {
        const std::uint64_t age = now > r.start_ns ? now - r.start_ns : 0;
        if (static_cast<std::int64_t>(age) <= threshold.count()) continue;
        // A process pool's start is converted from another clock at each read, so its
        // task id (never 0 there) tells its tasks apart; a thread's start is exact.
        const TaskKey key{&m, r.tid, r.pid != 0 && r.id != 0 ? r.id : r.start_ns, r.pid};
        still.insert(key);
        if (reported.count(key) != 0) continue;
        StuckTask t;
        t.executor = m.id();
        t.executor_type = m.type();
        if (r.series != nullptr) t.task = r.series->task();
        t.task_id = r.id;
        t.thread = std::move(r.thread);
        t.thread_id = r.tid;
        t.pid = r.pid;
        t.age = std::chrono::nanoseconds(age);
        t.call_site = r.where;
        found.push_back(std::move(t));
      }
    });
    for (const auto& key : still) reported.insert(key);
    std::erase_if(reported, [&](const TaskKey& k) { return still.count(k) == 0; });
    if (found.empty()) return;
    if (!options.dump_directory.empty() || options.on_dump) {
      const std::string trace = flight_recorder_trace();
      if (!options.dump_directory.empty()) {
        const std::string file = fmt::format("{}/executor-trace-{}-{}.json", options.dump_directory,
                                             ::getpid(), ++dumps);
        std::ofstream out(file, std::ios::binary | std::ios::trunc);
        out << trace;
        if (out.good()) {
          for (auto& t : found) t.trace_file = file;
        }
      }
      if (options.on_dump) call([&] { options.on_dump(trace); });
    }
    for (const auto& t : found) {
      const std::string line = format_stuck_task(t);
      if (options.log) {
        call([&] { options.log(line); });
      } else {
        std::fprintf(stderr, "%s\n", line.c_str());
      }
      if (options.on_stuck) call([&] { options.on_stuck(t); });
    }
  }

  // A user callback that throws must not end the watchdog (or the process).
  template <class Fn>
  static void call(Fn&& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "executor_exporter: a watchdog callback threw: %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "executor_exporter: a watchdog callback threw\n");
    }
  }

  void run() {
    detail::set_thread_name("ee-watchdog");
    std::unique_lock lock(mutex);
    while (!stop) {
      wake.wait_for(lock, options.interval, [&] { return stop; });
      if (stop) break;
      lock.unlock();
      round();
      lock.lock();
    }
  }
};

Watchdog::Watchdog(WatchdogOptions options) : state_(std::make_unique<State>()) {
  if (watchdog_exists.exchange(true)) {
    throw std::logic_error("executor_exporter: one Watchdog per process (one already runs)");
  }
  if (options.interval <= std::chrono::milliseconds::zero()) {
    options.interval = std::chrono::milliseconds(1);
  }
  state_->options = std::move(options);
  try {
    state_->thread = std::thread([s = state_.get()] { s->run(); });
  } catch (...) {
    watchdog_exists.store(false);
    throw;
  }
}

Watchdog::~Watchdog() {
  {
    std::lock_guard lock(state_->mutex);
    state_->stop = true;
  }
  state_->wake.notify_all();
  if (state_->thread.joinable()) state_->thread.join();
  watchdog_exists.store(false);
}

void Watchdog::check_now() { state_->round(); }

std::string format_stuck_task(const StuckTask& t) {
  auto quoted = [](std::string_view s) {
    std::string out = "\"";
    for (const char c : detail::sanitize_label_value(s)) {
      if (c == '"' || c == '\\') out += '\\';
      if (c == '\n') {
        out += "\\n";
      } else {
        out += c;
      }
    }
    return out + "\"";
  };
  std::string line = fmt::format(
      "executor_exporter: stuck task: executor={} type={} task={} thread={} tid={} age={:.3f}s",
      quoted(t.executor), quoted(t.executor_type), quoted(t.task), quoted(t.thread), t.thread_id,
      std::chrono::duration<double>(t.age).count());
  if (t.pid != 0) line += fmt::format(" pid={}", t.pid);
  if (t.call_site.line() != 0) {
    line += fmt::format(" call_site={}:{} function={}", t.call_site.file_name(), t.call_site.line(),
                        quoted(t.call_site.function_name()));
  } else {
    line += " call_site=unknown";
  }
  if (!t.trace_file.empty()) line += " trace=" + t.trace_file;
  return line;
}

}  // namespace executor_exporter
