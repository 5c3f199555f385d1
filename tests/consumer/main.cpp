// Uses the installed executor_exporter package (see tests/consumer/CMakeLists.txt).
#include <executor_exporter/executor_exporter.hpp>

#include <iostream>

int main() {
  executor_exporter::ThreadPoolExecutor pool(2);
  auto result = pool.submit([] { return 42; });
  const int value = result.get();
  if (value != 42) {
    std::cerr << "consumer: expected 42, got " << value << '\n';
    return 1;
  }
#ifdef EXECUTOR_EXPORTER_HAS_POSTGRES
  // Links the optional parts the package was built with; neither needs a server here
  // (the sink connects on its first batch, the pusher's failed push is reported).
  executor_exporter::PostgresSink history({.dsn = "host=127.0.0.1 port=1"});
#endif
#ifdef EXECUTOR_EXPORTER_HAS_PUSH
  {
    executor_exporter::MetricsPusher pusher({.port = 1,
                                             .interval = std::chrono::milliseconds(0),
                                             .on_error = [](std::exception_ptr) {}});
  }
#endif
  std::cout << "consumer: ok\n";
  return 0;
}
