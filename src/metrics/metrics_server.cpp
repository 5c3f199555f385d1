#include <executor_exporter/errors.hpp>
#include <executor_exporter/metrics/metrics_server.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace executor_exporter {

namespace {

// One host:port, strictly: civetweb reads "9464" or "+9464" as "every interface", and a
// comma as a second listener, so anything looser can open a port to the network while
// url() names loopback.
struct BindAddress {
  std::string host;  // numeric, without brackets
  int port = 0;
  bool v6 = false;
};

[[noreturn]] void malformed(const std::string& address, const char* why) {
  throw BindError(fmt::format(
      "executor_exporter: malformed bind address '{}': {} (expected host:port, e.g. "
      "127.0.0.1:9464 or [::1]:0)",
      address, why));
}

BindAddress parse_bind_address(const std::string& address) {
  BindAddress out;
  std::string_view rest = address;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) malformed(address, "no closing ']'");
    out.host = std::string(rest.substr(1, close - 1));
    out.v6 = true;
    rest.remove_prefix(close + 1);
    if (rest.empty() || rest.front() != ':') malformed(address, "no ':port' after the address");
  } else {
    const auto colon = rest.rfind(':');
    if (colon == std::string_view::npos) malformed(address, "no host");
    out.host = std::string(rest.substr(0, colon));
    rest.remove_prefix(colon);
    if (out.host == "localhost") out.host = "127.0.0.1";
  }
  rest.remove_prefix(1);  // ':'
  if (rest.empty() || rest.size() > 5) malformed(address, "the port is not a number from 0 to 65535");
  const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), out.port);
  if (ec != std::errc() || end != rest.data() + rest.size() || out.port < 0 || out.port > 65535) {
    malformed(address, "the port is not a number from 0 to 65535");
  }
  unsigned char buf[sizeof(in6_addr)];
  if (::inet_pton(out.v6 ? AF_INET6 : AF_INET, out.host.c_str(), buf) != 1) {
    malformed(address, out.v6 ? "not an IPv6 address" : "not an IPv4 address (or localhost)");
  }
  return out;
}

// Why listening failed: civetweb says only "null context". Binding the same address
// ourselves tells "in use" from the rest.
std::string listen_failure(const BindAddress& a) {
  const int fd = ::socket(a.v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return std::strerror(errno);
  int err = 0;
  if (a.v6) {
    sockaddr_in6 s{};
    s.sin6_family = AF_INET6;
    s.sin6_port = htons(static_cast<std::uint16_t>(a.port));
    ::inet_pton(AF_INET6, a.host.c_str(), &s.sin6_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&s), sizeof s) != 0) err = errno;
  } else {
    sockaddr_in s{};
    s.sin_family = AF_INET;
    s.sin_port = htons(static_cast<std::uint16_t>(a.port));
    ::inet_pton(AF_INET, a.host.c_str(), &s.sin_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&s), sizeof s) != 0) err = errno;
  }
  ::close(fd);
  if (err == EADDRINUSE) return "address in use";
  if (err != 0) return std::strerror(err);
  // The address is free and ours, so the server itself refused it.
  if (a.v6) return "the HTTP server cannot listen on IPv6 (Debian's civetweb is built without it)";
  return "the HTTP server did not start";
}

}  // namespace

MetricsServer::MetricsServer(const std::string& bind_address,
                             std::shared_ptr<prometheus::Registry> registry)
    : registry_(registry ? std::move(registry) : default_registry()),
      collectable_(make_collectable(registry_)) {
  const BindAddress a = parse_bind_address(bind_address);
  host_ = a.host;
  const std::string listen =
      a.v6 ? fmt::format("[{}]:{}", a.host, a.port) : fmt::format("{}:{}", a.host, a.port);
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(listen, 2);
  } catch (const std::exception& e) {
    throw BindError(fmt::format("executor_exporter: could not listen on {}: {} ({})",
                                bind_address, listen_failure(a), e.what()));
  }
  exposer_->RegisterCollectable(collectable_, "/metrics");
}

MetricsServer::~MetricsServer() = default;

int MetricsServer::port() const {
  const auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

std::string MetricsServer::url() const {
  const bool v6 = host_.find(':') != std::string::npos;
  return fmt::format("http://{}{}{}:{}/metrics", v6 ? "[" : "", host_, v6 ? "]" : "", port());
}

}  // namespace executor_exporter
