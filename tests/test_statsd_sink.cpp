// The StatsD sink: the task lifecycle as StatsD/DogStatsD lines over UDP, checked first
// datagram by datagram on a plain loopback socket, then against the reference statsd
// server, which must aggregate every count, timing and gauge the pools produced.
#include <executor_exporter/events/statsd_sink.hpp>
#include <executor_exporter/executor_exporter.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <latch>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "scrape.hpp"
#include "statsd_server.hpp"

using namespace std::chrono_literals;
namespace ee = executor_exporter;
namespace prom = ee_test::prom;

namespace {

// A UDP socket on 127.0.0.1 that keeps every datagram it receives.
class UdpReceiver {
 public:
  UdpReceiver() : fd_(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    // A big receive buffer: the test reads only after the pool has finished.
    const int size = 8 << 20;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("UdpReceiver: cannot bind 127.0.0.1:0");
    }
    port_ = ntohs(a.sin_port);
  }
  UdpReceiver(const UdpReceiver&) = delete;
  UdpReceiver& operator=(const UdpReceiver&) = delete;
  ~UdpReceiver() { ::close(fd_); }
  std::uint16_t port() const { return port_; }

  // Every datagram that arrives until none has for `quiet`.
  std::vector<std::string> drain(std::chrono::milliseconds quiet) {
    std::vector<std::string> out;
    std::vector<char> buf(65536);
    pollfd p{fd_, POLLIN, 0};
    while (::poll(&p, 1, static_cast<int>(quiet.count())) == 1) {
      const auto n = ::recv(fd_, buf.data(), buf.size(), 0);
      if (n < 0) break;
      out.emplace_back(buf.data(), static_cast<std::size_t>(n));
    }
    return out;
  }

 private:
  int fd_;
  std::uint16_t port_ = 0;
};

std::vector<std::string> lines_of(const std::vector<std::string>& datagrams) {
  std::vector<std::string> lines;
  for (const auto& d : datagrams) {
    std::size_t from = 0;
    for (std::size_t nl; (nl = d.find('\n', from)) != std::string::npos; from = nl + 1) {
      lines.push_back(d.substr(from, nl - from));
    }
    lines.push_back(d.substr(from));
  }
  return lines;
}

std::shared_ptr<ee::EventStream> stream_on(const std::shared_ptr<prometheus::Registry>& registry) {
  return std::make_shared<ee::EventStream>(ee::EventStreamOptions{.registry = registry});
}

ee::ThreadPoolOptions pool_options(const std::shared_ptr<prometheus::Registry>& registry,
                                   std::string id, const std::shared_ptr<ee::EventStream>& stream) {
  ee::ThreadPoolOptions o;
  o.registry = registry;
  o.id = std::move(id);
  o.observers.push_back(stream);
  return o;
}

}  // namespace

TEST_CASE("StatsD lines fill datagrams below the limit and hostile labels cannot break them",
          "[statsd]") {
  UdpReceiver receiver;
  auto registry = std::make_shared<prometheus::Registry>();
  auto stream = stream_on(registry);
  stream->add_sink(std::make_shared<ee::StatsdSink>(ee::StatsdSinkOptions{
      .port = receiver.port(), .constant_tags = {{"env", "te|st"}}, .max_datagram_bytes = 600}));
  const std::string hostile = "a:b|c#d,e\nf@g h.i\xff";
  {
    ee::ThreadPoolExecutor pool(2, pool_options(registry, "id:with|bad,chars", stream));
    std::vector<ee::Future<void>> done;
    for (int i = 0; i < 200; ++i) done.push_back(pool.submit_named(hostile, [] {}));
    done.push_back(pool.submit([] { throw std::invalid_argument("no"); }));
    for (auto& f : done) f.wait();
  }
  stream.reset();  // its sinks send what they batched
  const auto datagrams = receiver.drain(500ms);
  REQUIRE(!datagrams.empty());
  // Packed: far fewer datagrams than lines, none above the limit.
  const auto lines = lines_of(datagrams);
  CHECK(datagrams.size() * 3 < lines.size());
  for (const auto& d : datagrams) CHECK(d.size() <= 600);
  const std::regex grammar(
      R"(executor\.[a-z.]+:[0-9.]+\|(c|ms|g)(\|#[A-Za-z0-9_./-]+:[A-Za-z0-9_./-]*(,[A-Za-z0-9_./-]+:[A-Za-z0-9_./-]*)*))");
  double completed = 0;
  double failed = 0;
  for (const auto& line : lines) {
    INFO(line);
    CHECK(std::regex_match(line, grammar));
    if (line.starts_with("executor.tasks.completed:")) completed += std::stod(line.substr(25));
    if (line.starts_with("executor.tasks.failed:")) {
      failed += 1;
      CHECK(line.find("error_type:std__invalid_argument") != std::string::npos);
    }
  }
  CHECK(completed == 200);
  CHECK(failed == 1);
  CHECK(lines.front().find("|#executor:id_with_bad_chars,executor_type:thread_pool") !=
        std::string::npos);
  CHECK(lines.back().find("env:te_st") != std::string::npos);
}

