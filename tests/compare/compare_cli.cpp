// `mla compare` end to end: the quick set over every shipped config whose backend is
// available, determinism, the JUnit/JSON files, a deliberately broken case with its repro,
// and configs that cannot run.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "compare/cli_runner.hpp"
#include "mla/registry.hpp"

namespace fs = std::filesystem;
using mla::testing::run_mla;
using mla::testing::source_path;

namespace {

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in);
  return nlohmann::json::parse(in);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A private scratch directory per test (ctest runs test cases in parallel).
struct Scratch {
  fs::path dir;
  explicit Scratch(const std::string& name) : dir(fs::temp_directory_path() / ("mla_compare_" + name + "_" + std::to_string(getpid()))) {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Scratch() { fs::remove_all(dir); }
  [[nodiscard]] std::string file(const std::string& name) const { return (dir / name).string(); }
};

// Shipped configs whose backend this build can run, and those it cannot (with the config's
// own backend name), read the same way `mla compare` reads them.
struct ShippedConfigs {
  std::vector<std::string> runnable, unavailable;
};
ShippedConfigs shipped_configs() {
  ShippedConfigs s;
  std::set<std::string> available;
  for (const auto& b : mla::list_backends())
    if (b.availability.available) available.insert(b.name);
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(source_path("configs")))
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    const std::string backend = mla::read_config_file(f.string()).value("backend", std::string());
    (available.count(backend) ? s.runnable : s.unavailable).push_back(f.string());
  }
  // cpu.json first: the table then reads reference backend first.
  std::stable_partition(s.runnable.begin(), s.runnable.end(),
                        [](const std::string& p) { return fs::path(p).filename() == "cpu.json"; });
  return s;
}

std::string join(const std::vector<std::string>& words) {
  std::string s;
  for (const auto& w : words) s += " " + w;
  return s;
}

}  // namespace

TEST_CASE("mla compare: the quick set passes on every shipped config whose backend is available", "[compare]") {
  const ShippedConfigs configs = shipped_configs();
  REQUIRE(!configs.runnable.empty());
  REQUIRE(fs::path(configs.runnable.front()).filename() == "cpu.json");
  Scratch tmp("quick");
  // Unavailable configs go in too: they must be reported as skipped, not fail the run.
  const auto r = run_mla("compare --configs" + join(configs.runnable) + join(configs.unavailable) +
                             " --cases quick --json " + tmp.file("r.json") + " --junit " + tmp.file("r.xml"),
                         1200);
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK_THAT(r.output, Catch::Contains("OK: 0 failing"));
  // Progress: one stderr line per case, "[i/N] name: ..."
  CHECK_THAT(r.output, Catch::Contains("[1/"));

  const nlohmann::json j = read_json(tmp.file("r.json"));
  const size_t configs_total = configs.runnable.size() + configs.unavailable.size();
  const size_t cases = j["case_count"].get<size_t>();
  CHECK(cases >= 20);
  REQUIRE(j["results"].size() == cases * configs_total);
  CHECK(j["failures"] == 0);
  std::map<std::string, int> passes;
  int quantized_refusals = 0;
  for (const auto& res : j["results"]) {
    const std::string status = res["status"];
    INFO(res.dump());
    CHECK((status == "pass" || status == "unsupported" || status == "skipped"));
    if (status == "pass") {
      ++passes[res["config"]];
      CHECK(!res["kernel"].get<std::string>().empty());
      CHECK(res["comparison"]["nonfinite_positions_match"] == true);
      CHECK(res["comparison"]["trustworthy"] == true);
      CHECK(res["seconds"].get<double>() > 0);
    }
    if (status == "unsupported") CHECK(!res["message"].get<std::string>().empty());
    if (status == "pass" && res["kv_format"] != "bf16" && res["kv_format"] != "fp16" && res["kv_format"] != "fp32")
      CHECK(res["quantization"]["passed"] == true);
    // Until the cpu backend runs quantized caches it refuses them when asked, with its reason.
    if (res["config"] == "cpu.json" && status != "pass") {
      CHECK(status == "unsupported");
      CHECK_THAT(res["message"].get<std::string>(), Catch::Contains("unsupported: cpu: the "));
      ++quantized_refusals;
    }
  }
  // The reference backend runs every case of a plain format (quantized ones too, once it can);
  // every other available one runs some.
  CHECK(passes["cpu.json"] + quantized_refusals == static_cast<int>(cases));
  CHECK(quantized_refusals <= static_cast<int>(cases) - 25);  // the 25 plain cases always run
  for (const auto& p : configs.runnable) CHECK(passes[fs::path(p).filename().string()] > 0);
  for (const auto& cfg : j["configs"])
    if (!cfg["available"].get<bool>()) CHECK_THAT(cfg["skip_reason"].get<std::string>(), Catch::Contains("not available"));

  const std::string xml = slurp(tmp.file("r.xml"));
  CHECK_THAT(xml, Catch::StartsWith("<?xml"));
  size_t testcases = 0;
  for (size_t pos = xml.find("<testcase "); pos != std::string::npos; pos = xml.find("<testcase ", pos + 1)) ++testcases;
  CHECK(testcases == cases * configs_total);
  CHECK_THAT(xml, !Catch::Contains("<failure"));
  if (!configs.unavailable.empty()) CHECK_THAT(xml, Catch::Contains("<skipped message=\"skipped: "));
}

