// Reading a PostgreSQL database back in tests, with libpq directly: what the tests check
// does not go through the code under test.
//
//   auto rows = ee_test::pg_query(dsn, "SELECT name, status FROM t WHERE executor = $1", {"a"});
//   rows[0][1]  // std::optional<std::string>: nullopt for SQL NULL
#pragma once

#include <libpq-fe.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace ee_test {

using PgRow = std::vector<std::optional<std::string>>;

// Runs one statement with text parameters on a fresh connection; throws with libpq's
// message when it fails. Returns the rows, every value as text.
inline std::vector<PgRow> pg_query(const std::string& dsn, const std::string& sql,
                                   const std::vector<std::string>& params = {}) {
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(PQconnectdb(dsn.c_str()), &PQfinish);
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    throw std::runtime_error("pg_query: cannot connect to '" + dsn +
                             "': " + PQerrorMessage(conn.get()));
  }
  PQsetNoticeProcessor(
      conn.get(), [](void*, const char*) {}, nullptr);
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.c_str());
  std::unique_ptr<PGresult, decltype(&PQclear)> res(
      PQexecParams(conn.get(), sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(),
                   nullptr, nullptr, 0),
      &PQclear);
  const auto status = PQresultStatus(res.get());
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    throw std::runtime_error("pg_query: '" + sql + "' failed: " + PQerrorMessage(conn.get()));
  }
  std::vector<PgRow> rows;
  for (int r = 0; r < PQntuples(res.get()); ++r) {
    PgRow row;
    for (int c = 0; c < PQnfields(res.get()); ++c) {
      if (PQgetisnull(res.get(), r, c) != 0) {
        row.emplace_back(std::nullopt);
      } else {
        row.emplace_back(std::string(PQgetvalue(res.get(), r, c),
                                     static_cast<std::size_t>(PQgetlength(res.get(), r, c))));
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace ee_test
