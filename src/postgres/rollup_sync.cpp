// The PostgreSQL side of Rollups: one row per (key, resolution, bucket, process), each
// process writing only its own rows, so a re-sync of a bucket replaces its part of the
// fleet's total instead of adding to it again; the fleet is the sum over processes,
// computed by the reader.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../metrics/rollups_state.hpp"
#include "connection.hpp"
#include "history_table.hpp"
#include "migrations.hpp"

namespace executor_exporter::rollups_detail {

namespace {

constexpr std::size_t kColumns = 13;
// 13 parameters a row; PostgreSQL takes at most 65535 in one statement.
constexpr std::size_t kRowsPerStatement = 2000;

std::vector<postgres::Migration> rollup_migrations(const std::string& table) {
  return {
      {1, fmt::format(R"(CREATE TABLE "{0}" (
  process text NOT NULL,
  metric_key text NOT NULL,
  resolution text NOT NULL,
  bucket_start bigint NOT NULL,
  kind text NOT NULL,
  value double precision NOT NULL,
  observed_at double precision NOT NULL,
  sample_count bigint NOT NULL,
  sample_sum double precision NOT NULL,
  sample_min double precision,
  sample_max double precision,
  bounds double precision[],
  buckets bigint[],
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (metric_key, resolution, bucket_start, process));
CREATE INDEX "{0}_bucket_idx" ON "{0}" (resolution, bucket_start);)",
                      table)},
  };
}

std::string number(double v) { return fmt::format("{}", v); }

template <class T>
std::string array_literal(const std::vector<T>& values) {
  std::string out = "{";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i != 0) out += ',';
    out += fmt::format("{}", values[i]);
  }
  return out + "}";
}

std::vector<std::string> array_elements(const std::string& literal) {
  std::vector<std::string> out;
  if (literal.size() < 2) return out;
  std::string_view rest(literal);
  rest = rest.substr(1, rest.size() - 2);
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    out.emplace_back(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
  }
  return out;
}

RollupType type_named(const std::string& s) {
  if (s == "gauge") return RollupType::gauge;
  if (s == "histogram") return RollupType::histogram;
  return RollupType::counter;
}

bool resolution_named(const std::string& s, Resolution& out) {
  for (Resolution r : all_resolutions) {
    if (to_string(r) == s) {
      out = r;
      return true;
    }
  }
  return false;
}

// The rows of resolution r from `keep_from` on: one disjunct a resolution, as SQL.
std::string window_sql(std::size_t first_param, const char* op) {
  std::string out = "(";
  for (std::size_t i = 0; i < all_resolutions.size(); ++i) {
    if (i != 0) out += " OR ";
    out += fmt::format("(resolution = '{}' AND bucket_start {} ${})", to_string(all_resolutions[i]),
                       op, first_param + i);
  }
  return out + ")";
}

// $1 the process, $2..$5 the first bucket kept at each resolution (see window_sql), $6
// the oldest bucket start any process may keep.
struct WindowParams {
  WindowParams(const std::string& process, const Cutoffs& keep_from, std::int64_t oldest) {
    storage.push_back(process);
    for (auto k : keep_from) storage.push_back(std::to_string(k));
    storage.push_back(std::to_string(oldest));
    for (const auto& s : storage) values.push_back(s.c_str());
  }
  WindowParams(const WindowParams&) = delete;  // values point into storage
  WindowParams& operator=(const WindowParams&) = delete;

  std::vector<std::string> storage;
  std::vector<const char*> values;
  std::vector<postgres::Type> types = {postgres::Type::text, postgres::Type::int8,
                                       postgres::Type::int8, postgres::Type::int8,
                                       postgres::Type::int8, postgres::Type::int8};
};

class PostgresSync final : public Rollups::Sync {
 public:
  PostgresSync(std::string dsn, std::string table, std::string process)
      : dsn_(std::move(dsn)), table_(std::move(table)), process_(std::move(process)) {}

  std::vector<SyncRow> exchange(const std::vector<SyncRow>& changed, const Cutoffs& keep_from,
                                std::int64_t oldest_allowed) override {
    try {
      if (!connection_) {
        auto c = std::make_unique<postgres::Connection>(dsn_);
        const auto migrations = rollup_migrations(table_);
        postgres::apply_migrations(*c, table_, migrations);
        connection_ = std::move(c);
      }
      write(changed, keep_from, oldest_allowed);
      return read(keep_from, oldest_allowed);
    } catch (const postgres::Error&) {
      // A refused statement leaves the session usable, but a fresh one costs little and
      // clears any transaction the failure left open.
      connection_.reset();
      throw;
    }
  }

 private:
  void write(const std::vector<SyncRow>& rows, const Cutoffs& keep_from, std::int64_t oldest) {
    postgres::Connection& c = *connection_;
    c.exec("BEGIN");
    for (std::size_t from = 0; from < rows.size(); from += kRowsPerStatement) {
      const std::size_t n = std::min(kRowsPerStatement, rows.size() - from);
      upsert(c, std::span(rows).subspan(from, n));
    }
    // This process's buckets past its point limits, and anyone's past the age limit
    // (a process that went away leaves rows nobody else would remove).
    const WindowParams params(process_, keep_from, oldest);
    c.exec(fmt::format(R"(DELETE FROM "{}" WHERE (process = $1 AND NOT {}) OR bucket_start < $6)",
                       table_, window_sql(2, ">=")),
           params.types, params.values);
    c.exec("COMMIT");
  }

