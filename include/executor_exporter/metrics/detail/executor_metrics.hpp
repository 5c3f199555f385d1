#pragma once

#include <ctime>

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <source_location>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <executor_exporter/metrics/detail/metric_shard.hpp>
#include <executor_exporter/metrics/exporter_options.hpp>
#include <executor_exporter/metrics/metric_catalog.hpp>
#include <executor_exporter/metrics/task_observer.hpp>

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
class Summary;
}  // namespace prometheus

namespace executor_exporter {
struct TraceOptions;
}  // namespace executor_exporter

namespace executor_exporter::detail {

class RegistryState;

/// The thread's shards, one per ExecutorMetrics it has fed. On thread exit the shards
/// are marked retired so the next collect folds them a last time and drops them.
struct ShardCache {
  struct Entry {
    std::uint64_t owner;
    std::shared_ptr<MetricShard> shard;
  };
  std::uint64_t last_owner = 0;
  MetricShard* last = nullptr;
  std::vector<Entry> entries;

  ShardCache() = default;
  ShardCache(const ShardCache&) = delete;
  ShardCache& operator=(const ShardCache&) = delete;
  ~ShardCache() {
    for (auto& e : entries) e.shard->retired.store(true, std::memory_order_release);
  }
};

inline ShardCache& shard_cache() {
  thread_local ShardCache cache;
  return cache;
}

/// The observers attached to one executor id: an immutable snapshot, replaced whole on
/// every change so the hot path reads it with one load and no lock.
using ObserverList = std::vector<std::shared_ptr<TaskObserver>>;

/// The storage of one (registry, executor id, executor type): the prometheus-cpp series,
/// the per-thread shards that feed the task lifecycle, and one atomic per rare event or
/// level. Every series is built by one loop over metric_catalog, keyed by the catalog
/// entry and the value of its enumerated label, so a new event or level metric needs
/// a catalog row and nothing here. Executors never use this type directly: they call
/// detail::Recorder, which decides what to record where. Every ExecutorExporter with the
/// same id and type shares one instance, which is how instances add up. It lives while
/// an exporter refers to it; its last fold happens in the destructor, and the series
/// stay in the registry so a later executor with the same id continues the counters.
class ExecutorMetrics {
 public:
  /// With a non-null `parent`, the series of the tasks named `task`: only the catalog
  /// families with a `task` label, each series with task=`task` (see named()).
  ExecutorMetrics(std::shared_ptr<RegistryState> state,
                  std::shared_ptr<prometheus::Registry> registry, std::string id, std::string type,
                  const ExporterOptions& options, std::string task = {},
                  ExecutorMetrics* parent = nullptr);
  ExecutorMetrics(const ExecutorMetrics&) = delete;
  ExecutorMetrics& operator=(const ExecutorMetrics&) = delete;
  ~ExecutorMetrics();

  /// The calling thread's shard (created on first use). Hot path: one thread-local
  /// compare when a thread keeps feeding the same executor.
  MetricShard& local_shard() {
    ShardCache& cache = shard_cache();
    if (cache.last_owner == unique_id_) return *cache.last;
    return register_shard();
  }

  /// A rare event: catalog entry `m` (MetricSource::event), the series of the `label`-th
  /// value of its enumerated label, grows by `n`. Shared atomics, folded at scrape.
  void count(Metric m, std::size_t label, std::uint64_t n) noexcept {
    events_[event_offset(m) + label].fetch_add(n, std::memory_order_relaxed);
  }
  /// A level (MetricSource::level) changes by `delta`. Written into the gauge at once,
  /// not at the fold: levels change rarely (resize, a worker starting), and a registry
  /// that is collected without a fold (plainly registered with an Exposer) must still
  /// show how many workers a live executor has. Executors sharing an id add up.
  void adjust(Metric m, std::int64_t delta) noexcept;
  /// During a fold (from a fold hook): adds `value` to the MetricSource::sampled gauge
  /// `m` of the worker labelled `worker` (created on first use). Every fold starts these
  /// gauges from 0 before it runs the hooks, so executors that share an id add up
  /// instead of overwriting each other, and a series no hook reports any more reads 0.
  void sample(Metric m, const std::string& worker, double value);

  /// The metrics of the tasks named `name` (same executor labels plus task=`name`),
  /// created on first use and kept as long as this object. Once `max_names` distinct
  /// names exist, further names share the task="other" series and count in
  /// executor_task_names_overflow_total. A thread that keeps submitting the same names
  /// finds them in a small thread-local cache without taking a lock.
  ExecutorMetrics& named(std::string_view name, std::size_t max_names);

