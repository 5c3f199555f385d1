// /metrics over real HTTP from a real prometheus::Exposer on a loopback ephemeral port.

#include <executor_exporter/executor_exporter.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "free_port.hpp"
#include "http_client.hpp"
#include "prom_text.hpp"
#include "promtool.hpp"
#include "scrape.hpp"
#include "subprocess.hpp"

namespace ee = executor_exporter;
using ee_test::require_promtool_clean;
using ee_test::prom::value;

namespace {

ee_test::prom::Page http_scrape(int port) {
  auto response = ee_test::http_get("127.0.0.1", port, "/metrics");
  REQUIRE(response.status == 200);
  REQUIRE_THAT(response.header("content-type"), Catch::StartsWith("text/plain"));
  return ee_test::prom::parse(response.body);
}

}  // namespace

TEST_CASE("MetricsServer serves exact metrics over HTTP on an ephemeral loopback port", "[http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::MetricsServer server("127.0.0.1:0", registry);
  REQUIRE(server.port() > 0);
  REQUIRE(server.url() == "http://127.0.0.1:" + std::to_string(server.port()) + "/metrics");

  ee::ThreadPoolExecutor pool(2, "t", {}, "http", registry);
  for (int i = 0; i < 7; ++i) pool.submit([] {}).get();
  auto page = http_scrape(server.port());
  CHECK(value(page, "executor_tasks_submitted_total", {{"executor", "http"}}) == 7);
  CHECK(value(page, "executor_task_run_seconds_count",
              {{"executor", "http"}, {"result", "completed"}}) == 7);
  CHECK(page.family("executor_task_wait_seconds")->type == "histogram");

  // Nothing is lost or counted twice between scrapes.
  for (int i = 0; i < 3; ++i) pool.submit([] {}).get();
  CHECK(value(http_scrape(server.port()), "executor_tasks_submitted_total") == 10);
}

TEST_CASE("promtool check metrics finds nothing wrong in a scraped page", "[http][promtool]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::MetricsServer server("127.0.0.1:0", registry);
  ee::ThreadPoolExecutor pool(2, "t", {}, "lint", registry);
  pool.submit([] {}).get();
  try {
    pool.submit([] { throw 1; }).get();
  } catch (int) {
  }
  auto response = ee_test::http_get("127.0.0.1", server.port(), "/metrics");
  REQUIRE(response.status == 200);
  require_promtool_clean(response.body);
}

TEST_CASE("hostile executor ids come out escaped and parse back unchanged", "[http][promtool]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::MetricsServer server("127.0.0.1:0", registry);
  const std::vector<std::string> ids{
      "quote\"inside", "back\\slash", "new\nline", "naïve ✓ 日本", "} , le=\"1\"", "", "\\n"};
  std::vector<std::unique_ptr<ee::ThreadPoolExecutor>> pools;
  for (const auto& id : ids) {
    pools.push_back(std::make_unique<ee::ThreadPoolExecutor>(1, "t", nullptr, id, registry));
    pools.back()->submit([] {}).get();
  }
  auto response = ee_test::http_get("127.0.0.1", server.port(), "/metrics");
  auto page = ee_test::prom::parse(response.body);
  for (const auto& id : ids) {
    INFO("id: " << id);
    CHECK(value(page, "executor_tasks_submitted_total", {{"executor", id}}) == 1);
  }
  require_promtool_clean(response.body);
}

TEST_CASE("a port already in use gives a clear BindError naming the address", "[http]") {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd, 1) == 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string address = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));

  REQUIRE_THROWS_AS(ee::MetricsServer(address), ee::BindError);
  REQUIRE_THROWS_WITH(ee::MetricsServer(address),
                      Catch::Contains(address) && Catch::Contains("in use"));
  ::close(fd);
}

TEST_CASE("expose() serves executor metrics through the user's own Exposer", "[http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::Exposer exposer("127.0.0.1:0");
  ee::expose(exposer, registry);
  ee::ThreadPoolExecutor pool(1, "t", {}, "mine", registry);
  pool.submit([] {}).get();
  const int port = exposer.GetListeningPorts().front();
  CHECK(value(http_scrape(port), "executor_tasks_submitted_total", {{"executor", "mine"}}) == 1);
}

