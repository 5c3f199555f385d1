#pragma once

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <executor_exporter/metrics/metrics_server_options.hpp>

namespace executor_exporter {

class Rollups;

/// One chart of the status page: named lines of (Unix seconds, value) points.
struct StatusPanel {
  std::string name;  ///< throughput, queue, wait, run, workers, errors (or your own)
  std::vector<std::pair<std::string, std::vector<std::array<double, 2>>>> series = {};
};

/// The charts of one executor.
struct StatusExecutor {
  std::string id;
  std::string type;
  std::vector<StatusPanel> panels = {};
};

/// What the page shows at a resolution ("1min", "5min", "1hour", "1day"); called on the
/// metrics server's thread for each refresh, so it must answer from data it already has.
using StatusSource = std::function<std::vector<StatusExecutor>(std::string_view resolution)>;

/// The status page's data as JSON: {"resolution", "generated_at", "executors": [{"id",
/// "type", "panels": {name: {line: [[t, v], ...]}}}]}. Strings are escaped and made valid
/// UTF-8, so hostile executor ids and task names cannot break the document.
std::string status_json(std::string_view resolution, double generated_at,
                        const std::vector<StatusExecutor>& executors);

/// Adds a live status page to a MetricsServer's options: `path` serves a self-contained
/// HTML page (no CDN, no build step: it ships inside the library) with one panel per
/// executor (throughput, queue depth, wait and run percentiles, workers, failures and
/// rejections) that refreshes every 2 s from `path` + ".json". The page sets labels as
/// text only, never as HTML. Serve it on loopback, or set the server's basic auth: it
/// shows the same data as /metrics.
void add_status_page(MetricsServerOptions& options, StatusSource source,
                     const std::string& path = "/status");

/// The status page's data from a Rollups: per executor, throughput (submitted and
/// completed per second, named tasks included), queue depth (and capacity when bounded),
/// wait and run p50/p95/p99, workers, failures and rejections per second, one point per
/// bucket of the resolution asked for. The bucket still filling shows its rate so far.
StatusSource status_source(std::shared_ptr<const Rollups> rollups);

}  // namespace executor_exporter
