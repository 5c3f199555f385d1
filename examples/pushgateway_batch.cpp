// A batch job that ends before any scrape could see it: its metrics go to a Prometheus
// Pushgateway every second and once more, complete, when it finishes.
//
//   example_pushgateway_batch [HOST [PORT]]   default 127.0.0.1 9091
//
// Then: curl -s http://127.0.0.1:9091/metrics | grep 'job="nightly_resize"'
#include <executor_exporter/executor_exporter.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

namespace ee = executor_exporter;

int main(int argc, char** argv) {
#ifdef EXECUTOR_EXPORTER_HAS_PUSH
  ee::MetricsPusherOptions push;
  if (argc > 1) push.host = argv[1];
  if (argc > 2) push.port = static_cast<std::uint16_t>(std::stoi(argv[2]));
  push.job = "nightly_resize";
  push.grouping = {{"instance", "worker-1"}};
  push.interval = std::chrono::seconds(1);
  // Declared before the pool: destroyed after it, so the final push sees every task.
  ee::MetricsPusher pusher(push);

  ee::ThreadPoolOptions options;
  options.id = "resize";
  ee::ThreadPoolExecutor pool(4, options);
  for (int i = 0; i < 400; ++i) {
    (void)pool.submit([] { std::this_thread::sleep_for(std::chrono::milliseconds(5)); });
  }
  pool.shutdown();
  std::printf("400 tasks done; pushed %llu times so far, the final push follows\n",
              static_cast<unsigned long long>(pusher.stats().pushes));
#else
  (void)argc;
  (void)argv;
  std::printf("built without prometheus-cpp's push library: no MetricsPusher\n");
#endif
}
