#include <executor_exporter/metrics/detail/label_value.hpp>
#include <executor_exporter/metrics/status_page.hpp>

#include "json_text.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <stdexcept>

#include "status_page_html.hpp"

namespace executor_exporter {

namespace {

using detail::append_json_string;

// JSON has no NaN or infinity: a point without a value is left out.
void append_points(std::string& out, const std::vector<std::array<double, 2>>& points) {
  out += '[';
  bool first = true;
  for (const auto& [t, v] : points) {
    if (!std::isfinite(t) || !std::isfinite(v)) continue;
    out += first ? "" : ",";
    out += fmt::format("[{},{}]", t, v);
    first = false;
  }
  out += ']';
}

std::string_view query_value(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    if (pair.size() > key.size() && pair.substr(0, key.size()) == key && pair[key.size()] == '=') {
      return pair.substr(key.size() + 1);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return {};
}

}  // namespace

std::string status_json(std::string_view resolution, double generated_at,
                        const std::vector<StatusExecutor>& executors) {
  std::string out = "{\"resolution\":";
  append_json_string(out, resolution);
  out += fmt::format(",\"generated_at\":{:.3f},\"executors\":[", generated_at);
  for (std::size_t i = 0; i < executors.size(); ++i) {
    const auto& e = executors[i];
    out += i ? ",{\"id\":" : "{\"id\":";
    append_json_string(out, e.id);
    out += ",\"type\":";
    append_json_string(out, e.type);
    out += ",\"panels\":{";
    for (std::size_t p = 0; p < e.panels.size(); ++p) {
      if (p) out += ',';
      append_json_string(out, e.panels[p].name);
      out += ":{";
      for (std::size_t s = 0; s < e.panels[p].series.size(); ++s) {
        if (s) out += ',';
        append_json_string(out, e.panels[p].series[s].first);
        out += ':';
        append_points(out, e.panels[p].series[s].second);
      }
      out += '}';
    }
    out += "}}";
  }
  out += "]}";
  return out;
}

void add_status_page(MetricsServerOptions& options, StatusSource source, const std::string& path) {
  if (!source) throw std::invalid_argument("executor_exporter: add_status_page needs a source");
  options.pages[path] = [](const PageRequest&) {
    return PageResponse{200, "text/html; charset=utf-8", std::string(detail::status_page_html)};
  };
  options.pages[path + ".json"] = [source = std::move(source)](const PageRequest& r) {
    std::string_view resolution = query_value(r.query, "resolution");
    if (resolution != "1min" && resolution != "5min" && resolution != "1hour" &&
        resolution != "1day") {
      resolution = "1min";
    }
    const double now =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    return PageResponse{200, "application/json", status_json(resolution, now, source(resolution))};
  };
}

}  // namespace executor_exporter
