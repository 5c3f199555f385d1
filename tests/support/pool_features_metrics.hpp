// Exact metric reads for the pool-feature tests: collect() folds every shard,
// then these helpers pick one series out of the prometheus-cpp families.
#pragma once

#include <executor_exporter/executor_exporter.hpp>

#include <prometheus/metric_family.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace pool_test {

using Labels = std::map<std::string, std::string>;

// The series of `name` whose labels include `labels`; a series carrying a `task` label
// matches only when `labels` names the task (so by default the unlabelled series, those
// of the unnamed tasks, are picked). Null when none.
inline const prometheus::ClientMetric* find(const std::vector<prometheus::MetricFamily>& fams,
                                            const std::string& name, const Labels& labels) {
  for (const auto& f : fams) {
    if (f.name != name) continue;
    for (const auto& m : f.metric) {
      bool ok = true;
      bool has_task = false;
      for (const auto& l : m.label) has_task = has_task || l.name == "task";
      if (has_task && !labels.count("task")) ok = false;
      for (const auto& [k, v] : labels) {
        bool found = false;
        for (const auto& l : m.label) found = found || (l.name == k && l.value == v);
        ok = ok && found;
      }
      if (ok) return &m;
    }
  }
  return nullptr;
}

// Counter or gauge value, histogram sample count, summary sample count; 0 when absent.
inline double value(const std::vector<prometheus::MetricFamily>& fams, const std::string& name,
                    const Labels& labels = {}) {
  const auto* m = find(fams, name, labels);
  if (m == nullptr) return 0;
  for (const auto& f : fams) {
    if (f.name != name) continue;
    switch (f.type) {
      case prometheus::MetricType::Counter:
        return m->counter.value;
      case prometheus::MetricType::Gauge:
        return m->gauge.value;
      case prometheus::MetricType::Histogram:
        return static_cast<double>(m->histogram.sample_count);
      case prometheus::MetricType::Summary:
        return static_cast<double>(m->summary.sample_count);
      default:
        return 0;
    }
  }
  return 0;
}

// A fresh registry and the options of a pool reporting into it.
inline executor_exporter::ThreadPoolOptions options(std::shared_ptr<prometheus::Registry> reg,
                                                    std::string id = "pf") {
  executor_exporter::ThreadPoolOptions o;
  o.registry = std::move(reg);
  o.id = std::move(id);
  return o;
}

// submitted = completed + failed + cancelled + expired + queued + running, at one scrape.
inline bool reconciles(const std::vector<prometheus::MetricFamily>& fams, const Labels& l = {}) {
  const double submitted = value(fams, "executor_tasks_submitted_total", l);
  Labels ok = l, failed = l;
  ok["result"] = "completed";
  failed["result"] = "failed";
  const double rest = value(fams, "executor_task_run_seconds", ok) +
                      value(fams, "executor_task_run_seconds", failed) +
                      value(fams, "executor_tasks_cancelled_total", l) +
                      value(fams, "executor_tasks_expired_total", l) +
                      value(fams, "executor_tasks_queued", l) +
                      value(fams, "executor_tasks_running", l);
  return submitted == rest;
}

}  // namespace pool_test
