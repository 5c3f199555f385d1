#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include <executor_exporter/metrics/registry.hpp>

namespace prometheus {
class Gateway;
}

namespace executor_exporter {

/// A push the Pushgateway did not accept (or could not be reached for).
class PushError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Settings of a MetricsPusher; every field has a default.
struct MetricsPusherOptions {
  /// The Pushgateway: a host name or address, optionally with `http://`/`https://`.
  std::string host = "127.0.0.1";
  std::uint16_t port = 9091;
  /// The `job` grouping label: letters, digits, `_`, `-` and `.` only, because it goes
  /// into the URL as it is.
  std::string job = "executor_exporter";
  /// More grouping labels (`instance`, a batch id...). Their values may be anything:
  /// they are sent base64url-encoded, which the Pushgateway decodes.
  std::map<std::string, std::string> grouping = {};
  /// What is pushed; default_registry() when null.
  std::shared_ptr<prometheus::Registry> registry = nullptr;
  /// How often the pusher's thread pushes; zero: only push() and the final push.
  std::chrono::milliseconds interval{10000};
  /// true: PUT, replacing every metric of the group (the exact state each time);
  /// false: POST, replacing only the families pushed.
  bool replace = true;
  /// Basic auth for the Pushgateway; empty: none.
  std::string username = {};
  std::string password = {};
  /// Receives the PushError of a failed push on the pusher's thread or in the
  /// destructor; stderr when empty.
  std::function<void(std::exception_ptr)> on_error = nullptr;
};

/// What a MetricsPusher has done so far.
struct MetricsPusherStats {
  std::uint64_t pushes = 0;    ///< accepted by the Pushgateway
  std::uint64_t failures = 0;  ///< refused or unreachable
  int last_status = 0;         ///< HTTP status of the last attempt; -1: no connection
};

/// Pushes a registry's metrics to a Prometheus Pushgateway, for batch jobs that may end
/// between two scrapes: on an interval from a thread of its own, on demand with push(),
/// and one last time when it is destroyed, so the job's final counts are never lost.
/// Each push folds every executor's shards first (make_collectable), so its values are
/// exact at one instant. Declare it before the executors of a batch job: it is then
/// destroyed after them and its final push sees every task they ran.
class MetricsPusher {
 public:
  /// Validates the options and starts the interval thread (if any); pushes nothing yet.
  /// Throws std::invalid_argument for a job or grouping label that cannot be sent.
  explicit MetricsPusher(MetricsPusherOptions options = {});
  MetricsPusher(const MetricsPusher&) = delete;
  MetricsPusher& operator=(const MetricsPusher&) = delete;
  /// Stops the thread and pushes a last time; a failure goes to on_error.
  ~MetricsPusher();

  /// Pushes now; throws PushError saying what the Pushgateway answered.
  void push();

  MetricsPusherStats stats() const;

 private:
  void run();
  void report(std::exception_ptr error) const;

  MetricsPusherOptions options_;
  std::shared_ptr<prometheus::Collectable> view_;
  std::unique_ptr<prometheus::Gateway> gateway_;
  mutable std::mutex mutex_;  // guards stats_, stopping_ and the gateway's use
  std::condition_variable wake_;
  MetricsPusherStats stats_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace executor_exporter
