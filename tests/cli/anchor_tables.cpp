// `mla bench --anchors` compares with FlashMLA's figures of the GPU it runs on: the tables as
// measured, the choice by hardware name (every GPU kind without having one), --anchor-gpu,
// the row range of the chosen table, and the output and JSON naming the table.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "anchor_choice.hpp"
#include "compare/cli_runner.hpp"
#include "mla/error.hpp"
#include "mla/registry.hpp"

using mla::cli::AnchorCase;
using mla::cli::AnchorChoice;
using mla::cli::AnchorTable;
using mla::cli::choose_anchor_table;
using mla::testing::run_mla;

namespace {

const AnchorTable& table(const std::string& key) {
  const AnchorTable* found = nullptr;
  for (const AnchorTable& t : mla::cli::kAnchorTables)
    if (key == t.key) found = &t;
  INFO("anchor table " << key);
  REQUIRE(found);
  return *found;
}

struct Row {
  int64_t batch, s_q, heads, seqlen;
  bool varlen, causal;
  double us;
};

void check_rows(const AnchorTable& t, const std::vector<Row>& expected) {
  REQUIRE(t.cases.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const AnchorCase& a = t.cases[i];
    const Row& e = expected[i];
    INFO(t.key << " row " << i << " (" << a.label << ")");
    CHECK(a.batch == e.batch);
    CHECK(a.s_q == e.s_q);
    CHECK(a.heads == e.heads);
    CHECK(a.seqlen == e.seqlen);
    CHECK(a.varlen == e.varlen);
    CHECK(a.causal == e.causal);
    CHECK(a.flashmla_us == e.us);
  }
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in);
  return nlohmann::json::parse(in);
}

std::string scratch_file(const char* name) {
  return "anchor_" + std::string(name) + "_" + std::to_string(getpid()) + ".json";
}

}  // namespace

TEST_CASE("anchor tables: one per GPU, as measured", "[cli][anchors]") {
  REQUIRE(std::size(mla::cli::kAnchorTables) == 2);
  // The H200 run of 2026-11-29, row by row (b, s_q, h_q, len, varlen, causal, FlashMLA us).
  const AnchorTable& h200 = table("h200");
  CHECK(std::string(h200.gpu) == "H200");
  CHECK(h200.copy_gbps == 4262);
  CHECK(h200.matmul_tflops == 790);
  check_rows(h200, {{128, 1, 16, 4096, false, false, 147.0},
                    {128, 1, 16, 8192, false, false, 286.1},
                    {128, 1, 32, 8192, false, false, 290.0},
                    {128, 1, 64, 8192, false, false, 300.9},
                    {128, 1, 128, 8192, false, false, 483.3},
                    {128, 1, 128, 8192, true, false, 487.9},
                    {128, 2, 128, 8192, true, true, 924.5},
                    {128, 2, 128, 16384, true, true, 1819.6},
                    {128, 2, 128, 32768, true, true, 3654.1},
                    {2, 1, 128, 32768, false, false, 49.6},
                    {8, 1, 16, 65536, false, false, 152.0},
                    {1, 1, 128, 65536, false, false, 52.9},
                    {64, 1, 128, 4096, false, false, 115.6},
                    {32, 4, 32, 4096, true, true, 81.7},
                    {16, 1, 16, 16384, true, false, 95.7}});
  const AnchorTable& h100 = table("h100");
  CHECK(std::string(h100.gpu) == "H100");
  CHECK(h100.copy_gbps == 3001);
  CHECK(h100.matmul_tflops == 776);
  check_rows(h100, {{128, 1, 16, 4096, false, false, 241},
                    {128, 1, 16, 8192, false, false, 431},
                    {128, 1, 32, 8192, false, false, 444},
                    {128, 1, 64, 8192, false, false, 448},
                    {128, 1, 128, 8192, false, false, 547},
                    {128, 1, 128, 8192, true, false, 569},
                    {128, 2, 128, 8192, true, true, 881},
                    {128, 2, 128, 16384, true, true, 1792},
                    {128, 2, 128, 32768, true, true, 3549},
                    {2, 1, 128, 32768, false, false, 75},
                    {8, 1, 16, 65536, false, false, 239}});
}

