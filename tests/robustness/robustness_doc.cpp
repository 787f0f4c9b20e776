// Drives every bad input of issue 5 through the CLI and the API, checks each is refused
// cleanly, and regenerates docs/robustness.md from what was observed. One test case, because
// the document is written from all rows at once (ctest runs test cases as separate processes).
#include <catch2/catch.hpp>

#include <filesystem>
#include <unistd.h>

#include "robustness/robustness_table.hpp"

namespace fs = std::filesystem;

TEST_CASE("bad inputs are rejected cleanly and docs/robustness.md is regenerated", "[robustness]") {
  mla::robustness::Table table(fs::temp_directory_path() / ("mla_robustness_" + std::to_string(getpid())));
  mla::robustness::add_config_rows(table);
  mla::robustness::add_argument_rows(table);
  mla::robustness::add_file_rows(table);
  mla::robustness::add_compare_rows(table);
  CHECK(table.size() > 80);
  const std::vector<std::string> notes = {
      "Fully masked queries are valid input, not an error: DESIGN 2.1 says a query with nothing to attend to "
      "(length 0, or causal with s_q greater than the length) yields out = 0 and lse = +inf. The row above checks "
      "those values.",
      "Block ids are read-checked only in validate mode (`RunOptions::validate_indices`, `mla run "
      "--validate-indices`), because on a device the check costs a copy and a synchronisation; without it an "
      "out-of-range id of a used page is undefined behaviour, as for any paged-attention kernel. Ids past the "
      "used pages are never read (the tests poison them with 2147480000). Input files are always checked on load.",
      "Lengths are checked against the block table's capacity by `schedule()` on host backends.",
      "An unavailable backend is exit 3 with the reason; there is never a fallback to another backend. "
      "`mla compare` reports such a config as skipped and goes on with the others.",
      "`mla compare` checks its output paths and every config before running a case, so a bad argument never "
      "leaves a partial JSON or JUnit file; results are written whole (temporary file, then rename).",
      "`mla run --inputs` checks the file's tensors against each other before it allocates the outputs, so "
      "a small file with inconsistent shapes is named as such, never turned into a huge allocation.",
      "Plans carry their device's memory space: tensors in another space are refused even when they all agree "
      "with each other.",
      "The config and safetensors parsers are also fuzzed (fuzz/, run by scripts/ci-hardening.sh); inputs that "
      "ever crashed them are replayed by tests/robustness/fuzz_regressions.cpp.",
  };
  // Written even when a row failed: the document shows what the code does, the test says
  // whether that is acceptable.
  table.write_markdown(std::string(MLA_SOURCE_DIR) + "/docs/robustness.md", notes);
  fs::remove_all(table.scratch());
}
