// The live status page, rendered by a real browser (headless Chromium) from the library's
// own HTTP server: every executor gets its panels, every panel draws its points, labels
// from users stay text, and the JSON next to it is what the page reads.
#include <executor_exporter/executor_exporter.hpp>
#include <executor_exporter/metrics/status_page.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <regex>
#include <string>
#include <vector>

#include "free_port.hpp"
#include "headless_browser.hpp"
#include "http_client.hpp"
#include "json.hpp"
#include "subprocess.hpp"
#include "temp_dir.hpp"
#include "wait_until.hpp"

namespace ee = executor_exporter;
using namespace std::chrono_literals;

namespace {

std::vector<std::array<double, 2>> ramp(double t0, int n, double step) {
  std::vector<std::array<double, 2>> points;
  for (int i = 0; i < n; ++i) points.push_back({t0 + 60.0 * i, step * i});
  return points;
}

// Two executors, one with an id that would be markup if the page ever used innerHTML.
std::vector<ee::StatusExecutor> sample(double t0) {
  std::vector<ee::StatusExecutor> out;
  for (const std::string id : {"images", "<img src=x onerror=alert(1)>\"q"}) {
    ee::StatusExecutor e{id, "thread_pool", {}};
    e.panels.push_back(
        {"throughput", {{"submitted", ramp(t0, 5, 10)}, {"completed", ramp(t0, 5, 9)}}});
    e.panels.push_back({"queue", {{"queued", ramp(t0, 5, 1)}}});
    e.panels.push_back({"wait", {{"p50", ramp(t0, 5, 0.001)}, {"p99", ramp(t0, 5, 0.01)}}});
    out.push_back(std::move(e));
  }
  return out;
}

int attribute(const std::string& dom, const std::string& pattern) {
  std::smatch m;
  if (!std::regex_search(dom, m, std::regex(pattern))) return -1;
  return std::stoi(m[1].str());
}

}  // namespace

