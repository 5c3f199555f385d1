// The reference StatsD server (statsd from the npm registry, run by node), started on
// 127.0.0.1 with a free UDP port for a test, and stopped with it. A small backend
// (statsd_json_backend.js) prints each flush as a JSON line; StatsdServer adds them up,
// so a test sees what the real server made of the datagrams it was sent.
#pragma once

#include <chrono>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>

#include "free_port.hpp"
#include "json.hpp"
#include "subprocess.hpp"
#include "temp_dir.hpp"

namespace ee_test {

class StatsdServer {
 public:
  // What the server aggregated over all flushes so far, by its key (the metric name and,
  // with tags, `;tag=value` pairs as statsd 0.9 writes them).
  struct Totals {
    std::map<std::string, double> counters;
    std::map<std::string, double> gauges;        // the last value
    std::map<std::string, double> timer_counts;  // values received
    std::map<std::string, double> timer_sums;    // in milliseconds
  };

  StatsdServer() : port_(free_udp_port()) {
    if (std::string(EE_NODE).empty() || std::string(EE_STATSD_JS).empty()) {
      throw std::runtime_error(
          "StatsdServer: node or statsd not found at configure time; run "
          "scripts/install-deps.sh (it installs statsd from npm) and reconfigure");
    }
    const std::string config = (dir_.path() / "config.js").string();
    std::ofstream(config) << "{ port: " << port_ << ", address: '127.0.0.1'"
                          << ", mgmt_address: '127.0.0.1', mgmt_port: " << free_tcp_port()
                          << ", flushInterval: 100, backends: ['" << EE_SOURCE_DIR
                          << "/tests/support/statsd_json_backend.js'] }\n";
    process_ =
        std::make_unique<Subprocess>(std::vector<std::string>{EE_NODE, EE_STATSD_JS, config});
    // The first flush line says the server and the backend are up.
    if (!read_flush(std::chrono::seconds(15))) {
      throw std::runtime_error("StatsdServer: no flush from statsd within 15 s; stderr: " +
                               process_->stderr_text() + " stdout: " + process_->stdout_text());
    }
  }

  int port() const { return port_; }

  // Reads flushes until `done(totals)` holds or `timeout` passes; returns the totals.
  template <class Done>
  const Totals& totals_when(Done done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done(totals_) && std::chrono::steady_clock::now() < deadline) {
      read_flush(std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now()));
    }
    return totals_;
  }

 private:
  bool read_flush(std::chrono::milliseconds timeout) {
    std::optional<std::string> line;
    // statsd logs other lines too (start-up); only the backend's start with '{'.
    do {
      line = process_->read_stdout_line(timeout);
    } while (line && (line->empty() || line->front() != '{'));
    if (!line) return false;
    const json::Value flush = json::parse(*line);
    for (const auto& m : flush.at("counters").object) totals_.counters[m.key] += m.value.number;
    for (const auto& m : flush.at("gauges").object) totals_.gauges[m.key] = m.value.number;
    for (const auto& m : flush.at("timers").object) {
      totals_.timer_counts[m.key] += m.value.at("count").number;
      // A flush in which a timer got no value has a count of 0 and no sum.
      if (const auto* sum = m.value.find("sum")) totals_.timer_sums[m.key] += sum->number;
    }
    return true;
  }

  TempDir dir_{"ee_statsd"};
  int port_;
  std::unique_ptr<Subprocess> process_;
  Totals totals_;
};

}  // namespace ee_test