TEST_CASE("the StatsD sink refuses options that cannot work", "[statsd]") {
  CHECK_THROWS_AS(ee::StatsdSink({.sample_rate = 0}), std::invalid_argument);
  CHECK_THROWS_AS(ee::StatsdSink({.sample_rate = 1.5}), std::invalid_argument);
  CHECK_THROWS_AS(ee::StatsdSink({.max_datagram_bytes = 70000}), std::invalid_argument);
  CHECK_THROWS_AS(ee::StatsdSink({.host = "no-such-host.invalid"}), std::system_error);
}

TEST_CASE("a StatsD server that is not there costs counted errors, never the pool", "[statsd]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto stream = std::make_shared<ee::EventStream>(
      ee::EventStreamOptions{.max_batch = 1, .registry = registry, .on_error = [](auto) {}});
  // Nothing listens there: loopback answers each datagram with ICMP port unreachable,
  // which a connected socket reports on a later send.
  stream->add_sink(std::make_shared<ee::StatsdSink>(
      ee::StatsdSinkOptions{.port = static_cast<std::uint16_t>(ee_test::free_udp_port())}));
  {
    ee::ThreadPoolExecutor pool(1, pool_options(registry, "unheard", stream));
    for (int i = 0; i < 50; ++i) {
      pool.submit([] {}).get();
      std::this_thread::sleep_for(1ms);
    }
  }
  REQUIRE(stream->flush());
  const auto page = ee_test::scrape(registry);
  CHECK(prom::metric(page, "executor_event_sink_errors_total", {{"sink", "statsd"}}) > 0);
  CHECK(prom::metric(page, "executor_tasks_completed_total", {{"executor", "unheard"}}) == 50);
}

