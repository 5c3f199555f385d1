// The type-erased unit of work of ProcessPoolExecutor and the templates that cross the
// process boundary: a "trampoline" instantiated per (function, argument types) that the
// worker calls with the encoded arguments, and a "completer" that the parent calls with
// the encoded result to fill the futures.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <source_location>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <executor_exporter/pools/detail/future_state.hpp>
#include <executor_exporter/pools/detail/node_recycler.hpp>
#include <executor_exporter/process/codec.hpp>
#include <executor_exporter/process/detail/frame.hpp>
#include <executor_exporter/process/process_callable.hpp>

namespace executor_exporter::detail {

/// Runs in the worker: `user` is the function pointer (0 for stateless classes), `args`
/// the encoded arguments; appends the encoded result to `out` (which already holds the
/// result frame's header space, so the value is encoded in place). Exceptions propagate.
using ProcessTrampoline = void (*)(std::uint64_t user, std::string_view args, std::string& out);

template <class D, class... A>
decltype(auto) process_call(std::uint64_t user, A&&... a) {
  if constexpr (std::is_pointer_v<D>) {
    return std::invoke(function_from_wire<D>(user), std::forward<A>(a)...);
  } else {
    D fn{};
    return std::invoke(fn, std::forward<A>(a)...);
  }
}

template <class D, class R, class... A>
void process_trampoline(std::uint64_t user, std::string_view args, std::string& out) {
  auto decoded = decode_all<A...>(args);
  if constexpr (std::is_void_v<R>) {
    std::apply([&](A&... a) { process_call<D>(user, std::move(a)...); }, decoded);
  } else {
    const R r =
        std::apply([&](A&... a) -> R { return process_call<D>(user, std::move(a)...); }, decoded);
    Encoder e(std::move(out));
    encode(e, r);
    out = e.take();
  }
}

/// A chunk of map(): the argument is std::vector<I>, the result std::vector<R> (or the
/// item count for void functions).
template <class D, class R, class I>
void process_chunk_trampoline(std::uint64_t user, std::string_view args, std::string& out) {
  auto items = decode_message<std::vector<I>>(args);
  Encoder e(std::move(out));
  if constexpr (std::is_void_v<R>) {
    for (auto& item : items) process_call<D>(user, std::move(item));
    encode(e, static_cast<std::uint64_t>(items.size()));
  } else {
    std::vector<R> results;
    results.reserve(items.size());
    for (auto& item : items) results.push_back(process_call<D>(user, std::move(item)));
    encode(e, results);
  }
  out = e.take();
}

/// A future's state from the node recycler, as the thread pool's future nodes are: the
/// submitting thread allocates it and the completion thread usually frees it, which
/// with malloc means a free into another thread's arena, under its lock, per task.
template <class R>
class ProcessFutureState final : public FutureState<R>, public RecycledNode {};

/// A task as the parent's I/O thread sees it: the frame to send (kept until the task
/// finishes, so a task that was sent to a worker that died before starting it can be
/// sent again) and the futures it completes (one, or one per item of a map chunk).
struct ProcessTask : RecycledNode {   // recycled for the same reason as its future's state
  std::uint64_t observer_id = 0;      // its id for observers, if one was attached at submit
  ExecutorMetrics* series = nullptr;  // its name's series (submit_named); null: the pool's
  /// Decodes the child's encoded result into the started futures (values stored, not
  /// yet published). Throws CodecError for a result that does not decode.
  using Completer = void (*)(ProcessTask& task, std::string_view value);

  ProcessTask() = default;
  ProcessTask(const ProcessTask&) = delete;
  ProcessTask& operator=(const ProcessTask&) = delete;
  ~ProcessTask() {
    for (auto* s : states()) {
      if (s != nullptr) s->release();
    }
  }

  std::span<FutureStateBase*> states() noexcept {
    return chunk.empty() ? std::span<FutureStateBase*>(&single, single ? 1 : 0)
                         : std::span<FutureStateBase*>(chunk);
  }
  std::size_t items() const noexcept { return chunk.empty() ? 1 : chunk.size(); }

  std::uint64_t id = 0;
  std::uint64_t submit_ns = 0;
  std::source_location where{};  // the submit's call site (empty for a task without one)
  std::string frame;
  Completer complete = nullptr;
  FutureStateBase* single = nullptr;    // one reference held
  std::vector<FutureStateBase*> chunk;  // map chunks: one state per item, references held
  std::vector<unsigned char> started;   // map chunks, per state: try_start() succeeded
  bool dispatched = false;              // try_start() done (sent to a worker at least once)
};

template <class R>
void complete_single(ProcessTask& task, std::string_view value) {
  if constexpr (std::is_void_v<R>) {
    if (!value.empty())
      throw CodecError("codec: a void task returned " + std::to_string(value.size()) + " byte(s)");
  } else {
    auto decoded = decode_message<R>(value);
    static_cast<FutureState<R>*>(task.single)->store_value(std::move(decoded));
  }
}

template <class R>
void complete_chunk(ProcessTask& task, std::string_view value) {
  const std::size_t n = task.chunk.size();
  if constexpr (std::is_void_v<R>) {
    if (decode_message<std::uint64_t>(value) != n) {
      throw CodecError("codec: a map chunk returned the wrong item count");
    }
  } else {
    auto results = decode_message<std::vector<R>>(value);
    if (results.size() != n) throw CodecError("codec: a map chunk returned the wrong item count");
    for (std::size_t i = 0; i < n; ++i) {
      if (task.started[i])
        static_cast<FutureState<R>*>(task.chunk[i])->store_value(std::move(results[i]));
    }
  }
}

}  // namespace executor_exporter::detail
