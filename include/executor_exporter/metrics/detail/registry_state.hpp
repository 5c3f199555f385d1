#pragma once

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <executor_exporter/metrics/detail/exemplar_store.hpp>
#include <executor_exporter/metrics/exporter_options.hpp>
#include <executor_exporter/metrics/metric_catalog.hpp>

namespace prometheus {
class Registry;
template <typename T>
class Family;
class Counter;
class Gauge;
class Histogram;
class Summary;
class Collectable;
struct MetricFamily;
}  // namespace prometheus

namespace executor_exporter::detail {

class ExecutorMetrics;

/// What the library keeps per prometheus-cpp Registry: the metric families (registered
/// once, since a Registry built with InsertBehavior::Throw refuses a second
/// registration) and the live ExecutorMetrics, so one fold before a collect brings
/// every executor of that registry up to date.
class RegistryState : public std::enable_shared_from_this<RegistryState> {
 public:
  /// The state of `registry`, created on first use. Thread-safe.
  static std::shared_ptr<RegistryState> of(const std::shared_ptr<prometheus::Registry>& registry);

  explicit RegistryState(prometheus::Registry& registry);

  /// The shared metrics of (id, type), created on first use.
  std::shared_ptr<ExecutorMetrics> metrics_for(
      const std::shared_ptr<prometheus::Registry>& registry, const std::string& id,
      const std::string& type, const ExporterOptions& options);
  /// Folds every live executor's shards into its series.
  void fold_all();
  /// fold_all() on the state of every registry that is still alive: the background
  /// fold (see set_background_fold_interval).
  static void fold_every();
  /// Folds every live executor, then collects the registry, with no other fold in
  /// between: the page is one instant, so counters and the gauges derived from them
  /// reconcile on it even while other threads scrape, or destroy an executor (whose
  /// last fold would otherwise land half-way through this collect).
  std::vector<prometheus::MetricFamily> collect();

  /// Serialises folds with each other and with collect(). Never taken on the hot path.
  std::mutex& page_mutex() { return page_mutex_; }

  prometheus::Registry& registry() { return registry_; }

  /// The family of catalog entry `m`, registered at construction by one loop over the
  /// catalog (all but the trace family, registered on first use, below). Null when the
  /// entry is of another kind.
  prometheus::Family<prometheus::Counter>* counter_family(Metric m) const {
    return counters_[static_cast<std::size_t>(m)];
  }
  prometheus::Family<prometheus::Gauge>* gauge_family(Metric m) const {
    return gauges_[static_cast<std::size_t>(m)];
  }
  prometheus::Family<prometheus::Histogram>* histogram_family(Metric m) const {
    return histograms_[static_cast<std::size_t>(m)];
  }

  /// executor_task_trace_seconds as a histogram or as a summary. One name can have only
  /// one type in a registry, so the family is registered on first use with the type the
  /// first traced executor asks for; asking for the other type later throws
  /// std::invalid_argument. Thread-safe.
  prometheus::Family<prometheus::Histogram>& trace_histogram_family();
  prometheus::Family<prometheus::Summary>& trace_summary_family();

  /// Remembers when the series of (id, type, task) were first made in this registry
  /// (the first call wins), for OpenMetrics' _created.
  void note_created(const std::string& id, const std::string& type, const std::string& task);
  /// The time noted for the executor, executor_type and task labels of `labels`.
  std::optional<double> created(
      const std::vector<std::pair<std::string_view, std::string_view>>& labels) const;

  /// The newest exemplars of (id, type, task), per histogram and bucket (see
  /// ExecutorMetrics::pick_exemplars), replacing the ones noted before.
  using PickedExemplars = std::array<std::vector<ExemplarSample>, ExemplarStore::histograms>;
  void note_exemplars(const std::string& id, const std::string& type, const std::string& task,
                      const PickedExemplars& picked);
  /// The exemplars per bucket of the series of family `family` (the wait or run
  /// histogram) with `labels`, and its task name; empty for any other series.
  std::vector<ExemplarSample> exemplars(
      std::string_view family,
      const std::vector<std::pair<std::string_view, std::string_view>>& labels) const;

  /// Holds a collectable handed to an Exposer (which keeps only a weak_ptr) for as
  /// long as the registry lives.
  void keep_alive(std::shared_ptr<prometheus::Collectable> collectable) {
    std::lock_guard lock(mutex_);
    exposed_.push_back(std::move(collectable));
  }

 private:
  /// The live ExecutorMetrics. The caller drops them only after releasing the page
  /// lock, since dropping the last reference runs a destructor that folds (and locks).
  std::vector<std::shared_ptr<ExecutorMetrics>> live();

  prometheus::Registry& registry_;
  std::array<prometheus::Family<prometheus::Counter>*, metric_catalog.size()> counters_{};
  std::array<prometheus::Family<prometheus::Gauge>*, metric_catalog.size()> gauges_{};
  std::array<prometheus::Family<prometheus::Histogram>*, metric_catalog.size()> histograms_{};
  std::mutex page_mutex_;
  std::vector<std::shared_ptr<prometheus::Collectable>> exposed_;
  std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, std::weak_ptr<ExecutorMetrics>> metrics_;
  mutable std::mutex created_mutex_;
  std::map<std::tuple<std::string, std::string, std::string>, double, std::less<>> created_;
  mutable std::mutex exemplars_mutex_;
  std::map<std::tuple<std::string, std::string, std::string>, PickedExemplars, std::less<>>
      exemplars_;
  prometheus::Family<prometheus::Histogram>* trace_histogram_ = nullptr;  // guarded by mutex_
  prometheus::Family<prometheus::Summary>* trace_summary_ = nullptr;      // guarded by mutex_
};

}  // namespace executor_exporter::detail
