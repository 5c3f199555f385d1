// Self-tests for the test-support helpers in tests/support/ (prom_text, http_client, subprocess,
// free_port, wait_until, json, temp_dir), so that the end-to-end tests can rely on them.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <csignal>

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "free_port.hpp"
#include "http_client.hpp"
#include "json.hpp"
#include "prom_text.hpp"
#include "subprocess.hpp"
#include "temp_dir.hpp"
#include "wait_until.hpp"

using namespace std::chrono_literals;
namespace prom = ee_test::prom;

// ---------------------------------------------------------------------------------------------
// prom_text
// ---------------------------------------------------------------------------------------------

TEST_CASE("prom_text parses counters, gauges, HELP and TYPE", "[support][prom_text]") {
  const auto page = prom::parse(
      "# HELP requests_total Requests served.\n"
      "# TYPE requests_total counter\n"
      "requests_total{method=\"get\",code=\"200\"} 1027 1395066363000\n"
      "requests_total{method=\"post\",code=\"200\"} 3\n"
      "\n"
      "# A plain comment\n"
      "# TYPE temperature gauge\n"
      "temperature -1.5e1\n"
      "untyped_metric 7\n");
  REQUIRE(page.families.size() == 3);

  const auto* requests = page.family("requests_total");
  REQUIRE(requests != nullptr);
  CHECK(requests->type == "counter");
  CHECK(requests->help == "Requests served.");
  REQUIRE(requests->samples.size() == 2);
  CHECK(requests->samples[0].timestamp_ms == 1395066363000);
  CHECK_FALSE(requests->samples[1].timestamp_ms.has_value());

  CHECK(prom::value(page, "requests_total", {{"method", "get"}}) == 1027);
  CHECK(prom::sum(page, "requests_total") == 1030);
  CHECK(prom::sum(page, "requests_total", {{"code", "200"}}) == 1030);
  CHECK(prom::sum(page, "requests_total", {{"code", "500"}}) == 0);
  CHECK(prom::count(page, "requests_total") == 2);
  CHECK(prom::value(page, "temperature") == -15.0);
  CHECK(page.family("temperature")->type == "gauge");
  CHECK(page.family("untyped_metric")->type == "untyped");
  CHECK_FALSE(page.family("untyped_metric")->has_type);

  // value() wants exactly one match.
  CHECK_THROWS_WITH(prom::value(page, "requests_total"), Catch::Contains("2 samples match"));
  CHECK_THROWS_WITH(prom::value(page, "nope"), Catch::Contains("no sample nope"));
  CHECK_THROWS(prom::value(page, "requests_total", {{"method", "put"}}));
}

TEST_CASE("prom_text unescapes label values and HELP text", "[support][prom_text]") {
  const auto page = prom::parse(
      "# HELP m A \\\\ backslash,\\na newline and a \"quote\".\n"
      "# TYPE m gauge\n"
      "m{path=\"C:\\\\dir\\\\file\",msg=\"say \\\"hi\\\"\\nbye\",empty=\"\",tricky=\"a,b}=c\"} 1\n"
      "m { spaced = \"x\" , trailing=\"comma\", } 2\n");
  const auto* m = page.family("m");
  REQUIRE(m != nullptr);
  CHECK(m->help == "A \\ backslash,\na newline and a \"quote\".");
  REQUIRE(m->samples.size() == 2);
  const auto& labels = m->samples[0].labels;
  CHECK(labels.at("path") == "C:\\dir\\file");
  CHECK(labels.at("msg") == "say \"hi\"\nbye");
  CHECK(labels.at("empty").empty());
  CHECK(labels.at("tricky") == "a,b}=c");
  CHECK(prom::value(page, "m", {{"msg", "say \"hi\"\nbye"}}) == 1);
  CHECK(prom::value(page, "m", {{"spaced", "x"}, {"trailing", "comma"}}) == 2);
  // Labels are ordered by name.
  CHECK(labels.begin()->first == "empty");
}

