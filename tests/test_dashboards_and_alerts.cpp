// The Grafana dashboard and the Prometheus rules in docs/ are code users load into their own
// stack: they must parse, their alerts must fire on trouble and stay quiet otherwise, and they may
// name only metrics the library exports (a renamed metric would leave a panel empty without a
// word). promtool does the parsing and the rule evaluation; the metric names are checked against
// the C++ catalog itself, so a change to the catalog is enough to break this test.

#include <executor_exporter/metrics/metric_catalog.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "json.hpp"
#include "subprocess.hpp"
#include "temp_dir.hpp"

namespace ee = executor_exporter;
namespace json = ee_test::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

const fs::path source_dir = EE_SOURCE_DIR;
const fs::path rules_file = source_dir / "docs/prometheus/executor-exporter.rules.yml";
const fs::path rule_tests_dir = source_dir / "docs/prometheus/tests";
const fs::path dashboard_file = source_dir / "docs/grafana/executor-exporter.json";

std::string promtool() {
  const std::string path = EE_PROMTOOL;
  if (path.empty()) {
    FAIL(
        "promtool not found at configure time: install Debian's prometheus package "
        "(scripts/install-deps.sh) and reconfigure");
  }
  return path;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  INFO("reading " << path);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::size_t indent_of(std::string_view line) {
  const auto first = line.find_first_not_of(' ');
  return first == std::string_view::npos ? line.size() : first;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// A YAML line "key: value" (list dash allowed) gives value when its key is `key`.
bool yaml_value(std::string_view line, std::string_view key, std::string_view& value) {
  std::string_view t = trim(line);
  if (t.starts_with("- ")) t = trim(t.substr(2));
  if (!t.starts_with(key) || t.substr(key.size(), 1) != ":") return false;
  value = trim(t.substr(key.size() + 1));
  return true;
}

// The `expr:` values of a rules file as the rules file writes them: inline on the line, or a
// literal block (`|`) on the lines indented below it. Anything else is refused rather than
// misread, so a new way of writing an expression cannot escape the metric-name check.
std::vector<std::string> rule_expressions(const std::string& yaml) {
  const auto lines = lines_of(yaml);
  std::vector<std::string> exprs;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string_view value;
    if (!yaml_value(lines[i], "expr", value)) continue;
    INFO("rules line " << i + 1 << ": " << lines[i]);
    REQUIRE_FALSE(value.empty());
    REQUIRE(value.front() != '"');
    REQUIRE(value.front() != '\'');
    REQUIRE(value.front() != '>');
    if (value != "|") {
      exprs.emplace_back(value);
      continue;
    }
    const std::size_t key_indent = indent_of(lines[i]);
    std::string block;
    while (i + 1 < lines.size() &&
           (trim(lines[i + 1]).empty() || indent_of(lines[i + 1]) > key_indent)) {
      block += lines[++i] + "\n";
    }
    REQUIRE_FALSE(trim(block).empty());
    exprs.push_back(block);
  }
  return exprs;
}

std::vector<std::string> yaml_values(const std::string& yaml, std::string_view key) {
  std::vector<std::string> out;
  for (const auto& line : lines_of(yaml)) {
    std::string_view value;
    if (yaml_value(line, key, value)) out.emplace_back(value);
  }
  return out;
}

std::vector<fs::path> rule_test_files() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(rule_tests_dir)) {
    if (entry.path().extension() == ".yml") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Names of the metrics an expression selects: identifiers that are no function, keyword,
// aggregation, label (inside {}, by/without/on/ignoring/group_x lists) or duration.
std::set<std::string> metric_names_in(std::string_view e) {
  static const std::set<std::string, std::less<>> keywords = {
      "and",          "or",       "unless",   "bool",       "offset",     "sum",   "min",
      "max",          "avg",      "count",    "stddev",     "stdvar",     "topk",  "bottomk",
      "count_values", "quantile", "group",    "inf",        "nan",        "atan2", "by",
      "without",      "on",       "ignoring", "group_left", "group_right"};
  static const std::set<std::string, std::less<>> label_lists = {
      "by", "without", "on", "ignoring", "group_left", "group_right"};
  auto is_ident = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':';
  };
  std::set<std::string> names;
  std::size_t i = 0;
  auto skip_string = [&] {
    const char quote = e[i++];
    while (i < e.size() && e[i] != quote) i += (e[i] == '\\' && quote != '`') ? 2 : 1;
    ++i;
  };
  auto skip_until = [&](char close) {
    while (i < e.size() && e[i] != close) {
      if (e[i] == '"' || e[i] == '\'' || e[i] == '`') {
        skip_string();
      } else {
        ++i;
      }
    }
    ++i;
  };
  while (i < e.size()) {
    const char c = e[i];
    if (c == '"' || c == '\'' || c == '`') {
      skip_string();
    } else if (c == '{') {
      skip_until('}');
    } else if (c == '[') {
      skip_until(']');
    } else if (c == '#') {
      skip_until('\n');
    } else if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') {
      while (i < e.size() && (is_ident(e[i]) || e[i] == '.')) ++i;
    } else if (is_ident(c)) {
      const std::size_t start = i;
      while (i < e.size() && is_ident(e[i])) ++i;
      std::string word(e.substr(start, i - start));
      std::string lower = word;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
      std::size_t next = i;
      while (next < e.size() && std::isspace(static_cast<unsigned char>(e[next]))) ++next;
      const bool call = next < e.size() && e[next] == '(';
      if (call && label_lists.contains(lower)) {
        i = next;
        skip_until(')');
      } else if (!call && !keywords.contains(lower)) {
        names.insert(std::move(word));
      }
    } else {
      ++i;
    }
  }
  return names;
}

