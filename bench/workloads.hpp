// The pool workloads, written once over the adapter interface.
// Every workload builds its pool before the clock starts and stops the clock when the
// last task has finished (drain() or the last get()).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <latch>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "raw_clock.hpp"

namespace bench {

using Metrics = std::map<std::string, double>;

inline double seconds_since(std::uint64_t t0) { return static_cast<double>(steady_ns() - t0) * 1e-9; }

/// n empty fire-and-forget tasks from one thread; M tasks/s.
template <class A>
Metrics fire_and_forget(std::size_t workers, std::size_t n) {
  A a(workers);
  const auto t0 = steady_ns();
  for (std::size_t i = 0; i < n; ++i) a.post([] {});
  a.drain();
  return {{"mtps", static_cast<double>(n) / seconds_since(t0) * 1e-6}};
}

/// n tasks with futures from one thread, every result read; M tasks/s.
template <class A>
Metrics with_futures(std::size_t workers, std::size_t n) {
  A a(workers);
  using Fut = decltype(a.submit([] { return std::size_t{0}; }));
  std::vector<Fut> futures;
  futures.reserve(n);
  const auto t0 = steady_ns();
  for (std::size_t i = 0; i < n; ++i) futures.push_back(a.submit([i] { return i; }));
  std::size_t sum = 0;
  for (auto& f : futures) sum += f.get();
  const double s = seconds_since(t0);
  if (sum != n * (n - 1) / 2) throw std::runtime_error("with_futures: wrong results");
  a.drain();
  return {{"mtps", static_cast<double>(n) / s * 1e-6}};
}

/// `producers` threads each posting n / producers empty tasks at once; M tasks/s.
template <class A>
Metrics many_producers(std::size_t workers, std::size_t producers, std::size_t n) {
  A a(workers, producers);
  const std::size_t each = n / producers;
  std::latch ready(static_cast<std::ptrdiff_t>(producers) + 1);
  std::latch go(1);
  std::vector<std::thread> threads;
  threads.reserve(producers);
  for (std::size_t p = 0; p < producers; ++p) {
    threads.emplace_back([&] {
      ready.count_down();
      go.wait();
      for (std::size_t i = 0; i < each; ++i) a.post([] {});
    });
  }
  ready.arrive_and_wait();
  const auto t0 = steady_ns();
  go.count_down();
  for (auto& t : threads) t.join();
  a.drain();
  return {{"mtps", static_cast<double>(each * producers) / seconds_since(t0) * 1e-6}};
}

inline double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

/// One task at a time: submit, wait for its result, repeat; p50 / p99 in µs.
template <class A>
Metrics round_trip(std::size_t workers, std::size_t n) {
  A a(workers);
  for (int i = 0; i < 20; ++i) a.submit([] { return 1; }).get();  // threads up and warm
  std::vector<double> us;
  us.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto t0 = steady_ns();
    auto f = a.submit([] { return 1; });
    (void)f.get();
    us.push_back(static_cast<double>(steady_ns() - t0) * 1e-3);
  }
  a.drain();
  const double p50 = percentile(us, 0.50);
  const double p99 = percentile(us, 0.99);
  return {{"p50_us", p50}, {"p99_us", p99}};
}

/// A task that spins for `ns` nanoseconds of wall time.
inline void spin_for(std::uint64_t ns) {
  const auto end = steady_ns() + ns;
  while (steady_ns() < end) {
  }
}

/// n tasks of 10 µs busy work; % of the ideal n * 10 µs / workers.
template <class A>
Metrics busy_tasks(std::size_t workers, std::size_t n, std::uint64_t task_ns = 10'000) {
  A a(workers);
  const auto t0 = steady_ns();
  for (std::size_t i = 0; i < n; ++i) a.post([task_ns] { spin_for(task_ns); });
  a.drain();
  const double s = seconds_since(t0);
  const double ideal = static_cast<double>(n) * static_cast<double>(task_ns) * 1e-9 /
                       static_cast<double>(workers);
  return {{"efficiency_pct", 100.0 * ideal / s}};
}

}  // namespace bench