  /// Records `seconds` in executor_task_trace_seconds{scope, action}, as a histogram or
  /// a summary per `options`. Takes a short lock (series lookup) plus prometheus-cpp's
  /// own; marks are opt-in and far rarer than tasks, and the series stay exact.
  /// With `to_ns` (now_ns() at the mark; `from_ns` the previous one), the mark also goes
  /// to the flight recorder's ring of marks (flight_marks()), in the same lock.
  void observe_trace(std::string_view scope, std::string_view action, double seconds,
                     const TraceOptions& options, std::uint64_t from_ns = 0,
                     std::uint64_t to_ns = 0);

  /// Moves everything the shards counted since the last fold into the prometheus-cpp
  /// series. Exact: each increment is folded exactly once, however often this runs.
  /// Holds the registry's page lock (RegistryState::page_mutex) throughout, so a
  /// collect running on another thread never reads the series half-way through a fold.
  void fold();

  /// The load so far, as an autoscaler reads it: every task's wait, by bucket of the
  /// wait histogram (not cumulative; the last is +Inf), and the busy time as exported
  /// (running tasks up to now). This executor's and its named tasks' together.
  struct Load {
    std::vector<std::uint64_t> wait_buckets;
    std::uint64_t busy_ns = 0;
  };
  /// Folds (as a scrape does, so every count still lands exactly once in the series) and
  /// returns the totals; a caller diffs two of them for the load in between.
  Load load();

  /// Scrape-time hooks: each runs at the start of every fold(), so before every collect
  /// (e.g. to sample a value from /proc with sample()). remove_fold_hook waits for a
  /// running call of that hook to return, so a hook may refer to its owner until then.
  std::uint64_t add_fold_hook(std::function<void()> hook);
  void remove_fold_hook(std::uint64_t handle);
  /// Tasks that run where no shard sees them start: a process pool's tasks, whose start
  /// and end are counted together when the result arrives. The probe runs at every
  /// fold, after the shards are read, and says how many such tasks run now (not yet
  /// counted as ended) and their run time so far; they then count as running instead
  /// of queued, and in the busy seconds, so a pool of long tasks is not shown idle.
  struct Running {
    std::uint64_t tasks = 0;
    std::uint64_t run_ns = 0;
  };
  /// Adds a probe; executors sharing an id each add theirs, and their counts add up.
  /// remove_running_probe waits for a fold that is calling it, so a probe may refer to
  /// its owner until then.
  /// A worker thread (Recorder::Worker, on that thread) whose CPU clock each fold reads
  /// for executor_worker_cpu_seconds_total; removed on the same thread when it leaves,
  /// its CPU time so far then kept. `key` identifies the registration.
  void add_cpu_thread(const void* key);
  void remove_cpu_thread(const void* key) noexcept;

  std::uint64_t add_running_probe(std::function<Running()> probe);
  void remove_running_probe(std::uint64_t handle);

  /// During a fold (from a fold hook): one of this executor's queues holds a task
  /// submitted at `submit_ns` (now_ns()) as its oldest. The fold exports the oldest of
  /// all such notes as executor_task_oldest_queued_seconds; 0 is ignored.
  void note_queued_since(std::uint64_t submit_ns) noexcept {
    if (submit_ns != 0 && (queued_since_ == 0 || submit_ns < queued_since_)) {
      queued_since_ = submit_ns;
    }
  }

  /// During a fold (from a fold hook): the most tasks one of this executor's queues held
  /// at once, and the most it had running at once, since that hook's previous call.
  /// Hooks of executors sharing an id add up (an upper bound of their sum's peak). The
  /// fold keeps them per fold and exports the largest within ExporterOptions::peak_window
  /// as executor_tasks_queued_max / executor_tasks_running_max, never below the gauges
  /// it exports at the same fold (an executor without a hook, such as the proxy, shows
  /// the most it had at any fold).
  void note_peaks(std::uint64_t queued, std::uint64_t running) noexcept {
    peaks_noted_.queued += queued;
    peaks_noted_.running += running;
  }

  /// A task running now, as the stuck-task gauges and the watchdog see it.
  struct RunningTask {
    const ExecutorMetrics* series = nullptr;  // where it counts (a named child or this)
    std::uint64_t start_ns = 0;               // now_ns() at its start
    std::source_location where{};             // its submit's call site
    std::uint64_t id = 0;                     // its observer id (0 when none)
    std::uint64_t tid = 0;                    // the thread (or process) running it
    std::string thread;                       // that thread's name
    std::int64_t pid = 0;                     // a process pool's worker pid, else 0
  };
  /// Running tasks no shard sees (a process pool's workers): `probe` appends them, at
  /// every fold and watchdog round. remove waits for a call in progress.
  std::uint64_t add_running_tasks_probe(std::function<void(std::vector<RunningTask>&)> probe);
  void remove_running_tasks_probe(std::uint64_t handle);
  /// The tasks of this executor running now, from every thread's current task and the
  /// probes. Takes this object's mutex (never held on the hot path).
  std::vector<RunningTask> running_tasks();

