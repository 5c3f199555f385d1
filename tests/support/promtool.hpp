#pragma once

// Lints an exposition page with the real promtool from Debian's prometheus package.

#include <catch2/catch.hpp>

#include <string>

#include "subprocess.hpp"

namespace ee_test {

/// Fails the test unless `promtool check metrics` accepts `page` (exit code 0).
inline void require_promtool_clean(const std::string& page) {
  const std::string promtool = EE_PROMTOOL;
  if (promtool.empty()) FAIL("promtool not found at configure time: run scripts/install-deps.sh");
  auto result = run_and_capture({promtool, "check", "metrics"}, page);
  INFO("promtool stdout: " << result.out << "\npromtool stderr: " << result.err);
  REQUIRE(result.exit_code == 0);
}

}  // namespace ee_test
