// Every file in tests/data/bad_configs/ is an invalid job config whose first line is
// "# expect: <fragment>": `scorch train FILE --dry-run` must exit 2 and print that fragment.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "tests/support/run_cli.h"

namespace {
std::vector<std::string> bad_config_files() {
  std::vector<std::string> files;
  for (auto& e : std::filesystem::directory_iterator(std::string(SCORCH_SOURCE_DIR) + "/tests/data/bad_configs")) {
    if (e.path().extension() == ".yaml") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}
}  // namespace

TEST(BadConfigs, AtLeastFifteenDistinctCasesExist) { EXPECT_GE(bad_config_files().size(), 15u); }

TEST(BadConfigs, EachExitsTwoWithItsExpectedMessage) {
  for (const auto& file : bad_config_files()) {
    std::ifstream in(file);
    std::string first;
    std::getline(in, first);
    const std::string tag = "# expect: ";
    ASSERT_EQ(first.rfind(tag, 0), 0u) << file << " lacks an '# expect: ' first line";
    const std::string expected = first.substr(tag.size());
    auto r = scorch::test::run_scorch("train '" + file + "' --dry-run");
    EXPECT_EQ(r.exit_code, 2) << file << "\n" << r.output;
    EXPECT_NE(r.output.find(expected), std::string::npos) << file << "\nexpected: " << expected << "\ngot: " << r.output;
    EXPECT_EQ(r.output.find("Exception raised from"), std::string::npos) << file;
  }
}
