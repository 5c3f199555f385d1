#include <executor_exporter/metrics/rollups.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <utility>

#include "../events/sink_error.hpp"
#include "rollups_state.hpp"

namespace executor_exporter {

using rollups_detail::Baseline;
using rollups_detail::Cutoffs;
using rollups_detail::index_of;
using rollups_detail::kClean;
using rollups_detail::matches_prefix;
using rollups_detail::merge_into;
using rollups_detail::merge_point;
using rollups_detail::OwnSeries;
using rollups_detail::quantile;
using rollups_detail::registry_samples;
using rollups_detail::Sample;
using rollups_detail::SyncRow;

namespace {

std::int64_t bucket_start(std::int64_t t, Resolution r) {
  const std::int64_t w = width_seconds(r);
  // Floor, not truncation, so a clock before 1970 (a test's) still lands on an edge.
  return (t >= 0 ? t / w : (t - w + 1) / w) * w;
}

// Ten buckets per decade from 1e-6 to 1e9: any positive quantity a user is likely to
// time or size, each bucket 26% wide, so a percentile is off by at most that much.
const std::vector<double>& user_bounds() {
  static const std::vector<double> bounds = [] {
    std::vector<double> b;
    for (int k = -60; k <= 90; ++k) b.push_back(std::pow(10.0, k / 10.0));
    return b;
  }();
  return bounds;
}

std::string default_process_id() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return std::string(host) + ":" + std::to_string(::getpid());
}

std::vector<RollupPoint>& points_of(RollupSeries& s, Resolution r) { return s.points[r]; }

}  // namespace

// ---------------------------------------------------------------------------

Rollups::Rollups(RollupOptions options)
    : options_(std::move(options)), state_(std::make_unique<State>()) {
  if (!options_.registry) options_.registry = default_registry();
  if (!options_.clock) options_.clock = [] { return std::chrono::system_clock::now(); };
  if (options_.process_id.empty()) options_.process_id = default_process_id();
  if (options_.max_keys == 0) {
    throw std::invalid_argument("executor_exporter: RollupOptions::max_keys must be positive");
  }
  for (Resolution r : all_resolutions) {
    auto it = options_.max_points_per_resolution.find(r);
    if (it == options_.max_points_per_resolution.end() || it->second == 0) {
      throw std::invalid_argument(
          "executor_exporter: RollupOptions::max_points_per_resolution needs a positive limit "
          "for " +
          std::string(to_string(r)));
    }
  }
  if (!options_.postgres_dsn.empty()) {
#ifdef EXECUTOR_EXPORTER_HAS_POSTGRES
    sync_ = rollups_detail::make_postgres_sync(options_);
#else
    throw std::invalid_argument(
        "executor_exporter: RollupOptions::postgres_dsn needs a library built with PostgreSQL");
#endif
  }
  registry_samples(options_.registry, state_->baselines, /*record=*/false);
  const bool collects = options_.collection_interval.count() > 0;
  const bool syncs = sync_ && options_.sync_interval.count() > 0;
  if (collects || syncs) thread_ = std::thread([this] { run(); });
}

