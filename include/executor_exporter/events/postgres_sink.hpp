#pragma once

// The PostgreSQL task history exists only when the library was built with libpq
// (CMake option EXECUTOR_EXPORTER_POSTGRES), which defines EXECUTOR_EXPORTER_HAS_POSTGRES
// for the library and everything linking it: guard uses of this header with that macro.
#ifdef EXECUTOR_EXPORTER_HAS_POSTGRES

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include <executor_exporter/events/event_sink.hpp>
#include <executor_exporter/events/task_event.hpp>
#include <executor_exporter/metrics/registry.hpp>

namespace prometheus {
class Counter;
}

namespace executor_exporter {

namespace postgres {
class Connection;
struct TaskRow;
}  // namespace postgres

/// Settings of a PostgresSink. Every field has a default, so designated initializers may
/// name only the ones that differ: `PostgresSinkOptions{.dsn = "host=db dbname=ops"}`.
struct PostgresSinkOptions {
  /// A libpq connection string ("host=... dbname=..." or "postgresql://..."). Empty: libpq
  /// reads the standard PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD... variables, so a
  /// deployment configures the sink the way it configures psql.
  std::string dsn = {};
  /// The history table, created by the sink's migrations. Lowercase letters, digits and
  /// underscores, starting with a letter or underscore, at most 40 characters: it is
  /// pasted into SQL as an identifier, so anything else is refused.
  std::string table = "executor_task_history";
  /// The `sink` label of its error counter (and its name in an EventStream).
  std::string name = "postgres";
  /// Most rows in one INSERT statement (one round trip); a larger write is sent in several.
  /// 1 to 4000 (PostgreSQL takes at most 65535 parameters in a statement).
  std::size_t batch_size = 1000;
  /// Pause after the first failed attempt to reach the server; doubled after each
  /// further failure up to reconnect_max.
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{30000};
  /// Where executor_event_sink_errors_total{sink} counts failed attempts; use the
  /// stream's registry so they add to the same series. default_registry() when null.
  std::shared_ptr<prometheus::Registry> registry = nullptr;
  /// Receives each failed attempt (the server down, a lost connection); stderr when empty.
  std::function<void(std::exception_ptr)> on_error = nullptr;
};

/// Keeps a task history in PostgreSQL: one row per task, keyed by the process
/// (hostname:pid), the executor id and the task id, upserted by every event of the task,
/// so the row tells where a task is now (queued, running, completed, failed, cancelled,
/// expired, rejected), when it was submitted, started and finished, its wait and run
/// times, the exception of a failure, the reason of a rejection and its TaskDescription.
/// Add it to an EventStream: it writes on the stream's sink thread, a batch of events
/// collapsed to one row per task and sent in one statement. It connects on its first
/// batch and brings the schema up to date then (versioned migrations under an advisory
/// lock, safe when several processes start at once). When the server is unreachable,
/// write() keeps its batch and retries with exponential back-off, counting each failure,
/// while the stream's bounded buffer absorbs (and past its capacity drops) what comes
/// meanwhile; once the stream stops (stopping()) it tries once more and gives up.
/// Worker events and tasks without an id (submitted before the stream was attached) have
/// no row and are skipped.
class PostgresSink : public EventSink {
 public:
  /// Checks the options (std::invalid_argument for a bad table name, batch size or
  /// back-off); does not connect, so a server that is down at start-up delays nothing.
  explicit PostgresSink(PostgresSinkOptions options = {});
  PostgresSink(const PostgresSink&) = delete;
  PostgresSink& operator=(const PostgresSink&) = delete;
  ~PostgresSink() override;

  std::string name() const override;
  /// Upserts the batch's tasks; returns once they are stored. Retries a lost connection
  /// (see the class comment); throws, losing the batch, when the server refuses the
  /// statement itself, since sending it again would fail again.
  void write(std::span<const TaskEvent> events) override;
  /// Ends any back-off wait now; from then on each batch gets one attempt.
  void stopping() noexcept override;

 private:
  void deliver(const std::vector<postgres::TaskRow>& rows);
  void connect();
  void send(const std::vector<postgres::TaskRow>& rows, std::size_t& sent);
  void report(std::exception_ptr error);
  void pause(std::chrono::milliseconds delay);

  PostgresSinkOptions options_;
  std::string process_;  // hostname:pid, part of each row's key
  prometheus::Counter& errors_;
  std::unique_ptr<postgres::Connection> connection_;  // the sink's thread only
  bool gave_up_ = false;                              // the sink's thread only
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<bool> stopping_{false};
};

}  // namespace executor_exporter

#endif  // EXECUTOR_EXPORTER_HAS_POSTGRES
