// Replays the fuzzers' inputs in the ordinary test suite (and so under ASan/UBSan in
// scripts/ci-hardening.sh): the seed corpus in fuzz/corpus/ and every input a fuzzer ever
// crashed on, saved in tests/robustness/data/fuzz/. Same bodies as the fuzz targets.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "../../fuzz/fuzz_bodies.hpp"
#include "robustness/robustness_table.hpp"

namespace fs = std::filesystem;
using mla::robustness::read_bytes;

namespace {

std::vector<fs::path> files_in(const std::vector<std::string>& dirs) {
  std::vector<fs::path> out;
  for (const auto& d : dirs) {
    const fs::path dir = fs::path(MLA_SOURCE_DIR) / d;
    if (!fs::is_directory(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().filename().string()[0] != '.') out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("fuzz inputs replay: configs", "[robustness][fuzz]") {
  const auto files = files_in({"fuzz/corpus/config", "tests/robustness/data/fuzz/config"});
  REQUIRE(files.size() >= 5);
  for (const auto& f : files) {
    INFO(f.string());
    CHECK_NOTHROW(mla::fuzz::config_one(read_bytes(f)));
  }
}

TEST_CASE("fuzz inputs replay: safetensors", "[robustness][fuzz]") {
  const auto files = files_in({"fuzz/corpus/safetensors", "tests/robustness/data/fuzz/safetensors"});
  REQUIRE(files.size() >= 5);
  for (const auto& f : files) {
    INFO(f.string());
    CHECK_NOTHROW(mla::fuzz::safetensors_one(read_bytes(f)));
  }
}
