// Parser for the Prometheus text exposition format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/), for tests.
//
//   auto page = ee_test::prom::parse(body);
//   double n = ee_test::prom::value(page, "executor_tasks_submitted_total",
//                                   {{"executor", "demo"}});
//
// The parser is strict: malformed lines, invalid names or escapes, duplicate label names,
// duplicate series, a second HELP/TYPE line, TYPE after samples, and families split into
// several groups all throw ee_test::prom::ParseError (a std::runtime_error) with the line number.
#pragma once

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace ee_test::prom {

// Label name -> unescaped value, ordered by name.
using Labels = std::map<std::string, std::string, std::less<>>;

struct Sample {
  std::string name;  // e.g. "foo_bucket" for a histogram family "foo"
  Labels labels;
  double value = 0;
  std::optional<std::int64_t> timestamp_ms;
};

struct Family {
  std::string name;
  std::string type = "untyped";  // counter | gauge | histogram | summary | untyped
  std::string help;              // unescaped
  bool has_type = false;
  bool has_help = false;
  std::vector<Sample> samples;
};

struct Page {
  std::vector<Family> families;  // in order of appearance

  const Family* family(std::string_view name) const {
    for (const auto& f : families)
      if (f.name == name) return &f;
    return nullptr;
  }

  // Samples called `name` whose labels include all of `subset`.
  std::vector<const Sample*> find(std::string_view name, const Labels& subset = {}) const {
    std::vector<const Sample*> out;
    for (const auto& f : families) {
      for (const auto& s : f.samples) {
        if (s.name != name) continue;
        bool match = true;
        for (const auto& [k, v] : subset) {
          auto it = s.labels.find(k);
          if (it == s.labels.end() || it->second != v) {
            match = false;
            break;
          }
        }
        if (match) out.push_back(&s);
      }
    }
    return out;
  }
};

class ParseError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline std::string format_labels(const Labels& labels) {
  std::string s = "{";
  for (const auto& [k, v] : labels) {
    if (s.size() > 1) s += ",";
    s += k + "=\"";
    for (char c : v) {
      if (c == '\\' || c == '"') {
        s += '\\';
        s += c;
      } else if (c == '\n') {
        s += "\\n";
      } else {
        s += c;
      }
    }
    s += "\"";
  }
  return s + "}";
}

namespace detail {

inline bool is_name_start(char c, bool allow_colon) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || (allow_colon && c == ':');
}
inline bool is_name_char(char c, bool allow_colon) {
  return is_name_start(c, allow_colon) || std::isdigit(static_cast<unsigned char>(c));
}
inline bool valid_name(std::string_view s, bool allow_colon) {
  if (s.empty() || !is_name_start(s[0], allow_colon)) return false;
  for (char c : s)
    if (!is_name_char(c, allow_colon)) return false;
  return true;
}
inline bool is_blank(char c) { return c == ' ' || c == '\t'; }

// Go strconv.ParseFloat-compatible enough for the exposition format.
inline std::optional<double> parse_float(std::string_view s) {
  if (s.empty()) return std::nullopt;
  bool negative = false;
  std::string_view body = s;
  if (body[0] == '+' || body[0] == '-') {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  std::string lower;
  for (char c : body) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "inf" || lower == "infinity") {
    return negative ? -std::numeric_limits<double>::infinity()
                    : std::numeric_limits<double>::infinity();
  }
  if (lower == "nan") return std::numeric_limits<double>::quiet_NaN();
  if (body.empty() || !(std::isdigit(static_cast<unsigned char>(body[0])) || body[0] == '.'))
    return std::nullopt;
  double v = 0;
  auto [p, ec] = std::from_chars(body.data(), body.data() + body.size(), v);
  if (ec != std::errc() || p != body.data() + body.size()) return std::nullopt;
  return negative ? -v : v;
}

class LineParser {
 public:
  LineParser(std::string_view line, std::size_t line_no) : line_(line), line_no_(line_no) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw ParseError("prom_text: line " + std::to_string(line_no_) + ": " + what + ": '" +
                     std::string(line_) + "'");
  }

  bool at_end() const { return pos_ >= line_.size(); }
  char peek() const { return at_end() ? '\0' : line_[pos_]; }
  void skip_blanks() {
    while (!at_end() && is_blank(line_[pos_])) ++pos_;
  }
  bool skip_required_blanks() {
    const auto start = pos_;
    skip_blanks();
    return pos_ > start;
  }
  std::string_view token() {  // up to the next blank
    const auto start = pos_;
    while (!at_end() && !is_blank(line_[pos_])) ++pos_;
    return line_.substr(start, pos_ - start);
  }
  std::string_view name(bool allow_colon) {
    const auto start = pos_;
    while (!at_end() && is_name_char(line_[pos_], allow_colon)) ++pos_;
    return line_.substr(start, pos_ - start);
  }
  std::string_view rest() {
    auto r = line_.substr(pos_);
    pos_ = line_.size();
    return r;
  }
  void expect(char c, const char* what) {
    if (peek() != c) fail(std::string("expected ") + what);
    ++pos_;
  }

  // Unescapes \\ and \n (and \" when `quoted`); in quoted mode stops at the closing quote.
  std::string unescape(bool quoted) {
    std::string out;
    while (true) {
      if (at_end()) {
        if (quoted) fail("unterminated label value");
        return out;
      }
      char c = line_[pos_++];
      if (quoted && c == '"') return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_end()) fail("dangling backslash");
      char e = line_[pos_++];
      if (e == '\\') {
        out += '\\';
      } else if (e == 'n') {
        out += '\n';
      } else if (e == '"' && quoted) {
        out += '"';
      } else {
        fail(std::string("invalid escape sequence '\\") + e + "'");
      }
    }
  }

 private:
  std::string_view line_;
  std::size_t line_no_;
  std::size_t pos_ = 0;
};

