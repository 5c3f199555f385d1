#include <executor_exporter/metrics/detail/label_value.hpp>
#include <executor_exporter/metrics/rollups.hpp>

#include "json_text.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <iterator>
#include <string>

namespace executor_exporter {

namespace {

void append_number(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  // fmt's shortest form reads back as the same double and is valid JSON ("1e-06").
  fmt::format_to(std::back_inserter(out), "{}", v);
}

}  // namespace

std::string rollups_json(const Rollups& rollups, std::string_view prefix, Resolution resolution,
                         std::string_view worker) {
  const auto series = rollups.get_metrics(prefix, worker);
  std::string out = "{\"resolution\":";
  detail::append_json_string(out, to_string(resolution));
  out += ",\"generated_at\":";
  out += std::to_string(rollups.now_seconds());
  out += ",\"metrics\":{";
  bool first_key = true;
  for (const auto& [key, s] : series) {
    const auto it = s.points.find(resolution);
    if (it == s.points.end() || it->second.empty()) continue;
    if (!first_key) out += ',';
    first_key = false;
    detail::append_json_string(out, key);
    out += ":{\"type\":";
    detail::append_json_string(out, to_string(s.type));
    out += ",\"points\":[";
    bool first_point = true;
    for (const auto& p : it->second) {
      if (!first_point) out += ',';
      first_point = false;
      out += '[';
      out += std::to_string(p.start);
      if (s.type == RollupType::histogram) {
        out += ',';
        out += std::to_string(p.count);
        for (double v : {p.sum, p.min, p.max, p.p50, p.p95, p.p99}) {
          out += ',';
          append_number(out, v);
        }
      } else {
        out += ',';
        append_number(out, p.value);
      }
      out += ']';
    }
    out += "]}";
  }
  out += "}}";
  return out;
}

}  // namespace executor_exporter
