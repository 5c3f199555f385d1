#include <executor_exporter/errors.hpp>
#include <executor_exporter/metrics/metrics_server.hpp>

#include <fmt/format.h>

namespace executor_exporter {

MetricsServer::MetricsServer(const std::string& bind_address,
                             std::shared_ptr<prometheus::Registry> registry)
    : registry_(registry ? std::move(registry) : default_registry()),
      collectable_(make_collectable(registry_)) {
  const auto colon = bind_address.rfind(':');
  host_ = colon == std::string::npos || colon == 0 ? "127.0.0.1" : bind_address.substr(0, colon);
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(bind_address, 2);
  } catch (const std::exception& e) {
    // civetweb only says "null context"; the usual cause is a port already taken.
    throw BindError(fmt::format("executor_exporter: could not bind {} (address in use?): {}",
                                bind_address, e.what()));
  }
  exposer_->RegisterCollectable(collectable_, "/metrics");
}

MetricsServer::~MetricsServer() = default;

int MetricsServer::port() const {
  const auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

std::string MetricsServer::url() const {
  const bool v6 = host_.find(':') != std::string::npos && host_.front() != '[';
  return fmt::format("http://{}{}{}:{}/metrics", v6 ? "[" : "", host_, v6 ? "]" : "", port());
}

}  // namespace executor_exporter
