#pragma once

#include <type_traits>

#include <executor_exporter/process/codec.hpp>

namespace executor_exporter {

/// A callable that can be sent to a worker process: a function pointer (or function
/// reference), or a class with no state at all (a capture-less lambda, std::plus<>): the
/// worker re-creates it with F{}. Capturing lambdas do not qualify: their captures live
/// in the parent's memory.
template <class F>
concept ProcessCallable = (std::is_pointer_v<std::decay_t<F>> &&
                           std::is_function_v<std::remove_pointer_t<std::decay_t<F>>>) ||
                          (std::is_class_v<std::decay_t<F>> && std::is_empty_v<std::decay_t<F>> &&
                           std::is_default_constructible_v<std::decay_t<F>> &&
                           std::is_trivially_copyable_v<std::decay_t<F>>);

namespace detail {

template <class F, class... Args>
using process_result_t =
    std::remove_cvref_t<std::invoke_result_t<std::decay_t<F>&, std::decay_t<Args>...>>;

template <class R>
inline constexpr bool encodable_result = std::is_void_v<R> || Encodable<R>;

}  // namespace detail

/// What ProcessPoolExecutor::submit(f, args...) accepts: a ProcessCallable invocable with
/// the decayed arguments, every argument and the result (unless void) Encodable.
template <class F, class... Args>
concept ProcessTaskFunction = ProcessCallable<F> && std::is_invocable_v < std::decay_t<F>
&, std::decay_t<Args>... > &&(Encodable<std::decay_t<Args>>&&...) &&
       detail::encodable_result<detail::process_result_t<F, Args...>>;

}  // namespace executor_exporter