TEST_CASE("mla compare: quantized KV formats are checked twice on sim_tpu and asked about elsewhere", "[compare][kv]") {
  Scratch tmp("kv");
  // A cases file with the kv_format key, next to the built-in quantized rows.
  std::ofstream(tmp.file("cases.json")) << R"({"cases": [{"name": "int8_gqa", "heads": 16, "kv_heads": 2,
      "seqlen": 70, "kv_format": "int8"}, {"name": "plain", "heads": 16, "seqlen": 70}]})";
  const std::string sim = source_path("configs/sc11_fp300.json"), cpu = source_path("configs/cpu.json");
  const auto r = run_mla("compare --configs " + sim + " " + cpu + " --cases " + tmp.file("cases.json") + " --json " +
                         tmp.file("r.json") + " --junit " + tmp.file("r.xml"));
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.output, Catch::Contains("quantization vs bf16: rel_l2 "));
  const nlohmann::json j = read_json(tmp.file("r.json"));
  REQUIRE(j["results"].size() == 4);
  for (const auto& res : j["results"]) {
    INFO(res.dump());
    const bool quantized = res["case"] == "int8_gqa";
    CHECK(res["kv_format"] == (quantized ? "int8" : "bf16"));
    if (res["status"] == "pass") {
      CHECK(res["comparison"]["passed"] == true);
      CHECK(res.contains("quantization") == quantized);
      if (quantized) {
        CHECK(res["quantization"]["passed"] == true);
        CHECK(res["quantization"]["rel_l2_error"].get<double>() > 0.0);
        CHECK(res["quantization"]["tolerance"]["rel_l2"].get<double>() > res["comparison"]["tolerance"]["rel_l2"].get<double>());
      }
    } else {
      // Only a backend that cannot run the format may decline, and it says why.
      CHECK(res["config"] == "cpu.json");
      CHECK(quantized);
      CHECK(res["status"] == "unsupported");
      CHECK_THAT(res["message"].get<std::string>(), Catch::Contains("int8 KV format"));
    }
    if (res["config"] == "sc11_fp300.json") CHECK(res["status"] == "pass");
  }
  CHECK_THAT(slurp(tmp.file("r.xml")), Catch::Contains("quantization vs bf16 cache: PASS"));

  // --kv-format selects the built-in quantized rows: every quantized format has some.
  const auto q = run_mla("compare --configs " + sim + " --kv-format fp8_e4m3,fp8_ds_mla --kv-format int8 --json " +
                         tmp.file("q.json"));
  INFO(q.output);
  REQUIRE(q.status == 0);
  std::set<std::string> formats;
  const nlohmann::json qj = read_json(tmp.file("q.json"));
  for (const auto& res : qj["results"]) {
    formats.insert(res["kv_format"].get<std::string>());
    CHECK(res["status"] == "pass");
    CHECK(res["quantization"]["passed"] == true);
  }
  CHECK(formats == std::set<std::string>{"fp8_e4m3", "fp8_ds_mla", "int8"});
  const auto bad = run_mla("compare --configs " + sim + " --kv-format fp4");
  CHECK(bad.status == 2);
  CHECK_THAT(bad.output, Catch::Contains("expected one of bf16, fp16, fp32, fp8_e4m3, fp8_ds_mla, int8"));
}

