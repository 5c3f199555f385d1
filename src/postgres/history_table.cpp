#include "history_table.hpp"

#include <fmt/format.h>

#include <stdexcept>
#include <string_view>

namespace executor_exporter::postgres {

namespace {

constexpr std::size_t kMaxTableName = 40;

// The rank of status_rank, in SQL, for the upsert's status rule.
std::string rank_sql(std::string_view column) {
  return fmt::format("(CASE {} WHEN 'queued' THEN 0 WHEN 'running' THEN 1 ELSE 2 END)", column);
}

}  // namespace

void validate_table_name(const std::string& table) {
  auto ok = [](char c, bool first) {
    return (c >= 'a' && c <= 'z') || c == '_' || (!first && c >= '0' && c <= '9');
  };
  bool valid = !table.empty() && table.size() <= kMaxTableName;
  for (std::size_t i = 0; valid && i < table.size(); ++i) valid = ok(table[i], i == 0);
  if (!valid) {
    throw std::invalid_argument(
        "executor_exporter: PostgresSink table name must be 1 to 40 lowercase letters, digits "
        "and underscores, not starting with a digit; got '" +
        table + "'");
  }
}

std::vector<Migration> history_migrations(const std::string& table) {
  // Quoted although validated, so that a name that is a keyword ("order") still works.
  return {
      {1, fmt::format(R"(CREATE TABLE "{0}" (
  process text NOT NULL,
  executor text NOT NULL,
  executor_type text,
  name text,
  task_id bigint NOT NULL,
  status text NOT NULL,
  submitted_at timestamptz,
  started_at timestamptz,
  finished_at timestamptz,
  wait_seconds double precision,
  run_seconds double precision,
  error_type text,
  error_message text,
  reason text,
  description text,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (process, executor, task_id));
CREATE INDEX "{0}_finished_at_idx" ON "{0}" (finished_at);
CREATE INDEX "{0}_executor_name_idx" ON "{0}" (executor, name);)",
                      table)},
  };
}

namespace {

// The statement but for its VALUES rows. Times travel as integer microseconds (what
// timestamptz holds) and become timestamps in SQL, so nothing is lost to a text format.
// On conflict, COALESCE keeps what an earlier event set when a later one says nothing,
// and the status moves only forward (see status_rank).
std::string upsert_head(const std::string& table) {
  return fmt::format(
      R"(INSERT INTO "{0}" AS h (process, executor, executor_type, name, task_id, status,
  submitted_at, started_at, finished_at, wait_seconds, run_seconds, error_type, error_message,
  reason, description, updated_at)
SELECT process, executor, executor_type, name, task_id, status,
  timestamptz 'epoch' + submitted_us * interval '1 microsecond',
  timestamptz 'epoch' + started_us * interval '1 microsecond',
  timestamptz 'epoch' + finished_us * interval '1 microsecond',
  wait_seconds, run_seconds, error_type, error_message, reason, description, now()
FROM (VALUES )",
      table);
}

std::string upsert_tail() {
  auto keep = [](std::string_view c) {
    return fmt::format("{0} = COALESCE(EXCLUDED.{0}, h.{0})", c);
  };
  std::string set;
  for (const char* c :
       {"executor_type", "name", "submitted_at", "started_at", "finished_at", "wait_seconds",
        "run_seconds", "error_type", "error_message", "reason", "description"}) {
    set += keep(c) + ",\n  ";
  }
  return fmt::format(
      R"() AS v(process, executor, executor_type, name, task_id, status, submitted_us, started_us,
  finished_us, wait_seconds, run_seconds, error_type, error_message, reason, description)
ON CONFLICT (process, executor, task_id) DO UPDATE SET
  {}status = CASE WHEN {} >= {} THEN EXCLUDED.status ELSE h.status END,
  updated_at = now())",
      set, rank_sql("EXCLUDED.status"), rank_sql("h.status"));
}

}  // namespace

HistoryUpsert::HistoryUpsert(const std::string& table, const std::string& process,
                             std::span<const TaskRow> rows) {
  constexpr Type kRowTypes[kHistoryColumns] = {Type::text, Type::text,   Type::text,   Type::text,
                                               Type::int8, Type::text,   Type::int8,   Type::int8,
                                               Type::int8, Type::float8, Type::float8, Type::text,
                                               Type::text, Type::text,   Type::text};
  storage_.reserve(rows.size() * kHistoryColumns);  // values_ points into it: no reallocation
  std::vector<bool> present;
  present.reserve(rows.size() * kHistoryColumns);
  auto text = [&](std::string_view s) {
    present.push_back(!s.empty());
    storage_.emplace_back(s);
  };
  auto micros = [&](std::uint64_t ns) {
    present.push_back(ns != 0);
    storage_.push_back(std::to_string(ns / 1000));
  };
  auto seconds = [&](std::uint64_t ns) {
    present.push_back(ns != 0);
    // Shortest text that reads back as the same double.
    storage_.push_back(fmt::format("{}", static_cast<double>(ns) / 1e9));
  };
  sql_ = upsert_head(table);
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const TaskRow& row = rows[r];
    text(process);
    text(row.executor);
    text(row.executor_type);
    text(row.name);
    // Ids are a thread number above 40 bits of count: far below 2^63, so bigint holds them.
    present.push_back(true);
    storage_.push_back(std::to_string(static_cast<std::int64_t>(row.task_id)));
    text(row.status);
    micros(row.submitted_unix_ns);
    micros(row.started_unix_ns);
    micros(row.finished_unix_ns);
    seconds(row.wait_ns);
    seconds(row.run_ns);
    text(row.error_type);
    text(row.error_message);
    text(row.reason);
    text(row.description);
    sql_ += r == 0 ? "(" : ", (";
    for (std::size_t c = 0; c < kHistoryColumns; ++c) {
      sql_ += fmt::format("{}${}", c == 0 ? "" : ", ", r * kHistoryColumns + c + 1);
      types_.push_back(kRowTypes[c]);
    }
    sql_ += ")";
  }
  sql_ += upsert_tail();
  values_.reserve(storage_.size());
  for (std::size_t i = 0; i < storage_.size(); ++i) {
    values_.push_back(present[i] ? storage_[i].c_str() : nullptr);
  }
}

}  // namespace executor_exporter::postgres