  void upsert(postgres::Connection& c, std::span<const SyncRow> rows) {
    std::string sql = fmt::format(
        R"(INSERT INTO "{}" (process, metric_key, resolution, bucket_start, kind, value,
  observed_at, sample_count, sample_sum, sample_min, sample_max, bounds, buckets) VALUES )",
        table_);
    std::vector<postgres::Type> types;
    std::vector<std::string> storage;
    std::vector<bool> present;
    storage.reserve(rows.size() * kColumns);
    const auto put = [&](std::string v, postgres::Type t, bool is_present = true) {
      storage.push_back(std::move(v));
      types.push_back(t);
      present.push_back(is_present);
    };
    for (std::size_t r = 0; r < rows.size(); ++r) {
      const SyncRow& row = rows[r];
      const RollupPoint& p = row.point;
      const bool histogram = row.type == RollupType::histogram;
      put(process_, postgres::Type::text);
      put(row.key, postgres::Type::text);
      put(std::string(to_string(row.resolution)), postgres::Type::text);
      put(std::to_string(p.start), postgres::Type::int8);
      put(std::string(to_string(row.type)), postgres::Type::text);
      put(number(p.value), postgres::Type::float8);
      put(number(p.observed_at), postgres::Type::float8);
      put(std::to_string(p.count), postgres::Type::int8);
      put(number(p.sum), postgres::Type::float8);
      put(number(p.min), postgres::Type::float8, histogram && !std::isnan(p.min));
      put(number(p.max), postgres::Type::float8, histogram && !std::isnan(p.max));
      // Arrays travel as their text form, cast in SQL (the wrapper names no array types).
      put(array_literal(row.bounds), postgres::Type::text, histogram);
      put(array_literal(p.buckets), postgres::Type::text, histogram && !p.buckets.empty());
      const std::size_t base = r * kColumns;
      sql += fmt::format(
          "{}(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}::double precision[], "
          "${}::bigint[])",
          r == 0 ? "" : ", ", base + 1, base + 2, base + 3, base + 4, base + 5, base + 6, base + 7,
          base + 8, base + 9, base + 10, base + 11, base + 12, base + 13);
    }
    sql += R"( ON CONFLICT (metric_key, resolution, bucket_start, process) DO UPDATE SET
  kind = EXCLUDED.kind, value = EXCLUDED.value, observed_at = EXCLUDED.observed_at,
  sample_count = EXCLUDED.sample_count, sample_sum = EXCLUDED.sample_sum,
  sample_min = EXCLUDED.sample_min, sample_max = EXCLUDED.sample_max,
  bounds = EXCLUDED.bounds, buckets = EXCLUDED.buckets, updated_at = now())";
    std::vector<const char*> values;
    values.reserve(storage.size());
    for (std::size_t i = 0; i < storage.size(); ++i) {
      values.push_back(present[i] ? storage[i].c_str() : nullptr);
    }
    c.exec(sql, types, values);
  }

  std::vector<SyncRow> read(const Cutoffs& keep_from, std::int64_t oldest) {
    const WindowParams params(process_, keep_from, oldest);
    const postgres::Result r = connection_->exec(
        fmt::format(R"(SELECT process, metric_key, resolution, bucket_start, kind, value,
  observed_at, sample_count, sample_sum, sample_min, sample_max, bounds, buckets
FROM "{}" WHERE process <> $1 AND bucket_start >= $6 AND {})",
                    table_, window_sql(2, ">=")),
        params.types, params.values);
    std::vector<SyncRow> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    const auto real = [&](int row, int col) {
      return r.is_null(row, col) ? std::nan("") : std::strtod(r.value(row, col).c_str(), nullptr);
    };
    for (int i = 0; i < r.rows(); ++i) {
      SyncRow row;
      if (!resolution_named(r.value(i, 2), row.resolution)) continue;
      row.process = r.value(i, 0);
      row.key = r.value(i, 1);
      row.type = type_named(r.value(i, 4));
      RollupPoint& p = row.point;
      p.start = std::stoll(r.value(i, 3));
      p.value = real(i, 5);
      p.observed_at = real(i, 6);
      p.count = std::stoull(r.value(i, 7));
      p.sum = real(i, 8);
      p.min = real(i, 9);
      p.max = real(i, 10);
      if (!r.is_null(i, 11)) {
        for (const auto& e : array_elements(r.value(i, 11))) {
          row.bounds.push_back(std::strtod(e.c_str(), nullptr));
        }
      }
      if (!r.is_null(i, 12)) {
        for (const auto& e : array_elements(r.value(i, 12))) p.buckets.push_back(std::stoull(e));
      }
      out.push_back(std::move(row));
    }
    return out;
  }

  std::string dsn_;
  std::string table_;
  std::string process_;
  std::unique_ptr<postgres::Connection> connection_;
};

}  // namespace

std::unique_ptr<Rollups::Sync> make_postgres_sync(const RollupOptions& options) {
  const std::string table = options.table_prefix + "_points";
  postgres::validate_table_name(table);
  return std::make_unique<PostgresSync>(options.postgres_dsn, table, options.process_id);
}

}  // namespace executor_exporter::rollups_detail
