// ProcessPoolExecutor benchmarks, Google Benchmark, standalone:
//
//   g++ -std=c++20 -O2 -DNDEBUG -Iinclude bench/process_pool_bench.cpp src/*.cpp
//       -lbenchmark -lprometheus-cpp-pull -lprometheus-cpp-core -lfmt -lz -pthread
//       -o process_pool_bench && ./process_pool_bench
//
// Rows: trivial-task throughput with 2 workers and 20 k no-op tasks, submitted one by one
// then waited for (Python: ~1-1.5 k tasks/s here) and through map(chunksize=100) (Python:
// ~70-80 k items/s); one task's round trip; the cost of a worker respawn (a task that kills
// its worker, then the next task on the replacement); codec encode/decode speed; and the
// floor under the first two: the same bytes over the same sockets with no library at all.
#include <benchmark/benchmark.h>

#include <executor_exporter/process/codec.hpp>
#include <executor_exporter/process/detail/frame.hpp>
#include <executor_exporter/process/process_pool_executor.hpp>

#include <prometheus/registry.h>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

namespace ee = executor_exporter;

namespace {

int noop(int x) { return x; }
int die() {
  ::signal(SIGKILL, SIG_DFL);
  ::raise(SIGKILL);
  return 0;
}

ee::ProcessPoolOptions bench_options() {
  ee::ProcessPoolOptions o;
  o.max_workers = 2;
  o.max_inflight_per_worker = 32;
  o.thread_check = ee::ThreadCheck::allow;
  o.crash_loop_limit = 1'000'000;  // the respawn row crashes on purpose
  o.registry = std::make_shared<prometheus::Registry>();
  o.id = "bench";
  return o;
}

// Destroyed at exit, so the workers and the zygote are stopped and reaped.
ee::ProcessPoolExecutor& pool() {
  static ee::ProcessPoolExecutor p(bench_options());
  return p;
}

// Submits state.range(0) tasks one by one, then waits for all of them.
void submit_then_wait(benchmark::State& state, ee::ProcessPoolExecutor& p) {
  const auto n = static_cast<int>(state.range(0));
  std::vector<ee::Future<int>> futures;
  futures.reserve(static_cast<std::size_t>(n));
  for (auto _ : state) {
    futures.clear();
    for (int i = 0; i < n; ++i) futures.push_back(p.submit(noop, i));
    for (auto& f : futures) benchmark::DoNotOptimize(f.get());
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void round_trip(benchmark::State& state, ee::ProcessPoolExecutor& p) {
  for (auto _ : state) benchmark::DoNotOptimize(p.submit(noop, 1).get());
}

void BM_SubmitThenWait(benchmark::State& state) { submit_then_wait(state, pool()); }
BENCHMARK(BM_SubmitThenWait)->Arg(20'000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_MapChunked(benchmark::State& state) {
  const auto n = static_cast<int>(state.range(0));
  auto& p = pool();
  std::vector<int> items(static_cast<std::size_t>(n));
  std::iota(items.begin(), items.end(), 0);
  for (auto _ : state) {
    auto results = p.map(noop, items, {.chunksize = 100});
    for (int v : results) benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_MapChunked)->Arg(20'000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_RoundTrip(benchmark::State& state) { round_trip(state, pool()); }
BENCHMARK(BM_RoundTrip)->Unit(benchmark::kMicrosecond)->UseRealTime();

// The same with ExporterOptions::task_cpu_time: each worker reads its process CPU clock
// around each task (two system calls) and the parent records it in the CPU histogram.
ee::ProcessPoolExecutor& cpu_pool() {
  static ee::ProcessPoolExecutor p([] {
    auto o = bench_options();
    o.id = "bench_cpu";
    o.exporter.task_cpu_time = true;
    return o;
  }());
  return p;
}

void BM_SubmitThenWaitTaskCpu(benchmark::State& state) { submit_then_wait(state, cpu_pool()); }
BENCHMARK(BM_SubmitThenWaitTaskCpu)->Arg(20'000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_RoundTripTaskCpu(benchmark::State& state) { round_trip(state, cpu_pool()); }
BENCHMARK(BM_RoundTripTaskCpu)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_Respawn(benchmark::State& state) {
  auto& p = pool();
  for (auto _ : state) {
    try {
      p.submit(die).get();
    } catch (const ee::WorkerCrashedError&) {
    }
    // Both workers must be back for the next round; two tasks in a row reach both.
    benchmark::DoNotOptimize(p.submit(noop, 1).get());
  }
}
BENCHMARK(BM_Respawn)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(50);

std::map<std::string, std::vector<double>> codec_value() {
  std::map<std::string, std::vector<double>> m;
  for (int i = 0; i < 16; ++i) m["series_" + std::to_string(i)] = std::vector<double>(64, i * 0.5);
  return m;
}

void BM_CodecEncode(benchmark::State& state) {
  const auto v = codec_value();
  std::size_t bytes = 0;
  for (auto _ : state) {
    auto s = ee::encode_to_string(v);
    bytes += s.size();
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_CodecEncode);

void BM_CodecDecode(benchmark::State& state) {
  const auto s = ee::encode_to_string(codec_value());
  for (auto _ : state) {
    auto v = ee::decode_message<std::map<std::string, std::vector<double>>>(s);
    benchmark::DoNotOptimize(v);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * s.size()));
}
BENCHMARK(BM_CodecDecode);

void BM_CodecSmallArgs(benchmark::State& state) {
  for (auto _ : state) {
    auto s = ee::encode_to_string(std::int64_t{42}, std::string("key"), 3.5);
    auto t = ee::decode_all<std::int64_t, std::string, double>(s);
    benchmark::DoNotOptimize(t);
  }
}
BENCHMARK(BM_CodecSmallArgs);

// ---- The floor: the same bytes with no library -------------------------------------
//
// What a process boundary costs on this machine with this design (a stream socket per
// worker, one send per answered task in the worker, batched sends in the parent): two
// forked echo processes answer each frame with a frame of the size the real worker
// sends; the parent keeps the pool's window (max_inflight_per_worker) in flight per
// worker and waits with poll(). No encoding, no futures, no threads, no metrics: the
// process pool's rows divided by these say how close to the machine it is.
class RawEcho {
 public:
  RawEcho(int workers, std::size_t reply_bytes) {
    // Allocated before fork(): the pool's threads may hold malloc's lock at that moment,
    // and a child must not allocate.
    const std::string reply(reply_bytes, 'r');
    std::vector<char> buf(1 << 16);
    for (int i = 0; i < workers; ++i) {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
      const pid_t pid = ::fork();
      if (pid == 0) {
        ::close(sv[0]);
        for (const auto& p : peers_) ::close(p.fd);  // or a sibling never sees its EOF
        echo(sv[1], reply, buf);
      }
      ::close(sv[1]);
      peers_.push_back({sv[0], pid});
    }
  }
  RawEcho(const RawEcho&) = delete;
  RawEcho& operator=(const RawEcho&) = delete;
  ~RawEcho() {
    for (auto& p : peers_) ::close(p.fd);
    for (auto& p : peers_) ::waitpid(p.pid, nullptr, 0);
  }

  // Sends `count` copies of `frame` spread over the workers, at most `window` unanswered
  // per worker, and returns when every answer has arrived.
  void run(std::size_t count, const std::string& frame, std::size_t window) {
    struct State {
      std::size_t inflight = 0;
      std::size_t pending_bytes = 0;  // of the answer being read
      std::string out;
    };
    std::vector<State> st(peers_.size());
    std::vector<pollfd> fds(peers_.size());
    std::vector<char> buf(1 << 16);
    std::size_t to_send = count;
    std::size_t answered = 0;
    while (answered < count) {
      for (std::size_t i = 0; i < peers_.size(); ++i) {
        auto& s = st[i];
        const std::size_t k = std::min(to_send, window - s.inflight);
        for (std::size_t j = 0; j < k; ++j) s.out += frame;
        s.inflight += k;
        to_send -= k;
        if (!s.out.empty()) {
          if (!send_all(peers_[i].fd, s.out)) std::abort();
          s.out.clear();
        }
        fds[i] = {peers_[i].fd, POLLIN, 0};
      }
      if (::poll(fds.data(), fds.size(), -1) < 0) continue;
      for (std::size_t i = 0; i < peers_.size(); ++i) {
        if ((fds[i].revents & POLLIN) == 0) continue;
        const ssize_t n = ::recv(peers_[i].fd, buf.data(), buf.size(), MSG_DONTWAIT);
        if (n <= 0) continue;
        // Answers are counted by size: each is a header plus its declared payload.
        std::size_t left = static_cast<std::size_t>(n);
        auto& s = st[i];
        while (left > 0) {
          if (s.pending_bytes == 0) s.pending_bytes = reply_size_;
          const std::size_t take = std::min(left, s.pending_bytes);
          s.pending_bytes -= take;
          left -= take;
          if (s.pending_bytes == 0) {
            --s.inflight;
            ++answered;
          }
        }
      }
    }
  }
  void set_reply_size(std::size_t n) { reply_size_ = n; }

 private:
  struct Peer {
    int fd;
    pid_t pid;
  };

  static bool send_all(int fd, const std::string& bytes) {
    std::size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t k = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) return false;
      off += static_cast<std::size_t>(k);
    }
    return true;
  }

  // The worker's loop with nothing in it: split the stream into frames by their declared
  // length and answer each with one send, as the real worker does.
  [[noreturn]] static void echo(int fd, const std::string& reply, std::vector<char>& buf) {
    std::size_t have = 0;
    for (;;) {
      const ssize_t n = ::read(fd, buf.data() + have, buf.size() - have);
      if (n <= 0) ::_exit(0);
      have += static_cast<std::size_t>(n);
      std::size_t pos = 0;
      while (have - pos >= executor_exporter::detail::kFrameHeaderSize) {
        std::uint32_t len = 0;
        std::memcpy(&len, buf.data() + pos + 13, sizeof len);
        const std::size_t whole = executor_exporter::detail::kFrameHeaderSize + len;
        if (have - pos < whole) break;
        pos += whole;
        if (!send_all(fd, reply)) ::_exit(1);
      }
      std::memmove(buf.data(), buf.data() + pos, have - pos);
      have -= pos;
    }
  }

  std::vector<Peer> peers_;
  std::size_t reply_size_ = 0;
};

// The frames the pool sends and receives for one `int noop(int)` task, and for one map
// chunk of `chunk` ints: the real encoders, so the bytes are the same.
std::pair<std::string, std::string> noop_frames(std::size_t chunk) {
  namespace d = executor_exporter::detail;
  if (chunk == 0) {
    return {d::encode_task_frame(1, 2, ee::encode_to_string(std::uint64_t{3}, 7)),
            d::encode_result_frame(1, ee::encode_to_string(7), 4, 5)};
  }
  const std::vector<int> items(chunk, 7);
  return {d::encode_task_frame(1, 2, ee::encode_to_string(std::uint64_t{3}, items)),
          d::encode_result_frame(1, ee::encode_to_string(items), 4, 5)};
}

void raw_floor(benchmark::State& state, std::size_t chunk, std::size_t window) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto [task, reply] = noop_frames(chunk);
  RawEcho echo(2, reply.size());
  echo.set_reply_size(reply.size());
  const std::size_t frames = chunk == 0 ? n : n / chunk;
  for (auto _ : state) echo.run(frames, task, window);
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
  state.counters["task_bytes"] = static_cast<double>(task.size());
  state.counters["reply_bytes"] = static_cast<double>(reply.size());
}

// Submit-then-wait's bytes: one frame per task, the pool's window of 32 per worker.
void BM_RawFloorSubmit(benchmark::State& state) { raw_floor(state, 0, 32); }
BENCHMARK(BM_RawFloorSubmit)->Arg(20'000)->Unit(benchmark::kMillisecond)->UseRealTime();

// Chunked map's bytes: one frame per 100 items.
void BM_RawFloorMap(benchmark::State& state) { raw_floor(state, 100, 32); }
BENCHMARK(BM_RawFloorMap)->Arg(20'000)->Unit(benchmark::kMillisecond)->UseRealTime();

// One frame there and back: the round trip's floor.
void BM_RawFloorRoundTrip(benchmark::State& state) {
  const auto [task, reply] = noop_frames(0);
  RawEcho echo(1, reply.size());
  echo.set_reply_size(reply.size());
  for (auto _ : state) echo.run(1, task, 1);
}
BENCHMARK(BM_RawFloorRoundTrip)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
