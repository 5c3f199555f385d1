// The PostgreSQL task history: every task that ran is a row that says what its events
// said, whatever its strings hold; the schema migrates once, even when processes race;
// a server that goes away and comes back loses nothing the stream's buffer kept; and a
// stream never hangs on a dead server when it stops. Against a real PostgreSQL, started
// once for the whole test case (its sections share it; each uses a fresh database).
#include <executor_exporter/executor_exporter.hpp>

#ifdef EXECUTOR_EXPORTER_HAS_POSTGRES

#include <executor_exporter/events/postgres_sink.hpp>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "pg_query.hpp"
#include "postgres_server.hpp"
#include "scrape.hpp"
#include "wait_until.hpp"

#ifndef EE_INITDB
#error "EE_INITDB must be defined by the build (tests/CMakeLists.txt)"
#endif

using namespace std::chrono_literals;
namespace ee = executor_exporter;
namespace prom = ee_test::prom;

namespace {

ee_test::PostgresServer& server() {
  const std::string initdb = EE_INITDB;
  if (initdb.empty()) {
    FAIL(
        "initdb (PostgreSQL) was not found when the build was configured. Install the "
        "postgresql package (scripts/install-deps.sh) and re-run CMake.");
  }
  static ee_test::PostgresServer instance(initdb);
  instance.start();  // a section may have left it stopped
  return instance;
}

// Every event the stream made, to compare the rows with.
class Events : public ee::EventSink {
 public:
  std::string name() const override { return "events"; }
  void write(std::span<const ee::TaskEvent> events) override {
    std::lock_guard lock(mutex_);
    all_.insert(all_.end(), events.begin(), events.end());
  }
  std::vector<ee::TaskEvent> all() const {
    std::lock_guard lock(mutex_);
    return all_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<ee::TaskEvent> all_;
};

// A history row as the database returns it (text; nullopt for NULL). Times in µs.
struct Row {
  std::optional<std::string> process, executor, executor_type, name, status, submitted_us,
      started_us, finished_us, wait_seconds, run_seconds, error_type, error_message, reason,
      description;
};

std::map<std::pair<std::string, std::uint64_t>, Row> history(const std::string& dsn,
                                                             const std::string& table) {
  const auto micros = [](const char* c) {
    return std::string("(extract(epoch FROM ") + c + ") * 1000000)::bigint";
  };
  std::map<std::pair<std::string, std::uint64_t>, Row> out;
  for (auto& r :
       ee_test::pg_query(dsn, "SELECT task_id, process, executor, executor_type, name, status, " +
                                  micros("submitted_at") + ", " + micros("started_at") + ", " +
                                  micros("finished_at") +
                                  ", wait_seconds, run_seconds, error_type, error_message, reason, "
                                  "description FROM \"" +
                                  table + "\"")) {
    Row row{r[1], r[2], r[3],  r[4],  r[5],  r[6],  r[7],
            r[8], r[9], r[10], r[11], r[12], r[13], r[14]};
    out.emplace(std::pair(*r[2], std::stoull(*r[0])), std::move(row));
  }
  return out;
}

std::optional<std::string> text_or_null(const std::string& s) {
  return s.empty() ? std::nullopt : std::optional(s);
}

std::optional<std::string> micros_or_null(std::uint64_t ns) {
  return ns == 0 ? std::nullopt : std::optional(std::to_string(ns / 1000));
}

std::optional<double> seconds(const std::optional<std::string>& s) {
  return s ? std::optional(std::stod(*s)) : std::nullopt;
}

std::optional<double> seconds_or_null(std::uint64_t ns) {
  return ns == 0 ? std::nullopt : std::optional(static_cast<double>(ns) / 1e9);
}

std::string expected_status(ee::EventKind kind) {
  const std::string s(ee::to_string(kind));
  return s == "submitted" ? "queued" : s == "started" ? "running" : s;
}

// The last word of each task, and what its submit said (the description travels there).
struct Finals {
  std::map<std::pair<std::string, std::uint64_t>, ee::TaskEvent> last;
  std::map<std::pair<std::string, std::uint64_t>, std::string> description;
};

Finals finals(const std::vector<ee::TaskEvent>& events) {
  Finals f;
  for (const auto& e : events) {
    if (e.task_id == 0) continue;
    const auto key = std::pair(e.executor, e.task_id);
    if (e.kind == ee::EventKind::submitted || e.kind == ee::EventKind::rejected) {
      f.description[key] = e.description;
    }
    if (e.kind != ee::EventKind::submitted && e.kind != ee::EventKind::started) f.last[key] = e;
  }
  return f;
}

double sink_errors(const std::shared_ptr<prometheus::Registry>& registry, const char* sink) {
  return prom::metric(ee_test::scrape(registry), "executor_event_sink_errors_total",
                      {{"sink", sink}});
}

// A thread pool whose every transition goes to `stream`.
ee::ThreadPoolOptions watched(const char* id, const std::shared_ptr<prometheus::Registry>& registry,
                              const std::shared_ptr<ee::EventStream>& stream) {
  ee::ThreadPoolOptions o;
  o.registry = registry;
  o.id = id;
  o.observers.push_back(stream);
  return o;
}

// A process pool of one worker ("processes") whose every transition goes to `stream`.
ee::ProcessPoolOptions watched_processes(const std::shared_ptr<prometheus::Registry>& registry,
                                         const std::shared_ptr<ee::EventStream>& stream) {
  ee::ProcessPoolOptions o;
  o.id = "processes";
  o.registry = registry;
  o.observers.push_back(stream);
  o.max_workers = 1;
  o.thread_check = ee::ThreadCheck::allow;  // the test runs threads before it forks
  return o;
}

std::uint64_t unix_now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

}  // namespace

TEST_CASE("the PostgreSQL sink keeps one row per task in a real server", "[postgres]") {
  auto& pg = server();
  const std::string dsn = pg.dsn(pg.create_database());
  auto registry = std::make_shared<prometheus::Registry>();
  std::atomic<int> reported{0};
  std::mutex messages_mutex;
  std::vector<std::string> messages;
  auto on_error = [&](std::exception_ptr e) {
    ++reported;
    try {
      std::rethrow_exception(std::move(e));
    } catch (const std::exception& x) {
      std::lock_guard lock(messages_mutex);
      messages.emplace_back(x.what());
    }
  };
  // The sink every section uses, reporting to the above: sections change what they test.
  const auto sink_options = [&] {
    return ee::PostgresSinkOptions{.dsn = dsn, .registry = registry, .on_error = on_error};
  };

  SECTION("every task of the three executors is a row that says what its events said") {
    auto stream = std::make_shared<ee::EventStream>(ee::EventStreamOptions{.registry = registry});
    auto events = std::make_shared<Events>();
    stream->add_sink(events);
    stream->add_sink(std::make_shared<ee::PostgresSink>(sink_options()));
    const auto before = unix_now_ns();
    {
      ee::ThreadPoolExecutor pool(1, watched("threads", registry, stream));
      {
        ee::TaskDescription described("resize /tmp/a.png to 64x64");
        pool.submit_named("resize", [] { std::this_thread::sleep_for(3ms); }).get();
      }
      pool.submit_named("parse", [] { throw std::out_of_range("no such image"); }).wait();
      pool.submit([] {}).get();  // unnamed, undescribed
      pool.shutdown();
      ee::TaskDescription refused("after shutdown");
      CHECK_THROWS_AS(pool.submit_named("late", [] {}), ee::ExecutorShutdownError);
    }
    {
      ee::ProcessPoolExecutor pool(watched_processes(registry, stream));
      ee::TaskDescription described("x=41");
      CHECK(pool.submit(
                    +[](int x) { return x + 1; }, 41)
                .get() == 42);
    }
    {
      ee::InstrumentedExecutorProxy<ee::ThreadPoolExecutor> proxy(
          std::in_place, ee::make_exporter_for<ee::ThreadPoolExecutor>("proxied", registry), 1,
          std::size_t{1});
      proxy.add_observer(stream);
      // The wrapped pool's one worker is kept busy until the described task is submitted:
      // the proxy counts a submission on the worker when the worker gets there first, and
      // a worker has no TaskDescription in scope.
      std::promise<void> release;
      auto busy = proxy.submit([gate = release.get_future().share()] { gate.wait(); });
      ee::Future<void> described_task;
      {
        ee::TaskDescription described("through the proxy");
        described_task = proxy.submit([] { std::this_thread::sleep_for(1ms); });
      }
      release.set_value();
      busy.get();
      described_task.get();
    }
    REQUIRE(stream->flush(30s));
    const auto after = unix_now_ns();

    const auto f = finals(events->all());
    const auto rows = history(dsn, "executor_task_history");
    REQUIRE(f.last.size() == 7);  // 3 + 1 rejected on the pool, 1 process, 2 proxied
    CHECK(rows.size() == f.last.size());
    const std::string process_suffix = ":" + std::to_string(::getpid());
    for (const auto& [key, e] : f.last) {
      INFO(key.first << " task " << key.second << " " << ee::to_string(e.kind));
      const auto it = rows.find(key);
      REQUIRE(it != rows.end());
      const Row& row = it->second;
      REQUIRE(row.process);
      CHECK(row.process->ends_with(process_suffix));
      CHECK(row.executor_type == e.executor_type);
      CHECK(row.name == text_or_null(e.task));
      CHECK(row.status == expected_status(e.kind));
      CHECK(row.submitted_us == micros_or_null(e.submitted_unix_ns));
      CHECK(row.started_us == micros_or_null(e.started_unix_ns));
      CHECK(row.finished_us == micros_or_null(e.finished_unix_ns));
      CHECK(seconds(row.wait_seconds) == seconds_or_null(e.wait_ns));
      CHECK(seconds(row.run_seconds) == seconds_or_null(e.run_ns));
      CHECK(row.error_type == text_or_null(e.error_type));
      CHECK(row.error_message == text_or_null(e.error_message));
      CHECK(row.reason == text_or_null(e.reason));
      CHECK(row.description == text_or_null(f.description.at(key)));
      if (e.kind == ee::EventKind::rejected) continue;
      // A task that ran has every time, in order, within the test's own clock readings.
      REQUIRE(row.submitted_us);
      REQUIRE(row.started_us);
      REQUIRE(row.finished_us);
      const auto submitted = std::stoull(*row.submitted_us);
      const auto started = std::stoull(*row.started_us);
      const auto finished = std::stoull(*row.finished_us);
      CHECK(submitted + 1000 >= before / 1000);
      CHECK(submitted <= started);
      CHECK(started <= finished);
      CHECK(finished <= after / 1000 + 1000);
    }
    // Spot checks of what the loop compared, so that a wrong event stream cannot pass it.
    const auto by_name = [&](const char* executor, const char* name) {
      for (const auto& [key, row] : rows) {
        if (key.first == executor && row.name == std::optional<std::string>(name)) return row;
      }
      FAIL("no row named " << name << " for " << executor);
      return Row{};
    };
    const Row resize = by_name("threads", "resize");
    CHECK(resize.status == "completed");
    CHECK(resize.description == "resize /tmp/a.png to 64x64");
    CHECK(seconds(resize.run_seconds).value_or(0) >= 0.003);
    const Row parse = by_name("threads", "parse");
    CHECK(parse.status == "failed");
    CHECK(parse.error_type == "std::out_of_range");
    CHECK(parse.error_message == "no such image");
    const Row late = by_name("threads", "late");
    CHECK(late.status == "rejected");
    CHECK(late.reason == "shutdown");
    CHECK(late.description == "after shutdown");
    std::multiset<std::optional<std::string>> proxied;
    for (const auto& [key, row] : rows) {
      if (key.first == "processes") CHECK(row.description == "x=41");
      if (key.first == "proxied") proxied.insert(row.description);
    }
    CHECK(proxied == std::multiset<std::optional<std::string>>{std::nullopt, "through the proxy"});
    CHECK(reported == 0);
    CHECK(sink_errors(registry, "postgres") == 0);
  }

  SECTION("hostile names, messages and descriptions round-trip exactly, in a table named 'order'") {
    std::string long_message;
    while (long_message.size() < std::size_t{10 * 1024})
      long_message += "it's \"10 KB\" of \\ and ✓ — ";
    const std::vector<std::string> hostile = {
        "it's \"quoted\"",
        R"(back\slash\\ and \x41 \n)",
        "'); DROP TABLE \"order\"; --",
        "$1 $$ dollar $$ %s {}",
        "naïve café ✓ 日本語 🚀",
        "tab\tnew\nline\r",
        long_message,
    };
    auto stream = std::make_shared<ee::EventStream>(ee::EventStreamOptions{.registry = registry});
    auto options = sink_options();
    options.table = "order";  // a keyword: the sink must quote it
    options.batch_size = 3;   // several statements per write
    stream->add_sink(std::make_shared<ee::PostgresSink>(options));
    {
      ee::ThreadPoolExecutor pool(1, watched("hostile", registry, stream));
      for (const auto& s : hostile) {
        ee::TaskDescription described(s);
        pool.submit_named(s, [s] { throw std::runtime_error(s); }).wait();
      }
    }
    REQUIRE(stream->flush(30s));
    const auto rows = history(dsn, "order");
    REQUIRE(rows.size() == hostile.size());
    std::map<std::string, Row> by_name;
    for (const auto& [key, row] : rows) by_name.emplace(row.name.value_or(""), row);
    for (const auto& s : hostile) {
      INFO("string of " << s.size() << " bytes: " << s.substr(0, 40));
      REQUIRE(by_name.count(s) == 1);
      CHECK(by_name[s].error_message == s);
      CHECK(by_name[s].description == s);
      CHECK(by_name[s].status == "failed");
    }
    CHECK(reported == 0);
  }

  SECTION("a table name that is not a plain identifier is refused before any SQL") {
    const std::vector<std::string> refused = {
        "",  "x; DROP TABLE y",   "History", "1st", "a\"b", "sch.table", "a b",
        "é", std::string(41, 'a')};
    for (const auto& bad : refused) {
      INFO("table '" << bad << "'");
      CHECK_THROWS_WITH(ee::PostgresSink(ee::PostgresSinkOptions{.table = bad}),
                        Catch::Contains("table name must be"));
    }
    CHECK_NOTHROW(ee::PostgresSink(ee::PostgresSinkOptions{.table = std::string(40, 'a')}));
    CHECK_THROWS_AS(ee::PostgresSink(ee::PostgresSinkOptions{.batch_size = 0}),
                    std::invalid_argument);
    CHECK_THROWS_AS(
        ee::PostgresSink(ee::PostgresSinkOptions{.reconnect_min = 2s, .reconnect_max = 1s}),
        std::invalid_argument);
  }

  SECTION("sinks starting at once migrate the schema once; a later start changes nothing") {
    constexpr int kSinks = 6;
    std::latch go(kSinks);
    std::atomic<int> thrown{0};
    auto start_one = [&](std::uint64_t id, bool race) {
      try {
        auto options = sink_options();
        options.name = "racer";
        ee::PostgresSink sink(options);
        ee::TaskEvent e;
        e.executor = "racers";
        e.task_id = id;
        if (race) go.arrive_and_wait();
        sink.write(std::span(&e, 1));
      } catch (...) {
        ++thrown;
      }
    };
    std::vector<std::thread> threads;
    for (int i = 1; i <= kSinks; ++i) threads.emplace_back(start_one, i, true);
    for (auto& t : threads) t.join();
    CHECK(thrown == 0);
    CHECK(reported == 0);
    const std::string versions =
        "SELECT scope, version, applied_at::text FROM executor_exporter_schema_migrations";
    const auto first = ee_test::pg_query(dsn, versions);
    REQUIRE(first.size() == 1);
    CHECK(first[0][0] == "executor_task_history");
    CHECK(first[0][1] == "1");
    CHECK(ee_test::pg_query(dsn, "SELECT count(*) FROM executor_task_history")[0][0] ==
          std::to_string(kSinks));
    const auto indexes = ee_test::pg_query(
        dsn,
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'executor_task_history' ORDER BY 1");
    REQUIRE(indexes.size() == 3);  // the key and the two of version 1
    CHECK(indexes[0][0]->find("(executor, name)") != std::string::npos);
    CHECK(indexes[1][0]->find("(finished_at)") != std::string::npos);

    start_one(kSinks + 1,
              false);  // version 1 creates its table without IF NOT EXISTS: a rerun fails
    CHECK(thrown == 0);
    CHECK(reported == 0);
    CHECK(ee_test::pg_query(dsn, versions) == first);
    CHECK(sink_errors(registry, "racer") == 0);
  }

  SECTION("a server that goes away and comes back loses none of the events the buffer kept") {
    auto stream = std::make_shared<ee::EventStream>(
        ee::EventStreamOptions{.buffer_capacity = 100000, .registry = registry});
    auto events = std::make_shared<Events>();
    stream->add_sink(events);
    auto options = sink_options();
    options.reconnect_min = 20ms;
    options.reconnect_max = 200ms;
    stream->add_sink(std::make_shared<ee::PostgresSink>(options));
    ee::ThreadPoolExecutor pool(2, watched("outage", registry, stream));
    auto run = [&](const char* name, int n) {
      std::vector<ee::Future<int>> fs;
      fs.reserve(static_cast<std::size_t>(n));
      for (int i = 0; i < n; ++i) fs.push_back(pool.submit_named(name, [i] { return i; }));
      for (auto& fu : fs) (void)fu.get();
    };
    run("before", 50);
    REQUIRE(stream->flush(30s));
    pg.stop();
    run("during", 300);
    // The sink is retrying: its attempts fail and are counted while the server is down.
    REQUIRE(ee_test::wait_until([&] { return reported >= 2; }, 20s));
    pg.start();
    run("after", 50);
    REQUIRE(stream->flush(30s));

    const auto f = finals(events->all());
    REQUIRE(f.last.size() == 400);
    const auto rows = history(dsn, "executor_task_history");
    CHECK(rows.size() == 400);
    std::size_t completed = 0;
    for (const auto& [key, e] : f.last) {
      const auto it = rows.find(key);
      if (it != rows.end() && it->second.status == "completed") ++completed;
    }
    CHECK(completed == 400);
    const auto page = ee_test::scrape(registry);
    CHECK(prom::metric(page, "executor_event_sink_errors_total", {{"sink", "postgres"}}) ==
          static_cast<double>(reported.load()));
    CHECK(prom::metric(page, "executor_event_sink_errors_total", {{"sink", "postgres"}}) >= 2);
    CHECK(prom::metric(page, "executor_events_dropped_total", {{"sink", "postgres"}}) == 0);
  }

  SECTION("a stream stopping while the server is down returns promptly, counting what it lost") {
    auto stream = std::make_shared<ee::EventStream>(ee::EventStreamOptions{.registry = registry});
    // A back-off far longer than the test allows: only stopping() can cut it short.
    auto options = sink_options();
    options.reconnect_min = 60s;
    options.reconnect_max = 60s;
    stream->add_sink(std::make_shared<ee::PostgresSink>(options));
    {
      ee::ThreadPoolExecutor pool(1, watched("stopping", registry, stream));
      pool.submit([] {}).get();
      REQUIRE(stream->flush(30s));
      REQUIRE(ee_test::pg_query(dsn, "SELECT count(*) FROM executor_task_history")[0][0] == "1");
      pg.stop();
      pool.submit([] {}).get();
      REQUIRE(ee_test::wait_until([&] { return reported >= 1; }, 20s));
    }
    const auto t0 = std::chrono::steady_clock::now();
    stream.reset();
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
    // The failed attempt, the last one that gave up, and one per batch still buffered
    // (the second task's later events), each counted and reported.
    CHECK(reported >= 2);
    CHECK(sink_errors(registry, "postgres") == static_cast<double>(reported.load()));
    std::lock_guard lock(messages_mutex);
    REQUIRE(messages.size() >= 2);
    CHECK_THAT(messages[1], Catch::Contains("the stream is stopping"));
    CHECK_THAT(messages.back(), Catch::Contains("task rows not written"));
  }
}

#endif  // EXECUTOR_EXPORTER_HAS_POSTGRES
