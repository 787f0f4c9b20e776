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
  mla::robustness::add_output_rows(table);
  mla::robustness::add_limit_rows(table);
  mla::robustness::add_replay_rows(table);
  mla::robustness::add_exit_code_rows(table);
  CHECK(table.size() > 80);
  const std::vector<std::string> notes = {
      "Fully masked queries are valid input, not an error: the operator contract (docs/api.md) says a query with "
      "nothing to attend to (length 0, or causal with s_q greater than the length) yields out = 0 and lse = +inf. "
      "The row above checks those values.",
      "A NaN or an Inf in the query is valid input too: every backend gives what the float64 reference gives, NaN "
      "out and NaN lse for each query row that holds one and sees at least one key (a fully masked row keeps out = "
      "0, lse = +inf). `mla run --check` and `mla compare` count a position as a mismatch only when output and "
      "reference differ in kind (finite, NaN, +Inf, -Inf). Tested by tests/core/nonfinite_queries.cpp on the cpu "
      "(both kernels and the reference path) and sim_tpu backends.",
      "Output files (`--output`, `--json`, `--junit`, `--save-inputs`, `--trace`): a regular file or a new path is "
      "written to a temporary file next to it (`<name>.partial-XXXXXX`) and renamed over it once complete, keeping "
      "its permission bits; a symbolic link is followed and its target written the same way (the link stays); "
      "`/dev/stdout`, `/dev/stderr`, `/dev/fd/N` and `/proc/self/fd/N` are written to that open descriptor, so a "
      "shell redirection or pipe gets the content after what was printed; other non-regular files (`/dev/null`, a "
      "FIFO, a device) are written in place and never replaced. A file with several hard links is replaced, so its "
      "other names keep the old content. An interrupted command (a signal) can leave a `.partial-XXXXXX` file.",
      "Every command opens all its outputs before the work: a folder that does not exist, a directory, a file "
      "that cannot be written, two outputs on one file (only /dev/null may take several) or an output that is one "
      "of the command's inputs (`--inputs`, `--config`, `--configs`, `--cases`) is refused at once, and the "
      "finished files are moved into place together at the end, so a failed command leaves none of them. A stream "
      "output (stdout, a FIFO) cannot be taken back once written.",
      "Bounded reads: configs and cases files are at most 16 MiB (a regular file's size is checked before reading; "
      "a stream is read up to the limit); a safetensors file is read header first (at most 100 MiB), then each "
      "tensor straight into its buffer, a stream only up to what its header declares, and tensors over the memory "
      "limit are refused before they are read.",
      "Memory: `mla run`, `bench`, `sweep` and `compare` add up what a problem takes in host memory (its tensors, "
      "the backend's workspace, the float64 reference's outputs and score rows for `--check` and `compare`) with "
      "overflow-safe arithmetic and refuse it (exit 3) before allocating when it is over the limit: "
      "`--memory-limit SIZE` (`8G`, `512M`, `none`), else `$MLA_MEMORY_LIMIT`, else 80% of the machine's memory "
      "(or of its cgroup's limit). Device memory is the device's own limit (a failed device allocation, a modelled "
      "memory that cannot hold the problem: exit 3 too). `mla_device_allocate` refuses sizes that would wrap.",
      "Inputs files written by `--save-inputs` record in their safetensors `__metadata__` what the tensors cannot "
      "say: variant, causal, softmax scale, s_q and d_r (keys `mla.*`), so `--inputs` replays the same problem. "
      "With `--inputs`, shape flags (`--batch`, `--s-q`, `--heads`, `--kv-heads`, `--seqlen`, `--varlen`, "
      "`--page-size`, `--dtype`, `--seed`) are refused, and `--variant`, `--causal`, `--softmax-scale` must agree "
      "with the metadata; a file without it (written elsewhere) takes them from the flags.",
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