inline bool has_suffix(std::string_view s, std::string_view suffix) {
  return s.size() > suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Name of the family a sample called `sample` would belong to, given a family `f`.
inline bool belongs_to(const Family& f, std::string_view sample) {
  if (sample == f.name) return true;
  auto base_is = [&](std::string_view suffix) {
    return has_suffix(sample, suffix) && sample.substr(0, sample.size() - suffix.size()) == f.name;
  };
  if (f.type == "histogram") return base_is("_bucket") || base_is("_sum") || base_is("_count");
  if (f.type == "summary") return base_is("_sum") || base_is("_count");
  return false;
}

}  // namespace detail

inline Page parse(std::string_view text) {
  using detail::LineParser;
  Page page;
  std::set<std::string> closed;  // families whose group has ended
  std::set<std::string> series;  // name + formatted labels, for duplicate detection
  Family* current = nullptr;

  auto open_family = [&](std::string_view name, LineParser& lp) -> Family& {
    if (current && current->name == name) return *current;
    if (current) closed.insert(current->name);
    if (closed.count(std::string(name)) || page.family(name))
      lp.fail("metric family '" + std::string(name) + "' appears in more than one group");
    page.families.push_back(Family{std::string(name), "untyped", "", false, false, {}});
    current = &page.families.back();
    return *current;
  };

  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    LineParser lp(line, line_no);
    lp.skip_blanks();
    if (lp.at_end()) continue;  // blank line

    if (lp.peek() == '#') {
      lp.expect('#', "'#'");
      if (!lp.skip_required_blanks()) continue;  // "#foo": plain comment
      const auto keyword = lp.token();
      if (keyword != "HELP" && keyword != "TYPE") continue;  // plain comment
      if (!lp.skip_required_blanks()) lp.fail("missing metric name");
      const auto name = lp.name(true);
      if (!detail::valid_name(name, true)) lp.fail("invalid metric name");
      if (!lp.at_end() && !detail::is_blank(lp.peek())) lp.fail("invalid metric name");
      Family& f = open_family(name, lp);
      if (keyword == "HELP") {
        if (f.has_help) lp.fail("second HELP line for '" + f.name + "'");
        if (!lp.at_end()) lp.skip_required_blanks();
        f.help = lp.unescape(false);
        f.has_help = true;
      } else {
        if (f.has_type) lp.fail("second TYPE line for '" + f.name + "'");
        if (!f.samples.empty()) lp.fail("TYPE line for '" + f.name + "' after its samples");
        if (!lp.skip_required_blanks()) lp.fail("missing type");
        const auto type = lp.token();
        lp.skip_blanks();
        if (!lp.at_end()) lp.fail("trailing characters after type");
        if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" &&
            type != "untyped") {
          lp.fail("unknown type '" + std::string(type) + "'");
        }
        f.type = std::string(type);
        f.has_type = true;
      }
      continue;
    }

    // Sample line.
    Sample s;
    const auto name = lp.name(true);
    if (!detail::valid_name(name, true)) lp.fail("invalid metric name");
    s.name = std::string(name);
    bool separated = lp.skip_required_blanks();
    if (lp.peek() == '{') {
      lp.expect('{', "'{'");
      while (true) {
        lp.skip_blanks();
        if (lp.peek() == '}') break;
        const auto label = lp.name(false);
        if (!detail::valid_name(label, false)) lp.fail("invalid label name");
        lp.skip_blanks();
        lp.expect('=', "'=' after label name");
        lp.skip_blanks();
        lp.expect('"', "'\"' to open label value");
        std::string value = lp.unescape(true);
        if (!s.labels.emplace(std::string(label), std::move(value)).second)
          lp.fail("duplicate label '" + std::string(label) + "'");
        lp.skip_blanks();
        if (lp.peek() == ',') {
          lp.expect(',', "','");
          continue;
        }
        if (lp.peek() != '}') lp.fail("expected ',' or '}' after label value");
      }
      lp.expect('}', "'}'");
      lp.skip_blanks();
      separated = true;
    }
    if (!separated) lp.fail(lp.at_end() ? "missing value" : "invalid metric name");
    if (lp.at_end()) lp.fail("missing value");
    const auto value_token = lp.token();
    const auto value = detail::parse_float(value_token);
    if (!value) lp.fail("invalid value '" + std::string(value_token) + "'");
    s.value = *value;
    if (lp.skip_required_blanks() && !lp.at_end()) {
      const auto ts = lp.token();
      std::int64_t t = 0;
      auto [p, ec] = std::from_chars(ts.data(), ts.data() + ts.size(), t);
      if (ec != std::errc() || p != ts.data() + ts.size())
        lp.fail("invalid timestamp '" + std::string(ts) + "'");
      s.timestamp_ms = t;
      lp.skip_blanks();
    }
    if (!lp.at_end()) lp.fail("trailing characters after sample");

    if (current == nullptr || !detail::belongs_to(*current, s.name)) {
      // Samples of a histogram/summary family that was declared earlier and closed.
      for (const auto& f : page.families)
        if (&f != current && detail::belongs_to(f, s.name))
          lp.fail("metric family '" + f.name + "' appears in more than one group");
      open_family(s.name, lp);
    }
    if (current->type == "histogram" && detail::has_suffix(s.name, "_bucket")) {
      auto le = s.labels.find("le");
      if (le == s.labels.end()) lp.fail("histogram bucket without 'le' label");
      if (!detail::parse_float(le->second)) lp.fail("invalid 'le' value");
    }
    if (current->type == "summary" && s.name == current->name) {
      auto q = s.labels.find("quantile");
      if (q == s.labels.end()) lp.fail("summary quantile without 'quantile' label");
      if (!detail::parse_float(q->second)) lp.fail("invalid 'quantile' value");
    }
    if (!series.insert(s.name + format_labels(s.labels)).second)
      lp.fail("duplicate series " + s.name + format_labels(s.labels));
    current->samples.push_back(std::move(s));
  }
  return page;
}

