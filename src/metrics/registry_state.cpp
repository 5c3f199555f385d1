#include <executor_exporter/metrics/detail/background_fold.hpp>
#include <executor_exporter/metrics/detail/executor_metrics.hpp>
#include <executor_exporter/metrics/detail/label_value.hpp>
#include <executor_exporter/metrics/detail/registry_state.hpp>
#include <executor_exporter/metrics/metric_catalog.hpp>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/summary.h>

#include <chrono>
#include <stdexcept>

namespace executor_exporter::detail {

namespace {

// The library's labels of one series: executor (absent: not one of ours), executor_type,
// task and result. Both per-series lookups (_created, exemplars) key on them.
struct SeriesLabels {
  std::string_view id, type, task, result;
  bool ours = false;
};
SeriesLabels series_labels(
    const std::vector<std::pair<std::string_view, std::string_view>>& labels) {
  SeriesLabels out;
  for (const auto& [name, value] : labels) {
    if (name == "executor") {
      out.id = value;
      out.ours = true;
    } else if (name == "executor_type") {
      out.type = value;
    } else if (name == "task") {
      out.task = value;
    } else if (name == "result") {
      out.result = value;
    }
  }
  return out;
}

template <class Builder>
auto* family(Builder builder, Metric m, prometheus::Registry& registry) {
  return &builder.Name(std::string(spec(m).name))
              .Help(std::string(spec(m).help))
              .Register(registry);
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
  for (std::size_t i = 0; i < metric_catalog.size(); ++i) {
    const auto m = static_cast<Metric>(i);
    if (spec(m).source == MetricSource::trace) continue;  // its type is chosen on first use
    if (spec(m).source == MetricSource::build) {
      // One series per registry, so a dashboard can tell which library version serves.
      gauges_[i] = family(prometheus::BuildGauge(), m, registry);
      gauges_[i]->Add({{std::string(first_label(spec(m))), std::string(library_version())}}).Set(1);
      continue;
    }
    switch (spec(m).kind) {
      case MetricKind::counter:
        counters_[i] = family(prometheus::BuildCounter(), m, registry);
        break;
      case MetricKind::gauge:
        gauges_[i] = family(prometheus::BuildGauge(), m, registry);
        break;
      case MetricKind::histogram:
        histograms_[i] = family(prometheus::BuildHistogram(), m, registry);
        break;
    }
  }
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
    const std::shared_ptr<prometheus::Registry>& registry, const std::string& raw_id,
    const std::string& raw_type, const ExporterOptions& options) {
  // As exported: an id or type that is not UTF-8 would make Prometheus drop the scrape.
  const std::string id = sanitize_label_value(raw_id);
  const std::string type = sanitize_label_value(raw_type);
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
  ensure_background_fold();
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

void RegistryState::note_created(const std::string& id, const std::string& type,
                                 const std::string& task) {
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::lock_guard lock(created_mutex_);
  created_.try_emplace({id, type, task}, now);
}

std::optional<double> RegistryState::created(
    const std::vector<std::pair<std::string_view, std::string_view>>& labels) const {
  const SeriesLabels l = series_labels(labels);
  if (!l.ours) return std::nullopt;
  std::lock_guard lock(created_mutex_);
  const auto it = created_.find(
      std::tuple<std::string_view, std::string_view, std::string_view>(l.id, l.type, l.task));
  if (it == created_.end()) return std::nullopt;
  return it->second;
}

void RegistryState::note_exemplars(const std::string& id, const std::string& type,
                                   const std::string& task, const PickedExemplars& picked) {
  std::lock_guard lock(exemplars_mutex_);
  exemplars_[{id, type, task}] = picked;
}

std::vector<ExemplarSample> RegistryState::exemplars(
    std::string_view family,
    const std::vector<std::pair<std::string_view, std::string_view>>& labels) const {
  const bool wait = family == metric_catalog[static_cast<std::size_t>(Metric::task_wait)].name;
  if (!wait && family != metric_catalog[static_cast<std::size_t>(Metric::task_run)].name) {
    return {};
  }
  const SeriesLabels l = series_labels(labels);
  if (!l.ours) return {};
  const std::size_t hist = wait                      ? ExemplarStore::wait
                           : l.result == "completed" ? ExemplarStore::run_completed
                           : l.result == "failed"    ? ExemplarStore::run_failed
                                                     : ExemplarStore::histograms;
  if (hist == ExemplarStore::histograms) return {};
  std::lock_guard lock(exemplars_mutex_);
  const auto it = exemplars_.find(
      std::tuple<std::string_view, std::string_view, std::string_view>(l.id, l.type, l.task));
  if (it == exemplars_.end()) return {};
  return it->second[hist];
}

void RegistryState::fold_every() {
  // Each registry is held while its executors fold, so it cannot go away meanwhile.
  std::vector<std::pair<std::shared_ptr<prometheus::Registry>, std::shared_ptr<RegistryState>>> all;
  {
    std::lock_guard lock(states_mutex());
    for (const auto& e : states()) {
      if (auto registry = e.registry.lock()) all.emplace_back(std::move(registry), e.state);
    }
  }
  for (const auto& [registry, state] : all) state->fold_all();
}

std::vector<prometheus::MetricFamily> RegistryState::collect() {
  const auto metrics = live();  // outlives the lock, see live()
  std::lock_guard page(page_mutex_);
  for (const auto& m : metrics) m->fold_held();
  return registry_.Collect();
}

}  // namespace executor_exporter::detail
