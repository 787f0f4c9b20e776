// The `mla` command end to end: every subcommand, both variants, safetensors in and out, and
// malformed input giving a one-line reason and a non-zero exit, never a crash.
#include <catch2/catch.hpp>

#include <array>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "mla/safetensors.hpp"

namespace {

struct Outcome {
  int status;
  std::string output;  // stdout and stderr together
};

Outcome run_cli(const std::string& args) {
  const std::string command = std::string(MLA_CLI_PATH) + " " + args + " 2>&1";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
  REQUIRE(pipe);
  std::string out;
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe.get())) out.append(buf.data(), n);
  int raw = pclose(pipe.release());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw), out};
}

std::string config(const char* name) { return std::string(MLA_SOURCE_DIR) + "/configs/" + name; }

}  // namespace

TEST_CASE("mla backends lists every compiled-in backend", "[cli]") {
  Outcome r = run_cli("backends");
  CHECK(r.status == 0);
  CHECK_THAT(r.output, Catch::Contains("cpu\tavailable"));
  CHECK_THAT(r.output, Catch::Contains("sim_tpu"));
  CHECK_THAT(r.output, Catch::Contains("cuda"));
}

TEST_CASE("mla validate-config", "[cli]") {
  CHECK(run_cli("validate-config " + config("cpu.json")).status == 0);
  std::ofstream("cli_bad_config.json") << R"({"backend": "cpu", "cpu": {"threds": 2, "path": 3}})";
  Outcome r = run_cli("validate-config cli_bad_config.json");
  CHECK(r.status == 2);
  CHECK_THAT(r.output, Catch::Contains("/cpu/threds: unknown key (did you mean \"threads\"?)"));
  CHECK_THAT(r.output, Catch::Contains("/cpu/path: expected a string, got integer 3"));
  std::remove("cli_bad_config.json");
}

TEST_CASE("mla run checks both variants on random inputs", "[cli]") {
  for (const char* variant : {"latent", "absorb"}) {
    Outcome r = run_cli(std::string("run --batch 3 --heads 16 --seqlen 150 --varlen --s-q 2 --causal --page-size 32 --check --variant ") +
                    variant + " --json cli_run.json");
    INFO(r.output);
    CHECK(r.status == 0);
    CHECK_THAT(r.output, Catch::Contains("check: PASS"));
    std::ifstream in("cli_run.json");
    nlohmann::json j = nlohmann::json::parse(in);
    CHECK(j["backend"] == "cpu");
    CHECK(j["check"]["passed"] == true);
    CHECK_THAT(j["kernel"].get<std::string>(), Catch::StartsWith("cpu_"));
  }
  std::remove("cli_run.json");
}

TEST_CASE("mla run reads and writes safetensors", "[cli]") {
  Outcome first = run_cli("run --batch 2 --heads 8 --seqlen 90 --save-inputs cli_in.safetensors --output cli_out1.safetensors");
  REQUIRE(first.status == 0);
  Outcome second = run_cli("run --inputs cli_in.safetensors --output cli_out2.safetensors --check");
  INFO(second.output);
  CHECK(second.status == 0);
  CHECK_THAT(second.output, Catch::Contains("check: PASS"));
  auto a = mla::read_safetensors("cli_out1.safetensors"), b = mla::read_safetensors("cli_out2.safetensors");
  for (const char* name : {"out", "lse"}) {
    REQUIRE(a.count(name));
    CHECK(std::memcmp(a.at(name).data(), b.at(name).data(), a.at(name).bytes()) == 0);
  }
  // The file records its variant: asking for the other one is refused, not misread.
  Outcome wrong = run_cli("run --inputs cli_in.safetensors --variant absorb");
  CHECK(wrong.status == 2);
  CHECK_THAT(wrong.output, Catch::Contains("--variant absorb contradicts cli_in.safetensors, saved with --variant latent"));
  for (const char* f : {"cli_in.safetensors", "cli_out1.safetensors", "cli_out2.safetensors"}) std::remove(f);
}

