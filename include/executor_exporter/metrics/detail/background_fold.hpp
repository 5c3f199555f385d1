#pragma once

#include <chrono>

namespace executor_exporter::detail {

/// Starts the process's background fold thread if it is not running (called with the
/// first executor's metrics). It folds every registry's executors every
/// background_fold_interval(), so a registry collected without the library's help is
/// at most that stale. Thread-safe; a forked child starts its own on first use.
void ensure_background_fold();

}  // namespace executor_exporter::detail
