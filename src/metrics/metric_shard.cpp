#include <executor_exporter/metrics/detail/metric_shard.hpp>

#include <array>

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace executor_exporter::detail {

// A shard is made on its owner thread (ExecutorMetrics::register_shard), so these are
// that thread's. Read once: the watchdog and the trace name the thread without a system
// call on the hot path.
std::uint64_t current_thread_id() noexcept {
  thread_local const auto tid = static_cast<std::uint64_t>(::syscall(SYS_gettid));
  return tid;
}

void MetricShard::note_thread() {
  tid_ = current_thread_id();
  std::array<char, 32> name{};
  if (pthread_getname_np(pthread_self(), name.data(), name.size()) == 0) thread_name_ = name.data();
}

}  // namespace executor_exporter::detail
