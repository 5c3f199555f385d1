#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <string>
#include <vector>

#include <executor_exporter/errors.hpp>
#include <executor_exporter/pools/future.hpp>

namespace executor_exporter {

/// When wait() returns (Python's concurrent.futures.wait return_when).
enum class ReturnWhen {
  first_completed,  ///< as soon as any future finished (or was cancelled)
  first_exception,  ///< as soon as any future finished with an exception; else all
  all_completed,    ///< when every future finished
};

/// What wait() found: positions in the given container, each list in increasing order.
struct WaitResult {
  /// Futures that were finished (value, exception or cancelled) on return.
  std::vector<std::size_t> done;
  /// Futures still pending or running on return.
  std::vector<std::size_t> not_done;
};

namespace detail {

// A finish signal shared with the done-callbacks of the futures being watched; shared
// because the callbacks may run after the waiting call returned.
struct Mailbox {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<std::size_t> finished;  // positions, in completion order
  std::size_t failures = 0;          // finished with an exception (not cancelled)

  template <class Fut>
  void watch(const Fut& future, std::size_t index, const std::shared_ptr<Mailbox>& self) {
    using T = typename Fut::value_type;
    future.add_done_callback([self, index](const SharedFuture<T>& f) {
      const bool failed = !f.cancelled() && f.exception() != nullptr;
      {
        std::lock_guard lock(self->mutex);
        self->finished.push_back(index);
        if (failed) ++self->failures;
      }
      self->cv.notify_all();
    });
  }
};

template <class Fut>
const Fut& as_const_future(Fut& f) {
  return f;
}

}  // namespace detail

/// Python's concurrent.futures.wait: blocks until `return_when` holds for the futures in
/// `futures` (a range of Future<T> or SharedFuture<T>, left valid) or `timeout` passed,
/// and tells which are done. No timeout waits as long as needed. It registers one done
/// callback per future, which outlives the call harmlessly if the future finishes later.
template <std::ranges::range Range>
WaitResult wait(Range& futures, ReturnWhen return_when = ReturnWhen::all_completed,
                std::optional<std::chrono::steady_clock::duration> timeout = std::nullopt) {
  // A plain time point (max = no limit) rather than an optional: simpler to wait on.
  const auto deadline = timeout ? std::chrono::steady_clock::now() + *timeout
                                : std::chrono::steady_clock::time_point::max();
  auto box = std::make_shared<detail::Mailbox>();
  std::size_t n = 0;
  for (auto& f : futures) box->watch(detail::as_const_future(f), n++, box);
  {
    std::unique_lock lock(box->mutex);
    auto satisfied = [&] {
      const std::size_t finished = box->finished.size();
      switch (return_when) {
        case ReturnWhen::first_completed:
          return finished > 0 || n == 0;
        case ReturnWhen::first_exception:
          return box->failures > 0 || finished == n;
        case ReturnWhen::all_completed:
          break;
      }
      return finished == n;
    };
    if (deadline != std::chrono::steady_clock::time_point::max()) {
      box->cv.wait_until(lock, deadline, satisfied);
    } else {
      box->cv.wait(lock, satisfied);
    }
  }
  WaitResult result;
  std::size_t i = 0;
  for (auto& f : futures) (f.done() ? result.done : result.not_done).push_back(i++);
  return result;
}

/// Python's as_completed: iterating yields references to the futures of `futures`
/// (a range of Future<T> or SharedFuture<T>, which must outlive the iteration) in the
/// order they finish. With a timeout, advancing past the last finished future more than
/// `timeout` after the call throws TimeoutError. Each future is yielded exactly once.
template <std::ranges::random_access_range Range>
class AsCompleted {
 public:
  using future_type = std::ranges::range_value_t<Range>;

  /// Starts watching every future of `futures` now.
  AsCompleted(Range& futures, std::optional<std::chrono::steady_clock::duration> timeout)
      : futures_(&futures), box_(std::make_shared<detail::Mailbox>()) {
    if (timeout) deadline_ = std::chrono::steady_clock::now() + *timeout;
    std::size_t n = 0;
    for (auto& f : futures) box_->watch(detail::as_const_future(f), n++, box_);
    total_ = n;
  }

  /// Input iterator over the finished futures; ++ waits for the next one.
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = future_type;
    using difference_type = std::ptrdiff_t;
    using reference = future_type&;

    iterator() = default;
    explicit iterator(AsCompleted* owner) : owner_(owner) { advance(); }
    reference operator*() const { return (*owner_->futures_)[index_]; }
    iterator& operator++() {
      advance();
      return *this;
    }
    void operator++(int) { advance(); }
    bool operator==(std::default_sentinel_t) const { return owner_ == nullptr; }

   private:
    void advance() {
      if (owner_ == nullptr) return;
      auto next = owner_->next();
      if (!next) {
        owner_ = nullptr;
      } else {
        index_ = *next;
      }
    }
    AsCompleted* owner_ = nullptr;
    std::size_t index_ = 0;
  };

  /// Waits for the first finished future.
  iterator begin() { return iterator(this); }
  /// The end of the iteration (every future yielded).
  std::default_sentinel_t end() const { return {}; }

 private:
  std::optional<std::size_t> next() {
    if (yielded_ == total_) return std::nullopt;
    std::unique_lock lock(box_->mutex);
    auto ready = [&] { return !box_->finished.empty(); };
    if (deadline_) {
      if (!box_->cv.wait_until(lock, *deadline_, ready)) {
        throw TimeoutError("as_completed: " + std::to_string(total_ - yielded_) +
                           " futures not finished within the timeout");
      }
    } else {
      box_->cv.wait(lock, ready);
    }
    const std::size_t index = box_->finished.front();
    box_->finished.pop_front();
    ++yielded_;
    return index;
  }

  Range* futures_;
  std::shared_ptr<detail::Mailbox> box_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  std::size_t total_ = 0;
  std::size_t yielded_ = 0;
};

/// Yields the futures of `futures` as they finish (Python's as_completed):
///   for (auto& f : as_completed(futures, 5s)) use(f.get());
template <std::ranges::random_access_range Range>
AsCompleted<Range> as_completed(
    Range& futures, std::optional<std::chrono::steady_clock::duration> timeout = std::nullopt) {
  return AsCompleted<Range>(futures, timeout);
}

}  // namespace executor_exporter
