// Minimal blocking HTTP/1.1 GET client for tests (POSIX sockets, no dependencies).
#pragma once

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ee_test {

struct HttpResponse {
  int status = 0;
  std::string reason;
  // Header names are lower-cased; repeated headers are joined with ", ".
  std::map<std::string, std::string> headers;
  std::string body;

  // Value of a header (name is case-insensitive), or "" when absent.
  std::string header(std::string_view name) const {
    std::string key(name);
    std::transform(key.begin(), key.end(), key.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    auto it = headers.find(key);
    return it == headers.end() ? std::string() : it->second;
  }
};

namespace http_detail {

inline std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

using Clock = std::chrono::steady_clock;

inline int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<std::chrono::milliseconds::rep>(0, left.count()));
}

// Waits for `events` on fd until the deadline; throws on timeout.
inline void wait_fd(int fd, short events, Clock::time_point deadline, const std::string& what) {
  while (true) {
    pollfd p{fd, events, 0};
    const int ms = remaining_ms(deadline);
    const int r = ::poll(&p, 1, ms);
    if (r > 0) return;
    if (r == 0) throw std::runtime_error(what + ": timed out");
    if (errno != EINTR) throw std::runtime_error(what + ": poll() failed: " + std::strerror(errno));
  }
}

// Decodes a chunked body. Returns std::nullopt when `data` does not yet hold the full body;
// throws on malformed input.
inline std::optional<std::string> decode_chunked(std::string_view data, const std::string& ctx) {
  std::string out;
  std::size_t pos = 0;
  while (true) {
    const auto eol = data.find("\r\n", pos);
    if (eol == std::string_view::npos) return std::nullopt;
    std::string_view size_line = data.substr(pos, eol - pos);
    if (auto semi = size_line.find(';'); semi != std::string_view::npos)
      size_line = size_line.substr(0, semi);  // chunk extensions
    size_line = trim(size_line);
    std::size_t size = 0;
    auto [p, ec] = std::from_chars(size_line.data(), size_line.data() + size_line.size(), size, 16);
    if (ec != std::errc() || p != size_line.data() + size_line.size() || size_line.empty()) {
      throw std::runtime_error(ctx + ": malformed chunk size line '" + std::string(size_line) +
                               "'");
    }
    pos = eol + 2;
    if (size == 0) {
      // Trailers (ignored) end with an empty line.
      while (true) {
        const auto teol = data.find("\r\n", pos);
        if (teol == std::string_view::npos) return std::nullopt;
        if (teol == pos) return out;
        pos = teol + 2;
      }
    }
    if (data.size() < pos + size + 2) return std::nullopt;
    out.append(data.substr(pos, size));
    if (data.substr(pos + size, 2) != "\r\n")
      throw std::runtime_error(ctx + ": chunk not terminated by CRLF");
    pos += size + 2;
  }
}

struct ParsedHead {
  int status = 0;
  std::string reason;
  std::map<std::string, std::string> headers;
};

inline ParsedHead parse_head(std::string_view head, const std::string& ctx) {
  ParsedHead out;
  std::size_t pos = 0;
  bool first = true;
  while (pos < head.size()) {
    auto eol = head.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = head.size();
    std::string_view line = head.substr(pos, eol - pos);
    pos = eol + 2;
    if (first) {
      first = false;
      // HTTP/1.x SSS Reason
      if (line.substr(0, 5) != "HTTP/" || line.size() < 12 || line[8] != ' ') {
        throw std::runtime_error(ctx + ": malformed status line '" + std::string(line) + "'");
      }
      std::string_view code = line.substr(9, 3);
      auto [p, ec] = std::from_chars(code.data(), code.data() + code.size(), out.status);
      if (ec != std::errc() || p != code.data() + code.size()) {
        throw std::runtime_error(ctx + ": malformed status line '" + std::string(line) + "'");
      }
      out.reason = std::string(trim(line.size() > 12 ? line.substr(13) : std::string_view()));
      continue;
    }
    if (line.empty()) continue;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      throw std::runtime_error(ctx + ": malformed header line '" + std::string(line) + "'");
    }
    std::string name = lower(trim(line.substr(0, colon)));
    std::string value(trim(line.substr(colon + 1)));
    auto [it, inserted] = out.headers.emplace(name, value);
    if (!inserted) it->second += ", " + value;
  }
  if (first) throw std::runtime_error(ctx + ": empty response head");
  return out;
}

}  // namespace http_detail

