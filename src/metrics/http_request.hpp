// The little of HTTP/1.x that a metrics endpoint needs: one request head parsed, the
// page format negotiated from Accept, gzip from Accept-Encoding, basic credentials.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace executor_exporter::detail {

struct HttpRequest {
  std::string_view method;
  std::string_view path;   // the target without its query string
  std::string_view query;  // after '?', without it; empty when there is none
  bool http11 = false;
  bool keep_alive = false;  // what the client asked for, by version and Connection
  std::string_view accept;
  std::string_view accept_encoding;
  std::string_view authorization;
  bool has_body = false;  // a Content-Length above 0 or a Transfer-Encoding
};

/// Parses a request head (the bytes up to and without the blank line). Null when it is
/// malformed; views point into `head`.
std::optional<HttpRequest> parse_request(std::string_view head);

/// Whether the Accept header prefers OpenMetrics text to the 0.0.4 text format: an
/// application/openmetrics-text range with a q at least that of text/plain (and of
/// */*, which the text format also satisfies).
bool wants_openmetrics(std::string_view accept);

/// Whether Accept-Encoding allows gzip (listed, or "*", with a q above 0).
bool accepts_gzip(std::string_view accept_encoding);

/// RFC 4648 base64 with padding.
std::string base64(std::string_view bytes);

/// Compares without an early exit, so the time taken does not tell how much of a
/// guessed credential was right.
bool equal_constant_time(std::string_view a, std::string_view b);

/// `data` compressed as one gzip member.
std::string gzip(std::string_view data);

}  // namespace executor_exporter::detail
