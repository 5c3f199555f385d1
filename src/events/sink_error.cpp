#include "sink_error.hpp"

#include <cstdio>
#include <stdexcept>

namespace executor_exporter::detail {

namespace {

void report_to_stderr(std::exception_ptr error, const char* who) noexcept {
  try {
    std::rethrow_exception(std::move(error));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "executor_exporter: %s error: %s\n", who, e.what());
  } catch (...) {
    std::fprintf(stderr, "executor_exporter: %s error (not a std::exception)\n", who);
  }
}

}  // namespace

void report_sink_error(const std::function<void(std::exception_ptr)>& handler,
                       std::exception_ptr error, const char* who) noexcept {
  if (!handler) {
    report_to_stderr(std::move(error), who);
    return;
  }
  try {
    handler(std::move(error));
  } catch (...) {
    report_to_stderr(std::current_exception(), who);
  }
}

}  // namespace executor_exporter::detail
