#pragma once

#include <chrono>
#include <cstdint>

namespace executor_exporter::detail {

/// Monotonic timestamps as plain nanosecond counts. An integer is what travels in
/// a task record and what the metric shards add up, so the hot path never touches
/// floating point. steady_clock is CLOCK_MONOTONIC on Linux, the clock a forked
/// worker process shares with its parent.
inline std::uint64_t now_ns() noexcept {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

}  // namespace executor_exporter::detail
