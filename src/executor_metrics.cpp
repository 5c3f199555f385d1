#include <executor_exporter/detail/executor_metrics.hpp>
#include <executor_exporter/detail/registry_state.hpp>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace executor_exporter::detail {

namespace {

std::atomic<std::uint64_t> next_unique_id{1};

std::vector<std::uint64_t> to_ns(const std::vector<double>& seconds, const char* what) {
  std::vector<std::uint64_t> ns;
  ns.reserve(seconds.size());
  for (double s : seconds) {
    if (!std::isfinite(s) || s <= 0 || s > 1e9) {
      throw std::invalid_argument(std::string("executor_exporter: ") + what +
                                  " bucket bounds must be positive, finite seconds");
    }
    const auto v = static_cast<std::uint64_t>(std::llround(s * 1e9));
    if (!ns.empty() && v <= ns.back()) {
      throw std::invalid_argument(std::string("executor_exporter: ") + what +
                                  " bucket bounds must increase (by at least 1 ns)");
    }
    ns.push_back(v);
  }
  return ns;
}

prometheus::Histogram* histogram(prometheus::Family<prometheus::Histogram>& family,
                                 const prometheus::Labels& labels,
                                 const std::vector<double>& bounds) {
  auto& h = family.Add(labels, bounds);
  // Family::Add returns an existing series unchanged; refuse one whose buckets differ
  // (left behind by an earlier executor of this id), since the shards count per bucket.
  const auto existing = h.Collect().histogram.bucket;
  bool same = existing.size() == bounds.size() + 1;
  for (std::size_t i = 0; same && i < bounds.size(); ++i) same = existing[i].upper_bound == bounds[i];
  if (!same) {
    throw std::invalid_argument(
        "executor_exporter: this registry already holds the histogram for these labels with "
        "other bucket bounds");
  }
  return &h;
}

void observe_delta(prometheus::Histogram* h, const std::vector<std::uint64_t>& delta,
                   std::size_t base, std::size_t buckets) {
  bool any = false;
  std::vector<double> increments(buckets + 1);
  for (std::size_t i = 0; i <= buckets; ++i) {
    increments[i] = static_cast<double>(delta[base + i]);
    any = any || delta[base + i] != 0;
  }
  if (any) h->ObserveMultiple(increments, static_cast<double>(delta[base + buckets + 1]) / 1e9);
}

}  // namespace

ExecutorMetrics::ExecutorMetrics(std::shared_ptr<RegistryState> state,
                                 std::shared_ptr<prometheus::Registry> registry, std::string id,
                                 std::string type, const ExporterOptions& options)
    : state_(std::move(state)),
      registry_(std::move(registry)),
      id_(std::move(id)),
      type_(std::move(type)),
      options_(options),
      unique_id_(next_unique_id.fetch_add(1, std::memory_order_relaxed)),
      run_bounds_ns_(to_ns(options.run_buckets, "run")),
      wait_bounds_ns_(to_ns(options.wait_buckets, "wait")) {
  layout_.run_buckets = run_bounds_ns_.size();
  layout_.wait_buckets = wait_bounds_ns_.size();
  totals_.assign(layout_.size(), 0);

  const prometheus::Labels labels{{"executor", id_}, {"executor_type", type_}};
  auto with = [&](const char* key, const char* value) {
    auto l = labels;
    l.emplace(key, value);
    return l;
  };
  auto& s = *state_;
  g_max_workers_ = &s.max_workers->Add(labels);
  g_workers_ = &s.workers->Add(labels);
  c_workers_started_ = &s.workers_started->Add(labels);
  c_submitted_ = &s.submitted->Add(labels);
  c_rejected_[static_cast<std::size_t>(RejectReason::shutdown)] =
      &s.rejected->Add(with("reason", "shutdown"));
  c_rejected_[static_cast<std::size_t>(RejectReason::queue_full)] =
      &s.rejected->Add(with("reason", "queue_full"));
  c_rejected_[static_cast<std::size_t>(RejectReason::broken)] =
      &s.rejected->Add(with("reason", "broken"));
  c_cancelled_ = &s.cancelled->Add(labels);
  g_queued_ = &s.queued->Add(labels);
  g_running_ = &s.running->Add(labels);
  h_wait_ = histogram(*s.wait, labels, options_.wait_buckets);
  h_run_[0] = histogram(*s.run, with("result", "completed"), options_.run_buckets);
  h_run_[1] = histogram(*s.run, with("result", "failed"), options_.run_buckets);
  c_busy_ = &s.busy->Add(labels);
}

