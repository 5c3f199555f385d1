#pragma once

// Reads a registry the way Prometheus would: fold, collect, serialize, parse.

#include <prometheus/text_serializer.h>
#include <executor_exporter/metrics/registry.hpp>

#include <catch2/catch.hpp>

#include <memory>
#include <string>

#include "http_client.hpp"
#include "prom_text.hpp"

namespace ee_test {

inline std::string exposition(const std::shared_ptr<prometheus::Registry>& registry) {
  return prometheus::TextSerializer().Serialize(executor_exporter::collect(registry));
}

inline prom::Page scrape(const std::shared_ptr<prometheus::Registry>& registry) {
  return prom::parse(exposition(registry));
}

/// The /metrics page a server on 127.0.0.1:`port` serves now, over real HTTP, parsed.
inline prom::Page http_page(int port) {
  auto response = http_get("127.0.0.1", port, "/metrics");
  REQUIRE(response.status == 200);
  return prom::parse(response.body);
}

/// submitted - (completed + failed + cancelled + expired + queued + running) for the one
/// series matching `labels`: 0 on every page of a correct exporter.
inline double unaccounted(const prom::Page& page, const prom::Labels& labels) {
  return prom::value(page, "executor_tasks_submitted_total", labels) -
         (prom::value(page, "executor_tasks_completed_total", labels) +
          prom::value(page, "executor_tasks_failed_total", labels) +
          prom::value(page, "executor_tasks_cancelled_total", labels) +
          prom::value(page, "executor_tasks_expired_total", labels) +
          prom::value(page, "executor_tasks_queued", labels) +
          prom::value(page, "executor_tasks_running", labels));
}

}  // namespace ee_test