inline std::string describe(std::string_view name, const Labels& subset) {
  return std::string(name) + format_labels(subset);
}

// The value of the one sample called `name` whose labels include `subset`. Throws
// std::runtime_error when there is no such sample or more than one.
inline double value(const Page& page, std::string_view name, const Labels& subset = {}) {
  const auto found = page.find(name, subset);
  if (found.empty()) throw std::runtime_error("prom_text: no sample " + describe(name, subset));
  if (found.size() > 1) {
    std::string all;
    for (const auto* s : found) all += "\n  " + s->name + format_labels(s->labels);
    throw std::runtime_error("prom_text: " + std::to_string(found.size()) + " samples match " +
                             describe(name, subset) + ":" + all);
  }
  return found.front()->value;
}

// Sum of the values of all samples called `name` whose labels include `subset` (0 if none).
inline double sum(const Page& page, std::string_view name, const Labels& subset = {}) {
  double total = 0;
  for (const auto* s : page.find(name, subset)) total += s->value;
  return total;
}

// Number of samples called `name` whose labels include `subset`.
inline std::size_t count(const Page& page, std::string_view name, const Labels& subset = {}) {
  return page.find(name, subset).size();
}

// The one way the tests read an executor metric: `family` is a family name, and a counter
// or gauge gives its sample, a histogram or summary its _count (`part`: "_sum" for the
// sum, "" for a summary quantile chosen with a "quantile" label). Labels match as a
// subset, except that a series with a `task` label (a named task's) matches only when
// `subset` names a task: by default the executor's own, unnamed series is read, so a sum
// over tasks is never mistaken for it. Throws std::runtime_error, naming what exists,
// when no series or more than one matches: a misspelled name or label fails the test
// instead of reading as 0.
inline double metric(const Page& page, std::string_view family, const Labels& subset = {},
                     std::optional<std::string> part = std::nullopt) {
  const Family* f = page.family(family);
  if (f == nullptr) {
    std::string known;
    for (const auto& g : page.families) known += " " + g.name;
    throw std::runtime_error("prom_text: no family " + std::string(family) + " on the page;" +
                             " families:" + known);
  }
  const bool counted = f->type == "histogram" || f->type == "summary";
  const std::string sample = std::string(family) + part.value_or(counted ? "_count" : "");
  std::vector<const Sample*> found;
  for (const auto* s : page.find(sample, subset)) {
    if (!subset.count("task") && s->labels.count("task")) continue;
    if (!subset.count("le") && s->labels.count("le")) continue;
    if (!subset.count("quantile") && s->labels.count("quantile")) continue;
    found.push_back(s);
  }
  if (found.size() == 1) return found.front()->value;
  std::string all;
  for (const auto& s : f->samples) {
    if (s.name == sample) all += "\n  " + s.name + format_labels(s.labels);
  }
  throw std::runtime_error("prom_text: " + std::to_string(found.size()) + " series match " +
                           describe(sample, subset) + "; the family has:" + all);
}

// Whether a series of `family` matches `subset` (by metric()'s rule): for tests that mean
// "this series is absent", said explicitly. The family itself must be on the page (it
// always is, once an executor of the registry exists), so a misspelled name still fails.
inline bool has(const Page& page, std::string_view family, const Labels& subset = {}) {
  const Family* f = page.family(family);
  if (f == nullptr) {
    throw std::runtime_error("prom_text: no family " + std::string(family) + " on the page");
  }
  for (const auto& s : f->samples) {
    bool match = true;
    for (const auto& [k, v] : subset) {
      auto it = s.labels.find(k);
      match = match && it != s.labels.end() && it->second == v;
    }
    if (!subset.count("task") && s.labels.count("task")) match = false;
    if (match) return true;
  }
  return false;
}

}  // namespace ee_test::prom
