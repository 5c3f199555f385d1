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

  // On the executor's thread: never waits for the sink, only for the buffer's lock.
  void push(const TaskEvent& event) {
    bool dropped = false;
    {
      std::lock_guard lock(mutex_);
      if (buffer_.size() >= options_.buffer_capacity) {
        buffer_.pop_front();
        dropped = true;
      }
      buffer_.push_back(event);
      ++pushed_;
    }
    if (dropped) dropped_.Increment();
    wake_.notify_one();
  }

  bool flush(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    const std::uint64_t target = pushed_;
    return done_.wait_until(lock, deadline, [&] { return handled_ >= target; });
  }

 private:
  void run() {
    std::vector<TaskEvent> batch;
    std::unique_lock lock(mutex_);
    for (;;) {
      const bool woke = wake_.wait_for(lock, options_.idle_interval,
                                       [&] { return stopping_ || !buffer_.empty(); });
      if (buffer_.empty()) {
        if (stopping_) break;
        if (!woke) guarded([&] { sink_->idle(); }, lock);
        continue;
      }
      const std::size_t n = std::min(buffer_.size(), std::max<std::size_t>(1, options_.max_batch));
      batch.assign(std::make_move_iterator(buffer_.begin()),
                   std::make_move_iterator(buffer_.begin() + static_cast<std::ptrdiff_t>(n)));
      buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(n));
      // Events dropped from the buffer before this batch count as handled too.
      const std::uint64_t handled = pushed_ - buffer_.size();
      guarded([&] { sink_->write(batch); }, lock);
      delivered_.Increment(static_cast<double>(batch.size()));
      handled_ = handled;
      done_.notify_all();
    }
    guarded([&] { sink_->idle(); }, lock);  // the last flush
    handled_ = pushed_;
    done_.notify_all();
  }

  // Calls the sink without the buffer's lock; what it throws is counted and reported.
  template <class F>
  void guarded(F&& f, std::unique_lock<std::mutex>& lock) {
    lock.unlock();
    try {
      f();
    } catch (...) {
      errors_.Increment();
      detail::report_sink_error(options_.on_error, std::current_exception());
    }
    lock.lock();
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
  subscriptions_.push_back(
      std::make_unique<Subscription>(std::move(sink), std::move(filter), options_));
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
    std::lock_guard lock(mutex_);
    for (const auto& s : subscriptions_) {
      if (s->filter().matches(event)) s->push(event);
    }
  } catch (...) {
    // Out of memory copying an event: it is lost, the executor is not disturbed.
  }
}

namespace {

// The library's monotonic nanoseconds as Unix-epoch nanoseconds, by the offset between
// the two clocks now (0 stays 0: not measured).
struct WallClock {
  std::int64_t offset;
  WallClock()
      : offset(static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count()) -
               static_cast<std::int64_t>(now_ns())) {}
  std::uint64_t operator()(std::uint64_t mono) const {
    return mono == 0 ? 0 : static_cast<std::uint64_t>(static_cast<std::int64_t>(mono) + offset);
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
