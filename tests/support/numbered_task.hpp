// A queue entry for tests that drive detail::TaskQueue directly: it does nothing and
// only knows its number and priority.
#pragma once

#include <executor_exporter/pools/detail/task.hpp>

#include <cstdint>
#include <exception>

namespace ee_test {

using executor_exporter::detail::TaskContext;

struct NumberedTask final : executor_exporter::detail::Task {
  explicit NumberedTask(int n, std::int32_t prio = 0) : id(n) {
    if (prio != 0) extras_for_update().priority = prio;
  }
  bool claim() noexcept override { return true; }
  bool invoke(std::exception_ptr&) noexcept override { return true; }
  void finish(const TaskContext&, std::exception_ptr) noexcept override {}
  void drop() noexcept override {}
  bool cancel(const TaskContext&) noexcept override { return true; }
  void fail_claimed(const TaskContext&, std::exception_ptr, bool) noexcept override {}
  int id;
};

}  // namespace ee_test
