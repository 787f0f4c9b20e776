// Quantized KV caches on sim_tpu: every format against the reference (functional), the bytes
// and the dequantization command of the timing model, and the config field that prices it.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include <hwy/targets.h>

#include "mla/compare.hpp"
#include "mla/reference.hpp"
#include "sim_tpu/tile_math.hpp"
#include "sim_tpu_helpers.hpp"

using namespace mla;
using sim_tpu_test::run_once;
using sim_tpu_test::shipped_config;
using sim_tpu_test::simulated_seconds;
using sim_tpu_test::small_config;

namespace {

struct Case {
  Variant variant;
  int64_t batch, s_q, h_kv, page_size;
  bool causal;
  std::vector<int32_t> lens;
};

// The grid's shapes that matter to the cache: s_q 1/2/4, causal, empty and page-edge lengths,
// pages of 16 and 64 (tiles of 16 and chunks of 32 in the small machine), both variants.
std::vector<Case> grid() {
  return {
      {Variant::latent, 6, 2, 1, 16, true, {0, 1, 63, 64, 65, 140}},
      {Variant::latent, 2, 4, 2, 64, true, {1, 140}},
      {Variant::absorb, 2, 1, 1, 16, false, {63, 65}},
  };
}

std::string describe(KvFormat f, const Case& c) {
  std::ostringstream os;
  os << kv_format_name(f) << ' ' << variant_name(c.variant) << " s_q=" << c.s_q << " h_kv=" << c.h_kv
     << " page=" << c.page_size << (c.causal ? " causal" : "") << " lens=";
  for (int32_t l : c.lens) os << l << ',';
  return os.str();
}

// One input set per format and shape; the two references are computed once and every
// partition and buffering mode is checked against both.
void check_format(KvFormat format, const Case& c, const std::vector<const char*>& partitions = {"heads", "batch", "sequence"},
                  const std::vector<bool>& buffering = {true, false}) {
  Problem p;
  p.variant = c.variant;
  p.batch = c.batch;
  p.s_q = c.s_q;
  p.h_q = 16;
  p.h_kv = c.h_kv;
  p.page_size = c.page_size;
  p.causal = c.causal;
  p.kv_format = format;
  InputSpec spec;
  spec.seqlens = c.lens;
  spec.seed = 40 + static_cast<uint64_t>(format);
  HostInputs in = make_random_inputs(p, spec);
  const ReferenceOutput dequantized = reference_decode(in.problem, in.args());
  std::optional<ReferenceOutput> plain;
  if (is_quantized(format)) {
    const HostInputs u = in.unquantized();
    plain = reference_decode(u.problem, u.args());
  }
  for (const char* partition : partitions)
    for (bool db : buffering) {
      in.poison_outputs();
      auto outcome = run_once(small_config(partition, db), in);
      const Comparison cmp = compare_to_reference(in.problem, dequantized, in.out.view(), in.lse.view());
      INFO(describe(format, c) << " partition=" << partition << " double_buffer=" << db);
      INFO("vs reference on dequantized values: " << cmp.summary());
      CHECK(cmp.passed);
      CHECK(outcome.report["kv_format"] == kv_format_name(format));
      if (!plain) continue;
      const Comparison q = compare_to_reference(in.problem, *plain, in.out.view(), in.lse.view(), quantization_tolerance(in.problem));
      INFO("vs reference on the unquantized values: " << q.summary());
      CHECK(q.passed);
    }
}

Problem deepseek(int64_t batch, KvFormat format) {
  Problem p;
  p.batch = batch;
  p.h_q = 128;
  p.kv_format = format;
  return p;
}

nlohmann::json sc11(const std::string& partition) {
  nlohmann::json c = shipped_config("sc11_fp300.json");
  c["kernel"]["partition"] = partition;
  return c;
}

// Events of a timing-only run's trace, by name, with their lane names.
std::multimap<std::string, std::string> trace_events(nlohmann::json config, const Problem& p, int64_t len) {
  const std::string path = std::string("sim_tpu_kv_trace_") + kv_format_name(p.kv_format) + ".json";
  config["trace_file"] = path;
  simulated_seconds(config, p, len);
  std::ifstream file(path);
  REQUIRE(file.good());
  const nlohmann::json trace = nlohmann::json::parse(file);
  std::map<std::pair<int, int>, std::string> lanes;
  for (const auto& e : trace["traceEvents"])
    if (e["ph"] == "M" && e["name"] == "thread_name") lanes[{e["pid"].get<int>(), e["tid"].get<int>()}] = e["args"]["name"];
  std::multimap<std::string, std::string> events;
  for (const auto& e : trace["traceEvents"])
    if (e["ph"] == "X") events.emplace(e["name"].get<std::string>(), lanes[{e["pid"].get<int>(), e["tid"].get<int>()}]);
  file.close();
  std::remove(path.c_str());
  return events;
}

}  // namespace

