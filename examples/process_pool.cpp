// A CPU-bound job on a ProcessPoolExecutor: count the primes below N in slices, while one
// task crashes (SIGSEGV) and one hangs. Both are handled: the crash fails only its own
// task, the hang is killed by the task timeout, the workers are replaced, and the job
// completes. Prints what happened and the pool's metrics.
#include <executor_exporter/metrics/registry.hpp>
#include <executor_exporter/process/process_pool_executor.hpp>

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace ee = executor_exporter;
using namespace std::chrono_literals;

namespace {

// Tasks are plain functions: they run in the worker processes.
std::uint64_t count_primes(std::uint64_t from, std::uint64_t to) {
  std::uint64_t n = 0;
  for (std::uint64_t x = std::max<std::uint64_t>(from, 2); x < to; ++x) {
    bool prime = true;
    for (std::uint64_t d = 2; d * d <= x && prime; ++d) prime = x % d != 0;
    n += prime ? 1 : 0;
  }
  return n;
}

std::uint64_t crash() {
  ::signal(SIGSEGV, SIG_DFL);
  ::raise(SIGSEGV);  // as a null dereference would
  return 0;
}

std::uint64_t hang() {
  for (;;) std::this_thread::sleep_for(1s);
}

}  // namespace

int main() {
  // Forks the zygote server while main() is still single-threaded.
  ee::ProcessPoolExecutor::preinit();

  auto registry = std::make_shared<prometheus::Registry>();
  ee::ProcessPoolOptions options;
  options.max_workers = 2;
  options.task_timeout = 2s;
  options.id = "primes";
  options.registry = registry;

  std::uint64_t total = 0;
  {
    ee::ProcessPoolExecutor pool(options);
    constexpr std::uint64_t limit = 2'000'000, slice = 100'000;
    std::vector<ee::Future<std::uint64_t>> slices;
    for (std::uint64_t from = 0; from < limit; from += slice) {
      slices.push_back(pool.submit(count_primes, from, from + slice));
    }
    auto crashed = pool.submit(crash);
    auto hung = pool.submit(hang);

    for (auto& f : slices) total += f.get();
    std::printf("primes below %llu: %llu\n", static_cast<unsigned long long>(limit),
                static_cast<unsigned long long>(total));
    try {
      crashed.get();
    } catch (const ee::WorkerCrashedError& e) {
      std::printf("crashing task: WorkerCrashedError: %s\n", e.what());
    }
    try {
      hung.get();
    } catch (const ee::TaskTimeoutError& e) {
      std::printf("hanging task:  TaskTimeoutError: %s\n", e.what());
    }
    std::printf("after both, the pool still works: %llu primes in [0, 6)\n",
                static_cast<unsigned long long>(pool.submit(count_primes, 0, 6).get()));

    std::printf("\nmetrics (selection):\n");
    const std::string page = prometheus::TextSerializer().Serialize(ee::collect(registry));
    std::size_t start = 0;
    while (start < page.size()) {
      const std::size_t end = page.find('\n', start);
      const std::string line = page.substr(start, end - start);
      start = end == std::string::npos ? page.size() : end + 1;
      if (line.rfind("executor_worker_restarts_total", 0) == 0 ||
          line.rfind("executor_worker_resident_bytes", 0) == 0 ||
          line.rfind("executor_tasks_submitted_total", 0) == 0 ||
          line.rfind("executor_task_run_seconds_count", 0) == 0 ||
          line.rfind("executor_workers{", 0) == 0) {
        std::printf("  %s\n", line.c_str());
      }
    }
  }  // shutdown: workers and zygote stopped and reaped
  ee::ProcessPoolExecutor::preinit_stop();
  return total == 148'933 ? 0 : 1;
}
