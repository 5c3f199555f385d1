// From a collected registry to rollup samples: the key of each executor series, and the
// growth of its counters and histograms since the last collection.
#include <executor_exporter/metrics/metric_catalog.hpp>
#include <executor_exporter/metrics/rollups.hpp>

#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "rollups_state.hpp"

namespace executor_exporter::rollups_detail {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A label value as one key segment: '%' and '.' escaped so that segments never split.
void append_segment(std::string& key, std::string_view value) {
  key += '.';
  for (char c : value) {
    if (c == '%') {
      key += "%25";
    } else if (c == '.') {
      key += "%2E";
    } else {
      key += c;
    }
  }
}

std::string short_name(std::string_view family) {
  if (family.starts_with("executor_")) family.remove_prefix(9);
  if (family.ends_with("_total")) family.remove_suffix(6);
  if (family.starts_with("task_")) family.remove_prefix(5);
  return std::string(family);
}

const MetricSpec* find_spec(std::string_view family) {
  for (const auto& s : metric_catalog) {
    if (s.name == family) return &s;
  }
  return nullptr;
}

// The labels after executor and task, in the catalog's order where the family is one of
// the library's (its `reason, task` lists the reason first), else in the page's order.
std::vector<std::string_view> extra_label_order(const MetricSpec* spec,
                                                const prometheus::ClientMetric& m) {
  std::vector<std::string_view> out;
  if (spec != nullptr) {
    std::string_view rest = spec->extra_labels;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      std::string_view l = rest.substr(0, comma);
      while (!l.empty() && l.front() == ' ') l.remove_prefix(1);
      if (l != "task") out.push_back(l);
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    }
    return out;
  }
  for (const auto& l : m.label) {
    if (l.name != "executor" && l.name != "executor_type" && l.name != "task") {
      out.push_back(l.name);
    }
  }
  return out;
}

const std::string* label(const prometheus::ClientMetric& m, std::string_view name) {
  for (const auto& l : m.label) {
    if (l.name == name) return &l.value;
  }
  return nullptr;
}

// The key of one registry series, or empty when it is not an executor's.
std::string key_of(const std::string& family, const prometheus::ClientMetric& m) {
  const std::string* executor = label(m, "executor");
  if (executor == nullptr) return {};
  std::string key = "executor";
  append_segment(key, *executor);
  if (const std::string* task = label(m, "task"); task != nullptr && !task->empty()) {
    append_segment(key, "task");
    append_segment(key, *task);
  }
  key += '.';
  key += short_name(family);
  for (std::string_view l : extra_label_order(find_spec(family), m)) {
    const std::string* v = label(m, l);
    append_segment(key, v != nullptr ? std::string_view(*v) : std::string_view{});
  }
  return key;
}

std::string identity_of(const std::string& family, const prometheus::ClientMetric& m) {
  std::string id = family;
  for (const auto& l : m.label) {
    id += '\x1f';
    id += l.name;
    id += '=';
    id += l.value;
  }
  return id;
}

