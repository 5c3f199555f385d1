// executor_exporter_bench: the benchmark suite.
//
//   executor_exporter_bench [--smoke] [--scaling] [--rounds N] [--out DIR]
//                           [--filter REGEX] [--threads 1,2,4,8,16] [--workers N]
//                           [--no-python] [--python-script PATH] [--list]
//                           [Google Benchmark flags]
//
// Default: the full suite, 9 interleaved rounds, results in DIR/results.json (then
// bench/report.py writes docs/benchmarks.md and the chart). --smoke runs every row
// once at a tiny size (seconds) and exits 0 when all of them ran. --scaling runs the
// metric layer and the pools with 1, 2, 4, 8 and 16 workers and submitters instead
// and writes DIR/scaling.json.
#include <benchmark/benchmark.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <regex>
#include <source_location>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/exposer.h>
#include <prometheus/text_serializer.h>

#include <executor_exporter/metrics/exporter.hpp>
#include <executor_exporter/metrics/metrics_server.hpp>
#include <executor_exporter/metrics/registry.hpp>
#include <executor_exporter/metrics/text_format.hpp>
#include <executor_exporter/pools/thread_pool_executor.hpp>

#include "adapters.hpp"
#include "alloc_counter.hpp"
#include "event_adapters.hpp"
#include "harness.hpp"
#include "raw_clock.hpp"
#include "reference_pool.hpp"
#include "workloads.hpp"

#ifndef BENCH_SOURCE_DIR
#define BENCH_SOURCE_DIR "."
#endif

namespace ee = executor_exporter;

namespace bench {
namespace {

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------
struct Config {
  bool smoke = false;
  bool scaling = false;
  bool list = false;
  bool python = true;
  int rounds = 9;
  std::size_t workers = 2;
  std::vector<int> threads = {1, 2, 4, 8, 16};
  std::string out;
  std::string filter;
  std::string python_script = std::string(BENCH_SOURCE_DIR) + "/python_peer.py";

  // Sizes (full run; --smoke shrinks them).
  std::size_t ff_n = 1'000'000;
  std::size_t fut_n = 200'000;
  std::size_t prod_n = 400'000;
  std::size_t producers = 4;
  std::size_t rtt_n = 2'000;
  std::size_t busy_n = 20'000;
  std::size_t scale_n = 400'000;
  std::size_t py_n = 10'000;
  std::size_t py_rtt_n = 1'000;
  std::size_t py_busy_n = 2'000;
  double micro_min_time = 0.05;
  std::map<int, int> scrape_iters = {{1, 200}, {10, 40}, {100, 8}};
  std::size_t mem_executors = 20;
  std::size_t mem_queued = 10'000;
  std::size_t alloc_n = 100'000;
  int tsc_checks = 5;
  int tsc_check_ms = 100;

  void make_smoke() {
    smoke = true;
    rounds = 1;
    ff_n = fut_n = prod_n = scale_n = 2'000;
    rtt_n = 50;
    busy_n = 200;
    py_n = 200;
    py_rtt_n = 20;
    py_busy_n = 50;
    micro_min_time = 0.002;
    scrape_iters = {{1, 2}, {10, 2}, {100, 1}};
    mem_executors = 3;
    mem_queued = 100;
    alloc_n = 1'000;
    tsc_checks = 2;
    tsc_check_ms = 5;
    threads = {1, 2};
  }
};

Config cfg;

std::string fmt_double(double v, int precision = 3) {
  if (std::isnan(v)) return "n/a";
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(precision);
  o << v;
  return o.str();
}

// ---------------------------------------------------------------------------
// Python peer (a subprocess per run; same units as the C++ rows)
// ---------------------------------------------------------------------------
Metrics parse_flat_json(const std::string& text) {
  Metrics m;
  static const std::regex kv("\"([A-Za-z0-9_]+)\"\\s*:\\s*(-?[0-9.eE+-]+)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), kv); it != std::sregex_iterator();
       ++it) {
    m[(*it)[1].str()] = std::stod((*it)[2].str());
  }
  return m;
}

bool python_available() {
  return cfg.python && std::filesystem::exists(cfg.python_script) &&
         std::system("python3 -c 'import concurrent.futures' >/dev/null 2>&1") == 0;
}

Metrics run_python(const std::string& workload, std::size_t n, std::size_t workers,
                   std::size_t producers = 1) {
  const std::string cmd = "python3 '" + cfg.python_script + "' --workload " + workload + " --n " +
                          std::to_string(n) + " --workers " + std::to_string(workers) +
                          " --producers " + std::to_string(producers);
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) throw std::runtime_error("cannot start python3");
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  const int rc = ::pclose(p);
  if (rc != 0) throw std::runtime_error("python_peer.py failed: " + out);
  auto m = parse_flat_json(out);
  if (m.empty()) throw std::runtime_error("python_peer.py printed no result: " + out);
  return m;
}

// ---------------------------------------------------------------------------
// Metric layer in isolation: what a pool pays per task for its metrics, clock
// reads excluded (the pool reads the clock anyway; see the clock rows).
// ---------------------------------------------------------------------------
inline std::uint64_t lcg(std::uint64_t& x) {
  x = x * 6364136223846793005ULL + 1442695040888963407ULL;
  return x >> 44;  // 0 .. ~1 ms in ns: spreads over the first buckets
}

ee::ExecutorExporter& shared_exporter() {
  static auto* ex =
      new ee::ExecutorExporter("bench_metric", "bench", std::make_shared<prometheus::Registry>());
  return *ex;
}

ObviousMetrics& shared_obvious() {
  static auto* registry = new prometheus::Registry;
  static auto* m = new ObviousMetrics(*registry);
  return *m;
}

void metric_ours(benchmark::State& st) {
  auto& metrics = shared_exporter().recorder().metrics();
  std::uint64_t x = static_cast<std::uint64_t>(st.thread_index()) + 1;
  for (auto _ : st) {
    const std::uint64_t wait = lcg(x);
    auto& shard = metrics.local_shard();  // what submit() does per task
    shard.task_submitted_timed(1, x);     // the queued seconds' sums, as Recorder::submitted
    shard.task_submitted();
    shard.task_started(wait, x);
    shard.task_finished(wait >> 3, true);
  }
  if (st.thread_index() == 0) metrics.fold();
}

void metric_obvious(benchmark::State& st) {
  auto& m = shared_obvious();
  std::uint64_t x = static_cast<std::uint64_t>(st.thread_index()) + 1;
  for (auto _ : st) {
    const std::uint64_t wait = lcg(x);
    m.submitted_one();
    m.started_one(static_cast<double>(wait) * 1e-9);
    m.finished_one(static_cast<double>(wait >> 3) * 1e-9);
  }
}

// The ExecutorExporter API as a proxy calls it: three clock reads and three shard updates.
void metric_exporter_api(benchmark::State& st) {
  auto& ex = shared_exporter();
  for (auto _ : st) {
    const auto submitted = ex.task_submitted();
    const auto started = ex.task_started(submitted);
    ex.task_finished(started, true);
  }
}

// One task's start and end on a worker, as the thread pool records them (one clock read:
// back to back, the last end is the next start), with the flight recorder's ring of
// `Slices` per worker or without it (0). Both publish the current task for the stuck-task
// gauges; the difference is the ring slice.
template <std::size_t Slices>
void stuck_worker_task(benchmark::State& st) {
  ee::ExporterOptions o;
  o.flight_recorder_slices = Slices;
  ee::detail::Recorder rec("stuck_micro_" + std::to_string(Slices), "bench",
                           std::make_shared<prometheus::Registry>(), o);
  ee::detail::Recorder::Worker worker(rec.metrics());
  ee::detail::TaskRef t = rec.prepare();
  t.where = std::source_location::current();
  for (auto _ : st) {
    const std::uint64_t start = worker.start(t, false);
    worker.finish(t, start, true, [] { return std::exception_ptr(); });
  }
}

// ---------------------------------------------------------------------------
// Clocks
// ---------------------------------------------------------------------------
// The library's clock, calibrated once per process.
const ee::detail::TscClock& tsc_clock() { return ee::detail::tsc_clock(); }

void clock_steady(benchmark::State& st) {
  for (auto _ : st) benchmark::DoNotOptimize(std::chrono::steady_clock::now());
}
void clock_ee_now(benchmark::State& st) {
  for (auto _ : st) benchmark::DoNotOptimize(ee::detail::now_ns());
}
void clock_rdtsc(benchmark::State& st) {
  for (auto _ : st) benchmark::DoNotOptimize(rdtsc());
}
void clock_rdtscp(benchmark::State& st) {
#if BENCH_HAVE_TSC
  unsigned aux = 0;
  for (auto _ : st) benchmark::DoNotOptimize(__rdtscp(&aux));
#else
  for (auto _ : st) benchmark::DoNotOptimize(steady_ns());
#endif
}
void clock_coarse(benchmark::State& st) {
  timespec ts{};
  for (auto _ : st) {
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    benchmark::DoNotOptimize(ts);
  }
}

OneShotTable tsc_agreement(std::uint64_t run_start_steady, std::uint64_t run_start_tsc_ns) {
  const auto& c = tsc_clock();
  double worst = 0;
  for (int i = 0; i < cfg.tsc_checks; ++i) {
    const auto s0 = steady_ns();
    const auto t0 = c.now();
    std::this_thread::sleep_for(std::chrono::milliseconds(cfg.tsc_check_ms));
    const auto s1 = steady_ns();
    const auto t1 = c.now();
    const double ds = static_cast<double>(s1 - s0);
    const double dt = static_cast<double>(t1 - t0);
    worst = std::max(worst, std::abs(dt - ds) / ds);
  }
  // Over the whole run: one calibration at start-up, compared now.
  const double run_s = static_cast<double>(steady_ns() - run_start_steady);
  const double run_t = static_cast<double>(c.now() - run_start_tsc_ns);
  const double drift = run_s > 0 ? std::abs(run_t - run_s) / run_s : 0;
  OneShotTable t;
  t.id = "tsc";
  t.title = "Calibrated TSC clock vs steady_clock";
  t.columns = {"check", "value"};
  t.rows = {
      {"invariant TSC (CPUID 0x80000007)", ee::detail::TscClock::invariant_tsc() ? "yes" : "no"},
      {"TSC in use (else steady_clock)", c.uses_tsc() ? "yes" : "no"},
      {"ns per tick (calibrated over 10 ms)", fmt_double(c.ns_per_tick(), 6)},
      {"worst disagreement over " + std::to_string(cfg.tsc_checks) + " x " +
           std::to_string(cfg.tsc_check_ms) + " ms",
       fmt_double(worst * 100, 4) + " %"},
      {"drift over the whole run (" + fmt_double(run_s * 1e-9, 1) + " s)",
       fmt_double(drift * 100, 4) + " %"},
      {"target",
       "agree within 1 %: " + std::string(worst < 0.01 && drift < 0.01 ? "met" : "MISSED")},
  };
  return t;
}

// ---------------------------------------------------------------------------
// Scrape cost: K ThreadPoolExecutors (2 workers each) in one registry; before every
// scrape each executor runs one more task, so every scrape has something to fold.
// ---------------------------------------------------------------------------
struct ScrapeFixture {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::vector<std::unique_ptr<ee::ThreadPoolExecutor>> pools;
  std::string path;

