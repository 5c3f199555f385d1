#include <executor_exporter/events/postgres_sink.hpp>
#include <executor_exporter/metrics/detail/registry_state.hpp>

#include <prometheus/counter.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <stdexcept>
#include <utility>

#include "../events/sink_error.hpp"
#include "connection.hpp"
#include "history_table.hpp"
#include "migrations.hpp"
#include "task_rows.hpp"

namespace executor_exporter {

namespace {

// PostgreSQL takes at most 65535 parameters in one statement.
constexpr std::size_t kMaxBatch = 65535 / postgres::kHistoryColumns;

// hostname:pid: task ids are unique within a process only, and two processes may well
// give their executors the same id.
std::string process_key() {
  std::array<char, 256> host{};
  if (::gethostname(host.data(), host.size() - 1) != 0) host[0] = '\0';
  return std::string(host.data()) + ":" + std::to_string(::getpid());
}

PostgresSinkOptions checked(PostgresSinkOptions o) {
  postgres::validate_table_name(o.table);
  if (o.batch_size == 0 || o.batch_size > kMaxBatch) {
    throw std::invalid_argument("executor_exporter: PostgresSink batch_size must be 1 to " +
                                std::to_string(kMaxBatch));
  }
  if (o.reconnect_min.count() <= 0 || o.reconnect_max < o.reconnect_min) {
    throw std::invalid_argument(
        "executor_exporter: PostgresSink needs 0 < reconnect_min <= reconnect_max");
  }
  if (o.name.empty()) throw std::invalid_argument("executor_exporter: PostgresSink name is empty");
  if (!o.registry) o.registry = default_registry();
  return o;
}

}  // namespace

PostgresSink::PostgresSink(PostgresSinkOptions options)
    : options_(checked(std::move(options))),
      process_(process_key()),
      errors_(detail::RegistryState::of(options_.registry)
                  ->counter_family(Metric::event_sink_errors)
                  ->Add({{"sink", options_.name}})) {}

PostgresSink::~PostgresSink() = default;

std::string PostgresSink::name() const { return options_.name; }

void PostgresSink::stopping() noexcept {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
}

void PostgresSink::write(std::span<const TaskEvent> events) {
  const auto rows = postgres::collapse(events);
  if (!rows.empty()) deliver(rows);
}

void PostgresSink::deliver(const std::vector<postgres::TaskRow>& rows) {
  if (gave_up_) {
    // The stream is stopping and the server was unreachable at the last attempt: trying
    // again for every remaining batch would only delay the stream's destructor.
    errors_.Increment();
    report(std::make_exception_ptr(std::runtime_error(
        "PostgreSQL sink stopped with the server unreachable: " + std::to_string(rows.size()) +
        " task rows not written")));
    return;
  }
  auto delay = options_.reconnect_min;
  std::size_t sent = 0;  // rows already stored: a retry sends only the rest
  for (;;) {
    const bool last_attempt = stopping_.load();
    try {
      if (!connection_) connect();
      send(rows, sent);
      return;
    } catch (const postgres::Error& e) {
      if (!e.connection_lost()) throw;  // the stream counts it; the same rows would fail again
      connection_.reset();
      errors_.Increment();
      if (last_attempt) {
        gave_up_ = true;
        report(std::make_exception_ptr(
            std::runtime_error(std::string(e.what()) + "; the stream is stopping: " +
                               std::to_string(rows.size() - sent) + " task rows not written")));
        return;
      }
      report(std::current_exception());
    }
    pause(delay);
    delay = std::min(delay * 2, options_.reconnect_max);
  }
}

void PostgresSink::connect() {
  auto connection = std::make_unique<postgres::Connection>(options_.dsn);
  const auto migrations = postgres::history_migrations(options_.table);
  postgres::apply_migrations(*connection, options_.table, migrations);
  connection_ = std::move(connection);  // only a migrated connection is kept
}

void PostgresSink::send(const std::vector<postgres::TaskRow>& rows, std::size_t& sent) {
  while (sent < rows.size()) {
    const std::size_t n = std::min(options_.batch_size, rows.size() - sent);
    const postgres::HistoryUpsert upsert(options_.table, process_,
                                         std::span(rows).subspan(sent, n));
    connection_->exec(upsert.sql(), upsert.types(), upsert.values());
    sent += n;
  }
}

void PostgresSink::report(std::exception_ptr error) {
  detail::report_sink_error(options_.on_error, std::move(error));
}

void PostgresSink::pause(std::chrono::milliseconds delay) {
  std::unique_lock lock(mutex_);
  wake_.wait_for(lock, delay, [&] { return stopping_.load(); });
}

}  // namespace executor_exporter