TEST_CASE("mla compare --repeat 2 checks bitwise determinism and reports it", "[compare]") {
  const ShippedConfigs configs = shipped_configs();
  Scratch tmp("repeat");
  const auto r = run_mla("compare --configs" + join(configs.runnable) +
                         " --repeat 2 --only latent_b6_sq4_h16x1_len20var_p32_causal_bf16"
                         " --only absorb_b2_sq1_h16x1_len140_p64_bf16 --json " + tmp.file("r.json"));
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.output, Catch::Contains("deterministic x2"));
  CHECK_THAT(r.output, Catch::Contains("determinism (2 runs): "));
  const nlohmann::json j = read_json(tmp.file("r.json"));
  int checked = 0;
  for (const auto& res : j["results"])
    if (res["status"] == "pass") {
      ++checked;
      CHECK(res["runs"] == 2);
      CHECK(res["deterministic"] == true);
      CHECK_THAT(res["determinism"].get<std::string>(), Catch::Contains("bitwise identical over 2 runs"));
    }
  CHECK(checked >= 2);
}

TEST_CASE("mla compare: a failing case is reported with a repro line that reproduces it", "[compare]") {
  Scratch tmp("broken");
  // An impossible tolerance (bf16 output against a float64 reference is never exact) makes
  // one case fail honestly: the metrics are real, only the bar is unreachable.
  std::ofstream(tmp.file("cases.json")) << R"({"cases": [
    {"name": "fine", "batch": 2, "heads": 16, "seqlen": 65},
    {"name": "broken", "batch": 2, "heads": 16, "seqlen": 65, "seed": 42, "tolerance": {"rel_l2": 0, "max_abs": 0}}
  ]})";
  const std::string cpu = source_path("configs/cpu.json");
  const auto r = run_mla("compare --configs " + cpu + " --cases " + tmp.file("cases.json") + " --junit " +
                         tmp.file("r.xml") + " --json " + tmp.file("r.json"));
  INFO(r.output);
  CHECK(r.status == 1);
  CHECK_THAT(r.output, Catch::Contains("FAILED: 1 failing of 2"));
  const nlohmann::json j = read_json(tmp.file("r.json"));
  REQUIRE(j["results"].size() == 2);
  CHECK(j["results"][0]["status"] == "pass");
  CHECK(j["results"][1]["status"] == "FAIL");
  CHECK(j["results"][1]["comparison"]["rel_l2_error"].get<double>() > 0);
  CHECK(j["results"][1]["comparison"]["tolerance"]["rel_l2"] == 0.0);
  const std::string xml = slurp(tmp.file("r.xml"));
  CHECK_THAT(xml, Catch::Contains("failures=\"1\""));
  CHECK_THAT(xml, Catch::Contains("<failure message=\"FAIL: FAIL max_abs="));

  // The printed repro line, run as printed (with this build's binary), fails the same way.
  std::smatch m;
  REQUIRE(std::regex_search(r.output, m, std::regex("repro: mla (compare [^\n]*)")));
  const std::string repro = m[1];
  CHECK_THAT(repro, Catch::Contains("--only broken"));
  const auto again = run_mla(repro + " --json " + tmp.file("again.json"));
  INFO(again.output);
  CHECK(again.status == 1);
  const nlohmann::json k = read_json(tmp.file("again.json"));
  REQUIRE(k["results"].size() == 1);
  CHECK(k["results"][0]["comparison"]["max_abs_error"] == j["results"][1]["comparison"]["max_abs_error"]);
}

