// Chromium run headless for a test: loads a page, lets its scripts run, and returns the
// DOM they built (or takes a screenshot). Fails the test with a clear message when
// Chromium was not found at configure time (scripts/install-deps.sh installs it).
#pragma once

#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "subprocess.hpp"
#include "temp_dir.hpp"

namespace ee_test {

class HeadlessBrowser {
 public:
  HeadlessBrowser() {
    if (binary_.empty() || ::access(binary_.c_str(), X_OK) != 0) {
      throw std::runtime_error(
          "Chromium was not found when the build was configured; run scripts/install-deps.sh "
          "and re-run CMake");
    }
  }

  // The DOM after `budget` of virtual time: timers and fetches run, the clock does not
  // wait, so a page that refreshes every few seconds is caught after its first render.
  std::string dom(const std::string& url, std::chrono::milliseconds budget = std::chrono::seconds(5)) {
    return run({"--virtual-time-budget=" + std::to_string(budget.count()), "--dump-dom", url})
        .stdout_text();
  }

  // A PNG of the page at `width` x `height` CSS pixels.
  void screenshot(const std::string& url, const std::string& png, int width, int height,
                  std::chrono::milliseconds budget = std::chrono::seconds(5)) {
    run({"--virtual-time-budget=" + std::to_string(budget.count()), "--hide-scrollbars",
         "--window-size=" + std::to_string(width) + "," + std::to_string(height),
         "--screenshot=" + png, url});
  }

 private:
  struct Finished {
    std::string out;
    std::string stdout_text() const { return out; }
  };

  Finished run(std::vector<std::string> args) {
    // A fresh profile per run; no sandbox because the suite may run as root (CI), where
    // Chromium refuses to start with one.
    std::vector<std::string> argv = {binary_,
                                     "--headless=new",
                                     "--no-sandbox",
                                     "--disable-gpu",
                                     "--no-first-run",
                                     "--disable-dev-shm-usage",
                                     "--user-data-dir=" + profile_.path().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    Subprocess browser(argv);
    const auto status = browser.wait_for_exit(std::chrono::seconds(60));
    if (!status || *status != 0) {
      throw std::runtime_error("chromium failed (" +
                               (status ? std::to_string(*status) : std::string("timeout")) +
                               "): " + browser.stderr_text().substr(0, 2000));
    }
    return {browser.stdout_text()};
  }

  std::string binary_ = EE_CHROMIUM;
  TempDir profile_{"ee_chromium"};
};

}  // namespace ee_test
