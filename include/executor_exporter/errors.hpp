#pragma once

#include <stdexcept>
#include <string>

namespace executor_exporter {

/// Base of every error this library raises, so callers can catch the family at once.
class ExecutorError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A submit was refused. Every refusal is also counted in executor_tasks_rejected_total.
class RejectedError : public ExecutorError {
 public:
  using ExecutorError::ExecutorError;
};

/// Raised by submit after shutdown() began; the task was not accepted.
class ExecutorShutdownError : public RejectedError {
 public:
  explicit ExecutorShutdownError(const std::string& executor)
      : RejectedError("executor '" + executor + "' is shut down: it accepts no new tasks") {}
};

/// Raised by a future's get() when its task was cancelled before it started.
class CancelledError : public ExecutorError {
 public:
  CancelledError() : ExecutorError("task was cancelled before it started") {}
};

/// The executor can no longer run tasks (for instance a worker initializer threw);
/// pending and later tasks fail with this error, like Python's BrokenExecutor.
class BrokenExecutorError : public ExecutorError {
 public:
  using ExecutorError::ExecutorError;
};

/// A bounded wait on results (map with a timeout, as_completed) ran out of time.
class TimeoutError : public ExecutorError {
 public:
  using ExecutorError::ExecutorError;
};

}  // namespace executor_exporter

namespace executor_exporter {

/// The metrics endpoint could not listen on the requested address (often: port in use).
class BindError : public ExecutorError {
 public:
  using ExecutorError::ExecutorError;
};

}  // namespace executor_exporter
