// The arithmetic of rollup points: how a sample lands in a bucket, how two processes'
// buckets combine, and the percentile estimate.
#include <executor_exporter/metrics/rollups.hpp>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <utility>

#include "rollups_state.hpp"

namespace executor_exporter {

std::string_view to_string(Resolution r) noexcept {
  switch (r) {
    case Resolution::minute:
      return "1min";
    case Resolution::five_minutes:
      return "5min";
    case Resolution::hour:
      return "1hour";
    case Resolution::day:
      return "1day";
  }
  return "?";
}

std::int64_t width_seconds(Resolution r) noexcept {
  switch (r) {
    case Resolution::minute:
      return 60;
    case Resolution::five_minutes:
      return 300;
    case Resolution::hour:
      return 3600;
    case Resolution::day:
      return 86400;
  }
  return 60;
}

std::string_view to_string(RollupType t) noexcept {
  switch (t) {
    case RollupType::counter:
      return "counter";
    case RollupType::gauge:
      return "gauge";
    case RollupType::histogram:
      return "histogram";
  }
  return "?";
}

namespace rollups_detail {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void add_buckets(std::vector<std::uint64_t>& into, const std::vector<std::uint64_t>& from) {
  // An empty vector stands for all zeros (idle points keep none, to save memory).
  if (from.empty()) return;
  if (into.size() < from.size()) into.resize(from.size(), 0);
  for (std::size_t i = 0; i < from.size(); ++i) into[i] += from[i];
}

}  // namespace

void merge_into(std::vector<RollupPoint>& points, std::int64_t start, const Sample& s,
                double observed_at) {
  // Almost always the newest bucket, so search from the back.
  auto it = points.end();
  while (it != points.begin() && std::prev(it)->start >= start) --it;
  if (it == points.end() || it->start != start) {
    RollupPoint fresh;
    fresh.start = start;
    fresh.min = kNaN;
    fresh.max = kNaN;
    it = points.insert(it, std::move(fresh));
  }
  RollupPoint& p = *it;
  switch (s.type) {
    case RollupType::counter:
      p.value += s.value;
      p.observed_at = std::max(p.observed_at, observed_at);
      break;
    case RollupType::gauge:
      if (observed_at >= p.observed_at) {
        p.value = s.value;
        p.observed_at = observed_at;
      }
      break;
    case RollupType::histogram:
      p.count += s.count;
      p.sum += s.sum;
      p.min = lesser(p.min, s.min);
      p.max = greater(p.max, s.max);
      if (s.count != 0) add_buckets(p.buckets, s.buckets);
      p.observed_at = std::max(p.observed_at, observed_at);
      break;
  }
}

void merge_point(RollupType type, RollupPoint& into, const RollupPoint& from) {
  switch (type) {
    case RollupType::counter:
      into.value += from.value;
      break;
    case RollupType::gauge:
      // Last writer wins by the time the value was observed, whichever process it was.
      if (from.observed_at > into.observed_at) into.value = from.value;
      break;
    case RollupType::histogram:
      into.count += from.count;
      into.sum += from.sum;
      into.min = lesser(into.min, from.min);
      into.max = greater(into.max, from.max);
      add_buckets(into.buckets, from.buckets);
      break;
  }
  into.observed_at = std::max(into.observed_at, from.observed_at);
}

double quantile(double q, const std::vector<double>& bounds, const RollupPoint& p) {
  if (p.count == 0 || p.buckets.empty()) return kNaN;
  const double rank = q * static_cast<double>(p.count);
  std::uint64_t below = 0;
  for (std::size_t i = 0; i < p.buckets.size(); ++i) {
    const std::uint64_t c = p.buckets[i];
    if (c == 0 || static_cast<double>(below + c) < rank) {
      below += c;
      continue;
    }
    // The bucket's edges, narrowed to [min, max]: exact for user histograms, and the
    // outer edges of the occupied buckets for the registry's, so the first bucket
    // (no lower edge) and the +Inf one (no upper edge) still have both.
    double lower = i == 0 ? p.min : bounds[i - 1];
    double upper = i < bounds.size() ? bounds[i] : p.max;
    lower = greater(lower, p.min);
    upper = lesser(upper, p.max);
    if (!(upper > lower)) return lower;
    const double fraction = (rank - static_cast<double>(below)) / static_cast<double>(c);
    return lower + (upper - lower) * std::clamp(fraction, 0.0, 1.0);
  }
  return p.max;
}

bool matches_prefix(std::string_view prefix, std::string_view key) noexcept {
  if (prefix.empty()) return true;
  if (!key.starts_with(prefix)) return false;
  return key.size() == prefix.size() || key[prefix.size()] == '.';
}

}  // namespace rollups_detail
}  // namespace executor_exporter
