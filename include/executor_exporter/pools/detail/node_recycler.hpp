#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

namespace executor_exporter::detail {

#if defined(__SANITIZE_ADDRESS__)
#define EXECUTOR_EXPORTER_RECYCLE_NODES 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EXECUTOR_EXPORTER_RECYCLE_NODES 0
#endif
#endif
#ifndef EXECUTOR_EXPORTER_RECYCLE_NODES
#define EXECUTOR_EXPORTER_RECYCLE_NODES 1
#endif

/// Recycles the memory of task nodes of up to `Size` bytes. A pool's nodes are
/// allocated by submitting threads and freed by workers; with malloc every free lands
/// in the worker's arena bins and every allocation has to take memory from another
/// thread's, which measured ~15% of the CPU time of a stream of empty tasks. Here a
/// freeing thread collects blocks in a private chain and hands a full chain (kBatch
/// blocks) to a process-wide stack with one CAS; an allocating thread takes from its
/// private list and, when that is empty, takes the whole stack with one exchange. Since
/// nothing ever pops a single block off the shared stack, there is no ABA problem.
///
/// New blocks come in slabs of kSlabBlocks, carved in address order: a queue that
/// grows in a burst then costs one allocation per slab instead of one per task (with
/// four submitters outpacing two workers, malloc, free and the page faults behind them
/// were the largest cost left), and consecutive tasks sit next to each other. The
/// stack keeps at most about kMaxShared blocks; a block beyond that is released, and a
/// slab whose blocks are all released goes back to the heap, so a burst of a million
/// queued tasks does not pin its memory forever (a block kept in a list keeps its
/// slab). Compiled out under AddressSanitizer, so that it still sees every node's
/// lifetime.
template <std::size_t Size>
class NodeRecycler {
 public:
  static void* allocate() {
#if EXECUTOR_EXPORTER_RECYCLE_NODES
    Local& local = local_lists();
    if (local.usable()) {
      if (local.free == nullptr) {
        Shared& s = shared();
        Block* all = s.head.exchange(nullptr, std::memory_order_acquire);
        if (all != nullptr) s.count.store(0, std::memory_order_relaxed);
        local.free = all != nullptr ? all : new_slab(kSlabBlocks - 1);
      }
      Block* b = local.free;
      local.free = b->next;
      return b;
    }
    // The thread is exiting: one block of a fresh slab, the rest released at once.
    return new_slab(1);
#else
    return ::operator new(Size);
#endif
  }

  /// Slabs taken from the heap and not yet given back (for tests and diagnostics).
  static std::size_t slabs_in_use() noexcept {
    return live_slabs().load(std::memory_order_relaxed);
  }

  static void deallocate(void* p) noexcept {
#if EXECUTOR_EXPORTER_RECYCLE_NODES
    Local& local = local_lists();
    if (local.usable()) {
      auto* b = static_cast<Block*>(p);
      b->next = local.out;
      if (local.out == nullptr) local.out_tail = b;
      local.out = b;
      if (++local.out_count == kBatch) local.flush();
      return;
    }
    release(static_cast<Block*>(p));
#else
    ::operator delete(p);
#endif
  }

 private:
  static constexpr std::size_t kBatch = 32;
  static constexpr std::size_t kMaxShared = 4096;
  static constexpr std::size_t kSlabBlocks = 64;  // the first holds the slab's header
  static constexpr std::size_t kSlabBytes = Size * kSlabBlocks;
  static_assert((Size & (Size - 1)) == 0, "slabs are aligned to their size");

  struct Block {
    Block* next;
  };
  static_assert(Size >= sizeof(Block));

  // In a slab's first block, alone on its cache line(s): releasing threads write it.
  struct SlabHeader {
    std::atomic<std::size_t> released{0};  // blocks gone back for good
  };
  static_assert(Size >= sizeof(SlabHeader));

