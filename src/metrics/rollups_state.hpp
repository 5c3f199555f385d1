// Internals of Rollups: the series of this process, the registry's baselines, the other
// processes' series from the last sync, and the seam to the PostgreSQL side (compiled
// only with libpq, so the in-process rollups need none).
#pragma once

#include <executor_exporter/metrics/rollups.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace executor_exporter::rollups_detail {

inline constexpr std::int64_t kClean = std::numeric_limits<std::int64_t>::max();

inline std::size_t index_of(Resolution r) noexcept { return static_cast<std::size_t>(r); }

/// A series of this process, with the oldest bucket per resolution changed since the
/// last successful sync (kClean: none), so a sync sends only what changed.
struct OwnSeries {
  RollupSeries series;
  std::array<std::int64_t, 4> dirty_from{kClean, kClean, kClean, kClean};
};

/// A registry series' cumulative values at the last collection.
struct Baseline {
  double value = 0;
  std::uint64_t count = 0;
  double sum = 0;
  std::vector<std::uint64_t> cumulative;
};

/// What one collection or one user call adds to a key.
struct Sample {
  RollupType type = RollupType::counter;
  double value = 0;  // counter growth, or gauge value
  std::uint64_t count = 0;
  double sum = 0;
  double min = 0;  // NaN when count is 0
  double max = 0;
  std::vector<double> bounds;
  std::vector<std::uint64_t> buckets;  // non-cumulative, bounds.size() + 1
};

/// One bucket of one key as it travels to and from PostgreSQL.
struct SyncRow {
  std::string process;
  std::string key;
  Resolution resolution = Resolution::minute;
  RollupType type = RollupType::counter;
  std::vector<double> bounds;
  RollupPoint point;
};

/// The first bucket start kept at each resolution (older ones are pruned).
using Cutoffs = std::array<std::int64_t, 4>;

}  // namespace executor_exporter::rollups_detail

namespace executor_exporter {

struct Rollups::State {
  std::map<std::string, rollups_detail::OwnSeries, std::less<>> own;
  /// process -> key -> series, as read at the last sync.
  std::map<std::string, std::map<std::string, RollupSeries>> others;
  std::map<std::string, rollups_detail::Baseline> baselines;  // by series identity
  std::uint64_t refused = 0;
};

/// The PostgreSQL side of a sync: writes this process's rows, prunes, reads the others'.
struct Rollups::Sync {
  virtual ~Sync() = default;
  virtual std::vector<rollups_detail::SyncRow> exchange(
      const std::vector<rollups_detail::SyncRow>& changed, const rollups_detail::Cutoffs& keep_from,
      std::int64_t oldest_allowed) = 0;
};

}  // namespace executor_exporter

namespace executor_exporter::rollups_detail {

/// min/max that ignore a NaN side (an empty histogram point has NaN extremes).
inline double lesser(double a, double b) {
  return std::isnan(a) ? b : std::isnan(b) ? a : std::min(a, b);
}
inline double greater(double a, double b) {
  return std::isnan(a) ? b : std::isnan(b) ? a : std::max(a, b);
}

/// Adds `sample` to the point of `bucket_start` (creating it, in order) as its type says.
void merge_into(std::vector<RollupPoint>& points, std::int64_t bucket_start, const Sample& sample,
                double observed_at);
/// Adds another process's point to a fleet point of the same bucket.
void merge_point(RollupType type, RollupPoint& into, const RollupPoint& from);
/// Estimated q-quantile of a histogram point (NaN when empty).
double quantile(double q, const std::vector<double>& bounds, const RollupPoint& p);
/// The registry's executor series as samples per key (see Rollups for the key scheme),
/// moving `baselines` to this collection; with `record` false only the baselines move.
std::map<std::string, Sample> registry_samples(
    const std::shared_ptr<prometheus::Registry>& registry,
    std::map<std::string, Baseline>& baselines, bool record);
/// Whether `key` starts with `prefix` as whole dot-separated segments.
bool matches_prefix(std::string_view prefix, std::string_view key) noexcept;

#ifdef EXECUTOR_EXPORTER_HAS_POSTGRES
/// Validates the table prefix; connects on the first exchange.
std::unique_ptr<Rollups::Sync> make_postgres_sync(const RollupOptions& options);
#endif

}  // namespace executor_exporter::rollups_detail
