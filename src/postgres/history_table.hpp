#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "connection.hpp"
#include "migrations.hpp"
#include "task_rows.hpp"

namespace executor_exporter::postgres {

/// Throws std::invalid_argument unless `table` is a plain lowercase identifier short
/// enough that its index names stay distinct: it is the one thing pasted into SQL.
void validate_table_name(const std::string& table);

/// The history table's schema, version by version, for apply_migrations.
std::vector<Migration> history_migrations(const std::string& table);

/// Parameters per row of history_upsert; bounds the rows of one statement (65535 at most).
inline constexpr std::size_t kHistoryColumns = 15;

/// One upsert statement for `rows` rows of the history: its text, the parameters'
/// types and values. Values are owned here, so keep the object while the statement runs.
class HistoryUpsert {
 public:
  HistoryUpsert(const std::string& table, const std::string& process,
                std::span<const TaskRow> rows);
  const std::string& sql() const { return sql_; }
  std::span<const Type> types() const { return types_; }
  std::span<const char* const> values() const { return values_; }

 private:
  std::string sql_;
  std::vector<Type> types_;
  std::vector<std::string> storage_;
  std::vector<const char*> values_;
};

}  // namespace executor_exporter::postgres
