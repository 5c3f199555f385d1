// A calibrated invariant-TSC clock (a prototype for issue 4's "cheap timestamps"):
// nanoseconds = ns0 + ((rdtsc() - tsc0) * mult) >> 32, with mult measured against
// steady_clock. Only meaningful where /proc/cpuinfo lists constant_tsc and
// nonstop_tsc; the bench checks that it agrees with steady_clock within 1%.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define BENCH_HAVE_TSC 1
#else
#define BENCH_HAVE_TSC 0
#endif

namespace bench {

inline std::uint64_t steady_ns() noexcept {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

inline std::uint64_t rdtsc() noexcept {
#if BENCH_HAVE_TSC
  return __rdtsc();
#else
  return steady_ns();
#endif
}

/// True when the CPU advertises an invariant TSC (constant rate, runs in deep sleep).
inline bool invariant_tsc() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) == 0) {
      return line.find(" constant_tsc") != std::string::npos &&
             line.find(" nonstop_tsc") != std::string::npos;
    }
  }
  return false;
}

class TscClock {
 public:
  /// Calibrates over `window` (longer is more precise; 20 ms gives ~1e-4 here).
  explicit TscClock(std::chrono::milliseconds window = std::chrono::milliseconds(20)) {
    const std::uint64_t s0 = steady_ns(), t0 = rdtsc();
    std::this_thread::sleep_for(window);
    const std::uint64_t s1 = steady_ns(), t1 = rdtsc();
    const double ns_per_tick = static_cast<double>(s1 - s0) / static_cast<double>(t1 - t0);
    mult_ = static_cast<std::uint64_t>(ns_per_tick * 4294967296.0);
    tsc0_ = t1;
    ns0_ = s1;
  }
  std::uint64_t now_ns() const noexcept {
    __extension__ using u128 = unsigned __int128;
    const u128 d = static_cast<u128>(rdtsc() - tsc0_) * mult_;
    return ns0_ + static_cast<std::uint64_t>(d >> 32);
  }
  double ns_per_tick() const noexcept { return static_cast<double>(mult_) / 4294967296.0; }

 private:
  std::uint64_t mult_ = 0;
  std::uint64_t tsc0_ = 0;
  std::uint64_t ns0_ = 0;
};

}  // namespace bench
