// MetricsServer as a scraper, a careless client and a hostile one meet it, over real
// loopback sockets: content negotiation (OpenMetrics for Prometheus, text otherwise, both
// checked by promtool), gzip, basic auth, keep-alive and pipelining, malformed requests,
// and the timeouts and connection limit that keep idle and trickling connections from
// starving scrapes.
#include <executor_exporter/executor_exporter.hpp>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "http_client.hpp"
#include "prom_text.hpp"
#include "subprocess.hpp"
#include "temp_dir.hpp"
#include "wait_until.hpp"

using namespace std::chrono_literals;
namespace ee = executor_exporter;
namespace prom = ee_test::prom;

namespace {

// What Prometheus 2.42 sends when it scrapes.
constexpr const char* kPrometheusAccept =
    "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

// A raw client connection to 127.0.0.1:port, for what http_get does not do.
class RawConnection {
 public:
  explicit RawConnection(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;
  ~RawConnection() { ::close(fd_); }

  bool connected() const { return connected_; }
  bool send(std::string_view s) {
    return ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size());
  }
  // Reads until `done(received)` or the peer closes or `timeout` passes.
  template <class Done>
  std::string read_until(Done&& done, std::chrono::milliseconds timeout) {
    std::string got;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done(got)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buf[65536];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        closed_ = true;
        break;
      }
      got.append(buf, static_cast<std::size_t>(n));
    }
    return got;
  }
  std::string read_all(std::chrono::milliseconds timeout) {
    return read_until([](const std::string&) { return false; }, timeout);
  }
  // Whether the server closed the connection (seen by a read).
  bool closed_by_server(std::chrono::milliseconds timeout) {
    read_all(timeout);
    return closed_;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
};

// Responses in `s` (complete ones, by Content-Length).
std::vector<std::string> split_responses(const std::string& s) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < s.size()) {
    const auto head_end = s.find("\r\n\r\n", at);
    if (head_end == std::string::npos) break;
    const auto cl = s.find("Content-Length: ", at);
    if (cl == std::string::npos || cl > head_end) break;
    const std::size_t length = std::stoul(s.substr(cl + 16));
    const std::size_t end = head_end + 4 + length;
    if (end > s.size()) break;
    out.push_back(s.substr(at, end - at));
    at = end;
  }
  return out;
}

std::shared_ptr<prometheus::Registry> registry_with_a_pool(
    std::unique_ptr<ee::ThreadPoolExecutor>& pool) {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolOptions o;
  o.registry = registry;
  o.id = "served";
  pool = std::make_unique<ee::ThreadPoolExecutor>(2, o);
  pool->submit([] {}).get();
  pool->submit_named("import \"quoted\"\nline", [] {}).get();
  pool->submit([] { throw std::runtime_error("x"); }).wait();
  return registry;
}

}  // namespace

