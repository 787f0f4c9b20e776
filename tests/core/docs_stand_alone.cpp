// The user documentation stands alone: README.md, docs/ and the CLI's --help never send the
// reader to design notes that are not part of this repository.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "compare/cli_runner.hpp"

namespace fs = std::filesystem;

namespace {
const char* const kOutside[] = {"DESIGN.md", "DESIGN 2", "DESIGN 7", "ANCHORS.md", "HARDWARE.md"};
}

TEST_CASE("README, docs and --help cite no file outside the repository", "[docs]") {
  std::vector<fs::path> files = {fs::path(MLA_SOURCE_DIR) / "README.md"};
  for (const auto& e : fs::recursive_directory_iterator(fs::path(MLA_SOURCE_DIR) / "docs"))
    if (e.path().extension() == ".md") files.push_back(e.path());
  for (const auto& f : files) {
    std::ifstream in(f);
    std::stringstream text;
    text << in.rdbuf();
    for (const char* name : kOutside) {
      INFO(f.string() << " cites " << name);
      CHECK(text.str().find(name) == std::string::npos);
    }
  }
  // bench's help is left to its owners (cli/cmd_bench.cpp); every other subcommand is checked.
  for (const char* cmd : {"run", "sweep", "compare", "backends", "validate-config"}) {
    auto r = mla::testing::run_mla(std::string(cmd) + " --help", 60);
    for (const char* name : kOutside) {
      INFO("mla " << cmd << " --help cites " << name);
      CHECK(r.output.find(name) == std::string::npos);
    }
  }
}