TEST_CASE("anchor table chosen by the hardware name the device reports", "[cli][anchors]") {
  SECTION("an H200 gets the H200 table") {
    const AnchorChoice c = choose_anchor_table("auto", "NVIDIA H200", "gpu config");
    CHECK(std::string(c.table->key) == "h200");
    CHECK(c.same_gpu);
    CHECK(c.why == "this device is NVIDIA H200");
  }
  SECTION("an H100 gets the H100 table") {
    const AnchorChoice c = choose_anchor_table("auto", "NVIDIA H100 80GB HBM3", "NVIDIA H200 SXM 141GB");
    CHECK(std::string(c.table->key) == "h100");  // the hardware decides, not the config's name
    CHECK(c.same_gpu);
    CHECK(c.why == "this device is NVIDIA H100 80GB HBM3");
  }
  SECTION("another GPU is compared with the H200 figures, and told so") {
    const AnchorChoice c = choose_anchor_table("auto", "NVIDIA A100-SXM4-80GB", "gpu config");
    CHECK(std::string(c.table->key) == "h200");
    CHECK_FALSE(c.same_gpu);
    CHECK_THAT(c.why, Catch::Contains("(NVIDIA A100-SXM4-80GB) is not a GPU with figures of its own"));
    CHECK_THAT(c.why, Catch::EndsWith("the ratios compare this device with FlashMLA on an H200"));
  }
  SECTION("host and simulated devices report no hardware name: the H200 table, named as such") {
    for (const char* file : {"cpu.json", "sc11_fp300.json"}) {
      auto device = mla::open_device_from_file(mla::testing::source_path(std::string("configs/") + file));
      INFO(file);
      CHECK(device->hardware_name().empty());
      const AnchorChoice c = choose_anchor_table("auto", device->hardware_name(), device->name());
      CHECK(std::string(c.table->key) == "h200");
      CHECK_FALSE(c.same_gpu);
      CHECK_THAT(c.why, Catch::Contains("(" + device->name() + ")"));
      CHECK_THAT(c.why, Catch::Contains("FlashMLA on an H200"));
    }
  }
  SECTION("--anchor-gpu overrides the hardware") {
    AnchorChoice c = choose_anchor_table("h100", "NVIDIA H200", "gpu config");
    CHECK(std::string(c.table->key) == "h100");
    CHECK_FALSE(c.same_gpu);
    CHECK(c.why == "--anchor-gpu h100 (this device is NVIDIA H200): the ratios compare this device with FlashMLA on an H100");
    c = choose_anchor_table("h200", "NVIDIA H100 PCIe", "gpu config");
    CHECK(std::string(c.table->key) == "h200");
    CHECK_FALSE(c.same_gpu);
    c = choose_anchor_table("h200", "NVIDIA H200", "gpu config");
    CHECK(std::string(c.table->key) == "h200");
    CHECK(c.same_gpu);
    CHECK(c.why == "--anchor-gpu h200 (this device is NVIDIA H200)");
    c = choose_anchor_table("h100", "", "host CPU (oneTBB)");
    CHECK(std::string(c.table->key) == "h100");
    CHECK_THAT(c.why, Catch::Contains("(this device is host CPU (oneTBB))"));
  }
  SECTION("an unknown table is refused") {
    try {
      (void)choose_anchor_table("h300", "NVIDIA H200", "gpu config");
      FAIL("h300 accepted");
    } catch (const mla::Error& e) {
      CHECK(e.code() == mla::ErrorCode::invalid_argument);
      CHECK(std::string(e.what()) == "--anchor-gpu: expected auto or one of h100, h200, got \"h300\"");
    }
  }
}

TEST_CASE("mla bench --anchor-case accepts the rows of the chosen table only", "[cli][anchors]") {
  CHECK(mla::cli::max_anchor_cases() == 15);
  CHECK_NOTHROW(mla::cli::check_anchor_case(table("h100"), 10));
  CHECK_NOTHROW(mla::cli::check_anchor_case(table("h200"), 14));
  try {
    mla::cli::check_anchor_case(table("h100"), 11);
    FAIL("row 11 of the H100 table accepted");
  } catch (const mla::Error& e) {
    CHECK(e.code() == mla::ErrorCode::invalid_argument);
    CHECK(std::string(e.what()) == "--anchor-case 11: the h100 table has rows 0 to 10");
  }
  CHECK_THROWS_AS(mla::cli::check_anchor_case(table("h200"), 15), mla::Error);

  // Through the command: refused before anything is measured, with the table's range.
  auto r = run_mla("bench --anchors --anchor-gpu h100 --anchor-case 11");
  INFO(r.output);
  CHECK(r.status == 2);
  CHECK_THAT(r.output, Catch::Contains("--anchor-case 11: the h100 table has rows 0 to 10"));
  CHECK_THAT(r.output, !Catch::Contains("ceilings measured now"));
  r = run_mla("bench --anchors --anchor-case 15");
  CHECK(r.status == 2);
  CHECK_THAT(r.output, Catch::Contains("--anchor-case: Value 15 not in range"));
  r = run_mla("bench --anchors --anchor-gpu h300");
  CHECK(r.status == 2);
  CHECK_THAT(r.output, Catch::Contains("--anchor-gpu: h300 not in {auto,h100,h200}"));
  r = run_mla("bench --anchor-gpu h100");
  CHECK(r.status == 2);
  CHECK_THAT(r.output, Catch::Contains("--anchor-gpu requires --anchors"));
}

