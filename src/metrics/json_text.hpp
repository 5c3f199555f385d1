// JSON text shared by the pages the library serves (rollups and the status page, the
// flight recorder's trace): one escaper for user data in JSON strings.
#pragma once

#include <string>
#include <string_view>

namespace executor_exporter::detail {

/// Appends `raw` as a JSON string literal (quotes included). Executor ids and task names
/// are user data: a byte that is not UTF-8 becomes U+FFFD rather than making the document
/// invalid, and the text is also safe inside an HTML <script> element.
void append_json_string(std::string& out, std::string_view raw);

}  // namespace executor_exporter::detail
