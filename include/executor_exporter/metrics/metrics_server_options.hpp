#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace executor_exporter {

/// A request for a page of your own (MetricsServerOptions::pages), as its handler sees
/// it: views valid during the call.
struct PageRequest {
  std::string_view path;   ///< the path the page was registered at
  std::string_view query;  ///< what followed '?', undecoded; empty when nothing did
};

/// What a page handler answers.
struct PageResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body = {};
};

/// Builds a page. Runs on one of the server's event-loop threads, so a slow handler
/// delays that thread's other connections: answer from data you already have. What it
/// throws becomes a 500 for that request alone.
using PageHandler = std::function<PageResponse(const PageRequest&)>;

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
  /// Pages served next to the metrics on the same port, by exact path (a status page, a
  /// JSON view, a debug dump); basic auth, timeouts and gzip apply to them as well. A
  /// path equal to `path` is refused (std::invalid_argument).
  std::map<std::string, PageHandler, std::less<>> pages = {};
};

}  // namespace executor_exporter
