#pragma once

/// Umbrella header: everything public of executor-exporter. The rooms are
/// metrics/ (what is exported and how it is served), pools/ (the thread pool, the proxy
/// that instruments any executor, futures) and process/ (the fork-based process pool);
/// see docs/architecture.md. The boost::asio adapter is included when boost::asio is
/// available, since it is the only part that needs a dependency beyond prometheus-cpp.

#include <executor_exporter/errors.hpp>                             // IWYU pragma: export
#include <executor_exporter/events/event_sink.hpp>                  // IWYU pragma: export
#include <executor_exporter/events/event_stream.hpp>                // IWYU pragma: export
#include <executor_exporter/events/statsd_sink.hpp>                 // IWYU pragma: export
#include <executor_exporter/events/task_description.hpp>            // IWYU pragma: export
#include <executor_exporter/events/task_event.hpp>                  // IWYU pragma: export
#include <executor_exporter/metrics/exemplar.hpp>                   // IWYU pragma: export
#include <executor_exporter/metrics/exporter.hpp>                   // IWYU pragma: export
#include <executor_exporter/metrics/exporter_options.hpp>           // IWYU pragma: export
#include <executor_exporter/metrics/flight_recorder.hpp>            // IWYU pragma: export
#include <executor_exporter/metrics/metric_catalog.hpp>             // IWYU pragma: export
#include <executor_exporter/metrics/metrics_server.hpp>             // IWYU pragma: export
#include <executor_exporter/metrics/registry.hpp>                   // IWYU pragma: export
#include <executor_exporter/metrics/reject_reason.hpp>              // IWYU pragma: export
#include <executor_exporter/metrics/rollups.hpp>                    // IWYU pragma: export
#include <executor_exporter/metrics/status_page.hpp>                // IWYU pragma: export
#include <executor_exporter/metrics/text_format.hpp>                // IWYU pragma: export
#include <executor_exporter/metrics/trace.hpp>                      // IWYU pragma: export
#include <executor_exporter/metrics/trace_context.hpp>              // IWYU pragma: export
#include <executor_exporter/metrics/trace_options.hpp>              // IWYU pragma: export
#include <executor_exporter/metrics/watchdog.hpp>                   // IWYU pragma: export
#include <executor_exporter/pools/executor_concept.hpp>             // IWYU pragma: export
#include <executor_exporter/pools/future.hpp>                       // IWYU pragma: export
#include <executor_exporter/pools/futures_toolkit.hpp>              // IWYU pragma: export
#include <executor_exporter/pools/instrumented_executor_proxy.hpp>  // IWYU pragma: export
#include <executor_exporter/pools/map_results.hpp>                  // IWYU pragma: export
#include <executor_exporter/pools/thread_pool_executor.hpp>         // IWYU pragma: export
#include <executor_exporter/process/codec.hpp>                      // IWYU pragma: export
#include <executor_exporter/process/process_callable.hpp>           // IWYU pragma: export
#include <executor_exporter/process/process_pool_executor.hpp>      // IWYU pragma: export
#include <executor_exporter/process/process_pool_options.hpp>       // IWYU pragma: export

#ifdef EXECUTOR_EXPORTER_HAS_POSTGRES
#include <executor_exporter/events/postgres_sink.hpp>  // IWYU pragma: export
#endif
#ifdef EXECUTOR_EXPORTER_HAS_PUSH
#include <executor_exporter/metrics/metrics_pusher.hpp>  // IWYU pragma: export
#endif
#if __has_include(<boost/asio/thread_pool.hpp>)
#include <executor_exporter/adapters/asio_thread_pool.hpp>  // IWYU pragma: export
#endif
