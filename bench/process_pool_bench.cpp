// ProcessPoolExecutor benchmarks, Google Benchmark, standalone:
//
//   g++ -std=c++20 -O2 -DNDEBUG -Iinclude bench/process_pool_bench.cpp src/*.cpp
//       -lbenchmark -lprometheus-cpp-pull -lprometheus-cpp-core -lfmt -lz -pthread
//       -o process_pool_bench && ./process_pool_bench
//
// Rows: trivial-task throughput with 2 workers and 20 k no-op tasks, submitted one by one
// then waited for (Python: ~1-1.5 k tasks/s here) and through map(chunksize=100) (Python:
// ~70-80 k items/s); one task's round trip; the cost of a worker respawn (a task that kills
// its worker, then the next task on the replacement); codec encode/decode speed.
#include <benchmark/benchmark.h>

#include <executor_exporter/process/codec.hpp>
#include <executor_exporter/process/process_pool_executor.hpp>

#include <prometheus/registry.h>

#include <signal.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

namespace ee = executor_exporter;

namespace {

int noop(int x) { return x; }
int die() {
  ::signal(SIGKILL, SIG_DFL);
  ::raise(SIGKILL);
  return 0;
}

ee::ProcessPoolOptions bench_options() {
  ee::ProcessPoolOptions o;
  o.max_workers = 2;
  o.max_inflight_per_worker = 32;
  o.thread_check = ee::ThreadCheck::allow;
  o.crash_loop_limit = 1'000'000;  // the respawn row crashes on purpose
  o.registry = std::make_shared<prometheus::Registry>();
  o.id = "bench";
  return o;
}

// Destroyed at exit, so the workers and the zygote are stopped and reaped.
ee::ProcessPoolExecutor& pool() {
  static ee::ProcessPoolExecutor p(bench_options());
  return p;
}

void BM_SubmitThenWait(benchmark::State& state) {
  const auto n = static_cast<int>(state.range(0));
  auto& p = pool();
  std::vector<ee::Future<int>> futures;
  futures.reserve(static_cast<std::size_t>(n));
  for (auto _ : state) {
    futures.clear();
    for (int i = 0; i < n; ++i) futures.push_back(p.submit(noop, i));
    for (auto& f : futures) benchmark::DoNotOptimize(f.get());
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_SubmitThenWait)->Arg(20'000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_MapChunked(benchmark::State& state) {
  const auto n = static_cast<int>(state.range(0));
  auto& p = pool();
  std::vector<int> items(static_cast<std::size_t>(n));
  std::iota(items.begin(), items.end(), 0);
  for (auto _ : state) {
    auto results = p.map(noop, items, {.chunksize = 100});
    for (int v : results) benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_MapChunked)->Arg(20'000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_RoundTrip(benchmark::State& state) {
  auto& p = pool();
  for (auto _ : state) benchmark::DoNotOptimize(p.submit(noop, 1).get());
}
BENCHMARK(BM_RoundTrip)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_Respawn(benchmark::State& state) {
  auto& p = pool();
  for (auto _ : state) {
    try {
      p.submit(die).get();
    } catch (const ee::WorkerCrashedError&) {
    }
    // Both workers must be back for the next round; two tasks in a row reach both.
    benchmark::DoNotOptimize(p.submit(noop, 1).get());
  }
}
BENCHMARK(BM_Respawn)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(50);

std::map<std::string, std::vector<double>> codec_value() {
  std::map<std::string, std::vector<double>> m;
  for (int i = 0; i < 16; ++i) m["series_" + std::to_string(i)] = std::vector<double>(64, i * 0.5);
  return m;
}

void BM_CodecEncode(benchmark::State& state) {
  const auto v = codec_value();
  std::size_t bytes = 0;
  for (auto _ : state) {
    auto s = ee::encode_to_string(v);
    bytes += s.size();
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_CodecEncode);

void BM_CodecDecode(benchmark::State& state) {
  const auto s = ee::encode_to_string(codec_value());
  for (auto _ : state) {
    auto v = ee::decode_message<std::map<std::string, std::vector<double>>>(s);
    benchmark::DoNotOptimize(v);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * s.size()));
}
BENCHMARK(BM_CodecDecode);

void BM_CodecSmallArgs(benchmark::State& state) {
  for (auto _ : state) {
    auto s = ee::encode_to_string(std::int64_t{42}, std::string("key"), 3.5);
    auto t = ee::decode_all<std::int64_t, std::string, double>(s);
    benchmark::DoNotOptimize(t);
  }
}
BENCHMARK(BM_CodecSmallArgs);

}  // namespace

BENCHMARK_MAIN();
