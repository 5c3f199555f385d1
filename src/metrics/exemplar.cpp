#include <executor_exporter/metrics/exemplar.hpp>

#include <executor_exporter/metrics/detail/exemplar_store.hpp>
#include <executor_exporter/metrics/detail/label_value.hpp>
#include <executor_exporter/metrics/detail/registry_state.hpp>

#include <cstdint>
#include <string_view>

#include <fmt/format.h>

namespace executor_exporter {

namespace {

bool continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

std::size_t code_points(std::string_view s) {
  std::size_t n = 0;
  for (const char c : s) n += continuation(c) ? 0 : 1;
  return n;
}

// The first `n` code points of well-formed UTF-8 `s`.
void keep_front(std::string& s, std::size_t n) {
  std::size_t i = 0;
  for (std::size_t seen = 0; i < s.size(); ++i) {
    if (!continuation(s[i]) && seen++ == n) break;
  }
  s.resize(i);
}

// The last `n` code points of well-formed UTF-8 `s`.
void keep_back(std::string& s, std::size_t n) {
  std::size_t i = s.size();
  for (std::size_t seen = 0; i > 0 && seen < n;) {
    --i;
    if (!continuation(s[i])) ++seen;
  }
  s.erase(0, i);
}

// `digits` hex digits of a `words`-word id, most significant first.
std::string hex(std::initializer_list<std::uint64_t> words, std::size_t digits) {
  std::string all;
  for (const std::uint64_t w : words) fmt::format_to(std::back_inserter(all), "{:016x}", w);
  return all.substr(all.size() - std::min(digits, all.size()));
}

Exemplar exemplar_of(const detail::ExemplarSample& e, const std::string& task) {
  Exemplar x;
  x.value = static_cast<double>(e.value_ns) / 1e9;
  // Milliseconds are all Prometheus keeps of an exemplar's time.
  const std::uint64_t wall_ms = e.wall_ns / 1'000'000;
  x.timestamp = static_cast<double>(wall_ms) / 1e3;
  // Ids are bounded (20 decimal digits, 32 and 16 hex digits) and never cut: a cut id
  // names nothing. The task name and the call site share what is left.
  std::vector<std::pair<std::string, std::string>> ids;
  ids.emplace_back("task_id", fmt::format_int(e.task_id).str());
  if (e.trace.trace_len != 0) {
    ids.emplace_back("trace_id", hex({e.trace.trace_hi, e.trace.trace_lo}, e.trace.trace_len));
  }
  if (e.trace.span_len != 0) ids.emplace_back("span_id", hex({e.trace.span}, e.trace.span_len));
  std::string name = task;  // sanitized where the series was made
  std::string site;
  if (e.line != 0 && e.file != nullptr) {
    std::string_view file(e.file);
    if (const auto slash = file.find_last_of("/\\"); slash != std::string_view::npos) {
      file.remove_prefix(slash + 1);
    }
    site = detail::sanitize_label_value(file) + ":" + std::to_string(e.line);
  }
  std::size_t used = 0;
  for (const auto& [k, v] : ids) used += k.size() + v.size();
  if (!name.empty()) used += 4;  // "task"
  if (!site.empty()) used += 9;  // "call_site"
  const std::size_t left = exemplar_label_limit > used ? exemplar_label_limit - used : 0;
  std::size_t name_n = code_points(name);
  std::size_t site_n = code_points(site);
  if (name_n + site_n > left) {
    // Each keeps at least half of what is left; a short one gives the rest to the other.
    const std::size_t half = left / 2;
    if (site_n <= half) {
      name_n = left - site_n;
    } else if (name_n <= left - half) {
      site_n = left - name_n;
    } else {
      name_n = left - half;
      site_n = half;
    }
    keep_front(name, name_n);
    keep_back(site, site_n);  // the line and the end of the file name matter most
  }
  if (!name.empty()) x.labels.emplace_back("task", std::move(name));
  x.labels.emplace_back(std::move(ids[0]));
  if (!site.empty()) x.labels.emplace_back("call_site", std::move(site));
  for (std::size_t i = 1; i < ids.size(); ++i) x.labels.emplace_back(std::move(ids[i]));
  return x;
}

}  // namespace

ExemplarLookup exemplar_lookup(const std::shared_ptr<prometheus::Registry>& registry) {
  auto state = detail::RegistryState::of(registry);
  return [state](const prometheus::MetricFamily& family, const prometheus::ClientMetric& metric) {
    std::vector<std::optional<Exemplar>> out;
    if (family.type != prometheus::MetricType::Histogram) return out;
    std::vector<std::pair<std::string_view, std::string_view>> labels;
    labels.reserve(metric.label.size());
    std::string task;
    for (const auto& l : metric.label) {
      labels.emplace_back(l.name, l.value);
      if (l.name == "task") task = l.value;
    }
    const std::vector<detail::ExemplarSample> picked = state->exemplars(family.name, labels);
    out.reserve(picked.size());
    for (const auto& e : picked) {
      if (e.wall_ns == 0) {
        out.emplace_back();
      } else {
        out.emplace_back(exemplar_of(e, task));
      }
    }
    return out;
  };
}

}  // namespace executor_exporter
