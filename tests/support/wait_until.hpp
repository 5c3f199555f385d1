// Polling helper for tests.
#pragma once

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

namespace ee_test {

// Calls `pred` until it returns true or `timeout` has elapsed; sleeps `poll` between calls.
// Returns the last result of `pred` (it is always called at least once, and once more at the
// deadline).
template <class Pred>
bool wait_until(Pred&& pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds poll = std::chrono::milliseconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(poll, deadline - now));
  }
}

}  // namespace ee_test
