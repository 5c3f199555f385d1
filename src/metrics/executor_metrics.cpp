#include <executor_exporter/detail/clock.hpp>
#include <executor_exporter/metrics/detail/executor_metrics.hpp>
#include <executor_exporter/metrics/detail/label_value.hpp>
#include <executor_exporter/metrics/detail/recorder.hpp>
#include <executor_exporter/metrics/detail/registry_state.hpp>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/summary.h>

#include <executor_exporter/metrics/trace_options.hpp>

#include <pthread.h>
#include <ctime>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <stdexcept>

namespace executor_exporter::detail {

namespace {

std::atomic<std::uint64_t> next_unique_id{1};

// Every executor-level object alive, for the watchdog and the flight recorder's dump.
// Leaked on purpose: objects in static storage may still unregister at exit. Walkers pin
// the objects and call into them without the list's mutex, which an executor's creation
// takes under the registry's lock: holding it while an object takes its own locks would
// order those after the registry's, against observe_trace's order.
struct LiveList {
  std::mutex mutex;
  std::condition_variable unpinned;
  std::vector<std::pair<ExecutorMetrics*, std::size_t>> all;  // object, walkers pinning it
};
LiveList& live_list() {
  static auto* list = new LiveList;
  return *list;
}

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
  for (std::size_t i = 0; same && i < bounds.size(); ++i)
    same = existing[i].upper_bound == bounds[i];
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

namespace {

// Where each event metric's atomics start in events_, by catalog position (one slot per
// value of its enumerated label, one when it has none), and the total as the last entry.
const std::array<std::size_t, metric_catalog.size() + 1>& event_layout() noexcept {
  static const auto offsets = [] {
    std::array<std::size_t, metric_catalog.size() + 1> o{};
    std::size_t next = 0;
    for (std::size_t i = 0; i < metric_catalog.size(); ++i) {
      o[i] = next;
      if (metric_catalog[i].source == MetricSource::event) {
        next += enumerated_series(metric_catalog[i]);
      }
    }
    o.back() = next;
    return o;
  }();
  return offsets;
}

std::size_t event_slot_count() noexcept { return event_layout().back(); }

}  // namespace

std::size_t ExecutorMetrics::event_offset(Metric m) noexcept {
  return event_layout()[static_cast<std::size_t>(m)];
}

ExecutorMetrics::ExecutorMetrics(std::shared_ptr<RegistryState> state,
                                 std::shared_ptr<prometheus::Registry> registry, std::string id,
                                 std::string type, const ExporterOptions& options, std::string task,
                                 ExecutorMetrics* parent)
    : state_(std::move(state)),
      registry_(std::move(registry)),
      id_(std::move(id)),
      type_(std::move(type)),
      options_(options),
      task_(std::move(task)),
      root_(parent != nullptr ? parent : this),
      unique_id_(next_unique_id.fetch_add(1, std::memory_order_relaxed)),
      run_bounds_ns_(to_ns(options.run_buckets, "run")),
      wait_bounds_ns_(to_ns(options.wait_buckets, "wait")),
      events_(std::make_unique<std::atomic<std::uint64_t>[]>(event_slot_count())),
      events_folded_(event_slot_count(), 0) {
  if (options.timing_sample_rate == 0) {
    throw std::invalid_argument(
        "executor_exporter: timing_sample_rate must be at least 1 (1 times every task)");
  }
  layout_.run_buckets = run_bounds_ns_.size();
  layout_.wait_buckets = wait_bounds_ns_.size();
  totals_.assign(layout_.size(), 0);
  state_->note_created(id_, type_, task_);
  for (std::size_t i = 0; i < event_slot_count(); ++i)
    events_[i].store(0, std::memory_order_relaxed);
  build_series();
  if (parent == nullptr) {
    auto& live = live_list();
    std::lock_guard lock(live.mutex);
    live.all.emplace_back(this, 0);
  }
}

// One loop over the catalog builds every series this object exports. A named child
// exports the families that have a task label; the executor level exports all but the
// trace family and the sampled gauges, whose series appear on first use.
void ExecutorMetrics::build_series() {
  prometheus::Labels base{{"executor", id_}, {"executor_type", type_}};
  if (!task_.empty()) base.emplace("task", task_);
  auto& s = *state_;
  for (std::size_t i = 0; i < metric_catalog.size(); ++i) {
    const auto m = static_cast<Metric>(i);
    const MetricSpec& sp = metric_catalog[i];
    if (sp.source == MetricSource::trace || sp.source == MetricSource::sampled ||
        sp.source == MetricSource::build || sp.source == MetricSource::sink) {
      continue;
    }
    if (!task_.empty() && !has_label(sp, "task")) continue;
    const auto values = label_values(sp);
    const auto values2 = second_label_values(sp);
    const std::string label(first_label(sp));
    const std::string label2(second_label(sp));
    const std::size_t n2 = std::max<std::size_t>(1, values2.size());
    // Series v is the pair (v / n2, v % n2) of the two enumerated labels' values.
    auto labels_for = [&](std::size_t v) {
      auto l = base;
      if (!values.empty()) l.emplace(label, std::string(values[v / n2]));
      if (!values2.empty()) l.emplace(label2, std::string(values2[v % n2]));
      return l;
    };
    const std::size_t n = enumerated_series(sp);
    Series& out = series_[i];
    for (std::size_t v = 0; v < n; ++v) {
      switch (sp.kind) {
        case MetricKind::counter:
          out.counters.push_back(&s.counter_family(m)->Add(labels_for(v)));
          break;
        case MetricKind::gauge:
          out.gauges.push_back(&s.gauge_family(m)->Add(labels_for(v)));
          break;
        case MetricKind::histogram:
          out.histograms.push_back(
              histogram(*s.histogram_family(m), labels_for(v),
                        m == Metric::task_wait ? options_.wait_buckets : options_.run_buckets));
          break;
      }
    }
  }
}

void ExecutorMetrics::sample(Metric m, const std::string& worker, double value) {
  const auto key = std::pair(static_cast<std::size_t>(m), worker);
  auto it = sampled_.find(key);
  if (it == sampled_.end()) {
    auto* g = &state_->gauge_family(m)->Add(
        {{"executor", id_}, {"executor_type", type_}, {std::string(first_label(spec(m))), worker}});
    it = sampled_.emplace(key, g).first;
  }
  it->second->Increment(value);
}

void ExecutorMetrics::add_observer(std::shared_ptr<TaskObserver> observer) {
  if (!observer) return;
  auto& root = *root_;
  std::lock_guard lock(root.observers_mutex_);
  const ObserverList* current = root.observers_.load(std::memory_order_acquire);
  auto next = std::make_unique<ObserverList>(current != nullptr ? *current : ObserverList{});
  next->push_back(std::move(observer));
  root.observers_.store(next.get(), std::memory_order_release);
  root.observer_lists_.push_back(std::move(next));
}

void ExecutorMetrics::remove_observer(const TaskObserver* observer) {
  auto& root = *root_;
  std::lock_guard lock(root.observers_mutex_);
  const ObserverList* current = root.observers_.load(std::memory_order_acquire);
  if (current == nullptr) return;
  auto next = std::make_unique<ObserverList>(*current);
  std::erase_if(*next, [&](const auto& o) { return o.get() == observer; });
  root.observers_.store(next->empty() ? nullptr : next.get(), std::memory_order_release);
  root.observer_lists_.push_back(std::move(next));
}

ExecutorMetrics& ExecutorMetrics::named(std::string_view name, std::size_t max_names) {
  // Hot path for named tasks: a per-thread cache of the last few names of this executor.
  struct CacheEntry {
    std::uint64_t owner = 0;
    std::string name;
    ExecutorMetrics* metrics = nullptr;
  };
  thread_local CacheEntry cache[4];
  thread_local unsigned next_slot = 0;
  for (auto& e : cache) {
    if (e.owner == unique_id_ && e.name == name) return *e.metrics;
  }
  // The label as exported: names are often built from user data.
  const std::string label = sanitize_label_value(name);
  std::lock_guard lock(named_mutex_);
  ExecutorMetrics* found = nullptr;
  if (auto it = named_.find(label); it != named_.end()) {
    found = it->second.get();
  } else if (label == "other") {
    // A task the user named "other" shares the overflow's series (one set of series per
    // label set), but it is no overflow.
    found = &other_series();
  } else if (named_.size() < max_names) {
    auto child =
        std::make_shared<ExecutorMetrics>(state_, registry_, id_, type_, options_, label, this);
    found = child.get();
    named_.emplace(label, std::move(child));
  } else {
    // Not cached: every overflowing submit is counted, and the table cannot grow.
    count(Metric::task_names_overflow, 0, 1);
    return other_series();
  }
  auto& slot = cache[next_slot++ % 4];
  slot.owner = unique_id_;
  slot.name.assign(name);
  slot.metrics = found;
  return *found;
}

// Caller holds named_mutex_.
ExecutorMetrics& ExecutorMetrics::other_series() {
  if (!other_) {
    other_ =
        std::make_shared<ExecutorMetrics>(state_, registry_, id_, type_, options_, "other", this);
  }
  return *other_;
}

// Caller holds trace_mutex_. The series of (scope, action) in `map`, made with
// make(labels) on first use. Past max_series distinct pairs, new pairs share
// scope="other", action="other" and count in executor_task_trace_overflow_total, as
// task names do: a scope or action built from user data cannot blow up the page.
template <class Map, class Make>
auto* ExecutorMetrics::trace_series(Map& map, std::string_view scope, std::string_view action,
                                    std::size_t max_series, Make&& make) {
  if (auto it = map.find(std::pair(scope, action)); it != map.end()) return it->second;
  if (map.size() >= max_series) {
    count(Metric::task_trace_overflow, 0, 1);
    scope = action = "other";
    if (auto it = map.find(std::pair(scope, action)); it != map.end()) return it->second;
  }
  auto* created = make(prometheus::Labels{{"executor", id_},
                                          {"executor_type", type_},
                                          {"scope", sanitize_label_value(scope)},
                                          {"action", sanitize_label_value(action)}});
  map.emplace(std::pair(std::string(scope), std::string(action)), created);
  return created;
}

void ExecutorMetrics::observe_trace(std::string_view scope, std::string_view action, double seconds,
                                    const TraceOptions& options, std::uint64_t from_ns,
                                    std::uint64_t to_ns) {
  if (to_ns != 0 && root_->options_.flight_recorder_slices != 0) {
    root_->record_mark(scope, action, from_ns, to_ns);
  }
  if (options.summary) {
    prometheus::Summary* series = nullptr;
    {
      std::lock_guard lock(trace_mutex_);
      series = trace_series(trace_sum_, scope, action, options.max_series,
                            [&](const prometheus::Labels& labels) {
                              prometheus::Summary::Quantiles quantiles;
                              for (const auto& q : options.quantiles) {
                                quantiles.push_back({q.quantile, q.error});
                              }
                              return &state_->trace_summary_family().Add(
                                  labels, quantiles, options.max_age, options.age_buckets);
                            });
    }
    series->Observe(seconds);
    return;
  }
  prometheus::Histogram* series = nullptr;
  {
    std::lock_guard lock(trace_mutex_);
    series = trace_series(
        trace_hist_, scope, action, options.max_series, [&](const prometheus::Labels& labels) {
          return histogram(state_->trace_histogram_family(), labels, options.buckets);
        });
  }
  series->Observe(seconds);
}

ExecutorMetrics::~ExecutorMetrics() {
  if (root_ == this) {
    auto& live = live_list();
    std::unique_lock lock(live.mutex);
    live.unpinned.wait(lock, [&] {
      for (const auto& [m, pins] : live.all) {
        if (m == this) return pins == 0;
      }
      return true;
    });
    std::erase_if(live.all, [&](const auto& e) { return e.first == this; });
  }
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
  // Only the executor level keeps the thread's running task and its flight recorder.
  auto shard = std::make_shared<MetricShard>(
      layout_, run_bounds_ns_, wait_bounds_ns_, options_.timing_sample_rate,
      root_ == this ? options_.flight_recorder_slices : 0, options_.task_cpu_time,
      options_.exemplars, std::uint64_t{options_.exemplar_refresh_ms} * 1'000'000);
  shard->thread = &cache;
  {
    std::lock_guard lock(mutex_);
    shards_.push_back(shard);
  }
  cache.entries.push_back({unique_id_, shard});
  cache.last_owner = unique_id_;
  cache.last = shard.get();
  return *cache.last;
}

std::uint64_t ExecutorMetrics::add_fold_hook(std::function<void()> hook) {
  std::lock_guard lock(hooks_mutex_);
  hooks_.emplace_back(next_hook_, std::move(hook));
  return next_hook_++;
}

void ExecutorMetrics::remove_fold_hook(std::uint64_t handle) {
  std::lock_guard lock(hooks_mutex_);
  std::erase_if(hooks_, [&](const auto& h) { return h.first == handle; });
}

void ExecutorMetrics::add_cpu_thread(const void* key) {
  clockid_t clock{};
  if (::pthread_getcpuclockid(::pthread_self(), &clock) != 0) return;
  std::lock_guard lock(mutex_);
  cpu_threads_.emplace_back(key, clock);
}

void ExecutorMetrics::remove_cpu_thread(const void* key) noexcept {
  const std::uint64_t own = thread_cpu_ns();  // this thread is the one registered
  std::lock_guard lock(mutex_);
  const auto it = std::find_if(cpu_threads_.begin(), cpu_threads_.end(),
                               [&](const auto& t) { return t.first == key; });
  if (it == cpu_threads_.end()) return;
  cpu_threads_.erase(it);
  cpu_retired_ns_ += own;
}

std::uint64_t ExecutorMetrics::add_running_probe(std::function<Running()> probe) {
  std::lock_guard lock(mutex_);
  running_probes_.emplace_back(next_probe_, std::move(probe));
  return next_probe_++;
}

void ExecutorMetrics::remove_running_probe(std::uint64_t handle) {
  std::lock_guard lock(mutex_);
  std::erase_if(running_probes_, [&](const auto& p) { return p.first == handle; });
}

void ExecutorMetrics::adjust(Metric m, std::int64_t delta) noexcept {
  // prometheus::Gauge::Increment is an atomic add, so concurrent changes from executors
  // sharing this id neither lock nor lose each other.
  for (auto* g : series_[static_cast<std::size_t>(m)].gauges)
    g->Increment(static_cast<double>(delta));
}

void ExecutorMetrics::fold() {
  std::lock_guard page(state_->page_mutex());
  fold_held();
}

ExecutorMetrics::Load ExecutorMetrics::load() {
  std::lock_guard page(state_->page_mutex());
  fold_held();
  // The fold above moved every shard's growth into totals_; reading them (not the shards)
  // leaves the shards' `folded` bookkeeping to the fold alone.
  std::vector<std::shared_ptr<ExecutorMetrics>> children;
  {
    std::lock_guard named_lock(named_mutex_);
    for (auto& [name, child] : named_) children.push_back(child);
    if (other_) children.push_back(other_);
  }
  Load out;
  out.wait_buckets.assign(layout_.wait_buckets + 1, 0);
  auto add_waits = [&](ExecutorMetrics& m) {
    std::lock_guard lock(m.mutex_);
    for (std::size_t i = 0; i <= m.layout_.wait_buckets && i < out.wait_buckets.size(); ++i) {
      out.wait_buckets[i] += m.totals_[m.layout_.wait_hist() + i];
    }
  };
  for (auto& child : children) add_waits(*child);
  add_waits(*this);
  std::lock_guard lock(mutex_);
  out.busy_ns = busy_exported_ns_;
  return out;
}

void ExecutorMetrics::fold_held() {
  for (auto& [key, gauge] : sampled_) gauge->Set(0);  // the hooks below add theirs up
  queued_since_ = 0;                                  // and note their oldest tasks
  peaks_noted_ = {};                                  // and their peaks
  {
    std::lock_guard hooks_lock(hooks_mutex_);
    for (auto& h : hooks_) h.second();
  }
  // The named children fold with their executor, from one snapshot of every shard:
  // folded one after the other, a worker's task that ended in one series and its next
  // task that started in another were both counted as running. Copied so that
  // named_mutex_ is not held while they fold.
  std::vector<std::shared_ptr<ExecutorMetrics>> children;
  {
    std::lock_guard named_lock(named_mutex_);
    for (auto& [name, child] : named_) children.push_back(child);
    if (other_) children.push_back(other_);
  }
  std::vector<ExecutorMetrics*> objects;
  objects.reserve(children.size() + 1);
  for (auto& child : children) objects.push_back(child.get());
  objects.push_back(this);
  // Nothing else takes two of these mutexes at once, so any order is deadlock-free.
  std::vector<std::unique_lock<std::mutex>> locks;
  locks.reserve(objects.size());
  for (auto* o : objects) locks.emplace_back(o->mutex_);
  // Before any shard is read: a shard seen as retired has all its counts in the read
  // below and can be dropped after it; a task that starts during this fold is not
  // counted yet.
  std::vector<std::vector<bool>> retired(objects.size());
  for (std::size_t i = 0; i < objects.size(); ++i) {
    for (const auto& shard : objects[i]->shards_) {
      retired[i].push_back(shard->retired.load(std::memory_order_acquire));
    }
  }
  const std::uint64_t now = now_ns();
  auto snapshots = read_shards(objects, retired);
  for (std::size_t i = 0; i < objects.size(); ++i) {
    objects[i]->fold_tasks(snapshots[i], retired[i], now);
    objects[i]->fold_rare();
  }
  if (root_ == this) {
    fold_stuck(objects, now);
    fold_peaks(objects, now);
  }
}

void ExecutorMetrics::fold_peaks(const std::vector<ExecutorMetrics*>& objects, std::uint64_t now) {
  // The gauges just set are a floor: tasks the hooks do not see (a proxy sharing this
  // id, manual recording, a worker's reserve) were at least that many at this instant.
  Peaks at_fold{now, 0, 0};
  for (const auto* o : objects) {
    at_fold.queued += static_cast<std::uint64_t>(
        o->series_[static_cast<std::size_t>(Metric::tasks_queued)].gauges[0]->Value());
    at_fold.running += static_cast<std::uint64_t>(
        o->series_[static_cast<std::size_t>(Metric::tasks_running)].gauges[0]->Value());
  }
  at_fold.queued = std::max(at_fold.queued, peaks_noted_.queued);
  at_fold.running = std::max(at_fold.running, peaks_noted_.running);
  peaks_.push_back(at_fold);
  // An entry stands for the time since the fold before it, so the oldest kept may reach
  // back a little past the window: a peak is kept too long rather than lost.
  const auto window = static_cast<std::uint64_t>(
      std::max<std::int64_t>(0, std::chrono::nanoseconds(options_.peak_window).count()));
  while (peaks_.size() > 1 && now - peaks_.front().at_ns > window) peaks_.pop_front();
  Peaks top;
  for (const auto& p : peaks_) {
    top.queued = std::max(top.queued, p.queued);
    top.running = std::max(top.running, p.running);
  }
  series_[static_cast<std::size_t>(Metric::tasks_queued_max)].gauges[0]->Set(
      static_cast<double>(top.queued));
  series_[static_cast<std::size_t>(Metric::tasks_running_max)].gauges[0]->Set(
      static_cast<double>(top.running));
}

void ExecutorMetrics::fold_stuck(const std::vector<ExecutorMetrics*>& objects, std::uint64_t now) {
  std::vector<RunningTask> running;
  running_tasks_held(running);
  std::vector<std::uint64_t> oldest(objects.size(), 0);
  std::uint64_t stuck = 0;
  const auto threshold =
      static_cast<std::uint64_t>(std::max<std::int64_t>(0, options_.stuck_after.count()));
  for (const auto& r : running) {
    const std::uint64_t age = now > r.start_ns ? now - r.start_ns : 0;
    // A task of a name whose series is not among `objects` (cannot happen but for a
    // name made during this fold) counts as the executor's.
    std::size_t at = objects.size() - 1;
    for (std::size_t i = 0; i < objects.size(); ++i) {
      if (objects[i] == r.series) at = i;
    }
    oldest[at] = std::max(oldest[at], age);
    if (age > threshold) ++stuck;
  }
  for (std::size_t i = 0; i < objects.size(); ++i) {
    const auto& gauges =
        objects[i]->series_[static_cast<std::size_t>(Metric::task_oldest_running)].gauges;
    if (!gauges.empty()) gauges[0]->Set(static_cast<double>(oldest[i]) / 1e9);
  }
  series_[static_cast<std::size_t>(Metric::tasks_stuck)].gauges[0]->Set(static_cast<double>(stuck));
  const std::uint64_t queued = queued_since_ != 0 && now > queued_since_ ? now - queued_since_ : 0;
  series_[static_cast<std::size_t>(Metric::task_oldest_queued)].gauges[0]->Set(
      static_cast<double>(queued) / 1e9);
}

// Caller holds mutex_.
void ExecutorMetrics::running_tasks_held(std::vector<RunningTask>& out) {
  for (const auto& shard : shards_) {
    CurrentTask t;
    if (!shard->current_task(t)) continue;
    RunningTask r;
    r.series = static_cast<const ExecutorMetrics*>(t.series);
    r.start_ns = t.start_ns;
    r.where = t.where;
    r.id = t.id;
    r.tid = shard->thread_id();
    r.thread = shard->thread_name();
    out.push_back(std::move(r));
  }
  for (const auto& [handle, probe] : running_tasks_probes_) probe(out);
}

std::vector<ExecutorMetrics::RunningTask> ExecutorMetrics::running_tasks() {
  std::vector<RunningTask> out;
  std::lock_guard lock(mutex_);
  running_tasks_held(out);
  return out;
}

std::uint64_t ExecutorMetrics::add_running_tasks_probe(
    std::function<void(std::vector<RunningTask>&)> probe) {
  std::lock_guard lock(mutex_);
  running_tasks_probes_.emplace_back(next_probe_, std::move(probe));
  return next_probe_++;
}

void ExecutorMetrics::remove_running_tasks_probe(std::uint64_t handle) {
  std::lock_guard lock(mutex_);
  std::erase_if(running_tasks_probes_, [&](const auto& p) { return p.first == handle; });
}

void ExecutorMetrics::record_mark(std::string_view scope, std::string_view action,
                                  std::uint64_t from_ns, std::uint64_t to_ns) {
  // Marks are opt-in and rare next to tasks, and observe_trace already takes this lock.
  std::lock_guard lock(trace_mutex_);
  if (marks_.empty()) marks_.resize(options_.flight_recorder_slices);  // on the first mark
  MarkSlice& m = marks_[marks_written_ % marks_.size()];
  m.tid = current_thread_id();
  m.from_ns = from_ns;
  m.to_ns = to_ns;
  m.scope.assign(scope);
  m.action.assign(action);
  ++marks_written_;
}

std::vector<ExecutorMetrics::MarkSlice> ExecutorMetrics::flight_marks() {
  std::lock_guard lock(trace_mutex_);
  std::vector<MarkSlice> out;
  const std::size_t n = std::min(marks_written_, marks_.size());
  out.reserve(n);
  for (std::size_t i = marks_written_ - n; i < marks_written_; ++i) {
    out.push_back(marks_[i % marks_.size()]);
  }
  return out;
}

std::vector<ExecutorMetrics::ThreadSlices> ExecutorMetrics::flight_slices() {
  std::vector<ThreadSlices> out;
  std::lock_guard lock(mutex_);
  for (const auto& shard : shards_) {
    ThreadSlices t;
    t.tid = shard->thread_id();
    t.thread = shard->thread_name();
    t.slices = shard->slices();
    if (!t.slices.empty()) out.push_back(std::move(t));
  }
  return out;
}

void ExecutorMetrics::for_each_live(const std::function<void(ExecutorMetrics&)>& fn) {
  auto& live = live_list();
  std::vector<ExecutorMetrics*> pinned;
  {
    std::lock_guard lock(live.mutex);
    for (auto& [m, pins] : live.all) {
      ++pins;
      pinned.push_back(m);
    }
  }
  auto unpin = [&] {
    std::lock_guard lock(live.mutex);
    for (auto& [m, pins] : live.all) {
      if (std::find(pinned.begin(), pinned.end(), m) != pinned.end()) --pins;
    }
    live.unpinned.notify_all();
  };
  try {
    for (auto* m : pinned) fn(*m);
  } catch (...) {
    unpin();
    throw;
  }
  unpin();
}

std::array<std::pair<std::size_t, std::size_t>, 4> ExecutorMetrics::lifecycle_ranges() const {
  // Later lifecycle stages before earlier ones (SlotLayout's order): the ended ones and
  // busy time, the run histograms, started, dequeued, then the wait histogram.
  return {{{SlotLayout::completed, SlotLayout::started},
           {layout_.run_hist(true), layout_.wait_hist()},
           {SlotLayout::started, SlotLayout::cancelled},
           {layout_.wait_hist(), layout_.size()}}};
}

template <class ValueOf>
std::uint64_t ExecutorMetrics::ended_count(ValueOf&& value_of) const {
  // With every task timed, the run histograms' counts (the exported outcome counters);
  // with sampled timing, the exact per-shard outcome slots.
  if (options_.timing_sample_rate != 1) {
    return value_of(SlotLayout::completed) + value_of(SlotLayout::failed);
  }
  std::uint64_t n = 0;
  for (const bool ok : {true, false}) {
    for (std::size_t i = 0; i <= layout_.run_buckets; ++i) n += value_of(layout_.run_hist(ok) + i);
  }
  return n;
}

// Callers hold the mutex_ of every object.
std::vector<ExecutorMetrics::ShardSnapshots> ExecutorMetrics::read_shards(
    const std::vector<ExecutorMetrics*>& objects, std::vector<std::vector<bool>>& retired) {
  std::vector<ShardSnapshots> out(objects.size());
  // The shards of each thread, as (object, shard) positions.
  std::map<const void*, std::vector<std::pair<std::size_t, std::size_t>>> by_thread;
  for (std::size_t o = 0; o < objects.size(); ++o) {
    const auto& shards = objects[o]->shards_;
    out[o].assign(shards.size(), std::vector<std::uint64_t>(objects[o]->layout_.size(), 0));
    for (std::size_t s = 0; s < shards.size(); ++s) by_thread[shards[s]->thread].emplace_back(o, s);
  }
  for (const auto& [thread, group] : by_thread) {
    for (int attempt = 0;; ++attempt) {
      // Later lifecycle stages before earlier ones (SlotLayout's order): the ended ones
      // and busy time, the run histograms, started, dequeued, then the wait histogram.
      for (const auto& [o, s] : group) {
        const ExecutorMetrics& m = *objects[o];
        const MetricShard& shard = *m.shards_[s];
        auto& snap = out[o][s];
        for (auto [begin, end] : m.lifecycle_ranges()) {
          for (std::size_t i = begin; i < end; ++i) snap[i] = shard.read(i);
        }
      }
      // A task of this thread that ended since its shard was read: read the group again.
      bool still = true;
      for (const auto& [o, s] : group) {
        const ExecutorMetrics& m = *objects[o];
        const MetricShard& shard = *m.shards_[s];
        const auto& snap = out[o][s];
        still = still && m.ended_count([&](std::size_t i) { return snap[i]; }) ==
                             m.ended_count([&](std::size_t i) { return shard.read(i); });
        // A task that started while its wait histogram was read: its submit time and its
        // count must be seen together (MetricShard::task_started).
        std::uint64_t timed_started = 0;
        for (std::size_t i = 0; i <= m.layout_.wait_buckets; ++i) {
          timed_started += snap[m.layout_.wait_hist() + i];
        }
        still = still && timed_started == snap[m.layout_.started_begin()];
      }
      if (still) break;
      if (attempt == 63) {
        // Under churn too constant to read one instant (a thread ending a task every few
        // reads), this fold keeps the thread's last consistent snapshot: its tasks move
        // on at the next fold, and the page stays true, only older for this thread.
        for (const auto& [o, s] : group) {
          const ExecutorMetrics& m = *objects[o];
          const auto& folded = m.shards_[s]->folded();
          auto& snap = out[o][s];
          for (auto [begin, end] : m.lifecycle_ranges()) {
            for (std::size_t i = begin; i < end; ++i) snap[i] = folded[i];
          }
          retired[o][s] = false;  // kept for the fold that reads it whole
        }
        break;
      }
    }
  }
  return out;
}

// Caller holds mutex_.
void ExecutorMetrics::fold_rare() {
  for (std::size_t i = 0; i < metric_catalog.size(); ++i) {
    const Series& out = series_[i];
    switch (metric_catalog[i].source) {
      case MetricSource::event:
        for (std::size_t v = 0; v < out.counters.size(); ++v) {
          const std::size_t slot = event_offset(static_cast<Metric>(i)) + v;
          const std::uint64_t now = events_[slot].load(std::memory_order_relaxed);
          if (now != events_folded_[slot]) {
            out.counters[v]->Increment(static_cast<double>(now - events_folded_[slot]));
          }
          events_folded_[slot] = now;
        }
        break;
      default:
        break;
    }
  }
}

// Caller holds mutex_, after fold_tasks moved this fold's growth into totals_. The queued
// seconds are the integral of the queue depth up to now: the waits of the timed tasks that
// left the queue (the wait histogram's sum, and the dropped ones') plus, for those still
// queued, n·T − Σ submit, all in wrapping unsigned arithmetic whose result is exact. T is
// read after every slot, so no task seen is younger than it. The running seconds are the
// run histograms' sums plus the running tasks' time so far. Both count timed tasks only,
// scaled by the sample rate as the busy seconds are, and only ever rise: a value a fold
// reads short (a task starting or ending between two of its reads) is caught up by the
// next ones.
void ExecutorMetrics::fold_averages(std::uint64_t running_series_ns, const Running& outside) {
  const std::uint64_t t = now_ns();
  std::uint64_t left = totals_[SlotLayout::dropped_end];
  for (std::size_t i = 0; i <= layout_.wait_buckets; ++i) left += totals_[layout_.wait_hist() + i];
  const std::uint64_t queued_n = totals_[SlotLayout::timed_end] - left;
  const std::uint64_t queued_submit_sum = totals_[SlotLayout::submit_sum] -
                                          totals_[layout_.started_submit_sum()] -
                                          totals_[SlotLayout::dropped_submit_sum];
  const std::uint64_t waited = totals_[layout_.wait_hist() + layout_.wait_buckets + 1] +
                               totals_[SlotLayout::dropped_wait_ns];
  const auto queued = static_cast<std::int64_t>(waited + queued_n * t - queued_submit_sum);
  const std::uint64_t weight = options_.timing_sample_rate;
  const std::uint64_t ran = totals_[layout_.run_hist(true) + layout_.run_buckets + 1] +
                            totals_[layout_.run_hist(false) + layout_.run_buckets + 1];
  // The process pool's probe: its running tasks, counted in the executor's series.
  const std::uint64_t outside_ns = root_ == this ? outside.run_ns : 0;
  auto raise = [&](Metric m, std::uint64_t total, std::uint64_t& exported) {
    if (total <= exported) return;
    series_[static_cast<std::size_t>(m)].counters[0]->Increment(
        static_cast<double>(total - exported) / 1e9);
    exported = total;
  };
  raise(Metric::tasks_queued_seconds, queued > 0 ? static_cast<std::uint64_t>(queued) * weight : 0,
        queued_exported_ns_);
  raise(Metric::tasks_running_seconds, ran * weight + running_series_ns + outside_ns,
        running_exported_ns_);
}

// Caller holds mutex_; `snapshot` is this object's part of read_shards().
void ExecutorMetrics::fold_tasks(ShardSnapshots& snapshot, const std::vector<bool>& retired,
                                 std::uint64_t now) {
  const std::size_t n = layout_.size();
  std::vector<std::uint64_t> delta(n, 0);
  // The lifecycle stages were read later ones first (read_shards): a task seen as ended
  // is then surely seen as started, and one seen as started surely as submitted (read
  // below), so the gauges derived below never go negative and every scrape reconciles.
  const bool every_task_timed = options_.timing_sample_rate == 1;
  auto outcome_count = [&](auto&& value_of, bool ok) {
    if (!every_task_timed) return value_of(ok ? SlotLayout::completed : SlotLayout::failed);
    std::uint64_t count = 0;
    for (std::size_t i = 0; i <= layout_.run_buckets; ++i) {
      count += value_of(layout_.run_hist(ok) + i);
    }
    return count;
  };
  // Running tasks' time so far, for the busy seconds.
  const Series& busy = series_[static_cast<std::size_t>(Metric::worker_busy)];
  const bool executor_level = !busy.counters.empty();
  std::uint64_t running_ns = 0;
  std::uint64_t running_series_ns = 0;  // this series' running tasks, for its running seconds
  const auto per_shard = lifecycle_ranges();
  for (std::size_t s = 0; s < shards_.size(); ++s) {
    auto& shard = shards_[s];
    // After the busy slot (see MetricShard::set_running_since): a task whose busy time
    // was read is never counted as running too.
    const std::uint64_t since = shard->running_since();
    if (executor_level && since != 0 && since < now) running_ns += now - since;
    const std::uint64_t series_since = shard->series_running_since();
    if (series_since != 0 && series_since < now) running_series_ns += now - series_since;
    auto& folded = shard->folded();
    for (auto [begin, end] : per_shard) {
      for (std::size_t i = begin; i < end; ++i) {
        delta[i] += snapshot[s][i] - folded[i];
        folded[i] = snapshot[s][i];
      }
    }
  }
  const std::pair<std::size_t, std::size_t> across_shards[] = {
      {SlotLayout::cancelled, SlotLayout::submitted},
      {SlotLayout::submitted, SlotLayout::fixed_count},
  };
  // Each stage of every shard before the earlier stage of any: a task dropped or started
  // on one thread was submitted on another. Within a shard, the begin and end markers
  // of the queued seconds must agree (a task dropped or submitted while its slots were
  // read is read again); under constant churn the slots between the markers keep their
  // last consistent read and move on at the next fold. The plain counts beside them
  // (cancelled, expired, submitted, rejected) are always the fresh read: a count kept
  // from an earlier fold would be short of the tasks other threads were just seen
  // starting, and the gauges derived from it would not reconcile.
  const std::pair<std::size_t, std::size_t> markers[] = {
      {SlotLayout::dropped_end, SlotLayout::dropped_begin},
      {SlotLayout::timed_end, SlotLayout::timed_begin},
  };
  std::vector<std::uint64_t> read(n, 0);
  for (std::size_t stage = 0; stage < 2; ++stage) {
    const auto [begin, end] = across_shards[stage];
    for (auto& shard : shards_) {
      auto& folded = shard->folded();
      bool whole = false;
      for (int attempt = 0; attempt < 64 && !whole; ++attempt) {
        for (std::size_t i = begin; i < end; ++i) read[i] = shard->read(i);
        whole = read[markers[stage].first] == read[markers[stage].second];
      }
      const auto [first_marker, last_marker] = markers[stage];
      for (std::size_t i = begin; i < end; ++i) {
        const bool between_markers = i >= first_marker && i <= last_marker;
        const std::uint64_t v = whole || !between_markers ? read[i] : folded[i];
        delta[i] += v - folded[i];
        folded[i] = v;
      }
    }
  }
  for (std::size_t i = 0; i < n; ++i) totals_[i] += delta[i];
  // After every shard read: a task the probe reports was not yet counted as ended above.
  Running outside;
  for (const auto& [handle, probe] : running_probes_) {
    const Running r = probe();
    outside.tasks += r.tasks;
    outside.run_ns += r.run_ns;
  }

  auto inc = [&](Metric m, std::size_t label, std::uint64_t d) {
    if (d) series_[static_cast<std::size_t>(m)].counters[label]->Increment(static_cast<double>(d));
  };
  inc(Metric::tasks_submitted, 0, delta[SlotLayout::submitted]);
  for (std::size_t r = 0; r < reject_reason_count; ++r) {
    inc(Metric::tasks_rejected, r, delta[SlotLayout::rejected + r]);
  }
  inc(Metric::tasks_cancelled, 0, delta[SlotLayout::cancelled]);
  inc(Metric::tasks_expired, 0, delta[SlotLayout::expired]);
  auto delta_of = [&](std::size_t i) { return delta[i]; };
  inc(Metric::tasks_completed, 0, outcome_count(delta_of, true));
  inc(Metric::tasks_failed, 0, outcome_count(delta_of, false));
  if (executor_level) {
    // Finished tasks' busy time plus running tasks' time so far. A finished timed task
    // stands for the N tasks of its sample (timing_sample_rate), but a running one is
    // counted once: it occupies one worker, and weighting it by N made a sampled pool of
    // long tasks report N times its worker count as busy until the task ended. A task
    // that ends during the fold can be missed by both reads (short), or counted as
    // running up to `now` although it ended a moment before (long by that moment,
    // nanoseconds). The counter only ever rises to the largest total seen, so it stays
    // monotonic, and it is exact again once later tasks' time passes that total.
    const std::uint64_t total = totals_[SlotLayout::busy_ns] + running_ns + outside.run_ns;
    if (total > busy_exported_ns_) {
      busy.counters[0]->Increment(static_cast<double>(total - busy_exported_ns_) / 1e9);
      busy_exported_ns_ = total;
    }
  }
  fold_averages(running_series_ns, outside);
  if (executor_level) {
    // The worker threads' clocks now (a thread still registered is alive: it removes
    // itself under mutex_, which this fold holds), those gone, and what the proxy's
    // tasks measured. Only ever raised, as the busy seconds.
    std::uint64_t cpu = cpu_retired_ns_ + totals_[SlotLayout::foreign_cpu_ns];
    for (const auto& [key, clock] : cpu_threads_) {
      timespec ts{};
      if (::clock_gettime(clock, &ts) == 0) {
        cpu += static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000U +
               static_cast<std::uint64_t>(ts.tv_nsec);
      }
    }
    if (cpu > cpu_exported_ns_) {
      series_[static_cast<std::size_t>(Metric::worker_cpu)].counters[0]->Increment(
          static_cast<double>(cpu - cpu_exported_ns_) / 1e9);
      cpu_exported_ns_ = cpu;
    }
  }
  observe_delta(series_[static_cast<std::size_t>(Metric::task_cpu)].histograms[0], delta,
                layout_.cpu_hist(), layout_.run_buckets);
  const auto& run = series_[static_cast<std::size_t>(Metric::task_run)].histograms;
  observe_delta(run[0], delta, layout_.run_hist(true), layout_.run_buckets);
  observe_delta(run[1], delta, layout_.run_hist(false), layout_.run_buckets);
  observe_delta(series_[static_cast<std::size_t>(Metric::task_wait)].histograms[0], delta,
                layout_.wait_hist(), layout_.wait_buckets);

  auto diff = [](std::uint64_t a, std::uint64_t b) {
    return a > b ? static_cast<double>(a - b) : 0.0;
  };
  // Tasks accepted and not counted as started, cancelled or expired: queued, or running
  // where only the probe sees them (at most all of them: the sum below stays exact).
  const std::uint64_t unstarted_counted =
      totals_[SlotLayout::started] + totals_[SlotLayout::cancelled] + totals_[SlotLayout::expired];
  const std::uint64_t unstarted = totals_[SlotLayout::submitted] > unstarted_counted
                                      ? totals_[SlotLayout::submitted] - unstarted_counted
                                      : 0;
  const std::uint64_t outside_running = std::min(outside.tasks, unstarted);
  series_[static_cast<std::size_t>(Metric::tasks_queued)].gauges[0]->Set(
      static_cast<double>(unstarted - outside_running));
  // Ended tasks as the exported outcome counters count them: running is derived from what
  // is exported, so submitted = completed + failed + cancelled + expired + queued +
  // running holds exactly on every scrape, not just eventually.
  const std::uint64_t ended = ended_count([&](std::size_t i) { return totals_[i]; });
  series_[static_cast<std::size_t>(Metric::tasks_running)].gauges[0]->Set(
      diff(totals_[SlotLayout::started], ended) + static_cast<double>(outside_running));
  if (options_.exemplars) pick_exemplars();
  // A retired shard's thread is gone and its last counts are folded above.
  std::size_t keep = 0;
  for (std::size_t s = 0; s < shards_.size(); ++s) {
    if (!retired[s]) shards_[keep++] = std::move(shards_[s]);
  }
  shards_.resize(keep);
}

// Caller holds mutex_. The newest exemplar per (histogram, bucket) across the shards,
// kept across folds (a thread that exits leaves its last ones), handed to the registry
// state for the OpenMetrics page.
void ExecutorMetrics::pick_exemplars() {
  bool changed = false;
  for (std::size_t h = 0; h < ExemplarStore::histograms; ++h) {
    auto& picked = exemplars_[h];
    for (const auto& shard : shards_) {
      const ExemplarStore* store = shard->exemplars();
      if (store == nullptr) continue;
      picked.resize(store->buckets(h));
      for (std::size_t b = 0; b < picked.size(); ++b) {
        const std::optional<ExemplarSample> e = store->read(h, b);
        if (e && e->wall_ns > picked[b].wall_ns) {
          picked[b] = *e;
          changed = true;
        }
      }
    }
  }
  if (changed) state_->note_exemplars(id_, type_, task_, exemplars_);
}

}  // namespace executor_exporter::detail