TEST_CASE("sim_tpu runs every KV format like the reference, in every partition and buffering mode", "[sim_tpu][kv]") {
  for (const KvFormatTraits& t : kv_formats())
    for (const Case& c : grid()) check_format(t.format, c);
}

// The fp8 and int8 dequantization is Highway code (bit tricks for fp8): each SIMD target's copy.
TEST_CASE("sim_tpu dequantizes every KV format right on every SIMD target this CPU runs", "[sim_tpu][kv][simd]") {
  int covered = 0;
  for (int64_t rest = hwy::SupportedTargets(); rest != 0; rest &= rest - 1) {
    const int64_t target = rest & -rest;
    hwy::SetSupportedTargetsForTest(target);
    if (std::string(mla::sim_tpu::tile_math_for_this_cpu().target) == hwy::TargetName(target)) {
      ++covered;
      INFO("forced target " << hwy::TargetName(target));
      for (const KvFormatTraits& t : kv_formats()) check_format(t.format, grid().front(), {"batch"}, {true});
    }
    hwy::SetSupportedTargetsForTest(0);
  }
  CHECK(covered >= 2);
}

TEST_CASE("sim_tpu moves the KV bytes of the format: DDR and L2 shrink by the byte ratio", "[sim_tpu][kv]") {
  const std::vector<int32_t> lens = {0, 1, 500, 2048, 3000, 64, 65, 777};
  int64_t tokens = 0;
  for (int32_t l : lens) tokens += l;
  const double tp = 4, bf16_row = 1152;
  for (const char* partition : {"heads", "batch", "sequence"}) {
    std::map<KvFormat, nlohmann::json> bytes;
    for (KvFormat f : {KvFormat::bf16, KvFormat::fp8_e4m3, KvFormat::fp8_ds_mla, KvFormat::int8}) {
      nlohmann::json config = sc11(partition);
      config["kernel"]["timing_only"] = true;
      HostInputs in = sim_tpu_test::timing_inputs(deepseek(static_cast<int64_t>(lens.size()), f), lens);
      bytes[f] = run_once(config, in).report["bytes"];
    }
    for (KvFormat f : {KvFormat::fp8_e4m3, KvFormat::fp8_ds_mla, KvFormat::int8}) {
      const double row = static_cast<double>(kv_token_bytes(f, 512, 64));
      const double saved = tp * static_cast<double>(tokens) * (bf16_row - row);  // every rank gathers each key once
      INFO(partition << ' ' << kv_format_name(f));
      CHECK(bytes[f]["ddr_read"].get<double>() == Approx(bytes[KvFormat::bf16]["ddr_read"].get<double>() - saved).epsilon(1e-12));
      CHECK(bytes[f]["ddr_written"].get<double>() == bytes[KvFormat::bf16]["ddr_written"].get<double>());
      // L2 holds nothing but KV chunks (and format-independent partials): the ratio is exact.
      const double partials = bytes[KvFormat::bf16]["l2_written"].get<double>() - tp * static_cast<double>(tokens) * bf16_row;
      CHECK((bytes[f]["l2_written"].get<double>() - partials) / (bytes[KvFormat::bf16]["l2_written"].get<double>() - partials) ==
            Approx(row / bf16_row).epsilon(1e-12));
    }
  }
}

