#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>

#include <executor_exporter/events/event_sink.hpp>

namespace executor_exporter {

/// Settings of a StatsdSink; every field has a default.
struct StatsdSinkOptions {
  /// Where the StatsD server or Datadog agent listens (a name or a numeric address).
  std::string host = "127.0.0.1";
  std::uint16_t port = 8125;
  /// Put in front of every metric name.
  std::string prefix = "executor.";
  /// true: DogStatsD tags (`|#executor:id,task:name`), which the Datadog agent and
  /// statsd >= 0.9 understand. false: plain StatsD, the labels folded into the name
  /// (`prefix<executor>.<task>.tasks.completed`).
  bool tags = true;
  /// Tags added to every line (`env:prod`), sanitised like the others.
  std::map<std::string, std::string> constant_tags = {};
  /// Share of task counts and timings sent (0, 1]; each sent line carries `|@rate` so
  /// the server scales it back. Gauges and worker events are always sent.
  double sample_rate = 1.0;
  /// How long lines may wait for a datagram to fill while events keep coming: the first
  /// write after it sends them, with the gauges. When the stream goes quiet, what is left
  /// waits for the sink's next idle() tick (EventStreamOptions::idle_interval, 1 s by
  /// default): lower that too for a shorter delay.
  std::chrono::milliseconds flush_interval{100};
  /// Largest datagram: lines are batched up to it. The default fits an IPv4 UDP
  /// datagram in a 1500-byte Ethernet frame, so nothing is fragmented.
  std::size_t max_datagram_bytes = 1432;
  /// The `sink` label of the stream's metrics.
  std::string name = "statsd";
};

/// Sends the task lifecycle to StatsD or a Datadog agent over UDP, as the celery
/// exporter's Datadog backend does: a count per event (`tasks.submitted`,
/// `tasks.completed`, `tasks.failed` with the exception's type, `tasks.rejected` with
/// the reason, `workers.stopped` with why, ...), timings of the queue wait and the run in
/// milliseconds (`task.wait`, `task.run`), and the gauges `tasks.queued` and
/// `tasks.running` as the sink counts them from the events it received (a dropped event
/// skews them; see executor_events_dropped_total), sent with every flush. Attach it to an
/// EventStream. Lines are packed into datagrams of at most max_datagram_bytes, sent when
/// full, at the first write after flush_interval and at the stream's idle tick (see
/// StatsdSinkOptions::flush_interval), and label values from users are sanitised so
/// that no name or tag can break the line protocol. UDP is fire-and-forget: a failed send
/// (nobody listening) makes write() throw once, counted by the stream.
class StatsdSink : public EventSink {
 public:
  /// Resolves the host and opens the socket; throws std::invalid_argument for options
  /// that cannot work and std::system_error when the host does not resolve.
  explicit StatsdSink(StatsdSinkOptions options = {});
  StatsdSink(const StatsdSink&) = delete;
  StatsdSink& operator=(const StatsdSink&) = delete;
  ~StatsdSink() override;

  std::string name() const override;
  void write(std::span<const TaskEvent> events) override;
  void idle() override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace executor_exporter
