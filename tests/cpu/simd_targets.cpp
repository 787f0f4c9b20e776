// The fast path on every SIMD target this CPU runs: hwy::SetSupportedTargetsForTest makes
// Highway pick each target in turn, so one machine covers the baseline (the scalar/emulated
// fallback), the best target and everything between, against the float64 reference over the
// DESIGN 7 grid with poisoned pages, and over a smaller grid in every KV format (quantized
// caches also against the reference on their unquantized values, within the format's
// quantization tolerance). Inputs are fresh each run; the seed is printed on failure.
#include <catch2/catch.hpp>

#include <random>

#include <hwy/targets.h>

#include "cpu/forced_target.hpp"
#include "cpu/simd_targets.hpp"
#include "mla/kv_format.hpp"
#include "test_support.hpp"

using namespace mla;
using namespace mla::testing;

namespace {

// Every target bit this CPU supports and the cpu backend has a copy for, best first.
std::vector<int64_t> runnable_targets() {
  std::vector<int64_t> out;
  const std::vector<std::string> names = cpu::runnable_simd_targets();
  for (int64_t rest = hwy::SupportedTargets(); rest != 0; rest &= rest - 1) {
    const int64_t bit = rest & -rest;
    std::string name = hwy::TargetName(bit);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (std::find(names.begin(), names.end(), name) != names.end()) out.push_back(bit);
  }
  return out;
}

void check_case(Device& device, const Problem& p, InputSpec spec, uint64_t& seed, const std::string& expect_kernel) {
  spec.seed = ++seed;
  HostInputs in = make_random_inputs(p, spec);
  CaseResult r = run_and_compare(device, in);
  INFO(in.problem.describe() << " kv " << kv_format_name(p.kv_format) << " lengths[0]=" << in.seqlens[0]
                             << " seed=" << spec.seed << " kernel=" << r.run.kernel);
  INFO("vs reference on the cache's values: " << r.comparison.summary());
  CHECK(r.comparison.passed);
  if (!expect_kernel.empty()) CHECK(r.run.kernel == expect_kernel);
  if (!is_quantized(p.kv_format)) return;
  const Comparison q = compare_to_unquantized(in);
  INFO("vs reference on the unquantized bf16 values: " << q.summary());
  CHECK(q.passed);
  CHECK(q.rel_l2_error > 0.0);  // the cache really was quantized
}

// The DESIGN 7 grid: lengths 0..140 around the tile and page edges, every s_q, causal on/off,
// page sizes 1/7/16/64, heads 1/3 (few-row layout) to 128, GQA, fp16 and fp32.
void check_grid(Device& device, uint64_t seed, const std::string& expect_kernel) {
  for (int64_t s_q : {1, 2, 4})
    for (bool causal : {false, true})
      for (int64_t len : {0, 1, 20, 63, 64, 65, 140})
        for (int64_t page : {16, 64}) {
          InputSpec spec;
          spec.seqlens = {static_cast<int32_t>(len), static_cast<int32_t>(len / 2 + 3)};
          check_case(device, small_problem(2, s_q, 16, 1, causal, page), spec, seed, "");
        }
  for (int64_t h_q : {1, 3, 64, 128}) {
    InputSpec spec;
    spec.seqlen = 70;
    spec.varlen = true;
    check_case(device, small_problem(3, 1, h_q, 1, false, 7), spec, seed, h_q >= 16 ? expect_kernel : "");
  }
  for (int64_t page : {1, 64}) {
    InputSpec spec;
    spec.seqlen = 90;
    spec.varlen = true;
    check_case(device, small_problem(6, 2, 16, 2, true, page), spec, seed, "");
  }
  for (DType dtype : {DType::fp16, DType::fp32}) {
    InputSpec spec;
    spec.seqlen = 77;
    spec.varlen = true;
    check_case(device, small_problem(2, 2, 8, 1, true, 16, Variant::latent, dtype), spec, seed, "");
  }
}

Problem with_format(Problem p, KvFormat format) {
  p.kv_format = format;
  return p;
}

// Every KV format (bf16 queries), then plain caches of another dtype than the queries: few
// rows (1 head, causal s_q 2, lengths 0 / tile edge / three tiles), many rows (64 heads, page
// 7, varlen), GQA with splits across pages, absorb. `expect_bf16` is the kernel "auto" runs for
// bf16 queries on a bf16 or 8-bit cache (the BF16 kernel dequantizes 8-bit tiles to bf16);
// fp16 / fp32 caches must run on the Highway copy `expect_hwy`.
void check_formats(Device& device, uint64_t seed, const std::string& expect_bf16, const std::string& expect_hwy) {
  for (const KvFormatTraits& kv : kv_formats()) {
    const bool bf16_kernel_reads = kv.format == KvFormat::bf16 || is_quantized(kv.format);
    const std::string many_rows_kernel = bf16_kernel_reads ? expect_bf16 : expect_hwy;
    InputSpec edges;
    edges.seqlens = {0, 33, 97};
    check_case(device, with_format(small_problem(3, 2, 1, 1, true, 16), kv.format), edges, seed, "");
    InputSpec varlen;
    varlen.seqlen = 70;
    varlen.varlen = true;
    check_case(device, with_format(small_problem(2, 1, 64, 1, false, 7), kv.format), varlen, seed, many_rows_kernel);
    check_case(device, with_format(small_problem(2, 2, 16, 2, true, 64), kv.format), varlen, seed, "");
    check_case(device, with_format(small_problem(2, 1, 8, 1, false, 16, Variant::absorb), kv.format), varlen, seed, "");
  }
  // Mixed: a plain or quantized cache read by fp16 / fp32 queries, a fp16 cache by bf16 ones.
  const std::pair<DType, KvFormat> mixed[] = {{DType::fp16, KvFormat::bf16}, {DType::bf16, KvFormat::fp16},
                                              {DType::fp32, KvFormat::bf16}, {DType::fp16, KvFormat::int8},
                                              {DType::fp32, KvFormat::fp8_ds_mla}};
  for (const auto& [dtype, format] : mixed) {
    InputSpec spec;
    spec.seqlen = 77;
    spec.varlen = true;
    for (int64_t h_q : {2, 32})
      check_case(device, with_format(small_problem(2, 1, h_q, 1, false, 16, Variant::latent, dtype), format), spec, seed,
                 h_q >= 16 ? expect_hwy : "");
  }
}

// A plannable problem: one sequence of at most 64 keys.
Problem one_page_problem() {
  Problem p = small_problem(1, 1, 16, 1, false, 64);
  p.num_blocks = 1;
  p.max_blocks_per_seq = 1;
  return p;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

TEST_CASE("cpu fast path matches the reference on every SIMD target this CPU runs", "[cpu][simd]") {
  const std::vector<int64_t> targets = runnable_targets();
  REQUIRE(targets.size() >= 2);  // at least the best target and the fallback
  const uint64_t seed = std::random_device{}();
  for (int64_t target : targets) {
    const std::string name = lower(hwy::TargetName(target));
    INFO("forced target " << name << ", seed base " << seed);
    ForcedTarget forced(target);
    REQUIRE(cpu::best_simd_kernel().target == name);
    // "auto": Highway's pick, or the AVX-512 BF16 kernel where the pick is AVX3 on a bf16 CPU.
    auto device = open_device(config_for("cpu", {{"cpu", {{"kv_tile_tokens", 32}}}}));
    const bool bf16 = cpu::best_simd_target_is_avx512() && cpu::cpu_has_avx512_bf16();
    check_grid(*device, seed, bf16 ? "cpu_flash_decode_avx512bf16" : "cpu_flash_decode_hwy_" + name);
    check_formats(*device, seed + 2000, bf16 ? "cpu_flash_decode_avx512bf16" : "cpu_flash_decode_hwy_" + name,
                  "cpu_flash_decode_hwy_" + name);
    // The Highway copy itself, also where "auto" preferred the BF16 kernel.
    if (bf16) {
      auto hwy_device = open_device(config_for("cpu", {{"cpu", {{"isa", name}, {"kv_tile_tokens", 32}}}}));
      check_grid(*hwy_device, seed + 1000, "cpu_flash_decode_hwy_" + name);
    }
  }
}

TEST_CASE("cpu.isa names a Highway target, and one this CPU cannot run is refused at plan", "[cpu][simd]") {
  const std::vector<std::string> runnable = cpu::runnable_simd_targets();
  REQUIRE(!runnable.empty());
  auto device = open_device(config_for("cpu", {{"cpu", {{"isa", runnable.back()}}}}));
  CHECK(device->plan(one_page_problem())->kernel_name() == "cpu_flash_decode_hwy_" + runnable.back());
  CHECK(cpu::portable_simd_kernel().target == runnable.back());
  for (const std::string& name : cpu::simd_target_names()) {
    if (std::find(runnable.begin(), runnable.end(), name) != runnable.end()) continue;
    auto other = open_device(config_for("cpu", {{"cpu", {{"isa", name}}}}));
    try {
      (void)other->plan(one_page_problem());
      FAIL("plan accepted cpu.isa = " << name);
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::unsupported);
      CHECK_THAT(e.what(), Catch::Contains(name) && Catch::Contains("runnable"));
    }
  }
}
