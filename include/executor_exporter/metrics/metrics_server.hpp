#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <executor_exporter/metrics/metrics_server_options.hpp>
#include <executor_exporter/metrics/registry.hpp>

namespace executor_exporter {

/// What a MetricsServer has done since it started; a plain snapshot.
struct MetricsServerStats {
  std::uint64_t requests = 0;               ///< requests answered, whatever the status
  std::uint64_t pages_text = 0;             ///< pages in the text format 0.0.4
  std::uint64_t pages_openmetrics = 0;      ///< pages in OpenMetrics 1.0.0
  std::uint64_t pages_gzip = 0;             ///< pages sent gzip-compressed
  std::uint64_t unauthorized = 0;           ///< requests answered 401
  std::uint64_t bad_requests = 0;           ///< malformed or oversized requests (400, 405, 431)
  std::uint64_t refused_connections = 0;    ///< answered 503 over max_connections
  std::uint64_t timed_out_connections = 0;  ///< closed by request or keep-alive timeout
  std::uint64_t open_connections = 0;       ///< open now
  std::uint64_t pages_other = 0;            ///< answers of MetricsServerOptions::pages handlers
  std::uint64_t page_errors = 0;            ///< page handlers that threw (answered 500)
};

/// The library's HTTP endpoint for /metrics. Each of its threads runs an event loop
/// over many connections, so idle or trickling clients (a scraper that keeps its
/// connection open, a slowloris) cost a file descriptor each rather than a thread, and
/// scrapes keep being answered while they linger; request and keep-alive timeouts close
/// them, and max_connections bounds them. Each page is exact: it is collect()ed (every
/// executor folded at one instant) and written by the library's own writers, as
/// OpenMetrics 1.0.0 when the scraper asks for it (Prometheus does) or as the text
/// format 0.0.4 otherwise, gzip-compressed when accepted. Binds only the one address it
/// is given; throws BindError naming the address and saying whether it is malformed or
/// could not be listened on, and why (in use, not an address of this machine).
class MetricsServer {
 public:
  explicit MetricsServer(MetricsServerOptions options);
  /// The common case: `bind_address` ("127.0.0.1:9464"; port 0 picks a free one) and
  /// the registry to serve, other settings at their defaults.
  explicit MetricsServer(const std::string& bind_address = "127.0.0.1:9464",
                         std::shared_ptr<prometheus::Registry> registry = default_registry());
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  /// Stops the threads and closes every connection.
  ~MetricsServer();

  /// The port actually bound (useful with port 0).
  int port() const;
  /// http://host:port/path, for logs and for scrapers.
  std::string url() const;
  /// What the server has done so far.
  MetricsServerStats stats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace executor_exporter
