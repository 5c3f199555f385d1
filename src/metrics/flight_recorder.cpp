#include <executor_exporter/detail/clock.hpp>
#include <executor_exporter/metrics/detail/executor_metrics.hpp>
#include <executor_exporter/metrics/detail/label_value.hpp>
#include <executor_exporter/metrics/flight_recorder.hpp>

#include "json_text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

namespace executor_exporter {

namespace {

using detail::append_json_string;

// Microseconds with nanosecond digits: the trace format's unit.
std::string micros(std::uint64_t ns) { return fmt::format("{}.{:03}", ns / 1000, ns % 1000); }

}  // namespace

std::string flight_recorder_trace() {
  const auto pid = static_cast<long>(::getpid());
  std::string out = R"({"displayTimeUnit":"ms","traceEvents":[)";
  out += fmt::format(R"({{"name":"process_name","ph":"M","pid":{},"tid":0,"args":{{"name":)", pid);
  append_json_string(out, "executor-exporter flight recorder");
  out += "}}";
  std::set<std::uint64_t> named_threads;
  auto name_thread = [&](std::uint64_t tid, const std::string& name) {
    if (!named_threads.insert(tid).second) return;
    out += fmt::format(R"(,{{"name":"thread_name","ph":"M","pid":{},"tid":{},"args":{{"name":)",
                       pid, tid);
    append_json_string(out, name);
    out += "}}";
  };
  const std::uint64_t now = detail::now_ns();
  detail::ExecutorMetrics::for_each_live([&](detail::ExecutorMetrics& m) {
    auto append_slice = [&](std::uint64_t tid, const detail::TaskSlice& s, const char* result) {
      const auto* series = static_cast<const detail::ExecutorMetrics*>(s.series);
      const std::string& task = series != nullptr ? series->task() : std::string();
      out += R"(,{"name":)";
      append_json_string(out, task.empty() ? m.id() : task);
      out += R"(,"cat":)";
      append_json_string(out, m.type());
      out += fmt::format(R"(,"ph":"X","ts":{},"dur":{},"pid":{},"tid":{},"args":{{)",
                         micros(s.start_ns), micros(s.end_ns - std::min(s.end_ns, s.start_ns)), pid,
                         tid);
      out += R"("executor":)";
      append_json_string(out, m.id());
      out += R"(,"task":)";
      append_json_string(out, task);
      out += fmt::format(R"(,"task_id":{},"result":"{}")", s.id, result);
      if (s.submit_ns != 0) {
        out +=
            fmt::format(R"(,"wait_us":{})", micros(s.start_ns - std::min(s.start_ns, s.submit_ns)));
      }
      if (s.where.line() != 0) {
        out += R"(,"call_site":)";
        append_json_string(out, fmt::format("{}:{}", s.where.file_name(), s.where.line()));
        out += R"(,"function":)";
        append_json_string(out, s.where.function_name());
      }
      out += "}}";
    };
    for (auto& thread : m.flight_slices()) {
      name_thread(thread.tid, thread.thread);
      for (const auto& s : thread.slices)
        append_slice(thread.tid, s, s.ok ? "completed" : "failed");
    }
    // The tasks running now, up to this instant: a dump taken for a stuck task shows it.
    for (const auto& r : m.running_tasks()) {
      name_thread(r.tid, r.thread);
      detail::TaskSlice s;
      s.start_ns = r.start_ns;
      s.end_ns = std::max(now, r.start_ns);
      s.series = r.series;
      s.where = r.where;
      s.id = r.id;
      append_slice(r.tid, s, "running");
    }
    // Trace marks, each the interval since the previous mark: nested inside its task.
    for (const auto& mark : m.flight_marks()) {
      out += R"(,{"name":)";
      append_json_string(out, mark.action);
      out += fmt::format(R"(,"cat":"mark","ph":"X","ts":{},"dur":{},"pid":{},"tid":{},"args":{{)",
                         micros(mark.from_ns),
                         micros(mark.to_ns - std::min(mark.to_ns, mark.from_ns)), pid, mark.tid);
      out += R"("executor":)";
      append_json_string(out, m.id());
      out += R"(,"scope":)";
      append_json_string(out, mark.scope);
      out += "}}";
    }
  });
  out += "]}";
  return out;
}

void add_flight_recorder_page(MetricsServerOptions& options, const std::string& path) {
  options.pages[path] = [](const PageRequest&) {
    return PageResponse{200, "application/json", flight_recorder_trace()};
  };
}

}  // namespace executor_exporter
