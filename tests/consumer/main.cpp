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
  std::cout << "consumer: ok\n";
  return 0;
}
