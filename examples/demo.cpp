// The demo behind the README's first command: a thread pool under a workload that keeps
// changing (bursts, slow phases, failures, a backlog now and then), served live at
// http://127.0.0.1:<port>/metrics. Ctrl-C (SIGINT) or SIGTERM stops it cleanly.
//
//   executor_exporter_demo [--port N] [--bind ADDR] [--duration-seconds S]

#include <executor_exporter/executor_exporter.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>

namespace ee = executor_exporter;

namespace {

struct Args {
  std::string bind = "127.0.0.1";
  int port = 8080;
  double duration_seconds = 0;  // 0: until a signal
};

Args parse(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    if (a == "--port") {
      args.port = std::stoi(value());
    } else if (a == "--bind") {
      args.bind = value();
    } else if (a == "--duration-seconds") {
      args.duration_seconds = std::stod(value());
    } else if (a == "--help" || a == "-h") {
      std::printf("usage: %s [--port N] [--bind ADDR] [--duration-seconds S]\n", argv[0]);
      std::exit(0);
    } else {
      throw std::invalid_argument("unknown argument " + a);
    }
  }
  return args;
}

// One task of the workload: mostly short, sometimes slow, sometimes failing.
int work(int n, int slow_ms, bool fail) {
  if (slow_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(slow_ms));
  if (fail) throw std::runtime_error("demo task failed on purpose");
  int x = 0;
  for (int i = 0; i < n; ++i) x += i % 7;
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  try {
    args = parse(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "executor_exporter_demo: %s\n", e.what());
    return 2;
  }

  // Signals are taken synchronously by the main loop (sigtimedwait); blocked before any
  // thread starts so that every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto rollups = std::make_shared<ee::Rollups>(
      ee::RollupOptions{.collection_interval = std::chrono::seconds(2)});
  std::unique_ptr<ee::MetricsServer> server;
  try {
    // An IPv6 address goes in brackets: host:port is parsed strictly.
    const bool v6 = args.bind.find(':') != std::string::npos && args.bind.front() != '[';
    const std::string host = v6 ? "[" + args.bind + "]" : args.bind;
    ee::MetricsServerOptions options;
    options.bind_address = host + ":" + std::to_string(args.port);
    // The live status page next to /metrics, drawn from 1-minute (and coarser) rollups
    // collected every 2 s.
    ee::add_status_page(options, ee::status_source(rollups));
    server = std::make_unique<ee::MetricsServer>(options);
  } catch (const ee::BindError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  // max_workers, thread name prefix, initializer, executor id (the `executor` label).
  ee::ThreadPoolExecutor pool(4, "demo", {}, "demo");
  ee::ThreadPoolExecutor batch(2, "batch", {}, "batch");
  // Printed once the executors exist, so a scrape right after this line sees them.
  std::printf("Serving metrics on %s\n", server->url().c_str());
  std::printf("Status page: http://%s:%d/status\n",
              args.bind.find(':') != std::string::npos ? ("[" + args.bind + "]").c_str()
                                                       : args.bind.c_str(),
              server->port());
  std::fflush(stdout);

  std::mt19937 rng(42);
  const auto started = std::chrono::steady_clock::now();
  for (unsigned tick = 0;; ++tick) {
    // A 20-second cycle of 5-second phases: quiet, busy, a backlog of slow tasks,
    // a burst of failures.
    const unsigned phase = (tick / 50) % 4;
    const int tasks = phase == 0 ? 5 : phase == 1 ? 60 : 20;
    for (int i = 0; i < tasks; ++i) {
      const int slow = phase == 2 ? static_cast<int>(rng() % 40) : static_cast<int>(rng() % 3);
      const bool fail = phase == 3 ? rng() % 4 == 0 : rng() % 50 == 0;
      (void)pool.submit(work, static_cast<int>(rng() % 20000), slow, fail);
    }
    if (tick % 10 == 0) {
      auto results = batch.map([](int n) { return work(n, 5, false); }, std::vector<int>{1, 2, 3});
      (void)results;  // dropped unread: tasks that have not started are cancelled
    }

    timespec step{0, 100'000'000};
    if (sigtimedwait(&stop_signals, nullptr, &step) > 0) break;
    if (args.duration_seconds > 0 &&
        std::chrono::steady_clock::now() - started >
            std::chrono::duration<double>(args.duration_seconds)) {
      break;
    }
  }
  pool.shutdown(true, true);
  batch.shutdown(true, true);
  std::printf("Stopped.\n");
  return 0;
}
