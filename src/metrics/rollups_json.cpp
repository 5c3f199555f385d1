#include <executor_exporter/metrics/detail/label_value.hpp>
#include <executor_exporter/metrics/rollups.hpp>

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <iterator>
#include <string>

namespace executor_exporter {

namespace {

// A JSON string that is also safe inside an HTML <script> element (the status page
// embeds it): no '<', '>' or '&', and no U+2028/U+2029, which old JavaScript parsers
// took for line ends. Executor ids and task names are user data: a byte that is not
// UTF-8 becomes U+FFFD rather than making the document invalid.
void append_string(std::string& out, std::string_view raw) {
  const std::string s = detail::sanitize_label_value(raw);
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        ++i;
        continue;
      case '\\':
        out += "\\\\";
        ++i;
        continue;
      case '\n':
        out += "\\n";
        ++i;
        continue;
      case '\r':
        out += "\\r";
        ++i;
        continue;
      case '\t':
        out += "\\t";
        ++i;
        continue;
      default:
        break;
    }
    if (c < 0x20 || c == 0x7F || c == '<' || c == '>' || c == '&') {
      out += fmt::format("\\u{:04x}", c);
      ++i;
      continue;
    }
    if (c == 0xE2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
        (static_cast<unsigned char>(s[i + 2]) == 0xA8 ||
         static_cast<unsigned char>(s[i + 2]) == 0xA9)) {
      out += static_cast<unsigned char>(s[i + 2]) == 0xA8 ? "\\u2028" : "\\u2029";
      i += 3;
    } else {
      out += s[i];  // sanitized: well-formed UTF-8 passes byte by byte
      ++i;
    }
  }
  out += '"';
}

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
  append_string(out, to_string(resolution));
  out += ",\"generated_at\":";
  out += std::to_string(rollups.now_seconds());
  out += ",\"metrics\":{";
  bool first_key = true;
  for (const auto& [key, s] : series) {
    const auto it = s.points.find(resolution);
    if (it == s.points.end() || it->second.empty()) continue;
    if (!first_key) out += ',';
    first_key = false;
    append_string(out, key);
    out += ":{\"type\":";
    append_string(out, to_string(s.type));
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
