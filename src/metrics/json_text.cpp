#include "json_text.hpp"

#include <executor_exporter/metrics/detail/label_value.hpp>

#include <fmt/format.h>

#include <cstddef>

namespace executor_exporter::detail {

// A JSON string that is also safe inside an HTML <script> element (the status page
// embeds it): no '<', '>' or '&', and no U+2028/U+2029, which old JavaScript parsers
// took for line ends. Executor ids and task names are user data: a byte that is not
// UTF-8 becomes U+FFFD rather than making the document invalid.
void append_json_string(std::string& out, std::string_view raw) {
  const std::string s = sanitize_label_value(raw);
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

}  // namespace executor_exporter::detail
