#pragma once

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <executor_exporter/detail/hot_path.hpp>

#if defined(__x86_64__)
#include <cpuid.h>
#include <x86intrin.h>
#define EXECUTOR_EXPORTER_HAVE_TSC 1
#else
#define EXECUTOR_EXPORTER_HAVE_TSC 0
#endif

namespace executor_exporter::detail {

/// steady_clock in nanoseconds: CLOCK_MONOTONIC on Linux, the clock a forked worker
/// process shares with its parent, and the clock of user-facing time_points
/// (deadlines, timeouts).
inline std::uint64_t steady_ns() noexcept {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

/// A calibrated invariant-TSC clock: ns = ns0 + ((rdtsc() - tsc0) * mult) >> 32, with
/// the rate measured against steady_clock once, so a reading costs a RDTSC and a
/// multiply (~10 ns) instead of a clock_gettime (~170-200 ns on a KVM guest). Used only
/// when the CPU reports an invariant TSC (CPUID 0x80000007 EDX bit 8: constant rate,
/// ticking through sleep states, synchronised across cores); otherwise, on non-x86-64
/// targets, or with EXECUTOR_EXPORTER_CLOCK=steady in the environment, it falls back to
/// steady_clock. Readings are in steady_clock's epoch at calibration, and the rate error
/// is ~1e-4, so it is meant for durations (the histograms); code that compares with a
/// user's steady_clock time_point (deadlines) uses steady_ns().
class TscClock {
 public:
  TscClock() noexcept { calibrate(); }

  bool uses_tsc() const noexcept { return mult_ != 0; }
  /// Nanoseconds per TSC tick (0 when falling back to steady_clock).
  double ns_per_tick() const noexcept { return static_cast<double>(mult_) / 4294967296.0; }

  EXECUTOR_EXPORTER_HOT std::uint64_t now() const noexcept {
#if EXECUTOR_EXPORTER_HAVE_TSC
    if (mult_ != 0) [[likely]] {
      __extension__ using u128 = unsigned __int128;
      const std::uint64_t t = __rdtsc();
      // A reading taken on a core whose TSC lags tsc0 by a few ticks must not wrap.
      const std::uint64_t d = t > tsc0_ ? t - tsc0_ : 0;
      return ns0_ + static_cast<std::uint64_t>((static_cast<u128>(d) * mult_) >> 32);
    }
#endif
    return steady_ns();
  }

  static bool invariant_tsc() noexcept {
#if EXECUTOR_EXPORTER_HAVE_TSC
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid_max(0x80000000u, nullptr) < 0x80000007u) return false;
    if (!__get_cpuid(0x80000007u, &a, &b, &c, &d)) return false;
    return (d & (1u << 8)) != 0;
#else
    return false;
#endif
  }

 private:
#if EXECUTOR_EXPORTER_HAVE_TSC
  // A (steady, tsc) pair read close together: retried until the steady_clock reads that
  // bracket the RDTSC are within 2 µs of each other, so a preemption cannot skew it.
  static void anchor(std::uint64_t& ns, std::uint64_t& tsc) noexcept {
    std::uint64_t best = ~std::uint64_t{0};
    for (int i = 0; i < 50; ++i) {
      const std::uint64_t s0 = steady_ns();
      const std::uint64_t t = __rdtsc();
      const std::uint64_t s1 = steady_ns();
      if (s1 - s0 < best) {
        best = s1 - s0;
        ns = s0 + (s1 - s0) / 2;
        tsc = t;
      }
      if (best < 2000 && i >= 4) break;
    }
  }
#endif

  void calibrate() noexcept {
#if EXECUTOR_EXPORTER_HAVE_TSC
    if (const char* env = std::getenv("EXECUTOR_EXPORTER_CLOCK");
        env != nullptr && std::strcmp(env, "steady") == 0) {
      return;
    }
    if (!invariant_tsc()) return;
    std::uint64_t s0 = 0, t0 = 0, s1 = 0, t1 = 0;
    anchor(s0, t0);
    // 10 ms: the anchors' ~1 µs uncertainty gives a rate error of ~1e-4.
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    anchor(s1, t1);
    if (t1 <= t0 || s1 <= s0) return;
    const double ns_per_tick = static_cast<double>(s1 - s0) / static_cast<double>(t1 - t0);
    // Implausible rates (a TSC under 100 MHz or over 20 GHz): keep steady_clock.
    if (!(ns_per_tick > 0.05 && ns_per_tick < 10.0)) return;
    tsc0_ = t1;
    ns0_ = s1;
    mult_ = static_cast<std::uint64_t>(ns_per_tick * 4294967296.0);
#endif
  }

  std::uint64_t mult_ = 0;  // ns per tick in 32.32 fixed point; 0: use steady_clock
  std::uint64_t tsc0_ = 0;
  std::uint64_t ns0_ = 0;
};

/// The process's clock, calibrated once on first use (thread-safe: a function-local
/// static; afterwards one predictable branch on its guard). Forked children inherit
/// the calibration with the rest of the process memory.
inline const TscClock& tsc_clock() noexcept {
  static const TscClock clock;
  return clock;
}

/// Monotonic timestamps as plain nanoseconds for durations: the calibrated TSC clock
/// where the CPU has an invariant TSC, steady_clock otherwise. An integer is what
/// travels in a task record and what the metric shards add up, so the hot path never
/// touches floating point. Compare only with other now_ns() readings.
EXECUTOR_EXPORTER_HOT std::uint64_t now_ns() noexcept { return tsc_clock().now(); }

}  // namespace executor_exporter::detail