// The catalog family a series belongs to (a histogram's _bucket/_sum/_count included), or null.
const ee::MetricSpec* catalog_family(std::string_view name) {
  for (const auto& spec : ee::metric_catalog) {
    if (name == spec.name) return &spec;
    if (spec.kind != ee::MetricKind::histogram || !name.starts_with(spec.name)) continue;
    const auto suffix = name.substr(spec.name.size());
    if (suffix == "_bucket" || suffix == "_sum" || suffix == "_count") return &spec;
  }
  return nullptr;
}

// Grafana's variables, replaced by values that keep the expression valid PromQL.
std::string substitute_variables(std::string expr) {
  static const std::vector<std::pair<std::string, std::string>> values = {
      {"$__rate_interval", "1m"}, {"$__interval", "1m"}, {"$__range", "1h"}, {"$executor", ".*"},
      {"$instance", ".*"},        {"$task", ".*"},       {"$job", ".*"}};
  for (const auto& [variable, value] : values) {
    for (auto pos = expr.find(variable); pos != std::string::npos; pos = expr.find(variable, pos)) {
      expr.replace(pos, variable.size(), value);
      pos += value.size();
    }
  }
  INFO("an expression of the dashboard uses a variable this test does not know: " << expr);
  REQUIRE(expr.find('$') == std::string::npos);
  return expr;
}

struct DashboardQuery {
  std::string where;  // panel and refId, or variable, for messages
  std::string expr;   // as written in the dashboard
};

void collect_targets(const json::Value& panels, std::vector<DashboardQuery>& out) {
  for (const auto& panel : panels.array) {
    if (const auto* nested = panel.find("panels")) collect_targets(*nested, out);
    const auto* targets = panel.find("targets");
    if (targets == nullptr) continue;
    for (const auto& target : targets->array) {
      out.push_back({"panel '" + panel.at("title").str() + "' target " + target.at("refId").str(),
                     target.at("expr").str()});
    }
  }
}

json::Value dashboard() { return json::parse(read_text(dashboard_file)); }

std::vector<DashboardQuery> panel_queries(const json::Value& dash) {
  std::vector<DashboardQuery> out;
  collect_targets(dash.at("panels"), out);
  return out;
}