  explicit ScrapeFixture(int k) : path("/metrics_" + std::to_string(k)) {
    for (int i = 0; i < k; ++i) {
      ee::ThreadPoolOptions o;
      o.id = "executor-" + std::to_string(i);
      o.registry = registry;
      pools.push_back(std::make_unique<ee::ThreadPoolExecutor>(2, std::move(o)));
    }
    touch();
    ee::expose(exposer(), registry, path);
    server = std::make_unique<ee::MetricsServer>("127.0.0.1:0", registry);
  }
  /// The library's own endpoint for the same registry.
  std::unique_ptr<ee::MetricsServer> server;
  void touch() {
    std::vector<ee::Future<int>> futures;
    futures.reserve(pools.size());
    for (auto& p : pools) futures.push_back(p->submit([] { return 1; }));
    for (auto& f : futures) (void)f.get();
  }
  /// One HTTP server for every fixture, each registry at its own path (what
  /// MetricsServer does for one registry). Never destroyed: civetweb's shutdown takes
  /// ~2 s and the process is about to exit anyway.
  static prometheus::Exposer& exposer() {
    static auto* e = new prometheus::Exposer("127.0.0.1:0", 2);
    return *e;
  }
  static int port() { return exposer().GetListeningPorts().front(); }
};

std::map<int, std::unique_ptr<ScrapeFixture>>& scrape_fixtures() {
  static std::map<int, std::unique_ptr<ScrapeFixture>> all;
  return all;
}
ScrapeFixture& scrape_fixture(int k) {
  auto& f = scrape_fixtures()[k];
  if (!f) f = std::make_unique<ScrapeFixture>(k);
  return *f;
}

std::size_t count_lines(const std::string& s) {
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

/// GET http://127.0.0.1:port<path> with Connection: close; returns the whole reply.
std::string http_get(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error("connect failed");
  }
  const std::string req =
      "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    throw std::runtime_error("send failed");
  }
  std::string reply;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    reply.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (reply.rfind("HTTP/1.1 200", 0) != 0) throw std::runtime_error("scrape did not return 200");
  return reply;
}

void scrape_collect(benchmark::State& st, int k) {
  auto& f = scrape_fixture(k);
  std::size_t families = 0;
  for (auto _ : st) {
    st.PauseTiming();
    f.touch();
    st.ResumeTiming();
    auto collected = ee::collect(f.registry);  // fold every shard + Registry::Collect
    families = collected.size();
    benchmark::DoNotOptimize(collected);
  }
  st.counters["families"] = static_cast<double>(families);
}

void scrape_serialize(benchmark::State& st, int k) {
  auto& f = scrape_fixture(k);
  f.touch();
  const auto collected = ee::collect(f.registry);
  const prometheus::TextSerializer serializer;
  std::string page;
  for (auto _ : st) {
    page = serializer.Serialize(collected);
    benchmark::DoNotOptimize(page);
  }
  st.counters["lines"] = static_cast<double>(count_lines(page));
  st.counters["bytes"] = static_cast<double>(page.size());
}

// The library's own writer (text_format.hpp) on the same families.
void scrape_write_text(benchmark::State& st, int k) {
  auto& f = scrape_fixture(k);
  f.touch();
  const auto collected = ee::collect(f.registry);
  std::string page;
  for (auto _ : st) {
    page.clear();
    ee::write_text(page, collected);
    benchmark::DoNotOptimize(page);
  }
  st.counters["lines"] = static_cast<double>(count_lines(page));
  st.counters["bytes"] = static_cast<double>(page.size());
}

void scrape_http(benchmark::State& st, int k) {
  auto& f = scrape_fixture(k);
  const int port = ScrapeFixture::port();
  std::string reply;
  for (auto _ : st) {
    st.PauseTiming();
    f.touch();
    st.ResumeTiming();
    reply = http_get(port, f.path);
  }
  st.counters["bytes"] = static_cast<double>(reply.size());
}

// The same GET answered by MetricsServer (event loop, write_text) instead of the Exposer.
void scrape_server(benchmark::State& st, int k) {
  auto& f = scrape_fixture(k);
  const int port = f.server->port();
  std::string reply;
  for (auto _ : st) {
    st.PauseTiming();
    f.touch();
    st.ResumeTiming();
    reply = http_get(port, "/metrics");
  }
  st.counters["bytes"] = static_cast<double>(reply.size());
}

