// The listening socket of a MetricsServer: one host:port, strictly parsed, bound by us
// so that a failure can say why.
#pragma once

#include <string>

namespace executor_exporter::detail {

struct BindAddress {
  std::string host;  // numeric, without brackets
  int port = 0;
  bool v6 = false;
};

/// Parses exactly one host:port. A bare port, a sign or a list is refused: some HTTP
/// servers read those as "every interface", which would open a port to the network
/// while url() names loopback. Throws BindError saying what is malformed.
BindAddress parse_bind_address(const std::string& address);

/// A non-blocking socket listening on `a`. Throws BindError naming `address` and the
/// cause (in use, not an address of this machine, ...).
int listen_on(const BindAddress& a, const std::string& address);

/// The port `fd` is bound to.
int bound_port(int fd);

}  // namespace executor_exporter::detail
