#include <executor_exporter/metrics/detail/executor_metrics.hpp>
#include <executor_exporter/metrics/detail/registry_state.hpp>
#include <executor_exporter/metrics/metric_catalog.hpp>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/summary.h>

#include <stdexcept>

namespace executor_exporter::detail {

namespace {

template <class Builder>
auto* family(Builder builder, Metric m, prometheus::Registry& registry) {
  return &builder.Name(std::string(spec(m).name)).Help(std::string(spec(m).help)).Register(registry);
}

struct Entry {
  std::weak_ptr<prometheus::Registry> registry;
  std::shared_ptr<RegistryState> state;
};

// Leaked on purpose: executors destroyed during static destruction still look it up.
std::mutex& states_mutex() {
  static auto* m = new std::mutex;
  return *m;
}
std::vector<Entry>& states() {
  static auto* v = new std::vector<Entry>;
  return *v;
}

}  // namespace

RegistryState::RegistryState(prometheus::Registry& registry) : registry_(registry) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  max_workers = family(BuildGauge(), Metric::max_workers, registry);
  workers = family(BuildGauge(), Metric::workers, registry);
  workers_started = family(BuildCounter(), Metric::workers_started, registry);
  submitted = family(BuildCounter(), Metric::tasks_submitted, registry);
  rejected = family(BuildCounter(), Metric::tasks_rejected, registry);
  cancelled = family(BuildCounter(), Metric::tasks_cancelled, registry);
  completed = family(BuildCounter(), Metric::tasks_completed, registry);
  failed = family(BuildCounter(), Metric::tasks_failed, registry);
  queued = family(BuildGauge(), Metric::tasks_queued, registry);
  running = family(BuildGauge(), Metric::tasks_running, registry);
  wait = family(BuildHistogram(), Metric::task_wait, registry);
  run = family(BuildHistogram(), Metric::task_run, registry);
  busy = family(BuildCounter(), Metric::worker_busy, registry);
  queue_capacity = family(BuildGauge(), Metric::queue_capacity, registry);
  scale_events = family(BuildCounter(), Metric::scale_events, registry);
  expired = family(BuildCounter(), Metric::tasks_expired, registry);
  callback_errors = family(BuildCounter(), Metric::callback_errors, registry);
  unhandled_errors = family(BuildCounter(), Metric::unhandled_errors, registry);
  initializer_errors = family(BuildCounter(), Metric::initializer_errors, registry);
  names_overflow = family(BuildCounter(), Metric::task_names_overflow, registry);
  worker_restarts = family(BuildCounter(), Metric::worker_restarts, registry);
  worker_resident = family(BuildGauge(), Metric::worker_resident, registry);
}

prometheus::Family<prometheus::Histogram>& RegistryState::trace_histogram_family() {
  std::lock_guard lock(mutex_);
  if (trace_summary_ != nullptr) {
    throw std::invalid_argument(
        "executor_exporter: executor_task_trace_seconds is already a summary in this registry");
  }
  if (trace_histogram_ == nullptr) {
    trace_histogram_ = family(prometheus::BuildHistogram(), Metric::task_trace, registry_);
  }
  return *trace_histogram_;
}

prometheus::Family<prometheus::Summary>& RegistryState::trace_summary_family() {
  std::lock_guard lock(mutex_);
  if (trace_histogram_ != nullptr) {
    throw std::invalid_argument(
        "executor_exporter: executor_task_trace_seconds is already a histogram in this registry");
  }
  if (trace_summary_ == nullptr) {
    trace_summary_ = family(prometheus::BuildSummary(), Metric::task_trace, registry_);
  }
  return *trace_summary_;
}

std::shared_ptr<RegistryState> RegistryState::of(
    const std::shared_ptr<prometheus::Registry>& registry) {
  if (!registry) throw std::invalid_argument("executor_exporter: registry must not be null");
  std::lock_guard lock(states_mutex());
  auto& all = states();
  std::erase_if(all, [](const Entry& e) { return e.registry.expired(); });
  for (const auto& e : all) {
    if (e.registry.lock() == registry) return e.state;
  }
  auto state = std::make_shared<RegistryState>(*registry);
  all.push_back({registry, state});
  return state;
}

std::shared_ptr<ExecutorMetrics> RegistryState::metrics_for(
    const std::shared_ptr<prometheus::Registry>& registry, const std::string& id,
                                                            const std::string& type,
                                                            const ExporterOptions& options) {
  std::lock_guard lock(mutex_);
  auto& slot = metrics_[{id, type}];
  if (auto existing = slot.lock()) {
    const auto& o = existing->options();
    if (o.wait_buckets != options.wait_buckets || o.run_buckets != options.run_buckets) {
      throw std::invalid_argument("executor_exporter: executor '" + id +
                                  "' already exports histograms with other bucket bounds");
    }
    if (o.timing_sample_rate != options.timing_sample_rate) {
      throw std::invalid_argument("executor_exporter: executor '" + id +
                                  "' already times tasks at another timing_sample_rate");
    }
    return existing;
  }
  auto created = std::make_shared<ExecutorMetrics>(shared_from_this(), registry, id, type, options);
  slot = created;
  return created;
}

std::vector<std::shared_ptr<ExecutorMetrics>> RegistryState::live() {
  std::vector<std::shared_ptr<ExecutorMetrics>> all;
  std::lock_guard lock(mutex_);
  for (auto it = metrics_.begin(); it != metrics_.end();) {
    if (auto m = it->second.lock()) {
      all.push_back(std::move(m));
      ++it;
    } else {
      it = metrics_.erase(it);
    }
  }
  return all;
}

// A metrics object whose last exporter is going away right now is not in live(): its
// destructor folds its remaining counts itself, under the same page lock.
void RegistryState::fold_all() {
  const auto metrics = live();  // outlives the lock, see live()
  std::lock_guard page(page_mutex_);
  for (const auto& m : metrics) m->fold_held();
}

std::vector<prometheus::MetricFamily> RegistryState::collect() {
  const auto metrics = live();  // outlives the lock, see live()
  std::lock_guard page(page_mutex_);
  for (const auto& m : metrics) m->fold_held();
  return registry_.Collect();
}

}  // namespace executor_exporter::detail
