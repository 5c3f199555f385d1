// ThreadPoolExecutor with an EventStream and one sink attached, in the adapters'
// interface (see adapters.hpp), for the rows that show what a sink costs the pool.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <stdexcept>
#include <utility>

#include <prometheus/registry.h>

#include <executor_exporter/events/event_stream.hpp>
#ifdef EXECUTOR_EXPORTER_HAS_POSTGRES
#include <executor_exporter/events/postgres_sink.hpp>
#endif
#include <executor_exporter/events/statsd_sink.hpp>
#include <executor_exporter/pools/thread_pool_executor.hpp>

namespace bench {

/// The pool as shipped plus an EventStream feeding the sink that `Kind::sink()` makes.
/// drain() waits for the pool only: the rows show what attaching a sink costs the pool
/// (building and buffering the events, and the sink's thread competing for the cores).
/// A sink slower than the pool drops its oldest events past the stream's buffer (65536)
/// and delivers the rest after the clock stops.
template <class Kind>
struct OursEvented {
  static constexpr const char* name = Kind::name;
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  Kind kind;
  std::shared_ptr<executor_exporter::EventStream> stream =
      std::make_shared<executor_exporter::EventStream>(
          executor_exporter::EventStreamOptions{.registry = registry});
  std::optional<executor_exporter::ThreadPoolExecutor> pool;

  explicit OursEvented(std::size_t workers, std::size_t = 1) {
    stream->add_sink(kind.sink());
    executor_exporter::ThreadPoolOptions o;
    o.id = "bench";
    o.registry = registry;
    o.observers.push_back(stream);
    pool.emplace(workers, std::move(o));
  }
  template <class F>
  void post(F&& f) {
    pool->post(std::forward<F>(f));
  }
  template <class F>
  auto submit(F&& f) {
    return pool->submit(std::forward<F>(f));
  }
  void drain() { pool->shutdown(true); }
};

/// A sink that discards what it is given: the stream's own cost.
struct NullSinkKind {
  static constexpr const char* name = "ours_stream";
  struct Null : executor_exporter::EventSink {
    std::string name() const override { return "null"; }
    void write(std::span<const executor_exporter::TaskEvent>) override {}
  };
  static std::shared_ptr<executor_exporter::EventSink> sink() { return std::make_shared<Null>(); }
};

/// The StatsD sink sending to a loopback UDP socket that nobody reads: the kernel drops
/// what overflows its buffer, as it would for an agent that falls behind; the sender's
/// cost is the same.
struct StatsdKind {
  static constexpr const char* name = "ours_statsd";
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  std::uint16_t port = 0;

  StatsdKind() {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("StatsdKind: cannot bind a UDP socket on 127.0.0.1");
    }
    port = ntohs(a.sin_port);
  }
  StatsdKind(const StatsdKind&) = delete;
  StatsdKind& operator=(const StatsdKind&) = delete;
  ~StatsdKind() { ::close(fd); }

  std::shared_ptr<executor_exporter::EventSink> sink() const {
    return std::make_shared<executor_exporter::StatsdSink>(
        executor_exporter::StatsdSinkOptions{.port = port});
  }
};

#ifdef EXECUTOR_EXPORTER_HAS_POSTGRES
/// The PostgreSQL sink writing to the server named by EE_BENCH_POSTGRES_DSN (scripts/bench.sh
/// starts a throwaway one on loopback); the row is left out when the variable is unset.
struct PostgresKind {
  static constexpr const char* name = "ours_postgres";
  static const char* dsn() { return std::getenv("EE_BENCH_POSTGRES_DSN"); }
  static std::shared_ptr<executor_exporter::EventSink> sink() {
    return std::make_shared<executor_exporter::PostgresSink>(
        executor_exporter::PostgresSinkOptions{.dsn = dsn(), .table = "bench_task_history"});
  }
};
using OursPostgres = OursEvented<PostgresKind>;
#endif

using OursStream = OursEvented<NullSinkKind>;
using OursStatsd = OursEvented<StatsdKind>;

}  // namespace bench