  // A new slab; returns its first `take` blocks as a chain in address order and
  // counts the others as released already.
  static Block* new_slab(std::size_t take) {
    char* slab = static_cast<char*>(::operator new (kSlabBytes, std::align_val_t{kSlabBytes}));
    new (slab) SlabHeader{};
    live_slabs().fetch_add(1, std::memory_order_relaxed);
    header_of(slab).released.store(kSlabBlocks - 1 - take, std::memory_order_relaxed);
    Block* chain = nullptr;
    for (std::size_t i = take; i >= 1; --i) {
      auto* b = reinterpret_cast<Block*>(slab + i * Size);
      b->next = chain;
      chain = b;
    }
    return chain;
  }
  static std::atomic<std::size_t>& live_slabs() noexcept {
    static std::atomic<std::size_t> n{0};
    return n;
  }
  static SlabHeader& header_of(char* slab) noexcept {
    return *std::launder(reinterpret_cast<SlabHeader*>(slab));
  }
  // Gives `b` up for good; the last block of its slab to go frees the slab.
  static void release(Block* b) noexcept {
    const auto addr = reinterpret_cast<std::uintptr_t>(b);
    char* slab = reinterpret_cast<char*>(addr & ~static_cast<std::uintptr_t>(kSlabBytes - 1));
    SlabHeader& h = header_of(slab);
    if (h.released.fetch_add(1, std::memory_order_acq_rel) + 1 == kSlabBlocks - 1) {
      h.~SlabHeader();
      ::operator delete (slab, std::align_val_t{kSlabBytes});
      live_slabs().fetch_sub(1, std::memory_order_relaxed);
    }
  }

  struct Shared {
    std::atomic<Block*> head{nullptr};
    std::atomic<std::size_t> count{0};  // approximate: bounds the memory kept
  };
  static Shared& shared() {
    // Leaked on purpose: threads that exit during static destruction still flush.
    static auto* s = new Shared;
    return *s;
  }

  static void free_chain(Block* b) noexcept {
    while (b != nullptr) {
      Block* next = b->next;
      release(b);
      b = next;
    }
  }

  // Trivially destructible, so it stays usable while the thread's other thread_locals
  // are destroyed (a Future or a pool in one of them may free a node then); the Guard
  // below empties it at thread exit and from then on routes everything to the heap.
  struct Local {
    Block* free;  // ready for this thread's allocations
    Block* out;   // freed by this thread, not yet shared
    Block* out_tail;
    std::size_t out_count;
    bool guarded;  // the Guard is registered
    bool dead;     // the thread is exiting: use the heap

    bool usable() noexcept {
      if (dead) return false;
      if (!guarded) {
        guarded = true;
        (void)guard();  // constructs it, so its destructor runs at thread exit
      }
      return true;
    }
    void flush() noexcept {
      if (out == nullptr) return;
      Shared& s = shared();
      if (s.count.load(std::memory_order_relaxed) >= kMaxShared) {
        free_chain(out);
      } else {
        s.count.fetch_add(out_count, std::memory_order_relaxed);
        out_tail->next = s.head.load(std::memory_order_relaxed);
        while (!s.head.compare_exchange_weak(out_tail->next, out, std::memory_order_release,
                                             std::memory_order_relaxed)) {
        }
      }
      out = out_tail = nullptr;
      out_count = 0;
    }
  };
  struct Guard {
    Guard() = default;
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    ~Guard() {
      Local& local = local_lists();
      local.flush();
      free_chain(local.free);
      local.free = nullptr;
      local.dead = true;
    }
  };
  static Guard& guard() {
    thread_local Guard g;
    return g;
  }
  static Local& local_lists() {
    thread_local constinit Local local{nullptr, nullptr, nullptr, 0, false, false};
    return local;
  }
};

/// Class-level operator new/delete for a task node type: sizes up to 64, 128 or 256
/// bytes come from a NodeRecycler, larger ones from the heap. The 64-byte class holds a
/// fire-and-forget task with a small capture, one cache line.
struct RecycledNode {
  static void* operator new(std::size_t n) {
    if (n <= 64) return NodeRecycler<64>::allocate();
    if (n <= 128) return NodeRecycler<128>::allocate();
    if (n <= 256) return NodeRecycler<256>::allocate();
    return ::operator new(n);
  }
  static void operator delete(void* p, std::size_t n) noexcept {
    if (n <= 64) {
      NodeRecycler<64>::deallocate(p);
    } else if (n <= 128) {
      NodeRecycler<128>::deallocate(p);
    } else if (n <= 256) {
      NodeRecycler<256>::deallocate(p);
    } else {
      ::operator delete(p);
    }
  }
  // Over-aligned nodes (a capture declared alignas(64), say) bypass the recycler.
  static void* operator new(std::size_t n, std::align_val_t a) { return ::operator new(n, a); }
  static void operator delete(void* p, std::size_t, std::align_val_t a) noexcept {
    ::operator delete(p, a);
  }
};

}  // namespace executor_exporter::detail
