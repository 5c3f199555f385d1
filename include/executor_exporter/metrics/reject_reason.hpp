#pragma once

#include <cstddef>
#include <cstdint>

namespace executor_exporter {

/// Why a submit was refused; the `reason` label of executor_tasks_rejected_total.
/// `error`: the submit failed with an exception that is none of this library's
/// refusals: an executor wrapped by InstrumentedExecutorProxy threw its own ("queue
/// full", say), there was no memory (std::bad_alloc), copying the task or its arguments
/// threw, or a process pool's task encodes to more than its message limit
/// (MessageTooLargeError); the cause is not guessed.
enum class RejectReason : std::uint8_t { shutdown, queue_full, broken, error };
inline constexpr std::size_t reject_reason_count = 4;

}  // namespace executor_exporter
