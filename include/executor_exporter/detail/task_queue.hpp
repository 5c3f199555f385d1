#pragma once

#include <condition_variable>
#include <cstddef>
#include <mutex>

#include "task.hpp"

namespace executor_exporter::detail {

/// The FIFO between submitters and workers: an intrusive list under one mutex. A
/// submit wakes a worker only when one is asleep, which skips the futex system call
/// whenever the workers are busy.
class TaskQueue {
 public:
  /// Appends `task` unless the queue is closed; `on_accept` runs under the lock before
  /// the task becomes visible to workers (the submit is counted there, so a worker can
  /// never count a start before its submit).
  template <class OnAccept>
  bool push(Task* task, OnAccept&& on_accept) {
    bool wake = false;
    {
      std::lock_guard lock(mutex_);
      if (closed_) return false;
      on_accept();
      task->next = nullptr;
      (tail_ ? tail_->next : head_) = task;
      tail_ = task;
      ++size_;
      wake = sleepers_ > 0;
    }
    if (wake) cv_.notify_one();
    return true;
  }

  /// The next task, blocking while the queue is empty and open; null once closed and
  /// drained. `waited` tells whether this call slept.
  Task* pop(bool& waited) {
    std::unique_lock lock(mutex_);
    while (head_ == nullptr && !closed_) {
      waited = true;
      ++sleepers_;
      cv_.wait(lock);
      --sleepers_;
    }
    if (head_ == nullptr) return nullptr;
    Task* task = head_;
    head_ = task->next;
    if (head_ == nullptr) tail_ = nullptr;
    --size_;
    return task;
  }

  /// Refuses further pushes; workers drain what is queued, then pop() returns null.
  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    cv_.notify_all();
  }
  bool closed() const {
    std::lock_guard lock(mutex_);
    return closed_;
  }

  /// Removes every queued task and returns them as a list linked through `next`.
  Task* take_all() {
    std::lock_guard lock(mutex_);
    Task* all = head_;
    head_ = tail_ = nullptr;
    size_ = 0;
    return all;
  }

  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return size_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  Task* head_ = nullptr;
  Task* tail_ = nullptr;
  std::size_t size_ = 0;
  std::size_t sleepers_ = 0;
  bool closed_ = false;
};

}  // namespace executor_exporter::detail