// ---------------------------------------------------------------------------
// Allocations and memory (measured once, not in rounds: they do not vary)
// ---------------------------------------------------------------------------
template <class A>
std::pair<double, double> allocs_fire_and_forget(std::size_t n) {
  A a(cfg.workers);
  for (int i = 0; i < 1000; ++i) a.post([] {});  // warm-up: free lists, deque blocks
  alloc::Scope scope;
  for (std::size_t i = 0; i < n; ++i) a.post([] {});
  a.drain();
  const auto s = scope.stop();
  return {static_cast<double>(s.count) / static_cast<double>(n),
          static_cast<double>(s.bytes) / static_cast<double>(n)};
}

template <class A>
std::pair<double, double> allocs_futures(std::size_t n) {
  A a(cfg.workers);
  using Fut = decltype(a.submit([] { return 1; }));
  std::vector<Fut> futures;
  futures.reserve(n);
  alloc::Scope scope;
  for (std::size_t i = 0; i < n; ++i) futures.push_back(a.submit([] { return 1; }));
  for (auto& f : futures) (void)f.get();
  const auto s = scope.stop();
  a.drain();
  return {static_cast<double>(s.count) / static_cast<double>(n),
          static_cast<double>(s.bytes) / static_cast<double>(n)};
}

/// The producers workload's allocations: cfg.producers threads posting at once, so the
/// queue grows while they run (nodes cannot all be recycled).
template <class A>
std::pair<double, double> allocs_producers(std::size_t n) {
  A a(cfg.workers, cfg.producers);
  for (int i = 0; i < 1000; ++i) a.post([] {});  // warm-up: free lists, deque blocks
  const std::size_t each = n / cfg.producers;
  std::vector<std::thread> threads;
  threads.reserve(cfg.producers);
  alloc::Scope scope;
  for (std::size_t p = 0; p < cfg.producers; ++p) {
    threads.emplace_back([&] {
      for (std::size_t i = 0; i < each; ++i) a.post([] {});
    });
  }
  for (auto& t : threads) t.join();
  a.drain();
  const auto s = scope.stop();
  const auto tasks = static_cast<double>(each * cfg.producers);
  return {static_cast<double>(s.count) / tasks, static_cast<double>(s.bytes) / tasks};
}

