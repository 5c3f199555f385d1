#pragma once

#include <cstddef>
#include <functional>
#include <future>
#include <memory>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

namespace executor_exporter::adapters {

/// Gives boost::asio::thread_pool the submit/shutdown shape that
/// InstrumentedExecutorProxy expects, proving the proxy works over a third-party
/// executor. The asio pool is held by pointer so the adapter can move into the proxy.
/// shutdown(wait=false, cancel_futures=true) stops the pool, which destroys queued
/// handlers unrun: the proxy counts those tasks as cancelled.
class AsioThreadPool {
 public:
  explicit AsioThreadPool(std::size_t threads)
      : pool_(std::make_unique<boost::asio::thread_pool>(threads)) {}

  /// Posts `task` and returns a future that is ready when it ran.
  std::future<void> submit(std::function<void()> task) {
    auto packaged = std::make_shared<std::packaged_task<void()>>(std::move(task));
    auto future = packaged->get_future();
    boost::asio::post(*pool_, [packaged] { (*packaged)(); });
    return future;
  }

  /// With cancel_futures, queued handlers are dropped (stop); with wait, blocks until
  /// the pool's threads have finished.
  void shutdown(bool wait = true, bool cancel_futures = false) {
    if (cancel_futures) pool_->stop();
    if (wait) pool_->join();
  }

  boost::asio::thread_pool& pool() { return *pool_; }

 private:
  std::unique_ptr<boost::asio::thread_pool> pool_;
};

}  // namespace executor_exporter::adapters
