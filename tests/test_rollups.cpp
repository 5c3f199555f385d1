// Rollups: compact history at 1 minute, 5 minutes, 1 hour and 1 day. Counters add up per
// bucket, gauges keep their last value, histograms estimate percentiles within a
// bucket's width; an executor's metrics arrive from the registry with exact counts;
// points are pruned by age and by number; keys are capped; the JSON for a status page
// survives hostile names; and with PostgreSQL every process sees the fleet's sums.
// Time is a fake clock moved by the tests, so no test waits for a minute to pass.
#include <executor_exporter/executor_exporter.hpp>
#include <executor_exporter/metrics/rollups.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "json.hpp"
#include "wait_until.hpp"

#ifdef EXECUTOR_EXPORTER_HAS_POSTGRES
#include "pg_query.hpp"
#include "postgres_server.hpp"
#include "subprocess.hpp"
#endif

namespace ee = executor_exporter;
using ee::Resolution;

namespace {

// A Unix time at the start of a day, so every resolution's bucket starts there too.
constexpr std::int64_t kT0 = 20000LL * 86400;

struct FakeClock {
  std::shared_ptr<std::atomic<std::int64_t>> seconds =
      std::make_shared<std::atomic<std::int64_t>>(kT0);
  void set(std::int64_t s) const { seconds->store(s); }
  std::function<std::chrono::system_clock::time_point()> fn() const {
    return [s = seconds] {
      return std::chrono::system_clock::time_point(std::chrono::seconds(s->load()));
    };
  }
};

// Options for a test: no thread (the test collects), an empty registry of its own.
ee::RollupOptions manual(const FakeClock& clock) {
  ee::RollupOptions o;
  o.collection_interval = std::chrono::milliseconds(0);
  o.sync_interval = std::chrono::milliseconds(0);
  o.registry = std::make_shared<prometheus::Registry>();
  o.clock = clock.fn();
  o.process_id = "test";
  return o;
}

// (bucket start, value) of a scalar series at one resolution.
std::vector<std::pair<std::int64_t, double>> scalar_points(const ee::RollupSeries& s,
                                                           Resolution r) {
  std::vector<std::pair<std::int64_t, double>> out;
  if (auto it = s.points.find(r); it != s.points.end()) {
    for (const auto& p : it->second) out.emplace_back(p.start, p.value);
  }
  return out;
}

using Points = std::vector<std::pair<std::int64_t, double>>;

ee::RollupPoint only_point(const ee::RollupSeries& s, Resolution r) {
  const auto& points = s.points.at(r);
  REQUIRE(points.size() == 1);
  return points.front();
}

}  // namespace

TEST_CASE("user counters add up per bucket at every resolution", "[rollups]") {
  FakeClock clock;
  ee::Rollups rollups(manual(clock));
  clock.set(kT0 + 5);
  rollups.increment_counter("jobs.done", 2);
  clock.set(kT0 + 50);
  rollups.increment_counter("jobs.done", 3);
  clock.set(kT0 + 70);
  rollups.increment_counter("jobs.done", 4);
  clock.set(kT0 + 400);
  rollups.increment_counter("jobs.done", 1);

  const auto m = rollups.get_metrics();
  REQUIRE(m.size() == 1);
  const auto& s = m.at("jobs.done");
  CHECK(s.type == ee::RollupType::counter);
  CHECK(scalar_points(s, Resolution::minute) == Points{{kT0, 5}, {kT0 + 60, 4}, {kT0 + 360, 1}});
  CHECK(scalar_points(s, Resolution::five_minutes) == Points{{kT0, 9}, {kT0 + 300, 1}});
  CHECK(scalar_points(s, Resolution::hour) == Points{{kT0, 10}});
  CHECK(scalar_points(s, Resolution::day) == Points{{kT0, 10}});
}

TEST_CASE("user gauges keep the last value recorded in each bucket", "[rollups]") {
  FakeClock clock;
  ee::Rollups rollups(manual(clock));
  clock.set(kT0 + 1);
  rollups.record_gauge("queue.depth", 5);
  clock.set(kT0 + 30);
  rollups.record_gauge("queue.depth", 7);
  clock.set(kT0 + 61);
  rollups.record_gauge("queue.depth", 1);

  const auto s = rollups.get_metrics().at("queue.depth");
  CHECK(s.type == ee::RollupType::gauge);
  CHECK(scalar_points(s, Resolution::minute) == Points{{kT0, 7}, {kT0 + 60, 1}});
  CHECK(scalar_points(s, Resolution::five_minutes) == Points{{kT0, 1}});
  CHECK(scalar_points(s, Resolution::day) == Points{{kT0, 1}});
}

