#pragma once

#include <chrono>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace executor_exporter {

/// Why the worker count changed: the `reason` label of executor_scale_events_total, in the
/// catalog's order (manual, wait, utilization, idle).
enum class ScaleReason {
  manual,       ///< scale_up, scale_down or resize
  wait,         ///< the autoscaler: wait p99 above the target
  utilization,  ///< the autoscaler: busy above the high-water mark
  idle,         ///< the autoscaler: busy below the low-water mark and waits short
};

/// The label value of `reason`.
constexpr std::string_view scale_reason_name(ScaleReason reason) noexcept {
  switch (reason) {
    case ScaleReason::manual:
      return "manual";
    case ScaleReason::wait:
      return "wait";
    case ScaleReason::utilization:
      return "utilization";
    case ScaleReason::idle:
      return "idle";
  }
  return "manual";
}

/// Settings of ThreadPoolOptions::autoscale: a controller that grows the pool while its own
/// tasks wait too long or its workers are nearly always busy, and shrinks it while they are
/// mostly idle, between min_workers and max_workers. Every `interval` it reads, from the
/// pool's own metrics, the wait p99 and the utilization (busy time over worker time) of that
/// interval. A signal must hold for several intervals in a row before it acts (up_after,
/// down_after), the two utilization marks leave a dead band between them, and after any change
/// (its own or a manual resize) the controller waits `cooldown` before the next: together they
/// keep a steady load from making the size swing. Disabled by default.
struct AutoscaleOptions {
  /// Off by default: the pool keeps the size it is given.
  bool enabled = false;
  /// The fewest workers the autoscaler leaves (at least 1).
  std::size_t min_workers = 1;
  /// The most workers the autoscaler starts.
  std::size_t max_workers = 8;
  /// How often the controller reads the load and decides (at least 1 ms).
  std::chrono::milliseconds interval{1000};
  /// Grow while the wait p99 of an interval is above this.
  std::chrono::microseconds target_wait_p99{std::chrono::milliseconds(100)};
  /// Grow while utilization is above this (0..1].
  double high_utilization = 0.85;
  /// Shrink while utilization is below this (and waits are short); below high_utilization.
  double low_utilization = 0.3;
  /// Intervals in a row a grow signal must hold before the pool grows (at least 1).
  std::size_t up_after = 2;
  /// Intervals in a row the idle signal must hold before the pool shrinks (at least 1);
  /// longer than up_after by default, since a pool too small hurts more than one too big.
  std::size_t down_after = 5;
  /// No change for this long after any change, so the load can show the new size's effect.
  std::chrono::milliseconds cooldown{std::chrono::seconds(5)};
  /// Workers added per grow step (at least 1; capped at max_workers).
  std::size_t step_up = 1;
  /// Workers removed per shrink step (at least 1; capped at min_workers).
  std::size_t step_down = 1;
};

/// Throws std::invalid_argument, saying which field is wrong, unless `o` describes a
/// controller that can run a pool of `initial_workers` (which must lie within its bounds).
inline void validate(const AutoscaleOptions& o, std::size_t initial_workers) {
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("executor_exporter: autoscale: " + what);
  };
  if (!o.enabled) return;
  if (o.min_workers == 0) fail("min_workers must be at least 1");
  if (o.max_workers < o.min_workers) {
    fail("max_workers (" + std::to_string(o.max_workers) + ") is below min_workers (" +
         std::to_string(o.min_workers) + ")");
  }
  if (initial_workers < o.min_workers || initial_workers > o.max_workers) {
    fail("the pool's initial size " + std::to_string(initial_workers) + " is outside [" +
         std::to_string(o.min_workers) + ", " + std::to_string(o.max_workers) + "]");
  }
  if (o.interval.count() < 1) fail("interval must be at least 1 ms");
  if (o.target_wait_p99.count() <= 0) fail("target_wait_p99 must be positive");
  if (!(o.high_utilization > 0.0 && o.high_utilization <= 1.0)) {
    fail("high_utilization must be in (0, 1]");
  }
  if (!(o.low_utilization >= 0.0 && o.low_utilization < o.high_utilization)) {
    fail("low_utilization must be in [0, high_utilization)");
  }
  if (o.up_after == 0 || o.down_after == 0) fail("up_after and down_after must be at least 1");
  if (o.cooldown.count() < 0) fail("cooldown must not be negative");
  if (o.step_up == 0 || o.step_down == 0) fail("step_up and step_down must be at least 1");
}

}  // namespace executor_exporter
