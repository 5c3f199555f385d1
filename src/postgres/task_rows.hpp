#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <executor_exporter/events/task_event.hpp>

namespace executor_exporter::postgres {

/// What a batch of events says about one task, merged: the row the history upserts.
/// Empty strings and zero times mean "this batch did not say", never "erase".
struct TaskRow {
  std::string executor;
  std::string executor_type;
  std::string name;
  std::uint64_t task_id = 0;
  std::string_view status;  // one of the literals of status_of()
  std::uint64_t submitted_unix_ns = 0;
  std::uint64_t started_unix_ns = 0;
  std::uint64_t finished_unix_ns = 0;
  std::uint64_t wait_ns = 0;
  std::uint64_t run_ns = 0;
  std::string error_type;
  std::string error_message;
  std::string reason;
  std::string description;
};

/// The history's status for a task event: queued, running, or the final one
/// (completed, failed, cancelled, expired, rejected); empty for worker events.
std::string_view status_of(EventKind kind) noexcept;

/// How far along a status is: queued 0, running 1, final 2. Events of one task may
/// arrive out of order (a worker can report `started` before the submitter reports
/// `submitted`), so a status only ever replaces one of a lower or equal rank.
int status_rank(std::string_view status) noexcept;

/// One row per (executor, task id) in the order tasks first appear, so one statement
/// never touches a row twice (PostgreSQL refuses that in an upsert). Worker events and
/// tasks without an id are left out: they have no key to file them under.
std::vector<TaskRow> collapse(std::span<const TaskEvent> events);

}  // namespace executor_exporter::postgres