TEST_CASE("user histograms keep exact count, sum, min, max and percentiles within a bucket",
          "[rollups]") {
  FakeClock clock;
  ee::Rollups rollups(manual(clock));
  double sum = 0;
  // 1 ms to 1 s in 1 ms steps, shuffled by a stride so the order is not sorted.
  for (int i = 0; i < 1000; ++i) {
    const double v = ((i * 7919) % 1000 + 1) / 1000.0;
    sum += v;
    rollups.record_histogram_value("latency", v);
  }
  const auto s = rollups.get_metrics().at("latency");
  CHECK(s.type == ee::RollupType::histogram);
  for (Resolution r : ee::all_resolutions) {
    const auto p = only_point(s, r);
    CHECK(p.count == 1000);
    CHECK(p.sum == Approx(sum).epsilon(1e-12));
    CHECK(p.min == 0.001);
    CHECK(p.max == 1.0);
    // Ten buckets a decade: a bucket spans a factor of 10^0.1, about 26%.
    const double width = std::pow(10.0, 0.1) - 1;
    CHECK(std::abs(p.p50 - 0.5) <= 0.5 * width);
    CHECK(std::abs(p.p95 - 0.95) <= 0.95 * width);
    CHECK(std::abs(p.p99 - 0.99) <= 0.99 * width);
    CHECK(p.p99 <= p.max);
  }
  // One value: every percentile is that value, not a bucket edge.
  rollups.record_histogram_value("single", 0.042);
  const auto one = only_point(rollups.get_metrics().at("single"), Resolution::minute);
  CHECK(one.p50 == 0.042);
  CHECK(one.p99 == 0.042);
  CHECK_THROWS_AS(rollups.record_histogram_value("single", std::nan("")), std::invalid_argument);
}

TEST_CASE("a thread pool's metrics arrive from the registry with exact counts", "[rollups]") {
  FakeClock clock;
  auto options = manual(clock);
  ee::ThreadPoolOptions pool_options;
  pool_options.id = "rollup-pool";
  pool_options.registry = options.registry;
  ee::ThreadPoolExecutor pool(2, pool_options);
  // Counted before the rollups existed: in no bucket.
  pool.submit([] {}).get();
  pool.submit([] {}).get();

  ee::Rollups rollups(options);
  std::vector<ee::Future<void>> futures;
  futures.reserve(14);
  for (int i = 0; i < 7; ++i) futures.push_back(pool.submit([] {}));
  for (int i = 0; i < 3; ++i) futures.push_back(pool.submit([] { throw std::runtime_error("x"); }));
  for (int i = 0; i < 4; ++i) futures.push_back(pool.submit_named("resize", [] {}));
  for (auto& f : futures) f.wait();
  clock.set(kT0 + 10);
  rollups.collect_now();

  auto m = rollups.get_metrics("executor.rollup-pool");
  const auto value = [&](const std::string& key, Resolution r = Resolution::minute) {
    INFO(key);
    REQUIRE(m.count(key) == 1);
    return m.at(key).points.at(r).back().value;
  };
  CHECK(value("executor.rollup-pool.tasks_completed") == 7);
  CHECK(value("executor.rollup-pool.tasks_failed") == 3);
  CHECK(value("executor.rollup-pool.task.resize.tasks_completed") == 4);
  CHECK(value("executor.rollup-pool.max_workers") == 2);
  CHECK(value("executor.rollup-pool.tasks_rejected.queue_full") == 0);
  const auto wait = only_point(m.at("executor.rollup-pool.wait_seconds"), Resolution::minute);
  CHECK(wait.count == 10);
  CHECK(m.at("executor.rollup-pool.wait_seconds").type == ee::RollupType::histogram);
  CHECK(only_point(m.at("executor.rollup-pool.run_seconds.completed"), Resolution::minute).count ==
        7);
  CHECK(only_point(m.at("executor.rollup-pool.run_seconds.failed"), Resolution::minute).count == 3);
  const auto named_wait =
      only_point(m.at("executor.rollup-pool.task.resize.wait_seconds"), Resolution::minute);
  CHECK(named_wait.count == 4);
  // A registry histogram never saw its values: min and max are the occupied buckets'
  // edges, and the percentiles lie between them.
  CHECK(wait.min <= wait.p50);
  CHECK(wait.p50 <= wait.p99);
  CHECK(wait.p99 <= wait.max);

  // A minute later: the new tasks land in a new minute, and in the same 5-minute bucket.
  futures.clear();
  for (int i = 0; i < 5; ++i) futures.push_back(pool.submit([] {}));
  for (auto& f : futures) f.wait();
  clock.set(kT0 + 70);
  rollups.collect_now();
  m = rollups.get_metrics("executor.rollup-pool");
  CHECK(scalar_points(m.at("executor.rollup-pool.tasks_completed"), Resolution::minute) ==
        Points{{kT0, 7}, {kT0 + 60, 5}});
  CHECK(value("executor.rollup-pool.tasks_completed", Resolution::five_minutes) == 12);
  CHECK(only_point(m.at("executor.rollup-pool.wait_seconds"), Resolution::hour).count == 15);

  // An id with a dot stays one segment.
  ee::ThreadPoolOptions dotted = pool_options;
  dotted.id = "web.v2";
  ee::ThreadPoolExecutor web(1, dotted);
  web.submit([] {}).get();
  rollups.collect_now();
  CHECK(rollups.get_metrics("executor.web%2Ev2").count("executor.web%2Ev2.tasks_completed") == 1);
  CHECK(rollups.get_metrics("executor.web").empty());
}