// label_values(SELECTOR, LABEL) of the query variables, as the SELECTOR alone.
std::vector<DashboardQuery> variable_selectors(const json::Value& dash) {
  std::vector<DashboardQuery> out;
  for (const auto& variable : dash.at("templating").at("list").array) {
    if (variable.at("type").str() != "query") continue;
    const std::string& query = variable.at("query").str();
    INFO("variable " << variable.at("name").str() << ": " << query);
    REQUIRE(query.starts_with("label_values("));
    REQUIRE(query.ends_with(")"));
    const auto comma = query.rfind(',');
    REQUIRE(comma != std::string::npos);
    out.push_back({"variable " + variable.at("name").str(), query.substr(13, comma - 13)});
  }
  return out;
}

const json::Value* variable(const json::Value& dash, std::string_view name) {
  for (const auto& v : dash.at("templating").at("list").array) {
    if (v.at("name").str() == name) return &v;
  }
  return nullptr;
}

std::vector<std::string> alert_names(const std::string& rules) {
  return yaml_values(rules, "alert");
}

}  // namespace

TEST_CASE("the PromQL scanner of this test finds metric names and nothing else", "[dashboards]") {
  CHECK(metric_names_in(
            "histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{le=\"0.1\", x=~\"b|c\"}"
            "[5m] offset 1h))) / on (job) group_left (executor) b > bool 0.5 unless c or "
            "max without (instance) (executor:x:rate5m) and topk(3, d)") ==
        std::set<std::string>{"a_bucket", "b", "c", "executor:x:rate5m", "d"});
  CHECK(metric_names_in("sum(rate(x_total{job=\"sum(y)\"}[1m])) by (job)") ==
        std::set<std::string>{"x_total"});
}

TEST_CASE("promtool check rules accepts the recording rules and alerts", "[dashboards]") {
  const auto result =
      ee_test::run_and_capture({promtool(), "check", "rules", rules_file.string()}, {}, 30s);
  INFO("promtool stdout:\n" << result.out << "\nstderr:\n" << result.err);
  REQUIRE(result.exit_code == 0);
}

TEST_CASE("promtool test rules: each alert fires on trouble and stays quiet on a healthy series",
          "[dashboards]") {
  const auto files = rule_test_files();
  REQUIRE_FALSE(files.empty());

  SECTION("the unit tests pass") {
    std::vector<std::string> argv = {promtool(), "test", "rules"};
    for (const auto& f : files) argv.push_back(f.string());
    const auto result = ee_test::run_and_capture(argv, {}, 60s);
    INFO("promtool stdout:\n" << result.out << "\nstderr:\n" << result.err);
    REQUIRE(result.exit_code == 0);
  }

  SECTION("every alert has a firing case and a quiet case, every recording rule a value test") {
    std::set<std::string> fires, quiet, tested_exprs;
    for (const auto& f : files) {
      const auto lines = lines_of(read_text(f));
      std::string alert;
      for (const auto& line : lines) {
        std::string_view value;
        if (yaml_value(line, "alertname", value)) alert = value;
        if (yaml_value(line, "exp_alerts", value)) {
          INFO(f << ": exp_alerts without an alertname before it");
          REQUIRE_FALSE(alert.empty());
          (value == "[]" ? quiet : fires).insert(alert);
          alert.clear();
        }
        if (yaml_value(line, "expr", value)) tested_exprs.emplace(value);
      }
    }
    const std::string rules = read_text(rules_file);
    const auto alerts = alert_names(rules);
    CHECK(alerts.size() == 7);
    for (const auto& name : alerts) {
      INFO("alert " << name);
      CHECK(fires.contains(name));
      CHECK(quiet.contains(name));
    }
    for (const auto& name : yaml_values(rules, "record")) {
      INFO("recording rule " << name << " has no promql_expr_test");
      CHECK(tested_exprs.contains(name));
    }
  }
}