TEST_CASE("MetricsServer negotiates OpenMetrics for Prometheus and text for everyone else",
          "[metrics_server]") {
  std::unique_ptr<ee::ThreadPoolExecutor> pool;
  auto registry = registry_with_a_pool(pool);
  ee::MetricsServer server("127.0.0.1:0", registry);
  const std::string promtool = EE_PROMTOOL;
  REQUIRE_FALSE(promtool.empty());

  SECTION("OpenMetrics 1.0.0 when asked first, and promtool's OpenMetrics parser takes it") {
    const auto r =
        ee_test::http_get("127.0.0.1", server.port(), "/metrics", 5s, {kPrometheusAccept});
    REQUIRE(r.status == 200);
    CHECK(r.header("content-type") == "application/openmetrics-text; version=1.0.0; charset=utf-8");
    const std::string& page = r.body;
    CHECK(page.size() > 6);
    CHECK(page.substr(page.size() - 6) == "# EOF\n");
    CHECK_THAT(page, Catch::Contains("# TYPE executor_tasks_submitted counter\n"));
    CHECK_THAT(page, Catch::Contains("\nexecutor_tasks_submitted_total{executor=\"served\""));
    CHECK_THAT(page, Catch::Contains("\nexecutor_tasks_submitted_created{executor=\"served\""));
    CHECK_THAT(page, Catch::Contains("# UNIT executor_task_wait_seconds seconds\n"));
    CHECK_THAT(page, Catch::Contains("# UNIT executor_worker_busy_seconds seconds\n"));
    // promtool's backfill reads OpenMetrics strictly (# EOF, types, suffixes) but wants a
    // timestamp on every sample: the page is given one, and is otherwise unchanged.
    std::string stamped;
    const std::string ts =
        " " + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count());
    std::size_t from = 0;
    while (from < page.size()) {
      const auto nl = page.find('\n', from);
      std::string line = page.substr(from, nl - from);
      // The timestamp goes before an exemplar (` # {...}`), which follows the sample.
      if (!line.empty() && line[0] != '#') {
        const auto exemplar = line.find(" # {");
        line.insert(exemplar == std::string::npos ? line.size() : exemplar, ts);
      }
      stamped += line + "\n";
      from = nl + 1;
    }
    ee_test::TempDir dir("ee_om");
    const auto file = (dir / "page.om").string();
    {
      std::ofstream out(file);
      out << stamped;
    }
    const auto check = ee_test::run_and_capture(
        {promtool, "tsdb", "create-blocks-from", "openmetrics", file, (dir / "blocks").string()},
        "", 60s);
    INFO(check.out << check.err << "\npage:\n" << page);
    CHECK(check.exit_code == 0);
    // The same parser refuses a page without its # EOF: the check above can fail.
    {
      std::ofstream out(file);
      out << stamped.substr(0, stamped.size() - 6);
    }
    const auto truncated = ee_test::run_and_capture(
        {promtool, "tsdb", "create-blocks-from", "openmetrics", file, (dir / "blocks2").string()},
        "", 60s);
    CHECK(truncated.exit_code != 0);
    CHECK(server.stats().pages_openmetrics == 1);
  }
  SECTION("text 0.0.4 for curl's */* and for text/plain, and promtool lints it clean") {
    for (const char* accept : {"Accept: */*", "Accept: text/plain;version=0.0.4",
                               "Accept: application/openmetrics-text;q=0.2,text/plain"}) {
      INFO(accept);
      const auto r = ee_test::http_get("127.0.0.1", server.port(), "/metrics", 5s, {accept});
      REQUIRE(r.status == 200);
      CHECK(r.header("content-type") == "text/plain; version=0.0.4; charset=utf-8");
      CHECK_THAT(r.body, !Catch::Contains("# EOF"));
      const auto check = ee_test::run_and_capture({promtool, "check", "metrics"}, r.body, 60s);
      INFO(check.out << check.err);
      CHECK(check.exit_code == 0);
      CHECK(prom::metric(prom::parse(r.body), "executor_tasks_submitted_total",
                         {{"executor", "served"}}) == 2);
    }
  }
  SECTION("gzip when accepted, the same page once inflated") {
    const auto plain = ee_test::http_get("127.0.0.1", server.port(), "/metrics");
    const auto r = ee_test::http_get("127.0.0.1", server.port(), "/metrics", 5s,
                                     {"Accept-Encoding: br;q=1.0, gzip;q=0.8"});
    REQUIRE(r.status == 200);
    CHECK(r.header("content-encoding") == "gzip");
    CHECK(r.body.size() < plain.body.size() / 3);
    const auto inflated = ee_test::run_and_capture({"gzip", "-dc"}, r.body, 30s);
    REQUIRE(inflated.exit_code == 0);
    CHECK(prom::metric(prom::parse(inflated.out), "executor_tasks_submitted_total",
                       {{"executor", "served"}}) == 2);
    const auto refused = ee_test::http_get("127.0.0.1", server.port(), "/metrics", 5s,
                                           {"Accept-Encoding: gzip;q=0"});
    CHECK(refused.header("content-encoding").empty());
  }
}