TEST_CASE("the collection thread folds the registry on its own", "[rollups]") {
  FakeClock clock;
  auto options = manual(clock);
  options.collection_interval = std::chrono::milliseconds(10);
  ee::ThreadPoolOptions pool_options;
  pool_options.id = "threaded";
  pool_options.registry = options.registry;
  ee::ThreadPoolExecutor pool(2, pool_options);
  ee::Rollups rollups(options);
  for (int i = 0; i < 20; ++i) pool.submit([] {}).get();
  // Queries run while the thread collects: get_metrics is safe against it.
  const bool seen = ee_test::wait_until(
      [&] {
        const auto m = rollups.get_metrics("executor.threaded.tasks_completed");
        return !m.empty() && m.begin()->second.points.at(Resolution::minute).back().value == 20;
      },
      std::chrono::seconds(5), std::chrono::milliseconds(5));
  CHECK(seen);
}

TEST_CASE("a prefix matches whole dot-separated segments", "[rollups]") {
  FakeClock clock;
  ee::Rollups rollups(manual(clock));
  for (const char* key : {"executor.a", "executor.a.x", "executor.ab.x", "other.a"}) {
    rollups.increment_counter(key, 1);
  }
  const auto keys = [&](std::string_view prefix) {
    std::vector<std::string> out;
    for (const auto& [k, s] : rollups.get_metrics(prefix)) out.push_back(k);
    return out;
  };
  CHECK(keys("").size() == 4);
  CHECK(keys("executor.a") == std::vector<std::string>{"executor.a", "executor.a.x"});
  CHECK(keys("executor") ==
        std::vector<std::string>{"executor.a", "executor.a.x", "executor.ab.x"});
  CHECK(keys("executor.a.x") == std::vector<std::string>{"executor.a.x"});
  CHECK(keys("executor.a.x.y").empty());
  CHECK(keys("exec").empty());
  // Without a DSN the only worker is this process.
  CHECK(rollups.get_metrics("", "test").size() == 4);
  CHECK(rollups.get_metrics("", "another-process").empty());
}

TEST_CASE("points are pruned past each resolution's limit and past the maximum age", "[rollups]") {
  FakeClock clock;
  auto options = manual(clock);
  options.max_points_per_resolution = {{Resolution::minute, 3},
                                       {Resolution::five_minutes, 2},
                                       {Resolution::hour, 2},
                                       {Resolution::day, 90}};
  options.maximum_metric_age = std::chrono::hours(24);
  ee::Rollups rollups(options);
  for (int i = 0; i < 5; ++i) {
    clock.set(kT0 + 60LL * i);
    rollups.increment_counter("ticks", 1);
  }
  CHECK(rollups.cleanup() == 2);
  const auto s = rollups.get_metrics().at("ticks");
  CHECK(scalar_points(s, Resolution::minute) ==
        Points{{kT0 + 120, 1}, {kT0 + 180, 1}, {kT0 + 240, 1}});
  CHECK(scalar_points(s, Resolution::five_minutes) == Points{{kT0, 5}});

  // A collection prunes too: a sixth minute pushes the oldest minute out.
  clock.set(kT0 + 300);
  rollups.increment_counter("ticks", 1);
  rollups.collect_now();
  CHECK(scalar_points(rollups.get_metrics().at("ticks"), Resolution::minute) ==
        Points{{kT0 + 180, 1}, {kT0 + 240, 1}, {kT0 + 300, 1}});

  // Two days on, every bucket is older than a day: the key goes with its last point.
  clock.set(kT0 + 2LL * 86400);
  CHECK(rollups.cleanup() == 3 + 2 + 1 + 1);
  CHECK(rollups.get_metrics().empty());
}