// Histogram growth since the baseline, per (non-cumulative) bucket, with the edges of
// the occupied buckets as min and max: all a registry histogram can say about them.
Sample histogram_growth(const prometheus::ClientMetric::Histogram& h, Baseline& base, bool fresh) {
  Sample s;
  s.type = RollupType::histogram;
  std::vector<std::uint64_t> cumulative;
  for (const auto& b : h.bucket) {
    if (std::isfinite(b.upper_bound)) s.bounds.push_back(b.upper_bound);
    cumulative.push_back(b.cumulative_count);
  }
  // A counter that went down was reset (an executor rebuilt under the same id): all of
  // its value is new, as Prometheus' rate() assumes.
  const bool reset =
      !fresh && (h.sample_count < base.count || cumulative.size() != base.cumulative.size());
  const bool from_zero = fresh || reset;
  s.count = from_zero ? h.sample_count : h.sample_count - base.count;
  s.sum = from_zero ? h.sample_sum : h.sample_sum - base.sum;
  s.buckets.assign(cumulative.size(), 0);
  std::uint64_t prev_now = 0;
  std::uint64_t prev_base = 0;
  for (std::size_t i = 0; i < cumulative.size(); ++i) {
    const std::uint64_t in_now = cumulative[i] - prev_now;
    const std::uint64_t b = from_zero ? 0 : base.cumulative[i];
    const std::uint64_t in_base = from_zero ? 0 : b - prev_base;
    s.buckets[i] = in_now >= in_base ? in_now - in_base : 0;
    prev_now = cumulative[i];
    prev_base = b;
  }
  s.min = kNaN;
  s.max = kNaN;
  if (s.count != 0) {
    std::size_t lo = s.buckets.size();
    std::size_t hi = 0;
    for (std::size_t i = 0; i < s.buckets.size(); ++i) {
      if (s.buckets[i] == 0) continue;
      lo = std::min(lo, i);
      hi = i;
    }
    if (lo < s.buckets.size()) {
      const double first_lower = s.bounds.empty() ? 0.0 : std::min(0.0, s.bounds.front());
      s.min = lo == 0 ? first_lower : s.bounds[lo - 1];
      s.max = s.bounds.empty() ? 0.0 : s.bounds[std::min(hi, s.bounds.size() - 1)];
    }
  }
  base.count = h.sample_count;
  base.sum = h.sample_sum;
  base.cumulative = std::move(cumulative);
  return s;
}

void combine(Sample& into, const Sample& from) {
  switch (into.type) {
    case RollupType::counter:
    case RollupType::gauge:
      // Executors sharing an id add up, as they do on the metrics page.
      into.value += from.value;
      break;
    case RollupType::histogram:
      if (from.bounds != into.bounds) return;  // cannot add buckets of other edges
      into.count += from.count;
      into.sum += from.sum;
      into.min = rollups_detail::lesser(into.min, from.min);
      into.max = rollups_detail::greater(into.max, from.max);
      for (std::size_t i = 0; i < into.buckets.size(); ++i) into.buckets[i] += from.buckets[i];
      break;
  }
}

}  // namespace

// The registry's executor series as samples per key, moving the baselines; with
// `record` false (the constructor) only the baselines are taken.
std::map<std::string, Sample> registry_samples(
    const std::shared_ptr<prometheus::Registry>& registry,
    std::map<std::string, Baseline>& baselines, bool record) {
  std::map<std::string, Sample> out;
  std::map<std::string, Baseline> seen;
  for (const auto& family : collect(registry)) {
    for (const auto& m : family.metric) {
      std::string key = key_of(family.name, m);
      if (key.empty()) continue;
      std::string id = identity_of(family.name, m);
      auto old = baselines.find(id);
      const bool fresh = old == baselines.end();
      Baseline base = fresh ? Baseline{} : std::move(old->second);
      Sample s;
      switch (family.type) {
        case prometheus::MetricType::Counter: {
          s.type = RollupType::counter;
          const double v = m.counter.value;
          s.value = fresh || v < base.value ? v : v - base.value;
          base.value = v;
          break;
        }
        case prometheus::MetricType::Gauge:
          s.type = RollupType::gauge;
          s.value = m.gauge.value;
          break;
        case prometheus::MetricType::Histogram:
          s = histogram_growth(m.histogram, base, fresh);
          break;
        default:
          continue;  // summaries and untyped series have nothing to add per bucket
      }
      seen.emplace(std::move(id), std::move(base));
      if (!record) continue;
      auto [it, inserted] = out.try_emplace(std::move(key), s);
      if (!inserted && it->second.type == s.type) combine(it->second, s);
    }
  }
  baselines = std::move(seen);  // series gone from the registry are forgotten
  return out;
}

}  // namespace executor_exporter::rollups_detail
