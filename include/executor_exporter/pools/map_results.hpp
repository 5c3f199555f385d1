#pragma once

#include <chrono>
#include <cstddef>
#include <iterator>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <executor_exporter/detail/call_site.hpp>
#include <executor_exporter/errors.hpp>
#include <executor_exporter/pools/future.hpp>

namespace executor_exporter {

/// Python's map(fn, iterable, timeout=None, chunksize=1) options.
struct MapOptions {
  /// Reading a result that is not ready this long after map() was called throws
  /// TimeoutError (the task keeps its place; destroying the results cancels the rest).
  std::optional<std::chrono::steady_clock::duration> timeout = std::nullopt;
  /// Items per task: with many tiny items, one task per chunk saves the per-task cost.
  /// Metrics then count chunks as tasks; a chunk's exception surfaces at the first of
  /// its items that is read. 0 is treated as 1.
  std::size_t chunksize = 1;
};

/// The results of map(), in input order. Every item was submitted when map() returned;
/// iterating waits for each result in turn, and a task's exception surfaces when its
/// element is read, not before. Destroying the object early cancels the tasks that
/// have not started (as closing Python's map generator does). For void tasks the
/// elements are std::monostate. With MapOptions::timeout, reading an element not ready
/// by then throws TimeoutError; with a chunksize, each task computed a chunk of items.
template <class T>
class MapResults {
 public:
  using value_type = std::conditional_t<std::is_void_v<T>, std::monostate, T>;
  /// One chunk's results (chunked map).
  using chunk_type = std::vector<value_type>;

  /// One future per item.
  explicit MapResults(std::vector<Future<T>> futures,
                      std::optional<std::chrono::steady_clock::time_point> deadline = {})
      : futures_(std::move(futures)), deadline_(deadline), size_(futures_.size()) {}
  /// One future per chunk of `chunksize` items, `size` items in all.
  MapResults(std::vector<Future<chunk_type>> chunks, std::size_t chunksize, std::size_t size,
             std::optional<std::chrono::steady_clock::time_point> deadline = {})
      : chunks_(std::move(chunks)), chunksize_(chunksize), deadline_(deadline), size_(size) {}
  MapResults(MapResults&&) noexcept = default;
  MapResults& operator=(MapResults&&) noexcept = default;
  /// Cancels the tasks that have not started.
  ~MapResults() {
    for (auto& f : futures_) {
      if (f.valid()) f.cancel();
    }
    for (auto& f : chunks_) {
      if (f.valid()) f.cancel();
    }
  }

  /// An input iterator; dereferencing waits for that element.
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = MapResults::value_type;
    using difference_type = std::ptrdiff_t;
    using pointer = value_type*;
    using reference = value_type&;

    iterator() = default;
    iterator(MapResults* owner, std::size_t index) : owner_(owner), index_(index) {}
    reference operator*() const { return owner_->fetch(index_); }
    pointer operator->() const { return &owner_->fetch(index_); }
    iterator& operator++() {
      ++index_;
      return *this;
    }
    void operator++(int) { ++index_; }
    bool operator==(const iterator& o) const { return index_ == o.index_; }

   private:
    MapResults* owner_ = nullptr;
    std::size_t index_ = 0;
  };

  /// The first result (waits for it when dereferenced).
  iterator begin() { return iterator(this, 0); }
  /// Past the last result.
  iterator end() { return iterator(this, size_); }
  /// Number of items (not chunks).
  std::size_t size() const { return size_; }

  /// Waits for every result and returns them in order; rethrows the first exception.
  std::vector<value_type> to_vector() {
    std::vector<value_type> out;
    out.reserve(futures_.size());
    for (auto& v : *this) out.push_back(std::move(v));
    return out;
  }

  /// The underlying per-item futures, e.g. to wait with a timeout (empty when chunked).
  std::vector<Future<T>>& futures() { return futures_; }
  /// The per-chunk futures of a chunked map (empty otherwise).
  std::vector<Future<chunk_type>>& chunk_futures() { return chunks_; }

