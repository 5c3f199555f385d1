#pragma once

#include <string>

#include <pthread.h>

namespace executor_exporter::detail {

/// Names the calling thread for debuggers, top -H and /proc; Linux allows 15 bytes.
inline void set_thread_name(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace executor_exporter::detail
