#include <executor_exporter/events/event_stream.hpp>
#include <executor_exporter/events/task_description.hpp>
#include <executor_exporter/metrics/detail/registry_state.hpp>

#include "sink_error.hpp"

#include <prometheus/counter.h>

#include <cxxabi.h>

#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <stdexcept>
#include <thread>
#include <typeinfo>
#include <utility>

namespace executor_exporter {

std::string_view to_string(EventKind kind) noexcept {
  switch (kind) {
    case EventKind::submitted:
      return "submitted";
    case EventKind::rejected:
      return "rejected";
    case EventKind::started:
      return "started";
    case EventKind::completed:
      return "completed";
    case EventKind::failed:
      return "failed";
    case EventKind::cancelled:
      return "cancelled";
    case EventKind::expired:
      return "expired";
    case EventKind::worker_started:
      return "worker_started";
    case EventKind::worker_stopped:
      return "worker_stopped";
  }
  return "unknown";
}

bool EventFilter::matches(const TaskEvent& e) const {
  return (kinds.empty() || kinds.count(e.kind) != 0) &&
         (executors.empty() || executors.count(e.executor) != 0) &&
         (tasks.empty() || tasks.count(e.task) != 0);
}

namespace {

std::string demangle(const char* name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string out = status == 0 && d != nullptr ? d : name;
  std::free(d);  // NOLINT(cppcoreguidelines-no-malloc): __cxa_demangle's contract
  return out;
}

prometheus::Counter& sink_counter(const std::shared_ptr<prometheus::Registry>& registry, Metric m,
                                  const std::string& sink) {
  return detail::RegistryState::of(registry)->counter_family(m)->Add({{"sink", sink}});
}

}  // namespace

// One sink: its filter, its bounded buffer, and the thread that drains it.
class EventStream::Subscription {
 public:
  Subscription(std::shared_ptr<EventSink> sink, EventFilter filter,
               const EventStreamOptions& options)
      : sink_(std::move(sink)),
        name_(sink_->name()),
        filter_(std::move(filter)),
        options_(options),
        delivered_(sink_counter(options.registry, Metric::events_delivered, name_)),
        dropped_(sink_counter(options.registry, Metric::events_dropped, name_)),
        errors_(sink_counter(options.registry, Metric::event_sink_errors, name_)),
        thread_([this] { run(); }) {}

  ~Subscription() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    // A sink stuck retrying would otherwise keep the join below waiting.
    sink_->stopping();
    thread_.join();
  }

  const std::string& name() const { return name_; }
  const EventFilter& filter() const { return filter_; }

  // On the executor's thread: never waits for the sink, only for the buffer's lock,
  // which the drainer holds only for O(1) steps (it swaps the whole buffer out).
  void push(const TaskEvent& event) {
    bool dropped = false;
    bool wake = false;
    {
      std::lock_guard lock(mutex_);
      if (buffer_.size() + in_flight_ >= options_.buffer_capacity) {
        dropped = true;
        // The oldest events are the drainer's, taken but not yet written: it skips one.
        if (in_flight_ > 0) {
          --in_flight_;
          ++skip_;
        } else {
          buffer_.pop_front();
        }
      }
      buffer_.push_back(event);
      ++pushed_;
      wake = sleeping_;
    }
    if (dropped) dropped_.Increment();
    // Only a sleeping drainer needs the futex call; one that is busy takes this event with
    // its next batch. Under load that saves a syscall per event.
    if (wake) wake_.notify_one();
  }

  bool flush(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    const std::uint64_t target = pushed_;
    return done_.wait_until(lock, deadline, [&] { return handled_ >= target; });
  }

