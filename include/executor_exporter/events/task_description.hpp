#pragma once

#include <string>
#include <string_view>

namespace executor_exporter {

/// Describes the tasks that this thread submits while the object lives, for event sinks
/// that keep a history (TaskEvent::description, the PostgreSQL sink's `description`
/// column): typically what the task's arguments were, which a std::function cannot show.
/// The text travels on the `submitted` and `rejected` events only, so it costs nothing
/// when no EventStream is attached and nothing on the worker. Scopes nest: the innermost
/// one wins, and the previous one is back when it ends.
///
///     {
///       executor_exporter::TaskDescription described(fmt::format("resize {}", path));
///       pool.submit_named("resize", [path] { resize(path); });
///     }
class TaskDescription {
 public:
  explicit TaskDescription(std::string text);
  TaskDescription(const TaskDescription&) = delete;
  TaskDescription& operator=(const TaskDescription&) = delete;
  ~TaskDescription();

  /// The text of the innermost scope alive on this thread; empty when there is none.
  static std::string_view current() noexcept;

 private:
  std::string text_;
  const TaskDescription* previous_;
};

}  // namespace executor_exporter