TEST_CASE("prom_text parses histograms, summaries and special values", "[support][prom_text]") {
  const auto page = prom::parse(
      "# HELP latency_seconds Latency.\n"
      "# TYPE latency_seconds histogram\n"
      "latency_seconds_bucket{op=\"a\",le=\"0.1\"} 1\n"
      "latency_seconds_bucket{op=\"a\",le=\"1\"} 3\n"
      "latency_seconds_bucket{op=\"a\",le=\"+Inf\"} 4\n"
      "latency_seconds_sum{op=\"a\"} 7.25\n"
      "latency_seconds_count{op=\"a\"} 4\n"
      "# TYPE rpc summary\n"
      "rpc{quantile=\"0.5\"} 4773\n"
      "rpc{quantile=\"0.99\"} NaN\n"
      "rpc_sum 1.7560473e+07\n"
      "rpc_count 2693\n"
      "# TYPE specials gauge\n"
      "specials{v=\"pinf\"} +Inf\n"
      "specials{v=\"ninf\"} -Inf\n"
      "specials{v=\"nan\"} NaN\n");
  REQUIRE(page.families.size() == 3);
  const auto* h = page.family("latency_seconds");
  REQUIRE(h != nullptr);
  CHECK(h->type == "histogram");
  CHECK(h->samples.size() == 5);
  CHECK(prom::value(page, "latency_seconds_bucket", {{"le", "+Inf"}}) == 4);
  CHECK(prom::value(page, "latency_seconds_bucket", {{"le", "0.1"}}) == 1);
  CHECK(prom::sum(page, "latency_seconds_bucket") == 8);
  CHECK(prom::value(page, "latency_seconds_count", {{"op", "a"}}) == 4);
  CHECK(prom::value(page, "latency_seconds_sum") == 7.25);
  CHECK(page.family("latency_seconds_bucket") == nullptr);

  CHECK(page.family("rpc")->samples.size() == 4);
  CHECK(std::isnan(prom::value(page, "rpc", {{"quantile", "0.99"}})));
  CHECK(prom::value(page, "rpc_sum") == 1.7560473e+07);

  CHECK(prom::value(page, "specials", {{"v", "pinf"}}) == std::numeric_limits<double>::infinity());
  CHECK(prom::value(page, "specials", {{"v", "ninf"}}) == -std::numeric_limits<double>::infinity());
  CHECK(std::isnan(prom::value(page, "specials", {{"v", "nan"}})));
}

TEST_CASE("prom_text rejects malformed input", "[support][prom_text]") {
  const char* bad[] = {
      "m\n",                                         // no value
      "m abc\n",                                     // bad value
      "m 1 2 3\n",                                   // trailing garbage
      "m 1 12.5\n",                                  // bad timestamp
      "1m 1\n",                                      // bad metric name
      "m{1l=\"x\"} 1\n",                             // bad label name
      "m{l=\"x\\t\"} 1\n",                           // invalid escape
      "m{l=\"x} 1\n",                                // unterminated value
      "m{l=x} 1\n",                                  // unquoted value
      "m{l=\"x\" k=\"y\"} 1\n",                      // missing comma
      "m{l=\"x\",l=\"y\"} 1\n",                      // duplicate label
      "m{l=\"x\"} 1\nm{l=\"x\"} 2\n",                // duplicate series
      "# TYPE m counter\n# TYPE m counter\nm 1\n",   // second TYPE
      "# HELP m a\n# HELP m b\nm 1\n",               // second HELP
      "m 1\n# TYPE m counter\n",                     // TYPE after samples
      "# TYPE m foo\nm 1\n",                         // unknown type
      "a 1\nb 1\na{x=\"1\"} 1\n",                    // family split in two groups
      "# TYPE h histogram\nh_bucket 1\n",            // bucket without le
      "# TYPE h histogram\nh_bucket{le=\"x\"} 1\n",  // bad le
      "# TYPE s summary\ns 1\n",                     // quantile missing
  };
  for (const char* text : bad) {
    INFO("input: " << text);
    CHECK_THROWS_AS(prom::parse(text), prom::ParseError);
  }
  CHECK_THROWS_WITH(prom::parse("ok 1\nm{l=\"x\\q\"} 1\n"), Catch::Contains("line 2"));
}

// ---------------------------------------------------------------------------------------------
// json
// ---------------------------------------------------------------------------------------------

TEST_CASE("json parses a Prometheus API response", "[support][json]") {
  const auto doc = ee_test::json::parse(
      R"({"status":"success","data":{"resultType":"vector","result":[)"
      R"({"metric":{"__name__":"up","job":"a\"b\\c\u00e9"},"value":[1700000000.5,"1"]}]},)"
      R"("list":[true,false,null,-1.5e3]})");
  CHECK(doc.at("status").str() == "success");
  const auto& result = doc.at("data").at("result");
  REQUIRE(result.array.size() == 1);
  CHECK(result.at(0).at("metric").at("job").str() == "a\"b\\c\xc3\xa9");
  CHECK(result.at(0).at("value").at(0).number == 1700000000.5);
  CHECK(result.at(0).at("value").at(1).str() == "1");
  CHECK(doc.at("list").at(3).number == -1500);
  CHECK(doc.at("list").at(2).is_null());
  CHECK(doc.find("missing") == nullptr);
  CHECK_THROWS(ee_test::json::parse("{\"a\":}"));
  CHECK_THROWS(ee_test::json::parse("[1,2"));
  CHECK_THROWS(ee_test::json::parse("{} x"));
}

