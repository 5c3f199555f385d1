// Tour of the ThreadPoolExecutor features: bounded queue with back-pressure,
// live resizing, done-callbacks and the error handler, post(), wait(), traced and named
// tasks, priorities, deadlines, as_completed/wait, chunked map with a timeout. Prints
// the resulting metrics page once at the end.
#include <executor_exporter/executor_exporter.hpp>

#include <prometheus/text_serializer.h>

#include <chrono>
#include <iostream>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

namespace ee = executor_exporter;
using namespace std::chrono_literals;

int main() {
  auto registry = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolOptions options;
  options.id = "features";
  options.registry = registry;
  options.queue_capacity = 100;                    // bounded queue ...
  options.on_full = ee::QueueFullPolicy::block;    // ... that slows producers down
  ee::ThreadPoolExecutor pool(2, options);

  // Exceptions nobody waits for (posted tasks, callbacks) end up here, counted.
  pool.set_error_handler([](std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      std::cerr << "handled: " << x.what() << "\n";
    }
  });

  // Done-callbacks receive the finished future.
  auto answer = pool.submit([] { return 42; });
  answer.add_done_callback(
      [](const ee::SharedFuture<int>& f) { std::cout << "callback saw " << f.get() << "\n"; });

  // Fire-and-forget; its exception goes to the handler above.
  pool.post([] { throw std::runtime_error("posted task failed"); });

  // Live resizing: no task is lost when workers leave.
  pool.resize(4);
  for (int i = 0; i < 50; ++i) pool.post([] { std::this_thread::sleep_for(100us); });
  pool.scale_down(2);
  pool.wait();  // idle, not shut down

  // Traced task: each mark records the time since the previous one.
  pool.submit_traced("import", [](ee::Trace& trace) {
        std::this_thread::sleep_for(2ms);
        trace.mark("download");
        std::this_thread::sleep_for(1ms);
        trace.mark("parse");
      }).get();

  // Named task (task label), high priority, deadline with an expire callback.
  ee::SubmitOptions urgent;
  urgent.name = "report";
  urgent.priority = 10;
  urgent.deadline = std::chrono::steady_clock::now() + 1s;
  urgent.on_expired = [] { std::cerr << "report expired\n"; };
  auto report = pool.submit_with(urgent, [] { return std::string("done"); });

  // Futures toolkit.
  std::vector<ee::Future<int>> futures;
  for (int i = 0; i < 5; ++i) futures.push_back(pool.submit([i] { return i * i; }));
  auto state = ee::wait(futures, ee::ReturnWhen::first_completed, 5s);
  int sum = 0;
  // Future::get() consumes the future, so this comes last.
  for (auto& f : ee::as_completed(futures, 5s)) sum += f.get();
  std::cout << "sum of squares " << sum << ", done early " << !state.done.empty() << "\n";

  // Chunked map with a timeout on each result.
  std::vector<int> items(1000);
  std::iota(items.begin(), items.end(), 0);
  long total = 0;
  for (int v : pool.map([](int x) { return x + 1; }, items, {.timeout = 5s, .chunksize = 100})) {
    total += v;
  }
  std::cout << "report " << report.get() << ", map total " << total << ", answer " << answer.get()
            << "\n";

  pool.wait();
  std::cout << prometheus::TextSerializer().Serialize(ee::collect(registry));
}
