#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <executor_exporter/events/event_sink.hpp>
#include <executor_exporter/events/task_event.hpp>
#include <executor_exporter/metrics/registry.hpp>
#include <executor_exporter/metrics/task_observer.hpp>

namespace executor_exporter {

/// Which events a sink receives; an empty set means every value.
struct EventFilter {
  // Default member initializers let designated initializers name only some fields.
  std::set<EventKind> kinds = {};
  std::set<std::string, std::less<>> executors = {};  ///< executor ids
  std::set<std::string, std::less<>> tasks = {};      ///< task names ("" selects unnamed tasks)

  /// Whether `e` passes.
  bool matches(const TaskEvent& e) const;
};

/// Settings of an EventStream; every field has a default.
struct EventStreamOptions {
  /// Events each sink's buffer holds; past it the oldest are dropped (and counted).
  std::size_t buffer_capacity = 65536;
  /// Most events handed to one write().
  std::size_t max_batch = 1024;
  /// How often an idle sink's idle() runs.
  std::chrono::milliseconds idle_interval{1000};
  /// Where executor_events_total, executor_events_dropped_total and
  /// executor_event_sink_errors_total are registered; default_registry() when null.
  std::shared_ptr<prometheus::Registry> registry = nullptr;
  /// Receives what a sink's write() or idle() throws; stderr when empty.
  std::function<void(std::exception_ptr)> on_error = nullptr;
};

/// The task lifecycle as a stream of events, for sinks beyond Prometheus. An EventStream
/// is a TaskObserver: attach it to any executor (an executor's add_observer or the
/// `observers` option of ThreadPoolOptions, ProxyOptions, ProcessPoolOptions), and every
/// transition of its tasks and workers becomes a TaskEvent, copied to the buffer of each
/// sink whose filter it passes. Each sink drains its buffer on a thread of its own, so
/// executors never wait for a sink, and a full buffer drops its oldest events (counted),
/// never blocks. Executors without an attached stream pay nothing; with one attached,
/// each transition costs building one event and a short lock per matching sink. The
/// destructor delivers what the buffers hold, then stops the sinks' threads.
class EventStream : public TaskObserver {
 public:
  explicit EventStream(EventStreamOptions options = {});
  EventStream(const EventStream&) = delete;
  EventStream& operator=(const EventStream&) = delete;
  ~EventStream() override;

  /// Starts delivering to `sink` the events that pass `filter`, from the next event on.
  /// Throws std::invalid_argument when a sink of the same name is already attached, or
  /// when 32 are.
  void add_sink(std::shared_ptr<EventSink> sink, EventFilter filter = {});

  /// Waits until every event made so far has been handed to its sinks (or dropped), up
  /// to `timeout`; true when they were. For tests and orderly shutdowns.
  bool flush(std::chrono::milliseconds timeout = std::chrono::seconds(10));

  void on_submitted(const TaskInfo& task) noexcept override;
  void on_rejected(const TaskInfo& task, RejectReason reason) noexcept override;
  void on_started(const TaskInfo& task) noexcept override;
  void on_finished(const TaskInfo& task, std::exception_ptr error) noexcept override;
  void on_cancelled(const TaskInfo& task) noexcept override;
  void on_expired(const TaskInfo& task) noexcept override;
  void on_worker_started(const WorkerInfo& worker) noexcept override;
  void on_worker_stopped(const WorkerInfo& worker) noexcept override;

 private:
  class Subscription;
  void publish(TaskEvent&& event) noexcept;
  TaskEvent task_event(EventKind kind, const TaskInfo& task) const;
  TaskEvent worker_event(EventKind kind, const WorkerInfo& worker) const;

  EventStreamOptions options_;
  std::mutex mutex_;  // guards subscriptions_ (the list, not the buffers) and adding
  std::vector<std::unique_ptr<Subscription>> subscriptions_;
  // What publish() reads without a lock: sinks are only ever added (until the destructor,
  // which no publish can race, since executors hold the stream), so a slot once filled
  // stays valid and a count released after it publishes it.
  std::array<std::atomic<Subscription*>, 32> published_{};
  std::atomic<std::size_t> published_count_{0};
};

}  // namespace executor_exporter
