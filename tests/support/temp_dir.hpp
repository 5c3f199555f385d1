// RAII temporary directory for tests.
#pragma once

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace ee_test {

// Creates a fresh directory under $TMPDIR (or /tmp); removes it recursively on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "ee_test") {
    std::string base = std::filesystem::temp_directory_path().string();
    std::string templ = base + "/" + prefix + ".XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) {
      throw std::runtime_error("TempDir: mkdtemp(" + templ + ") failed: " + std::strerror(errno));
    }
    path_ = buf.data();
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);  // best effort; never throws
  }

  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace ee_test
