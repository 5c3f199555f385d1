#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>

struct pg_conn;
struct pg_result;

namespace executor_exporter::postgres {

/// A libpq failure. connection_lost() says whether the server could not be reached or
/// went away (worth retrying on a new connection) rather than refusing a statement
/// (which would fail the same way again).
class Error : public std::runtime_error {
 public:
  Error(const std::string& what, bool connection_lost)
      : std::runtime_error(what), connection_lost_(connection_lost) {}
  bool connection_lost() const noexcept { return connection_lost_; }

 private:
  bool connection_lost_;
};

/// The rows a query returned, freed with the object.
class Result {
 public:
  explicit Result(pg_result* result) noexcept;
  int rows() const noexcept;
  bool is_null(int row, int column) const noexcept;
  std::string value(int row, int column) const;

 private:
  struct Clear {
    void operator()(pg_result* r) const noexcept;
  };
  std::unique_ptr<pg_result, Clear> result_;
};

/// PostgreSQL's type ids of the parameters the library sends (fixed in pg_type).
enum class Type : std::uint32_t { int8 = 20, text = 25, int4 = 23, float8 = 701 };

/// One libpq connection, closed with the object. Sessions talk UTF-8 whatever the
/// server's default, so text round-trips as the library holds it.
class Connection {
 public:
  /// Connects with a libpq connection string (empty: the PG* variables); throws Error.
  explicit Connection(const std::string& dsn);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  /// Runs SQL without parameters (it may hold several statements); throws Error.
  Result exec(const std::string& sql);
  /// Runs one statement whose values travel apart from its text ($1, $2...: no quoting
  /// to get wrong); a null pointer is SQL NULL. Throws Error.
  Result exec(const std::string& sql, std::span<const Type> types,
              std::span<const char* const> values);

 private:
  Result check(pg_result* result);
  pg_conn* conn_;
};

}  // namespace executor_exporter::postgres
