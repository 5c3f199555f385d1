#include "migrations.hpp"

#include <set>
#include <stdexcept>

namespace executor_exporter::postgres {

namespace {

// "exexport" in ASCII: one key for every process of every version of the library, so
// any two of them migrating the same database serialise.
constexpr const char* kLockSql = "SELECT pg_advisory_xact_lock(7311705562992833140)";

constexpr const char* kBookkeepingSql =
    "CREATE TABLE IF NOT EXISTS executor_exporter_schema_migrations ("
    " scope text NOT NULL,"
    " version integer NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (scope, version))";

std::set<int> applied_versions(Connection& c, const std::string& scope) {
  const Type types[] = {Type::text};
  const char* const values[] = {scope.c_str()};
  const Result r = c.exec(
      "SELECT version FROM executor_exporter_schema_migrations WHERE scope = $1", types, values);
  std::set<int> out;
  for (int i = 0; i < r.rows(); ++i) out.insert(std::stoi(r.value(i, 0)));
  return out;
}

void record(Connection& c, const std::string& scope, int version) {
  const std::string v = std::to_string(version);
  const Type types[] = {Type::text, Type::int4};
  const char* const values[] = {scope.c_str(), v.c_str()};
  c.exec("INSERT INTO executor_exporter_schema_migrations (scope, version) VALUES ($1, $2)", types,
         values);
}

}  // namespace

void apply_migrations(Connection& connection, std::string_view scope,
                      std::span<const Migration> list) {
  for (std::size_t i = 1; i < list.size(); ++i) {
    if (list[i].version <= list[i - 1].version) {
      throw std::logic_error("PostgreSQL migrations must be in ascending version order");
    }
  }
  const std::string s(scope);
  connection.exec("BEGIN");
  try {
    // The lock comes before the bookkeeping table exists: creating it is part of what
    // two first starts must not do at the same time.
    connection.exec(kLockSql);
    connection.exec(kBookkeepingSql);
    const std::set<int> done = applied_versions(connection, s);
    for (const auto& m : list) {
      if (done.count(m.version) != 0) continue;
      connection.exec(m.sql);
      record(connection, s, m.version);
    }
    connection.exec("COMMIT");
  } catch (...) {
    try {
      connection.exec("ROLLBACK");
    } catch (const Error&) {
      // The connection is gone; the server rolled back already.
    }
    throw;
  }
}

}  // namespace executor_exporter::postgres
