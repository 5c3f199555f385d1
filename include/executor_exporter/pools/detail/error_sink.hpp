#pragma once

#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include <executor_exporter/metrics/detail/executor_metrics.hpp>

namespace executor_exporter::detail {

/// Where an executor sends the exceptions nobody else can receive: a throwing done or
/// expire callback, or a posted (fire-and-forget) task that threw. Each one is counted
/// first (so a scrape made after the handler ran sees it) and then handed to the
/// user's handler, or written to stderr when none is set. Nothing escapes into a worker.
class ErrorSink {
 public:
  using Handler = std::function<void(std::exception_ptr)>;

  /// `metrics` counts the errors; null for an executor whose metrics are compiled out.
  ErrorSink(ExecutorMetrics* metrics, std::string executor)
      : metrics_(metrics), executor_(std::move(executor)) {}
  ErrorSink(const ErrorSink&) = delete;
  ErrorSink& operator=(const ErrorSink&) = delete;

  /// Replaces the handler; an empty one restores the stderr default. Calls already in
  /// progress finish with the handler they started with.
  void set_handler(Handler handler) {
    auto h = handler ? std::make_shared<const Handler>(std::move(handler)) : nullptr;
    std::lock_guard lock(mutex_);
    handler_ = std::move(h);
  }

  /// A done or expire callback threw `error`.
  void callback_failed(std::exception_ptr error) noexcept {
    if (metrics_ != nullptr) metrics_->count(Metric::callback_errors, 0, 1);
    deliver(std::move(error), "a done/expire callback");
  }
  /// A posted task threw `error` (or could not run, e.g. the pool broke).
  void task_failed(std::exception_ptr error) noexcept {
    if (metrics_ != nullptr) metrics_->count(Metric::unhandled_errors, 0, 1);
    deliver(std::move(error), "a posted task");
  }

 private:
  void deliver(std::exception_ptr error, const char* source) noexcept {
    std::shared_ptr<const Handler> handler;
    {
      std::lock_guard lock(mutex_);
      handler = handler_;
    }
    if (handler) {
      try {
        (*handler)(error);
        return;
      } catch (...) {
        // A failing handler must not take the worker down either; report both.
        log(error, source);
        error = std::current_exception();
        source = "the error handler";
      }
    }
    log(error, source);
  }

  void log(const std::exception_ptr& error, const char* source) const noexcept {
    std::string what = "unknown exception";
    try {
      if (error) std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    std::fprintf(stderr, "executor_exporter: executor '%s': unhandled exception in %s: %s\n",
                 executor_.c_str(), source, what.c_str());
  }

  ExecutorMetrics* metrics_;
  std::string executor_;
  std::mutex mutex_;
  std::shared_ptr<const Handler> handler_;
};

}  // namespace executor_exporter::detail
