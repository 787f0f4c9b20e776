// Bad device configs through `mla run --config`: syntax, types, unknown keys, missing
// backend, out-of-range and absurd values in each backend's own schema, unavailable backends.
#include <catch2/catch.hpp>

#include "mla/registry.hpp"
#include "robustness/robustness_table.hpp"

namespace mla::robustness {

namespace {
// A tiny shape, and output files that must not appear when the config is refused.
const std::string kRun = " --batch 1 --heads 16 --seqlen 64 --json out.json --output out.safetensors";
const std::vector<std::string> kOutputs = {"out.json", "out.safetensors"};

bool backend_available(const std::string& name) {
  for (const auto& b : list_backends())
    if (b.name == name) return b.availability.available;
  return false;
}
}  // namespace

void add_config_rows(Table& t) {
  struct FileCase {
    const char* input;
    const char* text;
    const char* needle;
  };
  const FileCase files[] = {
      {"JSON syntax error (unterminated object)", R"({"backend": "cpu", "cpu": {)", "not valid JSON"},
      {"empty file", "", "not valid JSON"},
      {"top level is an array", "[1, 2]", "/: expected an object, got array"},
      {"missing \"backend\"", R"({"name": "no backend"})", "/backend: required key is missing"},
      {"unknown backend name", R"({"backend": "tpu9000"})", "/backend: expected one of"},
      {"misspelt backend name", R"({"backend": "cpuu"})", "(did you mean \"cpu\"?)"},
      {"\"backend\" of the wrong type", R"({"backend": 3})", "/backend: expected a string, got integer 3"},
      {"unknown key (typo) in the cpu section", R"({"backend": "cpu", "cpu": {"thread": 2}})",
       "/cpu/thread: unknown key (did you mean \"threads\"?)"},
      {"unknown top-level key", R"({"backend": "cpu", "chip": {"cores": 8}})", "/chip: unknown key"},
      {"wrong type: string for an integer", R"({"backend": "cpu", "cpu": {"threads": "four"}})",
       "/cpu/threads: expected an integer, got string \"four\""},
      {"wrong type: fraction for an integer", R"({"backend": "cpu", "cpu": {"threads": 2.5}})",
       "/cpu/threads: expected an integer, got number 2.5"},
      {"negative size", R"({"backend": "cpu", "cpu": {"threads": -1}})",
       "/cpu/threads: expected an integer in [0, 4096], got -1"},
      {"zero tile size", R"({"backend": "cpu", "cpu": {"kv_tile_tokens": 0}})",
       "/cpu/kv_tile_tokens: expected an integer in [1, 65536], got 0"},
      {"unknown enum value", R"({"backend": "cpu", "cpu": {"isa": "avx1024"}})",
       "/cpu/isa: expected one of auto, avx512_bf16, portable"},
      {"section of the wrong type", R"({"backend": "cpu", "cpu": [1]})", "/cpu: expected an object, got array"},
      {"number beyond double range (1e400)", R"({"backend": "cpu", "cpu": {"threads": 1e400}})", "not valid JSON"},
      {"cuda schema: max_stages out of range (checked before availability)",
       R"({"backend": "cuda", "cuda": {"max_stages": 9}})", "/cuda/max_stages: expected an integer in [2, 4], got 9"},
  };
  int k = 0;
  for (const auto& f : files) {
    const std::string name = "config_" + std::to_string(k++) + ".json";
    t.write_text(name, f.text);
    t.cli("config", f.input, "run --config " + name + kRun, 2, f.needle, kOutputs);
  }
  // 100000 nested arrays: copying or destroying such a value recurses once per level and
  // overflows the stack (it did under AddressSanitizer), so nesting is limited while parsing.
  t.write_text("deep.json", std::string(100000, '[') + std::string(100000, ']'));
  t.cli("config", "100000 nested arrays (stack depth)", "run --config deep.json" + kRun, 2,
        "deep.json: not valid JSON: nesting deeper than 64 levels", kOutputs);
  t.cli("config", "file does not exist", "run --config no_such_config.json" + kRun, 2,
        "cannot open config file \"no_such_config.json\"", kOutputs);
  t.cli("config", "a directory instead of a file", "run --config ." + kRun, 2, "cannot read config file \".\": it is a directory", kOutputs);

  // The simulated NPU's schema, by overriding one field of the shipped config.
  const std::string sim = std::string(MLA_SOURCE_DIR) + "/configs/sc11_fp300.json";
  struct SetCase {
    const char* input;
    const char* set;
    const char* needle;
  };
  const SetCase sets[] = {
      {"sim_tpu: 0-byte LMEM", "chip.core.local_memory_bytes=0", "/chip/core/local_memory_bytes: expected an integer in"},
      {"sim_tpu: 1e30 GB/s DDR bandwidth", "chip.ddr.bandwidth_gbps=1e30", "/chip/ddr/bandwidth_gbps: expected a number in"},
      {"sim_tpu: zero bandwidth", "chip.gdma.bandwidth_gbps=0", "/chip/gdma/bandwidth_gbps: expected a number in"},
      {"sim_tpu: zero cores", "chip.cores=0", "/chip/cores: expected an integer in [1, 4096], got 0"},
      {"sim_tpu: negative L2 size", "chip.l2_sram.bytes=-5", "/chip/l2_sram/bytes: expected an integer in"},
      {"sim_tpu: tensor_parallel not dividing cards", "topology.tensor_parallel=3",
       "/topology/tensor_parallel: expected a divisor of cards = 4, got 3"},
      {"sim_tpu: unknown partition strategy", "kernel.partition=diagonal", "/kernel/partition: expected one of"},
      {"sim_tpu: string for a number", "chip.clock_ghz=fast", "/chip/clock_ghz: expected a number, got string"},
      {"sim_tpu: required section missing", "chip=null", "/chip: expected an object, got null"},
      {"--set through a non-object", "topology.cards.x=1", "--set: \"topology.cards.x\" goes through a non-object"},
  };
  for (const auto& s : sets)
    t.cli("config", s.input, "run --config " + sim + " --set " + s.set + kRun, 2, s.needle, kOutputs);

  // An unavailable backend: exit 3 with the reason, never a fallback to another backend.
  if (!backend_available("cuda")) {
    t.cli("config", "backend not available here (cuda config, no CUDA device or toolkit)",
          "run --config " + std::string(MLA_SOURCE_DIR) + "/configs/h100_sxm.json" + kRun, 3,
          "backend \"cuda\" is not available", kOutputs);
  } else {
    WARN("cuda is available here: the unavailable-backend row is not in this run's table");
  }
}

}  // namespace mla::robustness
