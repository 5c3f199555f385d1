// Replaced global allocation functions (see alloc_counter.hpp). Only this bench
// binary links this file.
#include "alloc_counter.hpp"

#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <new>

namespace bench::alloc {
namespace {
std::atomic<bool> counting{false};
std::atomic<std::uint64_t> count{0};
std::atomic<std::uint64_t> bytes{0};

inline void note(std::size_t n) noexcept {
  if (counting.load(std::memory_order_relaxed)) {
    count.fetch_add(1, std::memory_order_relaxed);
    bytes.fetch_add(n, std::memory_order_relaxed);
  }
}

void* checked(void* p) {
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void* aligned(std::size_t n, std::align_val_t al) noexcept {
  const auto a = static_cast<std::size_t>(al);
  void* p = nullptr;
  if (posix_memalign(&p, a < sizeof(void*) ? sizeof(void*) : a, n == 0 ? 1 : n) != 0) return nullptr;
  return p;
}
}  // namespace

void set_counting(bool on) noexcept { counting.store(on, std::memory_order_seq_cst); }
Snapshot snapshot() noexcept {
  return {count.load(std::memory_order_relaxed), bytes.load(std::memory_order_relaxed)};
}
void reset() noexcept {
  count.store(0, std::memory_order_relaxed);
  bytes.store(0, std::memory_order_relaxed);
}
std::size_t heap_in_use() noexcept {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

}  // namespace bench::alloc

using bench::alloc::aligned;
using bench::alloc::checked;
using bench::alloc::note;

void* operator new(std::size_t n) {
  note(n);
  return checked(std::malloc(n == 0 ? 1 : n));
}
void* operator new[](std::size_t n) {
  note(n);
  return checked(std::malloc(n == 0 ? 1 : n));
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  note(n);
  return std::malloc(n == 0 ? 1 : n);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  note(n);
  return std::malloc(n == 0 ? 1 : n);
}
void* operator new(std::size_t n, std::align_val_t al) {
  note(n);
  return checked(aligned(n, al));
}
void* operator new[](std::size_t n, std::align_val_t al) {
  note(n);
  return checked(aligned(n, al));
}
void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  note(n);
  return aligned(n, al);
}
void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  note(n);
  return aligned(n, al);
}

void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
