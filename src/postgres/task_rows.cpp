#include "task_rows.hpp"

#include <map>
#include <utility>

namespace executor_exporter::postgres {

std::string_view status_of(EventKind kind) noexcept {
  // The final statuses are the events' own names; the two stages before read as states.
  if (kind == EventKind::worker_started || kind == EventKind::worker_stopped) return {};
  if (kind == EventKind::submitted) return "queued";
  if (kind == EventKind::started) return "running";
  return to_string(kind);
}

int status_rank(std::string_view status) noexcept {
  if (status == "queued") return 0;
  if (status == "running") return 1;
  return 2;
}

namespace {

void take(std::string& into, const std::string& from) {
  if (!from.empty()) into = from;
}

void take(std::uint64_t& into, std::uint64_t from) {
  if (from != 0) into = from;
}

void merge(TaskRow& row, const TaskEvent& e, std::string_view status) {
  take(row.executor_type, e.executor_type);
  take(row.name, e.task);
  if (row.status.empty() || status_rank(status) >= status_rank(row.status)) row.status = status;
  take(row.submitted_unix_ns, e.submitted_unix_ns);
  take(row.started_unix_ns, e.started_unix_ns);
  take(row.finished_unix_ns, e.finished_unix_ns);
  take(row.wait_ns, e.wait_ns);
  take(row.run_ns, e.run_ns);
  take(row.error_type, e.error_type);
  take(row.error_message, e.error_message);
  take(row.reason, e.reason);
  take(row.description, e.description);
}

}  // namespace

std::vector<TaskRow> collapse(std::span<const TaskEvent> events) {
  std::vector<TaskRow> rows;
  std::map<std::pair<std::string_view, std::uint64_t>, std::size_t> index;
  // Keys view the events' strings, which outlive this call; rows may move.
  for (const auto& e : events) {
    const std::string_view status = status_of(e.kind);
    if (status.empty() || e.task_id == 0) continue;
    const auto [it, added] = index.try_emplace({e.executor, e.task_id}, rows.size());
    if (added) {
      rows.emplace_back();
      rows.back().executor = e.executor;
      rows.back().task_id = e.task_id;
    }
    merge(rows[it->second], e, status);
  }
  return rows;
}

}  // namespace executor_exporter::postgres
