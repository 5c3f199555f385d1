#pragma once

#include <string_view>

#include <executor_exporter/metrics/detail/trace_ids.hpp>

namespace executor_exporter {

/// Gives the tasks that this thread submits while the object lives a trace id and a
/// span id, which their exemplars carry (OpenMetrics pages; docs/exemplars.md), so a
/// slow bucket leads to the trace of a task that fell in it. Typically opened where a
/// request's span is current. Ids are hex (up to 32 digits for the trace, 16 for the
/// span); one that is not is left out. Scopes nest: the innermost one wins, and the
/// previous one is back when it ends. A submit's own ids (SubmitOptions::trace_id,
/// span_id) win over the scope's.
///
///     {
///       executor_exporter::TraceContext traced(span.trace_id_hex(), span.span_id_hex());
///       pool.submit_named("render", [page] { render(page); });
///     }
class TraceContext {
 public:
  TraceContext(std::string_view trace_id, std::string_view span_id = {}) noexcept
      : ids_(detail::parse_trace_ids(trace_id, span_id)), previous_(detail::current_trace_ids) {
    detail::current_trace_ids = &ids_;
  }
  TraceContext(const TraceContext&) = delete;
  TraceContext& operator=(const TraceContext&) = delete;
  ~TraceContext() { detail::current_trace_ids = previous_; }

 private:
  detail::TraceIds ids_;
  const detail::TraceIds* previous_;
};

}  // namespace executor_exporter
