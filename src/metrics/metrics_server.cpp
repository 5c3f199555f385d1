#include <executor_exporter/errors.hpp>
#include <executor_exporter/metrics/metrics_server.hpp>
#include <executor_exporter/metrics/text_format.hpp>

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <unordered_map>
#include <vector>

#include "http_request.hpp"
#include "listen_socket.hpp"

namespace executor_exporter {

namespace {

using Clock = std::chrono::steady_clock;

// A request head larger than this is refused (431): a scraper's is a few hundred bytes.
constexpr std::size_t kMaxHead = std::size_t{16} * 1024;

struct Connection {
  int fd = -1;
  std::string in;        // received, not yet handled
  std::string out;       // response bytes not yet sent
  std::size_t sent = 0;  // of `out`
  Clock::time_point deadline;
  bool closing = false;  // answer no further request; close once `out` is sent
  bool eof = false;      // the client has shut down its side
  std::uint32_t armed = EPOLLIN | EPOLLRDHUP;  // the epoll events asked for
};

struct Counters {
  std::atomic<std::uint64_t> requests{0}, pages_text{0}, pages_openmetrics{0}, pages_gzip{0},
      unauthorized{0}, bad_requests{0}, refused{0}, timed_out{0}, open{0}, pages_other{0},
      page_errors{0};
};

std::string_view reason_of(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 204:
      return "No Content";
    case 302:
      return "Found";
    case 403:
      return "Forbidden";
    default:
      // A page handler's own status: the class says enough, clients read the code.
      return status < 300   ? "OK"
             : status < 400 ? "Redirect"
             : status < 500 ? "Client Error"
                            : "Error";
  }
}

}  // namespace