TEST_CASE("keys beyond max_keys are refused and counted", "[rollups]") {
  FakeClock clock;
  auto options = manual(clock);
  options.max_keys = 3;
  ee::Rollups rollups(options);
  for (int i = 0; i < 5; ++i) rollups.increment_counter("user." + std::to_string(i), 1);
  rollups.record_histogram_value("user.h", 1);
  const auto m = rollups.get_metrics();
  CHECK(m.size() == 3);
  CHECK(m.count("user.3") == 0);
  CHECK(rollups.refused_updates() == 3);
  // Keys already there keep counting.
  rollups.increment_counter("user.0", 1);
  CHECK(rollups.get_metrics().at("user.0").points.at(Resolution::minute).back().value == 2);
  CHECK(rollups.refused_updates() == 3);
  // The memory bound the header states counts 104 bytes a point.
  CHECK(sizeof(ee::RollupPoint) == 104);
}

TEST_CASE("the JSON for a status page is valid whatever the keys hold", "[rollups]") {
  FakeClock clock;
  auto options = manual(clock);
  ee::ThreadPoolOptions pool_options;
  pool_options.id = "q\"uote\\back\nline</script>&\x01\xff\xe2\x80\xa8.end";
  pool_options.registry = options.registry;
  ee::ThreadPoolExecutor pool(1, pool_options);
  ee::Rollups rollups(options);
  pool.submit([] {}).get();
  clock.set(kT0 + 42);
  rollups.collect_now();
  rollups.increment_counter("user.\xff", 1);  // not UTF-8: JSON shows U+FFFD
  rollups.record_histogram_value("user.\"h\"", 0.5);
  rollups.record_histogram_value("user.\"h\"", 1.5);

  const std::string text = ee::rollups_json(rollups, "", Resolution::minute);
  CAPTURE(text);
  // Safe inside <script>, and UTF-8 throughout.
  CHECK(text.find('<') == std::string::npos);
  CHECK(text.find('&') == std::string::npos);
  CHECK(text.find('\xff') == std::string::npos);
  CHECK(text.find('\n') == std::string::npos);

  const auto doc = ee_test::json::parse(text);
  CHECK(doc.at("resolution").str() == "1min");
  CHECK(doc.at("generated_at").number == static_cast<double>(kT0 + 42));
  // The id as a key segment ('.' escaped), then as JSON decodes it: the bad byte is U+FFFD.
  const std::string key =
      "executor.q\"uote\\back\nline</script>&\x01\xef\xbf\xbd\xe2\x80\xa8%2Eend.tasks_completed";
  const auto& completed = doc.at("metrics").at(key);
  CHECK(completed.at("type").str() == "counter");
  const auto& point = completed.at("points").at(0);
  REQUIRE(point.array.size() == 2);
  CHECK(point.at(0).number == static_cast<double>(kT0));
  CHECK(point.at(1).number == 1);

  CHECK(doc.at("metrics").find("user.\xef\xbf\xbd") != nullptr);

  const auto& h = doc.at("metrics").at("user.\"h\"");
  CHECK(h.at("type").str() == "histogram");
  const auto& hp = h.at("points").at(0);
  REQUIRE(hp.array.size() == 8);  // t, count, sum, min, max, p50, p95, p99
  CHECK(hp.at(1).number == 2);
  CHECK(hp.at(2).number == 2.0);
  CHECK(hp.at(3).number == 0.5);
  CHECK(hp.at(4).number == 1.5);
  CHECK(hp.at(7).number <= 1.5);

  // An idle registry histogram has no extremes or percentiles: null, not NaN.
  clock.set(kT0 + 100);
  rollups.collect_now();
  const auto later =
      ee_test::json::parse(ee::rollups_json(rollups, "executor", Resolution::minute));
  for (const auto& m : later.at("metrics").object) {
    if (m.value.at("type").str() != "histogram") continue;
    const auto& idle = m.value.at("points").array.back();
    CHECK(idle.at(1).number == 0);
    CHECK(idle.at(3).is_null());
    CHECK(idle.at(5).is_null());
  }
}

