#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <executor_exporter/metrics/registry.hpp>

namespace executor_exporter {

namespace rollups_detail {
struct Sample;
}

/// The four widths a rollup keeps each series at.
enum class Resolution { minute, five_minutes, hour, day };

inline constexpr std::array<Resolution, 4> all_resolutions{
    Resolution::minute, Resolution::five_minutes, Resolution::hour, Resolution::day};

/// "1min", "5min", "1hour", "1day": the names the seed uses, and those of rollups_json.
std::string_view to_string(Resolution r) noexcept;
/// The bucket width in seconds (60, 300, 3600, 86400).
std::int64_t width_seconds(Resolution r) noexcept;

/// What a key holds, which decides how two values of one bucket combine.
enum class RollupType { counter, gauge, histogram };
std::string_view to_string(RollupType t) noexcept;

/// One bucket of a series. `start` is the bucket's start in Unix seconds (a multiple of
/// the resolution's width). A counter's `value` is what was added during the bucket; a
/// gauge's is the last value recorded in it (`observed_at`, Unix seconds, says when,
/// which decides between processes). A histogram fills the other fields instead:
/// `count` and `sum` are exact; `min`/`max` are exact for user histograms
/// (record_histogram_value) but only bucket edges for the registry's histograms, which
/// never saw the values: the lower edge of the lowest non-empty bucket (0 for the first)
/// and the upper edge of the highest (the last finite edge when values landed in +Inf),
/// both NaN when count is 0. `buckets[i]` counts the values in (bounds[i-1], bounds[i]]
/// of RollupSeries::bounds, the last entry being above the last bound; p50/p95/p99 are
/// estimated from them by linear interpolation inside the bucket that holds the rank
/// (as PromQL's histogram_quantile does), clamped to [min, max]; NaN when count is 0.
struct RollupPoint {
  std::int64_t start = 0;
  double value = 0;
  double observed_at = 0;
  std::uint64_t count = 0;
  double sum = 0;
  double min = 0;
  double max = 0;
  std::vector<std::uint64_t> buckets = {};
  double p50 = 0;
  double p95 = 0;
  double p99 = 0;
};

/// One key's points at every resolution, oldest first.
struct RollupSeries {
  RollupType type = RollupType::counter;
  /// A histogram's finite upper bucket bounds, ascending (buckets has one entry more).
  std::vector<double> bounds = {};
  std::map<Resolution, std::vector<RollupPoint>> points = {};
};

/// Settings of Rollups. Every field has a default.
struct RollupOptions {
  /// How often the collection thread folds the registry into the series (and prunes).
  /// Zero or less: no thread; call collect_now() yourself (tests, or your own timer).
  std::chrono::milliseconds collection_interval{10000};
  /// Most points kept per series at each resolution: by default one hour of minutes,
  /// one day of 5-minute buckets, one week of hours and 90 days, 606 points per series.
  std::map<Resolution, std::size_t> max_points_per_resolution = {{Resolution::minute, 60},
                                                                 {Resolution::five_minutes, 288},
                                                                 {Resolution::hour, 168},
                                                                 {Resolution::day, 90}};
  /// Points whose bucket started longer ago than this are pruned (the seed's 90 days).
  std::chrono::seconds maximum_metric_age{std::chrono::hours(24 * 90)};
  /// Most distinct keys; a new key beyond it is refused and counted (refused_updates()),
  /// so an executor id or task name built from user data cannot grow memory without end.
  std::size_t max_keys = 4096;
  /// The registry whose executors are rolled up; default_registry() when null.
  std::shared_ptr<prometheus::Registry> registry = nullptr;
  /// Wall clock of every bucket; tests put a fake one here.
  std::function<std::chrono::system_clock::time_point()> clock = nullptr;
  /// Names this process in the shared tables and in get_metrics(prefix, worker):
  /// hostname:pid when empty.
  std::string process_id = {};
  /// A libpq connection string; empty: no sync, the series are this process's alone.
  /// Used only when the library was built with PostgreSQL (EXECUTOR_EXPORTER_HAS_POSTGRES);
  /// without it a non-empty dsn is refused with std::invalid_argument.
  std::string postgres_dsn = {};
  /// How often the collection thread syncs with PostgreSQL (after a collection).
  /// Zero or less: only sync_now() syncs.
  std::chrono::milliseconds sync_interval{60000};
  /// The shared table is `<table_prefix>_points`: lowercase letters, digits and
  /// underscores, at most 33 characters (checked when a DSN is given).
  std::string table_prefix = "executor_rollup";
  /// Receives errors of the collection thread and of syncs; stderr when empty.
  std::function<void(std::exception_ptr)> on_error = nullptr;
};

/// History inside the process: compact time series of every executor's metrics and of
/// the user's own counters, gauges and histograms at 1 minute, 5 minutes, 1 hour and
/// 1 day, pruned by age and by point count (a port of the chancy Metrics plugin).
///
/// **Fed from the registry, not the task path.** A thread of its own collects the
/// registry every collection_interval (executor_exporter::collect: every executor exact
/// at one instant) and turns what changed since the last collection into points: counter
/// growth is added to the current bucket, gauges overwrite it, histogram growth (bucket
/// counts, count, sum) is added to it. Executors pay nothing for it. What was counted
/// before the Rollups existed is not attributed to any bucket (the constructor takes the
/// baseline); a series that appears later counts from zero.
///
/// **Keys** are dot-separated segments. An executor's series are
/// `executor.<id>.<metric>` and, for a named task, `executor.<id>.task.<name>.<metric>`,
/// where `<metric>` is the family name without `executor_`, `_total` and a leading
/// `task_` (tasks_completed, wait_seconds, run_seconds, worker_busy_seconds, workers...),
/// followed by the values of its other labels, in the catalog's order
/// (`executor.a.tasks_rejected.queue_full`, `executor.a.run_seconds.failed`). In ids,
/// names and label values `%` is written `%25` and `.` `%2E`, so a segment never splits.
/// Executors sharing an id (and executor types sharing an id) add up, as in the metrics.
/// Families without an `executor` label (build info, sinks) are not rolled up.
///
/// **Memory bound.** At most max_keys series, each with at most
/// Σ max_points_per_resolution points (606 by default). A point is sizeof(RollupPoint),
/// 104 bytes on 64-bit targets, plus 8 bytes per histogram bucket when its bucket had
/// values (an idle histogram point keeps none): the registry's bucket count, or 152 for
/// a user histogram. So the bound is max_keys × 606 × (104 + 8 × buckets) bytes plus
/// the key strings: ~63 KB per counter or gauge key, ~0.8 MB per busy user-histogram
/// key, ~260 MB for 4096 counter keys once every one holds 90 days. With a DSN the
/// other processes' series are held too, up to the same bound per process.
///
/// **Shared across processes.** With postgres_dsn, every sync_interval each process
/// upserts the buckets it changed into `<table_prefix>_points`, one row per (key,
/// resolution, bucket, process): a re-sync replaces its own row, never adds to it. It
/// then reads the other processes' rows back, so get_metrics() answers for the fleet:
/// counters and histograms add up over processes, a gauge takes the value observed
/// last. The table is created by versioned migrations (the task history's machinery,
/// scope = the table name).
class Rollups {
 public:
  /// Takes the registry's baseline and starts the collection thread (when the interval
  /// is positive). Throws std::invalid_argument for a zero max_keys or point limit, and,
  /// with a DSN, for a bad table prefix or a library built without PostgreSQL. Does not
  /// connect to PostgreSQL.
  explicit Rollups(RollupOptions options = {});
  Rollups(const Rollups&) = delete;
  Rollups& operator=(const Rollups&) = delete;
  /// Stops the thread (a last sync is not attempted: the fleet keeps the last one).
  ~Rollups();