 private:
  void run() {
    std::deque<TaskEvent> taken;
    std::vector<TaskEvent> batch;
    std::unique_lock lock(mutex_);
    for (;;) {
      sleeping_ = true;
      const bool woke = wake_.wait_for(lock, options_.idle_interval,
                                       [&] { return stopping_ || !buffer_.empty(); });
      sleeping_ = false;
      if (buffer_.empty()) {
        if (stopping_) break;
        if (!woke) {
          lock.unlock();
          guarded([&] { sink_->idle(); });
          lock.lock();
        }
        continue;
      }
      // Everything buffered, in O(1): producers never wait behind a copy.
      taken.swap(buffer_);
      in_flight_ = taken.size();
      std::size_t next = 0;
      while (in_flight_ > 0) {
        next += std::exchange(skip_, 0);  // dropped by producers while we wrote
        const std::size_t n = std::min(in_flight_, std::max<std::size_t>(1, options_.max_batch));
        in_flight_ -= n;
        lock.unlock();
        const auto first = taken.begin() + static_cast<std::ptrdiff_t>(next);
        batch.assign(std::make_move_iterator(first),
                     std::make_move_iterator(first + static_cast<std::ptrdiff_t>(n)));
        next += n;
        guarded([&] { sink_->write(batch); });
        delivered_.Increment(static_cast<double>(batch.size()));
        lock.lock();
      }
      skip_ = 0;
      taken.clear();
      // What was taken is written or dropped; so is whatever left the buffer meanwhile.
      handled_ = pushed_ - buffer_.size();
      done_.notify_all();
    }
    lock.unlock();
    guarded([&] { sink_->idle(); });  // the last flush
    lock.lock();
    handled_ = pushed_;
    done_.notify_all();
  }

  // Calls the sink without the buffer's lock; what it throws is counted and reported.
  template <class F>
  void guarded(F&& f) {
    try {
      f();
    } catch (...) {
      errors_.Increment();
      detail::report_sink_error(options_.on_error, std::current_exception());
    }
  }

  std::shared_ptr<EventSink> sink_;
  std::string name_;
  EventFilter filter_;
  const EventStreamOptions& options_;
  prometheus::Counter& delivered_;
  prometheus::Counter& dropped_;
  prometheus::Counter& errors_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::deque<TaskEvent> buffer_;  // guarded by mutex_
  std::uint64_t pushed_ = 0;      // guarded by mutex_
  std::uint64_t handled_ = 0;     // guarded by mutex_: written, dropped or being dropped
  bool stopping_ = false;         // guarded by mutex_
  bool sleeping_ = false;         // guarded by mutex_: the drainer waits on wake_
  std::size_t in_flight_ = 0;     // guarded by mutex_: taken by the drainer, not yet written
  std::size_t skip_ = 0;          // guarded by mutex_: of those, dropped (the oldest first)
  std::thread thread_;            // last: starts once the members above exist
};

EventStream::EventStream(EventStreamOptions options) : options_(std::move(options)) {
  if (!options_.registry) options_.registry = default_registry();
  if (options_.buffer_capacity == 0) {
    throw std::invalid_argument("executor_exporter: EventStream buffer_capacity must be above 0");
  }
}

EventStream::~EventStream() {
  std::lock_guard lock(mutex_);
  subscriptions_.clear();  // each delivers what it holds, then stops
}

void EventStream::add_sink(std::shared_ptr<EventSink> sink, EventFilter filter) {
  if (!sink) throw std::invalid_argument("executor_exporter: EventStream sink must not be null");
  std::lock_guard lock(mutex_);
  const std::string name = sink->name();
  for (const auto& s : subscriptions_) {
    if (s->name() == name) {
      throw std::invalid_argument("executor_exporter: an event sink named '" + name +
                                  "' is already attached");
    }
  }
  const std::size_t n = published_count_.load(std::memory_order_relaxed);
  if (n == published_.size()) {
    throw std::invalid_argument("executor_exporter: an EventStream takes at most " +
                                std::to_string(published_.size()) + " sinks");
  }
  subscriptions_.push_back(
      std::make_unique<Subscription>(std::move(sink), std::move(filter), options_));
  published_[n].store(subscriptions_.back().get(), std::memory_order_relaxed);
  published_count_.store(n + 1, std::memory_order_release);
}

bool EventStream::flush(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Not under mutex_, which publish() takes on executors' threads. Subscriptions are
  // removed only by the destructor, so the pointers stay valid.
  std::vector<Subscription*> all;
  {
    std::lock_guard lock(mutex_);
    for (const auto& s : subscriptions_) all.push_back(s.get());
  }
  bool ok = true;
  for (auto* s : all) ok = s->flush(deadline) && ok;
  return ok;
}

void EventStream::publish(TaskEvent&& event) noexcept {
  try {
    // No lock of the stream's: executors' threads publish at once, and a shared mutex
    // here was most of an event's cost (futex waits on 2 cores).
    const std::size_t n = published_count_.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < n; ++i) {
      Subscription* s = published_[i].load(std::memory_order_relaxed);
      if (s->filter().matches(event)) s->push(event);
    }
  } catch (...) {
    // Out of memory copying an event: it is lost, the executor is not disturbed.
  }
}

