// Issue 11's hostile inputs: output paths that are links, devices, streams, folders or
// inputs; endless or oversized input files; problems over the memory limit; inputs files
// replayed with contradicting flags; exit codes. Each row runs the CLI and checks the exit
// code, the one-line message and that no output or temporary file is left; some rows then
// check what happened to the path itself.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <thread>

#include <nlohmann/json.hpp>

#include "robustness/robustness_table.hpp"

namespace fs = std::filesystem;

namespace mla::robustness {

namespace {

const std::string kSmall = " --batch 1 --heads 16 --seqlen 8";
const std::string kSim = std::string(MLA_SOURCE_DIR) + "/configs/sc11_fp300.json";

// Runs `shell` in the background (a FIFO's reader or writer) while the row runs.
struct Background {
  explicit Background(std::string shell) : thread([cmd = std::move(shell)] { (void)std::system(cmd.c_str()); }) {}
  ~Background() { thread.join(); }
  std::thread thread;
};

}  // namespace

void add_output_rows(Table& t) {
  t.write_text("real.json", "old content");
  fs::create_symlink("real.json", t.file("link.json"));
  t.cli("outputs", "--json names a symbolic link (written through: the link stays, its target gets the JSON)",
        "run" + kSmall + " --json link.json", 0, "");
  CHECK(fs::is_symlink(t.file("link.json")));
  CHECK_THAT(read_bytes(t.file("real.json")), Catch::Contains("\"backend\""));

  fs::create_symlink("made_by_link.json", t.file("dangling.json"));
  t.cli("outputs", "--json names a dangling symbolic link (its target is created)", "run" + kSmall + " --json dangling.json",
        0, "");
  CHECK(fs::is_symlink(t.file("dangling.json")));
  CHECK(fs::is_regular_file(t.file("made_by_link.json")));

  t.write_text("private.json", "{}");
  fs::permissions(t.file("private.json"), fs::perms::owner_read | fs::perms::owner_write);
  t.cli("outputs", "--json replaces a file with mode 0600 (the mode is kept)", "run" + kSmall + " --json private.json", 0, "");
  CHECK(fs::status(t.file("private.json")).permissions() == (fs::perms::owner_read | fs::perms::owner_write));

  t.cli("outputs", "--json and --output both /dev/null (written in place, never replaced)",
        "run" + kSmall + " --json /dev/null --output /dev/null", 0, "");
  CHECK(fs::is_character_file("/dev/null"));

  REQUIRE(mkfifo(t.file("out.fifo").c_str(), 0600) == 0);
  {
    Background reader("cat '" + t.file("out.fifo") + "' > '" + t.file("fifo_read.json") + "'");
    t.cli("outputs", "--json names a FIFO with a reader (written in place)", "run" + kSmall + " --json out.fifo", 0, "");
  }
  CHECK(fs::is_fifo(t.file("out.fifo")));
  CHECK_THAT(read_bytes(t.file("fifo_read.json")), Catch::Contains("\"backend\""));

  t.cli("outputs", "--output writable, --json in a folder that does not exist (checked before the run: no o.safetensors)",
        "run" + kSmall + " --output o.safetensors --json no_dir/o.json", 2,
        "--json: cannot write \"no_dir/o.json\": folder \"no_dir\" does not exist", {"o.safetensors", "no_dir"});
  fs::create_directory(t.file("a_folder"));
  t.cli("outputs", "--json names a folder", "run" + kSmall + " --json a_folder", 2,
        "--json: cannot write \"a_folder\": it is a directory");
  t.cli("outputs", "--json and --output name one file", "run" + kSmall + " --json same.out --output same.out", 2,
        "--output and --json name the same file", {"same.out"});
  fs::create_symlink("other_name.out", t.file("alias.out"));
  t.cli("outputs", "--output and --json name one file, one of them through a link",
        "run" + kSmall + " --output other_name.out --json alias.out", 2, "--output and --json name the same file",
        {"other_name.out"});

  t.cli("outputs", "(setup) inputs to replay", "run" + kSmall + " --save-inputs in.safetensors", 0, "");
  const std::string before = read_bytes(t.file("in.safetensors"));
  t.cli("outputs", "--output names the --inputs file (the input is kept)",
        "run --inputs in.safetensors --output in.safetensors", 2,
        "--output names the same file as --inputs (\"in.safetensors\"): writing it would replace the input");
  CHECK(read_bytes(t.file("in.safetensors")) == before);
  t.write_text("cfg.json", R"({"backend": "cpu"})");
  t.cli("outputs", "--json names the --config file", "run --config cfg.json" + kSmall + " --json cfg.json", 2,
        "--json names the same file as --config");
  CHECK(read_bytes(t.file("cfg.json")) == R"({"backend": "cpu"})");
  t.cli("outputs", "bench: --json in a missing folder is refused before 100000 iterations",
        "bench --batch 8 --heads 128 --seqlen 8192 --iters 100000 --json no_dir/b.json", 2,
        "--json: cannot write \"no_dir/b.json\"");
  t.cli("outputs", "sweep: --json in a missing folder is refused before the grid runs",
        "sweep --config " + kSim + " --json no_dir/s.json", 2, "--json: cannot write \"no_dir/s.json\"");
  t.cli("outputs", "compare: --junit names a folder", "compare --configs " + kSim + " --junit a_folder --json c.json", 2,
        "--junit: cannot write \"a_folder\": it is a directory", {"c.json"});
  t.cli("outputs", "compare: --json names a --configs file", "compare --configs cfg.json --json cfg.json", 2,
        "--json names the same file as --configs");
}

void add_limit_rows(Table& t) {
  t.cli("limits", "config from an endless stream (/dev/zero)", "run --config /dev/zero" + kSmall, 2,
        "/dev/zero: the config file goes on past the limit of 16777216 bytes (a stream, not a regular file)");
  t.write_text("big.json", "{");
  fs::resize_file(t.file("big.json"), (16u << 20) + 1);  // sparse: no disk used
  t.cli("limits", "config file of 16 MiB + 1 byte", "run --config big.json" + kSmall, 2,
        "big.json: the config file has 16777217 bytes, more than the limit of 16777216 bytes");
  t.cli("limits", "cases file from an endless stream (/dev/zero)", "compare --configs " + kSim + " --cases /dev/zero", 2,
        "/dev/zero: the cases file goes on past the limit");
  t.write_text("deep_cases.json", "{\"cases\": " + std::string(100000, '[') + std::string(100000, ']') + "}");
  t.cli("limits", "cases file with 100000 nested arrays", "compare --configs " + kSim + " --cases deep_cases.json", 2,
        "deep_cases.json: cases file is not valid JSON: nesting deeper than 64 levels");
  t.cli("limits", "safetensors from /dev/zero (header length 0)", "run --inputs /dev/zero", 2,
        "/dev/zero: not a valid safetensors file: header is not a JSON object");
  t.cli("limits", "(setup) an inputs file", "run" + kSmall + " --save-inputs valid.safetensors", 0, "");
  REQUIRE(mkfifo(t.file("in.fifo").c_str(), 0600) == 0);
  {
    // A stream that goes on forever after a valid file: read exactly what the header declares.
    Background writer("cat '" + t.file("valid.safetensors") + "' /dev/zero > '" + t.file("in.fifo") + "' 2>/dev/null");
    t.cli("limits", "inputs from a FIFO: a valid file followed by endless zeros (read up to the last tensor, then closed)",
          "run --inputs in.fifo --check", 0, "");
  }
  {
    nlohmann::json h;
    h["q"] = {{"dtype", "F32"}, {"shape", {1024, 1024, 1024, 1024}}, {"data_offsets", {0, uint64_t{1} << 42}}};
    t.write_text("huge_stream.head", assemble_safetensors(h.dump(), ""));
    Background writer("cat '" + t.file("huge_stream.head") + "' /dev/zero > '" + t.file("in.fifo") + "' 2>/dev/null");
    t.cli("limits", "inputs from a FIFO whose header declares a 4 TiB tensor", "run --inputs in.fifo --memory-limit 64G", 3,
          "in.fifo: its tensors need 4.00 TiB, more than the memory limit of 64.00 GiB");
  }
  {
    nlohmann::json h;
    h["q"] = {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0, 16}}};
    h["kv_cache"] = {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {8, 24}}};
    t.write_text("overlap.safetensors", assemble_safetensors(h.dump(), std::string(24, '\0')));
    t.cli("limits", "two tensors sharing bytes (overlapping data_offsets)", "run --inputs overlap.safetensors", 2,
          "tensors \"q\" [0, 16) and \"kv_cache\" [8, 24) overlap in the data section");
  }
  t.cli("limits", "a problem over --memory-limit", "run --batch 8 --heads 128 --seqlen 4096 --set cpu.threads=2 --memory-limit 16M --json m.json", 3,
        "more than the host memory limit of 16.00 MiB (--memory-limit 16M)", {"m.json"});
  t.cli("limits", "one token with 1M-token pages (a 2 GiB cache) under a 1 GiB limit",
        "run --batch 1 --heads 16 --seqlen 1 --page-size 1048576 --set cpu.threads=2 --memory-limit 1G", 3,
        "kv_cache 2.25 GiB");
  t.cli("limits", "--memory-limit that is not a size", "run" + kSmall + " --memory-limit lots", 2,
        "--memory-limit: expected a size such as 8G, 512M, 100000000 or none, got \"lots\"");
  t.cli("limits", "compare: a case over the limit stops the run before the first case",
        "compare --configs " + kSim + " --memory-limit 1K --json c.json", 3, "more than the host memory limit of 1.00 KiB",
        {"c.json"});
}

