#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

namespace executor_exporter {

/// The process-wide registry used by every exporter that is given none. It is never
/// destroyed, so executors that outlive main() can still fold their last counts.
std::shared_ptr<prometheus::Registry> default_registry();

/// How often a background thread folds every executor's shards into its registry
/// (default 1 s; zero or less stops it). That thread, one per process, starts with the
/// first executor. It is what keeps a registry truthful when it is collected without
/// the library's help, as `exposer.RegisterCollectable(registry)` does: its counters and
/// the gauges derived from them are then at most one interval old (the worker and
/// capacity gauges are written where they change and are never stale). expose(),
/// MetricsServer, collect() and scrape_text() fold first and stay exact at every
/// scrape whatever the interval.
void set_background_fold_interval(std::chrono::milliseconds interval);
/// The current interval of the background fold.
std::chrono::milliseconds background_fold_interval();

/// A collectable view of `registry` to register with a prometheus::Exposer in place of
/// the registry itself. Executors count on per-thread shards without locks; a
/// prometheus-cpp Registry has no hook that runs before it is collected, so this view
/// first folds the shards into the registry's series and then collects the registry.
/// Every increment is folded exactly once, however often or rarely it is scraped. It
/// refers to the registry weakly and collects nothing once the registry is gone.
std::shared_ptr<prometheus::Collectable> make_collectable(
    const std::shared_ptr<prometheus::Registry>& registry = default_registry());

/// Registers make_collectable(registry) with `exposer` at `uri` and keeps the view alive
/// as long as the registry (the Exposer itself holds only a weak_ptr).
void expose(prometheus::Exposer& exposer,
            const std::shared_ptr<prometheus::Registry>& registry = default_registry(),
            const std::string& uri = "/metrics");

/// Folds every executor's shards into `registry` without collecting it; call this
/// before handing the registry to something that collects it directly (a Pushgateway
/// client, say). Such a collect is not guarded against a fold running on another
/// thread (another scrape, an executor being destroyed), so its counters can be a few
/// increments apart; collect() and the views above are.
void refresh(const std::shared_ptr<prometheus::Registry>& registry = default_registry());

/// refresh() followed by registry->Collect() as one step that no fold on another
/// thread can interleave with: the exact state of every executor at one instant, on
/// which submitted = completed + failed + cancelled + expired + queued + running.
std::vector<prometheus::MetricFamily> collect(
    const std::shared_ptr<prometheus::Registry>& registry = default_registry());

}  // namespace executor_exporter
