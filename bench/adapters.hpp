// One interface over every pool the suite compares:
//   A a(workers, producers);   // producers: how many threads will submit at once
//   a.post(f);                 // fire-and-forget
//   auto fut = a.submit(f);    // something with get()
//   a.drain();                 // runs everything queued, then stops (joins)
#pragma once

#include <cstddef>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <prometheus/registry.h>

#include <executor_exporter/pools/thread_pool_executor.hpp>

#include "reference_pool.hpp"

#ifdef BENCH_HAVE_ASIO
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#endif
#ifdef BENCH_HAVE_TBB
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>
#endif

namespace bench {

/// What every ThreadPoolExecutor row does with its pool; the rows differ only in the
/// options they start it with (the derived constructors).
struct OursPool {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::optional<executor_exporter::ThreadPoolExecutor> pool;

  /// Options with the suite's id and this row's registry, for the constructor to adjust.
  executor_exporter::ThreadPoolOptions options() const {
    executor_exporter::ThreadPoolOptions o;
    o.id = "bench";
    o.registry = registry;
    return o;
  }
  template <class F>
  void post(F&& f) {
    pool->post(std::forward<F>(f));
  }
  template <class F>
  auto submit(F&& f) {
    return pool->submit(std::forward<F>(f));
  }
  void drain() { pool->shutdown(true); }
};

/// ThreadPoolExecutor as shipped: wait and run histograms always on (SampleRate 1), or
/// with ExporterOptions::timing_sample_rate = SampleRate; with Observed, a TaskObserver
/// whose hooks do nothing is attached, so the row shows what the observer calls cost; with
/// CpuTime, ExporterOptions::task_cpu_time (two thread CPU clock reads per task).
/// Exemplars: ExporterOptions::exemplars, refreshed at most every RefreshMs per bucket.
template <unsigned SampleRate, bool Observed = false, bool CpuTime = false, bool Exemplars = true,
          unsigned RefreshMs = 100>
struct OursAt : OursPool {
  static constexpr const char* name =
      CpuTime ? "ours_cpu"
              : (Observed ? "ours_observed" : (SampleRate == 1 ? "ours" : "ours_sampled"));
  explicit OursAt(std::size_t workers, std::size_t = 1) {
    auto o = options();
    o.exporter.timing_sample_rate = SampleRate;
    o.exporter.task_cpu_time = CpuTime;
    o.exporter.exemplars = Exemplars;
    o.exporter.exemplar_refresh_ms = RefreshMs;
    if (Observed) o.observers.push_back(std::make_shared<executor_exporter::TaskObserver>());
    pool.emplace(workers, std::move(o));
  }
};
using Ours = OursAt<1>;
/// The timing sample rate of the "sampled" rows.
inline constexpr unsigned kSampleRate = 64;
using OursSampled = OursAt<kSampleRate>;
using OursObserved = OursAt<1, true>;
using OursCpu = OursAt<1, false, true>;

/// ThreadPoolExecutor with the stuck-task parts set: whether submit keeps its call site
/// (ThreadPoolOptions::capture_call_site) and the flight recorder's ring per worker
/// (ExporterOptions::flight_recorder_slices, 0: off). OursStuck<true, 256> is as shipped.
template <bool CaptureSite, std::size_t RingSlices>
struct OursStuck : OursPool {
  static constexpr const char* name = "ours_stuck";
  explicit OursStuck(std::size_t workers, std::size_t = 1) {
    auto o = options();
    o.capture_call_site = CaptureSite;
    o.exporter.flight_recorder_slices = RingSlices;
    pool.emplace(workers, std::move(o));
  }
};
/// ThreadPoolExecutor with ExporterOptions::exact_peaks on (as shipped) or off: the queue
/// then keeps no depth count, and the peaks come from the gauges at each fold.
template <bool ExactPeaks>
struct OursPeaks : OursPool {
  static constexpr const char* name = "ours_peaks";
  explicit OursPeaks(std::size_t workers, std::size_t = 1) {
    auto o = options();
    o.exporter.exact_peaks = ExactPeaks;
    pool.emplace(workers, std::move(o));
  }
};
using OursNoExemplars = OursAt<1, false, false, false>;
/// Exemplars rewritten at every observation: the most they can cost.
using OursExemplarsEvery = OursAt<1, false, false, true, 0>;

/// ThreadPoolExecutor with its per-task metrics compiled out (BasicThreadPoolExecutor<NoMetrics>):
/// the same queue, nodes and futures, no clock reads, no shard updates.
using UninstrumentedImpl = executor_exporter::BasicThreadPoolExecutor<executor_exporter::NoMetrics>;
inline constexpr const char* uninstrumented_kind =
    "BasicThreadPoolExecutor<NoMetrics>: the library's pool with per-task metrics compiled out";

struct OursUninstrumented {
  static constexpr const char* name = "ours_nometrics";
  UninstrumentedImpl pool;
  explicit OursUninstrumented(std::size_t workers, std::size_t = 1) : pool(workers) {}
  template <class F>
  void post(F&& f) {
    pool.post(std::forward<F>(f));
  }
  template <class F>
  auto submit(F&& f) {
    return pool.submit(std::forward<F>(f));
  }
  void drain() { pool.shutdown(true); }
};

template <class Hooks>
struct Reference {
  ReferencePool<Hooks> pool;
  explicit Reference(std::size_t workers, std::size_t = 1) : pool(workers) {}
  template <class F>
  void post(F&& f) {
    pool.post(std::forward<F>(f));
  }
  template <class F>
  auto submit(F&& f) {
    return pool.submit(std::forward<F>(f));
  }
  void drain() { pool.shutdown(); }
};

#ifdef BENCH_HAVE_ASIO
/// boost::asio::thread_pool: post(); futures through std::packaged_task.
struct Asio {
  boost::asio::thread_pool pool;
  explicit Asio(std::size_t workers, std::size_t = 1) : pool(workers) {}
  template <class F>
  void post(F&& f) {
    boost::asio::post(pool, std::forward<F>(f));
  }
  template <class F>
  auto submit(F f) {
    using R = std::invoke_result_t<F&>;
    std::packaged_task<R()> task(std::move(f));
    auto future = task.get_future();
    boost::asio::post(pool, std::move(task));
    return future;
  }
  void drain() { pool.join(); }
};
#endif

#ifdef BENCH_HAVE_TBB
/// oneTBB: a task_arena with `workers` worker slots plus one slot per submitting thread
/// (global_control raises the process's worker limit to match), one task_group.
/// Submitting threads enter the arena for each run(); the thread that waits joins in
/// and runs tasks too (TBB's model: callers help).
struct Tbb {
  oneapi::tbb::global_control limit;
  oneapi::tbb::task_arena arena;
  oneapi::tbb::task_group group;
  Tbb(std::size_t workers, std::size_t producers = 1)
      : limit(oneapi::tbb::global_control::max_allowed_parallelism, workers + 1),
        arena(static_cast<int>(workers + producers), static_cast<unsigned>(producers)) {
    arena.initialize();
  }
  ~Tbb() { drain(); }
  template <class F>
  void post(F&& f) {
    arena.execute([&] { group.run(std::forward<F>(f)); });
  }
  template <class F>
  auto submit(F f) {
    using R = std::invoke_result_t<F&>;
    auto promise = std::make_shared<std::promise<R>>();
    auto future = promise->get_future();
    post([promise, f = std::move(f)] {
      if constexpr (std::is_void_v<R>) {
        f();
        promise->set_value();
      } else {
        promise->set_value(f());
      }
    });
    return future;
  }
  void drain() {
    arena.execute([&] { group.wait(); });
  }
};
#endif

}  // namespace bench
