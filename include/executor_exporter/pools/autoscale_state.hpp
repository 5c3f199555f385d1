#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>

#include <executor_exporter/pools/autoscale_options.hpp>

namespace executor_exporter {

/// What the autoscaler last saw and decided, for a human asking why the pool has the size
/// it has (ThreadPoolExecutor::autoscale_state()).
struct AutoscaleState {
  /// What the last interval's signals called for.
  enum class Decision {
    none,  ///< no interval has been read yet (or autoscaling is off)
    hold,  ///< nothing to change, or a signal not held long enough, or cooling down
    up,    ///< the pool grew
    down,  ///< the pool shrank
  };
  /// Whether the pool has an autoscaler.
  bool enabled = false;
  /// The worker count the pool is configured for now.
  std::size_t workers = 0;
  /// Wait p99 of the last interval in seconds (interpolated in the wait histogram's
  /// buckets); NaN when no task started in it.
  double wait_p99_seconds = std::numeric_limits<double>::quiet_NaN();
  /// Busy time over worker time in the last interval (can pass 1 briefly after a shrink).
  double utilization = 0;
  /// Intervals the controller has read.
  std::uint64_t intervals = 0;
  /// The last interval's decision.
  Decision decision = Decision::none;
  /// The signal behind the last change (up or down); manual after a manual resize.
  ScaleReason reason = ScaleReason::manual;
  /// Changes made by the autoscaler so far, and when the last change (of any kind) was.
  std::uint64_t changes = 0;
  std::chrono::steady_clock::time_point last_change{};
};

}  // namespace executor_exporter
