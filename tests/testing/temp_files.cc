#include "tests/testing/temp_files.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace push::testing {

TempDir::TempDir() {
  std::string pattern = ::testing::TempDir() + "pushd_test_XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp " << pattern;
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::Write(const std::string& name, const std::string& contents) const {
  std::string file = path_ + "/" + name;
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << contents;
  EXPECT_TRUE(out.good()) << "cannot write " << file;
  return file;
}

TempFile::TempFile(const std::string& contents) {
  std::string pattern = ::testing::TempDir() + "pushd_test_XXXXXX";
  int fd = mkstemp(pattern.data());
  path_ = pattern;
  EXPECT_GE(fd, 0) << "mkstemp " << pattern;
  if (fd < 0) return;
  EXPECT_EQ(write(fd, contents.data(), contents.size()), static_cast<ssize_t>(contents.size()));
  close(fd);
}

TempFile::~TempFile() { unlink(path_.c_str()); }

}  // namespace push::testing
