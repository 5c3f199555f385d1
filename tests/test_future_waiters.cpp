// A future's mutex, condition variable and callback list are created by the first thread
// that waits or adds a callback, not with the task (a future's node then fits 128 bytes).
// These tests race many first waiters against each other and against the task's end or
// its cancellation: every waiter must wake and every callback run exactly once. Run under
// ThreadSanitizer they also check the hand-over of the lazily created state.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <thread>
#include <vector>

#include "pool_features_metrics.hpp"

namespace ee = executor_exporter;

namespace {
constexpr int kThreads = 6;
constexpr int kRounds = 150;

/// Starts kThreads threads that all wait at once on `f` (even ones) or add a callback to
/// it (odd ones), then runs `finish` while they do, joins them, runs `settle` (callbacks
/// run on the finishing thread after the waiters are woken: it waits for them) and checks
/// that each waiter returned and each callback ran once.
template <class Finish, class Settle>
void race_first_waiters(const ee::SharedFuture<int>& f, Finish finish, Settle settle) {
  std::atomic<int> woke{0};
  std::atomic<int> called{0};
  std::latch ready(kThreads + 1);
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ready.arrive_and_wait();
      if (t % 2 == 0) {
        f.wait();
        woke.fetch_add(1);
      } else {
        f.add_done_callback([&](const ee::SharedFuture<int>&) { called.fetch_add(1); });
      }
    });
  }
  ready.arrive_and_wait();
  finish();
  for (auto& th : threads) th.join();
  settle();
  CHECK(woke.load() == kThreads / 2);
  CHECK(called.load() == kThreads / 2);
}
}  // namespace

TEST_CASE("threads that all start waiting on one future at once are all woken when it ends",
          "[future][waiters]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_test::options(reg));
  for (int round = 0; round < kRounds; ++round) {
    std::promise<void> gate;
    auto f = pool.submit([g = gate.get_future().share(), round] {
                   g.wait();
                   return round;
                 })
                 .share();
    race_first_waiters(
        f,
        [&] {
          // Every other round gives the threads time to block first, so that both the
          // race for the waiter state and the race with the end are exercised.
          if (round % 2 == 1) std::this_thread::sleep_for(std::chrono::microseconds(300));
          gate.set_value();
        },
        [&] { pool.wait(); });
    REQUIRE(f.get() == round);
  }
}

TEST_CASE("threads that all start waiting on one queued future at once are all woken by its cancel",
          "[future][waiters]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_test::options(reg));
  std::promise<void> gate;
  auto blocker = pool.submit([g = gate.get_future().share()] { g.wait(); });
  for (int round = 0; round < kRounds; ++round) {
    auto f = pool.submit([] { return 1; }).share();
    // A cancel runs the callbacks on the cancelling thread, before it returns.
    // CHECK, not REQUIRE: leaving this lambda by an exception would destroy joinable
    // threads. The worker is held by `blocker`, so the cancel cannot lose.
    race_first_waiters(
        f,
        [&] {
          if (round % 2 == 1) std::this_thread::sleep_for(std::chrono::microseconds(300));
          CHECK(f.cancel());
        },
        [] {});
    CHECK(f.cancelled());
    CHECK_THROWS_AS(f.get(), ee::CancelledError);
  }
  gate.set_value();
  blocker.get();
  pool.shutdown();
  CHECK(pool_test::value(ee::collect(reg), "executor_tasks_cancelled_total") == kRounds);
}

TEST_CASE("a wait that timed out leaves the future usable by later waiters and callbacks",
          "[future][waiters]") {
  auto reg = std::make_shared<prometheus::Registry>();
  ee::ThreadPoolExecutor pool(1, pool_test::options(reg));
  std::promise<void> gate;
  auto f = pool.submit([g = gate.get_future().share()] {
                 g.wait();
                 return 7;
               })
               .share();
  CHECK(f.wait_for(std::chrono::milliseconds(5)) == std::future_status::timeout);
  std::atomic<int> seen{0};
  f.add_done_callback([&](const ee::SharedFuture<int>& s) { seen.store(s.get()); });
  gate.set_value();
  CHECK(f.get() == 7);
  pool.shutdown();  // the callback ran on the worker before the pool went idle
  CHECK(seen.load() == 7);
}

// The process pool's I/O thread publishes a result itself unless a callback is registered,
// and a callback must never run there. Racing callbacks against that publish: each runs
// exactly once, and never on the publishing thread.
TEST_CASE("publish_unless_callbacks never runs a callback on the publishing thread",
          "[future][waiters]") {
  for (int round = 0; round < kRounds; ++round) {
    auto* state = new ee::detail::FutureState<int>;
    ee::detail::StateRef<ee::detail::FutureState<int>> ref(state);
    state->add_ref();  // the publisher's reference
    REQUIRE(state->try_start());
    state->store_value(7);
    std::atomic<int> ran{0};
    std::atomic<bool> on_publisher{false};
    std::thread::id publisher;
    std::latch ready(2);
    std::thread registrar([&] {
      ready.arrive_and_wait();
      state->on_done([&] {
        if (std::this_thread::get_id() == publisher) on_publisher = true;
        ran.fetch_add(1);
      });
    });
    std::thread publishing([&] {
      publisher = std::this_thread::get_id();
      ready.arrive_and_wait();
      if (!state->publish_unless_callbacks()) {
        // A callback was registered first: the state is unchanged, still running.
        CHECK(state->state() == ee::detail::FutureStateBase::running);
        std::thread([state] { state->publish(); }).join();  // "the completion thread"
      }
      state->release();
    });
    registrar.join();
    publishing.join();
    CHECK(ran.load() == 1);
    CHECK_FALSE(on_publisher.load());
    CHECK(state->finished());
  }
}
