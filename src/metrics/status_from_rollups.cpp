#include <executor_exporter/metrics/rollups.hpp>
#include <executor_exporter/metrics/status_page.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace executor_exporter {

namespace {

// A key segment with the rollups' escapes undone (%2E is '.', %25 is '%').
std::string decode(std::string_view segment) {
  std::string out;
  for (std::size_t i = 0; i < segment.size(); ++i) {
    if (segment[i] == '%' && segment.substr(i, 3) == "%2E") {
      out += '.';
      i += 2;
    } else if (segment[i] == '%' && segment.substr(i, 3) == "%25") {
      out += '%';
      i += 2;
    } else {
      out += segment[i];
    }
  }
  return out;
}

std::vector<std::string_view> segments(std::string_view key) {
  std::vector<std::string_view> out;
  while (true) {
    const auto dot = key.find('.');
    out.push_back(key.substr(0, dot));
    if (dot == std::string_view::npos) return out;
    key.remove_prefix(dot + 1);
  }
}

using Line = std::map<std::int64_t, double>;  // bucket start -> value

// Per-second rates of a counter's buckets; the bucket still filling is divided by the
// time it has run so far, so the newest point is not half the truth.
void add_rate(Line& line, const std::vector<RollupPoint>& points, std::int64_t width,
              std::int64_t now) {
  for (const auto& p : points) {
    const auto elapsed = std::clamp<std::int64_t>(now - p.start, 1, width);
    line[p.start] += p.value / static_cast<double>(elapsed);
  }
}

void add_value(Line& line, const std::vector<RollupPoint>& points) {
  for (const auto& p : points) line[p.start] += p.value;
}

std::vector<std::array<double, 2>> to_points(const Line& line) {
  std::vector<std::array<double, 2>> out;
  out.reserve(line.size());
  for (const auto& [t, v] : line) out.push_back({static_cast<double>(t), v});
  return out;
}

struct Lines {
  Line submitted, completed, failed, rejected, queued, capacity, workers, max_workers;
  Line wait_p50, wait_p95, wait_p99, run_p50, run_p95, run_p99;
};

void add_percentiles(Line& p50, Line& p95, Line& p99, const std::vector<RollupPoint>& points) {
  for (const auto& p : points) {
    if (p.count == 0 || std::isnan(p.p50)) continue;
    p50[p.start] = p.p50;
    p95[p.start] = p.p95;
    p99[p.start] = p.p99;
  }
}

Resolution parse(std::string_view name) {
  for (const Resolution r : all_resolutions) {
    if (to_string(r) == name) return r;
  }
  return Resolution::minute;
}

}  // namespace

StatusSource status_source(std::shared_ptr<const Rollups> rollups) {
  return [rollups = std::move(rollups)](std::string_view resolution_name) {
    const Resolution resolution = parse(resolution_name);
    const std::int64_t width = width_seconds(resolution);
    const std::int64_t now = rollups->now_seconds();
    std::map<std::string, Lines> by_executor;
    for (const auto& [key, series] : rollups->get_metrics("executor")) {
      const auto s = segments(key);
      if (s.size() < 3) continue;
      const auto found = series.points.find(resolution);
      if (found == series.points.end()) continue;
      const auto& points = found->second;
      Lines& l = by_executor[decode(s[1])];
      // executor.<id>.<metric>[.<label values>] or executor.<id>.task.<name>.<metric>...:
      // a named task counts only in its own series, so its counts add to the pool's.
      const bool task = s.size() >= 5 && s[2] == "task";
      const std::string_view metric = task ? s[4] : s[2];
      if (metric == "tasks_submitted") add_rate(l.submitted, points, width, now);
      if (metric == "tasks_completed") add_rate(l.completed, points, width, now);
      if (metric == "tasks_failed") add_rate(l.failed, points, width, now);
      if (metric == "tasks_rejected") add_rate(l.rejected, points, width, now);
      if (metric == "tasks_queued") add_value(l.queued, points);
      if (task) continue;  // the rest are the pool's own series
      if (metric == "queue_capacity") add_value(l.capacity, points);
      if (metric == "workers") add_value(l.workers, points);
      if (metric == "max_workers") add_value(l.max_workers, points);
      if (metric == "wait_seconds") add_percentiles(l.wait_p50, l.wait_p95, l.wait_p99, points);
      if (metric == "run_seconds" && s.size() > 3 && s[3] == "completed") {
        add_percentiles(l.run_p50, l.run_p95, l.run_p99, points);
      }
    }
    std::vector<StatusExecutor> out;
    for (const auto& [id, l] : by_executor) {
      StatusExecutor e{id, {}, {}};
      e.panels.push_back({"throughput",
                          {{"submitted", to_points(l.submitted)},
                           {"completed", to_points(l.completed)}}});
      StatusPanel queue{"queue", {{"queued", to_points(l.queued)}}};
      if (std::any_of(l.capacity.begin(), l.capacity.end(), [](auto& p) { return p.second > 0; })) {
        queue.series.emplace_back("capacity", to_points(l.capacity));
      }
      e.panels.push_back(std::move(queue));
      e.panels.push_back({"wait",
                          {{"p50", to_points(l.wait_p50)},
                           {"p95", to_points(l.wait_p95)},
                           {"p99", to_points(l.wait_p99)}}});
      e.panels.push_back({"run",
                          {{"p50", to_points(l.run_p50)},
                           {"p95", to_points(l.run_p95)},
                           {"p99", to_points(l.run_p99)}}});
      e.panels.push_back({"workers",
                          {{"workers", to_points(l.workers)},
                           {"max", to_points(l.max_workers)}}});
      e.panels.push_back({"errors",
                          {{"failed", to_points(l.failed)}, {"rejected", to_points(l.rejected)}}});
      out.push_back(std::move(e));
    }
    return out;
  };
}

}  // namespace executor_exporter
