#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include <executor_exporter/detail/hot_path.hpp>
#include <executor_exporter/metrics/detail/trace_ids.hpp>

namespace executor_exporter::detail {

/// What a task gives the exemplar it refreshes.
struct ExemplarTag {
  std::uint64_t task_id = 0;
  const char* file = nullptr;  // a std::source_location's file name (static storage)
  std::uint32_t line = 0;      // 0: unknown call site
  const TraceIds* trace = nullptr;
};

/// One exemplar as read back at scrape time.
struct ExemplarSample {
  std::uint64_t value_ns = 0;
  std::uint64_t wall_ns = 0;  // system clock; 0: no exemplar
  std::uint64_t task_id = 0;
  const char* file = nullptr;
  std::uint32_t line = 0;
  TraceIds trace;
};

/// The exemplars one thread's shard keeps: per histogram (wait, run completed, run
/// failed) and bucket, the latest task that refreshed it. Only the owning thread writes,
/// with no lock and no read-modify-write; a bucket's exemplar is rewritten only when it
/// is older than the refresh interval, so the common observation costs one compare on a
/// thread-private array. Each record is a seqlock built of atomics: the writer makes the
/// sequence odd, stores the fields with release, and makes it even again; a reader
/// loads the sequence, the fields with acquire, and the sequence again, and keeps the
/// read only when both sequences are the same even number (a field stored during the
/// read synchronises with the reader, which then sees the odd sequence).
class ExemplarStore {
 public:
  static constexpr std::size_t wait = 0;
  static constexpr std::size_t run_completed = 1;
  static constexpr std::size_t run_failed = 2;
  static constexpr std::size_t histograms = 3;

  /// `*_bounds`: finite bucket bounds of each histogram (a +Inf bucket follows).
  ExemplarStore(std::size_t wait_bounds, std::size_t run_bounds, std::uint64_t refresh_ns)
      : refresh_ns_(refresh_ns),
        buckets_{wait_bounds + 1, run_bounds + 1, run_bounds + 1},
        records_(new Record[size()]),
        refreshed_(new std::uint64_t[size()]()) {}

  std::size_t buckets(std::size_t hist) const noexcept { return buckets_[hist]; }

  /// Owner thread: whether an observation at monotonic time `now` in (hist, bucket)
  /// should refresh its exemplar; if so it counts as refreshed from now on.
  EXECUTOR_EXPORTER_HOT bool due(std::size_t hist, std::size_t bucket, std::uint64_t now) noexcept {
    std::uint64_t& last = refreshed_[index(hist, bucket)];
    if (last != 0 && now >= last && now - last < refresh_ns_) [[likely]]
      return false;
    last = now == 0 ? 1 : now;
    return true;
  }

  /// Owner thread: (hist, bucket)'s exemplar is now this task's observation of `value_ns`.
  void put(std::size_t hist, std::size_t bucket, std::uint64_t value_ns,
           const ExemplarTag& tag) noexcept {
    Record& r = records_[index(hist, bucket)];
    const auto wall =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count());
    const std::uint64_t seq = r.seq.load(std::memory_order_relaxed);
    r.seq.store(seq + 1, std::memory_order_relaxed);
    constexpr auto rel = std::memory_order_release;
    r.value_ns.store(value_ns, rel);
    r.wall_ns.store(wall, rel);
    r.task_id.store(tag.task_id, rel);
    r.file.store(tag.line != 0 ? tag.file : nullptr, rel);
    r.line.store(tag.line, rel);
    const TraceIds none;
    const TraceIds& t = tag.trace != nullptr ? *tag.trace : none;
    r.trace_hi.store(t.trace_hi, rel);
    r.trace_lo.store(t.trace_lo, rel);
    r.span.store(t.span, rel);
    r.lens.store(static_cast<std::uint32_t>(t.trace_len) << 8 | t.span_len, rel);
    r.seq.store(seq + 2, rel);
  }

  /// Any thread: (hist, bucket)'s exemplar, or nullopt when there is none yet or the
  /// owner kept rewriting it during a few attempts (the next scrape gets it).
  std::optional<ExemplarSample> read(std::size_t hist, std::size_t bucket) const noexcept {
    const Record& r = records_[index(hist, bucket)];
    constexpr auto acq = std::memory_order_acquire;
    for (int attempt = 0; attempt < 4; ++attempt) {
      const std::uint64_t seq = r.seq.load(acq);
      if (seq == 0) return std::nullopt;
      if ((seq & 1) != 0) continue;
      ExemplarSample s;
      s.value_ns = r.value_ns.load(acq);
      s.wall_ns = r.wall_ns.load(acq);
      s.task_id = r.task_id.load(acq);
      s.file = r.file.load(acq);
      s.line = r.line.load(acq);
      s.trace.trace_hi = r.trace_hi.load(acq);
      s.trace.trace_lo = r.trace_lo.load(acq);
      s.trace.span = r.span.load(acq);
      const std::uint32_t lens = r.lens.load(acq);
      s.trace.trace_len = static_cast<std::uint8_t>(lens >> 8);
      s.trace.span_len = static_cast<std::uint8_t>(lens & 0xFF);
      if (r.seq.load(std::memory_order_relaxed) == seq) return s;
    }
    return std::nullopt;
  }

 private:
  struct Record {
    std::atomic<std::uint64_t> seq{0};
    std::atomic<std::uint64_t> value_ns{0};
    std::atomic<std::uint64_t> wall_ns{0};
    std::atomic<std::uint64_t> task_id{0};
    std::atomic<const char*> file{nullptr};
    std::atomic<std::uint32_t> line{0};
    std::atomic<std::uint32_t> lens{0};
    std::atomic<std::uint64_t> trace_hi{0};
    std::atomic<std::uint64_t> trace_lo{0};
    std::atomic<std::uint64_t> span{0};
  };

  std::size_t size() const noexcept { return buckets_[0] + buckets_[1] + buckets_[2]; }
  std::size_t index(std::size_t hist, std::size_t bucket) const noexcept {
    std::size_t i = bucket;
    for (std::size_t h = 0; h < hist; ++h) i += buckets_[h];
    return i;
  }

  std::uint64_t refresh_ns_;
  std::array<std::size_t, histograms> buckets_;
  std::unique_ptr<Record[]> records_;
  std::unique_ptr<std::uint64_t[]> refreshed_;  // owner thread only
};

}  // namespace executor_exporter::detail