// GET http://host:port/path. Sends HTTP/1.1 with "Connection: close", reads the response
// (Content-Length, chunked, or read-until-close bodies) and returns it; any status code is
// returned, not thrown. Throws std::runtime_error when the host cannot be resolved, the
// connection fails, the response is malformed/truncated, or `timeout` (for the whole exchange)
// elapses.
// `headers` are extra request header lines ("Accept: ...", "Authorization: ..."); an
// Accept among them replaces the default "*/*".
inline HttpResponse http_get(const std::string& host, int port, const std::string& path,
                             std::chrono::milliseconds timeout = std::chrono::seconds(5),
                             const std::vector<std::string>& headers = {}) {
  using namespace http_detail;
  const std::string ctx = "http_get(http://" + host + ":" + std::to_string(port) + path + ")";
  const auto deadline = Clock::now() + timeout;

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port_str = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), port_str.c_str(), &hints, &res); rc != 0) {
    throw std::runtime_error(ctx + ": cannot resolve host: " + ::gai_strerror(rc));
  }

  std::string connect_errors;
  int sock = -1;
  for (addrinfo* ai = res; ai != nullptr && sock < 0; ai = ai->ai_next) {
    const int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) continue;
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int pr;
      do {
        pr = ::poll(&p, 1, remaining_ms(deadline));
      } while (pr < 0 && errno == EINTR);
      if (pr == 1) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        rc = err == 0 ? 0 : -1;
        errno = err;
      } else {
        rc = -1;
        errno = pr == 0 ? ETIMEDOUT : errno;
      }
    }
    if (rc == 0) {
      sock = fd;
    } else {
      connect_errors += std::string(connect_errors.empty() ? "" : "; ") + std::strerror(errno);
      ::close(fd);
    }
  }
  ::freeaddrinfo(res);
  if (sock < 0) throw std::runtime_error(ctx + ": connect failed: " + connect_errors);
  Fd fd(sock);

  std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + host + ":" + port_str +
                        "\r\nUser-Agent: ee_test/1\r\n";
  bool has_accept = false;
  for (const auto& h : headers) {
    has_accept = has_accept || lower(h.substr(0, 7)) == "accept:";
    request += h + "\r\n";
  }
  if (!has_accept) request += "Accept: */*\r\n";
  request += "Connection: close\r\n\r\n";
  std::size_t sent = 0;
  while (sent < request.size()) {
    wait_fd(fd.get(), POLLOUT, deadline, ctx + ": sending request");
    const ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      throw std::runtime_error(ctx + ": send() failed: " + std::strerror(errno));
    }
    sent += static_cast<std::size_t>(n);
  }

  std::string data;
  std::optional<ParsedHead> head;
  std::size_t body_start = 0;
  std::optional<std::size_t> content_length;
  bool chunked = false;
  bool eof = false;
  char buf[16384];

  while (true) {
    if (!head) {
      const auto end = data.find("\r\n\r\n");
      if (end != std::string::npos) {
        head = parse_head(std::string_view(data).substr(0, end), ctx);
        body_start = end + 4;
        chunked = lower(head->headers["transfer-encoding"]).find("chunked") != std::string::npos;
        if (!chunked && head->headers.count("content-length")) {
          const std::string& cl = head->headers["content-length"];
          std::size_t n = 0;
          auto [p, ec] = std::from_chars(cl.data(), cl.data() + cl.size(), n);
          if (ec != std::errc() || p != cl.data() + cl.size()) {
            throw std::runtime_error(ctx + ": malformed Content-Length '" + cl + "'");
          }
          content_length = n;
        }
      }
    }
    if (head) {
      std::string_view body = std::string_view(data).substr(body_start);
      const bool no_body = head->status / 100 == 1 || head->status == 204 || head->status == 304;
      if (no_body) return HttpResponse{head->status, head->reason, head->headers, std::string()};
      if (chunked) {
        if (auto decoded = decode_chunked(body, ctx)) {
          return HttpResponse{head->status, head->reason, head->headers, std::move(*decoded)};
        }
      } else if (content_length) {
        if (body.size() >= *content_length) {
          return HttpResponse{head->status, head->reason, head->headers,
                              std::string(body.substr(0, *content_length))};
        }
      } else if (eof) {
        return HttpResponse{head->status, head->reason, head->headers, std::string(body)};
      }
    }
    if (eof) {
      throw std::runtime_error(ctx + ": connection closed before the response was complete (got " +
                               std::to_string(data.size()) + " bytes)");
    }
    wait_fd(fd.get(), POLLIN, deadline, ctx + ": reading response");
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      throw std::runtime_error(ctx + ": recv() failed: " + std::strerror(errno));
    }
    if (n == 0) {
      eof = true;
    } else {
      data.append(buf, static_cast<std::size_t>(n));
    }
  }
}

}  // namespace ee_test
