#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include <executor_exporter/pools/autoscale_options.hpp>

namespace executor_exporter::detail {

/// The q-quantile of a histogram given as per-bucket counts (not cumulative; the last one
/// is +Inf) over finite upper `bounds`, interpolated linearly within its bucket as
/// Prometheus' histogram_quantile does (a quantile in the +Inf bucket is the last finite
/// bound). NaN when the histogram is empty.
inline double bucket_quantile(const std::vector<std::uint64_t>& counts,
                              const std::vector<double>& bounds, double q) {
  std::uint64_t total = 0;
  for (const auto c : counts) total += c;
  if (total == 0) return std::numeric_limits<double>::quiet_NaN();
  const double rank = q * static_cast<double>(total);
  double below = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    const auto in = static_cast<double>(counts[i]);
    if (below + in >= rank && in > 0) {
      if (i >= bounds.size()) return bounds.empty() ? 0.0 : bounds.back();
      const double lower = i == 0 ? 0.0 : bounds[i - 1];
      return lower + (bounds[i] - lower) * (rank - below) / in;
    }
    below += in;
  }
  return bounds.empty() ? 0.0 : bounds.back();
}

/// The autoscaler's decision rule, without threads or clocks of its own, so that it reads
/// as a specification: a grow signal (wait p99 above target: reason wait; else utilization
/// above the high mark: reason utilization) or the idle signal (utilization below the low
/// mark and waits not above target) must hold up_after / down_after intervals in a row, the
/// pool must be out of its cool-down, and the step stays within [min_workers, max_workers].
/// Any other interval (the dead band) resets both streaks.
class AutoscalePolicy {
 public:
  using Clock = std::chrono::steady_clock;

  struct Decision {
    std::size_t to = 0;  // the new worker count; == workers when holding
    ScaleReason reason = ScaleReason::manual;
  };

  explicit AutoscalePolicy(const AutoscaleOptions& options) : o_(options) {}

  /// One interval's signals (`wait_p99_s` NaN when no task started) for a pool of
  /// `workers`, at `now`.
  Decision next(double wait_p99_s, double utilization, std::size_t workers, Clock::time_point now) {
    const double target = std::chrono::duration<double>(o_.target_wait_p99).count();
    const bool waits_long = !std::isnan(wait_p99_s) && wait_p99_s > target;
    Decision hold{workers, ScaleReason::manual};
    if (waits_long || utilization > o_.high_utilization) {
      up_reason_ = waits_long ? ScaleReason::wait : ScaleReason::utilization;
      ++up_streak_;
      down_streak_ = 0;
    } else if (utilization < o_.low_utilization) {
      ++down_streak_;
      up_streak_ = 0;
    } else {
      up_streak_ = down_streak_ = 0;
    }
    if (now < cool_until_) return hold;
    if (up_streak_ >= o_.up_after && workers < o_.max_workers) {
      return {std::min(o_.max_workers, workers + std::min(o_.step_up, o_.max_workers)), up_reason_};
    }
    if (down_streak_ >= o_.down_after && workers > o_.min_workers) {
      return {std::max(o_.min_workers, workers - std::min(o_.step_down, workers)),
              ScaleReason::idle};
    }
    return hold;
  }

  /// The size changed at `now` (by this policy's decision or by hand): the streaks start
  /// over and the cool-down begins, so the next decision sees the new size's load.
  void changed(Clock::time_point now) {
    up_streak_ = down_streak_ = 0;
    cool_until_ = now + o_.cooldown;
  }

 private:
  AutoscaleOptions o_;
  std::size_t up_streak_ = 0;
  std::size_t down_streak_ = 0;
  ScaleReason up_reason_ = ScaleReason::wait;
  Clock::time_point cool_until_{};
};

}  // namespace executor_exporter::detail
