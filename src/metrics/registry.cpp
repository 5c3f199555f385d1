#include <executor_exporter/metrics/detail/registry_state.hpp>
#include <executor_exporter/metrics/exporter.hpp>
#include <executor_exporter/metrics/registry.hpp>
#include <executor_exporter/metrics/text_format.hpp>

namespace executor_exporter {

namespace {

/// Folds, then collects; see make_collectable().
class FoldingCollectable final : public prometheus::Collectable {
 public:
  explicit FoldingCollectable(const std::shared_ptr<prometheus::Registry>& registry)
      : registry_(registry) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    auto registry = registry_.lock();
    if (!registry) return {};
    return collect(registry);
  }

 private:
  std::weak_ptr<prometheus::Registry> registry_;
};

}  // namespace

std::shared_ptr<prometheus::Registry> default_registry() {
  // Leaked on purpose so that it outlives every static executor.
  static auto* registry =
      new std::shared_ptr<prometheus::Registry>(std::make_shared<prometheus::Registry>());
  return *registry;
}

std::shared_ptr<prometheus::Collectable> make_collectable(
    const std::shared_ptr<prometheus::Registry>& registry) {
  return std::make_shared<FoldingCollectable>(registry);
}

void expose(prometheus::Exposer& exposer, const std::shared_ptr<prometheus::Registry>& registry,
            const std::string& uri) {
  auto state = detail::RegistryState::of(registry);
  auto collectable = make_collectable(registry);
  exposer.RegisterCollectable(collectable, uri);
  state->keep_alive(std::move(collectable));
}

CreatedTime created_time(const std::shared_ptr<prometheus::Registry>& registry) {
  auto state = detail::RegistryState::of(registry);
  return [state](const prometheus::ClientMetric& metric) -> std::optional<double> {
    std::vector<std::pair<std::string_view, std::string_view>> labels;
    labels.reserve(metric.label.size());
    for (const auto& l : metric.label) labels.emplace_back(l.name, l.value);
    return state->created(labels);
  };
}

void refresh(const std::shared_ptr<prometheus::Registry>& registry) {
  detail::RegistryState::of(registry)->fold_all();
}

std::vector<prometheus::MetricFamily> collect(
    const std::shared_ptr<prometheus::Registry>& registry) {
  return detail::RegistryState::of(registry)->collect();
}

ExecutorExporter::ExecutorExporter(std::string id, std::string executor_type,
                                   std::shared_ptr<prometheus::Registry> registry,
                                   const ExporterOptions& options)
    : recorder_(std::move(id), std::move(executor_type), std::move(registry), options) {}

namespace detail {

Recorder::Recorder(std::string id, std::string type, std::shared_ptr<prometheus::Registry> registry,
                   const ExporterOptions& options) {
  if (!registry) registry = default_registry();
  metrics_ = RegistryState::of(registry)->metrics_for(registry, id, type, options);
}

void Recorder::release() noexcept {
  if (!metrics_) return;
  for (std::size_t i = 0; i < own_levels_.size(); ++i) {
    if (own_levels_[i] != 0) metrics_->adjust(static_cast<Metric>(i), -own_levels_[i]);
  }
  own_levels_ = {};
  metrics_->fold();
  metrics_.reset();
}

}  // namespace detail

}  // namespace executor_exporter
