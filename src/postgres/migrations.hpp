#pragma once

#include <span>
#include <string>
#include <string_view>

#include "connection.hpp"

namespace executor_exporter::postgres {

/// One step of a schema: applied once, in version order, never edited after it shipped
/// (a change is a new version), so every database that ran it looks the same.
struct Migration {
  int version = 0;
  std::string sql;
};

/// Applies the migrations of `scope` that the database has not recorded yet, recording
/// each in executor_exporter_schema_migrations(scope, version, applied_at), all in one
/// transaction that first takes a fixed advisory lock: two processes starting at once
/// wait for each other instead of both creating the same tables, and a rerun finds every
/// version recorded and changes nothing. `scope` names the schema the list builds (the
/// history table, later rollups), so several share the one bookkeeping table. `list`
/// must be in ascending version order. Throws Error; on failure nothing is applied.
void apply_migrations(Connection& connection, std::string_view scope,
                      std::span<const Migration> list);

}  // namespace executor_exporter::postgres