namespace {

// The library's monotonic nanoseconds as Unix-epoch nanoseconds, by the offset between
// the two clocks (0 stays 0: not measured). Reading the system clock for every event was
// a tenth of an event's cost, so the offset is measured at most every 100 ms per thread;
// the wall clock may be stepped (NTP) in between, which moves events by the step at most
// until the next measure.
struct WallClock {
  std::int64_t offset;
  WallClock() : offset(current_offset()) {}
  std::uint64_t operator()(std::uint64_t mono) const {
    return mono == 0 ? 0 : static_cast<std::uint64_t>(static_cast<std::int64_t>(mono) + offset);
  }

 private:
  static std::int64_t current_offset() {
    thread_local std::uint64_t measured_at = 0;
    thread_local std::int64_t cached = 0;
    const std::uint64_t mono = now_ns();
    if (measured_at == 0 || mono - measured_at > 100'000'000) {
      cached = static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count()) -
               static_cast<std::int64_t>(mono);
      measured_at = mono;
    }
    return cached;
  }
};

}  // namespace

TaskEvent EventStream::task_event(EventKind kind, const TaskInfo& task) const {
  const WallClock wall;
  TaskEvent e;
  e.kind = kind;
  e.executor = task.executor;
  e.executor_type = task.executor_type;
  e.task = task.task;
  e.task_id = task.task_id;
  e.count = task.count;
  e.at_unix_ns = wall(now_ns());
  e.submitted_unix_ns = wall(task.submit_ns);
  e.started_unix_ns = wall(task.start_ns);
  e.finished_unix_ns = wall(task.end_ns);
  e.wait_ns = task.wait_ns();
  e.run_ns = task.run_ns();
  return e;
}

void EventStream::on_submitted(const TaskInfo& task) noexcept {
  try {
    auto e = task_event(EventKind::submitted, task);
    e.description = TaskDescription::current();
    publish(std::move(e));
  } catch (...) {
  }
}

void EventStream::on_rejected(const TaskInfo& task, RejectReason reason) noexcept {
  try {
    auto e = task_event(EventKind::rejected, task);
    e.reason = label_values(spec(Metric::tasks_rejected))[static_cast<std::size_t>(reason)];
    e.description = TaskDescription::current();
    publish(std::move(e));
  } catch (...) {
  }
}

void EventStream::on_started(const TaskInfo& task) noexcept {
  try {
    publish(task_event(EventKind::started, task));
  } catch (...) {
  }
}

void EventStream::on_finished(const TaskInfo& task, std::exception_ptr error) noexcept {
  try {
    auto e = task_event(error ? EventKind::failed : EventKind::completed, task);
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& x) {
        e.error_type = demangle(typeid(x).name());
        e.error_message = x.what();
      } catch (...) {
        const std::type_info* t = abi::__cxa_current_exception_type();
        e.error_type = t != nullptr ? demangle(t->name()) : "unknown";
      }
    }
    publish(std::move(e));
  } catch (...) {
  }
}

void EventStream::on_cancelled(const TaskInfo& task) noexcept {
  try {
    publish(task_event(EventKind::cancelled, task));
  } catch (...) {
  }
}

void EventStream::on_expired(const TaskInfo& task) noexcept {
  try {
    publish(task_event(EventKind::expired, task));
  } catch (...) {
  }
}

TaskEvent EventStream::worker_event(EventKind kind, const WorkerInfo& worker) const {
  const WallClock wall;
  TaskEvent e;
  e.kind = kind;
  e.executor = worker.executor;
  e.executor_type = worker.executor_type;
  e.reason = worker.reason;
  e.count = 0;  // no task
  e.at_unix_ns = wall(worker.at_ns != 0 ? worker.at_ns : now_ns());
  return e;
}

void EventStream::on_worker_started(const WorkerInfo& worker) noexcept {
  try {
    publish(worker_event(EventKind::worker_started, worker));
  } catch (...) {
  }
}

void EventStream::on_worker_stopped(const WorkerInfo& worker) noexcept {
  try {
    publish(worker_event(EventKind::worker_stopped, worker));
  } catch (...) {
  }
}

}  // namespace executor_exporter
