// Instrumenting an executor you cannot replace: boost::asio::thread_pool, wrapped by the
// adapter in <executor_exporter/adapters/asio_thread_pool.hpp> and then by
// InstrumentedExecutorProxy. Prints the exposition text of its metrics.

#include <executor_exporter/adapters/asio_thread_pool.hpp>
#include <executor_exporter/executor_exporter.hpp>

#include <prometheus/text_serializer.h>

#include <cstdio>
#include <vector>

namespace ee = executor_exporter;
using ee::adapters::AsioThreadPool;

int main() {
  auto registry = std::make_shared<prometheus::Registry>();
  {
    ee::InstrumentedExecutorProxy<AsioThreadPool> pool(
        AsioThreadPool(2), ee::ExecutorExporter("asio", "boost::asio::thread_pool", registry), 2);

    auto answer = pool.submit([](int a, int b) { return a * b; }, 6, 7);
    std::printf("6 * 7 = %d\n", answer.get());

    std::vector<int> inputs{1, 2, 3, 4};
    for (int square : pool.map([](int x) { return x * x; }, inputs)) std::printf("%d ", square);
    std::printf("\n");

    auto failing = pool.submit([]() -> int { throw std::runtime_error("no luck"); });
    try {
      failing.get();
    } catch (const std::exception& e) {
      std::printf("task failed: %s\n", e.what());
    }
  }
  std::printf("%s", prometheus::TextSerializer().Serialize(ee::collect(registry)).c_str());
}
