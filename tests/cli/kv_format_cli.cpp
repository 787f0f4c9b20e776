// --kv-format through the CLI: the flag on run (sim_tpu, which runs every format) with both
// checks, its help and its errors from the format table, and a quantized cache (kv_cache and
// kv_scale) saved to safetensors and replayed bit for bit.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "compare/cli_runner.hpp"
#include "mla/kv_format.hpp"
#include "mla/safetensors.hpp"

namespace fs = std::filesystem;
using mla::testing::run_mla;
using mla::testing::source_path;

namespace {

const std::string kSim = "--config " + source_path("configs/sc11_fp300.json");
const std::string kShape = " --batch 2 --heads 16 --seqlen 140 --varlen --page-size 32";

struct Scratch {
  fs::path dir;
  explicit Scratch(const std::string& name) : dir(fs::temp_directory_path() / ("mla_kvcli_" + name + "_" + std::to_string(getpid()))) {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Scratch() { fs::remove_all(dir); }
  [[nodiscard]] std::string file(const std::string& name) const { return (dir / name).string(); }
};

}  // namespace

TEST_CASE("cli: mla run --kv-format runs each quantized format on sim_tpu with both checks", "[cli][kv]") {
  Scratch tmp("run");
  for (const char* format : {"fp8_e4m3", "fp8_ds_mla", "int8"}) {
    const auto r = run_mla("run " + kSim + kShape + " --kv-format " + format + " --check --json " + tmp.file("r.json"));
    INFO(r.output);
    REQUIRE(r.status == 0);
    CHECK_THAT(r.output, Catch::Contains(std::string("kv=") + format));
    CHECK_THAT(r.output, Catch::Contains("check: PASS"));
    CHECK_THAT(r.output, Catch::Contains("quantization (vs the bf16 cache): PASS"));
    std::ifstream in(tmp.file("r.json"));
    const nlohmann::json j = nlohmann::json::parse(in);
    CHECK(j["check"]["passed"] == true);
    CHECK(j["quantization_check"]["passed"] == true);
    CHECK(j["quantization_check"]["rel_l2_error"].get<double>() > 0.0);  // the cache was quantized
    CHECK(j["quantization_check"]["tolerance"]["rel_l2"].get<double>() ==
          mla::kv_format_traits(*mla::parse_kv_format(format)).quantization_tolerance);
  }
  // A plain format has no second check.
  const auto plain = run_mla("run " + kSim + kShape + " --dtype fp16 --kv-format fp16 --check");
  INFO(plain.output);
  CHECK(plain.status == 0);
  CHECK_THAT(plain.output, !Catch::Contains("quantization"));
}

TEST_CASE("cli: --kv-format's help and errors come from the format table", "[cli][kv]") {
  for (const char* cmd : {"run", "bench", "sweep", "compare"}) {
    const auto help = run_mla(std::string(cmd) + " --help");
    INFO(cmd << "\n" << help.output);
    CHECK(help.status == 0);
    CHECK_THAT(help.output, Catch::Contains("--kv-format"));
    for (const mla::KvFormatTraits& t : mla::kv_formats()) CHECK_THAT(help.output, Catch::Contains(t.name));
  }
  const auto bad = run_mla("run --kv-format fp4 --check");
  INFO(bad.output);
  CHECK(bad.status == 2);
  CHECK_THAT(bad.output, Catch::Contains("unknown KV format \"fp4\" (expected one of " + mla::kv_format_names() + ")"));
  // The cpu backend refuses what it cannot run with its reason (or runs it, once it can).
  const auto cpu = run_mla("run --batch 1 --heads 16 --seqlen 20 --kv-format int8 --check");
  INFO(cpu.output);
  CHECK((cpu.status == 0 || (cpu.status == 3 && cpu.output.find("cpu: the int8 KV format") != std::string::npos)));
}

TEST_CASE("cli: a quantized cache round-trips through --save-inputs / --inputs bit for bit", "[cli][kv]") {
  Scratch tmp("files");
  struct Expect {
    const char* format;
    const char* dtype;  // the safetensors dtype of kv_cache
    int64_t width;      // its last dimension
    int64_t scale;      // kv_scale's length, 0 for none
  };
  for (const Expect& e : {Expect{"fp8_e4m3", "F8_E4M3", 576, 1}, Expect{"fp8_ds_mla", "U8", 656, 0},
                          Expect{"int8", "I8", 576, 576}}) {
    INFO(e.format);
    const std::string in = tmp.file(std::string(e.format) + ".st");
    const auto first = run_mla("run " + kSim + kShape + " --variant absorb --kv-format " + e.format + " --save-inputs " +
                               in + " --output " + tmp.file("o1.st") + " --check");
    INFO(first.output);
    REQUIRE(first.status == 0);
    const auto second = run_mla("run " + kSim + " --inputs " + in + " --output " + tmp.file("o2.st") + " --check");
    INFO(second.output);
    REQUIRE(second.status == 0);
    CHECK_THAT(second.output, Catch::Contains(std::string("kv=") + e.format));
    CHECK_THAT(second.output, Catch::Contains("quantization (vs the bf16 cache): PASS"));

    const auto saved = mla::read_safetensors_file(in);
    const mla::TensorView& kv = saved.tensors.at("kv_cache").view();
    CHECK(std::string(mla::dtype_name(kv.dtype)) ==
          std::string(mla::dtype_name(mla::kv_format_traits(*mla::parse_kv_format(e.format)).element)));
    CHECK(kv.shape[3] == e.width);
    CHECK(saved.tensors.count("kv_scale") == (e.scale ? 1u : 0u));
    if (e.scale) CHECK(saved.tensors.at("kv_scale").view().shape[0] == e.scale);
    CHECK(saved.tensors.count("kv_unquantized") == 1);
    // The file's dtype names, as other tools read them.
    std::ifstream raw(in, std::ios::binary);
    uint64_t n = 0;
    raw.read(reinterpret_cast<char*>(&n), 8);
    std::string header(n, '\0');
    raw.read(header.data(), static_cast<std::streamsize>(n));
    CHECK(nlohmann::json::parse(header)["kv_cache"]["dtype"] == e.dtype);

    const auto a = mla::read_safetensors(tmp.file("o1.st")), b = mla::read_safetensors(tmp.file("o2.st"));
    for (const char* name : {"out", "lse"}) {
      REQUIRE(a.at(name).bytes() == b.at(name).bytes());
      CHECK(std::memcmp(a.at(name).data(), b.at(name).data(), a.at(name).bytes()) == 0);
    }
  }
}

TEST_CASE("cli: mla bench counts the bytes of the KV format's tokens", "[cli][kv]") {
  Scratch tmp("bench");
  auto bytes = [&](const std::string& format) {
    const auto r = run_mla("bench " + kSim + " --batch 2 --heads 16 --seqlen 128 --warmup 1 --iters 1 --kv-format " + format +
                           " --json " + tmp.file(format + ".json"));
    INFO(r.output);
    REQUIRE(r.status == 0);
    std::ifstream in(tmp.file(format + ".json"));
    return nlohmann::json::parse(in)["bytes"].get<double>();
  };
  // Same queries and outputs: the difference is 2 x 128 tokens x (1152 - token bytes).
  const double bf16 = bytes("bf16");
  CHECK(bf16 - bytes("int8") == 2.0 * 128 * (1152 - 576));
  CHECK(bf16 - bytes("fp8_ds_mla") == 2.0 * 128 * (1152 - 656));
}
