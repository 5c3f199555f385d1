// The queue hands tasks out in batches and detaches whole segments without walking
// them (see TaskQueue::Level). Whatever the mix of pushes, pops and priorities, a
// single worker must get every task exactly once, each priority in push order, and
// every batch from the highest priorities queued when it was taken.

#include <executor_exporter/pools/detail/task_queue.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "numbered_task.hpp"

namespace ee = executor_exporter;
using ee::detail::Task;
using ee::detail::TaskQueue;

namespace {

using Numbered = ee_test::NumberedTask;

// What the queue should hold: per priority, the ids in push order.
struct Model {
  std::map<std::int32_t, std::vector<int>, std::greater<>> queued;
  std::size_t size() const {
    std::size_t n = 0;
    for (const auto& [prio, ids] : queued) n += ids.size();
    return n;
  }
  std::int32_t top() const {
    for (const auto& [prio, ids] : queued) {
      if (!ids.empty()) return prio;
    }
    return INT32_MIN;
  }
  // Removes `id`, which must be the oldest of its priority.
  void take(int id, std::int32_t prio) {
    auto& ids = queued[prio];
    REQUIRE_FALSE(ids.empty());
    REQUIRE(ids.front() == id);
    ids.erase(ids.begin());
  }
};

}  // namespace

TEST_CASE("random pushes and pops hand out every task once in priority then push order",
          "[queue]") {
  const auto seed = GENERATE(1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u);
  std::mt19937 rng(seed);
  // Few priorities and long bursts, so that queues grow past the batching threshold
  // and both the whole-segment and the walking pop run, across level boundaries.
  const std::vector<std::int32_t> prios =
      seed % 2 == 0 ? std::vector<std::int32_t>{0} : std::vector<std::int32_t>{0, 7, -3};
  TaskQueue q;
  TaskQueue::Reserve r;
  q.attach(r);
  Model model;
  std::vector<std::unique_ptr<Numbered>> tasks;
  std::set<int> seen;
  std::size_t finished = 0;
  int next_id = 0;

  auto push_burst = [&](int n) {
    for (int i = 0; i < n; ++i) {
      const std::int32_t prio = prios[rng() % prios.size()];
      tasks.push_back(std::make_unique<Numbered>(next_id, prio));
      REQUIRE(q.push(
                  tasks.back().get(), [] {}, false) == TaskQueue::PushResult::accepted);
      model.queued[prio].push_back(next_id++);
    }
    // Counts what is still in the inbox; every other time, so that pops drain it too.
    if (rng() % 2 == 0) CHECK(q.size() == model.size());
  };
  auto received = [&](Task* t) {
    auto* task = static_cast<Numbered*>(t);
    REQUIRE(seen.insert(task->id).second);
    return task;
  };
  // One pop and the batch it reserved, as a worker would run them.
  auto pop_batch = [&] {
    const std::int32_t top = model.top();
    bool waited = false;
    Task* first = q.pop(finished, waited, r);
    finished = 0;
    REQUIRE(first != nullptr);
    CHECK_FALSE(waited);
    std::vector<Numbered*> batch{received(first)};
    while (Task* t = r.take()) batch.push_back(received(t));
    finished = batch.size();  // reported at the next pop, as a worker does
    CHECK(batch.size() <= 16);
    CHECK(batch.front()->priority() == top);
    for (std::size_t i = 1; i < batch.size(); ++i) {
      CHECK(batch[i]->priority() <= batch[i - 1]->priority());  // highest first
    }
    for (auto* t : batch) model.take(t->id, t->priority());
    // Nothing left behind outranks what was taken.
    CHECK(model.top() <= batch.back()->priority());
    CHECK(q.size() == model.size());
  };

  for (int step = 0; step < 400; ++step) {
    const auto op = rng() % 10;
    if (op < 4) {
      push_burst(static_cast<int>(1 + rng() % (rng() % 4 == 0 ? 400 : 20)));
    } else if (op < 9) {
      for (auto pops = 1 + rng() % 12; pops > 0 && model.size() > 0; --pops) pop_batch();
    } else if (model.size() > 0 && rng() % 4 == 0) {
      // take_all, as shutdown(cancel_futures) does: what is left, in run order.
      std::vector<Numbered*> rest;
      for (Task* t = q.take_all(); t != nullptr; t = t->next) rest.push_back(received(t));
      for (std::size_t i = 1; i < rest.size(); ++i) {
        CHECK(rest[i]->priority() <= rest[i - 1]->priority());
      }
      for (auto* t : rest) model.take(t->id, t->priority());
      CHECK(model.size() == 0);
      CHECK(q.size() == 0);
    }
  }
  while (model.size() > 0) pop_batch();
  CHECK(seen.size() == tasks.size());
  q.close();
  bool waited = false;
  CHECK(q.pop(finished, waited, r) == nullptr);
  q.detach(r);
}

TEST_CASE("a push racing close() is refused or run or handed back as cancelled and never lost",
          "[queue]") {
  constexpr int kProducers = 3;
  constexpr int kEach = 300;
  for (int round = 0; round < 100; ++round) {
    TaskQueue q;
    std::vector<std::unique_ptr<Numbered>> tasks;
    for (int i = 0; i < kProducers * kEach; ++i) tasks.push_back(std::make_unique<Numbered>(i, 0));
    std::atomic<int> counted{0}, accepted{0}, cancelled{0}, refused{0};
    std::vector<char> popped(tasks.size(), 0);

    TaskQueue::Reserve r;
    q.attach(r);
    std::thread worker([&] {
      std::size_t finished = 0;
      for (;;) {
        bool waited = false;
        Task* t = q.pop(finished, waited, r);
        if (t == nullptr) break;
        finished = 0;
        for (; t != nullptr; t = r.take()) {
          ++popped[static_cast<std::size_t>(static_cast<Numbered*>(t)->id)];
          ++finished;
        }
      }
    });
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
      producers.emplace_back([&, p] {
        for (int i = 0; i < kEach; ++i) {
          Task* t = tasks[static_cast<std::size_t>(p * kEach + i)].get();
          switch (q.push(
              t, [&] { ++counted; }, false)) {
            case TaskQueue::PushResult::accepted:
              ++accepted;
              break;
            case TaskQueue::PushResult::cancelled:
              ++cancelled;
              break;
            default:
              ++refused;
              break;
          }
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50 * (round % 7)));
    q.close();
    for (auto& t : producers) t.join();
    worker.join();
    q.detach(r);

    int ran = 0;
    for (char c : popped) {
      REQUIRE(c <= 1);  // at most once
      ran += c;
    }
    // Counted exactly when accepted or cancelled; every accepted task ran.
    REQUIRE(counted == accepted + cancelled);
    REQUIRE(ran == accepted);
    REQUIRE(accepted + cancelled + refused == kProducers * kEach);
  }
}
