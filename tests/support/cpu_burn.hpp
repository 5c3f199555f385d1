#pragma once

// Tasks that use a known amount of CPU time: they spin on their own process's CPU clock,
// not on wall time, so what they used is exact whatever else the machine runs. Plain
// functions, so that a process pool can run them in its workers.

#include <ctime>

namespace ee_test {

/// This process's CPU time so far (user + system, all threads), in seconds.
inline double own_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

/// Spins until this process has used `ms` more milliseconds of CPU time; returns `ms`.
inline int burn_ms(int ms) {
  const double until = own_cpu_seconds() + ms / 1000.0;
  volatile unsigned sink = 0;
  while (own_cpu_seconds() < until) sink = sink + 1;
  return ms;
}

}  // namespace ee_test
