#pragma once

#include <string>
#include <string_view>

namespace executor_exporter::detail {

/// A readable name of T ("boost::asio::thread_pool"), used as the default
/// executor_type label of InstrumentedExecutorProxy<T>.
template <class T>
std::string type_name() {
  std::string_view f = __PRETTY_FUNCTION__;  // "... type_name() [with T = X; ...]" or "[T = X]"
  const auto start = f.find("T = ");
  if (start == std::string_view::npos) return "custom";
  f.remove_prefix(start + 4);
  const auto end = f.find_first_of(";]");
  return std::string(f.substr(0, end));
}

}  // namespace executor_exporter::detail
