// Allocation accounting for the bench binary: alloc_counter.cpp replaces the global
// operator new/delete (all forms) with malloc-based versions that count calls and
// requested bytes while counting is switched on. Off, the cost is one relaxed load.
// The shared libraries (prometheus-cpp, libstdc++) see the replacement too; oneTBB's
// own small-object allocator (tbbmalloc) does not go through operator new.
#pragma once

#include <cstddef>
#include <cstdint>

namespace bench::alloc {

struct Snapshot {
  std::uint64_t count = 0;  // operator new calls
  std::uint64_t bytes = 0;  // bytes requested from operator new
};

/// Starts or stops counting (process-wide).
void set_counting(bool on) noexcept;
/// What was counted since the last reset().
Snapshot snapshot() noexcept;
void reset() noexcept;

/// Bytes the C heap has handed out and not got back (glibc mallinfo2, all arenas,
/// mmapped chunks included): the net heap footprint, whatever allocated it.
std::size_t heap_in_use() noexcept;

/// Counts allocations in a scope.
class Scope {
 public:
  Scope() noexcept {
    reset();
    set_counting(true);
  }
  ~Scope() { set_counting(false); }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
  Snapshot stop() noexcept {
    set_counting(false);
    return snapshot();
  }
};

}  // namespace bench::alloc
