// A task history in PostgreSQL: a pool's tasks, named and described, each kept as a row.
//
//   ./example_postgres_history "host=localhost dbname=ops user=me"
//   PGHOST=localhost PGDATABASE=ops ./example_postgres_history   # or the PG* variables
#include <executor_exporter/events/postgres_sink.hpp>
#include <executor_exporter/executor_exporter.hpp>

#include <chrono>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace ee = executor_exporter;

int main(int argc, char** argv) {
  const std::string dsn = argc > 1 ? argv[1] : "";  // empty: libpq reads PGHOST, PGDATABASE...
  auto stream = std::make_shared<ee::EventStream>();
  stream->add_sink(std::make_shared<ee::PostgresSink>(ee::PostgresSinkOptions{.dsn = dsn}));

  ee::ThreadPoolOptions options;
  options.id = "thumbnails";
  options.observers.push_back(stream);
  {
    ee::ThreadPoolExecutor pool(2, options);
    std::vector<ee::Future<void>> done;
    for (const char* path : {"a.png", "b.png", "missing.png"}) {
      // What the task's arguments were, since a lambda cannot say: the row's description.
      ee::TaskDescription described(std::string("resize ") + path + " to 64x64");
      done.push_back(pool.submit_named("resize", [p = std::string(path)] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        if (p == "missing.png") throw std::runtime_error("no such file: " + p);
      }));
    }
    for (auto& f : done) f.wait();
  }
  if (!stream->flush(std::chrono::seconds(30))) {
    std::fprintf(stderr, "the database did not take the history within 30 s\n");
    return 1;
  }
  std::printf(
      "3 tasks written to executor_task_history. Look at them with:\n"
      "  psql \"%s\" -c \"SELECT name, status, description, run_seconds, error_message\n"
      "                   FROM executor_task_history WHERE executor = 'thumbnails'\n"
      "                   ORDER BY submitted_at DESC LIMIT 10\"\n",
      dsn.c_str());
}
