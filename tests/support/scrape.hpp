#pragma once

// Reads a registry the way Prometheus would: fold, collect, serialize, parse.

#include <executor_exporter/registry.hpp>
#include <prometheus/text_serializer.h>

#include <memory>
#include <string>

#include "prom_text.hpp"

namespace ee_test {

inline std::string exposition(const std::shared_ptr<prometheus::Registry>& registry) {
  return prometheus::TextSerializer().Serialize(executor_exporter::collect(registry));
}

inline prom::Page scrape(const std::shared_ptr<prometheus::Registry>& registry) {
  return prom::parse(exposition(registry));
}

}  // namespace ee_test