class MetricsServer::Impl {
 public:
  explicit Impl(MetricsServerOptions options) : options_(std::move(options)) {
    if (!options_.registry) options_.registry = default_registry();
    if (options_.threads == 0) options_.threads = 1;
    if (options_.max_connections == 0) options_.max_connections = 1;
    if (options_.path.empty() || options_.path.front() != '/') {
      throw std::invalid_argument("executor_exporter: MetricsServer path must start with '/'");
    }
    for (const auto& [page_path, handler] : options_.pages) {
      if (page_path.empty() || page_path.front() != '/' || page_path == options_.path || !handler) {
        throw std::invalid_argument("executor_exporter: MetricsServer page '" + page_path +
                                    "' needs a path that starts with '/', is not the metrics "
                                    "path, and a handler");
      }
    }
    if (!options_.basic_auth_user.empty()) {
      expected_auth_ =
          "Basic " + detail::base64(options_.basic_auth_user + ":" + options_.basic_auth_password);
    }
    address_ = detail::parse_bind_address(options_.bind_address);
    listen_fd_ = detail::listen_on(address_, options_.bind_address);
    port_ = detail::bound_port(listen_fd_);
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd_ < 0) {
      ::close(listen_fd_);
      throw std::system_error(errno, std::generic_category(), "executor_exporter: eventfd");
    }
    try {
      for (std::size_t i = 0; i < options_.threads; ++i) {
        loops_.emplace_back([this] { run(); });
      }
    } catch (...) {
      stop();
      throw;
    }
  }

  ~Impl() { stop(); }

  int port() const { return port_; }

  std::string url() const {
    const bool v6 = address_.v6;
    return fmt::format("http://{}{}{}:{}{}", v6 ? "[" : "", address_.host, v6 ? "]" : "", port_,
                       options_.path);
  }

  MetricsServerStats stats() const {
    MetricsServerStats s;
    s.requests = counters_.requests.load();
    s.pages_text = counters_.pages_text.load();
    s.pages_openmetrics = counters_.pages_openmetrics.load();
    s.pages_gzip = counters_.pages_gzip.load();
    s.unauthorized = counters_.unauthorized.load();
    s.bad_requests = counters_.bad_requests.load();
    s.refused_connections = counters_.refused.load();
    s.timed_out_connections = counters_.timed_out.load();
    s.open_connections = counters_.open.load();
    s.pages_other = counters_.pages_other.load();
    s.page_errors = counters_.page_errors.load();
    return s;
  }

 private:
  void stop() {
    if (stop_fd_ >= 0) {
      const std::uint64_t one = 1;
      // Never read: every loop sees it readable and leaves.
      [[maybe_unused]] const auto n = ::write(stop_fd_, &one, sizeof one);
    }
    for (auto& t : loops_) {
      if (t.joinable()) t.join();
    }
    loops_.clear();
    if (stop_fd_ >= 0) ::close(stop_fd_);
    if (listen_fd_ >= 0) ::close(listen_fd_);
    stop_fd_ = listen_fd_ = -1;
  }

  // One event loop: the listening socket (shared by all loops; EPOLLEXCLUSIVE wakes
  // one of them per connection), the stop signal, and the connections it accepted.
  void run() {
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.ptr = &listen_fd_;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd_, &ev);
    ev.events = EPOLLIN;
    ev.data.ptr = &stop_fd_;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, stop_fd_, &ev);

    std::unordered_map<Connection*, std::unique_ptr<Connection>> conns;
    // Closed connections are freed only after the batch of events: a later event of the
    // batch may name one, and its address must not yet belong to a new connection.
    std::vector<std::unique_ptr<Connection>> closed;
    auto close_conn = [&](Connection* c) {
      ::epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
      ::close(c->fd);
      counters_.open.fetch_sub(1);
      auto it = conns.find(c);
      closed.push_back(std::move(it->second));
      conns.erase(it);
    };
    std::vector<epoll_event> events(64);
    for (;;) {
      // Sleep until the nearest deadline (connections are few per loop; a scan is cheap).
      auto now = Clock::now();
      auto wake = now + std::chrono::seconds(1);
      for (auto& [p, c] : conns) wake = std::min(wake, c->deadline);
      const auto wait_ms =
          std::chrono::ceil<std::chrono::milliseconds>(std::max(wake - now, Clock::duration(0)));
      const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()),
                                 static_cast<int>(wait_ms.count()));
      bool stopping = false;
      for (int i = 0; i < n; ++i) {
        void* tag = events[i].data.ptr;
        if (tag == &stop_fd_) {
          stopping = true;
        } else if (tag == &listen_fd_) {
          accept_all(ep, conns);
        } else {
          auto* c = static_cast<Connection*>(tag);
          if (!conns.count(c)) continue;  // closed earlier in this batch
          if (!on_ready(ep, *c, events[i].events)) close_conn(c);
        }
      }
      closed.clear();
      if (stopping) break;
      now = Clock::now();
      std::vector<Connection*> expired;
      for (auto& [p, c] : conns) {
        if (c->deadline <= now) expired.push_back(p);
      }
      for (auto* c : expired) {
        counters_.timed_out.fetch_add(1);
        close_conn(c);
      }
    }
    while (!conns.empty()) close_conn(conns.begin()->first);
    ::close(ep);
  }

  void accept_all(int ep, std::unordered_map<Connection*, std::unique_ptr<Connection>>& conns) {
    for (;;) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        // Out of descriptors or memory: the pending connection keeps the listening socket
        // readable, so wait a little rather than spin on it.
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return;  // EAGAIN: none left
      }
      if (counters_.open.fetch_add(1) >= options_.max_connections) {
        counters_.open.fetch_sub(1);
        counters_.refused.fetch_add(1);
        static constexpr std::string_view busy =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        [[maybe_unused]] const auto w = ::send(fd, busy.data(), busy.size(), MSG_NOSIGNAL);
        ::close(fd);
        continue;
      }
      auto c = std::make_unique<Connection>();
      c->fd = fd;
      // A new connection must send its request within the request timeout.
      c->deadline = Clock::now() + options_.request_timeout;
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.ptr = c.get();
      if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        ::close(fd);
        counters_.open.fetch_sub(1);
        continue;
      }
      conns.emplace(c.get(), std::move(c));
    }
  }

  // False when the connection is to be closed.
  bool on_ready(int ep, Connection& c, std::uint32_t events) {
    if (events & EPOLLERR) return false;
    if (!c.eof && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))) {
      char buf[4096];
      for (;;) {
        const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
        if (n > 0) {
          // The first bytes of a request after an idle keep-alive: the request timeout
          // runs from here, however slowly the rest trickles in.
          if (c.in.empty() && c.sent == c.out.size()) {
            c.deadline = Clock::now() + options_.request_timeout;
          }
          c.in.append(buf, static_cast<std::size_t>(n));
          if (c.in.size() > 2 * kMaxHead) break;  // enough to answer or refuse
          continue;
        }
        if (n == 0) {
          c.eof = true;  // answer what it sent, then close
          break;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return false;
      }
    }
    // Answer, send, and go on with a request pipelined behind the one just sent.
    for (;;) {
      handle_requests(c);
      if (!flush(c)) return false;
      if (c.sent < c.out.size() || c.closing || c.in.find("\r\n\r\n") == std::string::npos) break;
    }
    if (c.sent == c.out.size() && (c.closing || c.eof)) return false;
    // Readable while the client may still send (a closed side would wake this loop
    // for nothing until the response is out), writable while a response waits.
    const std::uint32_t want =
        (c.eof ? 0U : EPOLLIN | EPOLLRDHUP) | (c.sent < c.out.size() ? EPOLLOUT : 0U);
    if (want != c.armed) {
      epoll_event ev{};
      ev.events = want;
      ev.data.ptr = &c;
      ::epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
      c.armed = want;
    }
    return true;
  }

  // Answers the complete requests in `in` one at a time: the next only once the last
  // response is sent, so a pipelining client cannot pile up pages in memory.
  void handle_requests(Connection& c) {
    while (c.sent == c.out.size() && !c.closing) {
      const auto end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (c.in.size() > kMaxHead) respond_error(c, 431);
        return;
      }
      if (end > kMaxHead) {
        respond_error(c, 431);
        return;
      }
      const auto request = detail::parse_request(std::string_view(c.in).substr(0, end));
      if (!request) {
        respond_error(c, 400);
        return;
      }
      respond(c, *request);
      // A body is not read; the connection cannot be reused after it.
      if (request->has_body || !request->keep_alive) c.closing = true;
      c.in.erase(0, end + 4);
    }
  }

  // Sends what it can of `out`; false on a write error.
  bool flush(Connection& c) {
    bool progressed = false;
    while (c.sent < c.out.size()) {
      const ssize_t n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
      if (n > 0) {
        c.sent += static_cast<std::size_t>(n);
        progressed = true;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      return false;
    }
    const auto now = Clock::now();
    if (c.sent < c.out.size()) {
      // A reader that stalls for a whole request timeout is dropped.
      if (progressed) c.deadline = now + options_.request_timeout;
      return true;
    }
    if (!c.out.empty()) {
      c.out.clear();
      c.sent = 0;
      // Idle until the next request; one that already began has the request timeout.
      c.deadline = now + (c.in.empty() ? options_.keep_alive_timeout : options_.request_timeout);
    }
    return true;
  }

  void start_response(Connection& c, int status, std::string_view content_type, std::size_t length,
                      std::string_view extra_headers) {
    counters_.requests.fetch_add(1);
    c.out.clear();
    c.sent = 0;
    fmt::format_to(std::back_inserter(c.out),
                   "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}{}\r\n", status,
                   reason_of(status), content_type, length, extra_headers,
                   c.closing ? "Connection: close\r\n" : "");
    c.deadline = Clock::now() + options_.request_timeout;
  }

  void respond_error(Connection& c, int status, std::string_view extra_headers = {}) {
    if (status == 400 || status == 405 || status == 431) {
      counters_.bad_requests.fetch_add(1);
      c.closing = status != 405;  // the stream cannot be trusted after a malformed request
    }
    const std::string body = fmt::format("{} {}\n", status, reason_of(status));
    start_response(c, status, "text/plain; charset=utf-8", body.size(), extra_headers);
    c.out += body;
  }

  void respond(Connection& c, const detail::HttpRequest& r) {
    const bool head = r.method == "HEAD";
    if (!r.keep_alive) c.closing = true;
    if (!expected_auth_.empty() && !detail::equal_constant_time(r.authorization, expected_auth_)) {
      counters_.unauthorized.fetch_add(1);
      respond_error(c, 401, "WWW-Authenticate: Basic realm=\"metrics\", charset=\"UTF-8\"\r\n");
      return;
    }
    if (r.method != "GET" && !head) {
      respond_error(c, 405, "Allow: GET, HEAD\r\n");
      return;
    }
    if (r.path != options_.path) {
      if (const auto page = options_.pages.find(r.path); page != options_.pages.end()) {
        respond_page(c, r, page->second, head);
      } else {
        respond_error(c, 404);
      }
      return;
    }
    const bool om = detail::wants_openmetrics(r.accept);
    std::string page;
    bool gzipped = false;
    try {
      if (om) {
        page = scrape_openmetrics(options_.registry);
      } else {
        page = scrape_text(options_.registry);
      }
      if (options_.gzip && detail::accepts_gzip(r.accept_encoding)) {
        page = detail::gzip(page);
        counters_.pages_gzip.fetch_add(1);
        gzipped = true;
      }
    } catch (const std::exception&) {
      // Out of memory building a page of a huge registry, say: this scrape fails alone.
      respond_error(c, 500);
      return;
    }
    (om ? counters_.pages_openmetrics : counters_.pages_text).fetch_add(1);
    start_response(c, 200,
                   om ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                      : "text/plain; version=0.0.4; charset=utf-8",
                   page.size(),
                   gzipped ? "Content-Encoding: gzip\r\nVary: Accept, Accept-Encoding\r\n"
                           : "Vary: Accept, Accept-Encoding\r\n");
    if (!head) c.out += page;
  }

  // A page of the user's: its handler's answer, gzipped like the metrics when accepted.
  void respond_page(Connection& c, const detail::HttpRequest& r, const PageHandler& handler,
                    bool head) {
    PageResponse page;
    try {
      page = handler(PageRequest{r.path, r.query});
      if (page.status < 200 || page.status > 599 ||
          page.content_type.find_first_of("\r\n") != std::string::npos) {
        throw std::invalid_argument("a page handler answered an invalid status or type");
      }
    } catch (...) {
      counters_.page_errors.fetch_add(1);
      respond_error(c, 500);
      return;
    }
    bool gzipped = false;
    if (options_.gzip && detail::accepts_gzip(r.accept_encoding) && page.body.size() > 256) {
      page.body = detail::gzip(page.body);
      gzipped = true;
    }
    counters_.pages_other.fetch_add(1);
    start_response(c, page.status, page.content_type, page.body.size(),
                   gzipped ? "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n"
                           : "Vary: Accept-Encoding\r\n");
    if (!head) c.out += page.body;
  }

  MetricsServerOptions options_;
  std::string expected_auth_;
  detail::BindAddress address_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;
  int port_ = 0;
  std::vector<std::thread> loops_;
  Counters counters_;
};

MetricsServer::MetricsServer(MetricsServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

MetricsServer::MetricsServer(const std::string& bind_address,
                             std::shared_ptr<prometheus::Registry> registry)
    : MetricsServer([&] {
        MetricsServerOptions o;
        o.bind_address = bind_address;
        o.registry = std::move(registry);
        return o;
      }()) {}

MetricsServer::~MetricsServer() = default;

int MetricsServer::port() const { return impl_->port(); }

std::string MetricsServer::url() const { return impl_->url(); }

MetricsServerStats MetricsServer::stats() const { return impl_->stats(); }

}  // namespace executor_exporter