TEST_CASE("mla bench --anchors names the table its ratios refer to, in the output and the JSON", "[cli][anchors]") {
  // The cpu backend (no hardware name): the H200 table by default. Row 11 (b1 h128 64k) exists
  // in the H200 table only, and is among the cheapest rows on a CPU.
  const std::string auto_json = scratch_file("auto");
  auto r = run_mla("bench --anchors --anchor-case 11 --warmup 0 --iters 1 --seed 11 --json " + auto_json);
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.output, Catch::Contains("\nanchor table h200: FlashMLA on the H200 (2026-11-29, "));
  CHECK_THAT(r.output, Catch::Contains("ceilings there: copy 4262 GB/s, bf16 matmul 790 TFLOP/s), because this device "
                                       "(host CPU (oneTBB)) is not a GPU with figures of its own"));
  CHECK_THAT(r.output, Catch::Contains("| FlashMLA H200 us | vs FlashMLA |"));
  CHECK_THAT(r.output, Catch::Contains("| b1 h128 64k | 1 | 1 | 128 | 65536 | "));
  CHECK_THAT(r.output, Catch::Contains(" | 52.9 | "));
  CHECK_THAT(r.output, Catch::Contains("(vs FlashMLA = FlashMLA's time on the H200 (anchor table h200) / this time: "
                                       "above 1 is faster; this device is not an H200."));
  nlohmann::json j = read_json(auto_json);
  std::remove(auto_json.c_str());
  CHECK(j["anchor_gpu"] == "h200");
  CHECK(j["anchor_same_gpu"] == false);
  CHECK(j["hardware"] == "");
  CHECK_THAT(j["anchor_choice"].get<std::string>(), Catch::EndsWith("FlashMLA on an H200"));
  CHECK(j["anchor_table"]["gpu"] == "H200");
  CHECK(j["anchor_table"]["copy_ceiling_gbps"] == 4262.0);
  REQUIRE(j["rows"].size() == 1);
  CHECK(j["rows"][0]["anchor_case"] == 11);
  CHECK(j["rows"][0]["label"] == "b1 h128 64k");
  CHECK(j["rows"][0]["flashmla_us"] == 52.9);
  CHECK(j["rows"][0]["speed_vs_flashmla"].get<double>() ==
        Approx(52.9 / (j["rows"][0]["seconds"].get<double>() * 1e6)));

  // --anchor-gpu h100: the H100 figures for the same kind of row.
  const std::string h100_json = scratch_file("h100");
  r = run_mla("bench --anchors --anchor-gpu h100 --anchor-case 9 --warmup 0 --iters 1 --seed 12 --json " + h100_json);
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.output, Catch::Contains("\nanchor table h100: FlashMLA on the H100 (2026-11-22, "));
  CHECK_THAT(r.output, Catch::Contains("because --anchor-gpu h100 (this device is host CPU (oneTBB))"));
  CHECK_THAT(r.output, Catch::Contains("| FlashMLA H100 us | vs FlashMLA |"));
  CHECK_THAT(r.output, Catch::Contains("| small batch, long | 2 | 1 | 128 | 32768 | "));
  CHECK_THAT(r.output, Catch::Contains("(vs FlashMLA = FlashMLA's time on the H100 (anchor table h100)"));
  CHECK_THAT(r.output, !Catch::Contains("H200"));
  j = read_json(h100_json);
  std::remove(h100_json.c_str());
  CHECK(j["anchor_gpu"] == "h100");
  CHECK(j["anchor_table"]["matmul_ceiling_tflops"] == 776.0);
  REQUIRE(j["rows"].size() == 1);
  CHECK(j["rows"][0]["anchor_case"] == 9);
  CHECK(j["rows"][0]["flashmla_us"] == 75.0);
}

TEST_CASE("mla bench --anchors on a simulator measures no host copy ceiling for it", "[cli][anchors]") {
  // The simulated latency is the modelled device's: dividing its GB/s by a host memcpy rate
  // gave "29x the ceiling". Timing-only keeps the row cheap.
  const std::string json = scratch_file("sim");
  auto r = run_mla("bench --config " + std::string(MLA_SOURCE_DIR) +
                   "/configs/sc11_fp300.json --timing-only --anchors --anchor-case 11 --warmup 0 --iters 1 --json " + json);
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.output, Catch::Contains("ceilings measured now: copy none (a simulated device"));
  const nlohmann::json j = read_json(json);
  std::remove(json.c_str());
  CHECK(j["copy_ceiling_gbps"].is_null());
  REQUIRE(j["rows"].size() == 1);
  CHECK(j["rows"][0]["fraction_of_copy_ceiling"].is_null());
  CHECK(j["rows"][0]["simulated"] == true);
  CHECK(j["rows"][0]["gb_per_s"].get<double>() > 0);
}
