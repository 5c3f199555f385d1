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

/// Raised by submit when the executor's bounded queue is full and its policy says to
/// reject (or a blocking submit timed out); counted with reason="queue_full".
class QueueFullError : public RejectedError {
 public:
  explicit QueueFullError(const std::string& executor)
      : RejectedError("executor '" + executor + "' has a full queue: the task was not accepted") {}
  /// With the reason it could not wait for room.
  QueueFullError(const std::string& executor, const std::string& why)
      : RejectedError("executor '" + executor + "' has a full queue: the task was not accepted: " +
                      why) {}
};

/// Raised by a future's get() when its task was still queued past its deadline and so
/// never ran; counted in executor_tasks_expired_total.
class TaskExpiredError : public ExecutorError {
 public:
  TaskExpiredError() : ExecutorError("task expired in the queue before it started") {}
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

namespace executor_exporter {

/// A task of a ProcessPoolExecutor threw in its worker process. Only the exception's
/// type name and what() cross the process boundary; both are kept here.
class ProcessTaskError : public ExecutorError {
 public:
  ProcessTaskError(std::string type_name, std::string what)
      : ExecutorError("task raised " + type_name + (what.empty() ? "" : ": " + what)),
        type_name_(std::move(type_name)),
        what_(std::move(what)) {}
  /// The demangled type of the original exception ("std::runtime_error").
  const std::string& type_name() const noexcept { return type_name_; }
  /// The original exception's what() (empty for exceptions not derived from std::exception).
  const std::string& original_what() const noexcept { return what_; }

 private:
  std::string type_name_;
  std::string what_;
};

/// The worker process running the task died (a signal, exit(), a memory limit breach, or a
/// malformed reply); the message names the signal or exit status. Only that task fails;
/// the pool replaces the worker.
class WorkerCrashedError : public ExecutorError {
 public:
  using ExecutorError::ExecutorError;
};

/// The task ran past the process pool's task timeout; its worker was killed and replaced.
class TaskTimeoutError : public ExecutorError {
 public:
  using ExecutorError::ExecutorError;
};

/// A ProcessPoolExecutor task's arguments encode to more than
/// ProcessPoolOptions::max_message_bytes: the task was not accepted (counted as rejected,
/// reason="error"). A result too large to send back arrives as a ProcessTaskError whose
/// type_name() names this class; only that task fails.
class MessageTooLargeError : public RejectedError {
 public:
  using RejectedError::RejectedError;
};

/// A ProcessPoolExecutor was asked to fork while other threads run and its thread_check
/// policy is ThreadCheck::throw_.
class ForkSafetyError : public ExecutorError {
 public:
  using ExecutorError::ExecutorError;
};

}  // namespace executor_exporter