  /// The flight recorder's slices of one thread of this executor.
  struct ThreadSlices {
    std::uint64_t tid = 0;
    std::string thread;
    std::vector<TaskSlice> slices;
  };
  /// Every thread's ring (ExporterOptions::flight_recorder_slices), oldest slice first.
  std::vector<ThreadSlices> flight_slices();
  /// One Trace::mark for the flight recorder: the interval it measured, on its thread.
  struct MarkSlice {
    std::uint64_t tid = 0;
    std::uint64_t from_ns = 0;
    std::uint64_t to_ns = 0;
    std::string scope;
    std::string action;
  };
  /// The last marks of this executor's traced tasks (as many as
  /// ExporterOptions::flight_recorder_slices, across its threads), oldest first.
  std::vector<MarkSlice> flight_marks();

  /// Calls `fn` for every executor-level object alive in the process (the watchdog and
  /// the flight recorder's dump walk them), those alive when the call began. No lock of
  /// the library is held while `fn` runs; an object's destructor waits until the walk is
  /// done with it, so `fn` must not drop the last reference to an executor.
  static void for_each_live(const std::function<void(ExecutorMetrics&)>& fn);

  /// Observers of this executor id (see TaskObserver). The executor level holds them;
  /// a named child answers with its parent's.
  void add_observer(std::shared_ptr<TaskObserver> observer);
  void remove_observer(const TaskObserver* observer);
  /// The current snapshot, or null when none is attached (the hot path's one branch).
  const ObserverList* observers() const noexcept {
    return root_->observers_.load(std::memory_order_acquire);
  }

  const std::string& id() const { return id_; }
  const std::string& type() const { return type_; }
  const ExporterOptions& options() const { return options_; }
  /// The task label of a named() child; empty for the executor itself.
  const std::string& task() const { return task_; }
  /// The executor level: itself, or a named child's parent.
  ExecutorMetrics& root() noexcept { return *root_; }

 private:
  friend class RegistryState;

  /// One catalog family's series for this executor: one per value of the enumerated
  /// label (one when it has none). Null where the family is not this object's (an
  /// executor-level family in a named child).
  struct Series {
    std::vector<prometheus::Counter*> counters;
    std::vector<prometheus::Gauge*> gauges;
    std::vector<prometheus::Histogram*> histograms;
  };

  /// fold() for a caller that already holds the page lock.
  void fold_held();
  /// Each shard's slots, read as one instant per thread: [object][shard][slot].
  using ShardSnapshots = std::vector<std::vector<std::uint64_t>>;
  /// Reads the shards of `objects` (an executor and its named children, each with its
  /// mutex_ held). The lifecycle slots of all the shards one thread writes are read
  /// together and read again while a task of that thread ended in between, so a thread
  /// counts at most one running task summed over every task name.
  /// A thread whose tasks end too often to be read at one instant keeps its last
  /// snapshot (and its retired shards, in `retired`) until a later fold.
  static std::vector<ShardSnapshots> read_shards(const std::vector<ExecutorMetrics*>& objects,
                                                 std::vector<std::vector<bool>>& retired);
  /// The shard slots a fold reads per thread, in the order it reads them.
  std::array<std::pair<std::size_t, std::size_t>, 4> lifecycle_ranges() const;
  /// Ended tasks in slots read through `value_of`.
  template <class ValueOf>
  std::uint64_t ended_count(ValueOf&& value_of) const;
  void fold_averages(std::uint64_t running_series_ns, const Running& outside);
  /// Folds the shards (read by read_shards; `retired`, each shard's retired flag, and
  /// `now` taken before): the task lifecycle. Drops the retired shards.
  void fold_tasks(ShardSnapshots& snapshot, const std::vector<bool>& retired, std::uint64_t now);
  /// Folds the event counters and levels.
  void fold_rare();
  /// Sets the stuck-task gauges of this executor and its named children (`objects`),
  /// every mutex_ held.
  void fold_stuck(const std::vector<ExecutorMetrics*>& objects, std::uint64_t now);
  /// Sets executor_tasks_queued_max / _running_max from the hooks' notes and the gauges
  /// of `objects` just folded, every mutex_ held.
  void fold_peaks(const std::vector<ExecutorMetrics*>& objects, std::uint64_t now);
  /// Keeps one Trace::mark in marks_ (see observe_trace).
  void record_mark(std::string_view scope, std::string_view action, std::uint64_t from_ns,
                   std::uint64_t to_ns);
  /// running_tasks() for a caller holding mutex_.
  void running_tasks_held(std::vector<RunningTask>& out);
  /// Picks the newest exemplar per bucket from the shards (caller holds mutex_).
  void pick_exemplars();
  MetricShard& register_shard();
  template <class Map, class Make>
  auto* trace_series(Map& map, std::string_view scope, std::string_view action,
                     std::size_t max_series, Make&& make);
  /// The task="other" child: overflowing names, and tasks the user named "other".
  ExecutorMetrics& other_series();
  void build_series();
  /// First slot in events_ of catalog entry `m`.
  static std::size_t event_offset(Metric m) noexcept;

