#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace executor_exporter {

/// What happened to a task or a worker.
enum class EventKind : std::uint8_t {
  submitted,
  rejected,
  started,
  completed,
  failed,
  cancelled,
  expired,
  worker_started,
  worker_stopped,
};

/// The lowercase name of `kind` ("submitted", "worker_stopped", ...).
std::string_view to_string(EventKind kind) noexcept;

/// One transition, as a sink receives it: plain data that owns its strings, so a sink
/// may keep it. Times are nanoseconds since the Unix epoch (wall clock, converted from
/// the library's monotonic clock when the event was made); 0 where a stage was not
/// reached or not measured (see TaskInfo).
struct TaskEvent {
  EventKind kind = EventKind::submitted;
  std::string executor;       ///< the executor id (`executor` label)
  std::string executor_type;  ///< `executor_type` label
  std::string task;           ///< the task name (submit_named); empty when unnamed
  std::uint64_t task_id = 0;  ///< see TaskInfo::task_id; 0 for worker events
  std::uint64_t count = 1;    ///< tasks this event stands for (see TaskInfo::count)
  std::uint64_t at_unix_ns = 0;         ///< when the event happened
  std::uint64_t submitted_unix_ns = 0;  ///< when the task was accepted
  std::uint64_t started_unix_ns = 0;    ///< when it started running
  std::uint64_t finished_unix_ns = 0;   ///< when it returned or threw
  std::uint64_t wait_ns = 0;            ///< time queued (0: not measured)
  std::uint64_t run_ns = 0;             ///< time running (0: not measured)
  /// `failed`: the exception's type (demangled) and what(); `rejected`: the reason
  /// label (shutdown, queue_full, broken, error) in `reason`; `worker_stopped`: why
  /// (empty for a normal exit, else crashed, timeout, recycled).
  std::string error_type;
  std::string error_message;
  std::string reason;
  /// `submitted` and `rejected`: the TaskDescription in scope on the submitting thread
  /// (empty when none was).
  std::string description;
};

}  // namespace executor_exporter
