#pragma once

#include <source_location>

namespace executor_exporter::detail {

/// Where a task was submitted. Every submit function ends with a defaulted parameter of
/// this type, `CallSite site = {std::source_location::current()}`, so the caller's file
/// and line are taken where the call is written, for free (a pointer to a constant the
/// compiler made). C++ allows no defaulted parameter after a parameter pack, so each
/// submit function is written once per argument count up to three (the site last), with
/// a variadic overload beyond that which records no site. A wrapper type (not a plain
/// std::source_location) keeps a task that takes a std::source_location argument from
/// being mistaken for the site.
struct CallSite {
  std::source_location where;
};

}  // namespace executor_exporter::detail