  std::shared_ptr<RegistryState> state_;
  std::shared_ptr<prometheus::Registry> registry_;  // keeps the series below alive
  std::string id_;
  std::string type_;
  ExporterOptions options_;
  std::string task_;
  ExecutorMetrics* root_;
  std::uint64_t unique_id_;
  SlotLayout layout_;
  std::vector<std::uint64_t> run_bounds_ns_;
  std::vector<std::uint64_t> wait_bounds_ns_;
  std::array<Series, metric_catalog.size()> series_;

  // Rare events, indexed as event_offset(m) + label.
  std::unique_ptr<std::atomic<std::uint64_t>[]> events_;
  std::vector<std::uint64_t> events_folded_;  // guarded by mutex_

  std::mutex hooks_mutex_;  // guards hooks_; held while they run
  std::vector<std::pair<std::uint64_t, std::function<void()>>> hooks_;
  std::uint64_t next_hook_ = 1;

  std::mutex mutex_;  // guards the members below; never taken on the hot path
  std::vector<std::shared_ptr<MetricShard>> shards_;
  std::vector<std::uint64_t> totals_;   // everything folded so far, per slot
  std::uint64_t busy_exported_ns_ = 0;  // what the busy counter was raised to
  // What the queued and running seconds were raised to (they only ever rise).
  std::uint64_t queued_exported_ns_ = 0;
  std::uint64_t running_exported_ns_ = 0;
  // Worker threads' CPU clocks (guarded by mutex_), the CPU time of those gone, and what
  // the worker CPU counter was raised to.
  std::vector<std::pair<const void*, clockid_t>> cpu_threads_;
  std::uint64_t cpu_retired_ns_ = 0;
  std::uint64_t cpu_exported_ns_ = 0;
  // The newest exemplar per histogram (ExemplarStore's numbering) and bucket.
  std::array<std::vector<ExemplarSample>, ExemplarStore::histograms> exemplars_;
  std::vector<std::pair<std::uint64_t, std::function<Running()>>> running_probes_;
  std::uint64_t next_probe_ = 1;
  std::vector<std::pair<std::uint64_t, std::function<void(std::vector<RunningTask>&)>>>
      running_tasks_probes_;
  std::uint64_t queued_since_ = 0;  // note_queued_since's minimum; guarded by the page lock
  // Peaks: the hooks' notes of this fold, and one entry per fold within peak_window,
  // oldest first. Guarded by the page lock.
  struct Peaks {
    std::uint64_t at_ns = 0;
    std::uint64_t queued = 0;
    std::uint64_t running = 0;
  };
  Peaks peaks_noted_;
  std::deque<Peaks> peaks_;
  // Sampled gauges by (catalog position, worker label); guarded by the page lock.
  std::map<std::pair<std::size_t, std::string>, prometheus::Gauge*> sampled_;

  // named() children, by name; "other" holds the overflow. Guarded by named_mutex_,
  // which is never held while a child folds.
  std::mutex named_mutex_;
  std::map<std::string, std::shared_ptr<ExecutorMetrics>, std::less<>> named_;
  std::shared_ptr<ExecutorMetrics> other_;

  // Observers: the current snapshot, and every snapshot ever published, kept until this
  // object dies because a hot-path reader may still walk an old one (no reclamation
  // scheme is worth it for a list that changes a handful of times).
  std::mutex observers_mutex_;
  std::atomic<const ObserverList*> observers_{nullptr};
  std::vector<std::unique_ptr<const ObserverList>> observer_lists_;

  // Trace series by (scope, action); guarded by trace_mutex_.
  struct TraceKeyLess {
    using is_transparent = void;
    template <class A, class B>
    bool operator()(const A& a, const B& b) const {
      return std::pair<std::string_view, std::string_view>(a.first, a.second) <
             std::pair<std::string_view, std::string_view>(b.first, b.second);
    }
  };
  std::mutex trace_mutex_;
  std::vector<MarkSlice> marks_;  // a ring, guarded by trace_mutex_
  std::size_t marks_written_ = 0;
  std::map<std::pair<std::string, std::string>, prometheus::Histogram*, TraceKeyLess> trace_hist_;
  std::map<std::pair<std::string, std::string>, prometheus::Summary*, TraceKeyLess> trace_sum_;
};

}  // namespace executor_exporter::detail