TEST_CASE("the status page draws every executor's panels in a real browser", "[status]") {
  ee_test::HeadlessBrowser browser;
  std::atomic<int> refreshes{0};
  std::mutex asked_mutex;  // the source runs on the server's thread
  std::string asked;
  ee::MetricsServerOptions options;
  options.bind_address = "127.0.0.1:0";
  options.registry = std::make_shared<prometheus::Registry>();
  const double t0 = 1.8e9;
  ee::add_status_page(options, [&](std::string_view resolution) {
    ++refreshes;
    std::lock_guard lock(asked_mutex);
    asked = resolution;
    return sample(t0);
  });
  ee::MetricsServer server(options);
  const std::string base = "http://127.0.0.1:" + std::to_string(server.port());

  SECTION("the JSON the page reads") {
    const auto r = ee_test::http_get("127.0.0.1", server.port(), "/status.json?resolution=5min");
    REQUIRE(r.status == 200);
    CHECK(r.header("content-type") == "application/json");
    const auto doc = ee_test::json::parse(r.body);
    CHECK(doc.at("resolution").str() == "5min");
    REQUIRE(doc.at("executors").array.size() == 2);
    CHECK(doc.at("executors").at(1).at("id").str() == "<img src=x onerror=alert(1)>\"q");
    // An id that is not UTF-8 still gives valid JSON (U+FFFD in its place).
    const auto bad = ee::status_json("1min", 0, {ee::StatusExecutor{"bad\xff\xfe id", "x", {}}});
    CHECK(ee_test::json::parse(bad).at("executors").at(0).at("id").str() ==
          "bad\xef\xbf\xbd\xef\xbf\xbd id");
    CHECK(doc.at("executors").at(0).at("panels").at("throughput").at("completed").array.size() ==
          5);
    // An unknown resolution falls back to the finest instead of failing.
    CHECK(ee_test::json::parse(
              ee_test::http_get("127.0.0.1", server.port(), "/status.json?resolution=x").body)
              .at("resolution")
              .str() == "1min");
  }

  SECTION("rendered by Chromium") {
    const std::string dom = browser.dom(base + "/status?resolution=1hour");
    INFO(dom.substr(0, 3000));
    CHECK(dom.find("data-error") == std::string::npos);
    CHECK(attribute(dom, "<body[^>]*data-executors=\"(\\d+)\"") == 2);
    // Every line's every point was drawn: 2 executors x (10 + 5 + 10) points.
    CHECK(attribute(dom, "<body[^>]*data-points=\"(\\d+)\"") == 50);
    const std::regex panel("data-panel=\"[a-z]+\" data-points=\"(\\d+)\"");
    int panels = 0;
    for (auto it = std::sregex_iterator(dom.begin(), dom.end(), panel);
         it != std::sregex_iterator(); ++it) {
      ++panels;
      CHECK(std::stoi((*it)[1].str()) > 0);
    }
    CHECK(panels == 6);
    // The hostile id is text on the page, not an element.
    CHECK(dom.find("&lt;img src=x onerror=alert(1)&gt;\"q") != std::string::npos);
    CHECK(dom.find("<img") == std::string::npos);
    std::lock_guard lock(asked_mutex);
    CHECK(asked == "1hour");  // the page asked for the resolution in its URL
    CHECK(refreshes > 0);
  }

  SECTION("a screenshot shows it") {
    ee_test::TempDir dir("ee_status_png");
    const std::string png = (dir.path() / "status.png").string();
    browser.screenshot(base + "/status", png, 1200, 800);
    REQUIRE(std::filesystem::exists(png));
    CHECK(std::filesystem::file_size(png) > 20'000);  // charts, not a blank page
  }
}

TEST_CASE("the demo opens on a status page with live charts from its rollups", "[status][e2e]") {
  ee_test::HeadlessBrowser browser;
  const int port = ee_test::free_tcp_port();
  ee_test::Subprocess demo({EE_DEMO_BINARY, "--port", std::to_string(port), "--bind", "127.0.0.1"});
  REQUIRE(demo.read_stdout_line(20s).value_or("").starts_with("Serving metrics on"));
  const auto url_line = demo.read_stdout_line(5s).value_or("");
  REQUIRE(url_line == "Status page: http://127.0.0.1:" + std::to_string(port) + "/status");
  // The first collection (every 2 s) gives each chart its first point.
  std::string json;
  REQUIRE(ee_test::wait_until(
      [&] {
        json = ee_test::http_get("127.0.0.1", port, "/status.json").body;
        const auto doc = ee_test::json::parse(json);
        if (doc.at("executors").array.size() != 2) return false;
        for (const auto& e : doc.at("executors").array) {
          if (e.at("panels").at("throughput").at("submitted").array.empty()) return false;
        }
        return true;
      },
      20s, 250ms));
  const auto doc = ee_test::json::parse(json);
  for (const auto& e : doc.at("executors").array) {
    INFO(e.at("id").str());
    CHECK(e.at("panels").at("workers").at("max").array.back().at(1).number ==
          (e.at("id").str() == "demo" ? 4 : 2));
  }
  const std::string dom = browser.dom("http://127.0.0.1:" + std::to_string(port) + "/status");
  INFO(dom.substr(0, 3000));
  CHECK(dom.find("data-executor=\"demo\"") != std::string::npos);
  CHECK(dom.find("data-executor=\"batch\"") != std::string::npos);
  CHECK(attribute(dom, "<body[^>]*data-executors=\"(\\d+)\"") == 2);
  CHECK(attribute(dom, "<body[^>]*data-points=\"(\\d+)\"") > 10);
  CHECK(attribute(dom, "data-panel=\"throughput\" data-points=\"(\\d+)\"") > 0);
  demo.send_signal(SIGTERM);
  CHECK(demo.wait_for_exit(30s) == 0);
}