TEST_CASE("mla compare: the `mla run` repro line recreates the same inputs and result", "[compare]") {
  Scratch tmp("repro");
  const std::string cpu = source_path("configs/cpu.json");
  const auto r = run_mla("compare --configs " + cpu + " --only latent_b6_sq2_h16x2_len140var_p32_bf16 --seed 5 --json " +
                         tmp.file("r.json"));
  INFO(r.output);
  REQUIRE(r.status == 0);
  const nlohmann::json j = read_json(tmp.file("r.json"));
  REQUIRE(j["results"].size() == 1);
  const std::string repro = j["results"][0]["repro"];
  REQUIRE_THAT(repro, Catch::StartsWith("mla run --config "));
  CHECK_THAT(repro, Catch::Contains(" --varlen") && Catch::Contains(" --kv-heads 2") && Catch::EndsWith("--check"));
  // Same seed, same shape flags, same deterministic backend: the errors agree bit for bit.
  const auto again = run_mla(repro.substr(4) + " --json " + tmp.file("run.json"));
  INFO(again.output);
  REQUIRE(again.status == 0);
  const nlohmann::json k = read_json(tmp.file("run.json"));
  CHECK(k["check"]["max_abs_error"] == j["results"][0]["comparison"]["max_abs_error"]);
  CHECK(k["check"]["rel_l2_error"] == j["results"][0]["comparison"]["rel_l2_error"]);
  CHECK(k["kernel"] == j["results"][0]["kernel"]);
}

TEST_CASE("mla compare: invalid configs stop the run, unavailable ones are skipped", "[compare]") {
  Scratch tmp("configs");
  const std::string cpu = source_path("configs/cpu.json");
  std::ofstream(tmp.file("bad.json")) << R"({"backend": "cpu", "cpu": {"threads": -2}})";
  auto r = run_mla("compare --configs " + cpu + " " + tmp.file("bad.json") + " --json " + tmp.file("r.json"));
  INFO(r.output);
  CHECK(r.status == 2);
  CHECK_THAT(r.output, Catch::Contains("bad.json: invalid config: /cpu/threads: expected an integer in [0, 4096], got -2"));
  CHECK(!fs::exists(tmp.file("r.json")));
  CHECK(!fs::exists(tmp.file("r.json.partial")));

  // --set N: applies to the N-th config only; a key that config lacks is an invalid config.
  r = run_mla("compare --configs " + cpu + " " + cpu + " --set 2:cpu.isa=portable --only latent_b1_sq1_h1x1_len1_p64_bf16");
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK_THAT(r.output, Catch::Contains("cpu.json#2: pass"));
  r = run_mla("compare --configs " + cpu + " --set 3:cpu.isa=portable");
  CHECK(r.status == 2);
  CHECK_THAT(r.output, Catch::Contains("must be a config number from 1 to 1"));

  // A backend this build cannot run: skipped with its reason; alone, nothing ran (exit 3).
  std::string unavailable;
  for (const auto& b : mla::list_backends())
    if (!b.availability.available) unavailable = b.name;
  if (unavailable.empty()) {
    WARN("every backend is available here: the unavailable-config path is not exercised");
    return;
  }
  std::ofstream(tmp.file("off.json")) << R"({"backend": ")" << unavailable << R"("})";
  r = run_mla("compare --configs " + cpu + " " + tmp.file("off.json") + " --only latent_b1_sq1_h1x1_len1_p64_bf16");
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK_THAT(r.output, Catch::Contains("off.json: skipped"));
  r = run_mla("compare --configs " + tmp.file("off.json") + " --only latent_b1_sq1_h1x1_len1_p64_bf16");
  CHECK(r.status == 3);
  CHECK_THAT(r.output, Catch::Contains("no config could run"));
}