/// Heap bytes and allocations per executor (1 worker, after one task ran), for k
/// executors built after a first one (registry-wide state is not counted).
template <class Make>
std::pair<double, double> memory_per_executor(Make make, std::size_t k) {
  using P = decltype(make(0));
  std::vector<P> all;
  all.reserve(k + 1);
  all.push_back(make(0));
  all.back()->submit([] { return 1; }).get();
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const auto h0 = alloc::heap_in_use();
  alloc::Scope scope;
  for (std::size_t i = 1; i <= k; ++i) {
    all.push_back(make(i));
    all.back()->submit([] { return 1; }).get();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const auto s = scope.stop();
  const auto h1 = alloc::heap_in_use();
  for (auto& p : all) p->drain();
  return {static_cast<double>(static_cast<std::int64_t>(h1) - static_cast<std::int64_t>(h0)) /
              static_cast<double>(k),
          static_cast<double>(s.count) / static_cast<double>(k)};
}

/// Heap bytes per queued task: one worker is held by a gate task while n tasks queue.
template <class A, bool Futures>
std::pair<double, double> memory_per_queued_task(std::size_t n) {
  A a(1);
  std::atomic<bool> started{false}, release{false};
  a.post([&] {
    started.store(true);
    while (!release.load()) std::this_thread::yield();
  });
  while (!started.load()) std::this_thread::yield();
  using Fut = decltype(a.submit([] { return 1; }));
  std::vector<Fut> futures;
  if constexpr (Futures) futures.reserve(n);
  const auto h0 = alloc::heap_in_use();
  alloc::Scope scope;
  for (std::size_t i = 0; i < n; ++i) {
    if constexpr (Futures) {
      futures.push_back(a.submit([] { return 1; }));
    } else {
      a.post([] {});
    }
  }
  const auto s = scope.stop();
  const auto h1 = alloc::heap_in_use();
  release.store(true);
  for (auto& f : futures) (void)f.get();
  a.drain();
  return {static_cast<double>(static_cast<std::int64_t>(h1) - static_cast<std::int64_t>(h0)) /
              static_cast<double>(n),
          static_cast<double>(s.count) / static_cast<double>(n)};
}

struct OursShared {  // many ThreadPoolExecutors in one registry, as in production
  std::unique_ptr<ee::ThreadPoolExecutor> pool;
  OursShared(std::shared_ptr<prometheus::Registry> r, std::size_t i) {
    ee::ThreadPoolOptions o;
    o.id = "executor-" + std::to_string(i);
    o.registry = std::move(r);
    pool = std::make_unique<ee::ThreadPoolExecutor>(1, std::move(o));
  }
  template <class F>
  auto submit(F f) {
    return pool->submit(std::move(f));
  }
  void drain() { pool->shutdown(true); }
};

template <class A>
auto maker() {
  return [](std::size_t) { return std::make_unique<A>(1); };
}

std::vector<OneShotTable> memory_tables() {
  std::vector<OneShotTable> out;
  {
    OneShotTable t;
    t.id = "allocs";
    t.title = "Allocations per task (operator new calls and bytes, all threads, steady state)";
    t.columns = {"pool",  "fire-and-forget: allocs",
                 "bytes", "with futures: allocs",
                 "bytes", std::to_string(cfg.producers) + " producers: allocs",
                 "bytes"};
    auto add = [&](const std::string& label, std::pair<double, double> ff,
                   std::pair<double, double> fut, std::pair<double, double> prod) {
      t.rows.push_back({label, fmt_double(ff.first, 2), fmt_double(ff.second, 0),
                        fmt_double(fut.first, 2), fmt_double(fut.second, 0),
                        fmt_double(prod.first, 2), fmt_double(prod.second, 0)});
    };
    const auto n = cfg.alloc_n;
    add("ThreadPoolExecutor (instrumented)", allocs_fire_and_forget<Ours>(n),
        allocs_futures<Ours>(n), allocs_producers<Ours>(n));
    add("ThreadPoolExecutor, no metrics", allocs_fire_and_forget<OursUninstrumented>(n),
        allocs_futures<OursUninstrumented>(n), allocs_producers<OursUninstrumented>(n));
    add("mutex+condvar+deque reference", allocs_fire_and_forget<Reference<NoHooks>>(n),
        allocs_futures<Reference<NoHooks>>(n), allocs_producers<Reference<NoHooks>>(n));
    add("reference + prometheus-cpp per task", allocs_fire_and_forget<Reference<ObviousHooks>>(n),
        allocs_futures<Reference<ObviousHooks>>(n), allocs_producers<Reference<ObviousHooks>>(n));
#ifdef BENCH_HAVE_ASIO
    add("boost::asio::thread_pool", allocs_fire_and_forget<Asio>(n), allocs_futures<Asio>(n),
        allocs_producers<Asio>(n));
#endif
#ifdef BENCH_HAVE_TBB
    add("oneTBB (tbbmalloc: not seen)", allocs_fire_and_forget<Tbb>(n), allocs_futures<Tbb>(n),
        allocs_producers<Tbb>(n));
#endif
    t.note = "ThreadPoolExecutor fire-and-forget uses post().";
    out.push_back(std::move(t));
  }
  {
    OneShotTable t;
    t.id = "memory";
    t.title = "Memory per executor and per queued task (heap bytes, glibc mallinfo2)";
    t.columns = {"pool",   "per executor: heap bytes",  "allocs", "per queued task: bytes",
                 "allocs", "queued with future: bytes", "allocs"};
    auto add = [&](const std::string& label, std::pair<double, double> ex,
                   std::pair<double, double> q, std::pair<double, double> qf) {
      t.rows.push_back({label, fmt_double(ex.first, 0), fmt_double(ex.second, 1),
                        fmt_double(q.first, 0), fmt_double(q.second, 2), fmt_double(qf.first, 0),
                        fmt_double(qf.second, 2)});
    };
    const auto k = cfg.mem_executors;
    const auto q = cfg.mem_queued;
    auto registry = std::make_shared<prometheus::Registry>();
    add("ThreadPoolExecutor (instrumented)",
        memory_per_executor(
            [&](std::size_t i) { return std::make_unique<OursShared>(registry, i); }, k),
        memory_per_queued_task<Ours, false>(q), memory_per_queued_task<Ours, true>(q));
    add("ThreadPoolExecutor, no metrics", memory_per_executor(maker<OursUninstrumented>(), k),
        memory_per_queued_task<OursUninstrumented, false>(q),
        memory_per_queued_task<OursUninstrumented, true>(q));
    add("mutex+condvar+deque reference", memory_per_executor(maker<Reference<NoHooks>>(), k),
        memory_per_queued_task<Reference<NoHooks>, false>(q),
        memory_per_queued_task<Reference<NoHooks>, true>(q));
#ifdef BENCH_HAVE_ASIO
    add("boost::asio::thread_pool", memory_per_executor(maker<Asio>(), k),
        memory_per_queued_task<Asio, false>(q), memory_per_queued_task<Asio, true>(q));
#endif
#ifdef BENCH_HAVE_TBB
    add("oneTBB (tbbmalloc: not seen)", memory_per_executor(maker<Tbb>(), k),
        memory_per_queued_task<Tbb, false>(q), memory_per_queued_task<Tbb, true>(q));
#endif
    t.note =
        "Per executor: heap only, one worker, after its first task (shards exist), "
        "averaged over " +
        std::to_string(k) +
        " executors; the instrumented ones share one registry, as in a service. The "
        "instrumented figure is mostly the executor's share of the registry: its series "
        "(about 25 families) and their labels; the no-metrics pool "
        "(BasicThreadPoolExecutor<NoMetrics>) has no series at all. Each worker thread also "
        "maps a stack (8 MiB "
        "virtual) that the heap does not show. oneTBB allocates through tbbmalloc, "
        "which neither operator new nor mallinfo2 sees.";
    out.push_back(std::move(t));
  }
  return out;
}

// ---------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------
const char* kOurs = "ThreadPoolExecutor (instrumented)";
const char* kNoMetrics = "ThreadPoolExecutor, metrics compiled out";
const char* kSampled = "ThreadPoolExecutor, timing 1 in 64 tasks";
const char* kObserved = "ThreadPoolExecutor + a TaskObserver whose hooks do nothing";
const char* kRef = "mutex+condvar+deque reference";
const char* kRefShards = "reference + our shards (3 clock reads)";
const char* kRefObvious = "reference + prometheus-cpp per task (3 clock reads)";
const char* kAsio = "boost::asio::thread_pool";
const char* kTbb = "oneTBB task_arena + task_group";
const char* kPython = "Python concurrent.futures.ThreadPoolExecutor";

/// Adds the same workload for every pool; returns the row names in `names`.
template <class Body>
void add_pool_rows(Suite& s, const std::string& block, const std::string& prefix, bool with_hooks,
                   bool with_python, Body body, std::function<Metrics()> python_fn,
                   std::vector<std::string>& names) {
  auto add = [&](const std::string& suffix, const char* label, std::function<Metrics()> fn) {
    s.add_pool_row(block, prefix + "_" + suffix, label, std::move(fn));
    names.push_back(prefix + "_" + suffix);
  };
  add("ours", kOurs, [body] { return body.template operator()<Ours>(); });
  add("nometrics", kNoMetrics, [body] { return body.template operator()<OursUninstrumented>(); });
  add("ref", kRef, [body] { return body.template operator()<Reference<NoHooks>>(); });
  if (with_hooks) {
    add("sampled", kSampled, [body] { return body.template operator()<OursSampled>(); });
    add("observed", kObserved, [body] { return body.template operator()<OursObserved>(); });
    add("ref_shards", kRefShards,
        [body] { return body.template operator()<Reference<ShardHooks>>(); });
    add("ref_obvious", kRefObvious,
        [body] { return body.template operator()<Reference<ObviousHooks>>(); });
  }
#ifdef BENCH_HAVE_ASIO
  add("asio", kAsio, [body] { return body.template operator()<Asio>(); });
#endif
#ifdef BENCH_HAVE_TBB
  add("tbb", kTbb, [body] { return body.template operator()<Tbb>(); });
#endif
  if (with_python && python_fn) add("python", kPython, std::move(python_fn));
}

/// Pairs "ours vs every other row of the block", with targets by suffix.
std::vector<Pair> ours_vs_all(const std::string& prefix, const std::vector<std::string>& names,
                              const std::map<std::string, double>& targets) {
  std::vector<Pair> pairs;
  for (const auto& n : names) {
    if (n == prefix + "_ours") continue;
    Pair p{prefix + "_ours", n, NAN, ""};
    const auto suffix = n.substr(prefix.size() + 1);
    if (auto it = targets.find(suffix); it != targets.end()) p.target = it->second;
    pairs.push_back(p);
  }
  return pairs;
}

void build_main_suite(Suite& s, bool py) {
  const std::size_t w = cfg.workers;
  const double mt = cfg.micro_min_time;

  // Clocks.
  s.add_micro_row("clock", "clock_steady", "std::chrono::steady_clock::now()", clock_steady, 1, mt);
  s.add_micro_row("clock", "clock_ee_now", "detail::now_ns() (the library's clock)", clock_ee_now,
                  1, mt);
  s.add_micro_row("clock", "clock_rdtsc", "rdtsc", clock_rdtsc, 1, mt);
  s.add_micro_row("clock", "clock_rdtscp", "rdtscp", clock_rdtscp, 1, mt);
  s.add_micro_row("clock", "clock_coarse", "clock_gettime(CLOCK_MONOTONIC_COARSE)", clock_coarse, 1,
                  mt);
  s.add_comparison(
      {"clock",
       "Clock read cost (ns per read; ratio = steady_clock cost / this clock's)",
       "ns",
       "ns",
       false,
       {{"clock_ee_now", "clock_steady", NAN, "calibrated TSC vs steady_clock"},
        {"clock_rdtsc", "clock_steady", NAN, "raw rdtsc vs steady_clock"},
        {"clock_coarse", "clock_steady", NAN, "coarse (4 ms resolution) vs steady_clock"}},
       {{"clock_steady", "", NAN},
        {"clock_ee_now", "", NAN},
        {"clock_rdtsc", "", NAN},
        {"clock_rdtscp", "", NAN},
        {"clock_coarse", "", NAN}},
       ""});

  // Metric layer in isolation.
  for (int t : {1, 2, 4}) {
    const auto ts = std::to_string(t);
    s.add_micro_row("metric", "metric_ours_t" + ts,
                    "our shards, " + ts + " thread(s) on one executor", metric_ours, t, mt);
    s.add_micro_row("metric", "metric_obvious_t" + ts,
                    "prometheus-cpp per task, " + ts + " thread(s) on one executor", metric_obvious,
                    t, mt);
  }
  s.add_micro_row("metric", "metric_api_t1", "ExecutorExporter API incl. 3 clock reads, 1 thread",
                  metric_exporter_api, 1, mt);
  s.add_comparison(
      {"metric",
       "Metric updates per task, clock reads excluded (wall ns per task per thread)",
       "ns",
       "ns",
       false,
       {{"metric_ours_t1", "metric_obvious_t1", NAN, "1 thread"},
        {"metric_ours_t2", "metric_obvious_t2", 5.0,
         "2 threads on one executor (target: >= 5x cheaper)"},
        {"metric_ours_t4", "metric_obvious_t4", 5.0, "4 threads (oversubscribed on 2 cores)"}},
       {{"metric_ours_t1", "<", 100},
        {"metric_ours_t2", "<", 100},
        {"metric_ours_t4", "", NAN},
        {"metric_obvious_t1", "", NAN},
        {"metric_obvious_t2", "", NAN},
        {"metric_obvious_t4", "", NAN},
        {"metric_api_t1", "", NAN}},
       "Each thread records submit + start + end of a task on one shared executor; "
       "wait/run values vary over the first buckets."});
  s.add_comparison(
      {"metric_flat",
       "Flatness: CPU ns per task, 1 thread vs more (ratio = 1 thread / N threads; "
       "1.0 = flat)",
       "cpu_ns",
       "ns",
       false,
       {{"metric_ours_t2", "metric_ours_t1", 0.85, "ours, 2 vs 1 thread"},
        {"metric_ours_t4", "metric_ours_t1", 0.85, "ours, 4 vs 1 thread"},
        {"metric_obvious_t2", "metric_obvious_t1", NAN, "obvious, 2 vs 1 thread"},
        {"metric_obvious_t4", "metric_obvious_t1", NAN, "obvious, 4 vs 1 thread"}},
       {{"metric_ours_t1", "", NAN},
        {"metric_ours_t2", "", NAN},
        {"metric_ours_t4", "<", 100},
        {"metric_obvious_t1", "", NAN},
        {"metric_obvious_t2", "", NAN},
        {"metric_obvious_t4", "", NAN}},
       "CPU time (all threads) per task: unlike wall time it stays comparable when threads "
       "outnumber cores. A mutex that puts threads to sleep hides part of its cost from it."});

  // Scrape cost.
  for (int k : {1, 10, 100}) {
    const auto ks = std::to_string(k);
    const int it = cfg.scrape_iters[k];
    s.add_micro_row(
        "scrape", "scrape_collect_" + ks, ks + " executor(s): fold + collect",
        [k](benchmark::State& st) { scrape_collect(st, k); }, 1, 0, it);
    s.add_micro_row(
        "scrape", "scrape_serialize_" + ks, ks + " executor(s): TextSerializer",
        [k](benchmark::State& st) { scrape_serialize(st, k); }, 1, 0, it);
    s.add_micro_row(
        "scrape", "scrape_write_text_" + ks, ks + " executor(s): write_text (fmt)",
        [k](benchmark::State& st) { scrape_write_text(st, k); }, 1, 0, it);
    s.add_micro_row(
        "scrape", "scrape_http_" + ks, ks + " executor(s): HTTP GET through Exposer",
        [k](benchmark::State& st) { scrape_http(st, k); }, 1, 0, it);
    s.add_micro_row(
        "scrape", "scrape_server_" + ks, ks + " executor(s): HTTP GET through MetricsServer",
        [k](benchmark::State& st) { scrape_server(st, k); }, 1, 0, it);
  }
  std::vector<AbsRow> scrape_rows;
  for (int k : {1, 10, 100}) {
    for (const char* what : {"collect", "serialize", "write_text", "http", "server"}) {
      scrape_rows.push_back({std::string("scrape_") + what + "_" + std::to_string(k), "", NAN});
    }
  }
  s.add_comparison({"scrape",
                    "Scrape cost (ms per scrape)",
                    "ms",
                    "ms",
                    false,
                    {{"scrape_write_text_1", "scrape_serialize_1", NAN,
                      "1 executor: write_text vs TextSerializer"},
                     {"scrape_write_text_10", "scrape_serialize_10", NAN,
                      "10 executors: write_text vs TextSerializer"},
                     {"scrape_write_text_100", "scrape_serialize_100", NAN,
                      "100 executors: write_text vs TextSerializer"},
                     {"scrape_server_100", "scrape_http_100", NAN,
                      "100 executors over HTTP: MetricsServer vs Exposer"}},
                    scrape_rows,
                    "Target: collect + serialize of 100 executors < 10 ms. Each executor is a "
                    "ThreadPoolExecutor with 2 workers that ran a task since the last scrape."});

  // Pools.
  std::vector<std::string> names;
  const auto ff_n = cfg.ff_n;
  add_pool_rows(
      s, "ff", "ff", true, py, [w, ff_n]<class A>() { return fire_and_forget<A>(w, ff_n); },
      [w] { return run_python("ff", cfg.py_n, w); }, names);
  s.add_comparison(
      {"ff",
       std::to_string(ff_n) + " empty fire-and-forget tasks, 1 producer, " + std::to_string(w) +
           " workers (M tasks/s)",
       "mtps",
       "M/s",
       true,
       [&] {
         auto p = ours_vs_all("ff", names, {{"nometrics", 0.85}, {"tbb", 0.9}, {"asio", 1.0}});
         p.push_back({"ff_sampled", "ff_ours", NAN, "what timing_sample_rate = 64 saves"});
         p.push_back({"ff_observed", "ff_ours", NAN, "a do-nothing observer vs none attached"});
         p.push_back({"ff_sampled", "ff_nometrics", NAN, "timing 1 in 64 vs metrics compiled out"});
         p.push_back({"ff_ref_shards", "ff_ref_obvious", NAN,
                      "same pool: our shards vs prometheus-cpp per task"});
         p.push_back({"ff_ref_shards", "ff_ref", NAN, "same pool: our shards vs none"});
         return p;
       }(),
       {},
       "Python runs " + std::to_string(cfg.py_n) + " tasks (it is ~100x slower)."});
  // Event sinks: the pool's throughput with an EventStream and one sink attached.
  const auto ev_n = cfg.ff_n / 10;
  s.add_pool_row("events", "events_none", kOurs,
                 [w, ev_n] { return fire_and_forget<Ours>(w, ev_n); });
  s.add_pool_row("events", "events_stream", "+ EventStream, a sink that discards",
                 [w, ev_n] { return fire_and_forget<OursStream>(w, ev_n); });
  s.add_pool_row("events", "events_statsd", "+ EventStream, StatsdSink (loopback UDP)",
                 [w, ev_n] { return fire_and_forget<OursStatsd>(w, ev_n); });
  std::vector<Pair> event_pairs = {
      {"events_stream", "events_none", NAN, "an EventStream with a sink that discards"},
      {"events_statsd", "events_none", NAN, "the StatsD sink"}};
#ifdef EXECUTOR_EXPORTER_HAS_POSTGRES
  if (PostgresKind::dsn() != nullptr) {
    s.add_pool_row("events", "events_postgres", "+ EventStream, PostgresSink (loopback server)",
                   [w, ev_n] { return fire_and_forget<OursPostgres>(w, ev_n); });
    event_pairs.push_back({"events_postgres", "events_none", NAN, "the PostgreSQL sink"});
  }
#endif
  s.add_comparison(
      {"events",
       std::to_string(ev_n) + " empty fire-and-forget tasks with a sink attached (M tasks/s)",
       "mtps",
       "M/s",
       true,
       event_pairs,
       {},
       "Each task makes three events (submitted, started, completed). An event costs building "
       "it and a short lock per sink on the executor's thread; the sink runs on its own thread, "
       "which on 2 cores competes with the workers. The clock stops when the pool has run "
       "every task; a sink slower than that delivers afterwards or drops its oldest events past "
       "its buffer (65536). The PostgreSQL row runs when EE_BENCH_POSTGRES_DSN is set "
       "(scripts/bench.sh starts a throwaway server on loopback)."});
  // Stuck-task detection and the flight recorder: the call site kept at submit, the
  // current task published at start, the ring slice written at end; each off vs on.
  const auto st_n = cfg.ff_n;
  s.add_pool_row("stuck", "stuck_all", kOurs + std::string(" (call site, flight recorder)"),
                 [w, st_n] { return fire_and_forget<OursStuck<true, 256>>(w, st_n); });
  s.add_pool_row("stuck", "stuck_no_site", "capture_call_site = false",
                 [w, st_n] { return fire_and_forget<OursStuck<false, 256>>(w, st_n); });
  s.add_pool_row("stuck", "stuck_no_ring", "flight_recorder_slices = 0",
                 [w, st_n] { return fire_and_forget<OursStuck<true, 0>>(w, st_n); });
  s.add_pool_row("stuck", "stuck_none", "both off",
                 [w, st_n] { return fire_and_forget<OursStuck<false, 0>>(w, st_n); });
  s.add_micro_row("stuck", "stuck_worker_ring",
                  "a worker's task start + end (1 clock read), flight recorder of 256",
                  stuck_worker_task<256>, 1, cfg.micro_min_time);
  s.add_micro_row("stuck", "stuck_worker_noring",
                  "a worker's task start + end (1 clock read), flight_recorder_slices = 0",
                  stuck_worker_task<0>, 1, cfg.micro_min_time);
  s.add_comparison({"stuck_micro",
                    "The flight recorder's slice per task, on the worker (wall ns per task)",
                    "ns",
                    "ns",
                    false,
                    {{"stuck_worker_noring", "stuck_worker_ring", NAN,
                      "without the ring vs with it (> 1: the ring costs)"}},
                    {{"stuck_worker_ring", "", NAN}, {"stuck_worker_noring", "", NAN}},
                    "Both publish the running task (start, series, call site, id) behind a "
                    "sequence counter for the stuck-task gauges and the watchdog."});
  const auto stf_n = cfg.fut_n;
  s.add_pool_row("stuck", "stuck_fut_all", "with futures: call site, flight recorder",
                 [w, stf_n] { return with_futures<OursStuck<true, 256>>(w, stf_n); });
  s.add_pool_row("stuck", "stuck_fut_none", "with futures: both off",
                 [w, stf_n] { return with_futures<OursStuck<false, 0>>(w, stf_n); });
  s.add_comparison(
      {"stuck",
       std::to_string(st_n) + " empty fire-and-forget tasks (and " + std::to_string(stf_n) +
           " with futures): stuck-task detection's cost (M tasks/s)",
       "mtps",
       "M/s",
       true,
       {{"stuck_all", "stuck_no_site", NAN, "keeping the submit's call site"},
        {"stuck_all", "stuck_no_ring", NAN, "the flight recorder's ring (256 slices per worker)"},
        {"stuck_all", "stuck_none", NAN, "both, fire-and-forget"},
        {"stuck_fut_all", "stuck_fut_none", NAN, "both, with futures"}},
       {},
       "The current task (start, series, call site, id) is published at every timed start "
       "whatever the options: the gauges and the watchdog need it. The call site is one "
       "pointer stored in the node (which still fits 64 bytes); a ring slice is one 64-byte "
       "line per task that only the worker writes."});
  // Exact averages and CPU time: the queued/running seconds' slots are always written (in
  // "averages_ours"); the thread CPU clock reads of task_cpu_time are an option.
  const auto avg_n = cfg.ff_n / 10;
  s.add_pool_row("averages", "averages_nometrics", kNoMetrics,
                 [w, avg_n] { return fire_and_forget<OursUninstrumented>(w, avg_n); });
  s.add_pool_row("averages", "averages_ours", kOurs,
                 [w, avg_n] { return fire_and_forget<Ours>(w, avg_n); });
  s.add_pool_row("averages", "averages_cpu", "+ task_cpu_time (thread CPU clock per task)",
                 [w, avg_n] { return fire_and_forget<OursCpu>(w, avg_n); });
  s.add_comparison(
      {"averages",
       std::to_string(avg_n) +
           " empty fire-and-forget tasks: exact averages and CPU time (M tasks/s)",
       "mtps",
       "M/s",
       true,
       {{"averages_ours", "averages_nometrics", NAN,
         "all per-task metrics, queued/running seconds included, vs compiled out"},
        {"averages_cpu", "averages_ours", NAN, "task_cpu_time on vs off"}},
       {},
       "The queued and running seconds add three plain stores to the submitting thread's shard "
       "at submit, three at start and one at end (no shared line, no lock); task_cpu_time adds two "
       "clock_gettime(CLOCK_THREAD_CPUTIME_ID) system calls per task, hence an option, off by "
       "default."});
  // Peaks between scrapes: the queue's depth peak, kept under the queue lock at each pop,
  // on vs off, with one producer and with several.
  const auto pk_n = cfg.ff_n;
  const auto pk_prod_n = cfg.prod_n;
  const auto pk_producers = cfg.producers;
  s.add_pool_row("peaks", "peaks_on", kOurs + std::string(" (exact_peaks, as shipped)"),
                 [w, pk_n] { return fire_and_forget<OursPeaks<true>>(w, pk_n); });
  s.add_pool_row("peaks", "peaks_off", "exact_peaks = false",
                 [w, pk_n] { return fire_and_forget<OursPeaks<false>>(w, pk_n); });
  s.add_pool_row("peaks", "peaks_prod_on",
                 std::to_string(pk_producers) + " producers, exact_peaks (as shipped)",
                 [w, pk_prod_n, pk_producers] {
                   return many_producers<OursPeaks<true>>(w, pk_producers, pk_prod_n);
                 });
  s.add_pool_row("peaks", "peaks_prod_off",
                 std::to_string(pk_producers) + " producers, exact_peaks = false",
                 [w, pk_prod_n, pk_producers] {
                   return many_producers<OursPeaks<false>>(w, pk_producers, pk_prod_n);
                 });
  s.add_comparison(
      {"peaks",
       std::to_string(pk_n) + " empty fire-and-forget tasks (and " + std::to_string(pk_prod_n) +
           " from " + std::to_string(pk_producers) +
           " producers): counting the queue's peaks (M tasks/s)",
       "mtps",
       "M/s",
       true,
       {{"peaks_on", "peaks_off", NAN, "exact peaks vs off, one producer"},
        {"peaks_prod_on", "peaks_prod_off", NAN, "exact peaks vs off, several producers"}},
       {},
       "The queue's depth only falls under its lock, where a worker takes work; each time it "
       "does, the worker first compares the depth with the peak, so a lock-free submit pays "
       "nothing and the peak is exact. The running peak is counted under that lock too. Both "
       "rows should sit within the noise of each other."});
  // Exemplars: the pool as shipped (on, refreshed at most every 100 ms per bucket) vs off,
  // and the worst case of a rewrite at every observation.
  s.add_pool_row("exemplars", "exemplars_off", "ExporterOptions::exemplars = false",
                 [w, ff_n] { return fire_and_forget<OursNoExemplars>(w, ff_n); });
  s.add_pool_row("exemplars", "exemplars_on", "exemplars on (default, refresh 100 ms)",
                 [w, ff_n] { return fire_and_forget<Ours>(w, ff_n); });
  s.add_pool_row("exemplars", "exemplars_every", "exemplars rewritten at every observation",
                 [w, ff_n] { return fire_and_forget<OursExemplarsEvery>(w, ff_n); });
  s.add_comparison(
      {"exemplars",
       std::to_string(ff_n) + " empty fire-and-forget tasks, exemplars on vs off (M tasks/s)",
       "mtps",
       "M/s",
       true,
       {{"exemplars_on", "exemplars_off", NAN, "exemplars as shipped vs off"},
        {"exemplars_every", "exemplars_off", NAN, "a rewrite at every observation vs off"}},
       {},
       "On, an observation compares its bucket's last refresh time (thread-private) and "
       "rewrites the exemplar (a seqlock of ~10 atomic stores, one system clock read) at most "
       "every 100 ms per bucket and thread, so the shipped row should sit within the noise of "
       "the off row. The 'every' row rewrites at each observation: the upper bound."});
  names.clear();
  const auto fut_n = cfg.fut_n;
  add_pool_rows(
      s, "fut", "fut", false, py, [w, fut_n]<class A>() { return with_futures<A>(w, fut_n); },
      [w] { return run_python("futures", cfg.py_n, w); }, names);
  s.add_comparison({"fut",
                    std::to_string(fut_n) + " tasks with futures, results read (M tasks/s)",
                    "mtps",
                    "M/s",
                    true,
                    ours_vs_all("fut", names, {{"nometrics", 0.85}, {"asio", 1.0}}),
                    {},
                    ""});
  names.clear();
  const auto prod_n = cfg.prod_n;
  const auto producers = cfg.producers;
  add_pool_rows(
      s, "prod", "prod", true, py,
      [w, prod_n, producers]<class A>() { return many_producers<A>(w, producers, prod_n); },
      [w, producers] { return run_python("producers", cfg.py_n, w, producers); }, names);
  s.add_comparison(
      {"prod",
       std::to_string(producers) + " producer threads, " + std::to_string(prod_n) +
           " empty tasks in all (M tasks/s)",
       "mtps",
       "M/s",
       true,
       [&] {
         auto p = ours_vs_all("prod", names,
                              {{"nometrics", 0.85}, {"ref", 1.0}, {"asio", 1.0}, {"tbb", 1.0}});
         p.push_back({"prod_sampled", "prod_ours", NAN, "what timing_sample_rate = 64 saves"});
         p.push_back({"prod_ref_shards", "prod_ref_obvious", NAN,
                      "same pool: our shards vs prometheus-cpp per task"});
         return p;
       }(),
       {},
       "Target: >= 1.0x the fastest peer."});
  names.clear();
  const auto rtt_n = cfg.rtt_n;
  add_pool_rows(
      s, "rtt", "rtt", false, py, [w, rtt_n]<class A>() { return round_trip<A>(w, rtt_n); },
      [w] { return run_python("rtt", cfg.py_rtt_n, w); }, names);
  s.add_comparison({"rtt_p50",
                    "One-task round trip, p50 (µs)",
                    "p50_us",
                    "µs",
                    false,
                    ours_vs_all("rtt", names, {}),
                    {},
                    ""});
  s.add_comparison({"rtt_p99",
                    "One-task round trip, p99 (µs)",
                    "p99_us",
                    "µs",
                    false,
                    ours_vs_all("rtt", names, {{"ref", 1 / 1.1}}),
                    {},
                    "Target: p99 no worse than 1.1x the reference pool's (ratio >= 0.91)."});
  names.clear();
  const auto busy_n = cfg.busy_n;
  add_pool_rows(
      s, "busy", "busy", false, py, [w, busy_n]<class A>() { return busy_tasks<A>(w, busy_n); },
      [w] { return run_python("busy", cfg.py_busy_n, w); }, names);
  s.add_comparison(
      {"busy",
       std::to_string(busy_n) + " tasks of 10 µs busy work (% of ideal n*10µs/workers)",
       "efficiency_pct",
       "%",
       true,
       ours_vs_all("busy", names, {{"nometrics", 0.98}}),
       {{"busy_ours", ">", 78}},
       "Target: >= 0.98x uninstrumented and >= 78 % of ideal."});
}

void build_scaling_suite(Suite& s) {
  const double mt = cfg.micro_min_time;
  std::vector<Pair> metric_pairs;
  std::vector<AbsRow> metric_abs;
  for (int t : cfg.threads) {
    const auto ts = std::to_string(t);
    s.add_micro_row("metric", "metric_ours_t" + ts, "our shards, " + ts + " threads", metric_ours,
                    t, mt);
    s.add_micro_row("metric", "metric_obvious_t" + ts,
                    "prometheus-cpp per task, " + ts + " threads", metric_obvious, t, mt);
    metric_pairs.push_back({"metric_ours_t" + ts, "metric_obvious_t" + ts, NAN, ts + " threads"});
    metric_abs.push_back({"metric_ours_t" + ts, "<", 100});
    metric_abs.push_back({"metric_obvious_t" + ts, "", NAN});
  }
  s.add_comparison({"scale_metric_wall",
                    "Metric updates per task vs threads (wall ns per task per thread)", "ns", "ns",
                    false, metric_pairs, metric_abs, ""});
  s.add_comparison({"scale_metric_cpu", "Metric updates per task vs threads (CPU ns per task)",
                    "cpu_ns", "ns", false, metric_pairs, metric_abs,
                    "Flat = same value on every line."});
  for (int t : cfg.threads) {
    const auto ts = std::to_string(t);
    const auto n = cfg.scale_n;
    const auto wt = static_cast<std::size_t>(t);
    std::vector<std::string> names;
    add_pool_rows(
        s, "pool_t" + ts, "pool_t" + ts, true, false,
        [wt, n]<class A>() { return many_producers<A>(wt, wt, n); }, {}, names);
    s.add_comparison(
        {"scale_pool_t" + ts,
         ts + " workers, " + ts + " producers, " + std::to_string(n) + " empty tasks (M tasks/s)",
         "mtps",
         "M/s",
         true,
         ours_vs_all("pool_t" + ts, names, {}),
         {},
         ""});
  }
}

// ---------------------------------------------------------------------------
// Machine information and JSON output
// ---------------------------------------------------------------------------
std::string read_first(const std::string& path, const std::string& prefix) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return line;
  }
  return "";
}

