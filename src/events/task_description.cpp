#include <executor_exporter/events/task_description.hpp>

#include <utility>

namespace executor_exporter {

namespace {
// A pointer, not a string: entering and leaving a scope never allocates here.
thread_local const TaskDescription* innermost = nullptr;
}  // namespace

TaskDescription::TaskDescription(std::string text) : text_(std::move(text)), previous_(innermost) {
  innermost = this;
}

TaskDescription::~TaskDescription() { innermost = previous_; }

std::string_view TaskDescription::current() noexcept {
  return innermost != nullptr ? std::string_view(innermost->text_) : std::string_view();
}

}  // namespace executor_exporter
