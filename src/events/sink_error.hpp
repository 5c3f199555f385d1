#pragma once

#include <exception>
#include <functional>

namespace executor_exporter::detail {

/// Hands what a sink failed with to the user's handler, or to stderr when there is none
/// or the handler itself throws: shared by the stream (for what a sink throws) and by
/// sinks that retry (for each failed attempt they do not throw), so both read alike.
/// `who` names the part in the stderr line ("event sink", "rollups", "MetricsPusher"),
/// which the pusher and the rollups share for the same reason.
void report_sink_error(const std::function<void(std::exception_ptr)>& handler,
                       std::exception_ptr error, const char* who = "event sink") noexcept;

}  // namespace executor_exporter::detail
