#include <executor_exporter/events/statsd_sink.hpp>

#include <fmt/format.h>

#include <netdb.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <random>
#include <stdexcept>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

namespace executor_exporter {

namespace {

// Label values come from users. Outside this set a byte could end a line (`\n`), start
// the value or the tags (`:`, `|`), separate tags (`,`) or be stripped differently by
// each server, so it becomes `_`; in plain StatsD a `.` would add a level to the name.
std::string sanitized(std::string_view value, bool dots_allowed) {
  constexpr std::size_t longest = 200;  // keeps every line far below one datagram
  std::string out;
  out.reserve(std::min(value.size(), longest));
  for (const char c : value.substr(0, longest)) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '_' || c == '-' || c == '/' || (c == '.' && dots_allowed);
    out.push_back(plain ? c : '_');
  }
  return out;
}

// A connected UDP socket: send() then needs no address, and a refusal reported by ICMP
// surfaces as ECONNREFUSED on a later send instead of being lost.
int connect_udp(const std::string& host, std::uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    throw std::system_error(
        std::make_error_code(std::errc::host_unreachable),
        fmt::format("StatsdSink: cannot resolve '{}': {}", host, ::gai_strerror(rc)));
  }
  int last_errno = 0;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last_errno = errno;
      continue;
    }
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      ::freeaddrinfo(found);
      return fd;
    }
    last_errno = errno;
    ::close(fd);
  }
  ::freeaddrinfo(found);
  throw std::system_error(last_errno, std::system_category(),
                          fmt::format("StatsdSink: cannot open a UDP socket to {}:{}", host, port));
}

std::string_view count_name(EventKind kind) {
  switch (kind) {
    case EventKind::worker_started:
      return "workers.started";
    case EventKind::worker_stopped:
      return "workers.stopped";
    case EventKind::submitted:
      return "tasks.submitted";
    case EventKind::rejected:
      return "tasks.rejected";
    case EventKind::started:
      return "tasks.started";
    case EventKind::completed:
      return "tasks.completed";
    case EventKind::failed:
      return "tasks.failed";
    case EventKind::cancelled:
      return "tasks.cancelled";
    case EventKind::expired:
      return "tasks.expired";
  }
  return "tasks.unknown";
}

}  // namespace

struct StatsdSink::State {
  // Queued and running tasks of one executor, as counted from the events received.
  struct Levels {
    std::string executor_type;
    std::int64_t queued = 0;
    std::int64_t running = 0;
  };

  StatsdSinkOptions options;
  int fd = -1;
  std::minstd_rand random{std::random_device{}()};
  std::unordered_map<std::string, Levels> levels;  // by executor id
  std::vector<std::string> touched;                // executors with events since the last flush
  std::string datagram;
  std::chrono::steady_clock::time_point last_flush = std::chrono::steady_clock::now();
  int send_errno = 0;

  // The levels of the executors that had events, then whatever is batched.
  void flush() {
    for (const std::string& id : touched) {
      const Levels& l = levels.at(id);
      line("tasks.queued", std::to_string(std::max<std::int64_t>(0, l.queued)), "g", nullptr, id,
           l.executor_type, {}, false);
      line("tasks.running", std::to_string(std::max<std::int64_t>(0, l.running)), "g", nullptr, id,
           l.executor_type, {}, false);
    }
    touched.clear();
    send_datagram();
    last_flush = std::chrono::steady_clock::now();
  }

  void throw_send_error() {
    if (send_errno == 0) return;
    const int err = std::exchange(send_errno, 0);
    throw std::system_error(
        err, std::system_category(),
        fmt::format("StatsdSink: sending to {}:{} failed", options.host, options.port));
  }

  // One line: `name:value|type[|@rate][|#tags]`, or with the labels in the name.
  void line(std::string_view name, std::string_view value, std::string_view type,
            const TaskEvent* e, std::string_view executor, std::string_view executor_type,
            std::initializer_list<std::pair<std::string_view, std::string_view>> extra,
            bool sampled) {
    std::string text = options.prefix;
    if (!options.tags) {
      text += sanitized(executor, false);
      text += '.';
      if (e != nullptr && !e->task.empty()) {
        text += sanitized(e->task, false);
        text += '.';
      }
      for (const auto& [k, v] : extra) {
        if (!v.empty()) {
          text += sanitized(v, false);
          text += '.';
        }
      }
    }
    text += name;
    text += ':';
    text += value;
    text += '|';
    text += type;
    if (sampled && options.sample_rate < 1.0) text += fmt::format("|@{}", options.sample_rate);
    if (options.tags) {
      std::string tags;
      auto tag = [&](std::string_view k, std::string_view v) {
        tags += tags.empty() ? "|#" : ",";
        tags += sanitized(k, true);
        tags += ':';
        tags += sanitized(v, true);
      };
      tag("executor", executor);
      tag("executor_type", executor_type);
      if (e != nullptr && !e->task.empty()) tag("task", e->task);
      for (const auto& [k, v] : extra) {
        if (!v.empty()) tag(k, v);
      }
      for (const auto& [k, v] : options.constant_tags) tag(k, v);
      text += tags;
    }
    append(text);
  }

