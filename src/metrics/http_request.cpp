#include "http_request.hpp"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <stdexcept>

namespace executor_exporter::detail {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

bool icontains_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const auto comma = list.find(',');
    if (iequals(trim(list.substr(0, comma)), token)) return true;
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
  }
  return false;
}

// Calls f(type, q) for each element of a comma-separated list with ;q= weights.
template <class F>
void for_each_weighted(std::string_view list, F&& f) {
  while (!list.empty()) {
    const auto comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    const auto semi = item.find(';');
    const std::string_view type = trim(item.substr(0, semi));
    double q = 1;
    std::string_view params =
        semi == std::string_view::npos ? std::string_view{} : item.substr(semi);
    while (!params.empty()) {
      params.remove_prefix(1);  // ';'
      const auto next = params.find(';');
      const std::string_view param = trim(params.substr(0, next));
      params = next == std::string_view::npos ? std::string_view{} : params.substr(next);
      if (param.size() > 2 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
        double v = 0;
        const auto [end, ec] = std::from_chars(param.data() + 2, param.data() + param.size(), v);
        q = ec == std::errc() && end == param.data() + param.size() ? v : 0;
      }
    }
    if (!type.empty()) f(type, q);
  }
}

}  // namespace

std::optional<HttpRequest> parse_request(std::string_view head) {
  HttpRequest r;
  const auto line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);
  std::string_view rest =
      line_end == std::string_view::npos ? std::string_view{} : head.substr(line_end + 2);
  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return std::nullopt;
  }
  r.method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (r.method.empty() || target.empty() || target.front() != '/') return std::nullopt;
  if (version == "HTTP/1.1") {
    r.http11 = true;
  } else if (version != "HTTP/1.0") {
    return std::nullopt;
  }
  const auto question = target.find('?');
  r.path = target.substr(0, question);
  if (question != std::string_view::npos) r.query = target.substr(question + 1);
  r.keep_alive = r.http11;
  while (!rest.empty()) {
    const auto end = rest.find("\r\n");
    const std::string_view header = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 2);
    const auto colon = header.find(':');
    if (colon == std::string_view::npos || colon == 0) return std::nullopt;
    const std::string_view name = header.substr(0, colon);
    if (name.find_first_of(" \t") != std::string_view::npos) return std::nullopt;
    const std::string_view value = trim(header.substr(colon + 1));
    if (iequals(name, "accept")) {
      r.accept = value;
    } else if (iequals(name, "accept-encoding")) {
      r.accept_encoding = value;
    } else if (iequals(name, "authorization")) {
      r.authorization = value;
    } else if (iequals(name, "connection")) {
      if (icontains_token(value, "close")) r.keep_alive = false;
      if (icontains_token(value, "keep-alive")) r.keep_alive = true;
    } else if (iequals(name, "content-length")) {
      r.has_body = r.has_body || value != "0";
    } else if (iequals(name, "transfer-encoding")) {
      r.has_body = true;
    }
  }
  return r;
}

bool wants_openmetrics(std::string_view accept) {
  double om = 0, text = 0;
  for_each_weighted(accept, [&](std::string_view type, double q) {
    if (iequals(type, "application/openmetrics-text")) {
      om = std::max(om, q);
    } else if (iequals(type, "text/plain") || type == "*/*" || iequals(type, "text/*")) {
      text = std::max(text, q);
    }
  });
  return om > 0 && om >= text;
}

bool accepts_gzip(std::string_view accept_encoding) {
  bool yes = false;
  for_each_weighted(accept_encoding, [&](std::string_view coding, double q) {
    if (iequals(coding, "gzip") || coding == "*") yes = yes || q > 0;
  });
  return yes;
}

std::string base64(std::string_view bytes) {
  static constexpr char digits[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const unsigned v = static_cast<unsigned char>(bytes[i]) << 16 |
                       static_cast<unsigned char>(bytes[i + 1]) << 8 |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += digits[v >> 18 & 63];
    out += digits[v >> 12 & 63];
    out += digits[v >> 6 & 63];
    out += digits[v & 63];
  }
  if (i < bytes.size()) {
    unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += digits[v >> 18 & 63];
    out += digits[v >> 12 & 63];
    out += i + 1 < bytes.size() ? digits[v >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

bool equal_constant_time(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::size_t n = std::max(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    const auto x = static_cast<unsigned char>(i < a.size() ? a[i] : '\0');
    const auto y = static_cast<unsigned char>(i < b.size() ? b[i] : '\0');
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

std::string gzip(std::string_view data) {
  z_stream z{};
  // 15 window bits + 16: a gzip header and trailer rather than zlib's. Level 1: a
  // metrics page is repetitive enough that the fastest level already shrinks it ~10x.
  if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::runtime_error("executor_exporter: zlib deflateInit2 failed");
  }
  std::string out(deflateBound(&z, static_cast<uLong>(data.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  const std::size_t size = out.size() - z.avail_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) throw std::runtime_error("executor_exporter: gzip failed");
  out.resize(size);
  return out;
}

}  // namespace executor_exporter::detail