TEST_CASE("the alerts follow the monitoring-mixin conventions", "[dashboards]") {
  const auto lines = lines_of(read_text(rules_file));
  // Each alert's block runs to the next rule (or group); its keys are collected from there.
  std::map<std::string, std::set<std::string>> keys;
  std::map<std::string, std::string> block;
  std::string current;
  for (const auto& line : lines) {
    std::string_view value;
    if (yaml_value(line, "alert", value)) {
      current = value;
      continue;
    }
    if (yaml_value(line, "record", value) || yaml_value(line, "name", value)) current.clear();
    if (current.empty()) continue;
    for (std::string_view key : {"for", "severity", "summary", "description"}) {
      if (yaml_value(line, key, value)) keys[current].emplace(key);
    }
    block[current] += line;
  }
  REQUIRE(keys.size() == 7);
  for (const auto& [alert, found] : keys) {
    INFO("alert " << alert);
    CHECK(alert.starts_with("Executor"));
    CHECK(found == std::set<std::string>{"for", "severity", "summary", "description"});
    CHECK(block[alert].find("{{ $labels.executor }}") != std::string::npos);
  }
}

TEST_CASE("every expression of the dashboard parses as PromQL", "[dashboards]") {
  const auto dash = dashboard();
  auto queries = panel_queries(dash);
  REQUIRE(queries.size() >= 10);
  for (auto& q : variable_selectors(dash)) queries.push_back(std::move(q));

  // promtool has no "parse this expression" command; a recording rule per expression makes
  // `check rules` parse each one with Prometheus' own parser.
  std::string yaml = "groups:\n  - name: dashboard\n    rules:\n";
  for (std::size_t i = 0; i < queries.size(); ++i) {
    yaml += "      # " + queries[i].where + "\n";
    yaml += "      - record: dashboard:expr_" + std::to_string(i) + "\n        expr: |\n";
    for (const auto& line : lines_of(substitute_variables(queries[i].expr))) {
      yaml += "          " + line + "\n";
    }
  }
  ee_test::TempDir dir("ee_dashboards");
  const auto path = dir / "dashboard.rules.yml";
  std::ofstream(path) << yaml;
  const auto result =
      ee_test::run_and_capture({promtool(), "check", "rules", path.string()}, {}, 30s);
  INFO("rules written from the dashboard:\n"
       << yaml << "\npromtool stdout:\n"
       << result.out << "\nstderr:\n"
       << result.err);
  REQUIRE(result.exit_code == 0);
  REQUIRE(result.out.find(std::to_string(queries.size()) + " rules found") != std::string::npos);
}

TEST_CASE("the dashboard and the rules name only metrics of the catalog", "[dashboards]") {
  const std::string rules = read_text(rules_file);
  const auto recorded = yaml_values(rules, "record");
  const std::set<std::string> recorded_set(recorded.begin(), recorded.end());

  const auto dash = dashboard();
  auto queries = panel_queries(dash);
  for (auto& q : variable_selectors(dash)) queries.push_back(std::move(q));
  for (const auto& expr : rule_expressions(rules)) queries.push_back({"rules file", expr});
  REQUIRE(queries.size() >= 30);

  std::set<std::string> used;
  for (const auto& q : queries) {
    const auto names = metric_names_in(q.expr);
    INFO(q.where << ": " << q.expr);
    CHECK_FALSE(names.empty());
    for (const auto& name : names) {
      INFO("metric " << name);
      if (name.starts_with("executor:")) {
        CHECK(recorded_set.contains(name));
      } else {
        CHECK((catalog_family(name) != nullptr || name == "up"));
      }
      used.insert(name);
    }
  }
  // The panels the issue asks for read these families; if the scan missed them the check above
  // would pass vacuously.
  for (const char* family :
       {"executor_tasks_submitted_total", "executor_task_wait_seconds_bucket",
        "executor_task_run_seconds_bucket", "executor_worker_busy_seconds_total",
        "executor_max_workers", "executor_tasks_queued", "executor_queue_capacity",
        "executor_tasks_failed_total", "executor_tasks_rejected_total",
        "executor_worker_restarts_total", "executor_workers", "executor_worker_resident_bytes"}) {
    INFO("no expression reads " << family);
    CHECK(used.contains(family));
  }
}

