#pragma once

#include <span>
#include <string>

#include <executor_exporter/events/task_event.hpp>

namespace executor_exporter {

/// Where an EventStream delivers events: StatsD, a database, a log. Each sink added to
/// a stream gets a thread and a bounded buffer of its own, so write() never runs on an
/// executor's thread and a slow sink delays nobody but itself; when its buffer is full
/// the oldest events are dropped and counted in executor_events_dropped_total{sink}.
/// write() may throw: the batch is lost, the error counted in
/// executor_event_sink_errors_total{sink} and handed to the stream's error handler, and
/// the sink keeps receiving later events.
class EventSink {
 public:
  virtual ~EventSink() = default;
  /// The `sink` label of its metrics; unique within a registry.
  virtual std::string name() const = 0;
  /// A batch of events, oldest first, on the sink's own thread.
  virtual void write(std::span<const TaskEvent> events) = 0;
  /// Called on the sink's thread about every EventStreamOptions::idle_interval when no
  /// event came, and once when the stream stops: flush what is batched.
  virtual void idle() {}
  /// Called once, from the thread destroying the stream, before it waits for the sink's
  /// thread to deliver what is left: a sink that retries (a database that is down) should
  /// leave its retry loop promptly, so that a stream's destructor never hangs on it.
  /// write() and idle() may still be called afterwards, with the events still buffered.
  virtual void stopping() noexcept {}
};

}  // namespace executor_exporter
