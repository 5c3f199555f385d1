#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace executor_exporter::detail {

/// `s` with every ill-formed UTF-8 sequence (RFC 3629: overlong forms, surrogates,
/// code points above U+10FFFF, truncated sequences, stray bytes) replaced by U+FFFD, one per
/// maximal invalid subpart (as Unicode recommends). Prometheus refuses a whole scrape, every metric
/// of the process, for one label value that is not UTF-8, so every label value that comes from a
/// user (executor id and type, task name, trace scope and action) passes through here where it
/// enters the library.
inline std::string sanitize_label_value(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  const std::size_t n = s.size();
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  while (i < n) {
    const unsigned char c = byte(i);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // no overlong forms
      if (c == 0xED) hi = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // no overlong forms
      if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
    }
    std::size_t good = len == 0 ? 0 : 1;  // bytes of a valid prefix
    while (good != 0 && good < len && i + good < n) {
      const unsigned char b = byte(i + good);
      const bool ok = good == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
      if (!ok) break;
      ++good;
    }
    if (len != 0 && good == len) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");  // U+FFFD for the maximal invalid subpart
      i += good == 0 ? 1 : good;
    }
  }
  return out;
}

}  // namespace executor_exporter::detail
