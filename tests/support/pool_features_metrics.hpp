// Metric reads for the pool-feature tests, through the exposition page parser like every
// test: collect() folds every shard,
// then these helpers pick one series out of the prometheus-cpp families.
#pragma once

#include <executor_exporter/executor_exporter.hpp>

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "prom_text.hpp"

namespace pool_test {

using Labels = ee_test::prom::Labels;

// The page Prometheus would read from these families.
inline ee_test::prom::Page page_of(const std::vector<prometheus::MetricFamily>& fams) {
  return ee_test::prom::parse(prometheus::TextSerializer().Serialize(fams));
}

// ee_test::prom::metric (the one way tests read a metric; it fails on a missing or
// ambiguous series) over the page of `fams`.
inline double value(const std::vector<prometheus::MetricFamily>& fams, const std::string& name,
                    const Labels& labels = {}) {
  return ee_test::prom::metric(page_of(fams), name, labels);
}

// Whether value() would find the series: for tests that mean "it is absent", explicitly.
inline bool has(const std::vector<prometheus::MetricFamily>& fams, const std::string& name,
                const Labels& labels = {}) {
  return ee_test::prom::has(page_of(fams), name, labels);
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
