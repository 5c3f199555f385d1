// What the benchmark suite needs of clocks beyond the library's own (detail/clock.hpp):
// steady_clock for the rounds' wall time, and the raw instructions whose cost the clock
// block compares against the library's calibrated clock.
#pragma once

#include <cstdint>

#include <executor_exporter/detail/clock.hpp>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define BENCH_HAVE_TSC 1
#else
#define BENCH_HAVE_TSC 0
#endif

namespace bench {

using executor_exporter::detail::steady_ns;

/// The raw time-stamp counter (steady_clock where there is none).
inline std::uint64_t rdtsc() noexcept {
#if BENCH_HAVE_TSC
  return __rdtsc();
#else
  return steady_ns();
#endif
}

}  // namespace bench