void add_replay_rows(Table& t) {
  t.cli("replay", "(setup) absorb, causal, s_q 2, fp16, explicit softmax scale, saved",
        "run --variant absorb --causal --s-q 2 --dtype fp16 --softmax-scale 0.05 --batch 2 --heads 16 --seqlen 40 "
        "--save-inputs abs.safetensors",
        0, "");
  t.cli("replay", "a shape flag with --inputs", "run --inputs abs.safetensors --batch 4", 2,
        "--batch cannot be combined with --inputs");
  t.cli("replay", "a dtype flag with --inputs", "run --inputs abs.safetensors --dtype bf16", 2,
        "--dtype cannot be combined with --inputs");
  t.cli("replay", "--variant contradicting the file", "run --inputs abs.safetensors --variant latent", 2,
        "--variant latent contradicts abs.safetensors, saved with --variant absorb");
  t.cli("replay", "--softmax-scale contradicting the file", "run --inputs abs.safetensors --softmax-scale 0.1", 2,
        "--softmax-scale 0.100000001 contradicts abs.safetensors, saved with --softmax-scale 0.0500000007");
  t.cli("replay", "flags that agree with the file", "run --inputs abs.safetensors --variant absorb --causal --check", 0, "");
}

void add_exit_code_rows(Table& t) {
  t.cli("codes", "sim_tpu: local memory too small for any tiling (modelled memory; as mla compare's \"unsupported\")",
        "run --config " + kSim + " --set chip.core.local_memory_bytes=1024" + kSmall, 3,
        "sim_tpu: no partition fits this problem");
  t.cli("codes", "--output with a timing-only config", "run --config " + kSim + " --timing-only" + kSmall + " --output t.st",
        2, "--output: the config is timing-only (kernel.timing_only), so the run computes no outputs to write", {"t.st"});
  t.cli("codes", "--timing-only on a cpu config", "run --timing-only" + kSmall, 2,
        "--timing-only: only simulated backends (sim_tpu) model time; the default config uses backend \"cpu\"");
  t.cli("codes", "--trace on a cpu config", "run --trace t.json" + kSmall, 2,
        "--trace: only simulated backends (sim_tpu) model time", {"t.json"});
  t.cli("codes", "mla sweep on the default (cpu) config: one variant, wall time", "sweep --batches 1 --seqlens 64 --heads 16",
        0, "");
}

}  // namespace mla::robustness