Rollups::~Rollups() {
  {
    std::lock_guard lock(stop_mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::int64_t Rollups::now_seconds() const {
  return std::chrono::floor<std::chrono::seconds>(options_.clock().time_since_epoch()).count();
}

void Rollups::report(std::exception_ptr error) const {
  detail::report_sink_error(options_.on_error, std::move(error), "rollups");
}

void Rollups::run() {
  using clock = std::chrono::steady_clock;
  const bool collects = options_.collection_interval.count() > 0;
  const bool syncs = sync_ && options_.sync_interval.count() > 0;
  auto next_collect = clock::now() + options_.collection_interval;
  auto next_sync = clock::now() + options_.sync_interval;
  for (;;) {
    const auto until = collects && syncs ? std::min(next_collect, next_sync)
                       : collects        ? next_collect
                                         : next_sync;
    {
      std::unique_lock lock(stop_mutex_);
      if (wake_.wait_until(lock, until, [&] { return stop_; })) return;
    }
    // Errors go to on_error and the loop goes on: the next interval may well succeed.
    const auto guarded = [this](auto step) {
      try {
        step();
      } catch (...) {
        report(std::current_exception());
      }
    };
    const auto now = clock::now();
    if (collects && now >= next_collect) {
      next_collect = now + options_.collection_interval;
      guarded([this] { collect_now(); });
    }
    if (syncs && now >= next_sync) {
      next_sync = now + options_.sync_interval;
      guarded([this] { sync_now(); });
    }
  }
}

namespace {

// Applies one sample to the key's series at every resolution. Returns false when the
// key is new and the key limit is reached.
bool apply(Rollups::State& state, std::size_t max_keys, std::string_view key, const Sample& s,
           std::chrono::system_clock::time_point at) {
  const std::int64_t now = std::chrono::floor<std::chrono::seconds>(at.time_since_epoch()).count();
  // Sub-second, so that of two gauge values of one second the later still wins.
  const double observed = std::chrono::duration<double>(at.time_since_epoch()).count();
  auto it = state.own.find(key);
  if (it == state.own.end()) {
    if (state.own.size() >= max_keys) {
      ++state.refused;
      return false;
    }
    it = state.own.emplace(std::string(key), OwnSeries{}).first;
    it->second.series.type = s.type;
    it->second.series.bounds = s.bounds;
  }
  OwnSeries& own = it->second;
  // A key keeps its first type (and a histogram its first edges): a sample of another
  // kind under the same key is someone else's mistake, not a reason to corrupt both.
  if (own.series.type != s.type) return true;
  if (s.type == RollupType::histogram && own.series.bounds != s.bounds) return true;
  for (Resolution r : all_resolutions) {
    const std::int64_t start = bucket_start(now, r);
    merge_into(points_of(own.series, r), start, s, observed);
    auto& dirty = own.dirty_from[index_of(r)];
    dirty = std::min(dirty, start);
  }
  return true;
}

void check_finite(double v) {
  if (!std::isfinite(v)) {
    throw std::invalid_argument("executor_exporter: rollups take finite values only");
  }
}

}  // namespace

void Rollups::increment_counter(std::string_view key, double value) {
  check_finite(value);
  Sample s;
  s.type = RollupType::counter;
  s.value = value;
  record(key, s);
}

void Rollups::record_gauge(std::string_view key, double value) {
  check_finite(value);
  Sample s;
  s.type = RollupType::gauge;
  s.value = value;
  record(key, s);
}

void Rollups::record(std::string_view key, const rollups_detail::Sample& sample) {
  const auto now = options_.clock();
  std::lock_guard lock(mutex_);
  apply(*state_, options_.max_keys, key, sample, now);
}

void Rollups::record_histogram_value(std::string_view key, double value) {
  check_finite(value);
  Sample s;
  s.type = RollupType::histogram;
  s.count = 1;
  s.sum = value;
  s.min = value;
  s.max = value;
  s.bounds = user_bounds();
  s.buckets.assign(s.bounds.size() + 1, 0);
  const auto at = std::lower_bound(s.bounds.begin(), s.bounds.end(), value);
  s.buckets[static_cast<std::size_t>(at - s.bounds.begin())] = 1;
  record(key, s);
}

void Rollups::collect_now() {
  // One collection at a time (the thread's and a caller's): each moves the baselines.
  std::lock_guard collecting(collect_mutex_);
  const auto now = options_.clock();
  // The registry is collected outside mutex_: a collection folds every executor, and
  // queries should not wait for that.
  std::map<std::string, Baseline> baselines;
  {
    std::lock_guard lock(mutex_);
    baselines = state_->baselines;
  }
  const auto samples = registry_samples(options_.registry, baselines, /*record=*/true);
  {
    std::lock_guard lock(mutex_);
    state_->baselines = std::move(baselines);
    for (const auto& [key, s] : samples) apply(*state_, options_.max_keys, key, s, now);
  }
  cleanup();
}

std::size_t Rollups::cleanup() {
  const std::int64_t now = now_seconds();
  const std::int64_t oldest = now - options_.maximum_metric_age.count();
  std::size_t removed = 0;
  std::lock_guard lock(mutex_);
  for (auto it = state_->own.begin(); it != state_->own.end();) {
    bool any = false;
    for (auto& [r, points] : it->second.series.points) {
      const std::size_t limit = options_.max_points_per_resolution.at(r);
      const auto before = points.size();
      std::erase_if(points, [&](const RollupPoint& p) { return p.start < oldest; });
      if (points.size() > limit) {
        points.erase(points.begin(), points.end() - static_cast<std::ptrdiff_t>(limit));
      }
      removed += before - points.size();
      any = any || !points.empty();
    }
    it = any ? std::next(it) : state_->own.erase(it);
  }
  return removed;
}

std::uint64_t Rollups::refused_updates() const {
  std::lock_guard lock(mutex_);
  return state_->refused;
}

std::map<std::string, RollupSeries> Rollups::get_metrics(std::string_view prefix,
                                                         std::string_view worker) const {
  std::map<std::string, RollupSeries> out;
  {
    std::lock_guard lock(mutex_);
    const bool fleet = worker.empty();
    if (fleet || worker == options_.process_id) {
      for (const auto& [key, own] : state_->own) {
        if (matches_prefix(prefix, key)) out.emplace(key, own.series);
      }
    }
    for (const auto& [process, series] : state_->others) {
      if (!fleet && process != worker) continue;
      for (const auto& [key, theirs] : series) {
        if (!matches_prefix(prefix, key)) continue;
        auto [it, inserted] = out.try_emplace(key, theirs);
        if (inserted) continue;
        RollupSeries& mine = it->second;
        if (mine.type != theirs.type || mine.bounds != theirs.bounds) continue;
        for (const auto& [r, points] : theirs.points) {
          auto& into = mine.points[r];
          for (const auto& p : points) {
            auto at = std::lower_bound(
                into.begin(), into.end(), p.start,
                [](const RollupPoint& a, std::int64_t start) { return a.start < start; });
            if (at != into.end() && at->start == p.start) {
              merge_point(mine.type, *at, p);
            } else {
              into.insert(at, p);
            }
          }
        }
      }
    }
  }
  for (auto& [key, s] : out) {
    for (auto& [r, points] : s.points) {
      for (auto& p : points) {
        if (s.type != RollupType::histogram) continue;
        p.p50 = quantile(0.50, s.bounds, p);
        p.p95 = quantile(0.95, s.bounds, p);
        p.p99 = quantile(0.99, s.bounds, p);
      }
    }
  }
  return out;
}

void Rollups::sync_now() {
  std::lock_guard sync_lock(sync_mutex_);
  if (!sync_) throw std::logic_error("executor_exporter: Rollups::sync_now without a postgres_dsn");
  const std::int64_t now = now_seconds();
  Cutoffs keep_from{};
  for (Resolution r : all_resolutions) {
    const auto limit = static_cast<std::int64_t>(options_.max_points_per_resolution.at(r));
    keep_from[index_of(r)] = bucket_start(now, r) - (limit - 1) * width_seconds(r);
  }
  const std::int64_t oldest = now - options_.maximum_metric_age.count();

  // Take the changed buckets and mark them clean; put the marks back if the sync fails,
  // so nothing changed is ever skipped, and a bucket sent twice replaces its own row.
  std::vector<SyncRow> changed;
  std::map<std::string, std::array<std::int64_t, 4>> marks;
  {
    std::lock_guard lock(mutex_);
    for (auto& [key, own] : state_->own) {
      bool any = false;
      for (auto& [r, points] : own.series.points) {
        const std::int64_t from = own.dirty_from[index_of(r)];
        if (from == kClean) continue;
        for (const auto& p : points) {
          if (p.start < from) continue;
          changed.push_back(
              SyncRow{options_.process_id, key, r, own.series.type, own.series.bounds, p});
          any = true;
        }
      }
      if (any) marks.emplace(key, own.dirty_from);
      own.dirty_from.fill(kClean);
    }
  }
  std::vector<SyncRow> received;
  try {
    received = sync_->exchange(changed, keep_from, oldest);
  } catch (...) {
    std::lock_guard lock(mutex_);
    for (const auto& [key, from] : marks) {
      auto it = state_->own.find(key);
      if (it == state_->own.end()) continue;
      for (std::size_t i = 0; i < from.size(); ++i) {
        it->second.dirty_from[i] = std::min(it->second.dirty_from[i], from[i]);
      }
    }
    throw;
  }
  std::map<std::string, std::map<std::string, RollupSeries>> others;
  for (auto& row : received) {
    auto& series = others[row.process][row.key];
    if (series.points.empty()) {
      series.type = row.type;
      series.bounds = row.bounds;
    } else if (series.type != row.type || series.bounds != row.bounds) {
      continue;
    }
    auto& points = series.points[row.resolution];
    auto at =
        std::lower_bound(points.begin(), points.end(), row.point.start,
                         [](const RollupPoint& a, std::int64_t start) { return a.start < start; });
    points.insert(at, std::move(row.point));
  }
  std::lock_guard lock(mutex_);
  state_->others = std::move(others);
}

}  // namespace executor_exporter