TEST_CASE("the real statsd server aggregates every count, timing and gauge of the pools",
          "[statsd][e2e]") {
  ee_test::StatsdServer statsd;
  const auto port = static_cast<std::uint16_t>(statsd.port());
  auto registry = std::make_shared<prometheus::Registry>();
  // A short idle tick sends each round's last, partly filled datagram at once, so the
  // flow control below does not wait a second per round.
  auto stream = std::make_shared<ee::EventStream>(
      ee::EventStreamOptions{.idle_interval = std::chrono::milliseconds(20), .registry = registry});
  stream->add_sink(std::make_shared<ee::StatsdSink>(ee::StatsdSinkOptions{.port = port}));
  // Plain StatsD: the labels go into the name.
  stream->add_sink(std::make_shared<ee::StatsdSink>(
      ee::StatsdSinkOptions{.port = port, .prefix = "plain.", .tags = false, .name = "plain"}));
  // Sampled: the server scales each count by 1/rate.
  stream->add_sink(std::make_shared<ee::StatsdSink>(ee::StatsdSinkOptions{
      .port = port, .prefix = "sampled.", .sample_rate = 0.5, .name = "sampled"}));

  const std::string tags = ";executor=statsd-pool;executor_type=thread_pool";
  ee::ThreadPoolExecutor pool(3, pool_options(registry, "statsd-pool", stream));
  SECTION("counts and timings") {
    const std::string resize = "executor.tasks.completed" + tags + ";task=resize";
    const std::string plain = "plain.statsd-pool.resize.tasks.completed";
    const auto count = [](const auto& totals, const std::string& key) {
      const auto it = totals.counters.find(key);
      return it == totals.counters.end() ? 0.0 : it->second;
    };
    // Flow-controlled: statsd reads one UDP socket with the kernel's default buffer
    // (208 KiB here), and UDP drops what does not fit, by design. A sleep between rounds
    // was not enough when a loaded machine stalled the server (468 of 1000 counts arrived
    // once), so each round waits until the server has counted the previous one.
    for (int round = 0; round < 20; ++round) {
      std::vector<ee::Future<void>> done;
      for (int i = 0; i < 50; ++i) done.push_back(pool.submit_named("resize", [] {}));
      if (round < 5) {
        done.push_back(pool.submit([] { throw std::runtime_error("broken image"); }));
      }
      for (auto& f : done) f.wait();
      REQUIRE(stream->flush());
      const double sent = 50.0 * (round + 1);
      statsd.totals_when(
          [&](const auto& t) { return count(t, resize) >= sent && count(t, plain) >= sent; }, 15s);
    }
    pool.shutdown();
    CHECK_THROWS_AS(pool.submit([] {}), ee::ExecutorShutdownError);
    REQUIRE(stream->flush());

    const std::string failed = "executor.tasks.failed" + tags + ";error_type=std__runtime_error";
    const std::string rejected = "executor.tasks.rejected" + tags + ";reason=shutdown";
    const std::string run = "executor.task.run" + tags + ";task=resize";
    const std::string wait = "executor.task.wait" + tags + ";task=resize";
    const std::string stopped = "executor.workers.stopped" + tags;
    const std::string queued_key = "executor.tasks.queued" + tags;
    const std::string running_key = "executor.tasks.running" + tags;
    const auto& t = statsd.totals_when(
        [&](const auto& t) {
          return t.counters.count(resize) != 0 && t.counters.at(resize) >= 1000 &&
                 t.counters.count(stopped) != 0 && t.counters.at(stopped) >= 3 &&
                 t.counters.count(plain) != 0 && t.counters.at(plain) >= 1000 &&
                 // The gauges go with the sink's next flush, after the last counts.
                 t.gauges.count(queued_key) != 0 && t.gauges.at(queued_key) == 0 &&
                 t.gauges.count(running_key) != 0 && t.gauges.at(running_key) == 0;
        },
        15s);
    CHECK(t.counters.at(resize) == 1000);
    CHECK(t.counters.at(plain) == 1000);
    CHECK(t.counters.at(failed) == 5);
    CHECK(t.counters.at(rejected) == 1);
    CHECK(t.counters.at("executor.tasks.submitted" + tags + ";task=resize") == 1000);
    CHECK(t.counters.at(stopped) == 3);
    CHECK(t.counters.at("executor.workers.started" + tags) == 3);
    CHECK(t.timer_counts.at(run) == 1000);
    CHECK(t.timer_counts.at(wait) == 1000);
    // The server saw well-formed lines only.
    CHECK(t.counters.at("statsd.bad_lines_seen") == 0);
    // Sampling at 0.5 sends about half and the server scales back: 1000 within 6 sigma.
    const double sampled = t.counters.at("sampled.tasks.completed" + tags + ";task=resize");
    CHECK(sampled > 1000 - 6 * 31.7);
    CHECK(sampled < 1000 + 6 * 31.7);
    CHECK(t.gauges.at("executor.tasks.queued" + tags) == 0);
    CHECK(t.gauges.at("executor.tasks.running" + tags) == 0);
  }
  SECTION("gauges follow the queue and the workers") {
    std::latch release(1);
    std::vector<ee::Future<void>> done;
    for (int i = 0; i < 8; ++i) done.push_back(pool.submit([&] { release.wait(); }));
    const std::string queued = "executor.tasks.queued" + tags;
    const std::string running = "executor.tasks.running" + tags;
    const auto& t = statsd.totals_when(
        [&](const auto& t) {
          return t.gauges.count(queued) != 0 && t.gauges.at(queued) == 5 &&
                 t.gauges.at(running) == 3;
        },
        15s);
    CHECK(t.gauges.at(queued) == 5);
    CHECK(t.gauges.at(running) == 3);
    release.count_down();
    for (auto& f : done) f.wait();
    statsd.totals_when([&](const auto& t) { return t.gauges.at(queued) == 0; }, 15s);
    CHECK(t.gauges.at(queued) == 0);
    CHECK(t.gauges.at(running) == 0);
  }
}
