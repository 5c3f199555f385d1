#pragma once

#include <concepts>
#include <functional>

namespace executor_exporter {

/// What submit() of a wrapped executor must return: something that can be waited on
/// (std::future, std::shared_future, boost::future, this library's Future...).
template <class F>
concept FutureLike = requires(F& f) { f.wait(); };

/// Anything InstrumentedExecutorProxy can wrap: submit() takes a nullary, copyable
/// callable returning void and returns a future, and the executor can be shut down
/// with shutdown(wait, cancel_futures), shutdown(wait) or shutdown().
template <class E>
concept Executor = requires(E& e, std::function<void()> task) {
  { e.submit(task) } -> FutureLike;
} && (requires(E& e) { e.shutdown(true, false); } || requires(E& e) { e.shutdown(true); } ||
      requires(E& e) { e.shutdown(); });

}  // namespace executor_exporter
