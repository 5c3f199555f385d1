// The status page's HTML, embedded at build time from src/metrics/status_page.html (the
// file to edit) by CMake, so the library serves it with nothing to install.
#pragma once

#include <string_view>

namespace executor_exporter::detail {
extern const std::string_view status_page_html;
}  // namespace executor_exporter::detail