// ---------------------------------------------------------------------------------------------
// free_port, wait_until, temp_dir
// ---------------------------------------------------------------------------------------------

TEST_CASE("free_tcp_port returns a bindable loopback port", "[support]") {
  const int port = ee_test::free_tcp_port();
  REQUIRE(port > 0);
  REQUIRE(port < 65536);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  CHECK(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  ::close(fd);
}

TEST_CASE("wait_until polls until the predicate holds or the timeout passes", "[support]") {
  std::atomic<int> calls{0};
  CHECK(ee_test::wait_until([&] { return ++calls >= 3; }, 2s, 1ms));
  CHECK(calls == 3);
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(ee_test::wait_until([] { return false; }, 50ms));
  CHECK(std::chrono::steady_clock::now() - start >= 50ms);
  CHECK(ee_test::wait_until([] { return true; }, 0ms));
}

TEST_CASE("TempDir is removed with its contents", "[support]") {
  std::filesystem::path path;
  {
    ee_test::TempDir dir("ee_selftest");
    path = dir.path();
    REQUIRE(std::filesystem::is_directory(path));
    std::ofstream(dir / "file.txt") << "x";
    std::filesystem::create_directories(dir / "a" / "b");
  }
  CHECK_FALSE(std::filesystem::exists(path));
}

// ---------------------------------------------------------------------------------------------
// http_client
// ---------------------------------------------------------------------------------------------

namespace {

// Accepts one connection on 127.0.0.1:<ephemeral>, reads the request head, writes `response`
// (unless empty) and closes the connection (unless `hang`, then it waits to be destroyed).
class OneShotServer {
 public:
  explicit OneShotServer(std::string response, bool hang = false)
      : response_(std::move(response)), hang_(hang) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 1) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  OneShotServer(const OneShotServer&) = delete;
  OneShotServer& operator=(const OneShotServer&) = delete;
  ~OneShotServer() {
    done_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }
  std::string request() {
    thread_.join();
    thread_ = std::thread([] {});
    return request_;
  }

 private:
  void serve() {
    const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
    char buf[4096];
    while (request_.find("\r\n\r\n") == std::string::npos) {
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      request_.append(buf, static_cast<std::size_t>(n));
    }
    std::size_t sent = 0;
    while (sent < response_.size()) {
      // Send in small pieces to exercise incremental parsing.
      const std::size_t piece = std::min<std::size_t>(7, response_.size() - sent);
      const ssize_t n = ::send(c, response_.data() + sent, piece, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<std::size_t>(n);
    }
    while (hang_ && !done_) std::this_thread::sleep_for(5ms);
    ::close(c);
  }

  std::string response_;
  bool hang_;
  int fd_ = -1;
  int port_ = 0;
  std::string request_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace

TEST_CASE("http_get handles Content-Length, chunked and read-until-close bodies",
          "[support][http]") {
  SECTION("content-length") {
    OneShotServer server(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-A: 1\r\n"
        "x-a: 2\r\n\r\nhello");
    const auto r = ee_test::http_get("127.0.0.1", server.port(), "/metrics?x=1");
    CHECK(r.status == 200);
    CHECK(r.reason == "OK");
    CHECK(r.body == "hello");
    CHECK(r.header("Content-Type") == "text/plain");
    CHECK(r.header("X-A") == "1, 2");
    const auto request = server.request();
    CHECK(request.rfind("GET /metrics?x=1 HTTP/1.1\r\n", 0) == 0);
    CHECK(request.find("Connection: close\r\n") != std::string::npos);
    CHECK(request.find("Host: 127.0.0.1:" + std::to_string(server.port()) + "\r\n") !=
          std::string::npos);
  }
  SECTION("chunked") {
    OneShotServer server(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n7;ext=1\r\n, world\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n");
    const auto r = ee_test::http_get("127.0.0.1", server.port(), "/");
    CHECK(r.status == 200);
    CHECK(r.body == "hello, world0123456789");
  }
  SECTION("read until close") {
    OneShotServer server("HTTP/1.0 404 Not Found\r\nServer: t\r\n\r\nno such page\n");
    const auto r = ee_test::http_get("localhost", server.port(), "/x");
    CHECK(r.status == 404);
    CHECK(r.reason == "Not Found");
    CHECK(r.body == "no such page\n");
  }
  SECTION("truncated body") {
    OneShotServer server("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort");
    CHECK_THROWS_WITH(ee_test::http_get("127.0.0.1", server.port(), "/"),
                      Catch::Contains("connection closed before the response was complete"));
  }
  SECTION("garbage") {
    OneShotServer server("SSH-2.0-OpenSSH\r\n\r\n");
    CHECK_THROWS_WITH(ee_test::http_get("127.0.0.1", server.port(), "/"),
                      Catch::Contains("malformed status line"));
  }
  SECTION("timeout") {
    OneShotServer server("", /*hang=*/true);
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_WITH(ee_test::http_get("127.0.0.1", server.port(), "/", 200ms),
                      Catch::Contains("timed out"));
    CHECK(std::chrono::steady_clock::now() - start < 5s);
  }
}

TEST_CASE("http_get reports connection errors", "[support][http]") {
  const int port = ee_test::free_tcp_port();  // nobody listens there
  CHECK_THROWS_WITH(ee_test::http_get("127.0.0.1", port, "/"), Catch::Contains("connect failed"));
  CHECK_THROWS_WITH(ee_test::http_get("no-such-host.invalid", port, "/", 2s),
                    Catch::Contains("cannot resolve host"));
}

TEST_CASE("http_get scrapes a prometheus-cpp Exposer", "[support][http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto& family = prometheus::BuildCounter()
                     .Name("selftest_events_total")
                     .Help("Events seen by the self-test.")
                     .Register(*registry);
  // prometheus-cpp escapes label values (but, in 1.0.1, not HELP text).
  family.Add({{"kind", "a\"b\\c\nd"}}).Increment(3);
  prometheus::Exposer exposer{"127.0.0.1:0"};
  exposer.RegisterCollectable(registry);
  const auto ports = exposer.GetListeningPorts();
  REQUIRE(ports.size() == 1);

  const auto r = ee_test::http_get("127.0.0.1", ports.front(), "/metrics");
  REQUIRE(r.status == 200);
  CHECK(r.header("content-type").find("text/plain") != std::string::npos);
  const auto page = prom::parse(r.body);
  const auto* f = page.family("selftest_events_total");
  REQUIRE(f != nullptr);
  CHECK(f->type == "counter");
  CHECK(f->help == "Events seen by the self-test.");
  CHECK(prom::value(page, "selftest_events_total", {{"kind", "a\"b\\c\nd"}}) == 3);

  CHECK(ee_test::http_get("127.0.0.1", ports.front(), "/nope").status == 404);
}

// ---------------------------------------------------------------------------------------------
// subprocess
// ---------------------------------------------------------------------------------------------

TEST_CASE("run_and_capture returns exit code, stdout and stderr", "[support][subprocess]") {
  const auto r = ee_test::run_and_capture(
      {"/bin/sh", "-c", "echo out; echo err >&2; read line; echo \"got $line\"; exit 3"},
      "input line\n", 20s);
  CHECK(r.exit_code == 3);
  CHECK_FALSE(r.timed_out);
  CHECK(r.out == "out\ngot input line\n");
  CHECK(r.err == "err\n");

  // Large stdin and stdout do not deadlock.
  std::string big(1 << 20, 'x');
  const auto cat = ee_test::run_and_capture({"cat"}, big, 30s);
  CHECK(cat.exit_code == 0);
  CHECK(cat.out.size() == big.size());

  const auto slow = ee_test::run_and_capture({"sleep", "30"}, "", 200ms);
  CHECK(slow.timed_out);
  CHECK(slow.exit_code == -SIGTERM);

  CHECK_THROWS_WITH(ee_test::run_and_capture({"/nonexistent/program"}),
                    Catch::Contains("cannot execute"));
  CHECK_THROWS_WITH(ee_test::run_and_capture({"no-such-program-ee-test"}),
                    Catch::Contains("not found in PATH"));
}

TEST_CASE("Subprocess reads lines, delivers signals and never leaks children",
          "[support][subprocess]") {
  pid_t pid = -1;
  {
    ee_test::Subprocess p({"/bin/sh", "-c",
                           "trap 'echo got-int; exit 0' INT; echo ready; echo second; "
                           "while true; do sleep 0.05; done"});
    CHECK(p.read_stdout_line(20s) == std::optional<std::string>("ready"));
    CHECK(p.read_stdout_line(20s) == std::optional<std::string>("second"));
    CHECK(p.running());
    CHECK_FALSE(p.wait_for_exit(50ms).has_value());
    p.send_signal(SIGINT);
    const auto st = p.wait_for_exit(20s);
    REQUIRE(st.has_value());
    CHECK(*st == 0);
    CHECK(p.read_stdout_line(5s) == std::optional<std::string>("got-int"));
    CHECK_FALSE(p.read_stdout_line(1s).has_value());  // EOF
  }
  {
    ee_test::Subprocess p({"sleep", "60"});
    pid = p.pid();
    REQUIRE(p.running());
  }  // destructor terminates and reaps
  CHECK(::kill(pid, 0) == -1);
  {
    // A child that ignores SIGTERM is SIGKILLed after the grace period.
    ee_test::Subprocess p({"/bin/sh", "-c", "trap '' TERM; echo ready; while true; do :; done"});
    REQUIRE(p.read_stdout_line(20s).has_value());
    CHECK(p.terminate(300ms) == -SIGKILL);
  }
}

TEST_CASE("Subprocess redirects to files and sets the environment", "[support][subprocess]") {
  ee_test::TempDir dir;
  ee_test::Subprocess::Options opts;
  opts.stdout_redirect = ee_test::Subprocess::Redirect::file((dir / "out.txt").string());
  opts.stderr_redirect = ee_test::Subprocess::Redirect::null();
  opts.env = {{"EE_SELFTEST_VAR", "value 1"}};
  opts.working_dir = dir.str();
  ee_test::Subprocess p({"/bin/sh", "-c", "echo \"$EE_SELFTEST_VAR\"; pwd; echo oops >&2"}, opts);
  REQUIRE(p.wait_for_exit(20s) == std::optional<int>(0));
  std::ifstream in(dir / "out.txt");
  std::stringstream content;
  content << in.rdbuf();
  CHECK(content.str() == "value 1\n" + std::filesystem::canonical(dir.path()).string() + "\n");
  CHECK(p.stderr_text().empty());
}

TEST_CASE("reading a metric that is not on the page fails, and absence is asked for explicitly",
          "[support][prom_text]") {
  const auto page = prom::parse(
      "# TYPE executor_tasks_failed_total counter\n"
      "executor_tasks_failed_total{executor=\"a\"} 0\n"
      "executor_tasks_failed_total{executor=\"a\",task=\"resize\"} 2\n"
      "# TYPE executor_task_run_seconds histogram\n"
      "executor_task_run_seconds_bucket{executor=\"a\",le=\"+Inf\"} 3\n"
      "executor_task_run_seconds_sum{executor=\"a\"} 0.5\n"
      "executor_task_run_seconds_count{executor=\"a\"} 3\n");
  // The unnamed series by default; a named one when the task is named.
  CHECK(prom::metric(page, "executor_tasks_failed_total", {{"executor", "a"}}) == 0);
  CHECK(prom::metric(page, "executor_tasks_failed_total", {{"task", "resize"}}) == 2);
  // A histogram reads as its count, or its sum when asked.
  CHECK(prom::metric(page, "executor_task_run_seconds") == 3);
  CHECK(prom::metric(page, "executor_task_run_seconds", {}, "_sum") == 0.5);
  // A misspelled family, label or value cannot pass an == 0 check: it throws.
  CHECK_THROWS_WITH(prom::metric(page, "executor_task_failed_total"),
                    Catch::Contains("no family executor_task_failed_total"));
  CHECK_THROWS_WITH(prom::metric(page, "executor_tasks_failed_total", {{"executor", "b"}}),
                    Catch::Contains("0 series match"));
  CHECK_THROWS_WITH(prom::metric(page, "executor_tasks_failed_total", {{"task", "resise"}}),
                    Catch::Contains("0 series match"));
  // Absence is a separate question, and its family must exist.
  CHECK_FALSE(prom::has(page, "executor_tasks_failed_total", {{"task", "crop"}}));
  CHECK(prom::has(page, "executor_tasks_failed_total", {{"task", "resize"}}));
  CHECK_THROWS(prom::has(page, "executor_tasks_faild_total", {{"task", "crop"}}));
}
