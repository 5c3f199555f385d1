#include <executor_exporter/metrics/metrics_pusher.hpp>

#include <prometheus/gateway.h>

#include <fmt/format.h>

#include <utility>

#include "../events/sink_error.hpp"
#include "http_request.hpp"

namespace executor_exporter {

namespace {

bool url_safe(std::string_view s) {
  for (const char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return !s.empty();
}

bool label_name(std::string_view s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
  for (const char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
      return false;
  }
  return true;
}

// The Pushgateway's way of carrying any value in a URL path segment: base64url, with
// "=" standing for the empty value.
std::string base64url(std::string_view value) {
  if (value.empty()) return "=";
  std::string out = detail::base64(value);
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

prometheus::Labels grouping_path(const MetricsPusherOptions& o) {
  if (!url_safe(o.job)) {
    throw std::invalid_argument(fmt::format(
        "MetricsPusher: job '{}' must be non-empty and use only letters, digits, '_', '-', '.'",
        o.job));
  }
  prometheus::Labels labels;
  for (const auto& [name, value] : o.grouping) {
    if (!label_name(name) || name == "job") {
      throw std::invalid_argument(fmt::format(
          "MetricsPusher: grouping label '{}' is not a label name other than 'job'", name));
    }
    labels[name + "@base64"] = base64url(value);
  }
  return labels;
}

}  // namespace

MetricsPusher::MetricsPusher(MetricsPusherOptions options) : options_(std::move(options)) {
  if (!options_.registry) options_.registry = default_registry();
  gateway_ = std::make_unique<prometheus::Gateway>(options_.host, std::to_string(options_.port),
                                                   options_.job, grouping_path(options_),
                                                   options_.username, options_.password);
  // The folding view, not the registry: every push is exact at one instant.
  view_ = make_collectable(options_.registry);
  gateway_->RegisterCollectable(view_);
  if (options_.interval.count() > 0) thread_ = std::thread([this] { run(); });
}

MetricsPusher::~MetricsPusher() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  try {
    push();
  } catch (...) {
    report(std::current_exception());
  }
}

void MetricsPusher::push() {
  std::unique_lock lock(mutex_);
  const int status = options_.replace ? gateway_->Push() : gateway_->PushAdd();
  stats_.last_status = status;
  if (status >= 200 && status < 300) {
    ++stats_.pushes;
    return;
  }
  ++stats_.failures;
  lock.unlock();
  throw PushError(status < 0 || status >= 1000
                      ? fmt::format("MetricsPusher: cannot reach the Pushgateway at {}:{}",
                                    options_.host, options_.port)
                      : fmt::format("MetricsPusher: the Pushgateway at {}:{} answered HTTP {}",
                                    options_.host, options_.port, status));
}

MetricsPusherStats MetricsPusher::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void MetricsPusher::run() {
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, options_.interval, [&] { return stopping_; })) {
    lock.unlock();
    try {
      push();
    } catch (...) {
      report(std::current_exception());
    }
    lock.lock();
  }
}

void MetricsPusher::report(std::exception_ptr error) const {
  detail::report_sink_error(options_.on_error, std::move(error), "MetricsPusher");
}

}  // namespace executor_exporter
