#pragma once

#include <cstddef>
#include <iterator>
#include <ranges>
#include <optional>
#include <type_traits>
#include <variant>
#include <vector>

#include "future.hpp"

namespace executor_exporter {

/// The results of map(), in input order. Every item was submitted when map() returned;
/// iterating waits for each result in turn, and a task's exception surfaces when its
/// element is read, not before. Destroying the object early cancels the tasks that
/// have not started (as closing Python's map generator does). For void tasks the
/// elements are std::monostate.
template <class T>
class MapResults {
 public:
  using value_type = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

  explicit MapResults(std::vector<Future<T>> futures) : futures_(std::move(futures)) {}
  MapResults(MapResults&&) noexcept = default;
  MapResults& operator=(MapResults&&) noexcept = default;
  ~MapResults() {
    for (auto& f : futures_) {
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

  iterator begin() { return iterator(this, 0); }
  iterator end() { return iterator(this, futures_.size()); }
  std::size_t size() const { return futures_.size(); }

  /// Waits for every result and returns them in order; rethrows the first exception.
  std::vector<value_type> to_vector() {
    std::vector<value_type> out;
    out.reserve(futures_.size());
    for (auto& v : *this) out.push_back(std::move(v));
    return out;
  }

  /// The underlying futures, e.g. to wait with a timeout.
  std::vector<Future<T>>& futures() { return futures_; }

 private:
  value_type& fetch(std::size_t i) {
    if (cache_index_ != i || !cache_) {
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
  std::optional<value_type> cache_;
  std::size_t cache_index_ = 0;
};

namespace detail {

/// map() for any executor with submit(): one task per element, futures in input order.
template <class Executor, class F, class Range>
auto map_via_submit(Executor& executor, F& f, Range&& range) {
  using Item = std::ranges::range_reference_t<Range>;
  using Fut = decltype(executor.submit(f, std::declval<Item>()));
  using R = typename Fut::value_type;
  std::vector<Fut> futures;
  if constexpr (std::ranges::sized_range<Range>) futures.reserve(std::ranges::size(range));
  for (auto&& item : range) futures.push_back(executor.submit(f, std::forward<decltype(item)>(item)));
  return MapResults<R>(std::move(futures));
}

}  // namespace detail

}  // namespace executor_exporter
