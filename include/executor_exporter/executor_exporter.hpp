#pragma once

/// Umbrella header: everything a user of executor-exporter needs.

#include "errors.hpp"                       // IWYU pragma: export
#include "executor_concept.hpp"             // IWYU pragma: export
#include "exporter.hpp"                     // IWYU pragma: export
#include "exporter_options.hpp"             // IWYU pragma: export
#include "future.hpp"                       // IWYU pragma: export
#include "futures_toolkit.hpp"              // IWYU pragma: export
#include "instrumented_executor_proxy.hpp"  // IWYU pragma: export
#include "map_results.hpp"                  // IWYU pragma: export
#include "metric_catalog.hpp"               // IWYU pragma: export
#include "metrics_server.hpp"               // IWYU pragma: export
#include "registry.hpp"                     // IWYU pragma: export
#include "text_format.hpp"                  // IWYU pragma: export
#include "thread_pool_executor.hpp"         // IWYU pragma: export
#include "trace.hpp"                        // IWYU pragma: export
#include "trace_options.hpp"                // IWYU pragma: export