  void append(const std::string& text) {
    if (!datagram.empty() && datagram.size() + 1 + text.size() > options.max_datagram_bytes) {
      send_datagram();
    }
    if (!datagram.empty()) datagram += '\n';
    datagram += text;
  }

  void send_datagram() {
    if (datagram.empty()) return;
    if (::send(fd, datagram.data(), datagram.size(), MSG_NOSIGNAL) < 0 && send_errno == 0) {
      send_errno = errno;
    }
    datagram.clear();
  }

  bool sample() {
    if (options.sample_rate >= 1.0) return true;
    return std::uniform_real_distribution<double>(0.0, 1.0)(random) < options.sample_rate;
  }

  void event(const TaskEvent& e) {
    Levels& l = levels[e.executor];
    if (std::find(touched.begin(), touched.end(), e.executor) == touched.end()) {
      touched.push_back(e.executor);
      l.executor_type = e.executor_type;
    }
    const auto n = static_cast<std::int64_t>(e.count);
    switch (e.kind) {
      case EventKind::submitted:
        l.queued += n;
        break;
      case EventKind::started:
        l.queued -= n;
        l.running += n;
        break;
      case EventKind::completed:
      case EventKind::failed:
        l.running -= n;
        break;
      case EventKind::cancelled:
      case EventKind::expired:
        l.queued -= n;
        break;
      default:
        break;
    }
    const bool worker = e.kind == EventKind::worker_started || e.kind == EventKind::worker_stopped;
    if (!worker && !sample()) return;
    std::string_view extra_key;
    std::string_view extra_value;
    if (e.kind == EventKind::failed) {
      extra_key = "error_type";
      extra_value = e.error_type;
    } else if (e.kind == EventKind::rejected || e.kind == EventKind::worker_stopped) {
      extra_key = "reason";
      extra_value = e.reason;
    }
    const TaskEvent* task = worker ? nullptr : &e;
    // A worker event stands for one worker (its TaskEvent::count, of tasks, is 0).
    line(count_name(e.kind), std::to_string(worker ? 1 : e.count), "c", task, e.executor,
         e.executor_type, {{extra_key, extra_value}}, !worker);
    // Measured ends (not a non-zero duration) decide, so a wait under the clock's
    // resolution is still a sample of 0 ms.
    if (e.kind == EventKind::started && e.submitted_unix_ns != 0 && e.started_unix_ns != 0) {
      line("task.wait", milliseconds(e.wait_ns), "ms", task, e.executor, e.executor_type, {}, true);
    }
    if ((e.kind == EventKind::completed || e.kind == EventKind::failed) && e.started_unix_ns != 0 &&
        e.finished_unix_ns != 0) {
      line("task.run", milliseconds(e.run_ns), "ms", task, e.executor, e.executor_type, {}, true);
    }
  }

  static std::string milliseconds(std::uint64_t ns) {
    return fmt::format("{:.3f}", static_cast<double>(ns) / 1e6);
  }
};

StatsdSink::StatsdSink(StatsdSinkOptions options) : state_(std::make_unique<State>()) {
  if (!(options.sample_rate > 0.0 && options.sample_rate <= 1.0)) {
    throw std::invalid_argument(
        fmt::format("StatsdSink: sample_rate must be in (0, 1], got {}", options.sample_rate));
  }
  if (options.max_datagram_bytes < 64 || options.max_datagram_bytes > 65507) {
    throw std::invalid_argument(fmt::format(
        "StatsdSink: max_datagram_bytes must be in [64, 65507] (one UDP datagram), got {}",
        options.max_datagram_bytes));
  }
  if (options.name.empty()) throw std::invalid_argument("StatsdSink: the name must not be empty");
  state_->fd = connect_udp(options.host, options.port);
  state_->options = std::move(options);
  state_->options.prefix = sanitized(state_->options.prefix, true);
}

StatsdSink::~StatsdSink() {
  if (state_->fd >= 0) ::close(state_->fd);
}

std::string StatsdSink::name() const { return state_->options.name; }

void StatsdSink::write(std::span<const TaskEvent> events) {
  State& s = *state_;
  for (const TaskEvent& e : events) s.event(e);
  if (std::chrono::steady_clock::now() - s.last_flush >= s.options.flush_interval) s.flush();
  s.throw_send_error();
}

void StatsdSink::idle() {
  state_->flush();
  state_->throw_send_error();
}

}  // namespace executor_exporter