#ifdef EXECUTOR_EXPORTER_HAS_POSTGRES

#ifndef EE_INITDB
#error "EE_INITDB must be defined by the build (tests/CMakeLists.txt)"
#endif

namespace {

double minute_of(const std::map<std::string, ee::RollupSeries>& m, const std::string& key) {
  return m.at(key).points.at(Resolution::minute).back().value;
}

ee_test::PostgresServer& rollup_server() {
  const std::string initdb = EE_INITDB;
  if (initdb.empty()) {
    FAIL("initdb (PostgreSQL) was not found when the build was configured.");
  }
  static ee_test::PostgresServer instance(initdb);
  instance.start();  // a section may have left it stopped
  return instance;
}

}  // namespace

// Two Rollups with their own process ids, connections, registries and state stand for
// two processes: nothing passes between them but the table, so they run exactly the SQL
// two processes would (rows keyed by process id, the reader summing over the others).
TEST_CASE("with PostgreSQL, every process sees the fleet's rollups", "[rollups][postgres]") {
  auto& server = rollup_server();
  const std::string dsn = server.dsn(server.create_database());
  FakeClock clock;
  const auto process = [&](const char* id) {
    auto o = manual(clock);
    o.postgres_dsn = dsn;
    o.process_id = id;
    return std::make_unique<ee::Rollups>(o);
  };
  auto a = process("proc-a");
  auto b = process("proc-b");
  const auto minute = [](const ee::Rollups& r, const std::string& key) {
    return r.get_metrics(key).at(key).points.at(Resolution::minute).back();
  };

  SECTION("counters add up over processes exactly, and a re-sync replaces its own part") {
    a->increment_counter("jobs.done", 3);
    b->increment_counter("jobs.done", 4);
    a->sync_now();
    b->sync_now();
    a->sync_now();
    CHECK(minute(*a, "jobs.done").value == 7);
    CHECK(minute(*b, "jobs.done").value == 7);
    CHECK(scalar_points(a->get_metrics().at("jobs.done"), Resolution::day) == Points{{kT0, 7}});

    // Syncing again changes nothing; more counts in the same bucket replace the row.
    a->sync_now();
    b->sync_now();
    a->increment_counter("jobs.done", 1);
    a->sync_now();
    a->sync_now();
    b->sync_now();
    CHECK(minute(*a, "jobs.done").value == 8);
    CHECK(minute(*b, "jobs.done").value == 8);
    const auto rows = ee_test::pg_query(
        dsn,
        "SELECT process, value FROM executor_rollup_points WHERE metric_key = 'jobs.done' "
        "AND resolution = '1min' ORDER BY process");
    REQUIRE(rows.size() == 2);
    CHECK(*rows[0][0] == "proc-a");
    CHECK(std::stod(*rows[0][1]) == 4);
    CHECK(std::stod(*rows[1][1]) == 4);

    // One process's part alone.
    CHECK(minute_of(a->get_metrics("jobs", "proc-b"), "jobs.done") == 4);
  }

  SECTION("histograms add up over processes; a gauge takes the value observed last") {
    for (int i = 1; i <= 100; ++i) a->record_histogram_value("lat", i / 100.0);
    for (int i = 101; i <= 200; ++i) b->record_histogram_value("lat", i / 100.0);
    clock.set(kT0 + 10);
    a->record_gauge("depth", 5);
    clock.set(kT0 + 20);
    b->record_gauge("depth", 9);
    a->sync_now();
    b->sync_now();
    a->sync_now();
    for (const auto* r : {a.get(), b.get()}) {
      const auto h = minute(*r, "lat");
      CHECK(h.count == 200);
      CHECK(h.sum == Approx(201.0));
      CHECK(h.min == 0.01);
      CHECK(h.max == 2.0);
      CHECK(std::abs(h.p50 - 1.0) <= 1.0 * (std::pow(10.0, 0.1) - 1));
      CHECK(minute(*r, "depth").value == 9);
    }
    clock.set(kT0 + 30);
    a->record_gauge("depth", 1);
    a->sync_now();
    b->sync_now();
    CHECK(minute(*b, "depth").value == 1);
    CHECK(minute(*a, "depth").value == 1);
  }

  SECTION("the schema is migrated once, in the shared bookkeeping table") {
    a->sync_now();
    b->sync_now();
    auto c = process("proc-c");
    c->sync_now();
    const auto rows =
        ee_test::pg_query(dsn,
                          "SELECT version FROM executor_exporter_schema_migrations WHERE scope = "
                          "'executor_rollup_points'");
    REQUIRE(rows.size() == 1);
    CHECK(*rows[0][0] == "1");
  }

  SECTION("the thread syncs every sync_interval on its own") {
    auto o = manual(clock);
    o.postgres_dsn = dsn;
    o.process_id = "proc-threaded";
    o.sync_interval = std::chrono::milliseconds(20);
    ee::Rollups threaded(o);
    threaded.increment_counter("jobs.done", 5);
    // b syncs by hand until the thread has written; then it must see exactly 5.
    const bool seen = ee_test::wait_until(
        [&] {
          b->sync_now();
          const auto m = b->get_metrics("jobs.done");
          return !m.empty() && minute_of(m, "jobs.done") == 5;
        },
        std::chrono::seconds(5), std::chrono::milliseconds(20));
    CHECK(seen);
  }

  SECTION("a sync that fails keeps its buckets for the next one") {
    a->increment_counter("jobs.done", 2);
    server.stop();
    CHECK_THROWS(a->sync_now());
    server.start();
    a->sync_now();
    b->sync_now();
    CHECK(minute(*b, "jobs.done").value == 2);
  }

  SECTION("two real processes share their executors' rollups") {
    ee::RollupOptions o;
    o.collection_interval = std::chrono::milliseconds(0);
    o.sync_interval = std::chrono::milliseconds(0);
    o.registry = std::make_shared<prometheus::Registry>();
    o.postgres_dsn = dsn;
    o.process_id = "parent";
    ee::Rollups rollups(o);
    {
      ee::ThreadPoolOptions po;
      po.registry = o.registry;
      po.id = "fleet";
      ee::ThreadPoolExecutor pool(2, po);
      for (int i = 0; i < 12; ++i) pool.submit([] {}).get();
      rollups.collect_now();
    }
    rollups.sync_now();

    ee_test::Subprocess::Options child_options;
    child_options.env = {{"EE_ROLLUP_CHILD_DSN", dsn}};
    ee_test::Subprocess child({"/proc/self/exe", "[rollups_child]"}, child_options);
    const auto status = child.wait_for_exit(std::chrono::seconds(60));
    INFO(child.stdout_text() << child.stderr_text());
    REQUIRE(status == 0);

    rollups.sync_now();  // reads the child's rows back
    const std::string key = "executor.fleet.tasks_completed";
    // Summed over the day's buckets: the two processes may straddle a minute.
    const auto total = [&](std::string_view worker) {
      const auto series = rollups.get_metrics(key, worker);
      double sum = 0;
      for (const auto& p : series.at(key).points.at(Resolution::day)) sum += p.value;
      return sum;
    };
    CHECK(total("") == 42);
    CHECK(total("parent") == 12);
    CHECK(total("child") == 30);
  }
}

// The other process of the section "two real processes share their executors' rollups"
// above: this same binary, started with the hidden tag.
// Its pool runs 30 tasks under the executor id the parent uses too, its Rollups
// collects them from its own registry and syncs them once.
TEST_CASE("rollup child process: 30 tasks, one sync", "[.][rollups_child]") {
  const char* dsn = std::getenv("EE_ROLLUP_CHILD_DSN");
  REQUIRE(dsn != nullptr);
  ee::RollupOptions o;
  o.collection_interval = std::chrono::milliseconds(0);
  o.sync_interval = std::chrono::milliseconds(0);
  o.registry = std::make_shared<prometheus::Registry>();
  o.postgres_dsn = dsn;
  o.process_id = "child";
  ee::Rollups rollups(o);
  {
    ee::ThreadPoolOptions po;
    po.registry = o.registry;
    po.id = "fleet";
    ee::ThreadPoolExecutor pool(2, po);
    for (int i = 0; i < 30; ++i) pool.submit([] {}).get();
    rollups.collect_now();  // while the pool's series are in the registry
  }
  rollups.sync_now();
}

#endif  // EXECUTOR_EXPORTER_HAS_POSTGRES
