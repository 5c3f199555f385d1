#include "connection.hpp"

#include <libpq-fe.h>

#include <string_view>
#include <vector>

namespace executor_exporter::postgres {

Result::Result(pg_result* result) noexcept : result_(result) {}

void Result::Clear::operator()(pg_result* r) const noexcept { PQclear(r); }

int Result::rows() const noexcept { return PQntuples(result_.get()); }

bool Result::is_null(int row, int column) const noexcept {
  return PQgetisnull(result_.get(), row, column) != 0;
}

std::string Result::value(int row, int column) const {
  return {PQgetvalue(result_.get(), row, column),
          static_cast<std::size_t>(PQgetlength(result_.get(), row, column))};
}

namespace {

std::string trimmed(const char* message) {
  std::string s = message != nullptr ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// SQLSTATE classes that mean the session, not the statement, failed: connection
// exceptions (08), the server shutting down or starting (57P), too many connections (53300).
bool session_failure(std::string_view sqlstate) {
  return sqlstate.starts_with("08") || sqlstate.starts_with("57P") || sqlstate == "53300";
}

}  // namespace

Connection::Connection(const std::string& dsn) {
  // The DSN comes last so that what it says overrides these defaults.
  const char* const keywords[] = {"client_encoding", "fallback_application_name", "connect_timeout",
                                  "dbname", nullptr};
  const char* const values[] = {"UTF8", "executor_exporter", "10", dsn.c_str(), nullptr};
  conn_ = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (conn_ == nullptr) throw Error("PostgreSQL: out of memory connecting", true);
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string message = "PostgreSQL: cannot connect: " + trimmed(PQerrorMessage(conn_));
    PQfinish(conn_);
    throw Error(message, true);
  }
  // libpq prints server notices ("relation already exists, skipping") on stderr: not
  // the library's to say in its user's output.
  PQsetNoticeProcessor(
      conn_, [](void*, const char*) {}, nullptr);
}

Connection::~Connection() { PQfinish(conn_); }

Result Connection::check(pg_result* result) {
  Result owned(result);
  const ExecStatusType status = PQresultStatus(result);
  if (result != nullptr && (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)) {
    return owned;
  }
  const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  const bool lost = PQstatus(conn_) != CONNECTION_OK || result == nullptr ||
                    session_failure(state != nullptr ? state : "");
  throw Error("PostgreSQL: " + trimmed(PQerrorMessage(conn_)), lost);
}

Result Connection::exec(const std::string& sql) { return check(PQexec(conn_, sql.c_str())); }

Result Connection::exec(const std::string& sql, std::span<const Type> types,
                        std::span<const char* const> values) {
  if (types.size() != values.size()) {
    throw std::logic_error("PostgreSQL: parameter types and values differ in number");
  }
  std::vector<Oid> oids(types.size());
  for (std::size_t i = 0; i < types.size(); ++i) oids[i] = static_cast<Oid>(types[i]);
  return check(PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), oids.data(),
                            values.data(), /*paramLengths=*/nullptr, /*paramFormats=*/nullptr,
                            /*resultFormat=*/0));
}

}  // namespace executor_exporter::postgres