/// (total, steal) jiffies from /proc/stat.
std::pair<double, double> cpu_jiffies() {
  std::istringstream in(read_first("/proc/stat", "cpu "));
  std::string cpu;
  in >> cpu;
  double v = 0, total = 0, steal = 0;
  for (int i = 0; in >> v; ++i) {
    if (i < 8) total += v;  // user nice system idle iowait irq softirq steal
    if (i == 7) steal = v;
  }
  return {total, steal};
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '"':
        o += "\\\"";
        break;
      case '\\':
        o += "\\\\";
        break;
      case '\n':
        o += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          o += buf;
        } else {
          o += c;
        }
    }
  }
  return o;
}
std::string js(const std::string& s) { return "\"" + json_escape(s) + "\""; }
std::string jn(double v) {
  if (!std::isfinite(v)) return "null";
  std::ostringstream o;
  o.precision(10);
  o << v;
  return o.str();
}

struct Sample {
  int round;
  std::string row;
  Metrics metrics;
  std::string error;
};

void write_json(const std::string& path, const Suite& s, const std::vector<Sample>& samples,
                const std::map<std::string, std::string>& meta) {
  std::ofstream o(path);
  o << "{\n\"meta\": {";
  bool first = true;
  for (const auto& [k, v] : meta) {
    o << (first ? "" : ",") << "\n  " << js(k) << ": " << js(v);
    first = false;
  }
  o << "\n},\n\"rows\": [";
  first = true;
  for (const auto& r : s.rows()) {
    o << (first ? "" : ",") << "\n  {\"name\": " << js(r.name) << ", \"block\": " << js(r.block)
      << ", \"label\": " << js(r.label) << "}";
    first = false;
  }
  o << "\n],\n\"comparisons\": [";
  first = true;
  for (const auto& c : s.comparisons()) {
    o << (first ? "" : ",") << "\n  {\"id\": " << js(c.id) << ", \"title\": " << js(c.title)
      << ", \"metric\": " << js(c.metric) << ", \"unit\": " << js(c.unit)
      << ", \"higher_better\": " << (c.higher_better ? "true" : "false")
      << ", \"note\": " << js(c.note) << ",\n   \"pairs\": [";
    bool f2 = true;
    for (const auto& p : c.pairs) {
      o << (f2 ? "" : ", ") << "{\"subject\": " << js(p.subject) << ", \"other\": " << js(p.other)
        << ", \"target\": " << jn(p.target) << ", \"note\": " << js(p.note) << "}";
      f2 = false;
    }
    o << "],\n   \"abs\": [";
    f2 = true;
    for (const auto& a : c.abs) {
      o << (f2 ? "" : ", ") << "{\"row\": " << js(a.row) << ", \"op\": " << js(a.op)
        << ", \"target\": " << jn(a.target) << "}";
      f2 = false;
    }
    o << "]}";
    first = false;
  }
  o << "\n],\n\"tables\": [";
  first = true;
  for (const auto& t : s.tables()) {
    o << (first ? "" : ",") << "\n  {\"id\": " << js(t.id) << ", \"title\": " << js(t.title)
      << ", \"note\": " << js(t.note) << ", \"columns\": [";
    for (std::size_t i = 0; i < t.columns.size(); ++i) o << (i ? ", " : "") << js(t.columns[i]);
    o << "], \"rows\": [";
    for (std::size_t r = 0; r < t.rows.size(); ++r) {
      o << (r ? ", " : "") << "[";
      for (std::size_t i = 0; i < t.rows[r].size(); ++i) o << (i ? ", " : "") << js(t.rows[r][i]);
      o << "]";
    }
    o << "]}";
    first = false;
  }
  o << "\n],\n\"samples\": [";
  first = true;
  for (const auto& smp : samples) {
    o << (first ? "" : ",") << "\n  {\"round\": " << smp.round << ", \"row\": " << js(smp.row)
      << ", \"error\": " << js(smp.error) << ", \"metrics\": {";
    bool f2 = true;
    for (const auto& [k, v] : smp.metrics) {
      o << (f2 ? "" : ", ") << js(k) << ": " << jn(v);
      f2 = false;
    }
    o << "}}";
    first = false;
  }
  o << "\n]\n}\n";
}

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&t));
  return buf;
}

