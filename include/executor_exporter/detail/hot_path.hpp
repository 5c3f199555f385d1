#pragma once

/// Marks a small function of the per-task path (submit, task start, task end) that must
/// be inlined into its caller. GCC stopped inlining several of them once the recorder
/// grew (stuck tasks, exemplars, the flight recorder): each became a call of its own,
/// and together the calls cost the empty-task benchmark about a tenth of its throughput
/// (bench/analysis.md).
#if defined(__GNUC__) || defined(__clang__)
#define EXECUTOR_EXPORTER_HOT [[gnu::always_inline]] inline
#else
#define EXECUTOR_EXPORTER_HOT inline
#endif
