// The round-robin harness on top of Google Benchmark.
//
// Every row of the suite is a registered Google Benchmark. A round runs every row
// once; rows that are compared with each other sit in one block and run back to back,
// and the order inside a block rotates from round to round (A B C, B C A, C A B, ...)
// so that no row always runs first. The harness collects each run through its own
// reporter and writes every round's raw numbers to results.json; bench/report.py turns
// them into medians of per-round paired ratios (with min and max).
#pragma once

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace bench {

using Metrics = std::map<std::string, double>;

struct Row {
  std::string name;   // [a-z0-9_]+, unique
  std::string block;  // rows compared with each other share a block
  std::string label;  // what the report prints
  bool pool = false;  // metrics come from counters (true) or from GB's timings (false)
};

/// A comparison the report prints: pairs (subject vs other) of one metric, or an
/// absolute table. Ratios are oriented so that > 1 means the subject is better:
/// subject/other for higher-is-better metrics, other/subject otherwise.
struct Pair {
  std::string subject;
  std::string other;
  double target = NAN;  // minimum acceptable ratio, NaN when none
  std::string note;
};
struct AbsRow {
  std::string row;
  std::string op;  // "<", ">" or "" (no target)
  double target = NAN;
};
struct Comparison {
  std::string id;
  std::string title;
  std::string metric;
  std::string unit;
  bool higher_better = true;
  std::vector<Pair> pairs;
  std::vector<AbsRow> abs;
  std::string note;
};

/// A table measured once (allocations, memory, clock agreement).
struct OneShotTable {
  std::string id;
  std::string title;
  std::vector<std::string> columns;            // first column is the row label
  std::vector<std::vector<std::string>> rows;  // cells as text
  std::string note;
};

class CollectingReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& r : runs) {
      if (r.run_type == Run::RT_Iteration) runs_.push_back(r);
    }
  }
  std::vector<Run> take() { return std::exchange(runs_, {}); }

 private:
  std::vector<Run> runs_;
};

class Suite {
 public:
  /// A row whose body computes its own metrics once per run (pool workloads, calls
  /// into Python): registered with Iterations(1); the metrics travel as counters.
  void add_pool_row(const std::string& block, const std::string& name, const std::string& label,
                    std::function<Metrics()> fn) {
    rows_.push_back({name, block, label, true});
    benchmark::RegisterBenchmark(name.c_str(),
                                 [fn](benchmark::State& st) {
                                   for (auto _ : st) {
                                     try {
                                       for (const auto& [k, v] : fn()) st.counters[k] = v;
                                     } catch (const std::exception& e) {
                                       st.SkipWithError(e.what());
                                       break;
                                     }
                                   }
                                 })
        ->Iterations(1)
        ->UseRealTime();
  }

  /// A Google Benchmark loop body (micro-benchmark), run on `threads` threads for at
  /// least `min_time` seconds (or exactly `iterations` when > 0). Reported as
  ///   ns      wall time per operation, per thread (what each thread experiences)
  ///   cpu_ns  CPU time per operation (all threads' CPU time / all operations)
  ///   ms      ns / 1e6, for the slow rows
  /// plus whatever counters the body sets (kept as they are).
  void add_micro_row(const std::string& block, const std::string& name, const std::string& label,
                     std::function<void(benchmark::State&)> body, int threads, double min_time,
                     benchmark::IterationCount iterations = 0) {
    rows_.push_back({name, block, label, false});
    auto* b = benchmark::RegisterBenchmark(name.c_str(), body);
    b->Threads(threads)->UseRealTime();
    if (iterations > 0) {
      b->Iterations(iterations);
    } else {
      b->MinTime(min_time);
    }
  }

  void add_comparison(Comparison c) { comparisons_.push_back(std::move(c)); }
  void add_table(OneShotTable t) { tables_.push_back(std::move(t)); }

  const std::vector<Row>& rows() const { return rows_; }
  const std::vector<Comparison>& comparisons() const { return comparisons_; }
  const std::vector<OneShotTable>& tables() const { return tables_; }

  /// Runs one row once; throws with the row's error message when it failed.
  Metrics run(const Row& row) {
    const std::size_t n = benchmark::RunSpecifiedBenchmarks(&reporter_, "^" + row.name + "(/|$)");
    auto runs = reporter_.take();
    if (n == 0 || runs.empty()) throw std::runtime_error(row.name + ": did not run");
    const auto& r = runs.back();
    if (r.error_occurred) throw std::runtime_error(row.name + ": " + r.error_message);
    Metrics m;
    for (const auto& [k, c] : r.counters) m[k] = c.value;
    if (!row.pool) {
      const double iters = static_cast<double>(r.iterations);  // all threads together
      const double threads = static_cast<double>(r.threads);
      // real_accumulated_time is the wall time of the run (averaged over threads).
      m["ns"] = r.real_accumulated_time * 1e9 / (iters / threads);
      m["cpu_ns"] = r.cpu_accumulated_time * 1e9 / iters;
      m["ms"] = m["ns"] * 1e-6;
      m["iterations"] = iters;
    }
    return m;
  }

 private:
  std::vector<Row> rows_;
  std::vector<Comparison> comparisons_;
  std::vector<OneShotTable> tables_;
  CollectingReporter reporter_;
};

}  // namespace bench