TEST_CASE("the dashboard imports into Grafana with a data source and four filters",
          "[dashboards]") {
  const std::string text = read_text(dashboard_file);
  const auto dash = json::parse(text);

  SECTION("import inputs, requirements and a stable uid") {
    const auto& inputs = dash.at("__inputs");
    REQUIRE(inputs.array.size() == 1);
    CHECK(inputs.at(0).at("name").str() == "DS_PROMETHEUS");
    CHECK(inputs.at(0).at("type").str() == "datasource");
    CHECK(inputs.at(0).at("pluginId").str() == "prometheus");
    // The import replaces ${DS_PROMETHEUS}; an input nothing refers to would be asked for in vain.
    CHECK(text.find("${DS_PROMETHEUS}") != std::string::npos);
    std::set<std::string> required;
    for (const auto& r : dash.at("__requires").array) required.insert(r.at("id").str());
    CHECK(required == std::set<std::string>{"grafana", "prometheus", "timeseries"});
    // Links and provisioning find the dashboard by uid: it must never change.
    CHECK(dash.at("uid").str() == "executor-exporter");
  }

  SECTION("a data source variable that every panel and query uses") {
    const auto* ds = variable(dash, "datasource");
    REQUIRE(ds != nullptr);
    CHECK(ds->at("type").str() == "datasource");
    CHECK(ds->at("query").str() == "prometheus");
    std::vector<const json::Value*> users;
    for (const auto& v : dash.at("templating").at("list").array) {
      if (v.at("type").str() == "query") users.push_back(&v);
    }
    for (const auto& panel : dash.at("panels").array) {
      users.push_back(&panel);
      for (const auto& target : panel.at("targets").array) users.push_back(&target);
    }
    for (const auto* user : users) {
      CHECK(user->at("datasource").at("uid").str() == "${datasource}");
    }
  }

  SECTION("job, instance, executor and task variables from label_values") {
    for (const char* name : {"job", "instance", "executor", "task"}) {
      INFO("variable " << name);
      const auto* v = variable(dash, name);
      REQUIRE(v != nullptr);
      CHECK(v->at("type").str() == "query");
      CHECK(v->at("query").str().starts_with("label_values("));
      CHECK(v->at("query").str().ends_with(", " + std::string(name) + ")"));
      CHECK(v->at("includeAll").boolean);
      // Grafana's default "All" is an alternation of the values found, which matches no series
      // without the label: the executor's unnamed tasks would vanish from every panel.
      CHECK(v->at("allValue").str() == ".*");
    }
  }

  SECTION("the panels the issue asks for, each filtered by the variables") {
    std::set<std::string> titles;
    std::set<double> ids;
    for (const auto& panel : dash.at("panels").array) {
      titles.insert(panel.at("title").str());
      ids.insert(panel.at("id").number);
      CHECK(panel.at("type").str() == "timeseries");
    }
    CHECK(ids.size() == dash.at("panels").array.size());
    for (const char* title :
         {"Throughput", "Utilisation", "Queue wait p50 / p95 / p99", "Run time p50 / p95 / p99",
          "Queue depth against capacity", "Failures", "Rejections by reason", "Worker restarts",
          "Process memory"}) {
      INFO("panel " << title);
      CHECK(titles.contains(title));
    }
    for (const auto& q : panel_queries(dash)) {
      INFO(q.where << ": " << q.expr);
      for (const char* filter :
           {"job=~\"$job\"", "instance=~\"$instance\"", "executor=~\"$executor\""}) {
        CHECK(q.expr.find(filter) != std::string::npos);
      }
      bool task_family = false;
      for (const auto& name : metric_names_in(q.expr)) {
        const auto* spec = catalog_family(name);
        if (spec != nullptr && ee::has_label(*spec, "task")) task_family = true;
      }
      CHECK((q.expr.find("task=~\"$task\"") != std::string::npos) == task_family);
    }
  }
}
