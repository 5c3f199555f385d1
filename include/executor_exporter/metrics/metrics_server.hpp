#pragma once

#include <memory>
#include <string>

#include <executor_exporter/metrics/registry.hpp>

namespace executor_exporter {

/// A ready-made HTTP endpoint: a prometheus::Exposer listening on `bind_address`
/// ("127.0.0.1:9464"; port 0 picks a free one) that serves `registry` at `/metrics`
/// through make_collectable(), so executor metrics are exact at every scrape.
/// `bind_address` is exactly one host:port: an IPv4 address, `localhost`, or an IPv6
/// address in brackets (`[::1]:0`); a bare port, a sign or a list is refused, since the
/// HTTP server would read them as "every interface". Throws BindError naming the
/// address, saying whether it is malformed or could not be listened on (and why: in
/// use, not an address of this machine).
class MetricsServer {
 public:
  explicit MetricsServer(const std::string& bind_address = "127.0.0.1:9464",
                         std::shared_ptr<prometheus::Registry> registry = default_registry());
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  ~MetricsServer();

  /// The port actually bound (useful with port 0).
  int port() const;
  /// http://host:port/metrics, for logs and for scrapers.
  std::string url() const;
  /// The underlying Exposer, to serve further collectables or add authentication.
  prometheus::Exposer& exposer() { return *exposer_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<prometheus::Collectable> collectable_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string host_;
};

}  // namespace executor_exporter