  /// Adds `value` to the key's current bucket at every resolution.
  void increment_counter(std::string_view key, double value);
  /// Sets the key's current bucket to `value` at every resolution.
  void record_gauge(std::string_view key, double value);
  /// Adds one value to the key's histogram: exact count, sum, min and max, and a count
  /// in fixed log-spaced buckets (ten per decade from 1e-6 to 1e9; below and above go to
  /// the first and last) from which the percentiles are estimated.
  void record_histogram_value(std::string_view key, double value);

  /// The series whose key starts with `prefix` as whole segments ("executor.a" matches
  /// "executor.a.workers", not "executor.ab.workers"; empty matches all). With `worker`
  /// empty: the fleet (with a DSN: this process now plus the others as of the last sync),
  /// else only that process's part (this process's process_id, or another's from the
  /// last sync). Percentiles are filled in.
  std::map<std::string, RollupSeries> get_metrics(std::string_view prefix = {},
                                                  std::string_view worker = {}) const;

  /// Folds the registry into the series now (what the thread does each interval) and
  /// prunes.
  void collect_now();
  /// Drops points older than maximum_metric_age and beyond each resolution's point
  /// limit, and keys left without points; returns how many points went.
  std::size_t cleanup();
  /// Writes this process's changed buckets to PostgreSQL and reads the others' back.
  /// Throws on failure (the changed buckets stay marked and go with the next sync).
  /// std::logic_error without a DSN.
  void sync_now();

  /// Updates refused because max_keys was reached.
  std::uint64_t refused_updates() const;
  const std::string& process_id() const noexcept { return options_.process_id; }
  /// The clock's reading in Unix seconds.
  std::int64_t now_seconds() const;

  struct State;  // the series and baselines (src/metrics/rollups_state.hpp)
  struct Sync;   // the PostgreSQL side (src/postgres/rollup_sync.cpp)

 private:
  void run();
  void report(std::exception_ptr error) const;
  void record(std::string_view key, const rollups_detail::Sample& sample);

  RollupOptions options_;
  mutable std::mutex mutex_;
  std::unique_ptr<State> state_;  // guarded by mutex_
  std::unique_ptr<Sync> sync_;    // the syncing thread only (sync_mutex_)
  std::mutex sync_mutex_;
  std::mutex collect_mutex_;
  std::mutex stop_mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

/// The series under `prefix` at one resolution as compact JSON, for a status page:
/// {"resolution":"1min","generated_at":<unix s>,"metrics":{"<key>":{"type":"counter",
/// "points":[[t,value],...]},"<key>":{"type":"histogram","points":[[t,count,sum,min,max,
/// p50,p95,p99],...]}}}, keys sorted, points oldest first, t in Unix seconds, numbers
/// that are not finite as null. Strings are escaped for JSON and also for embedding in
/// HTML (<, >, & as \u escapes); bytes that are not UTF-8 become U+FFFD.
std::string rollups_json(const Rollups& rollups, std::string_view prefix, Resolution resolution,
                         std::string_view worker = {});

}  // namespace executor_exporter
