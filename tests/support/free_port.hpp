// Finding a free loopback TCP or UDP port for tests.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace ee_test {

// Binds 127.0.0.1:0, reads back the port the kernel picked and releases it. The port is free
// right now; another process may take it before the caller binds it (unlikely on loopback).
// `type` is SOCK_STREAM (TCP) or SOCK_DGRAM (UDP).
inline int free_port(int type) {
  const int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw std::runtime_error(std::string("free_port: socket() failed: ") + std::strerror(errno));
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error(std::string("free_port: bind(127.0.0.1:0) failed: ") +
                             std::strerror(err));
  }
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error(std::string("free_port: getsockname() failed: ") + std::strerror(err));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

inline int free_tcp_port() { return free_port(SOCK_STREAM); }
inline int free_udp_port() { return free_port(SOCK_DGRAM); }

}  // namespace ee_test