 private:
  template <class Fut>
  void await(Fut& f) {
    if (deadline_ && f.wait_until(*deadline_) != std::future_status::ready) {
      throw TimeoutError("map: result not ready within the timeout");
    }
  }

  value_type& fetch(std::size_t i) {
    if (!chunks_.empty()) {
      const std::size_t c = i / chunksize_;
      if (chunk_index_ != c || !chunk_) {
        await(chunks_[c]);
        chunk_.reset();
        chunk_.emplace(chunks_[c].get());
        chunk_index_ = c;
      }
      return (*chunk_)[i % chunksize_];
    }
    if (cache_index_ != i || !cache_) {
      await(futures_[i]);
      cache_.reset();
      if constexpr (std::is_void_v<T>) {
        futures_[i].get();
        cache_.emplace();
      } else {
        cache_.emplace(futures_[i].get());
      }
      cache_index_ = i;
    }
    return *cache_;
  }

  std::vector<Future<T>> futures_;
  std::vector<Future<chunk_type>> chunks_;
  std::size_t chunksize_ = 1;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  std::size_t size_ = 0;
  std::optional<value_type> cache_;
  std::size_t cache_index_ = 0;
  std::optional<chunk_type> chunk_;
  std::size_t chunk_index_ = 0;
};

namespace detail {

/// map() for any executor with submit(): one task per element, futures in input order.
/// `site`: where map() was called, handed to each submit.
template <class Executor, class F, class Range>
auto map_via_submit(Executor& executor, F& f, Range&& range, CallSite site = {}) {
  using Item = std::ranges::range_reference_t<Range>;
  using Fut = decltype(executor.submit(f, std::declval<Item>()));
  using R = typename Fut::value_type;
  std::vector<Fut> futures;
  if constexpr (std::ranges::sized_range<Range>) futures.reserve(std::ranges::size(range));
  for (auto&& item : range)
    futures.push_back(executor.submit(f, std::forward<decltype(item)>(item), site));
  return MapResults<R>(std::move(futures));
}

/// map() with MapOptions: a deadline for reading results and/or chunks of items.
template <class Executor, class F, class Range>
auto map_via_submit(Executor& executor, F& f, Range&& range, const MapOptions& options,
                    CallSite site = {}) {
  using Item = std::ranges::range_reference_t<Range>;
  using R = std::invoke_result_t<F&, Item>;
  using Results = MapResults<R>;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (options.timeout) deadline = std::chrono::steady_clock::now() + *options.timeout;
  const std::size_t chunksize = options.chunksize == 0 ? 1 : options.chunksize;
  if (chunksize == 1) {
    using Fut = decltype(executor.submit(f, std::declval<Item>()));
    std::vector<Fut> futures;
    if constexpr (std::ranges::sized_range<Range>) futures.reserve(std::ranges::size(range));
    for (auto&& item : range) {
      futures.push_back(executor.submit(f, std::forward<decltype(item)>(item), site));
    }
    return Results(std::move(futures), deadline);
  }
  using Stored = std::remove_cvref_t<Item>;
  using Chunk = typename Results::chunk_type;
  // Each chunk task owns copies of its items and returns their results in order.
  auto run_chunk = [f](std::vector<Stored> items) {
    Chunk out;
    out.reserve(items.size());
    for (auto& item : items) {
      if constexpr (std::is_void_v<R>) {
        std::invoke(f, item);
        out.emplace_back();
      } else {
        out.push_back(std::invoke(f, item));
      }
    }
    return out;
  };
  std::vector<Future<Chunk>> chunks;
  std::vector<Stored> pending;
  std::size_t count = 0;
  for (auto&& item : range) {
    pending.push_back(std::forward<decltype(item)>(item));
    ++count;
    if (pending.size() == chunksize) {
      chunks.push_back(executor.submit(run_chunk, std::move(pending), site));
      pending = {};
      pending.reserve(chunksize);
    }
  }
  if (!pending.empty()) chunks.push_back(executor.submit(run_chunk, std::move(pending), site));
  return Results(std::move(chunks), chunksize, count, deadline);
}

}  // namespace detail

}  // namespace executor_exporter
