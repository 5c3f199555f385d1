// The metric catalog is the single source of truth, and the committed docs match their sources.

#include <executor_exporter/metrics/metric_catalog.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace ee = executor_exporter;

namespace {

const std::string begin_marker = "<!-- begin metrics_table -->\n";
const std::string end_marker = "<!-- end metrics_table -->";

std::string read(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Checks (or, with EE_UPDATE_DOCS=1, rewrites) the table between the markers.
void check_table(const std::string& relative) {
  const std::string path = std::string(EE_SOURCE_DIR) + "/" + relative;
  std::string text = read(path);
  const auto begin = text.find(begin_marker);
  const auto end = text.find(end_marker);
  INFO(relative << " must contain the metrics_table markers");
  REQUIRE(begin != std::string::npos);
  REQUIRE(end != std::string::npos);
  const auto start = begin + begin_marker.size();
  const std::string committed = text.substr(start, end - start);
  const std::string generated = ee::metrics_table_markdown();
  if (committed != generated && std::getenv("EE_UPDATE_DOCS") != nullptr) {
    text.replace(start, end - start, generated);
    std::ofstream(path) << text;
    return;
  }
  INFO("the metrics table in " << relative
                               << " is out of date: run scripts/update-docs.sh and commit");
  REQUIRE(committed == generated);
}

}  // namespace

TEST_CASE("the committed metrics tables are generated from the catalog", "[docs]") {
  check_table("README.md");
  check_table("docs/metrics.md");
}

TEST_CASE("catalog entries follow Prometheus naming and have one-line help", "[docs]") {
  std::set<std::string_view> names;
  for (const auto& m : ee::metric_catalog) {
    INFO(m.name);
    CHECK(names.insert(m.name).second);
    CHECK(m.name.starts_with("executor_"));
    CHECK(m.help.find('\n') == std::string_view::npos);
    CHECK_FALSE(m.help.empty());
    const bool total = m.name.ends_with("_total");
    CHECK(total == (m.kind == ee::MetricKind::counter));
    if (m.kind == ee::MetricKind::histogram) CHECK((m.name.ends_with("_seconds") || m.name.ends_with("_bytes")));
  }
}

TEST_CASE("the committed benchmark page carries the current bench/analysis.md", "[docs]") {
  // report.py copies bench/analysis.md into docs/benchmarks.md; an analysis edited after
  // the last report leaves the page describing another run.
  std::string analysis = read(std::string(EE_SOURCE_DIR) + "/bench/analysis.md");
  while (!analysis.empty() && (analysis.back() == '\n' || analysis.back() == ' ')) {
    analysis.pop_back();
  }
  const std::string page = read(std::string(EE_SOURCE_DIR) + "/docs/benchmarks.md");
  INFO(
      "docs/benchmarks.md is older than bench/analysis.md: run scripts/bench.sh "
      "--report-only (add --scaling-json FILE to keep a scaling run) and commit");
  REQUIRE(page.find(analysis) != std::string::npos);
}