TEST_CASE("MetricsServer asks for basic credentials when configured", "[metrics_server]") {
  ee::MetricsServerOptions o;
  o.bind_address = "127.0.0.1:0";
  o.registry = std::make_shared<prometheus::Registry>();
  o.basic_auth_user = "prom";
  o.basic_auth_password = "s3cret:with colon";
  ee::MetricsServer server(o);
  const auto none = ee_test::http_get("127.0.0.1", server.port(), "/metrics");
  CHECK(none.status == 401);
  CHECK_THAT(none.header("www-authenticate"), Catch::StartsWith("Basic realm="));
  // base64("prom:wrong")
  CHECK(ee_test::http_get("127.0.0.1", server.port(), "/metrics", 5s,
                          {"Authorization: Basic cHJvbTp3cm9uZw=="})
            .status == 401);
  // base64("prom:s3cret:with colon")
  CHECK(ee_test::http_get("127.0.0.1", server.port(), "/metrics", 5s,
                          {"Authorization: Basic cHJvbTpzM2NyZXQ6d2l0aCBjb2xvbg=="})
            .status == 200);
  CHECK(server.stats().unauthorized == 2);
}

TEST_CASE(
    "MetricsServer keeps connections alive, answers pipelined requests in order, and refuses "
    "bad ones clearly",
    "[metrics_server]") {
  ee::MetricsServer server("127.0.0.1:0", std::make_shared<prometheus::Registry>());
  auto ends_with_response = [](const std::string& s) {
    return s.find("\r\n\r\n") != std::string::npos;
  };

  SECTION("two requests on one connection, the second pipelined behind a 404") {
    RawConnection c(server.port());
    REQUIRE(c.connected());
    REQUIRE(c.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
    const auto first = c.read_until(ends_with_response, 5s);
    CHECK_THAT(first, Catch::StartsWith("HTTP/1.1 200 OK"));
    REQUIRE(c.send("GET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics?x=1 HTTP/1.1\r\n\r\n"));
    const auto rest =
        c.read_until([](const std::string& s) { return split_responses(s).size() == 2; }, 5s);
    const auto responses = split_responses(rest);
    REQUIRE(responses.size() == 2);
    CHECK_THAT(responses[0], Catch::StartsWith("HTTP/1.1 404 Not Found"));
    CHECK_THAT(responses[1], Catch::StartsWith("HTTP/1.1 200 OK"));
  }
  SECTION("HEAD sends the head alone") {
    RawConnection c(server.port());
    REQUIRE(c.send("HEAD /metrics HTTP/1.1\r\nConnection: close\r\n\r\n"));
    const auto r = c.read_all(5s);
    CHECK_THAT(r, Catch::StartsWith("HTTP/1.1 200 OK"));
    CHECK_THAT(r, Catch::Contains("Content-Length: "));
    CHECK(r.substr(r.find("\r\n\r\n")) == "\r\n\r\n");
  }
  SECTION("HTTP/1.0 without keep-alive is closed after its response") {
    RawConnection c(server.port());
    REQUIRE(c.send("GET /metrics HTTP/1.0\r\n\r\n"));
    CHECK(c.closed_by_server(5s));
  }
  SECTION("garbage gets 400, a POST 405, a huge head 431") {
    {
      RawConnection c(server.port());
      REQUIRE(c.send("HELLO\r\n\r\n"));
      CHECK_THAT(c.read_all(5s), Catch::StartsWith("HTTP/1.1 400 Bad Request"));
    }
    {
      RawConnection c(server.port());
      REQUIRE(c.send("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
      const auto r = c.read_until(ends_with_response, 5s);
      CHECK_THAT(r, Catch::StartsWith("HTTP/1.1 405 Method Not Allowed"));
      CHECK_THAT(r, Catch::Contains("Allow: GET, HEAD"));
    }
    {
      RawConnection c(server.port());
      REQUIRE(c.send("GET /metrics HTTP/1.1\r\nX-Big: " + std::string(40000, 'a') + "\r\n\r\n"));
      CHECK_THAT(c.read_all(5s), Catch::StartsWith("HTTP/1.1 431"));
    }
    CHECK(server.stats().bad_requests == 3);
  }
}

TEST_CASE("MetricsServer closes idle and trickling connections at their timeouts",
          "[metrics_server]") {
  ee::MetricsServerOptions o;
  o.bind_address = "127.0.0.1:0";
  o.registry = std::make_shared<prometheus::Registry>();
  o.request_timeout = 300ms;
  o.keep_alive_timeout = 500ms;
  ee::MetricsServer server(o);

  RawConnection silent(server.port());
  RawConnection trickling(server.port());
  RawConnection kept(server.port());
  REQUIRE(kept.send("GET /metrics HTTP/1.1\r\n\r\n"));
  // A byte every 50 ms keeps the connection busy, never complete: the request timeout
  // runs from its first byte, not from the last.
  std::atomic<bool> trickle_closed{false};
  std::thread trickler([&] {
    const std::string request = "GET /metrics HTTP/1.1\r\nX-Slow: " + std::string(200, 'z');
    for (char ch : request) {
      if (!trickling.send(std::string(1, ch))) {
        trickle_closed = true;
        return;
      }
      std::this_thread::sleep_for(50ms);
    }
  });
  CHECK(silent.closed_by_server(5s));
  CHECK(kept.read_until([](const std::string& s) { return s.find("200 OK") != std::string::npos; },
                        5s)
            .size() > 0);
  CHECK(kept.closed_by_server(5s));  // idle past the keep-alive timeout
  trickler.join();
  CHECK(trickle_closed);
  CHECK(server.stats().timed_out_connections == 3);
  CHECK(ee_test::wait_until([&] { return server.stats().open_connections == 0; }, 5s, 10ms));
}

TEST_CASE("MetricsServer answers 503 beyond max_connections and serves again when they close",
          "[metrics_server]") {
  ee::MetricsServerOptions o;
  o.bind_address = "127.0.0.1:0";
  o.registry = std::make_shared<prometheus::Registry>();
  o.max_connections = 4;
  ee::MetricsServer server(o);
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(std::make_unique<RawConnection>(server.port()));
  REQUIRE(ee_test::wait_until([&] { return server.stats().open_connections == 4; }, 5s, 5ms));
  const auto busy = ee_test::http_get("127.0.0.1", server.port(), "/metrics");
  CHECK(busy.status == 503);
  CHECK(server.stats().refused_connections == 1);
  idle.clear();
  CHECK(ee_test::wait_until(
      [&] { return ee_test::http_get("127.0.0.1", server.port(), "/metrics").status == 200; }, 5s,
      10ms));
}

TEST_CASE("200 idle and trickling connections do not delay scrapes past a second",
          "[metrics_server][slowloris]") {
  std::unique_ptr<ee::ThreadPoolExecutor> pool;
  auto registry = registry_with_a_pool(pool);
  ee::MetricsServer server("127.0.0.1:0", registry);  // the defaults
  std::vector<std::unique_ptr<RawConnection>> idle, trickling;
  for (int i = 0; i < 100; ++i) {
    idle.push_back(std::make_unique<RawConnection>(server.port()));
    trickling.push_back(std::make_unique<RawConnection>(server.port()));
    REQUIRE(trickling.back()->send("GET /metrics HTTP/1.1\r\n"));
  }
  std::atomic<bool> stop{false};
  std::thread trickler([&] {
    while (!stop) {
      for (auto& c : trickling) c->send("X");
      std::this_thread::sleep_for(100ms);
    }
  });
  int scrapes = 0;
  const auto until = std::chrono::steady_clock::now() + 3s;
  while (std::chrono::steady_clock::now() < until) {
    // http_get throws when the answer takes longer than its timeout.
    const auto r = ee_test::http_get("127.0.0.1", server.port(), "/metrics", 1s);
    REQUIRE(r.status == 200);
    REQUIRE(prom::metric(prom::parse(r.body), "executor_tasks_submitted_total",
                         {{"executor", "served"}}) == 2);
    ++scrapes;
    std::this_thread::sleep_for(50ms);
  }
  stop = true;
  trickler.join();
  CHECK(scrapes >= 10);
  CHECK(server.stats().open_connections >= 200);
}

TEST_CASE("MetricsServer serves pages of the user's next to the metrics", "[metrics_server]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolOptions o;
  o.registry = registry;
  o.id = "paged";
  ee::ThreadPoolExecutor pool(1, o);
  pool.submit([] {}).get();
  std::atomic<int> calls{0};
  ee::MetricsServerOptions options;
  options.bind_address = "127.0.0.1:0";
  options.registry = registry;
  options.pages["/status.json"] = [&](const ee::PageRequest& r) {
    ++calls;
    return ee::PageResponse{
        200, "application/json",
        "{\"query\":\"" + std::string(r.query) + "\",\"pad\":\"" + std::string(400, 'x') + "\"}"};
  };
  options.pages["/teapot"] = [](const ee::PageRequest&) {
    return ee::PageResponse{418, "text/plain", "short and stout\n"};
  };
  options.pages["/broken"] = [](const ee::PageRequest&) -> ee::PageResponse {
    throw std::runtime_error("the handler failed");
  };
  ee::MetricsServer server(options);

  const auto status = ee_test::http_get("127.0.0.1", server.port(), "/status.json?res=1m&x=2");
  CHECK(status.status == 200);
  CHECK(status.header("content-type") == "application/json");
  CHECK_THAT(status.body, Catch::StartsWith("{\"query\":\"res=1m&x=2\""));
  CHECK(ee_test::http_get("127.0.0.1", server.port(), "/teapot").status == 418);
  // A throwing handler fails its request alone; the server keeps serving.
  CHECK(ee_test::http_get("127.0.0.1", server.port(), "/broken").status == 500);
  CHECK(ee_test::http_get("127.0.0.1", server.port(), "/metrics").status == 200);
  CHECK(ee_test::http_get("127.0.0.1", server.port(), "/status").status == 404);
  // Compressed when accepted and worth it, like the metrics page.
  const auto gz =
      ee_test::http_get("127.0.0.1", server.port(), "/status.json", 5s, {"Accept-Encoding: gzip"});
  CHECK(gz.header("content-encoding") == "gzip");
  const auto stats = server.stats();
  CHECK(stats.pages_other == 3);
  CHECK(stats.page_errors == 1);
  CHECK(calls == 2);

  SECTION("basic auth guards the pages too") {
    ee::MetricsServerOptions guarded = options;
    guarded.basic_auth_user = "prom";
    guarded.basic_auth_password = "s3cret";
    ee::MetricsServer locked(guarded);
    CHECK(ee_test::http_get("127.0.0.1", locked.port(), "/status.json").status == 401);
  }
  SECTION("a page cannot take the metrics path or lack a handler") {
    ee::MetricsServerOptions clash = options;
    clash.pages["/metrics"] = options.pages["/teapot"];
    CHECK_THROWS_AS(ee::MetricsServer(clash), std::invalid_argument);
    ee::MetricsServerOptions empty = options;
    empty.pages["/nothing"] = nullptr;
    CHECK_THROWS_AS(ee::MetricsServer(empty), std::invalid_argument);
    ee::MetricsServerOptions relative = options;
    relative.pages["status"] = options.pages["/teapot"];
    CHECK_THROWS_AS(ee::MetricsServer(relative), std::invalid_argument);
  }
}
