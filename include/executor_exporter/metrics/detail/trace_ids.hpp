#pragma once

#include <cstdint>
#include <string_view>

namespace executor_exporter::detail {

/// A task's trace and span ids, parsed from hex into words so that they fit a task's
/// rare settings and an exemplar's atomics; a length of 0 means absent.
struct TraceIds {
  std::uint64_t trace_hi = 0;
  std::uint64_t trace_lo = 0;
  std::uint64_t span = 0;
  std::uint8_t trace_len = 0;  // hex digits, at most 32
  std::uint8_t span_len = 0;   // hex digits, at most 16

  bool empty() const noexcept { return trace_len == 0 && span_len == 0; }
};

/// `trace_id` and `span_id` as TraceIds. They are user input: an id is kept only when it
/// is 1 to 32 (trace) or 1 to 16 (span) hex digits, in either case, and is otherwise
/// left out, so an exemplar never carries more than 48 characters of ids nor anything
/// that is not hex. Printed back in lower case, with the digits given.
inline TraceIds parse_trace_ids(std::string_view trace_id, std::string_view span_id) noexcept {
  auto parse = [](std::string_view s, std::size_t max, std::uint64_t* hi, std::uint64_t* lo,
                  std::uint8_t& len) {
    if (s.empty() || s.size() > max) return;
    std::uint64_t h = 0;
    std::uint64_t l = 0;
    for (const char c : s) {
      unsigned d = 0;
      if (c >= '0' && c <= '9') {
        d = static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        d = static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        d = static_cast<unsigned>(c - 'A' + 10);
      } else {
        return;
      }
      h = h << 4 | l >> 60;
      l = l << 4 | d;
    }
    if (hi != nullptr) *hi = h;
    *lo = l;
    len = static_cast<std::uint8_t>(s.size());
  };
  TraceIds ids;
  parse(trace_id, 32, &ids.trace_hi, &ids.trace_lo, ids.trace_len);
  parse(span_id, 16, nullptr, &ids.span, ids.span_len);
  return ids;
}

/// The ids of the innermost TraceContext alive on this thread, or null: what a submit
/// from this thread gives its task when the submit names none itself.
inline thread_local const TraceIds* current_trace_ids = nullptr;

}  // namespace executor_exporter::detail