void usage() {
  std::cout << "usage: executor_exporter_bench [--smoke] [--scaling] [--rounds N] [--out DIR]\n"
               "         [--filter REGEX] [--threads 1,2,4,8,16] [--workers N] [--no-python]\n"
               "         [--python-script PATH] [--list] [Google Benchmark flags]\n";
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
  using namespace bench;
  benchmark::Initialize(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--smoke") {
      cfg.make_smoke();
    } else if (a == "--scaling") {
      cfg.scaling = true;
    } else if (a == "--rounds") {
      cfg.rounds = std::max(1, std::stoi(value()));
    } else if (a == "--out") {
      cfg.out = value();
    } else if (a == "--filter") {
      cfg.filter = value();
    } else if (a == "--workers") {
      cfg.workers = static_cast<std::size_t>(std::max(1, std::stoi(value())));
    } else if (a == "--threads") {
      cfg.threads.clear();
      std::stringstream ss(value());
      for (std::string t; std::getline(ss, t, ',');)
        cfg.threads.push_back(std::max(1, std::stoi(t)));
    } else if (a == "--no-python") {
      cfg.python = false;
    } else if (a == "--python-script") {
      cfg.python_script = value();
    } else if (a == "--list") {
      cfg.list = true;
    } else if (a == "--help" || a == "-h") {
      usage();
      return 0;
    } else {
      std::cerr << "unknown argument: " << a << "\n";
      usage();
      return 2;
    }
  }

  const auto start_tsc = tsc_clock().now();  // calibrates first
  const auto start_steady = steady_ns();
  const auto [jt0, js0] = cpu_jiffies();
  const std::string loadavg_start = [] {
    std::ifstream in("/proc/loadavg");
    std::string l;
    std::getline(in, l);
    return l;
  }();

  Suite suite;
  const bool py = !cfg.scaling && python_available();
  if (cfg.scaling) {
    build_scaling_suite(suite);
  } else {
    build_main_suite(suite, py);
  }
  if (cfg.list) {
    for (const auto& r : suite.rows())
      std::cout << r.block << "\t" << r.name << "\t" << r.label << "\n";
    return 0;
  }

  // Rows to run, grouped by block in the order they were added.
  const std::regex filter(cfg.filter.empty() ? ".*" : cfg.filter);
  std::vector<std::pair<std::string, std::vector<const Row*>>> blocks;
  for (const auto& r : suite.rows()) {
    if (!std::regex_search(r.name, filter)) continue;
    if (blocks.empty() || blocks.back().first != r.block) blocks.push_back({r.block, {}});
    blocks.back().second.push_back(&r);
  }

  std::vector<Sample> samples;
  int failures = 0;
  const auto t_begin = steady_ns();
  for (int round = 0; round < cfg.rounds; ++round) {
    std::cerr << "round " << round + 1 << "/" << cfg.rounds << ":";
    for (const auto& [block, rows] : blocks) {
      std::cerr << " " << block << std::flush;
      const std::size_t n = rows.size();
      for (std::size_t j = 0; j < n; ++j) {
        const Row& row = *rows[(j + static_cast<std::size_t>(round)) % n];
        Sample smp{round, row.name, {}, ""};
        try {
          smp.metrics = suite.run(row);
        } catch (const std::exception& e) {
          smp.error = e.what();
          ++failures;
          std::cerr << "\n  FAILED " << row.name << ": " << e.what() << "\n";
        }
        samples.push_back(std::move(smp));
      }
    }
    std::cerr << "  (" << fmt_double(static_cast<double>(steady_ns() - t_begin) * 1e-9, 1)
              << " s)\n";
  }

  if (!cfg.scaling && cfg.filter.empty()) {
    std::cerr << "memory and allocation tables...\n";
    try {
      for (auto& t : memory_tables()) suite.add_table(std::move(t));
      suite.add_table(tsc_agreement(start_steady, start_tsc));
    } catch (const std::exception& e) {
      ++failures;
      std::cerr << "  FAILED memory tables: " << e.what() << "\n";
    }
  }
  scrape_fixtures().clear();

  const auto [jt1, js1] = cpu_jiffies();
  std::map<std::string, std::string> meta;
  meta["mode"] = cfg.scaling ? "scaling" : (cfg.smoke ? "smoke" : "full");
  meta["date"] = now_utc();
  meta["nproc"] = std::to_string(std::thread::hardware_concurrency());
  meta["cpu_model"] = [] {
    auto l = read_first("/proc/cpuinfo", "model name");
    const auto c = l.find(':');
    return c == std::string::npos ? std::string("unknown") : l.substr(c + 2);
  }();
  utsname u{};
  if (::uname(&u) == 0) meta["kernel"] = std::string(u.sysname) + " " + u.release + " " + u.machine;
  meta["compiler"] = __VERSION__;
  meta["rounds"] = std::to_string(cfg.rounds);
  meta["workers"] = std::to_string(cfg.workers);
  meta["steal_pct"] = fmt_double(jt1 > jt0 ? 100.0 * (js1 - js0) / (jt1 - jt0) : 0, 1);
  meta["loadavg_start"] = loadavg_start;
  meta["loadavg_end"] = [] {
    std::ifstream in("/proc/loadavg");
    std::string l;
    std::getline(in, l);
    return l;
  }();
  meta["duration_s"] = fmt_double(static_cast<double>(steady_ns() - start_steady) * 1e-9, 1);
  meta["uninstrumented"] = uninstrumented_kind;
  meta["fire_and_forget"] = "post()";
  meta["python"] = py ? "yes" : "no";
  meta["sizes"] = "ff " + std::to_string(cfg.ff_n) + ", futures " + std::to_string(cfg.fut_n) +
                  ", producers " + std::to_string(cfg.producers) + " x " +
                  std::to_string(cfg.prod_n / cfg.producers) + ", round trips " +
                  std::to_string(cfg.rtt_n) + ", busy " + std::to_string(cfg.busy_n) + ", python " +
                  std::to_string(cfg.py_n) + ", scaling " + std::to_string(cfg.scale_n);

  if (!cfg.out.empty()) {
    std::filesystem::create_directories(cfg.out);
    const auto path = cfg.out + (cfg.scaling ? "/scaling.json" : "/results.json");
    write_json(path, suite, samples, meta);
    std::cerr << "wrote " << path << "\n";
  }
  std::cerr << (failures ? "FAILED rows: " + std::to_string(failures) : std::string("all rows ran"))
            << " in " << meta["duration_s"] << " s (steal " << meta["steal_pct"] << " %)\n";
  benchmark::Shutdown();
  return failures == 0 ? 0 : 1;
}
