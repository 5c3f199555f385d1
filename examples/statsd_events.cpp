// Sends a thread pool's task lifecycle to StatsD or a Datadog agent (DogStatsD tags).
//
//   example_statsd_events [HOST [PORT]]      default 127.0.0.1 8125
//
// Watch what arrives with, for instance, `nc -ul 127.0.0.1 8125` in another terminal.
#include <executor_exporter/executor_exporter.hpp>

#include <cstdio>
#include <stdexcept>
#include <string>

namespace ee = executor_exporter;

int main(int argc, char** argv) {
  ee::StatsdSinkOptions statsd;
  if (argc > 1) statsd.host = argv[1];
  if (argc > 2) statsd.port = static_cast<std::uint16_t>(std::stoi(argv[2]));
  statsd.constant_tags = {{"env", "example"}};

  auto stream = std::make_shared<ee::EventStream>(
      ee::EventStreamOptions{.on_error = [](std::exception_ptr e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& error) {
          std::fprintf(stderr, "statsd: %s\n", error.what());
        }
      }});
  stream->add_sink(std::make_shared<ee::StatsdSink>(statsd));

  ee::ThreadPoolOptions options;
  options.id = "images";
  options.observers.push_back(stream);
  ee::ThreadPoolExecutor pool(4, options);
  for (int i = 0; i < 200; ++i) {
    (void)pool.submit_named("resize", [i] {
      if (i % 50 == 49) throw std::runtime_error("corrupt image");
    });
  }
  pool.shutdown();
  stream->flush();
  std::printf(
      "sent the events of 200 tasks to %s:%u as executor.tasks.*, executor.task.wait/run "
      "and executor.tasks.queued/running\n",
      statsd.host.c_str(), static_cast<unsigned>(statsd.port));
}
