#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace executor_exporter {

/// Settings of a MetricsServer; every field has a default. The defaults suit a server
/// that a hostile or careless client can reach: an idle or trickling connection costs
/// one file descriptor and no thread, is closed when its timeout passes, and the number
/// of connections is bounded, so scrapes keep being answered.
struct MetricsServerOptions {
  /// Exactly one host:port: an IPv4 address, `localhost`, or an IPv6 address in
  /// brackets (`[::1]:0`). Port 0 picks a free port (see MetricsServer::port()).
  std::string bind_address = "127.0.0.1:9464";
  /// The registry served; default_registry() when null.
  std::shared_ptr<prometheus::Registry> registry;
  /// The path the page is served at; other paths get 404.
  std::string path = "/metrics";
  /// Threads that serve connections, each an event loop over many connections. More
  /// than one lets slow page builds (thousands of series) overlap.
  std::size_t threads = 2;
  /// Time a client has to send a whole request once it has started one, or a new
  /// connection to send its first, and the longest a response write may stall.
  std::chrono::milliseconds request_timeout{10'000};
  /// How long a kept-alive connection may sit idle between requests.
  std::chrono::milliseconds keep_alive_timeout{60'000};
  /// Open connections at most; a connection beyond it is answered 503 and closed.
  std::size_t max_connections = 512;
  /// HTTP basic authentication: when `basic_auth_user` is not empty, requests without
  /// these credentials get 401. Send them over loopback or a TLS proxy only: basic
  /// auth is readable on the wire.
  std::string basic_auth_user;
  std::string basic_auth_password;
  /// Compress the page with gzip when the client accepts it (Prometheus does).
  bool gzip = true;
};

}  // namespace executor_exporter