ExecutorMetrics::~ExecutorMetrics() {
  fold();
  std::lock_guard lock(mutex_);
  for (auto& shard : shards_) shard->orphaned.store(true, std::memory_order_release);
}

MetricShard& ExecutorMetrics::register_shard() {
  ShardCache& cache = shard_cache();
  for (auto& e : cache.entries) {
    if (e.owner == unique_id_) {
      cache.last_owner = unique_id_;
      cache.last = e.shard.get();
      return *cache.last;
    }
  }
  // Entries of executors that are gone would otherwise pile up in long-lived threads.
  std::erase_if(cache.entries, [](const ShardCache::Entry& e) {
    return e.shard->orphaned.load(std::memory_order_acquire);
  });
  auto shard = std::make_shared<MetricShard>(layout_, run_bounds_ns_, wait_bounds_ns_);
  {
    std::lock_guard lock(mutex_);
    shards_.push_back(shard);
  }
  cache.entries.push_back({unique_id_, shard});
  cache.last_owner = unique_id_;
  cache.last = shard.get();
  return *cache.last;
}

void ExecutorMetrics::fold() {
  std::lock_guard lock(mutex_);
  const std::size_t n = layout_.size();
  std::vector<std::uint64_t> delta(n, 0);
  std::vector<bool> retired(shards_.size());
  for (std::size_t s = 0; s < shards_.size(); ++s) {
    retired[s] = shards_[s]->retired.load(std::memory_order_acquire);
  }
  // Read later lifecycle stages before earlier ones, each across all shards: a task
  // seen as ended is then surely seen as started and submitted, so the gauges derived
  // below never go negative and every scrape reconciles.
  const std::size_t run_begin = layout_.run_hist(true), run_end = layout_.wait_hist();
  const std::size_t wait_begin = layout_.wait_hist(), wait_end = n;
  const std::pair<std::size_t, std::size_t> stages[] = {
      {SlotLayout::completed, SlotLayout::started},
      {run_begin, run_end},
      {SlotLayout::started, SlotLayout::cancelled},
      {wait_begin, wait_end},
      {SlotLayout::cancelled, SlotLayout::submitted},
      {SlotLayout::submitted, SlotLayout::fixed_count},
  };
  for (auto [begin, end] : stages) {
    for (auto& shard : shards_) {
      auto& folded = shard->folded();
      for (std::size_t i = begin; i < end; ++i) {
        const std::uint64_t v = shard->read(i);
        delta[i] += v - folded[i];
        folded[i] = v;
      }
    }
  }
  for (std::size_t i = 0; i < n; ++i) totals_[i] += delta[i];

  auto inc = [](prometheus::Counter* c, std::uint64_t d) {
    if (d) c->Increment(static_cast<double>(d));
  };
  inc(c_submitted_, delta[SlotLayout::submitted]);
  for (std::size_t r = 0; r < reject_reason_count; ++r) {
    inc(c_rejected_[r], delta[SlotLayout::rejected + r]);
  }
  inc(c_cancelled_, delta[SlotLayout::cancelled]);
  if (delta[SlotLayout::busy_ns]) {
    c_busy_->Increment(static_cast<double>(delta[SlotLayout::busy_ns]) / 1e9);
  }
  observe_delta(h_run_[0], delta, layout_.run_hist(true), layout_.run_buckets);
  observe_delta(h_run_[1], delta, layout_.run_hist(false), layout_.run_buckets);
  observe_delta(h_wait_, delta, layout_.wait_hist(), layout_.wait_buckets);

  auto diff = [](std::uint64_t a, std::uint64_t b) {
    return a > b ? static_cast<double>(a - b) : 0.0;
  };
  g_queued_->Set(diff(totals_[SlotLayout::submitted],
                      totals_[SlotLayout::started] + totals_[SlotLayout::cancelled]));
  g_running_->Set(diff(totals_[SlotLayout::started],
                       totals_[SlotLayout::completed] + totals_[SlotLayout::failed]));
  g_max_workers_->Set(static_cast<double>(max_workers_.load(std::memory_order_relaxed)));
  g_workers_->Set(static_cast<double>(workers_.load(std::memory_order_relaxed)));
  const std::uint64_t started = workers_started_.load(std::memory_order_relaxed);
  inc(c_workers_started_, started - workers_started_folded_);
  workers_started_folded_ = started;

  // A retired shard's thread is gone and its last counts are folded above.
  std::size_t keep = 0;
  for (std::size_t s = 0; s < shards_.size(); ++s) {
    if (!retired[s]) shards_[keep++] = std::move(shards_[s]);
  }
  shards_.resize(keep);
}

}  // namespace executor_exporter::detail