TEST_CASE("sim_tpu dequantizes fp8_ds_mla tiles on the BDC, and only that format", "[sim_tpu][kv]") {
  for (KvFormat f : {KvFormat::bf16, KvFormat::fp8_e4m3, KvFormat::fp8_ds_mla, KvFormat::int8}) {
    const auto events = trace_events(sc11("batch"), deepseek(2, f), 1000);
    const size_t dequants = events.count("dequant_tile"), tiles = events.count("attend_tile");
    INFO(kv_format_name(f) << ": " << dequants << " dequant_tile, " << tiles << " attend_tile");
    REQUIRE(tiles > 0);
    if (f != KvFormat::fp8_ds_mla) {
      CHECK(dequants == 0);
      continue;
    }
    CHECK(dequants == tiles);  // one per KV tile
    auto [first, last] = events.equal_range("dequant_tile");
    for (auto it = first; it != last; ++it) CHECK(it->second.find("BDC") != std::string::npos);
  }
}

TEST_CASE("sim_tpu prices dequantization by chip.core.dequant_values_per_ns (default vector_gops / 2)", "[sim_tpu][kv]") {
  const Problem p = deepseek(16, KvFormat::fp8_ds_mla);
  nlohmann::json config = sc11("batch"), by_default, halved, bf16;
  simulated_seconds(config, p, 2048, &by_default);
  const double vector_gops = config["chip"]["core"]["vector_gops"].get<double>();
  config["chip"]["core"]["dequant_values_per_ns"] = vector_gops / 4;
  simulated_seconds(config, p, 2048, &halved);
  const double overhead = config["chip"]["core"]["bdc_command_overhead_cycles"].get<double>() * 1e-9;  // 1 GHz
  // 16 sequences over 2 data-parallel chip slots of 8 cores: one sequence per core.
  const double tiles = static_cast<double>(2048 / by_default["kv_tile_tokens"].get<int64_t>());
  const double t1 = by_default["dequant_s_per_core"].get<double>(), t2 = halved["dequant_s_per_core"].get<double>();
  INFO("default " << t1 << " s, half the rate " << t2 << " s per core, " << tiles << " tiles per core");
  CHECK(t1 > 0);
  CHECK(t2 - tiles * overhead == Approx(2 * (t1 - tiles * overhead)).epsilon(1e-9));
  CHECK(t1 - tiles * overhead == Approx(tiles * by_default["kv_tile_tokens"].get<double>() * 576 / (vector_gops / 2) * 1e-9).epsilon(1e-9));
  simulated_seconds(sc11("batch"), deepseek(16, KvFormat::bf16), 2048, &bf16);
  CHECK(bf16["dequant_s_per_core"].get<double>() == 0.0);
}

TEST_CASE("sim_tpu config: dequant_values_per_ns is checked and named by its JSON path", "[sim_tpu][kv]") {
  nlohmann::json c = small_config("auto", true);
  c["chip"]["core"]["dequant_values_per_ns"] = 0;
  std::string text;
  for (const auto& issue : validate_config(c)) text += issue.to_string() + "\n";
  INFO(text);
  CHECK(text.find("/chip/core/dequant_values_per_ns") != std::string::npos);
  CHECK(text.find("expected a number in") != std::string::npos);
  c["chip"]["core"].erase("dequant_values_per_ns");
  c["chip"]["core"]["dequant_value_per_ns"] = 100;
  text.clear();
  for (const auto& issue : validate_config(c)) text += issue.to_string() + "\n";
  CHECK(text.find("dequant_values_per_ns") != std::string::npos);  // the suggestion for the typo
  c["chip"]["core"].erase("dequant_value_per_ns");
  c["chip"]["core"]["dequant_values_per_ns"] = 250.5;
  CHECK(validate_config(c).empty());
}
