#include <executor_exporter/metrics/detail/background_fold.hpp>
#include <executor_exporter/metrics/detail/registry_state.hpp>
#include <executor_exporter/metrics/registry.hpp>

#include <pthread.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <new>
#include <thread>

namespace executor_exporter {

namespace {

// One per process. Leaked, like the registry states it folds: an executor created or
// destroyed during static destruction may still reach it. atexit stops the thread, since
// a thread folding while the program's statics are torn down would race with them.
class BackgroundFold {
 public:
  static BackgroundFold& instance() {
    static auto* fold = [] {
      auto* f = new BackgroundFold;
      ::pthread_atfork(nullptr, nullptr, [] { instance().forget_after_fork(); });
      std::atexit([] { instance().stop(); });
      return f;
    }();
    return *fold;
  }

  void ensure_started() {
    std::lock_guard lock(*mutex_);
    if (thread_ != nullptr || exiting_) return;
    thread_ = new std::thread([this] { run(); });
  }

  void set_interval(std::chrono::milliseconds interval) {
    {
      std::lock_guard lock(*mutex_);
      interval_ = interval;
    }
    wake_->notify_all();
  }

  std::chrono::milliseconds interval() {
    std::lock_guard lock(*mutex_);
    return interval_;
  }

 private:
  void run() {
    std::unique_lock lock(*mutex_);
    while (!exiting_) {
      const auto interval = interval_;
      if (interval.count() <= 0) {
        wake_->wait(lock, [&] { return exiting_ || interval_ != interval; });
        continue;
      }
      // A shorter interval set meanwhile takes effect at once, not after the old one.
      if (wake_->wait_for(lock, interval, [&] { return exiting_ || interval_ != interval; })) {
        continue;
      }
      lock.unlock();
      detail::RegistryState::fold_every();
      lock.lock();
    }
  }

  void stop() {
    std::thread* t = nullptr;
    {
      std::lock_guard lock(*mutex_);
      exiting_ = true;
      t = thread_;
      thread_ = nullptr;
    }
    wake_->notify_all();
    if (t != nullptr) {
      t->join();
      delete t;
    }
  }

  // In a forked child the thread does not exist, and the mutex may have been copied
  // locked: start afresh with new ones (the old objects are leaked, never touched).
  void forget_after_fork() {
    thread_ = nullptr;
    mutex_ = new std::mutex;
    wake_ = new std::condition_variable;
  }

  std::mutex* mutex_ = new std::mutex;
  std::condition_variable* wake_ = new std::condition_variable;
  std::thread* thread_ = nullptr;  // guarded by *mutex_
  std::chrono::milliseconds interval_{1000};
  bool exiting_ = false;
};

}  // namespace

void set_background_fold_interval(std::chrono::milliseconds interval) {
  BackgroundFold::instance().set_interval(interval);
}

std::chrono::milliseconds background_fold_interval() {
  return BackgroundFold::instance().interval();
}

namespace detail {

void ensure_background_fold() { BackgroundFold::instance().ensure_started(); }

}  // namespace detail

}  // namespace executor_exporter
