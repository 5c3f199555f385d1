#include "listen_socket.hpp"

#include <executor_exporter/errors.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <string_view>

namespace executor_exporter::detail {

namespace {

[[noreturn]] void malformed(const std::string& address, const char* why) {
  throw BindError(
      fmt::format("executor_exporter: malformed bind address '{}': {} (expected host:port, e.g. "
                  "127.0.0.1:9464 or [::1]:0)",
                  address, why));
}

}  // namespace

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
  if (rest.empty() || rest.size() > 5)
    malformed(address, "the port is not a number from 0 to 65535");
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

int listen_on(const BindAddress& a, const std::string& address) {
  auto fail = [&](int err, const char* step) {
    const std::string why = err == EADDRINUSE      ? "address in use"
                            : err == EADDRNOTAVAIL ? "not an address of this machine"
                                                   : std::strerror(err);
    throw BindError(
        fmt::format("executor_exporter: could not listen on {}: {} ({})", address, why, step));
  };
  const int fd = ::socket(a.v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) fail(errno, "socket");
  // A restarted server can bind while its old connections sit in TIME_WAIT.
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc = 0;
  if (a.v6) {
    // Only the IPv6 address asked for, not the IPv4 ones mapped into it.
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    sockaddr_in6 s{};
    s.sin6_family = AF_INET6;
    s.sin6_port = htons(static_cast<std::uint16_t>(a.port));
    ::inet_pton(AF_INET6, a.host.c_str(), &s.sin6_addr);
    rc = ::bind(fd, reinterpret_cast<sockaddr*>(&s), sizeof s);
  } else {
    sockaddr_in s{};
    s.sin_family = AF_INET;
    s.sin_port = htons(static_cast<std::uint16_t>(a.port));
    ::inet_pton(AF_INET, a.host.c_str(), &s.sin_addr);
    rc = ::bind(fd, reinterpret_cast<sockaddr*>(&s), sizeof s);
  }
  if (rc != 0 || ::listen(fd, SOMAXCONN) != 0) {
    const int err = errno;
    ::close(fd);
    fail(err, rc != 0 ? "bind" : "listen");
  }
  return fd;
}

int bound_port(int fd) {
  sockaddr_storage s{};
  socklen_t len = sizeof s;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&s), &len) != 0) return 0;
  if (s.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&s)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&s)->sin_port);
}

}  // namespace executor_exporter::detail