TEST_CASE("scrapes over HTTP while a pool shuts down and is destroyed always reconcile", "[http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::MetricsServer server("127.0.0.1:0", registry);
  const ee_test::prom::Labels id{{"executor", "closing"}};

  for (int round = 0; round < 3; ++round) {
    auto pool = std::make_unique<ee::ThreadPoolExecutor>(2, "t", nullptr, "closing", registry);
    // Tasks of ~20 us: the queue takes tens of milliseconds to drain, so scrapes overlap it.
    for (int i = 0; i < 2000; ++i) {
      pool->post([] { std::this_thread::sleep_for(std::chrono::microseconds(20)); });
    }
    std::atomic<bool> stop{false};
    std::atomic<int> scrapes{0};
    std::string problem;  // Catch2 assertions are not thread-safe: the scraper reports here
    std::thread scraper([&] {
      while (!stop.load() && problem.empty()) {
        try {
          auto response = ee_test::http_get("127.0.0.1", server.port(), "/metrics");
          if (response.status != 200)
            problem = "status " + std::to_string(response.status);
          else if (ee_test::unaccounted(ee_test::prom::parse(response.body), id) != 0)
            problem = "not reconciled";
        } catch (const std::exception& e) {
          problem = e.what();
        }
        ++scrapes;
      }
    });
    // Shut down only once a scrape went through (the scraper reports a failure as well).
    for (int i = 0; i < 10000 && scrapes.load() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    // Half the rounds cancel what is still queued; the series outlive the pool.
    pool->shutdown(true, round % 2 == 1);
    pool.reset();
    stop = true;
    scraper.join();
    CHECK(scrapes > 0);
    INFO(problem);
    CHECK(problem.empty());
    const auto page = http_scrape(server.port());
    CHECK(ee_test::unaccounted(page, id) == 0);
    CHECK(value(page, "executor_tasks_queued", id) == 0);
    CHECK(value(page, "executor_tasks_running", id) == 0);
    CHECK(value(page, "executor_tasks_submitted_total", id) == 2000.0 * (round + 1));
  }
}

TEST_CASE("a bind address is one host:port, strictly parsed, and BindError says what is wrong",
          "[http]") {
  // Servers such as civetweb read each of these as "every interface" or as a second listener.
  for (const std::string bad :
       {"49153", "0", "+49156", ":0", "127.0.0.1:0,0.0.0.0:0", "127.0.0.1:+1", "127.0.0.1:65536",
        "127.0.0.1:", "example.com:0", "[::1:0", "[::1]", "[127.0.0.1]:0", "127.0.0.1:0x10"}) {
    INFO(bad);
    CHECK_THROWS_WITH(ee::MetricsServer(bad),
                      Catch::Contains("malformed bind address '" + bad + "'"));
  }
  // Not an address of this machine: not malformed, and not "in use" either.
  CHECK_THROWS_WITH(
      ee::MetricsServer("192.0.2.1:0"),
      Catch::Contains("could not listen on 192.0.2.1:0") && !Catch::Contains("in use"));
}

TEST_CASE("MetricsServer takes IPv6 loopback and localhost, and url() names them", "[http]") {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, "t", {}, "six", registry);
  pool.submit([] {}).get();
  // The server binds its own sockets, so IPv6 works wherever the machine has ::1.
  std::ifstream if_inet6("/proc/net/if_inet6");
  const bool has_v6_loopback =
      if_inet6 && std::string(std::istreambuf_iterator<char>(if_inet6), {})
                          .find("00000000000000000000000000000001") != std::string::npos;
  if (has_v6_loopback) {
    ee::MetricsServer v6("[::1]:0", registry);
    CHECK(v6.url() == "http://[::1]:" + std::to_string(v6.port()) + "/metrics");
    const auto r = ee_test::http_get("::1", v6.port(), "/metrics");
    REQUIRE(r.status == 200);
    CHECK(value(ee_test::prom::parse(r.body), "executor_tasks_submitted_total",
                {{"executor", "six"}}) == 1);
  } else {
    CHECK_THROWS_WITH(ee::MetricsServer("[::1]:0", registry),
                      Catch::Contains("could not listen on [::1]:0"));
  }
  ee::MetricsServer local("localhost:0", registry);
  CHECK(local.url() == "http://127.0.0.1:" + std::to_string(local.port()) + "/metrics");
  CHECK(value(http_scrape(local.port()), "executor_tasks_submitted_total", {{"executor", "six"}}) ==
        1);
}