TEST_CASE("mla bench writes JSON with the anchor conventions", "[cli]") {
  Outcome r = run_cli("bench --batch 2 --heads 16 --seqlen 256 --iters 3 --warmup 1 --json cli_bench.json");
  INFO(r.output);
  REQUIRE(r.status == 0);
  std::ifstream in("cli_bench.json");
  nlohmann::json j = nlohmann::json::parse(in);
  const double bytes = 2.0 * (16 * 576 * 2 + 256 * 576 * 2 + 16 * 512 * 2);
  CHECK(j["bytes"].get<double>() == Approx(bytes));
  CHECK(j["flops"].get<double>() == Approx(2.0 * 16 * 256 * 2 * (576 + 512)));
  CHECK(j["seconds"].get<double>() > 0);
  CHECK(j["gb_per_s"].get<double>() == Approx(bytes / j["seconds"].get<double>() / 1e9));
  std::remove("cli_bench.json");
}

TEST_CASE("mla bench --anchors reports the copy and matmul ceilings of the same run", "[cli]") {
  // Row 9 of the H200 table, the cpu backend's default (b=2, h_q=128, 32768 keys), is among the
  // cheapest on the cpu backend, where the whole table takes minutes even at one run per row.
  // The cpu backend has no matmul ceiling: null, "-".
  Outcome r = run_cli("bench --anchors --anchor-case 9 --warmup 0 --iters 1 --json cli_anchors.json");
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.output, Catch::Contains("; ceilings measured now: copy "));
  CHECK_THAT(r.output, Catch::Contains(" GB/s (read + written), bf16 matmul none (this device cannot measure one)\n"));
  CHECK_THAT(r.output, Catch::Contains("| vs FlashMLA | of copy ceiling | of matmul ceiling | kernel |\n"));
  CHECK_THAT(r.output, Catch::Contains("| small b2 h128 32k | 2 | 1 | 128 | 32768 | "));
  CHECK_THAT(r.output, Catch::Contains(" | - | cpu_"));
  CHECK_THAT(r.output, !Catch::Contains("mla_cuda_bench"));

  std::ifstream in("cli_anchors.json");
  nlohmann::json j = nlohmann::json::parse(in);
  REQUIRE(j.contains("matmul_ceiling_tflops"));
  CHECK(j["matmul_ceiling_tflops"].is_null());
  const double copy = j["copy_ceiling_gbps"].get<double>();
  CHECK(copy > 0);
  REQUIRE(j["rows"].size() == 1);
  const nlohmann::json& row = j["rows"][0];
  CHECK(row["anchor_case"] == 9);
  CHECK(row["backend"] == "cpu");
  CHECK_THAT(row["problem"].get<std::string>(), Catch::StartsWith("latent b=2 s_q=1 h_q=128 "));
  REQUIRE(row.contains("fraction_of_matmul_ceiling"));
  CHECK(row["fraction_of_matmul_ceiling"].is_null());
  CHECK(row["fraction_of_copy_ceiling"].get<double>() == Approx(row["gb_per_s"].get<double>() / copy));
  std::remove("cli_anchors.json");
}

TEST_CASE("malformed arguments give a one-line reason and a non-zero exit", "[cli]") {
  struct Case {
    std::string args, expected;
  };
  const Case cases[] = {
      {"run --heads 0", "--heads"},
      {"run --heads 7 --kv-heads 2", "problem.h_q: expected a multiple of h_kv = 2, got 7"},
      {"run --dtype int8", "--dtype"},
      {"run --no-such-flag", "no-such-flag"},
      {"run --config /nonexistent/x.json", "cannot open config file"},
      {"run --inputs /nonexistent/x.safetensors", "cannot open"},
      {"run --set cpu.pth=fast", "/cpu/pth: unknown key (did you mean \"path\"?)"},
      {"run --set novalue", "--set: expected key.path=value"},
      {"run --log-level loud", "log level"},
      {"run --timing-only", "--timing-only: only simulated backends (sim_tpu) model time"},
      {"run --trace t.json", "--trace: only simulated backends (sim_tpu) model time"},
      {"bench --anchor-case 3", "--anchor-case requires --anchors"},
      {"bench --anchors --anchor-case 15", "--anchor-case: Value 15 not in range"},
      {"", "A subcommand is required"},
  };
  for (const auto& c : cases) {
    Outcome r = run_cli(c.args);
    INFO("mla " << c.args << "\n" << r.output);
    CHECK(r.status != 0);
    CHECK(r.status < 128);  // exited, not killed by a signal
    CHECK_THAT(r.output, Catch::Contains(c.expected));
  }
}
